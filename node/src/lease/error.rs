//! Lease failures, each with a stable [`ErrorCode`].

use libp2p::PeerId;

use super::wire::{Refusal, RefusalCode};
use crate::capacity::units::format_size;
use crate::error::{Coded, ErrorCode, Internal};
use crate::net::RequestError;
use crate::store::StoreError;

/// Lease failures that reach users.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    /// The lease exists but is in the wrong state or on the wrong side for this.
    #[error("{0}")]
    Conflict(String),
    #[error("the host refused: {}", describe(.0))]
    Refused(Refusal),
    #[error(
        "cannot reach host {peer}: {source}; check that it runs and that this node knows its address (`degroup find`, or --bootstrap)"
    )]
    Unreachable {
        peer: PeerId,
        #[source]
        source: RequestError,
    },
    /// The message was sent but its answer is unknown: the host may have acted on it.
    #[error("no answer from host {peer} ({source}): the host may or may not have done it")]
    OutcomeUnknown {
        peer: PeerId,
        #[source]
        source: Box<LeaseError>,
    },
    #[error("the host broke the lease protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] Internal),
    #[error("the lease service has stopped")]
    Stopped,
}

impl LeaseError {
    /// An internal failure (randomness, signing) with its source.
    pub(crate) fn internal(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        LeaseError::Internal(Internal::new(what, source))
    }

    /// The failure of a message whose delivery is not in doubt when it failed to go out, and
    /// whose outcome is unknown when it may have arrived.
    pub(crate) fn from_request(peer: PeerId, source: RequestError) -> Self {
        if source.maybe_delivered() {
            LeaseError::OutcomeUnknown {
                peer,
                source: Box::new(LeaseError::Unreachable { peer, source }),
            }
        } else {
            LeaseError::Unreachable { peer, source }
        }
    }

    /// This error, when it hides whether the host acted: a failure after a message that
    /// changes state (a countersignature, a release) went out. A definite answer (a refusal
    /// other than "unavailable") stays what it is.
    pub(crate) fn after_commit_attempt(self, peer: PeerId) -> Self {
        match self {
            LeaseError::Refused(r) if r.code != RefusalCode::Unavailable => LeaseError::Refused(r),
            // "Could not store" or an answer outside the protocol: it may have committed.
            e @ (LeaseError::Protocol(_) | LeaseError::Refused(_)) => LeaseError::OutcomeUnknown {
                peer,
                source: Box::new(e),
            },
            // Not delivered (nothing changed on the host), already unknown, or local.
            other => other,
        }
    }
}

impl Coded for LeaseError {
    fn code(&self) -> ErrorCode {
        match self {
            LeaseError::BadInput(_) => ErrorCode::BadInput,
            LeaseError::NotFound(_) => ErrorCode::NotFound,
            LeaseError::Conflict(_) => ErrorCode::Conflict,
            LeaseError::Refused(r) => r.code.error_code(),
            LeaseError::Unreachable { .. } => ErrorCode::HostUnreachable,
            LeaseError::OutcomeUnknown { .. } => ErrorCode::OutcomeUnknown,
            LeaseError::Protocol(_) => ErrorCode::ProtocolError,
            LeaseError::Store(_) | LeaseError::Internal(_) => ErrorCode::Internal,
            LeaseError::Stopped => ErrorCode::Unavailable,
        }
    }
}

fn describe(r: &Refusal) -> String {
    match (&r.code, &r.free) {
        (RefusalCode::Capacity, Some(f)) => format!(
            "{} (free now: cpu {} cores, mem {}, disk {}, gpus {})",
            r.message,
            f.cpu_millis as f64 / 1000.0,
            format_size(f.mem_bytes),
            format_size(f.disk_bytes),
            f.gpus
        ),
        _ => r.message.clone(),
    }
}
