//! The libp2p side of the node, protocol-agnostic.
//!
//! One task ([`task`]) owns the [`libp2p::Swarm`] and is the only code that touches it. The rest
//! of the node holds a cloneable [`Network`] handle that sends commands over a channel, each
//! with a oneshot for the reply — the shape of rust-libp2p's file-sharing example. The task
//! multiplexes three sources: swarm events, commands, and a one-second housekeeping tick that
//! re-dials bootstrap peers with exponential backoff.
//!
//! Transports: TCP and QUIC, noise, yamux. Behaviours: connection limits, identify (which also
//! feeds Kademlia with the addresses peers announce), ping, Kademlia on the degroup-specific
//! protocol `/degroup/kad/1.0.0` (so that a node bootstrapped from one peer learns and connects
//! to the others), gossipsub, and a small stream behaviour ([`streams`]) for the application
//! protocols.
//!
//! `net` knows no application. Each application protocol is a type implementing [`Protocol`]
//! in the domain that owns it; the composition root registers it on the [`NetworkBuilder`]
//! ([`NetworkBuilder::serve`] hands back its typed [`Inbound`] queue) and the domain asks peers
//! with [`Network::request`]. Gossip topics are registered the same way, with the domain's
//! [`Validator`] ([`NetworkBuilder::topic`]), and published with [`Network::publish`].
//! Connection events reach the domains that care through [`NetworkBuilder::events`].
//!
//! Content discovery: [`Network::provide`] announces in Kademlia that this node holds the
//! value of a key (plain bytes; the domain chooses and namespaces its keys), and
//! [`Network::providers`] asks the DHT who does. Kademlia re-announces the local provider
//! records every [`PROVIDER_REPUBLISH`], well before they expire at the peers that store them
//! ([`PROVIDER_TTL`]); [`Network::unprovide`] stops that (records elsewhere then lapse).
//!
//! Adding a protocol: a type implementing [`Protocol`] in its domain's module, and one
//! `builder.serve::<ThatType>()` line in `node.rs`. Nothing here changes.

mod addrs;
mod behaviour;
mod bootstrap;
mod config;
mod frame;
mod gossip;
mod protocol;
mod streams;
mod task;

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::{Multiaddr, PeerId, gossipsub};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::identity::Identity;
use crate::metrics::NodeMetrics;

pub use addrs::{dialable, split_peer_id};
pub use behaviour::{PROVIDER_REPUBLISH, PROVIDER_TTL};
pub use config::NetConfig;
pub use gossip::{GossipError, Topic, Validation, Validator};
pub use protocol::{
    BUSY, Inbound, InboundRequest, Limits, PeerLimits, Protocol, RequestError, Responder,
};
pub use streams::OpenError;

/// What the network looks like from this node.
#[derive(Debug, Clone, Default)]
pub struct NetStatus {
    /// Addresses the swarm listens on (loopback first).
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with at least one established connection, sorted.
    pub connected_peers: Vec<PeerId>,
}

/// Connection events, for the domains that act on them (the advert sync asks a new peer for
/// what it lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetEvent {
    /// The first connection to a peer is established.
    PeerConnected(PeerId),
    /// The last connection to a peer closed.
    PeerDisconnected(PeerId),
}

/// Network failures that reach callers.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the network task has stopped")]
    Stopped,
    #[error("cannot set up the libp2p transport: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}; pick another listen address or port")]
    Listen { addr: Multiaddr, reason: String },
    #[error("cannot dial {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error(transparent)]
    Gossip(#[from] GossipError),
    #[error("{0} is registered twice")]
    Duplicate(&'static str),
}

/// Where and how the swarm runs.
#[derive(Debug, Clone, Default)]
pub struct NetParams {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub config: NetConfig,
}

/// Requests to the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    Status(oneshot::Sender<NetStatus>),
    Dial(Multiaddr, oneshot::Sender<Result<(), NetError>>),
    /// Answered once the swarm has at least one listen address.
    WaitListening(oneshot::Sender<()>),
    /// Publish on a registered topic.
    Publish {
        topic: gossipsub::TopicHash,
        data: Vec<u8>,
    },
    /// Open a stream of a protocol to a peer (dialling `addrs` if not connected).
    Open {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        open: streams::Open,
    },
    /// Announce (and keep re-announcing) that this node provides a key.
    Provide(Vec<u8>),
    /// Stop announcing a key.
    Unprovide(Vec<u8>),
    /// Look up the providers of a key; each one found (never the local peer) is sent on
    /// `found`, which closes when the query ends.
    Providers {
        key: Vec<u8>,
        found: mpsc::Sender<PeerId>,
    },
}

