//! The in-memory stand-in for the host, used when the SDK is built for anything but wasm.
//!
//! This lets plugin logic be unit-tested with `cargo test` on a developer machine:
//! [`kv`](crate::kv) is an in-memory map with the host's limits (1–512 byte keys, 1 MiB values,
//! quota = the lease's `disk_bytes`), the log macros print to stderr and keep the lines, and
//! [`lease::info`](crate::lease::info) returns [`default_lease`] until [`set_lease`] changes it.
//!
//! The control plane has stand-ins too: [`mesh::members`](crate::mesh::members) returns what
//! [`set_members`] set (empty by default), every [`mesh::send`](crate::mesh::send) and
//! [`mesh::broadcast`](crate::mesh::broadcast) is recorded for [`sent`] (a send to a
//! non-member is `not-in-group`, and [`set_send_error`] makes one member refuse), and
//! [`workload`](crate::workload) children live in a table with a capacity (the lease's by
//! default, or [`set_child_capacity`]): a start past it is `insufficient-capacity`, past 16
//! children `too-many`, a reference that is neither `blake3:…` nor `name@version`
//! `bad-package`; children are running at once, and [`set_child_state`] moves them.
//!
//! The state is per thread (`cargo test` runs each test on its own thread), so tests do not
//! see each other's keys; call [`reset`] at the start of a test that runs more than one
//! scenario.
//!
//! ```
//! use degroup_sdk::{info, kv, testing};
//!
//! testing::reset();
//! kv::set_json("count", &3u64).unwrap();
//! info!("count = {}", 3);
//! assert_eq!(kv::get_json::<u64>("count").unwrap(), Some(3));
//! assert_eq!(testing::logs()[0].message, "count = 3");
//! ```
//!
//! Only compiled off-wasm: a plugin's tests use it under `#[cfg(test)]`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::lease::{LeaseInfo, Slice};
use crate::log::Level;
use crate::mesh::{Member, SendError};
use crate::workload::{FUEL_PER_CPU_MILLI, Limits, State, Status};

/// Most children the stand-in lets a deployment have (the host's default).
pub const MAX_CHILDREN: u32 = 16;

/// One message recorded by the stand-in: a [`mesh::send`](crate::mesh::send) that was
/// accepted, or one member's copy of a [`mesh::broadcast`](crate::mesh::broadcast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The receiver's deployment id.
    pub to: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// Whether it was part of a broadcast.
    pub broadcast: bool,
}

impl Sent {
    /// The payload as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.payload).ok()
    }
}

/// One line written through the log macros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// Its text.
    pub message: String,
}

#[derive(Debug)]
struct MockHost {
    kv: BTreeMap<String, Vec<u8>>,
    lease: LeaseInfo,
    logs: Vec<LogLine>,
    seed: u64,
    members: Vec<Member>,
    sent: Vec<Sent>,
    send_errors: BTreeMap<String, SendError>,
    child_capacity: Option<Limits>,
    children: BTreeMap<String, Status>,
    next_child: u64,
    routes: Vec<(String, String)>,
}

impl MockHost {
    fn new() -> Self {
        Self {
            kv: BTreeMap::new(),
            lease: default_lease(),
            logs: Vec::new(),
            seed: 0,
            members: Vec::new(),
            sent: Vec::new(),
            send_errors: BTreeMap::new(),
            child_capacity: None,
            children: BTreeMap::new(),
            next_child: 0,
            routes: Vec::new(),
        }
    }

    fn capacity(&self) -> Limits {
        self.child_capacity.unwrap_or(Limits {
            mem_bytes: self.lease.slice.mem_bytes,
            fuel_per_second: u64::from(self.lease.slice.cpu_millis) * FUEL_PER_CPU_MILLI,
            kv_bytes: self.lease.slice.disk_bytes,
        })
    }

