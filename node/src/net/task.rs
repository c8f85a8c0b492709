//! The task that owns the swarm.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::core::ConnectedPoint;
use libp2p::metrics::{Metrics as Libp2pMetrics, Recorder as _};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, gossipsub, identify, kad, noise, request_response, tcp, yamux,
};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::addrs::{dialable, sort_for_display, split_peer_id};
use super::behaviour::{Behaviour, BehaviourEvent};
use super::bootstrap::BootstrapPeer;
use super::sync::{MAX_KNOWN, PAGE_LIMIT, SyncRequest, SyncResponse};
use super::{Command, Inbound, InboundDeploy, InboundLease, NetError, NetStatus};
use crate::capacity::advert::now_ms;
use crate::capacity::{AdvertBook, Verdict};
use crate::config::{NetConfig, NodeConfig};
use crate::identity::Identity;
use crate::lease::wire::{LeaseMsg, LeaseReply, Refusal, RefusalCode};
use crate::metrics::AdvertLabels;
use crate::metrics::NodeMetrics;
use crate::plugin::wire::{self as deploy_wire, DeployMsg, DeployReply};
use std::sync::Arc;

/// Connections stay open while idle: a federation node keeps its peers.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);

/// Anti-entropy: every this many seconds the node asks one connected peer (in turn) for the
/// adverts it lacks, with the same summary-carrying sync request a new connection makes. Gossip
/// lost to a partition, a hung peer or a publish before any peer subscribed is repaired within
/// this time even when no connection was re-established (for federations of up to
/// [`MAX_KNOWN`] adverts; beyond, a summary no longer fits in a request).
const ANTI_ENTROPY_EVERY_S: u64 = 5;

pub(crate) struct SwarmTask {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    net: NetConfig,
    bootstrap: Vec<BootstrapPeer>,
    bootstrap_max_backoff: Duration,
    /// Remote address of every open connection, for address filtering.
    remotes: HashMap<ConnectionId, Multiaddr>,
    waiting_listen: Vec<oneshot::Sender<()>>,
    libp2p_metrics: Libp2pMetrics,
    metrics: NodeMetrics,
    kad_bootstrapped: bool,
    book: Arc<AdvertBook>,
    advert_topic: gossipsub::IdentTopic,
    inbound_lease: mpsc::Sender<InboundLease>,
    inbound_deploy: mpsc::Sender<InboundDeploy>,
    pending_deploy: Pending<DeployReply>,
    pending_lease: Pending<LeaseReply>,
    /// The newest own advert that could not be gossiped (no subscribed peer yet); published
    /// again when a peer subscribes to the topic.
    unsent_advert: Option<Vec<u8>>,
    ticks: u64,
}

