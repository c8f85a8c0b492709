//! The libp2p side of the node.
//!
//! One task ([`task`]) owns the [`libp2p::Swarm`] and is the only code that touches it. The rest
//! of the node holds a cloneable [`Network`] handle that sends [`Command`]s over a channel, each
//! with a oneshot for the reply — the shape of rust-libp2p's file-sharing example. The task
//! multiplexes three sources: swarm events, commands, and a one-second housekeeping tick that
//! re-dials bootstrap peers with exponential backoff.
//!
//! Transports: TCP and QUIC, noise, yamux. Behaviours: connection limits, identify (which also
//! feeds Kademlia with the addresses peers announce), ping, and Kademlia on the degroup-specific
//! protocol `/degroup/kad/1.0.0`, so that a node bootstrapped from one peer learns and connects
//! to the others.

mod addrs;
mod behaviour;
mod bootstrap;
pub mod codec;
pub mod sync;
mod task;

use std::sync::Arc;

use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::capacity::AdvertBook;
use crate::config::NodeConfig;
use crate::identity::Identity;
use crate::lease::wire::{LeaseMsg, LeaseReply};
use crate::metrics::NodeMetrics;
use crate::plugin::wire::{DeployMsg, DeployReply};

pub use addrs::{dialable, split_peer_id};
pub use behaviour::ADVERT_TOPIC;

/// What the network looks like from this node.
#[derive(Debug, Clone, Default)]
pub struct NetStatus {
    /// Addresses the swarm listens on (loopback first).
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with at least one established connection, sorted.
    pub connected_peers: Vec<PeerId>,
}

/// Network failures that reach callers.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the network task has stopped")]
    Stopped,
    #[error("cannot set up the libp2p transport: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}; pick another --listen address or port")]
    Listen { addr: Multiaddr, reason: String },
    #[error("cannot dial {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
}

/// A lease protocol message from a peer, with the channel its answer goes back on
/// ([`Network::respond_lease`]).
#[derive(Debug)]
pub struct InboundLease {
    pub peer: PeerId,
    pub msg: LeaseMsg,
    pub channel: ResponseChannel<LeaseReply>,
}

/// A deploy protocol message from a peer, with the channel its answer goes back on
/// ([`Network::respond_deploy`]).
#[derive(Debug)]
pub struct InboundDeploy {
    pub peer: PeerId,
    pub msg: DeployMsg,
    pub channel: ResponseChannel<DeployReply>,
}

/// Where the swarm task hands inbound requests of the application protocols.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub lease: mpsc::Sender<InboundLease>,
    pub deploy: mpsc::Sender<InboundDeploy>,
}

/// Requests to the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    Status(oneshot::Sender<NetStatus>),
    Dial(Multiaddr, oneshot::Sender<Result<(), NetError>>),
    /// Answered once the swarm has at least one listen address.
    WaitListening(oneshot::Sender<()>),
    /// Publish an advert envelope on the advert topic.
    PublishAdvert(Vec<u8>),
    /// Send a lease protocol message (dialling `addrs` if not connected) and wait for the reply.
    LeaseRequest {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        msg: LeaseMsg,
        reply: oneshot::Sender<Result<LeaseReply, NetError>>,
    },
    /// Answer an inbound lease message.
    LeaseRespond(ResponseChannel<LeaseReply>, LeaseReply),
    /// Send a deploy protocol message and wait for the reply.
    DeployRequest {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        msg: DeployMsg,
        reply: oneshot::Sender<Result<DeployReply, NetError>>,
    },
    /// Answer an inbound deploy message.
    DeployRespond(ResponseChannel<DeployReply>, DeployReply),
}

/// Cloneable handle to the swarm task.
#[derive(Debug, Clone)]
pub struct Network {
    tx: mpsc::Sender<Command>,
    local_peer_id: PeerId,
}

impl Network {
    /// Builds the swarm, starts listening, and spawns the task that owns it. The task ends when
    /// `shutdown` is cancelled.
    pub fn start(
        identity: &Identity,
        config: &NodeConfig,
        registry: &mut Registry,
        metrics: NodeMetrics,
        book: Arc<AdvertBook>,
        inbound: Inbound,
        shutdown: CancellationToken,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), NetError> {
        let (tx, rx) = mpsc::channel(1024);
        let task = task::SwarmTask::new(identity, config, registry, metrics, book, inbound, rx)?;
        let local_peer_id = identity.peer_id();
        let handle = tokio::spawn(task.run(shutdown));
        Ok((Self { tx, local_peer_id }, handle))
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

    /// Publishes this node's advert (fire and forget: a node alone has nobody to tell, and peers
    /// that connect later get it through the sync protocol).
    pub async fn publish_advert(&self, envelope: Vec<u8>) {
        let _ = self.tx.send(Command::PublishAdvert(envelope)).await;
    }

    /// Sends a lease message to `peer` and waits for its answer. `addrs` are tried if there is
    /// no connection yet.
    pub async fn lease_request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        msg: LeaseMsg,
    ) -> Result<LeaseReply, NetError> {
        self.ask(|reply| Command::LeaseRequest {
            peer,
            addrs,
            msg,
            reply,
        })
        .await?
    }

    /// Answers an inbound lease message.
    pub async fn respond_lease(&self, channel: ResponseChannel<LeaseReply>, reply: LeaseReply) {
        let _ = self.tx.send(Command::LeaseRespond(channel, reply)).await;
    }

    /// Sends a deploy protocol message to `peer` and waits for its answer.
    pub async fn deploy_request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        msg: DeployMsg,
    ) -> Result<DeployReply, NetError> {
        self.ask(|reply| Command::DeployRequest {
            peer,
            addrs,
            msg,
            reply,
        })
        .await?
    }

    /// Answers an inbound deploy message.
    pub async fn respond_deploy(&self, channel: ResponseChannel<DeployReply>, reply: DeployReply) {
        let _ = self.tx.send(Command::DeployRespond(channel, reply)).await;
    }

    /// Waits until the swarm listens on at least one address.
    pub async fn wait_listening(&self) -> Result<(), NetError> {
        self.ask(Command::WaitListening).await
    }
}