    fn used(&self) -> u64 {
        self.kv
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

thread_local! {
    static HOST: RefCell<MockHost> = RefCell::new(MockHost::new());
}

fn with<R>(f: impl FnOnce(&mut MockHost) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

/// The lease [`lease::info`](crate::lease::info) returns until [`set_lease`]: one core,
/// 64 MiB of memory, 16 MiB of disk, no GPU, package `test` `0.0.0`.
pub fn default_lease() -> LeaseInfo {
    LeaseInfo {
        lease_id: "0".repeat(64),
        deployment_id: "0".repeat(32),
        host: "test-host".to_string(),
        tenant: "test-tenant".to_string(),
        slice: Slice {
            cpu_millis: 1000,
            mem_bytes: 64 << 20,
            disk_bytes: 16 << 20,
            gpus: 0,
        },
        starts_at_ms: 0,
        ends_at_ms: u64::MAX,
        package_name: "test".to_string(),
        package_version: "0.0.0".to_string(),
    }
}

/// Forgets every key and log line and restores [`default_lease`].
pub fn reset() {
    with(|h| *h = MockHost::new());
}

/// Sets what [`lease::info`](crate::lease::info) returns; its `slice.disk_bytes` becomes the
/// store's quota.
pub fn set_lease(lease: LeaseInfo) {
    with(|h| h.lease = lease);
}

/// The lines logged so far.
pub fn logs() -> Vec<LogLine> {
    with(|h| h.logs.clone())
}

/// The lines logged so far, forgetting them.
pub fn take_logs() -> Vec<LogLine> {
    with(|h| std::mem::take(&mut h.logs))
}

/// Every key and value in the store, in key order.
pub fn kv_dump() -> BTreeMap<String, Vec<u8>> {
    with(|h| h.kv.clone())
}

/// Sets what [`mesh::members`](crate::mesh::members) returns (sorted by id, as the host does).
pub fn set_members(mut members: Vec<Member>) {
    members.sort_by(|a, b| a.id.cmp(&b.id));
    with(|h| h.members = members);
}

/// Makes sends to `to` fail with `error` (`None`: accept them again).
pub fn set_send_error(to: &str, error: Option<SendError>) {
    with(|h| match error {
        Some(e) => {
            h.send_errors.insert(to.to_string(), e);
        }
        None => {
            h.send_errors.remove(to);
        }
    });
}

/// The messages sent so far.
pub fn sent() -> Vec<Sent> {
    with(|h| h.sent.clone())
}

/// The messages sent so far, forgetting them.
pub fn take_sent() -> Vec<Sent> {
    with(|h| std::mem::take(&mut h.sent))
}

/// Sets the capacity the children's limits together may not pass (by default the lease's:
/// its memory, `cpu_millis` × [`FUEL_PER_CPU_MILLI`] fuel per second, its disk).
pub fn set_child_capacity(capacity: Limits) {
    with(|h| h.child_capacity = Some(capacity));
}

/// Every child not stopped, as [`workload::list`](crate::workload::list) returns them.
pub fn children() -> Vec<Status> {
    with(|h| h.children.values().cloned().collect())
}

/// Moves a child to `state` (a crash, a failure) with `reason`; `false` if there is no such
/// child.
pub fn set_child_state(id: &str, state: State, reason: Option<String>) -> bool {
    with(|h| match h.children.get_mut(id) {
        Some(c) => {
            c.state = state;
            c.reason = reason;
            true
        }
        None => false,
    })
}

/// The routes given with [`workload::route`](crate::workload::route): (host name, child id).
pub fn routes() -> Vec<(String, String)> {
    with(|h| h.routes.clone())
}

/// What `crate::host` calls off-wasm.
pub(crate) mod host {
    use super::{LogLine, MAX_CHILDREN, Sent, with};
    use crate::kv::{KvError, MAX_VALUE_BYTES};
    use crate::lease::LeaseInfo;
    use crate::log::Level;
    use crate::mesh::{Member, SendError};
    use crate::workload::{Limits, State, Status, WorkloadError};

    pub(crate) fn mesh_members() -> Vec<Member> {
        with(|h| h.members.clone())
    }

    pub(crate) fn mesh_send(to: &str, payload: &[u8]) -> Result<(), SendError> {
        with(|h| {
            if !h.members.iter().any(|m| m.id == to) {
                return Err(SendError::NotInGroup);
            }
            if let Some(e) = h.send_errors.get(to) {
                return Err(e.clone());
            }
            h.sent.push(Sent {
                to: to.to_string(),
                payload: payload.to_vec(),
                broadcast: false,
            });
            Ok(())
        })
    }

    pub(crate) fn mesh_broadcast(payload: &[u8]) {
        with(|h| {
            let me = h.lease.deployment_id.clone();
            let to: Vec<String> = h
                .members
                .iter()
                .filter(|m| m.id != me && !h.send_errors.contains_key(&m.id))
                .map(|m| m.id.clone())
                .collect();
            for to in to {
                h.sent.push(Sent {
                    to,
                    payload: payload.to_vec(),
                    broadcast: true,
                });
            }
        });
    }

    fn valid_reference(r: &str) -> bool {
        if let Some(hex) = r.strip_prefix("blake3:") {
            return !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
        }
        match r.split_once('@') {
            Some((name, version)) => !name.is_empty() && !version.is_empty(),
            None => false,
        }
    }

    pub(crate) fn workload_start(
        package: &str,
        _config: &[(String, String)],
        limits: Limits,
    ) -> Result<String, WorkloadError> {
        if !valid_reference(package) {
            return Err(WorkloadError::BadPackage(format!(
                "`{package}` is neither `blake3:<hex>` nor `name@version`"
            )));
        }
        with(|h| {
            if h.children.len() >= MAX_CHILDREN as usize {
                return Err(WorkloadError::TooMany(MAX_CHILDREN));
            }
            let cap = h.capacity();
            let used = h.children.values().fold(Limits::default(), |a, c| Limits {
                mem_bytes: a.mem_bytes + c.limits.mem_bytes,
                fuel_per_second: a.fuel_per_second + c.limits.fuel_per_second,
                kv_bytes: a.kv_bytes + c.limits.kv_bytes,
            });
            let left = Limits {
                mem_bytes: cap.mem_bytes.saturating_sub(used.mem_bytes),
                fuel_per_second: cap.fuel_per_second.saturating_sub(used.fuel_per_second),
                kv_bytes: cap.kv_bytes.saturating_sub(used.kv_bytes),
            };
            if limits.mem_bytes > left.mem_bytes
                || limits.fuel_per_second > left.fuel_per_second
                || limits.kv_bytes > left.kv_bytes
            {
                return Err(WorkloadError::InsufficientCapacity(format!(
                    "{} bytes of memory, {} fuel per second, {} bytes of kv left",
                    left.mem_bytes, left.fuel_per_second, left.kv_bytes
                )));
            }
            h.next_child += 1;
            let id = format!("{:032x}", h.next_child);
            h.children.insert(
                id.clone(),
                Status {
                    id: id.clone(),
                    package: package.to_string(),
                    state: State::Running,
                    reason: None,
                    restarts: 0,
                    mem_bytes: 0,
                    fuel: 0,
                    limits,
                },
            );
            Ok(id)
        })
    }

    pub(crate) fn workload_stop(id: &str) -> Result<(), WorkloadError> {
        with(|h| {
            h.routes.retain(|(_, child)| child != id);
            h.children
                .remove(id)
                .map(|_| ())
                .ok_or(WorkloadError::Unknown)
        })
    }

    pub(crate) fn workload_list() -> Vec<Status> {
        with(|h| h.children.values().cloned().collect())
    }

    pub(crate) fn workload_status(id: &str) -> Option<Status> {
        with(|h| h.children.get(id).cloned())
    }

    pub(crate) fn workload_route(host_name: &str, id: &str) -> Result<(), WorkloadError> {
        with(|h| {
            if !h.children.contains_key(id) && id != h.lease.deployment_id {
                return Err(WorkloadError::Unknown);
            }
            h.routes.retain(|(name, _)| name != host_name);
            h.routes.push((host_name.to_string(), id.to_string()));
            Ok(())
        })
    }

    pub(crate) fn kv_get(key: &str) -> Option<Vec<u8>> {
        with(|h| h.kv.get(key).cloned())
    }

    pub(crate) fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::ValueTooLarge {
                limit: MAX_VALUE_BYTES as u64,
            });
        }
        with(|h| {
            let old = h.kv.get(key).map_or(0, |v| (key.len() + v.len()) as u64);
            let new = (key.len() + value.len()) as u64;
            let quota = h.lease.slice.disk_bytes;
            if h.used() - old + new > quota {
                return Err(KvError::QuotaExceeded { quota });
            }
            h.kv.insert(key.to_string(), value.to_vec());
            Ok(())
        })
    }

