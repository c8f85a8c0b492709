//! The task that owns the swarm.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::core::ConnectedPoint;
use libp2p::metrics::{Metrics as Libp2pMetrics, Recorder as _};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, noise, tcp, yamux};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::addrs::{dialable, sort_for_display, split_peer_id};
use super::behaviour::{Behaviour, BehaviourEvent};
use super::bootstrap::BootstrapPeer;
use super::gossip::{Topics, acceptance};
use super::streams::InboundQueues;
use super::{Command, NetError, NetEvent, NetParams, NetStatus};
use crate::identity::Identity;
use crate::metrics::NodeMetrics;

/// Most provider lookups running at once; more are answered empty at once.
const MAX_PROVIDER_QUERIES: usize = 256;

/// Connections stay open while idle: a federation node keeps its peers.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);

/// What the swarm task is built from.
pub(crate) struct Setup<'a> {
    pub identity: &'a Identity,
    pub params: &'a NetParams,
    pub registry: &'a mut Registry,
    pub metrics: NodeMetrics,
    pub topics: Topics,
    pub queues: InboundQueues,
    pub events: broadcast::Sender<NetEvent>,
    pub commands: mpsc::Receiver<Command>,
}

pub(crate) struct SwarmTask {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    target_peers: u32,
    bootstrap: Vec<BootstrapPeer>,
    bootstrap_max_backoff: Duration,
    /// Remote address of every open connection, for address filtering.
    remotes: HashMap<ConnectionId, Multiaddr>,
    waiting_listen: Vec<oneshot::Sender<()>>,
    libp2p_metrics: Libp2pMetrics,
    metrics: NodeMetrics,
    kad_bootstrapped: bool,
    topics: Topics,
    /// Per topic, the newest message that could not be gossiped (no subscribed peer yet);
    /// published again when a peer subscribes to the topic.
    unsent: HashMap<gossipsub::TopicHash, Vec<u8>>,
    events: broadcast::Sender<NetEvent>,
    /// Running provider lookups, and where their findings go.
    provider_queries: HashMap<kad::QueryId, mpsc::Sender<PeerId>>,
}

impl SwarmTask {
    pub(crate) fn new(setup: Setup<'_>) -> Result<Self, NetError> {
        let Setup {
            identity,
            params,
            registry,
            metrics,
            topics,
            queues,
            events,
            commands,
        } = setup;
        let transport = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
        let net = &params.config;
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
                Behaviour::new(key, net, &topics, queues)
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
        for addr in &params.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        let local = *swarm.local_peer_id();
        let mut bootstrap = Vec::new();
        for addr in &params.bootstrap {
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
            target_peers: net.target_peers,
            bootstrap,
            bootstrap_max_backoff: std::time::Duration::from_secs(
                net.bootstrap_max_backoff_s.max(1),
            ),
            remotes: HashMap::new(),
            waiting_listen: Vec::new(),
            libp2p_metrics: Libp2pMetrics::new(registry),
            metrics,
            kad_bootstrapped: false,
            topics,
            unsent: HashMap::new(),
            events,
            provider_queries: HashMap::new(),
        })
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
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
                    self.drop_abandoned_provider_queries();
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
            Command::Open { peer, addrs, open } => {
                self.swarm.behaviour_mut().streams.open(peer, addrs, open);
            }
            Command::Publish { topic, data } => self.publish(topic, data),
            Command::Provide(key) => {
                let kad = &mut self.swarm.behaviour_mut().kad;
                if let Err(e) = kad.start_providing(kad::RecordKey::new(&key)) {
                    tracing::warn!(error = %e, "cannot announce a provider record");
                }
            }
            Command::Unprovide(key) => {
                let kad = &mut self.swarm.behaviour_mut().kad;
                kad.stop_providing(&kad::RecordKey::new(&key));
            }
            Command::Providers { key, found } => {
                if self.provider_queries.len() >= MAX_PROVIDER_QUERIES {
                    tracing::debug!("provider lookup refused: too many running");
                    return;
                }
                let kad = &mut self.swarm.behaviour_mut().kad;
                let id = kad.get_providers(kad::RecordKey::new(&key));
                self.provider_queries.insert(id, found);
            }
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

