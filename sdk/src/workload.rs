//! Child workloads: components a deployment starts inside its own lease.
//!
//! A child runs in the same sandbox as its parent, with the same guards, restart policy and
//! metering, and its usage goes into the parent lease's receipts. Its [`Limits`] come out of
//! the lease: the host refuses a [`start`] that would take the children's limits and what the
//! parent uses past the lease ([`WorkloadError::InsufficientCapacity`], never an overcommit).
//! Children stop when the parent stops, when its lease ends, and when it is upgraded to a
//! version that does not import this interface (a version that does adopts them).
//!
//! [`start`] returns the child's id at once; the host fetches, compiles and starts it in the
//! background, and [`status`] follows it through [`State::Starting`] to
//! [`State::Running`] (or [`State::Failed`] with a reason). Keep the ids in [`kv`](crate::kv):
//! memory is lost on a restart, the children are not.
//!
//! ```no_run
//! use degroup_sdk::{Config, info, warn, workload::{self, Limits}};
//!
//! // 100 millicores (fuel per second), 32 MiB of memory, 1 MiB of key-value store.
//! let limits = Limits::for_cpu(100, 32 << 20, 1 << 20);
//! match workload::start("hello@0.1.0", &Config::new(), limits) {
//!     Ok(id) => info!("started child {id}"),
//!     Err(e) => warn!("cannot start hello: {e}"),
//! }
//! for child in workload::list() {
//!     info!("{} {} {}", child.id, child.package, child.state);
//! }
//! ```
//!
//! Off-wasm (unit tests), children live in a table in memory with a capacity (the default
//! lease's, or [`testing::set_child_capacity`]), so an `insufficient-capacity` path can be
//! tested; see [`crate::testing`].
//!
//! [`testing::set_child_capacity`]: crate::testing::set_child_capacity

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Config;
use crate::host;

/// Fuel per second one millicore of a lease is worth with the host's default settings
/// (`[plugin] fuel_per_cpu_milli`): a lease of `cpu_millis` has `cpu_millis * 1_000_000` fuel
/// per second for its parent and children together.
pub const FUEL_PER_CPU_MILLI: u64 = 1_000_000;

/// What a child may use, taken out of the parent's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Memory cap in bytes.
    pub mem_bytes: u64,
    /// Fuel per second (about one unit per wasm instruction): its share of the lease's CPU.
    pub fuel_per_second: u64,
    /// Key-value store quota in bytes (keys + values).
    pub kv_bytes: u64,
}

impl Limits {
    /// Limits for a share of `cpu_millis` of the lease's CPU (at [`FUEL_PER_CPU_MILLI`]),
    /// `mem_bytes` of memory and `kv_bytes` of store.
    pub fn for_cpu(cpu_millis: u64, mem_bytes: u64, kv_bytes: u64) -> Self {
        Self {
            mem_bytes,
            fuel_per_second: cpu_millis.saturating_mul(FUEL_PER_CPU_MILLI),
            kv_bytes,
        }
    }
}

/// Lifecycle state of a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being fetched, compiled, or running `init`.
    Starting,
    /// Running.
    Running,
    /// Waiting to restart after a fault.
    Backoff,
    /// Gave up; the status's `reason` says why.
    Failed,
    /// Stopped.
    Stopped,
}

impl State {
    /// Whether the child is on its way to running or running (starting, running, backoff).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Starting | Self::Running | Self::Backoff)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Backoff => "backoff",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        })
    }
}

/// A child as the host sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Workload id (32 hex characters).
    pub id: String,
    /// The package reference it was started with.
    pub package: String,
    /// Its state.
    pub state: State,
    /// Why it failed or stopped.
    pub reason: Option<String>,
    /// Starts after the first.
    pub restarts: u64,
    /// Peak linear memory, bytes.
    pub mem_bytes: u64,
    /// Fuel burnt so far.
    pub fuel: u64,
    /// Its limits.
    pub limits: Limits,
}

