//! The lease and deployment the instance runs under.
//!
//! ```no_run
//! use degroup_sdk::{info, lease};
//!
//! let lease = lease::info();
//! info!(
//!     "running {} {} on {} with {} millicores and {} MiB",
//!     lease.package_name,
//!     lease.package_version,
//!     lease.host,
//!     lease.slice.cpu_millis,
//!     lease.slice.mem_bytes >> 20,
//! );
//! ```

use serde::{Deserialize, Serialize};

use crate::host;

/// The slice of a host's hardware a lease grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Slice {
    /// CPU in thousandths of a core (1000 = one core).
    pub cpu_millis: u32,
    /// Memory in bytes; the plugin's linear memory can never grow past it.
    pub mem_bytes: u64,
    /// Disk in bytes; the key-value store (keys + values) can never grow past it.
    pub disk_bytes: u64,
    /// Whole GPUs.
    pub gpus: u32,
}

/// The lease and deployment an instance runs under, as returned by [`info`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Lease id (32 hex characters).
    pub lease_id: String,
    /// Deployment id (32 hex characters), stable across restarts and upgrades.
    pub deployment_id: String,
    /// The host's peer id.
    pub host: String,
    /// The tenant's peer id: who deployed the plugin.
    pub tenant: String,
    /// What the lease grants.
    pub slice: Slice,
    /// When the lease started, Unix milliseconds.
    pub starts_at_ms: u64,
    /// When the lease ends unless renewed, Unix milliseconds.
    pub ends_at_ms: u64,
    /// Name of the package running now, e.g. `counter`.
    pub package_name: String,
    /// Version of the package running now, e.g. `1.2.0`.
    pub package_version: String,
}

impl LeaseInfo {
    /// Milliseconds left until the lease ends, as of `now_ms` (0 once it has ended).
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.ends_at_ms.saturating_sub(now_ms)
    }
}

/// Returns the lease and deployment this instance runs under. Cheap enough to call per tick,
/// and fixed for an instance's life: a renewal shows up after the next restart or upgrade.
pub fn info() -> LeaseInfo {
    host::lease_info()
}
