//! The `/degroup/deploy/1` request-response protocol.
//!
//! A deploy (or upgrade) carries the tenant's signed [`DeployRequest`] with the package's
//! signed manifest and component; the host checks the request's signer against the sending
//! peer, the lease, the package, and its publisher policy before anything runs. The other
//! messages (list, logs, stop, message) are answered for the sending peer's own deployments
//! only: libp2p's noise handshake has already authenticated who is asking.

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use super::deployment::View;
use super::logs::LogPage;
use super::package::MAX_PACKAGE;
use crate::lease::LeaseId;
use crate::signed::{Kind, decode_exact};

/// Protocol name.
pub const DEPLOY_PROTOCOL: StreamProtocol = StreamProtocol::new("/degroup/deploy/1");
/// Largest request frame: a package plus the request.
pub const MAX_MSG_FRAME: u64 = (MAX_PACKAGE + 128 * 1024) as u64;
/// Largest reply frame (a page of logs).
pub const MAX_REPLY_FRAME: u64 = 8 * 1024 * 1024;
/// Most `--config` entries.
pub const MAX_CONFIG: usize = 64;
/// Longest config key and value.
pub const MAX_CONFIG_KEY: usize = 64;
pub const MAX_CONFIG_VALUE: usize = 4096;
/// Most bytes of all keys and values together (they travel in one signed request).
pub const MAX_CONFIG_TOTAL: usize = 32 * 1024;
/// Largest `message` payload.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A tenant's signed request to run (or upgrade) a package on its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    /// Chosen by the tenant (random); a retry reuses it.
    pub deployment_id: [u8; 16],
    pub lease_id: LeaseId,
    pub host: [u8; 32],
    pub tenant: [u8; 32],
    /// blake3 of the component (as in the manifest).
    pub package_hash: [u8; 32],
    pub config: Vec<(String, String)>,
    /// Replace the code of an existing deployment, keeping its key-value store.
    pub upgrade: bool,
    pub created_ms: u64,
}

impl Kind for DeployRequest {
    const TAG: &'static str = "degroup/deploy/v1";
    const MAX_SIZE: usize = 64 * 1024 + 1024;
}

/// Checks `--config` entries against the limits.
pub fn check_config(config: &[(String, String)]) -> Result<(), String> {
    if config.len() > MAX_CONFIG {
        return Err(format!("at most {MAX_CONFIG} --config entries"));
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
    /// Run a package: the signed [`DeployRequest`], the signed manifest, the component.
    Deploy {
        request: Vec<u8>,
        manifest: Vec<u8>,
        component: Vec<u8>,
    },
    /// The sender's deployments on this host.
    List,
    /// Log lines of one of the sender's deployments after a sequence number.
    Logs {
        deployment: String,
        after: u64,
        limit: u32,
    },
    /// Stop one of the sender's deployments (its key-value store is deleted).
    Stop { deployment: String },
    /// Deliver a payload to one of the sender's deployments (`message` export).
    Message {
        deployment: String,
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
}

/// A refusal: code and a sentence saying what to do.
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

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployReply {
    Deployment(Box<View>),
    List(Vec<View>),
    Logs(LogPage),
    Ok,
    Refused(Refusal),
}

/// The codec.
pub type DeployCodec =
    crate::net::codec::CappedCodec<DeployMsg, DeployReply, MAX_MSG_FRAME, MAX_REPLY_FRAME>;

/// Decodes a request frame from raw bytes (the fuzz target's entry point).
pub fn decode_msg(bytes: &[u8]) -> Result<DeployMsg, crate::signed::EnvelopeError> {
    if bytes.len() as u64 > MAX_MSG_FRAME {
        return Err(crate::signed::EnvelopeError::TooLarge {
            size: bytes.len(),
            max: MAX_MSG_FRAME as usize,
        });
    }
    decode_exact(bytes)
}
