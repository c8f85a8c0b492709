//! The in-memory stand-in for the host, used when the SDK is built for anything but wasm.
//!
//! This lets plugin logic be unit-tested with `cargo test` on a developer machine:
//! [`kv`](crate::kv) is an in-memory map with the host's limits (1–512 byte keys, 1 MiB values,
//! quota = the lease's `disk_bytes`), the log macros print to stderr and keep the lines, and
//! [`lease::info`](crate::lease::info) returns [`default_lease`] until [`set_lease`] changes it.
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
}

impl MockHost {
    fn new() -> Self {
        Self {
            kv: BTreeMap::new(),
            lease: default_lease(),
            logs: Vec::new(),
            seed: 0,
        }
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

/// What `crate::host` calls off-wasm.
pub(crate) mod host {
    use super::{LogLine, with};
    use crate::kv::{KvError, MAX_VALUE_BYTES};
    use crate::lease::LeaseInfo;
    use crate::log::Level;

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
