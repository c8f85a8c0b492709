//! Capacity: what this node offers, what the federation offers, and how to search it.
//!
//! - [`inventory`] detects the hardware (CPU within cgroup limits, memory, the data dir's disk,
//!   GPUs through `nvidia-smi`); [`offer`] layers the operator's settings on top (config file,
//!   then `degroup capacity set`), which may restrict what is offered.
//! - [`advert`] is the signed advert (`degroup/advert/v1`) and its stateless checks; [`book`]
//!   holds the newest valid advert per host, in memory for queries and in sled for restarts, and
//!   decides accept / reject / ignore for every advert that arrives.
//! - [`service`] is the actor that owns this node's own advert: it persists the sequence number,
//!   debounces changes, signs, publishes on gossipsub and refreshes before expiry.
//! - [`gossip`] registers the advert topic with the book as its validator; [`sync`] is the
//!   late-joiner and anti-entropy protocol (`/degroup/adverts/sync/1`).
//! - [`query`] is the discovery language (`cpu>=8 mem>=32GiB country=FR`), with `--explain`;
//!   [`units`] parses and prints sizes, durations, prices; [`country`] validates ISO codes.

pub mod advert;
pub mod book;
pub(crate) mod country;
pub(crate) mod gossip;
pub(crate) mod inventory;
pub(crate) mod offer;
pub mod query;
pub(crate) mod service;
pub mod sync;
pub(crate) mod units;

pub use book::{AdvertBook, Verdict};
pub(crate) use service::{CapacityError, CapacityHandle, CapacityView};
