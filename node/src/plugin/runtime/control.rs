//! The host functions of the `mesh` and `workload` interfaces: each hands the request to the
//! deployment's [`Control`](crate::plugin::control::Control) and waits for it at most until
//! shortly before the call's deadline ([`HostState::wait_left`]). A wait cut short is an
//! `unreachable` (mesh) or an `unavailable` (workload), never a trap.

use std::future::Future;

use super::degroup::plugin::{mesh, workload};
use super::host::HostState;
use crate::plugin::control::{ChildLimits, ChildStatus, MeshMember, SendError, WorkloadError};
use crate::plugin::deployment::State;

/// Waits for `fut` at most `left`; `None` past it.
async fn bounded<T>(left: std::time::Duration, fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(left, fut).await.ok()
}

fn member(m: MeshMember) -> mesh::Member {
    mesh::Member {
        id: m.id,
        host: m.host,
        package: m.package,
        role: m.role,
    }
}

fn send_error(e: SendError) -> mesh::SendError {
    match e {
        SendError::Unknown => mesh::SendError::Unknown,
        SendError::NotInGroup => mesh::SendError::NotInGroup,
        SendError::Unreachable => mesh::SendError::Unreachable,
        SendError::InboxFull => mesh::SendError::InboxFull,
        SendError::TooLarge => mesh::SendError::TooLarge,
        SendError::RateLimited => mesh::SendError::RateLimited,
    }
}

impl mesh::Host for HostState {
    async fn members(&mut self) -> Vec<mesh::Member> {
        let fut = self.control().mesh.members();
        bounded(self.wait_left(), fut)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(member)
            .collect()
    }

    async fn send(&mut self, to: String, payload: Vec<u8>) -> Result<(), mesh::SendError> {
        let fut = self.control().mesh.send(to, payload);
        match bounded(self.wait_left(), fut).await {
            Some(r) => r.map_err(send_error),
            None => Err(mesh::SendError::Unreachable),
        }
    }

    async fn broadcast(&mut self, payload: Vec<u8>) {
        let fut = self.control().mesh.broadcast(payload);
        let _ = bounded(self.wait_left(), fut).await;
    }
}

fn limits(l: workload::Limits) -> ChildLimits {
    ChildLimits {
        mem_bytes: l.mem_bytes,
        fuel_per_second: l.fuel_per_second,
        kv_bytes: l.kv_bytes,
    }
}

fn wit_limits(l: ChildLimits) -> workload::Limits {
    workload::Limits {
        mem_bytes: l.mem_bytes,
        fuel_per_second: l.fuel_per_second,
        kv_bytes: l.kv_bytes,
    }
}

fn status(s: ChildStatus) -> workload::ChildStatus {
    workload::ChildStatus {
        id: s.id,
        package: s.package,
        state: match s.state {
            State::Starting => workload::State::Starting,
            State::Running => workload::State::Running,
            State::Backoff => workload::State::Backoff,
            State::Failed => workload::State::Failed,
            State::Stopped => workload::State::Stopped,
        },
        reason: s.reason,
        restarts: s.restarts,
        mem_bytes: s.mem_bytes,
        fuel: s.fuel,
        limits: wit_limits(s.limits),
    }
}

fn workload_error(e: WorkloadError) -> workload::Error {
    match e {
        WorkloadError::InsufficientCapacity(m) => workload::Error::InsufficientCapacity(m),
        WorkloadError::BadPackage(m) => workload::Error::BadPackage(m),
        WorkloadError::Unknown => workload::Error::Unknown,
        WorkloadError::BadRoute(m) => workload::Error::BadRoute(m),
        WorkloadError::TooMany(n) => workload::Error::TooMany(n),
        WorkloadError::Unavailable(m) => workload::Error::Unavailable(m),
    }
}

fn late() -> workload::Error {
    workload::Error::Unavailable("the host did not answer before the call's deadline".into())
}

impl workload::Host for HostState {
    async fn start(
        &mut self,
        package: String,
        config: Vec<(String, String)>,
        l: workload::Limits,
    ) -> Result<String, workload::Error> {
        let fut = self.control().workloads.start(package, config, limits(l));
        match bounded(self.wait_left(), fut).await {
            Some(r) => r.map_err(workload_error),
            None => Err(late()),
        }
    }

    async fn stop(&mut self, id: String) -> Result<(), workload::Error> {
        let fut = self.control().workloads.stop(id);
        match bounded(self.wait_left(), fut).await {
            Some(r) => r.map_err(workload_error),
            None => Err(late()),
        }
    }

    async fn list(&mut self) -> Vec<workload::ChildStatus> {
        let fut = self.control().workloads.list();
        bounded(self.wait_left(), fut)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(status)
            .collect()
    }

    async fn status(&mut self, id: String) -> Option<workload::ChildStatus> {
        let fut = self.control().workloads.status(id);
        bounded(self.wait_left(), fut).await.flatten().map(status)
    }

    async fn route(&mut self, host_name: String, id: String) -> Result<(), workload::Error> {
        let fut = self.control().workloads.route(host_name, id);
        match bounded(self.wait_left(), fut).await {
            Some(r) => r.map_err(workload_error),
            None => Err(late()),
        }
    }
}
