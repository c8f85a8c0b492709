//! Deployments as stored and as shown.

use serde::{Deserialize, Serialize};

use super::control::ChildLimits;
use crate::resources::LeaseId;

/// Which side of a deployment this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// This node runs it.
    Host,
    /// This node deployed it onto a host.
    Tenant,
}

/// Lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Instantiating and running `init`.
    Starting,
    /// Ticking.
    Running,
    /// Waiting to restart after a failure.
    Backoff,
    /// Gave up: `init` returned an error, or too many consecutive failures.
    Failed,
    /// Stopped by the tenant or host, or its lease ended.
    Stopped,
}

impl State {
    /// Whether the host should be running it.
    pub fn is_live(self) -> bool {
        matches!(self, State::Starting | State::Running | State::Backoff)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Failed => "failed",
            State::Stopped => "stopped",
        })
    }
}

/// The package a deployment runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRef {
    pub name: String,
    pub version: String,
    /// BLAKE3 of the component (as in the manifest).
    pub hash: [u8; 32],
    pub publisher: [u8; 32],
    /// BLAKE3 of the package file: the blob it was fetched as. All zero for records written
    /// before distribution (their package is in the `packages` tree).
    pub blob: [u8; 32],
    /// What the tenant asked for: `greeter@^0.1`, `blake3:…`, `greeter@0.1.0 (file)`.
    pub reference: String,
}

/// A deployment as stored (`deployments` tree, postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub side: Side,
    pub lease_id: LeaseId,
    /// Peer ids.
    pub host: String,
    pub tenant: String,
    pub package: PackageRef,
    pub config: Vec<(String, String)>,
    pub state: State,
    pub reason: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// 1 at deploy, +1 per upgrade.
    pub generation: u32,
    /// Host side: the tenant's signed request of the current generation (empty for a
    /// child, which its parent started).
    pub request: Vec<u8>,
    /// Set for a child workload: its parent and its limits (see
    /// [`crate::plugin::supervisor`]'s children).
    pub child: Option<ChildOf>,
}

/// What makes a record a child workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildOf {
    /// The parent deployment's id.
    pub parent: String,
    /// What the child may use, out of the parent's lease.
    pub limits: ChildLimits,
}

impl Record {
    /// The parent's id, for a child workload.
    pub fn parent(&self) -> Option<&str> {
        self.child.as_ref().map(|c| c.parent.as_str())
    }
}

/// Live counters of a hosted deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub starts: u64,
    pub ticks: u64,
    pub traps: u64,
    pub interrupts: u64,
    /// Failures since the last successful tick.
    pub consecutive_failures: u32,
    pub fuel: u64,
    pub peak_mem_bytes: u64,
    pub kv_bytes: u64,
    pub kv_quota: u64,
    pub last_tick_ms: Option<u64>,
    /// Slowest `tick` so far, in microseconds.
    pub max_tick_us: u64,
    pub logs_dropped: u64,
}

/// A deployment as `degroup ps --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub id: String,
    pub side: Side,
    pub lease: String,
    pub host: String,
    pub tenant: String,
    pub name: String,
    pub version: String,
    /// BLAKE3 of the component.
    pub hash: String,
    pub publisher: String,
    /// What the tenant deployed: the reference it gave.
    #[serde(default)]
    pub reference: String,
    /// BLAKE3 of the package file (`blake3:…` deploys exactly this).
    #[serde(default)]
    pub package: String,
    pub state: State,
    pub reason: Option<String>,
    pub generation: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Host side (or as the host reported it): live counters.
    pub counters: Option<Counters>,
    /// Tenant side: set when the host could not be asked (the view is what is stored).
    pub warning: Option<String>,
    /// Where it answers HTTP on its host's ingress: `http://<id>.<domain>:<port>/` and one
    /// URL per claimed route; empty when it serves no HTTP.
    #[serde(default)]
    pub urls: Vec<String>,
    /// The parent deployment's id, for a child workload; `null` for a deployment.
    #[serde(default)]
    pub parent: Option<String>,
}

impl View {
    pub fn of(r: &Record, counters: Option<Counters>) -> Self {
        Self {
            id: r.id.clone(),
            side: r.side,
            lease: hex::encode(r.lease_id),
            host: r.host.clone(),
            tenant: r.tenant.clone(),
            name: r.package.name.clone(),
            version: r.package.version.clone(),
            hash: hex::encode(r.package.hash),
            publisher: hex::encode(r.package.publisher),
            reference: r.package.reference.clone(),
            package: if r.package.blob == [0; 32] {
                String::new()
            } else {
                hex::encode(r.package.blob)
            },
            state: r.state,
            reason: r.reason.clone(),
            generation: r.generation,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            counters,
            warning: None,
            urls: Vec::new(),
            parent: r.child.as_ref().map(|c| c.parent.clone()),
        }
    }
}

/// Encodes a record.
pub fn encode(r: &Record) -> Vec<u8> {
    postcard::to_stdvec(r).unwrap_or_default()
}

