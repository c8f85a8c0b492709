//! The composed libp2p behaviour.

use std::num::NonZeroUsize;
use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, connection_limits, gossipsub, identify, identity, kad, ping};

use super::NetConfig;
use super::gossip::{self, GossipError, Topics};
use super::streams::{InboundQueues, Streams};

/// Kademlia protocol name: a federation of its own, apart from the IPFS DHT.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/degroup/kad/1.0.0");
/// Identify protocol version string.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/degroup/id/1.0.0";
/// How often Kademlia re-announces the provider records of this node
/// ([`super::Network::provide`]); well inside [`PROVIDER_TTL`], so a provider that stays up
/// never lapses.
pub const PROVIDER_REPUBLISH: Duration = Duration::from_secs(3600);
/// How long a peer keeps a provider record it was sent: a provider gone for longer is
/// forgotten.
pub const PROVIDER_TTL: Duration = Duration::from_secs(3 * 3600);
/// Most keys this node provides at once (Kademlia refuses more).
const MAX_PROVIDED_KEYS: usize = 16 * 1024;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    /// The application protocols' streams.
    pub streams: Streams,
}

impl Behaviour {
    pub(crate) fn new(
        key: &identity::Keypair,
        net: &NetConfig,
        topics: &Topics,
        queues: InboundQueues,
    ) -> Result<Self, GossipError> {
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
            .set_periodic_bootstrap_interval(Some(Duration::from_secs(60)))
            .set_provider_publication_interval(Some(PROVIDER_REPUBLISH))
            .set_provider_record_ttl(Some(PROVIDER_TTL));
        if let Some(p) = NonZeroUsize::new(3) {
            kad_config.set_parallelism(p);
        }
        let store = kad::store::MemoryStore::with_config(
            peer_id,
            kad::store::MemoryStoreConfig {
                max_provided_keys: MAX_PROVIDED_KEYS,
                ..Default::default()
            },
        );
        let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
        // Every degroup node serves the DHT; on loopback and private networks there is no
        // confirmed external address for the automatic mode to go by.
        kad.set_mode(Some(kad::Mode::Server));
        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
            kad,
            gossipsub: gossip::behaviour(net, topics)?,
            streams: Streams::new(queues),
        })
    }
}
