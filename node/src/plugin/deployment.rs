//! Deployments as stored and as shown.

use serde::{Deserialize, Serialize};

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
    pub hash: [u8; 32],
    pub publisher: [u8; 32],
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
    /// Host side: the tenant's signed request of the current generation.
    pub request: Vec<u8>,
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
    pub hash: String,
    pub publisher: String,
    pub state: State,
    pub reason: Option<String>,
    pub generation: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Host side (or as the host reported it): live counters.
    pub counters: Option<Counters>,
    /// Tenant side: set when the host could not be asked (the view is what is stored).
    pub warning: Option<String>,
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
            state: r.state,
            reason: r.reason.clone(),
            generation: r.generation,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            counters,
            warning: None,
        }
    }
}

/// Encodes a record.
pub fn encode(r: &Record) -> Vec<u8> {
    postcard::to_stdvec(r).unwrap_or_default()
}

/// Decodes a stored record.
pub fn decode(bytes: &[u8]) -> Result<Record, crate::signed::EnvelopeError> {
    crate::signed::decode_exact(bytes)
}
