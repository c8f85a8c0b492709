//! The HTTP ingress: how a tenant's users reach the plugins of the leases on this host.
//!
//! A hyper server on `[ingress] listen` (plain or TLS) reads each request under the ingress's
//! limits (header count and size, header read timeout, body size) and routes it by `Host`:
//! claimed routes first, then `<deployment-id>.<domain>`. What serves a deployment is an
//! [`Endpoint`], attached and detached by the plugin supervisor as deployments start and stop;
//! the ingress knows nothing of wasm, as `net` knows nothing of leases.
//!
//! - [`config`] — the `[ingress]` table ([`IngressConfig`]) and its validated form
//!   ([`IngressSettings`]), including the request limits the plugin side applies and the
//!   outgoing-HTTP allow rules per tenant.
//! - [`routes`] — the [`RouteTable`]: durable claimed names (`Domain::Routes`) plus the live
//!   endpoints; resolution of a `Host`.
//! - [`server`] — [`Ingress::start`]: the listener, on a tokio runtime of its own, and the
//!   ingress's own answers (400, 404, 413, 503) in the API's JSON error shape.
//! - `conn` — one connection: TLS, hyper's HTTP/1.1 limits (431, header timeout), idle
//!   close, graceful stop.
//! - `tls` — the rustls server configuration from the PEM files.
//! - [`metrics`] — per-deployment and ingress-wide Prometheus metrics.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

pub mod config;
mod conn;
pub mod metrics;
pub mod routes;
pub mod server;
mod tls;

pub use config::{IngressConfig, IngressSettings, OutgoingRule, TlsFiles};
pub use metrics::IngressMetrics;
pub use routes::{MAX_NAMES, Resolved, RouteError, RouteTable};
pub use server::{Ingress, IngressError, IngressHandle, IngressStats, ResponseClasses};

/// Any error of a response body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// What an endpoint answers with.
pub type ResponseBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;
/// A request as the ingress hands it to an endpoint.
pub type Request = http::Request<hyper::body::Incoming>;
/// An endpoint's answer.
pub type Response = http::Response<ResponseBody>;

/// What serves one deployment's requests.
pub trait Endpoint: Send + Sync + 'static {
    /// Answers one request. The future runs on the ingress's own runtime, never the node's.
    fn serve(self: Arc<Self>, req: Request) -> BoxFuture<'static, Response>;
}