/// Why a request was refused. Refusals are values, never traps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkloadError {
    /// The lease has not that much left once the parent and its other children are counted;
    /// says what is left.
    InsufficientCapacity(String),
    /// The package reference is malformed, unknown or not trusted on this host.
    BadPackage(String),
    /// No such child of this deployment.
    Unknown,
    /// The host name is not one of the deployment's routes, or the child serves no HTTP.
    BadRoute(String),
    /// The deployment already has this many children, the most it may have.
    TooMany(u32),
    /// The host could not do it now; retrying later may succeed.
    Unavailable(String),
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InsufficientCapacity(left) => write!(f, "insufficient-capacity: {left}"),
            Self::BadPackage(why) => write!(f, "bad-package: {why}"),
            Self::Unknown => write!(f, "unknown: no such child of this deployment"),
            Self::BadRoute(why) => write!(f, "bad-route: {why}"),
            Self::TooMany(n) => write!(f, "too-many: a deployment may have at most {n} children"),
            Self::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

impl std::error::Error for WorkloadError {}

impl From<WorkloadError> for String {
    fn from(e: WorkloadError) -> Self {
        format!("workload: {e}")
    }
}

/// Starts a child from `package` (a `blake3:` package hash, or a release reference such as
/// `hello@0.1.0` that the host resolves in its catalogue) with `config` (handed to its
/// `init`) under `limits`. Returns its id at once; it starts in the background.
///
/// # Errors
///
/// A [`WorkloadError`]: no capacity left, a bad package reference, too many children, or the
/// host unable to do it now.
pub fn start(package: &str, config: &Config, limits: Limits) -> Result<String, WorkloadError> {
    let pairs: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    host::workload_start(package, &pairs, limits)
}

/// Stops a child and deletes its key-value store.
///
/// # Errors
///
/// [`WorkloadError::Unknown`] when `id` is no child of this deployment.
pub fn stop(id: &str) -> Result<(), WorkloadError> {
    host::workload_stop(id)
}

/// Every child of this deployment that has not been stopped.
pub fn list() -> Vec<Status> {
    host::workload_list()
}

/// One child, if it is a child of this deployment.
pub fn status(id: &str) -> Option<Status> {
    host::workload_status(id)
}

/// Sends the requests for `host_name`, one of this deployment's routes, to the child `id`
/// (which must serve HTTP). Routing the name to this deployment's own id gives it back.
///
/// # Errors
///
/// [`WorkloadError::BadRoute`] or [`WorkloadError::Unknown`].
pub fn route(host_name: &str, id: &str) -> Result<(), WorkloadError> {
    host::workload_route(host_name, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn children_are_held_to_the_capacity() {
        testing::reset();
        testing::set_child_capacity(Limits::for_cpu(300, 64 << 20, 4 << 20));
        let l = Limits::for_cpu(100, 32 << 20, 1 << 20);
        let a = start("hello@0.1.0", &Config::new(), l);
        let Ok(a) = a else {
            panic!("start: {a:?}");
        };
        assert_eq!(a.len(), 32);
        assert_eq!(status(&a).map(|s| s.state), Some(State::Running));
        assert!(start("blake3:abcd", &Config::new(), l).is_ok());
        let third = start("hello@0.1.0", &Config::new(), l);
        assert!(
            matches!(&third, Err(WorkloadError::InsufficientCapacity(_))),
            "{third:?}"
        );
        assert!(matches!(
            start("nonsense", &Config::new(), Limits::default()),
            Err(WorkloadError::BadPackage(_))
        ));
        assert_eq!(list().len(), 2);
        assert_eq!(stop(&a), Ok(()));
        assert_eq!(stop(&a), Err(WorkloadError::Unknown));
        assert_eq!(list().len(), 1);
        assert!(
            start("hello@0.1.0", &Config::new(), l).is_ok(),
            "room again"
        );
        testing::set_child_state(&list()[0].id, State::Failed, Some("trap".into()));
        assert_eq!(list()[0].state, State::Failed);
        assert_eq!(route("shop.example", "nope"), Err(WorkloadError::Unknown));
        let id = list()[0].id.clone();
        assert_eq!(route("shop.example", &id), Ok(()));
        assert_eq!(testing::routes(), [("shop.example".to_string(), id)]);
        assert!(
            WorkloadError::TooMany(16)
                .to_string()
                .starts_with("too-many")
        );
    }
}
