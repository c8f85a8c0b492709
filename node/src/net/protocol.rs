//! Application protocols: one trait, one generic way to ask and to answer.
//!
//! A protocol is a type implementing [`Protocol`]: its name, its request and response types
//! (postcard frames, see [`super::frame`]) and its [`Limits`]. The domain that owns it registers
//! it once with [`super::NetworkBuilder::serve`], which hands back an [`Inbound`] queue of typed
//! requests, and asks peers with [`super::Network::request`]. Nothing here knows what any
//! protocol is for.
//!
//! Serving, for every protocol alike:
//! - at most [`Limits::max_inflight`] inbound streams are read or answered at once; beyond that
//!   a new stream is reset at once;
//! - a request is read within [`Limits::timeout`], capped at [`Limits::max_request`] bytes, and
//!   decoded (trailing bytes refused); anything else closes the stream unanswered;
//! - decoded requests wait in a queue of [`Limits::queue`] for the application; when it is full
//!   the peer is answered [`Protocol::unavailable`] at once (back-pressure, never a hang);
//! - the application answers through the request's [`Responder`], within [`Limits::timeout`], and
//!   the answer must be read by the peer within [`Limits::timeout`] too (a peer that stops
//!   reading gives its permit back then).

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use libp2p::swarm::{Stream, StreamProtocol};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::frame;
use super::streams::OpenError;

/// What a host answers when a protocol's inbound queue is full.
pub const BUSY: &str = "the node is busy; retry in a moment";

/// The limits of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request frame, in bytes.
    pub max_request: usize,
    /// Largest response frame, in bytes.
    pub max_response: usize,
    /// Most inbound streams of this protocol being read or answered at once, all peers
    /// together; more are reset.
    pub max_inflight: usize,
    /// Decoded requests waiting for the application; a full queue answers "unavailable".
    pub queue: usize,
    /// Longest time for one request: opening, sending and the answer (outbound); reading and
    /// answering (inbound).
    pub timeout: Duration,
    /// What one peer may use of this protocol (a share of the totals above).
    pub per_peer: PeerLimits,
    /// Whether requests may travel over a relayed connection (relays carry little: a circuit
    /// has a byte and time budget). A protocol that may not waits for a direct connection.
    pub over_relay: bool,
}

/// What one peer may use of one protocol; the node's config may lower or raise them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// Streams of this protocol one peer may have read or answered at once.
    pub inflight: usize,
    /// Requests one peer may open per second, sustained.
    pub per_second: u32,
    /// Requests one peer may open at once above the sustained rate.
    pub burst: u32,
    /// Request bytes one peer may send per second, sustained (a burst of one largest request
    /// is always allowed).
    pub bytes_per_second: u64,
}

impl PeerLimits {
    /// The defaults for a protocol that declares nothing special.
    pub const DEFAULT: PeerLimits = PeerLimits {
        inflight: 32,
        per_second: 100,
        burst: 200,
        bytes_per_second: 4 * 1024 * 1024,
    };
}

/// An application protocol.
pub trait Protocol: Send + Sync + 'static {
    /// The libp2p protocol name, e.g. `/degroup/lease/1`.
    const NAME: &'static str;
    /// Its limits.
    const LIMITS: Limits;
    /// What a requester sends.
    type Request: Serialize + DeserializeOwned + Send + 'static;
    /// What a server answers.
    type Response: Serialize + DeserializeOwned + Send + 'static;

    /// The answer to a request that finds the inbound queue full: the protocol's own way of
    /// saying "unavailable, retry".
    fn unavailable(message: &str) -> Self::Response;

    /// The stream protocol name.
    fn stream_protocol() -> StreamProtocol {
        StreamProtocol::new(Self::NAME)
    }
}

/// A request from a peer, with the way to answer it.
#[derive(Debug)]
pub struct InboundRequest<P: Protocol> {
    /// Who sent it (authenticated by the connection's noise handshake).
    pub peer: PeerId,
    pub request: P::Request,
    pub reply: Responder<P>,
}

/// Answers one inbound request. Dropping it unanswered closes the stream: the peer sees an
/// error, not a hang.
pub struct Responder<P: Protocol> {
    tx: oneshot::Sender<P::Response>,
}

impl<P: Protocol> std::fmt::Debug for Responder<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Responder({})", P::NAME)
    }
}

impl<P: Protocol> Responder<P> {
    /// Sends the answer (nothing happens if the peer has gone).
    pub fn send(self, response: P::Response) {
        let _ = self.tx.send(response);
    }

    /// Whether the peer's stream is gone (timed out or closed): the answer would be lost.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The inbound requests of one protocol, as registered with
/// [`super::NetworkBuilder::serve`].
pub struct Inbound<P: Protocol> {
    rx: mpsc::Receiver<InboundRequest<P>>,
}

impl<P: Protocol> std::fmt::Debug for Inbound<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inbound({})", P::NAME)
    }
}

