//! Prometheus metrics: libp2p's own (registered by the swarm task under `libp2p_`) plus the
//! node's, under `degroup_`. One [`Registry`] is built at start-up, filled by every
//! component, then frozen behind an `Arc` and encoded on each scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of an admin API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    pub route: String,
    pub status: u16,
}

/// Labels of an advert verdict.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdvertLabels {
    /// `gossip` or `sync`.
    pub source: &'static str,
    /// `accepted`, `ignored` or `rejected`.
    pub verdict: &'static str,
    /// Why it was ignored or rejected (empty when accepted).
    pub reason: &'static str,
}

/// Labels of a catalogue verdict (a release or yank envelope).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CatalogueLabels {
    /// `gossip` or `sync`.
    pub source: &'static str,
    /// `accepted`, `ignored` or `rejected`.
    pub verdict: &'static str,
    /// Why it was ignored or rejected (empty when accepted).
    pub reason: &'static str,
}

/// Labels of a finished blob fetch.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlobFetchLabels {
    /// `fetched`, `cached`, or the error kind (`no_provider`, `corrupt`, `too_large`,
    /// `quota`, `error`).
    pub outcome: &'static str,
}

/// The node's own metrics. Cloning shares the underlying values.
#[derive(Debug, Clone, Default)]
pub struct NodeMetrics {
    pub connected_peers: Gauge,
    pub api_requests: Family<ApiRequestLabels, Counter>,
    pub uptime_seconds: Gauge,
    pub adverts: Family<AdvertLabels, Counter>,
    pub adverts_known: Gauge,
    pub catalogue: Family<CatalogueLabels, Counter>,
    /// Verified blob bytes received from providers.
    pub blob_bytes_fetched: Counter,
    /// Blob bytes sent to peers (encoded responses).
    pub blob_bytes_served: Counter,
    pub blob_fetches: Family<BlobFetchLabels, Counter>,
    /// Chunk groups received that failed BLAKE3 verification.
    pub blob_bad_chunks: Counter,
    /// Providers dropped from a fetch and sorted last for a while for sending bad data.
    pub blob_providers_penalised: Counter,
}

impl NodeMetrics {
    /// Creates the metrics and registers them under `degroup_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("degroup");
        r.register(
            "connected_peers",
            "Peers with at least one established connection",
            m.connected_peers.clone(),
        );
        r.register(
            "api_requests",
            "Admin API requests by route and status",
            m.api_requests.clone(),
        );
        r.register(
            "uptime_seconds",
            "Seconds since the node started",
            m.uptime_seconds.clone(),
        );
        r.register(
            "adverts",
            "Adverts received, by source, verdict and reason",
            m.adverts.clone(),
        );
        r.register(
            "adverts_known",
            "Valid adverts held",
            m.adverts_known.clone(),
        );
        r.register(
            "catalogue",
            "Releases and yanks received, by source, verdict and reason",
            m.catalogue.clone(),
        );
        r.register(
            "blob_bytes_fetched",
            "Verified blob bytes received from providers",
            m.blob_bytes_fetched.clone(),
        );
        r.register(
            "blob_bytes_served",
            "Blob bytes sent to peers",
            m.blob_bytes_served.clone(),
        );
        r.register(
            "blob_fetches",
            "Blob fetches by outcome",
            m.blob_fetches.clone(),
        );
        r.register(
            "blob_bad_chunks",
            "Chunk groups received that failed verification",
            m.blob_bad_chunks.clone(),
        );
        r.register(
            "blob_providers_penalised",
            "Providers penalised for sending data that failed verification",
            m.blob_providers_penalised.clone(),
        );
        r.register(
            "child_start_seconds",
            "Time from a deployment's workload.start to the child running",
            crate::plugin::supervisor::CHILD_START.clone(),
        );
        m
    }
}

/// Encodes a registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