impl SwarmTask {
    pub fn new(
        identity: &Identity,
        config: &NodeConfig,
        registry: &mut Registry,
        metrics: NodeMetrics,
        book: Arc<AdvertBook>,
        inbound: Inbound,
        commands: mpsc::Receiver<Command>,
    ) -> Result<Self, NetError> {
        let transport = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
        let net = config.net.clone();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity.libp2p_keypair())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| transport(&e))?
            .with_quic()
            .with_dns()
            .map_err(|e| transport(&e))?
            .with_bandwidth_metrics(registry)
            .with_behaviour(|key| {
                Behaviour::new(key, &net)
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })
            .map_err(|e| transport(&e))?
            .with_swarm_config(|c| {
                // Lazy protocol negotiation on new streams: the first request frame travels with
                // the protocol name instead of waiting a round trip for the confirmation.
                c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT)
                    .with_substream_upgrade_protocol_override(
                        libp2p::core::upgrade::Version::V1Lazy,
                    )
            })
            .build();
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        let local = *swarm.local_peer_id();
        let mut bootstrap = Vec::new();
        for addr in &config.bootstrap {
            let peer = BootstrapPeer::new(addr);
            if peer.peer == Some(local) {
                tracing::warn!(%addr, "ignoring bootstrap address that points at this node");
                continue;
            }
            if let Some(id) = peer.peer {
                swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&id, peer.addr.clone());
            }
            bootstrap.push(peer);
        }
        Ok(Self {
            swarm,
            commands,
            net,
            bootstrap,
            bootstrap_max_backoff: config.bootstrap_max_backoff(),
            remotes: HashMap::new(),
            waiting_listen: Vec::new(),
            libp2p_metrics: Libp2pMetrics::new(registry),
            metrics,
            kad_bootstrapped: false,
            book,
            advert_topic: gossipsub::IdentTopic::new(super::ADVERT_TOPIC),
            inbound_lease: inbound.lease,
            inbound_deploy: inbound.deploy,
            pending_deploy: HashMap::new(),
            pending_lease: HashMap::new(),
            unsent_advert: None,
            ticks: 0,
        })
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                _ = tick.tick() => {
                    self.redial_bootstrap();
                    self.anti_entropy();
                }
            }
        }
        tracing::debug!("network task stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Dial(addr, reply) => {
                let (base, peer) = split_peer_id(&addr);
                let opts = match peer {
                    Some(p) => DialOpts::peer_id(p).addresses(vec![base]).build(),
                    None => DialOpts::unknown_peer_id().address(base).build(),
                };
                let result = self.swarm.dial(opts).map_err(|e| NetError::Dial {
                    addr,
                    reason: e.to_string(),
                });
                let _ = reply.send(result);
            }
            Command::LeaseRequest {
                peer,
                addrs,
                msg,
                reply,
            } => {
                let id = self.send_lease(peer, addrs, msg);
                self.pending_lease.insert(id, reply);
            }
            Command::DeployRequest {
                peer,
                addrs,
                msg,
                reply,
            } => {
                for addr in addrs {
                    self.swarm.add_peer_address(peer, addr);
                }
                let id = self.swarm.behaviour_mut().deploy.send_request(&peer, msg);
                self.pending_deploy.insert(id, reply);
            }
            Command::DeployRespond(channel, reply) => {
                if self
                    .swarm
                    .behaviour_mut()
                    .deploy
                    .send_response(channel, reply)
                    .is_err()
                {
                    tracing::debug!("deploy reply not sent: the peer's stream is gone");
                }
            }
            Command::LeaseRespond(channel, reply) => {
                if self
                    .swarm
                    .behaviour_mut()
                    .lease
                    .send_response(channel, reply)
                    .is_err()
                {
                    tracing::debug!("lease reply not sent: the peer's stream is gone");
                }
            }
            Command::PublishAdvert(envelope) => self.publish_advert(envelope),
            Command::WaitListening(reply) => {
                if self.swarm.listeners().next().is_some() {
                    let _ = reply.send(());
                } else {
                    self.waiting_listen.push(reply);
                }
            }
        }
    }

    fn status(&self) -> NetStatus {
        let mut listen_addrs: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
        sort_for_display(&mut listen_addrs);
        let mut connected_peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        connected_peers.sort();
        NetStatus {
            listen_addrs,
            connected_peers,
        }
    }

    fn publish_advert(&mut self, envelope: Vec<u8>) {
        let topic = self.advert_topic.clone();
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, envelope.clone())
        {
            Ok(_) => self.unsent_advert = None,
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                tracing::debug!("advert not gossiped: no subscribed peer yet; kept for later");
                self.unsent_advert = Some(envelope);
            }
            Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => tracing::warn!(error = %e, "advert not gossiped"),
        }
    }

    /// Every [`ANTI_ENTROPY_EVERY_S`] ticks, a sync request to the next connected peer. Skipped
    /// when the node holds more adverts than a request can summarise: the answer would then be
    /// the whole set every time.
    fn anti_entropy(&mut self) {
        self.ticks += 1;
        if !self.ticks.is_multiple_of(ANTI_ENTROPY_EVERY_S) || self.book.len() > MAX_KNOWN {
            return;
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        if peers.is_empty() {
            return;
        }
        let round = usize::try_from(self.ticks / ANTI_ENTROPY_EVERY_S).unwrap_or(0);
        let peer = peers[round % peers.len()];
        self.request_adverts(peer, None);
    }

    fn redial_bootstrap(&mut self) {
        let now = Instant::now();
        let max = self.bootstrap_max_backoff;
        let mut dials = Vec::new();
        for b in &mut self.bootstrap {
            if b.due(now, max) {
                let opts = match b.peer {
                    Some(p) => DialOpts::peer_id(p)
                        .addresses(vec![b.addr.clone()])
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build(),
                    None => DialOpts::unknown_peer_id().address(b.addr.clone()).build(),
                };
                dials.push((b.addr.clone(), opts));
            }
        }
        for (addr, opts) in dials {
            tracing::debug!(%addr, "dialling bootstrap peer");
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%addr, error = %e, "bootstrap dial not started");
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let local = *self.swarm.local_peer_id();
                tracing::info!("listening on {address}/p2p/{local}");
                for w in self.waiting_listen.drain(..) {
                    let _ = w.send(());
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let remote = endpoint.get_remote_address().clone();
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, addr = %remote, "peer connected");
                    self.request_adverts(peer_id, None);
                }
                let dialed = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => Some(split_peer_id(address).0),
                    ConnectedPoint::Listener { .. } => None,
                };
                for b in &mut self.bootstrap {
                    let same_addr = b.peer.is_none() && dialed.as_ref() == Some(&b.addr);
                    if b.peer == Some(peer_id) || same_addr {
                        b.on_connected(peer_id);
                    }
                }
                self.remotes.insert(connection_id, remote);
                self.update_peer_gauge();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                self.remotes.remove(&connection_id);
                if num_established == 0 {
                    let reason = cause
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "closed".into());
                    tracing::info!(peer = %peer_id, %reason, "peer disconnected");
                    let now = Instant::now();
                    for b in &mut self.bootstrap {
                        if b.peer == Some(peer_id) {
                            b.on_disconnected(now);
                        }
                    }
                }
                self.update_peer_gauge();
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "incoming connection failed");
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(event) => {
                self.libp2p_metrics.record(&event);
                if let identify::Event::Received {
                    peer_id,
                    connection_id,
                    info,
                } = event
                {
                    let reached_on = self.remotes.get(&connection_id);
                    let addrs = dialable(reached_on, &info.listen_addrs);
                    for addr in addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                    if !self.kad_bootstrapped {
                        self.kad_bootstrapped = self.swarm.behaviour_mut().kad.bootstrap().is_ok();
                    }
                }
            }
            BehaviourEvent::Kad(event) => {
                self.libp2p_metrics.record(&event);
                if let kad::Event::RoutingUpdated {
                    peer, addresses, ..
                } = event
                {
                    self.maybe_dial(peer, &addresses.into_vec());
                }
            }
            BehaviourEvent::Ping(event) => self.libp2p_metrics.record(&event),
            BehaviourEvent::Gossipsub(event) => {
                self.libp2p_metrics.record(&event);
                match event {
                    gossipsub::Event::Message {
                        propagation_source,
                        message_id,
                        message,
                    } => self.on_gossip_advert(propagation_source, &message_id, &message.data),
                    gossipsub::Event::Subscribed { topic, .. }
                        if topic == self.advert_topic.hash() =>
                    {
                        if let Some(envelope) = self.unsent_advert.take() {
                            self.publish_advert(envelope);
                        }
                    }
                    _ => {}
                }
            }
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            BehaviourEvent::Lease(event) => self.on_lease_event(event),
            BehaviourEvent::Deploy(event) => self.on_deploy_event(event),
            BehaviourEvent::Limits(never) => match never {},
        }
    }

    fn count_verdict(&self, source: &'static str, verdict: &Verdict) {
        self.metrics
            .adverts
            .get_or_create(&AdvertLabels {
                source,
                verdict: verdict.kind(),
                reason: verdict.reason(),
            })
            .inc();
    }

    fn on_gossip_advert(&mut self, source: PeerId, id: &gossipsub::MessageId, data: &[u8]) {
        let verdict = self.book.offer(data, now_ms());
        self.count_verdict("gossip", &verdict);
        let acceptance = match &verdict {
            Verdict::Accepted => gossipsub::MessageAcceptance::Accept,
            Verdict::Ignored(_) => gossipsub::MessageAcceptance::Ignore,
            Verdict::Rejected(reason) => {
                tracing::debug!(peer = %source, %reason, "advert rejected");
                gossipsub::MessageAcceptance::Reject
            }
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, &source, acceptance);
        self.update_advert_gauge();
    }

    fn request_adverts(&mut self, peer: PeerId, after: Option<[u8; 32]>) {
        let request = SyncRequest {
            after,
            limit: PAGE_LIMIT,
            known: self.book.summary(MAX_KNOWN),
        };
        self.swarm.behaviour_mut().sync.send_request(&peer, request);
    }

    fn on_sync_event(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let limit = usize::from(request.limit.clamp(1, PAGE_LIMIT));
                    let known: HashMap<[u8; 8], u64> =
                        request.known.iter().take(MAX_KNOWN).copied().collect();
                    let (page, next) = self.book.page(request.after, limit, now_ms(), &known);
                    let response = SyncResponse {
                        adverts: page.iter().map(|e| e.as_ref().clone()).collect(),
                        next,
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, response);
                }
                request_response::Message::Response { response, .. } => {
                    let verdicts = self.book.offer_batch(&response.adverts, now_ms());
                    for v in &verdicts {
                        self.count_verdict("sync", v);
                    }
                    let accepted = verdicts.iter().filter(|v| **v == Verdict::Accepted).count();
                    tracing::debug!(%peer, received = verdicts.len(), accepted, "advert sync page");
                    self.update_advert_gauge();
                    // A peer that pages forever is bounded by the cursor moving forward.
                    if let Some(next) = response.next.filter(|_| !response.adverts.is_empty()) {
                        self.request_adverts(peer, Some(next));
                    }
                }
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "advert sync request failed");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "advert sync request from peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn send_lease(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        msg: LeaseMsg,
    ) -> request_response::OutboundRequestId {
        for addr in addrs {
            self.swarm.add_peer_address(peer, addr);
        }
        self.swarm.behaviour_mut().lease.send_request(&peer, msg)
    }

    fn on_lease_event(&mut self, event: request_response::Event<LeaseMsg, LeaseReply>) {
        let Some((peer, msg, channel)) = settle(event, &mut self.pending_lease, "lease") else {
            return;
        };
        if let Err(e) = self
            .inbound_lease
            .try_send(InboundLease { peer, msg, channel })
        {
            // The lease actor is saturated (or gone): say so at once.
            let busy = LeaseReply::Refused(Refusal::new(RefusalCode::Unavailable, BUSY));
            let _ = self
                .swarm
                .behaviour_mut()
                .lease
                .send_response(unsent(e).channel, busy);
        }
    }

    fn on_deploy_event(&mut self, event: request_response::Event<DeployMsg, DeployReply>) {
        let Some((peer, msg, channel)) = settle(event, &mut self.pending_deploy, "deploy") else {
            return;
        };
        if let Err(e) = self
            .inbound_deploy
            .try_send(InboundDeploy { peer, msg, channel })
        {
            let busy = DeployReply::Refused(deploy_wire::Refusal::new(
                deploy_wire::RefusalCode::Unavailable,
                BUSY,
            ));
            let _ = self
                .swarm
                .behaviour_mut()
                .deploy
                .send_response(unsent(e).channel, busy);
        }
    }

    fn update_advert_gauge(&self) {
        let n = self.book.len();
        self.metrics
            .adverts_known
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Dials a peer learnt through the DHT while below the target peer count.
    fn maybe_dial(&mut self, peer: PeerId, addresses: &[Multiaddr]) {
        let connected = self.swarm.connected_peers().count();
        if peer == *self.swarm.local_peer_id()
            || self.swarm.is_connected(&peer)
            || connected >= self.net.target_peers as usize
        {
            return;
        }
        let addresses = dialable(None, addresses);
        if addresses.is_empty() {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addresses)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "dial not started");
        }
    }

    fn update_peer_gauge(&self) {
        let n = self.swarm.connected_peers().count();
        self.metrics
            .connected_peers
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// What a host answers when its actor's inbound queue is full.
const BUSY: &str = "the host is busy; retry in a moment";

type Pending<Resp> =
    HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<Resp, NetError>>>;

/// Settles a request-response event of an application protocol: answers (and failures) of
/// this node's own requests go to their waiters; an inbound request is handed back to route.
fn settle<Req, Resp>(
    event: request_response::Event<Req, Resp>,
    pending: &mut Pending<Resp>,
    protocol: &str,
) -> Option<(PeerId, Req, request_response::ResponseChannel<Resp>)> {
    match event {
        request_response::Event::Message { peer, message, .. } => match message {
            request_response::Message::Request {
                request, channel, ..
            } => return Some((peer, request, channel)),
            request_response::Message::Response {
                request_id,
                response,
            } => {
                if let Some(reply) = pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
        },
        request_response::Event::OutboundFailure {
            peer,
            request_id,
            error,
            ..
        } => {
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Err(NetError::Request {
                    peer,
                    reason: error.to_string(),
                }));
            }
        }
        request_response::Event::InboundFailure { peer, error, .. } => {
            tracing::debug!(%peer, %error, protocol, "inbound message failed");
        }
        request_response::Event::ResponseSent { .. } => {}
    }
    None
}

/// The value a full (or closed) queue refused.
fn unsent<T>(e: mpsc::error::TrySendError<T>) -> T {
    match e {
        mpsc::error::TrySendError::Full(v) | mpsc::error::TrySendError::Closed(v) => v,
    }
}
