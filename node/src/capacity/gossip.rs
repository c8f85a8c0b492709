//! The advert topic: `degroup/adverts/v1` on gossipsub, validated by the advert book.
//!
//! Every message is put to [`AdvertBook::offer`] before gossipsub relays it: a bad signature,
//! a stale or replayed sequence number, an expired, oversized or malformed advert is rejected
//! (never relayed, and its sender's peer score pays for it); a duplicate or older one is
//! ignored.

use std::sync::Arc;

use libp2p::PeerId;

use super::advert::MAX_ADVERT_SIZE;
use super::book::{AdvertBook, Verdict};
use crate::metrics::{AdvertLabels, NodeMetrics};
use crate::net::{Topic, Validation};
use crate::resources::now_ms;

/// Gossipsub topic of capacity adverts.
pub(crate) const ADVERT_TOPIC: &str = "degroup/adverts/v1";

/// The topic, with the book as its validator.
pub(crate) fn topic(book: Arc<AdvertBook>, metrics: NodeMetrics) -> Topic {
    Topic {
        name: ADVERT_TOPIC,
        max_size: MAX_ADVERT_SIZE,
        validate: Arc::new(move |peer: &PeerId, data: &[u8]| {
            let verdict = book.offer(data, now_ms());
            count(&metrics, "gossip", &verdict);
            metrics
                .adverts_known
                .set(i64::try_from(book.len()).unwrap_or(i64::MAX));
            match verdict {
                Verdict::Accepted => Validation::Accept,
                Verdict::Ignored(_) => Validation::Ignore,
                Verdict::Rejected(reason) => {
                    tracing::debug!(%peer, %reason, "advert rejected");
                    Validation::Reject
                }
            }
        }),
    }
}

/// Counts a verdict in the `degroup_adverts` metric.
pub(crate) fn count(metrics: &NodeMetrics, source: &'static str, verdict: &Verdict) {
    metrics
        .adverts
        .get_or_create(&AdvertLabels {
            source,
            verdict: verdict.kind(),
            reason: verdict.reason(),
        })
        .inc();
}
