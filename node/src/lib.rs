//! # degroup-node
//!
//! The degroup federation node: one daemon per datacenter or hosting company, and the
//! `degroup` command that drives it.
//!
//! The node is split by domain, each behind a small API, on a ground floor of shared types:
//!
//! - [`resources`] — the ground floor: the resource vector, unit prices, ids, the clock.
//! - [`error`] — stable error codes ([`error::ErrorCode`]) every error at the API carries.
//! - [`identity`] — the node's ed25519 key (`identity.key`, 0600), also its libp2p identity.
//! - [`signed`] — signed envelopes: domain tag, exact payload bytes, signer, signature.
//! - [`capacity`] — hardware inventory, signed capacity adverts, the advert book, discovery.
//! - [`catalogue`] — the federation's package catalogue: signed releases and yanks, gossiped
//!   and synced; package references (`greeter@^0.1`, `blake3:…`) and their resolution.
//! - [`store`] — the embedded sled database; the only module that names sled.
//! - [`lease`] — two-party signed leases: protocol, reservation book, expiry, usage receipts.
//! - [`blobs`] — content-addressed blobs: files verified by BLAKE3 (bao-tree), served to
//!   peers and fetched from several providers at once, found through Kademlia.
//! - [`ingress`] — the HTTP ingress: a hyper server routing requests by `Host` to the
//!   endpoints of hosted deployments (claimed routes, then `<deployment-id>.<domain>`).
//! - [`group`] — a tenant's groups of deployments across hosts (signed documents pushed to
//!   every host) and the mesh: messages between members, host to host over `/degroup/mesh/1`.
//! - [`config`] — layered configuration: defaults < `config.toml` < `DEGROUP_*` < flags.
//! - [`net`] — the libp2p swarm, owned by one task, driven through a cloneable handle;
//!   protocol-agnostic: each application protocol is a type implementing [`net::Protocol`]
//!   in its own domain, registered in [`node`].
//! - [`api`] — the admin HTTP API (bearer token) and Prometheus metrics.
//! - [`node`] — assembly, run loop and shutdown.
//! - [`cli`] — the `degroup` command line.
//!
//! Actors talk through channels with oneshot replies; nothing shares the swarm. See
//! `docs/architecture.md` for the event-loop shape.

pub mod api;
pub mod blobs;
pub mod capacity;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod error;
pub mod group;
pub mod identity;
pub mod ingress;
pub mod lease;
pub mod metrics;
pub mod net;
pub mod node;
pub mod plugin;
pub mod resources;
pub mod signed;
pub mod store;
