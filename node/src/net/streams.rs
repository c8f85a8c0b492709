//! A libp2p behaviour that hands out raw streams of named protocols, and nothing more.
//!
//! Application protocols ([`super::Protocol`]) need two things from the swarm: an outbound
//! stream to a peer for a protocol name (dialling the peer first when there is no connection),
//! and the inbound streams peers open for the protocols this node serves. Framing, size caps,
//! timeouts and concurrency are the protocol layer's business ([`super::protocol`]); this
//! behaviour knows protocol names only.
//!
//! Inbound streams are handed over through one bounded queue per protocol. A queue that is
//! full (more streams of that protocol in flight than its limit allows) drops the new stream,
//! which resets it: the opener sees the failure at once instead of waiting for a timeout.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, DialError,
    FromSwarm, NetworkBehaviour, NotifyHandler, Stream, StreamProtocol, StreamUpgradeError,
    SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use tokio::sync::{mpsc, oneshot};

/// Most stream openings waiting for a connection to one peer.
const MAX_WAITING_PER_PEER: usize = 4096;

/// Why no outbound stream could be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenError {
    #[error("cannot connect: {0}")]
    Dial(String),
    #[error("the peer does not speak {0}")]
    Unsupported(StreamProtocol),
    #[error("cannot open a stream: {0}")]
    Stream(String),
    #[error("too many requests are waiting for a connection to this peer")]
    Backlog,
    #[error("the connection closed before the stream opened")]
    Closed,
}

/// A stream opening asked for.
#[derive(Debug)]
pub(crate) struct Open {
    pub(crate) protocol: StreamProtocol,
    pub(crate) reply: oneshot::Sender<Result<Stream, OpenError>>,
}

/// Where the inbound streams of each served protocol go.
pub(crate) type InboundQueues = Arc<HashMap<StreamProtocol, mpsc::Sender<(PeerId, Stream)>>>;

/// The behaviour.
pub(crate) struct Streams {
    served: Arc<[StreamProtocol]>,
    queues: InboundQueues,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    waiting: HashMap<PeerId, Vec<Open>>,
    events: VecDeque<ToSwarm<Infallible, Open>>,
}

impl Streams {
    pub(crate) fn new(queues: InboundQueues) -> Self {
        let served: Vec<StreamProtocol> = queues.keys().cloned().collect();
        Self {
            served: served.into(),
            queues,
            connections: HashMap::new(),
            waiting: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// Opens a stream to `peer`, dialling `addrs` (and whatever the other behaviours know of
    /// it) when there is no connection.
    pub(crate) fn open(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, open: Open) {
        if let Some(&connection) = self.connections.get(&peer).and_then(|c| c.last()) {
            self.events.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(connection),
                event: open,
            });
            return;
        }
        let waiting = self.waiting.entry(peer).or_default();
        waiting.retain(|o| !o.reply.is_closed());
        if waiting.len() >= MAX_WAITING_PER_PEER {
            let _ = open.reply.send(Err(OpenError::Backlog));
            return;
        }
        waiting.push(open);
        self.events.push_back(ToSwarm::Dial {
            opts: DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .extend_addresses_through_behaviour()
                .build(),
        });
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            remote: peer,
            served: self.served.clone(),
            queues: self.queues.clone(),
            to_open: VecDeque::new(),
        }
    }
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("served", &self.served)
            .finish_non_exhaustive()
    }
}

impl NetworkBehaviour for Streams {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.connections
                    .entry(e.peer_id)
                    .or_default()
                    .push(e.connection_id);
                for open in self.waiting.remove(&e.peer_id).unwrap_or_default() {
                    self.events.push_back(ToSwarm::NotifyHandler {
                        peer_id: e.peer_id,
                        handler: NotifyHandler::One(e.connection_id),
                        event: open,
                    });
                }
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(list) = self.connections.get_mut(&e.peer_id) {
                    list.retain(|c| *c != e.connection_id);
                    if list.is_empty() {
                        self.connections.remove(&e.peer_id);
                    }
                }
            }
            FromSwarm::DialFailure(e) => {
                let Some(peer) = e.peer_id else { return };
                // A dial not started because one is under way (or the peer is connected)
                // changes nothing: the waiting openings go out with that connection.
                if matches!(e.error, DialError::DialPeerConditionFalse(_))
                    || self.connections.contains_key(&peer)
                {
                    return;
                }
                let reason = e.error.to_string();
                for open in self.waiting.remove(&peer).unwrap_or_default() {
                    let _ = open.reply.send(Err(OpenError::Dial(reason.clone())));
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.events.pop_front() {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }
}

/// The connection side: accepts the served protocols and opens what it is asked to.
pub(crate) struct Handler {
    remote: PeerId,
    served: Arc<[StreamProtocol]>,
    queues: InboundQueues,
    to_open: VecDeque<Open>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// What an outbound stream request carries: its protocol and who waits for it.
type Reply = (StreamProtocol, oneshot::Sender<Result<Stream, OpenError>>);

impl ConnectionHandler for Handler {
    type FromBehaviour = Open;
    type ToBehaviour = Infallible;
    type InboundProtocol = Names;
    type OutboundProtocol = Names;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Reply;

    fn listen_protocol(&self) -> SubstreamProtocol<Names, ()> {
        SubstreamProtocol::new(Names(self.served.to_vec()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Names, Reply, Infallible>> {
        while let Some(open) = self.to_open.pop_front() {
            // The asker gave up (timed out) while waiting: nothing to open.
            if open.reply.is_closed() {
                continue;
            }
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(
                    Names(vec![open.protocol.clone()]),
                    (open.protocol, open.reply),
                ),
            });
        }
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, open: Open) {
        self.to_open.push_back(open);
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<'_, Names, Names, (), Reply>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, protocol),
                ..
            }) => {
                let Some(queue) = self.queues.get(&protocol) else {
                    return;
                };
                if queue.try_send((self.remote, stream)).is_err() {
                    tracing::debug!(peer = %self.remote, %protocol, "inbound stream dropped: too many in flight");
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, _),
                info: (_, reply),
            }) => {
                let _ = reply.send(Ok(stream));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError {
                info: (protocol, reply),
                error,
            }) => {
                let error = match error {
                    StreamUpgradeError::NegotiationFailed => OpenError::Unsupported(protocol),
                    StreamUpgradeError::Timeout => {
                        OpenError::Stream("negotiation timed out".into())
                    }
                    StreamUpgradeError::Io(e) => OpenError::Stream(e.to_string()),
                    StreamUpgradeError::Apply(never) => match never {},
                };
                let _ = reply.send(Err(error));
            }
            _ => {}
        }
    }
}

/// The protocol names a stream may be negotiated for; the stream comes out as is.
#[derive(Debug, Clone)]
pub(crate) struct Names(Vec<StreamProtocol>);

impl UpgradeInfo for Names {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Names {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}

impl OutboundUpgrade<Stream> for Names {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_outbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}
