//! Leases: two-party signed contracts for a slice of a host's hardware.
//!
//! A tenant asks a host for a slice (`/degroup/lease/1`, request-response over libp2p):
//!
//! ```text
//! tenant                                   host
//!   | Request (signed by tenant)  ------->  |  policy, price, reserve atomically
//!   |  <------- Offer (contract signed by host, held offer_hold)
//!   | Accept (countersignature)   ------->  |  commit in one sled transaction, flush
//!   |  <------- Committed (both envelopes)  |  only now acknowledged
//!   | store + flush                         |
//! ```
//!
//! - [`contract`]: the signed documents and offline verification ([`contract::verify_doc`]).
//! - [`wire`]: the protocol frames, refusal codes, and [`LeaseProtocol`], which declares the
//!   protocol's name, frame caps and limits to `net`.
//! - [`policy`]: the host's `[lease]` configuration (allow/deny, durations, minimum price).
//! - [`book`]: every lease of this node and the host's reservations, with the invariant
//!   `leased + held ≤ offered` per resource; durable before anything is acknowledged.
//! - [`service`]: the actor that owns the book: it answers peers (host side), stores what the
//!   tenant side negotiated, expires offers and leases, signs usage receipts, and tells the
//!   capacity actor what is leased so the advert's free capacity follows; subscribers (the
//!   plugin supervisor) hear of every lease that ends ([`LeaseEvent`]).
//! - [`tenant`]: the tenant's side of negotiation, renewal, release and receipt fetching; it
//!   runs in the caller's task, not in the actor, so a slow host never blocks the book.
//! - [`meter`]: what each lease's deployments use (fuel, peak memory, storage), written by
//!   the plugin workers and read when a usage receipt is signed.
//! - [`view`]: what `lease list/show` print.

pub(crate) mod book;
pub mod contract;
mod error;
pub(crate) mod meter;
pub(crate) mod policy;
pub mod service;
pub(crate) mod tenant;
pub mod view;
pub mod wire;

pub use book::Role;
pub use contract::LeaseDoc;
pub use error::LeaseError;
pub use meter::Meter;
pub(crate) use policy::{LeaseConfig, Policy};
pub(crate) use service::{Deps, LeaseEvent, LeaseHandle};
pub use wire::LeaseProtocol;
