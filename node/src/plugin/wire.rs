//! The `/degroup/deploy/5` request-response protocol.
//!
//! A deploy (or upgrade) carries the tenant's signed [`DeployRequest`]: the package's BLAKE3
//! hash and size, the reference the tenant asked for, and the peers that can serve it (the
//! tenant's own node for a package deployed from a file). The bytes do not travel in the
//! request: the host fetches the package from the blob store's providers, verified chunk group
//! by chunk group, or moves nothing when it already holds it. The host checks the request's
//! signer against the sending peer, the lease, its publisher policy, then the package (its
//! signature and manifest) before anything runs. The other
//! messages (list, get, logs, stop, message) are answered for the sending peer's own
//! deployments only: libp2p's noise handshake has already authenticated who is asking.
//!
//! What travels back is this module's own wire structs ([`Status`], [`Usage`], [`LogPage`]),
//! versioned with the protocol name, not the views `ps --json` and `logs --json` print: the
//! tenant builds its view from its own record of the deployment and the host's [`Status`].
//! Version 2 replaced version 1's view-shaped answers and added [`DeployMsg::Get`]; version 3
//! replaced the package bytes with a reference and a hash (`degroup/deploy/v2` requests);
//! version 4 added the host names a deployment claims on the host's HTTP ingress (`routes`,
//! `degroup/deploy/v3` requests) and the URLs it answers on ([`Status::urls`]); version 5
//! added the child workloads a deployment starts ([`Status::child`]: a tenant's node learns
//! its children from its hosts' answers).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::deployment::{Counters, Record, State};
use super::logs;
use crate::error::ErrorCode;
use crate::net::{Limits, PeerLimits, Protocol};
use crate::resources::{DeploymentId, LeaseId};
use crate::signed::{Kind, decode_exact};

/// Largest request frame: a signed request or a message payload, with room to spare.
pub const MAX_MSG_FRAME: usize = 256 * 1024;
/// Longest reference in a request.
pub const MAX_REFERENCE: usize = 256;
/// Most peers a request names as able to serve the package.
pub const MAX_HINTS: usize = 4;
/// Largest reply frame (a page of logs, a list of deployments).
pub const MAX_REPLY_FRAME: usize = 8 * 1024 * 1024;
/// Most `--config` entries.
pub const MAX_CONFIG: usize = 64;
/// Longest config key and value.
pub const MAX_CONFIG_KEY: usize = 64;
pub const MAX_CONFIG_VALUE: usize = 4096;
/// Most bytes of all keys and values together (they travel in one signed request).
pub const MAX_CONFIG_TOTAL: usize = 32 * 1024;
/// Largest `message` payload.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Most host names one deployment claims on the host's ingress (`--route`).
pub const MAX_ROUTES: usize = 8;
/// Longest host name (DNS: 253).
pub const MAX_ROUTE: usize = 253;

/// A tenant's signed request to run (or upgrade) a package on its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    /// Chosen by the tenant (random); a retry reuses it.
    pub deployment_id: DeploymentId,
    pub lease_id: LeaseId,
    pub host: [u8; 32],
    pub tenant: [u8; 32],
    /// BLAKE3 of the package file (the blob the host fetches).
    pub package_hash: [u8; 32],
    /// Its size in bytes.
    pub package_size: u64,
    /// What the tenant asked for (`greeter@^0.1`, `blake3:…`, `greeter@0.1.0 (file)`), for
    /// `ps`; the hash is what counts.
    pub reference: String,
    /// ed25519 keys of peers that can serve the package (at most [`MAX_HINTS`]); the host asks
    /// them first, then the providers Kademlia knows.
    pub providers: Vec<[u8; 32]>,
    pub config: Vec<(String, String)>,
    /// Replace the code of an existing deployment, keeping its key-value store.
    pub upgrade: bool,
    pub created_ms: u64,
    /// Host names the deployment claims on the host's HTTP ingress (at most [`MAX_ROUTES`]);
    /// on an upgrade, added to the ones it holds.
    pub routes: Vec<String>,
}

impl Kind for DeployRequest {
    const TAG: &'static str = "degroup/deploy/v3";
    const MAX_SIZE: usize = 64 * 1024 + 1024;
}

