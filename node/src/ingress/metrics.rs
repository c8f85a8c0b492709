//! The ingress's Prometheus metrics: per deployment, requests by status class, requests in
//! flight and time to the response head; ingress-wide, connections and refusals.
//!
//! Labels are bounded: a series carries a deployment id only for requests that reached an
//! attached endpoint, and a deployment's series go when it is detached or released. Nothing a
//! client sends (a `Host`, a path) ever becomes a label.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a deployment's finished requests.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The deployment id (32 hex characters).
    pub deployment: String,
    /// `1xx` … `5xx`.
    pub class: &'static str,
}

/// Labels of a deployment's gauges and histograms.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    /// The deployment id (32 hex characters).
    pub deployment: String,
}

type DurationFamily = Family<DeploymentLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Status classes, for labels.
pub(crate) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The class of a status code.
pub(crate) fn class_of(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The ingress's metrics. Cloning shares the underlying values.
#[derive(Debug, Clone)]
pub struct IngressMetrics {
    /// `degroup_http_requests_total{deployment,class}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `degroup_http_in_flight{deployment}`.
    pub in_flight: Family<DeploymentLabels, Gauge>,
    /// `degroup_http_request_duration_seconds{deployment}`: time to the response head.
    pub duration: DurationFamily,
    /// `degroup_http_connections_total`.
    pub connections: Counter,
    /// `degroup_http_connections_open`.
    pub connections_open: Gauge,
    /// `degroup_http_connections_rejected_total`: closed at once, over `max_connections`.
    pub connections_rejected: Counter,
    /// `degroup_http_not_found_total`: no deployment answers to the `Host`.
    pub not_found: Counter,
    /// `degroup_http_not_serving_total`: a known deployment with no live endpoint (503).
    pub not_serving: Counter,
    /// `degroup_http_refused_total`: refused by the ingress itself (no `Host`, body too
    /// large).
    pub refused: Counter,
}

impl Default for IngressMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            in_flight: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            connections: Counter::default(),
            connections_open: Gauge::default(),
            connections_rejected: Counter::default(),
            not_found: Counter::default(),
            not_serving: Counter::default(),
            refused: Counter::default(),
        }
    }
}

impl IngressMetrics {
    /// Registers every metric under `degroup_http_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("degroup_http");
        r.register(
            "requests",
            "Ingress requests answered by a deployment, by status class",
            self.requests.clone(),
        );
        r.register(
            "in_flight",
            "Ingress requests being served, by deployment",
            self.in_flight.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from a request's head to its response head, by deployment",
            self.duration.clone(),
        );
        r.register(
            "connections",
            "Ingress connections accepted",
            self.connections.clone(),
        );
        r.register(
            "connections_open",
            "Ingress connections open",
            self.connections_open.clone(),
        );
        r.register(
            "connections_rejected",
            "Ingress connections closed at once for being over max_connections",
            self.connections_rejected.clone(),
        );
        r.register(
            "not_found",
            "Ingress requests for a host no deployment answers to",
            self.not_found.clone(),
        );
        r.register(
            "not_serving",
            "Ingress requests for a deployment with no live endpoint",
            self.not_serving.clone(),
        );
        r.register(
            "refused",
            "Ingress requests refused before routing (no Host, body too large)",
            self.refused.clone(),
        );
    }

    /// Records a finished request of a deployment.
    pub(crate) fn observe(&self, deployment: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                deployment: deployment.to_owned(),
                class: class_of(status),
            })
            .inc();
        self.duration
            .get_or_create(&DeploymentLabels {
                deployment: deployment.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The in-flight gauge of a deployment.
    pub(crate) fn in_flight_of(&self, deployment: &str) -> Gauge {
        self.in_flight
            .get_or_create(&DeploymentLabels {
                deployment: deployment.to_owned(),
            })
            .clone()
    }

    /// Drops every series of a deployment.
    pub(crate) fn forget(&self, deployment: &str) {
        for class in CLASSES {
            self.requests.remove(&RequestLabels {
                deployment: deployment.to_owned(),
                class,
            });
        }
        let labels = DeploymentLabels {
            deployment: deployment.to_owned(),
        };
        self.in_flight.remove(&labels);
        self.duration.remove(&labels);
    }
}
