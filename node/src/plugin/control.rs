//! The tenant's control plane as one running instance sees it: the `mesh` of its group and
//! its child `workload`s (`sdk/wit`, `degroup:plugin@0.1.1`).
//!
//! The sandbox knows neither groups nor children: an instance's [`super::runtime::Env`] carries
//! a [`Control`], two trait objects bound to that deployment, and the host functions of the
//! `mesh` and `workload` interfaces call them. The supervisor hands a deployment the real
//! ones ([`crate::group`] for the mesh, the supervisor's children for workloads);
//! `degroup plugin run` and tests hand [`Control::detached`], which refuses everything with a
//! reason.
//!
//! Every method returns a future: the host functions are async (the plugin's call waits, the
//! host's tasks do not). The runtime bounds each wait by the call's own deadline, so a slow
//! peer costs the plugin an `unreachable` or `unavailable`, never a trap.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::deployment::{Record, State};
use super::worker::Inbox;

/// Largest mesh payload, in bytes.
pub const MAX_MESH_PAYLOAD: usize = 64 * 1024;

/// A deployment of the caller's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshMember {
    /// Deployment id (32 hex digits).
    pub id: String,
    /// Its host's peer id.
    pub host: String,
    /// `name@version`.
    pub package: String,
    /// The `role` of its configuration; empty when it has none.
    pub role: String,
}

/// Why a mesh message was not delivered (the WIT `send-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no such deployment is known here")]
    Unknown,
    #[error("the sender or the receiver is not in the newest version of the group")]
    NotInGroup,
    #[error("the receiver's host did not answer in time, or the receiver is not running")]
    Unreachable,
    #[error("the receiver's inbox is full; retry later")]
    InboxFull,
    #[error("the payload is over {MAX_MESH_PAYLOAD} bytes")]
    TooLarge,
    #[error("the sender is over its send rate; retry later")]
    RateLimited,
}

/// The mesh of one deployment's group.
pub trait Mesh: Send + Sync + 'static {
    /// The group's members, the caller included, ordered by id; empty when in no group.
    fn members(&self) -> BoxFuture<'static, Vec<MeshMember>>;
    /// Sends to one member; resolves once the receiver's host has queued or refused it.
    fn send(&self, to: String, payload: Vec<u8>) -> BoxFuture<'static, Result<(), SendError>>;
    /// Sends to every other member, best effort; resolves once the sends are handed off.
    fn broadcast(&self, payload: Vec<u8>) -> BoxFuture<'static, ()>;
}

/// What a child may use, out of its parent's lease (the WIT `limits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChildLimits {
    pub mem_bytes: u64,
    pub fuel_per_second: u64,
    pub kv_bytes: u64,
}

/// A child as its parent sees it (the WIT `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildStatus {
    pub id: String,
    /// The reference it was started with.
    pub package: String,
    pub state: State,
    pub reason: Option<String>,
    /// Starts after the first.
    pub restarts: u64,
    /// Peak linear memory, bytes.
    pub mem_bytes: u64,
    pub fuel: u64,
    pub limits: ChildLimits,
}

/// Why a workload request was refused (the WIT `workload.error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    #[error("insufficient capacity: {0}")]
    InsufficientCapacity(String),
    #[error("bad package: {0}")]
    BadPackage(String),
    #[error("no such child of this deployment")]
    Unknown,
    #[error("bad route: {0}")]
    BadRoute(String),
    #[error("a deployment may have at most {0} children")]
    TooMany(u32),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The child workloads of one deployment.
