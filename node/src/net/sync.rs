//! Late-joiner sync of adverts: `/degroup/adverts/sync/1`, a request-response protocol.
//!
//! When a connection to a new peer is established, the node asks it for its current adverts,
//! page by page (host order, at most [`PAGE_LIMIT`] per page), telling it which adverts it
//! already holds so that only the missing or newer ones travel; each advert is validated exactly
//! as if it had come by gossip. Messages are postcard, read with a hard cap, trailing bytes
//! rejected.

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::capacity::advert::MAX_ADVERT_SIZE;
use crate::signed::decode_exact;

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
#[derive(Debug, Clone, Default)]
pub struct SyncCodec;

/// Reads one postcard frame of at most `cap` bytes, rejecting trailing bytes.
pub(crate) async fn read_capped<T, R>(io: &mut R, cap: u64) -> std::io::Result<T>
where
    T: serde::de::DeserializeOwned,
    R: futures::AsyncRead + Unpin + Send,
{
    let mut buf = Vec::new();
    io.take(cap + 1).read_to_end(&mut buf).await?;
    if buf.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "message over its size cap",
        ));
    }
    decode_exact(&buf)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Writes one postcard frame and closes the stream.
pub(crate) async fn write_all<T, W>(io: &mut W, value: &T) -> std::io::Result<()>
where
    T: Serialize,
    W: futures::AsyncWrite + Unpin + Send,
{
    let bytes = postcard::to_stdvec(value).map_err(|e| std::io::Error::other(e.to_string()))?;
    io.write_all(&bytes).await?;
    io.close().await
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<SyncRequest>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_capped(io, MAX_REQUEST).await
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<SyncResponse>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_capped(io, MAX_RESPONSE).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_all(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncResponse,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_all(io, &res).await
    }
}
