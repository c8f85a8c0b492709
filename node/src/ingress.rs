//! The HTTP ingress: how a tenant's users reach the plugins of the leases on this host.
//!
//! A hyper server on `[ingress] listen` (plain or TLS) reads each request under the ingress's
//! limits (header count and size, header read timeout, body size) and routes it by `Host`:
//! claimed routes first, then `<deployment-id>.<domain>`. What serves a deployment is an
//! [`Endpoint`], attached and detached by the plugin supervisor as deployments start and stop;
//! the ingress knows nothing of wasm, as `net` knows nothing of leases.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

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
