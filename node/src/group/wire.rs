//! The two protocols of groups: `/degroup/group/1` (documents and leave notices, to hosts)
//! and `/degroup/mesh/1` (one message between deployments on two hosts).
//!
//! A mesh request is a [`MeshEnvelope`] signed by the sending host ([`MESH_TAG`]): sender and
//! receiver deployments, tenant, group name and version the sender held, and the payload
//! (at most [`crate::plugin::control::MAX_MESH_PAYLOAD`]). The receiving host checks the
//! signature, that the signer is the connection's peer and the sender's listed host in its
//! own newest document, that both are members, that the receiver runs here, and the
//! sender's rate; it answers with a [`MeshReply`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::doc::MAX_GROUP_SIZE;
use crate::net::{Limits, PeerLimits, Protocol};
use crate::plugin::control::{MAX_MESH_PAYLOAD, SendError};
use crate::signed::Kind;

/// Domain tag of mesh messages.
pub const MESH_TAG: &str = "degroup/mesh/v1";

/// A message to a host about groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupMsg {
    /// A signed [`super::doc::GroupDoc`] envelope, from its tenant.
    Doc(Vec<u8>),
    /// A signed [`super::doc::Left`] notice, from a member's host.
    Left(Vec<u8>),
}

/// A host's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupReply {
    /// Held (or older than what is held: acknowledged and ignored).
    Ok,
    /// Refused for good: bad signature, malformed, not for this host.
    Refused(String),
    /// The host is busy; retry.
    Busy(String),
}

/// `/degroup/group/1`.
#[derive(Debug, Clone, Copy)]
pub struct GroupProtocol;

impl Protocol for GroupProtocol {
    const NAME: &'static str = "/degroup/group/1";
    const LIMITS: Limits = Limits {
        max_request: MAX_GROUP_SIZE + 1024,
        max_response: 4096,
        max_inflight: 64,
        queue: 256,
        timeout: Duration::from_secs(10),
        per_peer: PeerLimits::DEFAULT,
        over_relay: true,
    };
    type Request = GroupMsg;
    type Response = GroupReply;

    fn unavailable(message: &str) -> GroupReply {
        GroupReply::Busy(message.to_owned())
    }
}

/// One mesh message, as the sending host signs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshEnvelope {
    /// Sender deployment id (32 hex digits).
    pub from: String,
    /// Receiver deployment id.
    pub to: String,
    /// The tenant's key.
    pub tenant: [u8; 32],
    pub group: String,
    /// The group version the sender's host held.
    pub version: u64,
    pub payload: Vec<u8>,
}

impl Kind for MeshEnvelope {
    const TAG: &'static str = MESH_TAG;
    const MAX_SIZE: usize = MAX_MESH_PAYLOAD + 1024;
}

/// What the receiving host did with a mesh message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeshReply {
    Delivered,
    InboxFull,
    NotInGroup,
    Unknown,
    Unreachable,
    RateLimited,
    /// Forged, malformed, or from a peer that is not the sender's host.
    Refused,
    /// The host is busy.
    Busy,
}

impl MeshReply {
    /// What the sender's plugin is told.
    pub fn result(self) -> Result<(), SendError> {
        match self {
            MeshReply::Delivered => Ok(()),
            MeshReply::InboxFull => Err(SendError::InboxFull),
            MeshReply::NotInGroup | MeshReply::Refused => Err(SendError::NotInGroup),
            MeshReply::Unknown => Err(SendError::Unknown),
            MeshReply::Unreachable | MeshReply::Busy => Err(SendError::Unreachable),
            MeshReply::RateLimited => Err(SendError::RateLimited),
        }
    }
}

/// `/degroup/mesh/1`: the request is a signed [`MeshEnvelope`], as bytes.
#[derive(Debug, Clone, Copy)]
pub struct MeshProtocol;

impl Protocol for MeshProtocol {
    const NAME: &'static str = "/degroup/mesh/1";
    const LIMITS: Limits = Limits {
        max_request: MAX_MESH_PAYLOAD + 4096,
        max_response: 64,
        max_inflight: 1024,
        queue: 4096,
        timeout: Duration::from_secs(5),
        per_peer: PeerLimits::DEFAULT,
        over_relay: true,
    };
    type Request = Vec<u8>;
    type Response = MeshReply;

    fn unavailable(_message: &str) -> MeshReply {
        MeshReply::Busy
    }
}