/// Checks `--route` names against the wire's bounds (the host checks them as DNS names).
pub fn check_routes(routes: &[String]) -> Result<(), String> {
    if routes.len() > MAX_ROUTES {
        return Err(format!("at most {MAX_ROUTES} routes per deployment"));
    }
    if let Some(r) = routes.iter().find(|r| r.is_empty() || r.len() > MAX_ROUTE) {
        return Err(format!(
            "route {:?} must be a host name of 1 to {MAX_ROUTE} characters",
            r.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

/// Checks `--config` entries against the limits.
pub fn check_config(config: &[(String, String)]) -> Result<(), String> {
    if config.len() > MAX_CONFIG {
        return Err(format!("at most {MAX_CONFIG} configuration entries"));
    }
    let total: usize = config.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_CONFIG_TOTAL {
        return Err(format!(
            "the configuration is {total} bytes; at most {MAX_CONFIG_TOTAL} in all (keep large data in the plugin's key-value store)"
        ));
    }
    for (k, v) in config {
        if k.is_empty() || k.len() > MAX_CONFIG_KEY {
            return Err(format!(
                "config key {k:?} must be 1 to {MAX_CONFIG_KEY} bytes"
            ));
        }
        if v.len() > MAX_CONFIG_VALUE {
            return Err(format!(
                "config value of {k:?} is longer than {MAX_CONFIG_VALUE} bytes"
            ));
        }
    }
    Ok(())
}

/// A message to the host of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployMsg {
    /// Run a package: the signed [`DeployRequest`].
    Deploy { request: Vec<u8> },
    /// The sender's deployments on this host.
    List,
    /// One of the sender's deployments.
    Get { deployment: DeploymentId },
    /// Log lines of one of the sender's deployments after a sequence number.
    Logs {
        deployment: DeploymentId,
        after: u64,
        limit: u32,
    },
    /// Stop one of the sender's deployments (its key-value store is deleted).
    Stop { deployment: DeploymentId },
    /// Deliver a payload to one of the sender's deployments (`message` export).
    Message {
        deployment: DeploymentId,
        payload: Vec<u8>,
    },
}

/// Why a host refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// Malformed, badly signed, or not addressed to this host.
    Invalid,
    /// The lease is unknown, not active, or not the requester's.
    Lease,
    /// The package failed verification (signature, hash, size, not a component).
    Package,
    /// The host's publisher policy does not allow this package.
    Policy,
    /// The component does not compile or does not fit the plugin world.
    Compile,
    /// No such deployment (of the requester's).
    Unknown,
    /// The host is saturated; retry later.
    Unavailable,
    /// The deployment exists and is in a state that does not allow this (stopped, taken,
    /// not running).
    Conflict,
}

impl RefusalCode {
    /// What the refusal means to the tenant's admin API.
    pub fn error_code(self) -> ErrorCode {
        match self {
            RefusalCode::Invalid => ErrorCode::BadInput,
            RefusalCode::Lease | RefusalCode::Conflict => ErrorCode::Conflict,
            RefusalCode::Package | RefusalCode::Compile => ErrorCode::InvalidPackage,
            RefusalCode::Policy => ErrorCode::Forbidden,
            RefusalCode::Unknown => ErrorCode::NotFound,
            RefusalCode::Unavailable => ErrorCode::Unavailable,
        }
    }
}

/// A refusal: code and a sentence saying what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Where a deployment is in its life, as the host reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Starting,
    Running,
    Backoff,
    Failed,
    Stopped,
}

/// What a deployment has done and used, as the host reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub starts: u64,
    pub ticks: u64,
    pub traps: u64,
    pub interrupts: u64,
    pub consecutive_failures: u32,
    pub fuel: u64,
    pub peak_mem_bytes: u64,
    pub kv_bytes: u64,
    pub kv_quota: u64,
    pub last_tick_ms: Option<u64>,
    pub max_tick_us: u64,
    pub logs_dropped: u64,
}

/// A hosted deployment, as its host reports it to its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub id: DeploymentId,
    pub lease_id: LeaseId,
    /// blake3 of the component running.
    pub package_hash: [u8; 32],
    /// 1 at deploy, +1 per upgrade.
    pub generation: u32,
    pub phase: Phase,
    pub reason: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub usage: Usage,
    /// Where the deployment answers HTTP on the host's ingress (empty when it does not).
    pub urls: Vec<String>,
    /// Set for a child workload: what the tenant has no record of.
    pub child: Option<ChildStatus>,
}

/// What a tenant's node needs to know of a child workload it did not deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildStatus {
    pub parent: DeploymentId,
    pub name: String,
    pub version: String,
    pub publisher: [u8; 32],
    /// BLAKE3 of the package file.
    pub blob: [u8; 32],
    /// The reference its parent started it with.
    pub reference: String,
    pub config: Vec<(String, String)>,
    pub mem_bytes: u64,
    pub fuel_per_second: u64,
    pub kv_bytes: u64,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub at_ms: u64,
    pub level: String,
    pub source: String,
    pub message: String,
}

/// A page of log lines after a sequence number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    pub next: u64,
    pub dropped: u64,
    pub missed: u64,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployReply {
    Deployment(Box<Status>),
    List(Vec<Status>),
    Logs(LogPage),
    Ok,
    Refused(Refusal),
}

/// The protocol, as `net` runs it.
#[derive(Debug)]
pub struct DeployProtocol;

