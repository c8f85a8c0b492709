//! Plugins: the tenant's own cloud-management logic, run on a leased slice as a sandboxed
//! WebAssembly component.
//!
//! - [`package`]: the signed `.dgp` package (component + manifest) a publisher makes with
//!   `degroup plugin pack`.
//! - [`runtime`]: the wasmtime sandbox (pooling allocator, `InstancePre`, compile cache, memory
//!   limiter, epoch deadlines, fuel, bounded stack, WASI without files or sockets) and the host
//!   functions of the `degroup:plugin` world (`sdk/wit`).
//! - [`distribution`]: publish, search, info, fetch and yank, and what a deploy needs: a
//!   reference resolved in the [`crate::catalogue`], a package file staged privately in the
//!   [`crate::blobs`] store for its host, a package fetched (verified) by the host.
//! - [`http`]: `wasi:http` requests routed by the ingress to a deployment, served by a pool
//!   of instances of its component under the lease's limits.
//! - [`kv`], [`logs`]: a deployment's key-value store (a redb file, capped by the lease's disk)
//!   and its rate-limited ring buffer of logs.
//! - [`worker`]: one thread per running deployment: ticks, restarts with backoff, gives up.
//! - [`supervisor`]: the actor owning deployments; host side of `/degroup/deploy/3` ([`wire`],
//!   its own versioned wire structs), tenant side, restarts after a node restart, stop at
//!   lease end.
//! - [`local`]: `degroup plugin run`, the same sandbox with a throwaway store.

pub mod config;
pub mod control;
pub mod deployment;
pub mod distribution;
mod error;
pub mod http;
pub mod kv;
pub(crate) mod local;
pub mod logs;
pub mod package;
pub mod runtime;
pub(crate) mod supervisor;
pub mod wire;
pub mod worker;

pub use config::Limits;
pub use error::PluginError;
pub use package::Package;
pub use runtime::Runtime;
pub(crate) use supervisor::PluginHandle;
pub use wire::DeployProtocol;