/// Most providers one [`Network::providers`] lookup returns.
pub const MAX_PROVIDERS: usize = 64;

/// Collects the protocols and topics a node runs, then starts the swarm.
pub struct NetworkBuilder {
    identity: Identity,
    params: NetParams,
    servers: Vec<protocol::Server>,
    topics: gossip::Topics,
    events: broadcast::Sender<NetEvent>,
}

impl std::fmt::Debug for NetworkBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkBuilder")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl NetworkBuilder {
    /// Serves protocol `P`: peers' requests arrive, decoded and capped, on the returned queue.
    pub fn serve<P: Protocol>(&mut self) -> Result<Inbound<P>, NetError> {
        if self.servers.iter().any(|s| s.protocol.as_ref() == P::NAME) {
            return Err(NetError::Duplicate(P::NAME));
        }
        let (server, inbound) = protocol::serve::<P>();
        self.servers.push(server);
        Ok(inbound)
    }

    /// Subscribes to a gossip topic; every message is first put to `topic.validate`.
    pub fn topic(&mut self, topic: Topic) -> Result<(), NetError> {
        let hash = gossipsub::IdentTopic::new(topic.name).hash();
        if self.topics.contains_key(&hash) {
            return Err(NetError::Duplicate(topic.name));
        }
        self.topics.insert(hash, topic);
        Ok(())
    }

    /// A receiver of connection events (subscribe before [`NetworkBuilder::start`] to miss
    /// none).
    pub fn events(&self) -> broadcast::Receiver<NetEvent> {
        self.events.subscribe()
    }

    /// Builds the swarm, starts listening, and spawns the task that owns it and one task per
    /// served protocol. They end when `shutdown` is cancelled.
    pub fn start(
        self,
        registry: &mut Registry,
        metrics: NodeMetrics,
        shutdown: CancellationToken,
    ) -> Result<(Network, tokio::task::JoinHandle<()>), NetError> {
        let (tx, rx) = mpsc::channel(1024);
        let mut queues = HashMap::new();
        for server in self.servers {
            queues.insert(server.protocol, server.streams);
            let stop = shutdown.clone();
            let task = server.task;
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = task => {}
                }
            });
        }
        let task = task::SwarmTask::new(task::Setup {
            identity: &self.identity,
            params: &self.params,
            registry,
            metrics,
            topics: self.topics,
            queues: Arc::new(queues),
            events: self.events,
            commands: rx,
        })?;
        let local_peer_id = self.identity.peer_id();
        let handle = tokio::spawn(task.run(shutdown));
        Ok((Network { tx, local_peer_id }, handle))
    }
}

/// Cloneable handle to the swarm task.
#[derive(Debug, Clone)]
pub struct Network {
    tx: mpsc::Sender<Command>,
    local_peer_id: PeerId,
}

impl Network {
    /// A builder for a node with this identity.
    pub fn builder(identity: &Identity, params: NetParams) -> NetworkBuilder {
        NetworkBuilder {
            identity: identity.clone(),
            params,
            servers: Vec::new(),
            topics: HashMap::new(),
            events: broadcast::channel(1024).0,
        }
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Listen addresses and connected peers.
    pub async fn status(&self) -> Result<NetStatus, NetError> {
        self.ask(Command::Status).await
    }

    /// Dials an address (with or without a `/p2p/` suffix).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.ask(|r| Command::Dial(addr, r)).await?
    }

