//! The `[net]` table of the configuration.

use serde::{Deserialize, Serialize};

/// The `[net]` table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Most established connections in total.
    pub max_connections: u32,
    /// Most established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Most incoming connections still in the handshake.
    pub max_pending_incoming: u32,
    /// Peers discovered through the DHT are dialled while fewer than this many are connected.
    pub target_peers: u32,
    /// Longest wait between two dials of an unreachable bootstrap peer, in seconds.
    pub bootstrap_max_backoff_s: u64,
    /// Gossipsub heartbeat (mesh maintenance and lazy gossip), in milliseconds.
    pub gossip_heartbeat_ms: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_peer: 4,
            max_pending_incoming: 128,
            target_peers: 24,
            bootstrap_max_backoff_s: 60,
            gossip_heartbeat_ms: 1000,
        }
    }
}
