//! The composed libp2p behaviour.

use std::num::NonZeroUsize;
use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, connection_limits, gossipsub, identify, identity, kad, ping, request_response,
};

use super::sync::{SYNC_PROTOCOL, SyncCodec};
use crate::capacity::advert::MAX_ADVERT_SIZE;
use crate::config::NetConfig;
use crate::lease::wire::{LEASE_PROTOCOL, LeaseCodec};
use crate::plugin::wire::{DEPLOY_PROTOCOL, DeployCodec};

/// Kademlia protocol name: a federation of its own, apart from the IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/degroup/kad/1.0.0");
/// Identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/degroup/id/1.0.0";
/// Gossipsub topic of capacity adverts.
pub const ADVERT_TOPIC: &str = "degroup/adverts/v1";

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<SyncCodec>,
    pub lease: request_response::Behaviour<LeaseCodec>,
    pub deploy: request_response::Behaviour<DeployCodec>,
}

/// Why the behaviour could not be built.
#[derive(Debug, thiserror::Error)]
#[error("gossipsub setup: {0}")]
pub struct BehaviourError(String);

impl Behaviour {
    pub fn new(key: &identity::Keypair, net: &NetConfig) -> Result<Self, BehaviourError> {
        let peer_id = key.public().to_peer_id();
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(net.max_connections))
            .with_max_established_per_peer(Some(net.max_connections_per_peer))
            .with_max_pending_incoming(Some(net.max_pending_incoming));
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                .with_agent_version(format!("degroup/{}", env!("CARGO_PKG_VERSION")))
                .with_push_listen_addr_updates(true)
                .with_interval(Duration::from_secs(60)),
        );
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config
            .set_query_timeout(Duration::from_secs(20))
            .set_periodic_bootstrap_interval(Some(Duration::from_secs(60)));
        if let Some(p) = NonZeroUsize::new(3) {
            kad_config.set_parallelism(p);
        }
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // Every degroup node serves the DHT; on loopback and private networks there is no
        // confirmed external address for the automatic mode to go by.
        kad.set_mode(Some(kad::Mode::Server));
        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
            kad,
            gossipsub: gossip(net)?,
            sync: request_response::Behaviour::with_codec(
                SyncCodec::default(),
                [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(20)),
            ),
            lease: request_response::Behaviour::with_codec(
                LeaseCodec::default(),
                [(LEASE_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(1024),
            ),
            // A deploy carries a package (up to 8 MiB) and waits for compile + init.
            deploy: request_response::Behaviour::with_codec(
                DeployCodec::default(),
                [(DEPLOY_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(60))
                    .with_max_concurrent_streams(256),
            ),
        })
    }
}

/// Gossipsub for adverts: every message is validated by the application before it is relayed
/// (`validate_messages`), message ids are content hashes (adverts carry their own signature,
/// so gossipsub's per-message signing is off), and peer scoring makes a peer that sends invalid
/// adverts pay for it.
fn gossip(net: &NetConfig) -> Result<gossipsub::Behaviour, BehaviourError> {
    let err = |e: &dyn std::fmt::Display| BehaviourError(e.to_string());
    let config = gossipsub::ConfigBuilder::default()
        .validate_messages()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
        })
        .max_transmit_size(MAX_ADVERT_SIZE + 1024)
        .heartbeat_interval(Duration::from_millis(net.gossip_heartbeat_ms.max(100)))
        .flood_publish(true)
        .build()
        .map_err(|e| err(&e))?;
    let mut behaviour =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
            .map_err(|e| err(&e))?;
    let topic = gossipsub::IdentTopic::new(ADVERT_TOPIC);
    let mut params = gossipsub::PeerScoreParams {
        // Many hosts of one operator (and every node of a local testnet) share an IP address;
        // that alone must not push them below the graylist threshold.
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    // An invalid advert costs a lot; the penalty decays slowly.
    let topic_params = gossipsub::TopicScoreParams {
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.9,
        ..Default::default()
    };
    params.topics.insert(topic.hash(), topic_params);
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -100.0,
        publish_threshold: -500.0,
        graylist_threshold: -1000.0,
        ..Default::default()
    };
    behaviour
        .with_peer_score(params, thresholds)
        .map_err(|e| err(&e))?;
    behaviour.subscribe(&topic).map_err(|e| err(&e))?;
    Ok(behaviour)
}
