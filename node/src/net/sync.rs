//! Late-joiner sync of adverts: `/degroup/adverts/sync/1`, a request-response protocol.
//!
//! When a connection to a new peer is established, the node asks it for its current adverts,
//! page by page (host order, at most [`PAGE_LIMIT`] per page), telling it which adverts it
//! already holds so that only the missing or newer ones travel; each advert is validated exactly
//! as if it had come by gossip. Messages are postcard, read with a hard cap, trailing bytes
//! rejected.

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use super::codec::CappedCodec;
use crate::capacity::advert::MAX_ADVERT_SIZE;

/// Protocol name.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/degroup/adverts/sync/1");
/// Most adverts per page.
pub const PAGE_LIMIT: u16 = 64;
const MAX_REQUEST: u64 = 256 + (MAX_KNOWN as u64) * 20;
const MAX_RESPONSE: u64 = (PAGE_LIMIT as u64) * (MAX_ADVERT_SIZE as u64 + 8) + 256;

/// Most entries in a request's summary of what the requester holds.
pub const MAX_KNOWN: usize = 1024;

/// Ask for the adverts of hosts after `after`, except those the requester already holds at
/// least as new (`known`: host key prefix, sequence number; empty means "send everything").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncRequest {
    pub after: Option<[u8; 32]>,
    pub limit: u16,
    pub known: Vec<([u8; 8], u64)>,
}

/// A page of advert envelopes, and the cursor of the next page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncResponse {
    pub adverts: Vec<Vec<u8>>,
    pub next: Option<[u8; 32]>,
}

/// Postcard codec with size caps.
pub type SyncCodec = CappedCodec<SyncRequest, SyncResponse, MAX_REQUEST, MAX_RESPONSE>;
