//! The one place that talks to the host. On wasm it calls the imports `wit-bindgen` generated;
//! elsewhere (unit tests on a developer machine) it calls the in-memory stand-in in
//! [`crate::testing`].

#[cfg(target_family = "wasm")]
mod imp {
    use crate::bindings::degroup::plugin::{kv, lease, log, mesh, workload};
    use crate::bindings::wasi::{clocks, random};
    use crate::kv::KvError;
    use crate::lease::{LeaseInfo, Slice};
    use crate::log::Level;
    use crate::mesh::{Member, SendError};
    use crate::workload::{Limits, State, Status, WorkloadError};

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

    pub(crate) fn mesh_members() -> Vec<Member> {
        mesh::members()
            .into_iter()
            .map(|m| Member {
                id: m.id,
                host: m.host,
                package: m.package,
                role: m.role,
            })
            .collect()
    }

    pub(crate) fn mesh_send(to: &str, payload: &[u8]) -> Result<(), SendError> {
        mesh::send(to, payload).map_err(|e| match e {
            mesh::SendError::Unknown => SendError::Unknown,
            mesh::SendError::NotInGroup => SendError::NotInGroup,
            mesh::SendError::Unreachable => SendError::Unreachable,
            mesh::SendError::InboxFull => SendError::InboxFull,
            mesh::SendError::TooLarge => SendError::TooLarge,
            mesh::SendError::RateLimited => SendError::RateLimited,
        })
    }

    pub(crate) fn mesh_broadcast(payload: &[u8]) {
        mesh::broadcast(payload);
    }

    fn workload_error(e: workload::Error) -> WorkloadError {
        match e {
            workload::Error::InsufficientCapacity(s) => WorkloadError::InsufficientCapacity(s),
            workload::Error::BadPackage(s) => WorkloadError::BadPackage(s),
            workload::Error::Unknown => WorkloadError::Unknown,
            workload::Error::BadRoute(s) => WorkloadError::BadRoute(s),
            workload::Error::TooMany(n) => WorkloadError::TooMany(n),
            workload::Error::Unavailable(s) => WorkloadError::Unavailable(s),
        }
    }

    fn limits(l: workload::Limits) -> Limits {
        Limits {
            mem_bytes: l.mem_bytes,
            fuel_per_second: l.fuel_per_second,
            kv_bytes: l.kv_bytes,
        }
    }

    fn status(s: workload::ChildStatus) -> Status {
        Status {
            id: s.id,
            package: s.package,
            state: match s.state {
                workload::State::Starting => State::Starting,
                workload::State::Running => State::Running,
                workload::State::Backoff => State::Backoff,
                workload::State::Failed => State::Failed,
                workload::State::Stopped => State::Stopped,
            },
            reason: s.reason,
            restarts: s.restarts,
            mem_bytes: s.mem_bytes,
            fuel: s.fuel,
            limits: limits(s.limits),
        }
    }

    pub(crate) fn workload_start(
        package: &str,
        config: &[(String, String)],
        l: Limits,
    ) -> Result<String, WorkloadError> {
        let l = workload::Limits {
            mem_bytes: l.mem_bytes,
            fuel_per_second: l.fuel_per_second,
            kv_bytes: l.kv_bytes,
        };
        workload::start(package, config, l).map_err(workload_error)
    }

    pub(crate) fn workload_stop(id: &str) -> Result<(), WorkloadError> {
        workload::stop(id).map_err(workload_error)
    }

    pub(crate) fn workload_list() -> Vec<Status> {
        workload::list().into_iter().map(status).collect()
    }

    pub(crate) fn workload_status(id: &str) -> Option<Status> {
        workload::status(id).map(status)
    }

    pub(crate) fn workload_route(host_name: &str, id: &str) -> Result<(), WorkloadError> {
        workload::route(host_name, id).map_err(workload_error)
    }
}

#[cfg(not(target_family = "wasm"))]
mod imp {
    pub(crate) use crate::testing::host::*;
}

pub(crate) use imp::*;
