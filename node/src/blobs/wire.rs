//! `/degroup/blob/1`: ask a peer for the size of a blob, or for a run of its chunk groups as a
//! bao-encoded (BLAKE3-verifiable) response.
//!
//! A `Get` names chunk groups ([`super::CHUNK_GROUP`] bytes each, the last one possibly
//! shorter), at most [`MAX_GROUPS_PER_REQUEST`] of them; the answer is the bao encoding of
//! exactly that range: the parent hash pairs on the way from the root and the leaf data, in
//! pre-order, which the asker verifies group by group against the hash it asked for. A
//! `Size` answer is not trusted: the asker checks it by verifying the last chunk group, which
//! proves the size.
//!
//! Frames are postcard with a hard cap per direction; [`decode_request`] and [`decode_reply`]
//! apply the same caps and refuse trailing bytes (they are what the fuzz target drives).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CHUNK_GROUP, Hash};
use crate::error::ErrorCode;
use crate::net::{Limits, PeerLimits, Protocol};
use crate::signed::{EnvelopeError, decode_exact};

/// Most chunk groups one `Get` asks for: 1 MiB.
pub const MAX_GROUPS_PER_REQUEST: u32 = 64;
/// Largest request frame.
pub const MAX_REQUEST: usize = 128;
/// Largest reply frame: a full range of leaf data plus its parent hashes (at most one pair per
/// group of the range plus one per tree level) and the framing.
pub const MAX_REPLY: usize = MAX_GROUPS_PER_REQUEST as usize * (CHUNK_GROUP + 64) + 64 * 64 + 1024;

/// What a peer asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobRequest {
    /// The size of a blob.
    Size { hash: Hash },
    /// Chunk groups `first_group .. first_group + groups` of a blob, bao-encoded.
    Get {
        hash: Hash,
        first_group: u64,
        groups: u32,
    },
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobRefusal {
    /// This node does not hold the blob.
    NotFound,
    /// The blob is private and the asker is not among the peers allowed to fetch it.
    Forbidden,
    /// Too many transfers or bytes for this peer right now; retry in a moment.
    Busy,
    /// The request is malformed (a range outside the blob, too many groups).
    Invalid,
}

impl BlobRefusal {
    /// The stable code of the refusal.
    pub fn error_code(self) -> ErrorCode {
        match self {
            BlobRefusal::NotFound => ErrorCode::NotFound,
            BlobRefusal::Forbidden => ErrorCode::Forbidden,
            BlobRefusal::Busy => ErrorCode::Unavailable,
            BlobRefusal::Invalid => ErrorCode::BadInput,
        }
    }
}

/// What a server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobReply {
    /// The blob's size in bytes (to be verified by the asker).
    Size(u64),
    /// The bao encoding of the asked range: parent pairs and leaf data, pre-order.
    Data(Vec<u8>),
    /// Not answered, and why.
    Refused { code: BlobRefusal, message: String },
}

impl BlobReply {
    /// A refusal.
    pub fn refused(code: BlobRefusal, message: impl Into<String>) -> Self {
        BlobReply::Refused {
            code,
            message: message.into(),
        }
    }
}

/// The protocol.
#[derive(Debug)]
pub struct BlobProtocol;

impl Protocol for BlobProtocol {
    const NAME: &'static str = "/degroup/blob/1";
    const LIMITS: Limits = Limits {
        max_request: MAX_REQUEST,
        max_response: MAX_REPLY,
        max_inflight: 128,
        queue: 128,
        timeout: Duration::from_secs(30),
        per_peer: PeerLimits::DEFAULT,
        over_relay: false,
    };
    type Request = BlobRequest;
    type Response = BlobReply;

    fn unavailable(message: &str) -> BlobReply {
        BlobReply::refused(BlobRefusal::Busy, message)
    }
}

fn capped(bytes: &[u8], max: usize) -> Result<(), EnvelopeError> {
    if bytes.len() > max {
        return Err(EnvelopeError::TooLarge {
            size: bytes.len(),
            max,
        });
    }
    Ok(())
}

/// Decodes a request frame: capped at [`MAX_REQUEST`], trailing bytes refused.
pub fn decode_request(bytes: &[u8]) -> Result<BlobRequest, EnvelopeError> {
    capped(bytes, MAX_REQUEST)?;
    decode_exact(bytes)
}

/// Decodes a reply frame: capped at [`MAX_REPLY`], trailing bytes refused.
pub fn decode_reply(bytes: &[u8]) -> Result<BlobReply, EnvelopeError> {
    capped(bytes, MAX_REPLY)?;
    decode_exact(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_are_capped() {
        let req = BlobRequest::Get {
            hash: [7; 32],
            first_group: u64::MAX,
            groups: u32::MAX,
        };
        let bytes = postcard::to_stdvec(&req).unwrap_or_default();
        assert!(bytes.len() <= MAX_REQUEST);
        assert_eq!(decode_request(&bytes), Ok(req));
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode_request(&trailing).is_err());

        let full = BlobReply::Data(vec![
            0;
            MAX_GROUPS_PER_REQUEST as usize * CHUNK_GROUP + 64 * 128
        ]);
        let bytes = postcard::to_stdvec(&full).unwrap_or_default();
        assert!(bytes.len() <= MAX_REPLY);
        assert_eq!(decode_reply(&bytes), Ok(full));
        assert!(decode_reply(&vec![0; MAX_REPLY + 1]).is_err());
    }
}
