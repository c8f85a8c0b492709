//! The one place that talks to the host. On wasm it calls the imports `wit-bindgen` generated;
//! elsewhere (unit tests on a developer machine) it calls the in-memory stand-in in
//! [`crate::testing`].

#[cfg(target_family = "wasm")]
mod imp {
    use crate::bindings::degroup::plugin::{kv, lease, log};
    use crate::bindings::wasi::{clocks, random};
    use crate::kv::KvError;
    use crate::lease::{LeaseInfo, Slice};
    use crate::log::Level;

    fn kv_error(e: kv::Error) -> KvError {
        match e {
            kv::Error::QuotaExceeded(quota) => KvError::QuotaExceeded { quota },
            kv::Error::ValueTooLarge(limit) => KvError::ValueTooLarge { limit },
            kv::Error::InvalidKey => KvError::InvalidKey,
            kv::Error::Storage(reason) => KvError::Storage(reason),
        }
    }

    pub(crate) fn kv_get(key: &str) -> Option<Vec<u8>> {
        kv::get(key)
    }

    pub(crate) fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
        kv::set(key, value).map_err(kv_error)
    }

    pub(crate) fn kv_delete(key: &str) -> Result<bool, KvError> {
        kv::delete(key).map_err(kv_error)
    }

    pub(crate) fn kv_list(prefix: &str, limit: u32) -> Vec<String> {
        kv::list(prefix, limit)
    }

    pub(crate) fn kv_usage() -> (u64, u64) {
        kv::usage()
    }

    pub(crate) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error => log::Level::Error,
        };
        log::log(level, message);
    }

    pub(crate) fn lease_info() -> LeaseInfo {
        let i = lease::info();
        LeaseInfo {
            lease_id: i.lease_id,
            deployment_id: i.deployment_id,
            host: i.host,
            tenant: i.tenant,
            slice: Slice {
                cpu_millis: i.slice.cpu_millis,
                mem_bytes: i.slice.mem_bytes,
                disk_bytes: i.slice.disk_bytes,
                gpus: i.slice.gpus,
            },
            starts_at_ms: i.starts_at,
            ends_at_ms: i.ends_at,
            package_name: i.package_name,
            package_version: i.package_version,
        }
    }

    pub(crate) fn wall_clock() -> (u64, u32) {
        let t = clocks::wall_clock::now();
        (t.seconds, t.nanoseconds)
    }

    pub(crate) fn monotonic_ns() -> u64 {
        clocks::monotonic_clock::now()
    }

    pub(crate) fn random_bytes(len: u64) -> Vec<u8> {
        random::random::get_random_bytes(len)
    }

    pub(crate) fn random_u64() -> u64 {
        random::random::get_random_u64()
    }
}

#[cfg(not(target_family = "wasm"))]
mod imp {
    pub(crate) use crate::testing::host::*;
}

pub(crate) use imp::*;
