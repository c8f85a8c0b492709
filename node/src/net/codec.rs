//! A request-response codec for postcard frames with a size cap per direction.
//!
//! Each frame is one postcard value filling the stream (the writer closes its side); the reader
//! takes at most the cap plus one byte, refuses anything larger, and refuses trailing bytes.

use std::marker::PhantomData;

use libp2p::StreamProtocol;
use serde::Serialize;
use serde::de::DeserializeOwned;

use futures::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::signed::decode_exact;

/// Reads one postcard frame of at most `cap` bytes, rejecting trailing bytes.
async fn read_capped<T, R>(io: &mut R, cap: u64) -> std::io::Result<T>
where
    T: DeserializeOwned,
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
async fn write_all<T, W>(io: &mut W, value: &T) -> std::io::Result<()>
where
    T: Serialize,
    W: futures::AsyncWrite + Unpin + Send,
{
    let bytes = postcard::to_stdvec(value).map_err(|e| std::io::Error::other(e.to_string()))?;
    io.write_all(&bytes).await?;
    io.close().await
}

/// Postcard codec for requests `Req` (at most `REQ_MAX` bytes) and responses `Resp` (at most
/// `RESP_MAX` bytes).
pub struct CappedCodec<Req, Resp, const REQ_MAX: u64, const RESP_MAX: u64>(
    PhantomData<fn() -> (Req, Resp)>,
);

impl<Req, Resp, const A: u64, const B: u64> Default for CappedCodec<Req, Resp, A, B> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Req, Resp, const A: u64, const B: u64> Clone for CappedCodec<Req, Resp, A, B> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<Req, Resp, const A: u64, const B: u64> std::fmt::Debug for CappedCodec<Req, Resp, A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CappedCodec<{A}, {B}>")
    }
}

impl<Req, Resp, const REQ_MAX: u64, const RESP_MAX: u64> libp2p::request_response::Codec
    for CappedCodec<Req, Resp, REQ_MAX, RESP_MAX>
where
    Req: Serialize + DeserializeOwned + Send + Sync + 'static,
    Resp: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Req>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_capped(io, REQ_MAX).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Resp>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_capped(io, RESP_MAX).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Req,
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
        res: Resp,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_all(io, &res).await
    }
}
