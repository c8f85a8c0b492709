//! Plugin failures, each with a stable [`ErrorCode`].

use libp2p::PeerId;

use super::package::PackageError;
use super::runtime::SandboxError;
use super::wire::Refusal;
use crate::blobs::BlobError;
use crate::catalogue::ResolveError;
use crate::error::{Coded, ErrorCode, Internal};
use crate::lease::LeaseError;
use crate::net::RequestError;
use crate::store::StoreError;

/// Plugin failures that reach users.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    /// The deployment or lease is in a state (or on a side) that does not allow this.
    #[error("{0}")]
    Conflict(String),
    #[error("the host refused: {}", .0.message)]
    Refused(Refusal),
    #[error(
        "cannot reach host {peer}: {source}; check that it runs and that this node knows its address (`degroup find`)"
    )]
    Unreachable {
        peer: PeerId,
        #[source]
        source: RequestError,
    },
    /// The message was sent but its answer is unknown: the host may have acted on it.
    #[error("no answer from host {peer}: {source}; the host may or may not have done it")]
    OutcomeUnknown {
        peer: PeerId,
        #[source]
        source: RequestError,
    },
    #[error("the host broke the deploy protocol: {0}")]
    Protocol(String),
    #[error("package: {0}")]
    Package(#[from] PackageError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Internal(#[from] Internal),
    #[error("the plugin service has stopped")]
    Stopped,
    /// A bounded queue is full: retry later.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

impl PluginError {
    /// An internal failure (randomness, signing, a thread) with its source.
    pub(crate) fn internal(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        PluginError::Internal(Internal::new(what, source))
    }

    /// A request that got no answer: unreachable if it never left, unknown outcome if it may
    /// have arrived.
    pub(crate) fn from_request(peer: PeerId, source: RequestError) -> Self {
        if source.maybe_delivered() {
            PluginError::OutcomeUnknown { peer, source }
        } else {
            PluginError::Unreachable { peer, source }
        }
    }
}

impl Coded for PluginError {
    fn code(&self) -> ErrorCode {
        match self {
            PluginError::BadInput(_) => ErrorCode::BadInput,
            PluginError::NotFound(_) => ErrorCode::NotFound,
            PluginError::Conflict(_) => ErrorCode::Conflict,
            PluginError::Refused(r) => r.code.error_code(),
            PluginError::Unreachable { .. } => ErrorCode::HostUnreachable,
            PluginError::OutcomeUnknown { .. } => ErrorCode::OutcomeUnknown,
            PluginError::Protocol(_) => ErrorCode::ProtocolError,
            PluginError::Package(_) | PluginError::Sandbox(_) => ErrorCode::InvalidPackage,
            PluginError::Store(_) | PluginError::Internal(_) => ErrorCode::Internal,
            PluginError::Lease(e) => e.code(),
            PluginError::Stopped | PluginError::Busy(_) => ErrorCode::Unavailable,
            PluginError::Blob(e) => e.code(),
            PluginError::Resolve(e) => e.code(),
        }
    }
}