    fn publish(&mut self, topic: gossipsub::TopicHash, data: Vec<u8>) {
        if !self.topics.contains_key(&topic) {
            tracing::warn!(%topic, "publish on a topic that is not registered");
            return;
        }
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic.clone(), data.clone())
        {
            Ok(_) => {
                self.unsent.remove(&topic);
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                tracing::debug!(%topic, "not gossiped: no subscribed peer yet; kept for later");
                self.unsent.insert(topic, data);
            }
            Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => tracing::warn!(%topic, error = %e, "not gossiped"),
        }
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
                    let _ = self.events.send(NetEvent::PeerConnected(peer_id));
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
                    let _ = self.events.send(NetEvent::PeerDisconnected(peer_id));
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
                match event {
                    kad::Event::RoutingUpdated {
                        peer, addresses, ..
                    } => self.maybe_dial(peer, &addresses.into_vec()),
                    kad::Event::OutboundQueryProgressed {
                        id,
                        result: kad::QueryResult::GetProviders(result),
                        step,
                        ..
                    } => self.on_providers(id, result, step.last),
                    kad::Event::OutboundQueryProgressed {
                        result: kad::QueryResult::StartProviding(Err(e)),
                        ..
                    } => tracing::debug!(error = %e, "provider record not announced to peers"),
                    _ => {}
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
                    } => self.on_gossip(propagation_source, &message_id, &message),
                    gossipsub::Event::Subscribed { topic, .. } => {
                        if let Some(data) = self.unsent.remove(&topic) {
                            self.publish(topic, data);
                        }
                    }
                    _ => {}
                }
            }
            BehaviourEvent::Streams(never) => match never {},
            BehaviourEvent::Limits(never) => match never {},
        }
    }

    /// Passes on the providers a lookup found; ends the lookup when it is done or its asker
    /// has gone.
    fn on_providers(&mut self, id: kad::QueryId, result: kad::GetProvidersResult, last: bool) {
        let Some(found) = self.provider_queries.get(&id) else {
            return;
        };
        let local = *self.swarm.local_peer_id();
        let mut done = last;
        match result {
            Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                for peer in providers.into_iter().filter(|p| *p != local) {
                    if found.try_send(peer).is_err() {
                        // Closed (the asker timed out) or full (it has enough).
                        done = true;
                        break;
                    }
                }
            }
            Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => done = true,
        }
        if done {
            self.provider_queries.remove(&id);
            if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                query.finish();
            }
        }
    }

    /// Finishes the lookups whose askers stopped waiting.
    fn drop_abandoned_provider_queries(&mut self) {
        let gone: Vec<kad::QueryId> = self
            .provider_queries
            .iter()
            .filter(|(_, found)| found.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.provider_queries.remove(&id);
            if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                query.finish();
            }
        }
    }

    /// Puts a gossip message to its topic's validator and tells gossipsub whether to relay it.
    fn on_gossip(
        &mut self,
        source: PeerId,
        id: &gossipsub::MessageId,
        message: &gossipsub::Message,
    ) {
        let verdict = match self.topics.get(&message.topic) {
            Some(topic) => (topic.validate)(&source, &message.data),
            None => super::Validation::Ignore,
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, &source, acceptance(verdict));
    }

    /// Dials a peer learnt through the DHT while below the target peer count.
    fn maybe_dial(&mut self, peer: PeerId, addresses: &[Multiaddr]) {
        let connected = self.swarm.connected_peers().count();
        if peer == *self.swarm.local_peer_id()
            || self.swarm.is_connected(&peer)
            || connected >= self.target_peers as usize
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