impl Protocol for DeployProtocol {
    const NAME: &'static str = "/degroup/deploy/5";
    const LIMITS: Limits = Limits {
        max_request: MAX_MSG_FRAME,
        max_response: MAX_REPLY_FRAME,
        max_inflight: 256,
        queue: 1024,
        // A deploy waits for the host's fetch of the package (up to 64 MiB), its compilation
        // and `init`.
        timeout: Duration::from_secs(120),
        per_peer: PeerLimits::DEFAULT,
        over_relay: false,
    };
    type Request = DeployMsg;
    type Response = DeployReply;

    fn unavailable(message: &str) -> DeployReply {
        DeployReply::Refused(Refusal::new(RefusalCode::Unavailable, message))
    }
}

impl From<State> for Phase {
    fn from(s: State) -> Self {
        match s {
            State::Starting => Phase::Starting,
            State::Running => Phase::Running,
            State::Backoff => Phase::Backoff,
            State::Failed => Phase::Failed,
            State::Stopped => Phase::Stopped,
        }
    }
}

impl From<Phase> for State {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Starting => State::Starting,
            Phase::Running => State::Running,
            Phase::Backoff => State::Backoff,
            Phase::Failed => State::Failed,
            Phase::Stopped => State::Stopped,
        }
    }
}

impl From<&Counters> for Usage {
    fn from(c: &Counters) -> Self {
        Self {
            starts: c.starts,
            ticks: c.ticks,
            traps: c.traps,
            interrupts: c.interrupts,
            consecutive_failures: c.consecutive_failures,
            fuel: c.fuel,
            peak_mem_bytes: c.peak_mem_bytes,
            kv_bytes: c.kv_bytes,
            kv_quota: c.kv_quota,
            last_tick_ms: c.last_tick_ms,
            max_tick_us: c.max_tick_us,
            logs_dropped: c.logs_dropped,
        }
    }
}

impl From<&Usage> for Counters {
    fn from(u: &Usage) -> Self {
        Self {
            starts: u.starts,
            ticks: u.ticks,
            traps: u.traps,
            interrupts: u.interrupts,
            consecutive_failures: u.consecutive_failures,
            fuel: u.fuel,
            peak_mem_bytes: u.peak_mem_bytes,
            kv_bytes: u.kv_bytes,
            kv_quota: u.kv_quota,
            last_tick_ms: u.last_tick_ms,
            max_tick_us: u.max_tick_us,
            logs_dropped: u.logs_dropped,
        }
    }
}

impl Status {
    /// The status of a hosted deployment: its record, its live state and counters.
    pub fn of(r: &Record, state: State, reason: Option<String>, counters: &Counters) -> Self {
        Self {
            id: crate::resources::parse_id(&r.id).unwrap_or_default(),
            lease_id: r.lease_id,
            package_hash: r.package.hash,
            generation: r.generation,
            phase: state.into(),
            reason,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            usage: counters.into(),
            urls: Vec::new(),
            child: r.child.as_ref().map(|c| ChildStatus {
                parent: crate::resources::parse_id(&c.parent).unwrap_or_default(),
                name: r.package.name.clone(),
                version: r.package.version.clone(),
                publisher: r.package.publisher,
                blob: r.package.blob,
                reference: r.package.reference.clone(),
                config: r.config.clone(),
                mem_bytes: c.limits.mem_bytes,
                fuel_per_second: c.limits.fuel_per_second,
                kv_bytes: c.limits.kv_bytes,
            }),
        }
    }
}

impl From<logs::LogPage> for LogPage {
    fn from(p: logs::LogPage) -> Self {
        Self {
            lines: p
                .lines
                .into_iter()
                .map(|l| LogLine {
                    seq: l.seq,
                    at_ms: l.at_ms,
                    level: l.level,
                    source: l.source,
                    message: l.message,
                })
                .collect(),
            next: p.next,
            dropped: p.dropped,
            missed: p.missed,
        }
    }
}

impl From<LogPage> for logs::LogPage {
    fn from(p: LogPage) -> Self {
        Self {
            lines: p
                .lines
                .into_iter()
                .map(|l| logs::LogLine {
                    seq: l.seq,
                    at_ms: l.at_ms,
                    level: l.level,
                    source: l.source,
                    message: l.message,
                })
                .collect(),
            next: p.next,
            dropped: p.dropped,
            missed: p.missed,
        }
    }
}

/// Decodes a request frame from raw bytes (the fuzz target's entry point).
pub fn decode_msg(bytes: &[u8]) -> Result<DeployMsg, crate::signed::EnvelopeError> {
    if bytes.len() > MAX_MSG_FRAME {
        return Err(crate::signed::EnvelopeError::TooLarge {
            size: bytes.len(),
            max: MAX_MSG_FRAME,
        });
    }
    decode_exact(bytes)
}