    /// Waits until the swarm listens on at least one address.
    pub async fn wait_listening(&self) -> Result<(), NetError> {
        self.ask(Command::WaitListening).await
    }

    /// Publishes on a registered topic (fire and forget: a node alone has nobody to tell; the
    /// newest message that found no subscribed peer goes out when one subscribes).
    pub async fn publish(&self, topic: &str, data: Vec<u8>) {
        let topic = gossipsub::IdentTopic::new(topic).hash();
        let _ = self.tx.send(Command::Publish { topic, data }).await;
    }

    /// Announces in the DHT that this node provides `key` (fire and forget; Kademlia
    /// re-announces it every [`PROVIDER_REPUBLISH`] until [`Network::unprovide`]). Callable
    /// outside async code.
    pub fn provide(&self, key: Vec<u8>) {
        self.fire(Command::Provide(key));
    }

    /// Stops announcing `key` (the records already stored at peers lapse after
    /// [`PROVIDER_TTL`]).
    pub fn unprovide(&self, key: Vec<u8>) {
        self.fire(Command::Unprovide(key));
    }

    /// Sends a command without waiting: at once when the queue has room, else from a task.
    fn fire(&self, command: Command) {
        match self.tx.try_send(command) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(command)) => {
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        let tx = self.tx.clone();
                        rt.spawn(async move {
                            let _ = tx.send(command).await;
                        });
                    }
                    Err(_) => tracing::warn!("network command dropped: queue full, no runtime"),
                }
            }
        }
    }

    /// The peers that announce `key`, other than this node: those found until the DHT query
    /// ends or `timeout` passes, at most [`MAX_PROVIDERS`].
    pub async fn providers(
        &self,
        key: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<Vec<PeerId>, NetError> {
        let (found, mut rx) = mpsc::channel(MAX_PROVIDERS);
        self.tx
            .send(Command::Providers { key, found })
            .await
            .map_err(|_| NetError::Stopped)?;
        let mut peers = Vec::new();
        let collect = async {
            while let Some(peer) = rx.recv().await {
                if peer != self.local_peer_id && !peers.contains(&peer) {
                    peers.push(peer);
                    if peers.len() >= MAX_PROVIDERS {
                        break;
                    }
                }
            }
        };
        // On timeout the receiver is dropped, which tells the task to finish the query.
        let _ = tokio::time::timeout(timeout, collect).await;
        Ok(peers)
    }

    /// Sends a request of protocol `P` to `peer` and waits for its answer, within the
    /// protocol's timeout.
    pub async fn request<P: Protocol>(
        &self,
        peer: PeerId,
        request: P::Request,
    ) -> Result<P::Response, RequestError> {
        self.request_at::<P>(peer, Vec::new(), request).await
    }

    /// As [`Network::request`], dialling `addrs` too when there is no connection to `peer`.
    pub async fn request_at<P: Protocol>(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: P::Request,
    ) -> Result<P::Response, RequestError> {
        // The size cap is the server's to enforce (it reads at most its cap and refuses the
        // rest): a request over it fails there, which is what a hostile peer meets too.
        let bytes = frame::encode(&request).map_err(RequestError::NoAnswer)?;
        let after = P::LIMITS.timeout;
        let mut sent = false;
        let exchange = async {
            let (reply, rx) = oneshot::channel();
            let open = streams::Open {
                protocol: P::stream_protocol(),
                reply,
            };
            self.tx
                .send(Command::Open { peer, addrs, open })
                .await
                .map_err(|_| RequestError::Stopped)?;
            let stream = rx
                .await
                .map_err(|_| RequestError::Unreachable(OpenError::Closed))?
                .map_err(RequestError::Unreachable)?;
            sent = true;
            protocol::exchange::<P>(stream, &bytes).await
        };
        let outcome = tokio::time::timeout(after, exchange).await;
        match outcome {
            Ok(result) => result,
            Err(_) => Err(RequestError::Timeout { after, sent }),
        }
    }
}
