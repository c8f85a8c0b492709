//! A request-response codec for postcard frames with a size cap per direction.
//!
//! Each frame is one postcard value filling the stream (the writer closes its side); the reader
//! takes at most the cap plus one byte, refuses anything larger, and refuses trailing bytes.

use std::marker::PhantomData;

use libp2p::StreamProtocol;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::sync::{read_capped, write_all};

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
