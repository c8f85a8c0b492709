//! The `/degroup/lease/1` request-response protocol: what travels, and its limits.
//!
//! Every message that carries meaning is a signed envelope (see [`super::contract`]); the
//! frames around them ([`LeaseMsg`], [`LeaseReply`]) are postcard, read with a hard size cap and
//! with trailing bytes rejected ([`LeaseProtocol`] declares both to `net`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::net::{Limits, PeerLimits, Protocol};

use crate::resources::{LeaseId, Resources};
use crate::signed::decode_exact;

/// Largest request frame.
pub const MAX_MSG_FRAME: usize = 16 * 1024;
/// Largest reply frame (a page of receipts).
pub const MAX_REPLY_FRAME: usize = 1024 * 1024;
/// Most receipts in one reply.
pub const MAX_RECEIPTS_PER_REPLY: usize = 200;

/// A message to a host (or, for [`LeaseMsg::Ended`], to a tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseMsg {
    /// A signed [`super::contract::LeaseRequest`].
    Request(Vec<u8>),
    /// A signed [`super::contract::Acceptance`].
    Accept(Vec<u8>),
    /// A signed [`super::contract::ReleaseRequest`].
    Release(Vec<u8>),
    /// Host → tenant: a signed [`super::contract::LeaseEnd`] (termination notice).
    Ended(Vec<u8>),
    /// The receipts of a lease with a period starting at or after `since_ms`.
    Receipts { lease_id: LeaseId, since_ms: u64 },
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseReply {
    /// A signed [`super::contract::Contract`], held for the tenant's countersignature.
    Offer(Vec<u8>),
    /// The lease is durably committed on the host: both signed envelopes.
    Committed {
        contract: Vec<u8>,
        acceptance: Vec<u8>,
    },
    /// A signed [`super::contract::LeaseEnd`].
    Ended(Vec<u8>),
    /// Signed [`super::contract::UsageReceipt`]s, oldest first.
    Receipts(Vec<Vec<u8>>),
    /// Noted.
    Ok,
    /// Refused, with the reason; nothing changed on the host.
    Refused(Refusal),
}

/// Why a host refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalCode {
    /// Not enough free capacity; `free` says what is.
    Capacity,
    /// Host policy: tenant not allowed, duration out of bounds, price below minimum.
    Policy,
    /// Above the tenant's maximum price.
    Price,
    /// Malformed, forged, wrongly signed or addressed to someone else.
    Invalid,
    /// A nonce seen before with another idempotency key, or a stale request.
    Replay,
    /// No such lease or offer (or not yours).
    Unknown,
    /// The lease is not active.
    NotActive,
    /// The host is overloaded or its store failed; try again.
    Unavailable,
}

impl RefusalCode {
    /// What the refusal means to the tenant's admin API.
    pub fn error_code(self) -> ErrorCode {
        match self {
            RefusalCode::Capacity => ErrorCode::CapacityExhausted,
            RefusalCode::Policy => ErrorCode::Forbidden,
            RefusalCode::Price => ErrorCode::PriceTooHigh,
            RefusalCode::Invalid => ErrorCode::BadInput,
            RefusalCode::Replay | RefusalCode::NotActive => ErrorCode::Conflict,
            RefusalCode::Unknown => ErrorCode::NotFound,
            RefusalCode::Unavailable => ErrorCode::Unavailable,
        }
    }

    /// Short label for metrics and JSON.
    pub fn label(self) -> &'static str {
        match self {
            RefusalCode::Capacity => "capacity",
            RefusalCode::Policy => "policy",
            RefusalCode::Price => "price",
            RefusalCode::Invalid => "invalid",
            RefusalCode::Replay => "replay",
            RefusalCode::Unknown => "unknown",
            RefusalCode::NotActive => "not_active",
            RefusalCode::Unavailable => "unavailable",
        }
    }
}

/// A refusal: code, message for people, and what is free when capacity was short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
    pub free: Option<Resources>,
}

impl Refusal {
    /// A refusal without a capacity figure.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            free: None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What one tenant may ask of a host: a tenant may run many negotiations at once (the
/// over-booking test sends 1,000, the benchmark 3,000 a second).
const LEASE_PEER: PeerLimits = PeerLimits {
    inflight: 1024,
    per_second: 5000,
    burst: 5000,
    bytes_per_second: 64 * 1024 * 1024,
};

/// The protocol, as `net` runs it.
#[derive(Debug)]
pub struct LeaseProtocol;

impl Protocol for LeaseProtocol {
    const NAME: &'static str = "/degroup/lease/1";
    const LIMITS: Limits = Limits {
        max_request: MAX_MSG_FRAME,
        max_response: MAX_REPLY_FRAME,
        // A tenant may run many negotiations at once (the over-booking test sends 1,000).
        max_inflight: 1024,
        queue: 4096,
        timeout: Duration::from_secs(10),
        per_peer: LEASE_PEER,
        over_relay: true,
    };
    type Request = LeaseMsg;
    type Response = LeaseReply;

    fn unavailable(message: &str) -> LeaseReply {
        LeaseReply::Refused(Refusal::new(RefusalCode::Unavailable, message))
    }
}

/// Decodes a request frame from raw bytes (the fuzz target's entry point).
pub fn decode_msg(bytes: &[u8]) -> Result<LeaseMsg, crate::signed::EnvelopeError> {
    if bytes.len() > MAX_MSG_FRAME {
        return Err(crate::signed::EnvelopeError::TooLarge {
            size: bytes.len(),
            max: MAX_MSG_FRAME,
        });
    }
    decode_exact(bytes)
}
