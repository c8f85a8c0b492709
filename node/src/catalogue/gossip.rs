//! The catalogue topic: `degroup/catalogue/v1` on gossipsub, validated by the catalogue.
//!
//! Each message is one release or yank envelope, put to [`Catalogue::offer`] before gossipsub
//! relays it: a forged, malformed, future-dated or republished one is rejected (never relayed,
//! and its sender's peer score pays for it), a duplicate is ignored. Verdicts are counted in
//! `degroup_catalogue{source, verdict, reason}`.

use std::sync::Arc;

use libp2p::PeerId;

use super::book::{Catalogue, Verdict};
use super::release::MAX_ENVELOPE_SIZE;
use crate::metrics::{CatalogueLabels, NodeMetrics};
use crate::net::{Topic, Validation};
use crate::resources::now_ms;

/// Gossipsub topic of releases and yanks.
pub const CATALOGUE_TOPIC: &str = "degroup/catalogue/v1";

/// The topic, with the catalogue as its validator.
pub fn topic(catalogue: Arc<Catalogue>, metrics: NodeMetrics) -> Topic {
    Topic {
        name: CATALOGUE_TOPIC,
        max_size: MAX_ENVELOPE_SIZE,
        validate: Arc::new(move |peer: &PeerId, data: &[u8]| {
            let verdict = catalogue.offer(data, now_ms());
            count(&metrics, "gossip", verdict);
            match verdict {
                Verdict::Accepted => Validation::Accept,
                Verdict::Ignored(_) => Validation::Ignore,
                // Refusals that depend on what this node saw first (a version republished
                // with other content, a yank that names another hash, a full catalogue, a
                // clock ahead of ours) are not the relaying peer's fault: not relayed, no
                // penalty. Only a malformed or badly signed item costs its sender.
                Verdict::Rejected(
                    reason @ ("republished" | "yank_mismatch" | "publisher_full" | "catalogue_full"
                    | "future"),
                ) => {
                    tracing::debug!(%peer, %reason, "catalogue message not taken");
                    Validation::Ignore
                }
                Verdict::Rejected(reason) => {
                    tracing::debug!(%peer, %reason, "catalogue message rejected");
                    Validation::Reject
                }
            }
        }),
    }
}

/// Counts a verdict in the `degroup_catalogue` metric.
pub(crate) fn count(metrics: &NodeMetrics, source: &'static str, verdict: Verdict) {
    metrics
        .catalogue
        .get_or_create(&CatalogueLabels {
            source,
            verdict: verdict.kind(),
            reason: verdict.reason(),
        })
        .inc();
}
