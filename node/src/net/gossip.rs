//! Gossip topics: `net` carries bytes for named topics and asks each topic's validator before
//! anything is relayed. What the bytes mean is the registering domain's business.
//!
//! Gossipsub runs with `validate_messages`: a message is delivered to the topic's
//! [`Validator`] first and relayed only when it answers [`Validation::Accept`]. Message ids
//! are content hashes (payloads carry their own signatures, so gossipsub's per-message signing
//! is off), and peer scoring makes a peer whose messages are rejected pay for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{PeerId, gossipsub};

use super::NetConfig;

/// A validator's verdict on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Valid and new: delivered and relayed.
    Accept,
    /// Valid but nothing new (a duplicate, an older version): not relayed, no penalty.
    Ignore,
    /// Invalid: not relayed, and the peer that sent it is penalised.
    Reject,
}

/// Checks a message of a topic from a peer. It runs on the swarm task, so it must be quick
/// and must never wait.
pub type Validator = Arc<dyn Fn(&PeerId, &[u8]) -> Validation + Send + Sync>;

/// A topic to subscribe to.
#[derive(Clone)]
pub struct Topic {
    /// The gossipsub topic name, e.g. `degroup/adverts/v1`.
    pub name: &'static str,
    /// Largest message, in bytes; larger ones are refused by gossipsub itself.
    pub max_size: usize,
    pub validate: Validator,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

/// The subscribed topics, by hash.
pub(crate) type Topics = HashMap<gossipsub::TopicHash, Topic>;

/// Why gossipsub could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("gossipsub setup: {0}")]
pub struct GossipError(String);

/// Builds gossipsub, subscribed to `topics`.
pub(crate) fn behaviour(
    net: &NetConfig,
    topics: &Topics,
) -> Result<gossipsub::Behaviour, GossipError> {
    let err = |e: &dyn std::fmt::Display| GossipError(e.to_string());
    let largest = topics.values().map(|t| t.max_size).max().unwrap_or(0);
    let config = gossipsub::ConfigBuilder::default()
        .validate_messages()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
        })
        .max_transmit_size(largest + 1024)
        .heartbeat_interval(Duration::from_millis(net.gossip_heartbeat_ms.max(100)))
        .flood_publish(true)
        .build()
        .map_err(|e| err(&e))?;
    let mut behaviour =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
            .map_err(|e| err(&e))?;
    let mut params = gossipsub::PeerScoreParams {
        // Many hosts of one operator (and every node of a local testnet) share an IP address;
        // that alone must not push them below the graylist threshold.
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    for hash in topics.keys() {
        // An invalid message costs a lot; the penalty decays slowly.
        let topic_params = gossipsub::TopicScoreParams {
            invalid_message_deliveries_weight: -100.0,
            invalid_message_deliveries_decay: 0.9,
            ..Default::default()
        };
        params.topics.insert(hash.clone(), topic_params);
    }
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -100.0,
        publish_threshold: -500.0,
        graylist_threshold: -1000.0,
        ..Default::default()
    };
    behaviour
        .with_peer_score(params, thresholds)
        .map_err(|e| err(&e))?;
    for topic in topics.values() {
        behaviour
            .subscribe(&gossipsub::IdentTopic::new(topic.name))
            .map_err(|e| err(&e))?;
    }
    Ok(behaviour)
}

/// What gossipsub is told of a verdict.
pub(crate) fn acceptance(v: Validation) -> gossipsub::MessageAcceptance {
    match v {
        Validation::Accept => gossipsub::MessageAcceptance::Accept,
        Validation::Ignore => gossipsub::MessageAcceptance::Ignore,
        Validation::Reject => gossipsub::MessageAcceptance::Reject,
    }
}