/// Decodes a stored record (and records written before children, or before packages became
/// blobs: postcard is not self-describing, so each older layout has its own decoder).
pub fn decode(bytes: &[u8]) -> Result<Record, crate::signed::EnvelopeError> {
    crate::signed::decode_exact(bytes).or_else(|e| {
        before_children::decode(bytes)
            .or_else(|| legacy::decode(bytes))
            .ok_or(e)
    })
}

/// Records as written before child workloads: no `child`.
mod before_children {
    use serde::Deserialize;

    use super::{PackageRef, Record, Side, State};
    use crate::resources::LeaseId;

    #[derive(Deserialize)]
    struct V2 {
        id: String,
        side: Side,
        lease_id: LeaseId,
        host: String,
        tenant: String,
        package: PackageRef,
        config: Vec<(String, String)>,
        state: State,
        reason: Option<String>,
        created_ms: u64,
        updated_ms: u64,
        generation: u32,
        request: Vec<u8>,
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
        let l: V2 = crate::signed::decode_exact(bytes).ok()?;
        Some(Record {
            id: l.id,
            side: l.side,
            lease_id: l.lease_id,
            host: l.host,
            tenant: l.tenant,
            package: l.package,
            config: l.config,
            state: l.state,
            reason: l.reason,
            created_ms: l.created_ms,
            updated_ms: l.updated_ms,
            generation: l.generation,
            request: l.request,
            child: None,
        })
    }
}

/// Records as written before distribution: the package without blob hash or reference.
mod legacy {
    use serde::Deserialize;

    use super::{Record, Side, State};
    use crate::resources::LeaseId;

    #[derive(Deserialize)]
    struct PackageRef {
        name: String,
        version: String,
        hash: [u8; 32],
        publisher: [u8; 32],
    }

    #[derive(Deserialize)]
    struct Legacy {
        id: String,
        side: Side,
        lease_id: LeaseId,
        host: String,
        tenant: String,
        package: PackageRef,
        config: Vec<(String, String)>,
        state: State,
        reason: Option<String>,
        created_ms: u64,
        updated_ms: u64,
        generation: u32,
        request: Vec<u8>,
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
        let l: Legacy = crate::signed::decode_exact(bytes).ok()?;
        let reference = format!("{}@{}", l.package.name, l.package.version);
        Some(Record {
            id: l.id,
            side: l.side,
            lease_id: l.lease_id,
            host: l.host,
            tenant: l.tenant,
            package: super::PackageRef {
                name: l.package.name,
                version: l.package.version,
                hash: l.package.hash,
                publisher: l.package.publisher,
                blob: [0; 32],
                reference,
            },
            config: l.config,
            state: l.state,
            reason: l.reason,
            created_ms: l.created_ms,
            updated_ms: l.updated_ms,
            generation: l.generation,
            request: l.request,
            child: None,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A running hosted record, a child when `child` is given.
    pub(crate) fn record(child: Option<ChildOf>) -> Record {
        Record {
            id: "ab".repeat(16),
            side: Side::Host,
            lease_id: [7; 16],
            host: "h".into(),
            tenant: "t".into(),
            package: PackageRef {
                name: "hello".into(),
                version: "0.1.0".into(),
                hash: [1; 32],
                publisher: [2; 32],
                blob: [3; 32],
                reference: "hello@0.1.0".into(),
            },
            config: vec![("k".into(), "v".into())],
            state: State::Running,
            reason: None,
            created_ms: 1,
            updated_ms: 2,
            generation: 1,
            request: vec![9; 4],
            child,
        }
    }

    #[test]
    fn records_round_trip_with_and_without_a_parent() {
        for child in [
            None,
            Some(ChildOf {
                parent: "cd".repeat(16),
                limits: ChildLimits {
                    mem_bytes: 1 << 20,
                    fuel_per_second: 5,
                    kv_bytes: 6,
                },
            }),
        ] {
            let r = record(child);
            assert_eq!(decode(&encode(&r)).ok(), Some(r));
        }
    }

    #[test]
    fn records_written_before_children_still_decode() {
        #[derive(Serialize)]
        struct V2<'a> {
            id: &'a str,
            side: Side,
            lease_id: LeaseId,
            host: &'a str,
            tenant: &'a str,
            package: &'a PackageRef,
            config: &'a [(String, String)],
            state: State,
            reason: Option<String>,
            created_ms: u64,
            updated_ms: u64,
            generation: u32,
            request: &'a [u8],
        }
        let r = record(None);
        let old = postcard::to_stdvec(&V2 {
            id: &r.id,
            side: r.side,
            lease_id: r.lease_id,
            host: &r.host,
            tenant: &r.tenant,
            package: &r.package,
            config: &r.config,
            state: r.state,
            reason: None,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            generation: r.generation,
            request: &r.request,
        })
        .unwrap_or_default();
        assert_eq!(decode(&old).ok(), Some(r));
    }
}