impl<P: Protocol> Inbound<P> {
    /// The next request; `None` once the network has stopped.
    pub async fn recv(&mut self) -> Option<InboundRequest<P>> {
        self.rx.recv().await
    }

    /// A request if one is waiting.
    pub fn try_recv(&mut self) -> Option<InboundRequest<P>> {
        self.rx.try_recv().ok()
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the network task has stopped")]
    Stopped,
    #[error("cannot reach the peer: {0}")]
    Unreachable(#[source] OpenError),
    #[error("no answer within {} s", .after.as_secs_f32())]
    Timeout { after: Duration, sent: bool },
    #[error("the request was sent but no valid answer came back: {0}")]
    NoAnswer(#[source] std::io::Error),
}

impl RequestError {
    /// Whether the peer may have received (and acted on) the request: then its outcome is
    /// unknown, and only an idempotent retry is safe.
    pub fn maybe_delivered(&self) -> bool {
        match self {
            RequestError::Timeout { sent, .. } => *sent,
            RequestError::NoAnswer(_) => true,
            RequestError::Stopped | RequestError::Unreachable(_) => false,
        }
    }
}

/// The serving side of one registered protocol, built by [`serve`]: its inbound stream queue
/// (for the swarm's handlers) and the task that reads and answers.
pub(crate) struct Server {
    pub protocol: StreamProtocol,
    pub streams: mpsc::Sender<(PeerId, Stream)>,
    pub task: futures::future::BoxFuture<'static, ()>,
}

/// Sets up serving `P`: the typed queue the application reads, and the server task.
pub(crate) fn serve<P: Protocol>() -> (Server, Inbound<P>) {
    let limits = P::LIMITS;
    let (requests_tx, requests_rx) = mpsc::channel(limits.queue.max(1));
    let (streams_tx, streams_rx) = mpsc::channel(limits.max_inflight.max(1));
    let server = Server {
        protocol: P::stream_protocol(),
        streams: streams_tx,
        task: Box::pin(accept::<P>(streams_rx, requests_tx)),
    };
    (server, Inbound { rx: requests_rx })
}

async fn accept<P: Protocol>(
    mut streams: mpsc::Receiver<(PeerId, Stream)>,
    requests: mpsc::Sender<InboundRequest<P>>,
) {
    let permits = Arc::new(Semaphore::new(P::LIMITS.max_inflight.max(1)));
    // Encoded once: the answer of a full queue.
    let busy: Arc<[u8]> = frame::encode(&P::unavailable(BUSY))
        .unwrap_or_default()
        .into();
    while let Some((peer, stream)) = streams.recv().await {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, protocol = P::NAME, "inbound stream reset: too many in flight");
            continue;
        };
        let requests = requests.clone();
        let busy = busy.clone();
        tokio::spawn(async move {
            answer::<P>(peer, stream, &requests, &busy).await;
            drop(permit);
        });
    }
}

async fn answer<P: Protocol>(
    peer: PeerId,
    mut stream: Stream,
    requests: &mpsc::Sender<InboundRequest<P>>,
    busy: &[u8],
) {
    let timeout = P::LIMITS.timeout;
    let read = frame::read::<P::Request, _>(&mut stream, P::LIMITS.max_request);
    let request = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(%peer, protocol = P::NAME, error = %e, "inbound request refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, protocol = P::NAME, "inbound request not read in time");
            return;
        }
    };
    let (tx, rx) = oneshot::channel();
    let inbound = InboundRequest {
        peer,
        request,
        reply: Responder { tx },
    };
    if requests.try_send(inbound).is_err() {
        // The application is saturated (or gone): say so at once.
        let _ = tokio::time::timeout(timeout, frame::write(&mut stream, busy)).await;
        return;
    }
    // Dropped unanswered, or too slow: the stream closes without an answer.
    let Ok(Ok(response)) = tokio::time::timeout(timeout, rx).await else {
        return;
    };
    match frame::encode(&response) {
        Ok(bytes) if bytes.len() <= P::LIMITS.max_response => {
            // A peer that stops reading holds its in-flight permit only until the timeout.
            match tokio::time::timeout(timeout, frame::write(&mut stream, &bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, protocol = P::NAME, error = %e, "answer not sent");
                }
                Err(_) => {
                    tracing::debug!(%peer, protocol = P::NAME, "answer not read in time; dropped");
                }
            }
        }
        Ok(bytes) => tracing::warn!(
            protocol = P::NAME,
            size = bytes.len(),
            "answer over the protocol's response cap; not sent"
        ),
        Err(e) => tracing::warn!(protocol = P::NAME, error = %e, "answer not encodable"),
    }
}

/// Sends one request on an open stream and reads the answer.
pub(crate) async fn exchange<P: Protocol>(
    mut stream: Stream,
    request: &[u8],
) -> Result<P::Response, RequestError> {
    frame::write(&mut stream, request)
        .await
        .map_err(RequestError::NoAnswer)?;
    frame::read::<P::Response, _>(&mut stream, P::LIMITS.max_response)
        .await
        .map_err(RequestError::NoAnswer)
}