    pub(crate) fn kv_delete(key: &str) -> Result<bool, KvError> {
        Ok(with(|h| h.kv.remove(key).is_some()))
    }

    pub(crate) fn kv_list(prefix: &str, limit: u32) -> Vec<String> {
        with(|h| {
            h.kv.keys()
                .filter(|k| k.starts_with(prefix))
                .take(limit as usize)
                .cloned()
                .collect()
        })
    }

    pub(crate) fn kv_usage() -> (u64, u64) {
        with(|h| (h.used(), h.lease.slice.disk_bytes))
    }

    pub(crate) fn log(level: Level, message: &str) {
        eprintln!("[{level}] {message}");
        with(|h| {
            h.logs.push(LogLine {
                level,
                message: message.to_string(),
            })
        });
    }

    pub(crate) fn lease_info() -> LeaseInfo {
        with(|h| h.lease.clone())
    }

    pub(crate) fn wall_clock() -> (u64, u32) {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (d.as_secs(), d.subsec_nanos())
    }

    pub(crate) fn monotonic_ns() -> u64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Not cryptographic: a splitmix64 stream seeded from the clock, enough for tests.
    pub(crate) fn random_u64() -> u64 {
        with(|h| {
            if h.seed == 0 {
                let (s, n) = wall_clock();
                h.seed = s ^ (u64::from(n) << 20) ^ 0x9e37_79b9_7f4a_7c15;
            }
            h.seed = h.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = h.seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }

    pub(crate) fn random_bytes(len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        while (out.len() as u64) < len {
            out.extend_from_slice(&random_u64().to_le_bytes());
        }
        out.truncate(usize::try_from(len).unwrap_or(0));
        out
    }
}