pub trait Workloads: Send + Sync + 'static {
    /// Starts a child; returns its id once it is recorded (it starts in the background).
    fn start(
        &self,
        package: String,
        config: Vec<(String, String)>,
        limits: ChildLimits,
    ) -> BoxFuture<'static, Result<String, WorkloadError>>;
    /// Stops a child.
    fn stop(&self, id: String) -> BoxFuture<'static, Result<(), WorkloadError>>;
    /// Every child not stopped.
    fn list(&self) -> BoxFuture<'static, Vec<ChildStatus>>;
    /// One child.
    fn status(&self, id: String) -> BoxFuture<'static, Option<ChildStatus>>;
    /// Routes one of the deployment's host names to a child (or back to itself).
    fn route(&self, host_name: String, id: String)
    -> BoxFuture<'static, Result<(), WorkloadError>>;
}

/// The host's groups as the supervisor sees them: a deployment's mesh, where mesh messages
/// find its inbox, and its stop. `crate::group` implements it and the composition root hands
/// it in, so `plugin` does not depend on `group` (which depends on `plugin`'s types).
pub trait Membership: Send + Sync + 'static {
    /// The mesh of a hosted deployment.
    fn mesh_for(&self, r: &Record) -> Arc<dyn Mesh>;
    /// The deployment's worker runs: its inbox takes mesh messages.
    fn attach(&self, r: &Record, inbox: Inbox);
    /// Its worker is gone (messages find no inbox until a new one attaches).
    fn detach(&self, id: &str);
    /// It stopped for good: gone from its groups here, and (by notice) on their other hosts.
    fn stopped(&self, id: &str);
}

/// One deployment's control plane.
#[derive(Clone)]
pub struct Control {
    pub mesh: Arc<dyn Mesh>,
    pub workloads: Arc<dyn Workloads>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

impl Control {
    /// No group and no children: what `degroup plugin run` and tests run with.
    pub fn detached() -> Self {
        Self {
            mesh: Arc::new(Detached),
            workloads: Arc::new(NoWorkloads::DETACHED),
        }
    }
}

/// The mesh of an instance in no group: no members, every send refused.
#[derive(Debug, Clone, Copy)]
pub struct Detached;

impl Mesh for Detached {
    fn members(&self) -> BoxFuture<'static, Vec<MeshMember>> {
        Box::pin(async { Vec::new() })
    }

    fn send(&self, _to: String, payload: Vec<u8>) -> BoxFuture<'static, Result<(), SendError>> {
        Box::pin(async move {
            if payload.len() > MAX_MESH_PAYLOAD {
                Err(SendError::TooLarge)
            } else {
                Err(SendError::NotInGroup)
            }
        })
    }

    fn broadcast(&self, _payload: Vec<u8>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Child workloads refused, with why: where none can run ([`NoWorkloads::DETACHED`]), and
/// for a child, which has none of its own ([`NoWorkloads::CHILD`]).
#[derive(Debug, Clone, Copy)]
pub struct NoWorkloads(pub &'static str);

impl NoWorkloads {
    pub const DETACHED: Self = Self(
        "child workloads run only on a host node, under a lease (not in `degroup plugin run`)",
    );
    pub const CHILD: Self = Self("a child workload cannot start children of its own");
}

impl Workloads for NoWorkloads {
    fn start(
        &self,
        _package: String,
        _config: Vec<(String, String)>,
        _limits: ChildLimits,
    ) -> BoxFuture<'static, Result<String, WorkloadError>> {
        let why = self.0;
        Box::pin(async move { Err(WorkloadError::Unavailable(why.into())) })
    }

    fn stop(&self, _id: String) -> BoxFuture<'static, Result<(), WorkloadError>> {
        Box::pin(async { Err(WorkloadError::Unknown) })
    }

    fn list(&self) -> BoxFuture<'static, Vec<ChildStatus>> {
        Box::pin(async { Vec::new() })
    }

    fn status(&self, _id: String) -> BoxFuture<'static, Option<ChildStatus>> {
        Box::pin(async { None })
    }

    fn route(
        &self,
        _host_name: String,
        _id: String,
    ) -> BoxFuture<'static, Result<(), WorkloadError>> {
        let why = self.0;
        Box::pin(async move { Err(WorkloadError::Unavailable(why.into())) })
    }
}
