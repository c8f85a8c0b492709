//! The ingress server: a listener and the connections it accepts, on a tokio runtime of its
//! own.
//!
//! [`Ingress::start`] binds the listener on the caller's thread (so a bad or busy address is
//! an error there), then starts a multi-thread runtime of `threads` workers in OS threads of
//! its own: no request, and no endpoint future, ever runs on the node's runtime, so no task of
//! the control plane waits on a plugin.
//!
//! Each request is routed by its authority (absolute-form URI, else `Host`) through the
//! [`RouteTable`]; the ingress answers itself, in the API's JSON error shape (`{"error",
//! "code", "retryable"}`): 400 without a host, 404 for a name no deployment answers to, 503
//! (with `Retry-After`) for a known deployment not serving now, 413 for a `Content-Length`
//! over `max_request_body` (without calling the endpoint; chunked bodies are the endpoint's to
//! bound), 500 if an endpoint panics. Connections beyond `max_connections` are closed at once.
//!
//! Stopping (the cancellation token): the listener closes, open connections shut down
//! gracefully (hyper finishes the request in flight and closes), and after [`GRACE`] whatever
//! is left is dropped with the runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt as _;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, Full};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::ErrorCode;

use super::config::IngressSettings;
use super::conn::{self, Busy};
use super::metrics::IngressMetrics;
use super::routes::{Resolved, RouteTable};
use super::{Request, Response, tls};

/// How long in-flight requests may take to finish once the ingress stops.
pub const GRACE: Duration = Duration::from_secs(5);
/// Longest host name quoted back in a 404.
const MAX_QUOTED_HOST: usize = 253;

/// Why the ingress could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("the ingress is off: set [ingress] listen to an address such as 0.0.0.0:8080")]
    Disabled,
    #[error(
        "the ingress cannot listen on {addr}: {source}; choose another [ingress] listen address or stop what uses it"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the ingress's TLS file {} is unusable: {reason}; fix [ingress] tls_cert / tls_key", path.display())]
    Tls {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("the ingress's runtime did not start: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Counters behind [`IngressStats`].
#[derive(Debug, Default)]
struct Counters {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    rejected_connections: AtomicU64,
    requests: AtomicU64,
    in_flight: AtomicU64,
    not_found: AtomicU64,
    by_class: [AtomicU64; 5],
}

/// A snapshot of the ingress's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IngressStats {
    pub listen: String,
    pub domain: String,
    pub tls: bool,
    pub connections_open: u64,
    pub connections_total: u64,
    pub rejected_connections: u64,
    pub requests: u64,
    pub in_flight: u64,
    pub not_found: u64,
    /// Responses by status class.
    pub responses: ResponseClasses,
}

/// Responses by status class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ResponseClasses {
    #[serde(rename = "1xx")]
    pub c1xx: u64,
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    #[serde(rename = "5xx")]
    pub c5xx: u64,
}

/// What every connection of one ingress shares.
pub(crate) struct Shared {
    pub(crate) settings: IngressSettings,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    routes: Arc<RouteTable>,
    metrics: IngressMetrics,
    counters: Counters,
}

/// The HTTP ingress.
#[derive(Debug)]
pub struct Ingress;

/// A running ingress; it stops when its cancellation token is cancelled (dropping the handle
/// does not stop it).
pub struct IngressHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stopped: CancellationToken,
}

impl std::fmt::Debug for IngressHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressHandle")
            .field("local_addr", &self.local_addr)
            .field("stopped", &self.stopped.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Ingress {
    /// Binds `settings.listen` and serves it on a runtime of its own until `cancel`.
    pub fn start(
        settings: IngressSettings,
        routes: Arc<RouteTable>,
        cancel: CancellationToken,
    ) -> Result<IngressHandle, IngressError> {
        let addr = settings.listen.ok_or(IngressError::Disabled)?;
        let tls = match &settings.tls {
            None => None,
            Some(files) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(files)?)),
        };
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| IngressError::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| IngressError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| IngressError::Bind { addr, source })?;
        let threads = settings.threads.max(1);
        let shared = Arc::new(Shared {
            metrics: routes.metrics().clone(),
            settings,
            tls,
            routes,
            counters: Counters::default(),
        });
        let stopped = CancellationToken::new();
        let done = stopped.clone();
        let run = shared.clone();
        // The runtime is built, run and dropped in its own thread, never the caller's (a
        // runtime dropped inside another one panics).
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("degroup-ingress-main".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("degroup-ingress")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = started_tx.send(Ok(()));
                        rt
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        done.cancel();
                        return;
                    }
                };
                runtime.block_on(accept_loop(run, listener, cancel));
                runtime.shutdown_timeout(Duration::from_secs(1));
                tracing::info!("ingress stopped");
                done.cancel();
            })
            .map_err(IngressError::Runtime)?;
        match started_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(IngressError::Runtime(e)),
            Err(_) => {
                return Err(IngressError::Runtime(std::io::Error::other(
                    "the ingress thread ended at start",
                )));
            }
        }
        tracing::info!(
            listen = %local_addr,
            domain = %shared.settings.domain,
            tls = shared.tls.is_some(),
            "ingress listening"
        );
        Ok(IngressHandle {
            local_addr,
            shared,
            stopped,
        })
    }
}

impl IngressHandle {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> IngressStats {
        let s = &self.shared;
        let c = &s.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IngressStats {
            listen: self.local_addr.to_string(),
            domain: s.settings.domain.clone(),
            tls: s.tls.is_some(),
            connections_open: get(&c.connections_open),
            connections_total: get(&c.connections_total),
            rejected_connections: get(&c.rejected_connections),
            requests: get(&c.requests),
            in_flight: get(&c.in_flight),
            not_found: get(&c.not_found),
            responses: ResponseClasses {
                c1xx: get(&c.by_class[0]),
                c2xx: get(&c.by_class[1]),
                c3xx: get(&c.by_class[2]),
                c4xx: get(&c.by_class[3]),
                c5xx: get(&c.by_class[4]),
            },
        }
    }

    /// Resolves once the ingress has stopped (after its cancellation token, within
    /// [`GRACE`] and a second).
    pub async fn stopped(&self) {
        self.stopped.cancelled().await;
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    cancel: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "ingress: cannot use the listener");
            return;
        }
    };
    let max = shared.settings.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let per_client = Arc::new(PerClient::new(shared.settings.max_connections_per_ip));
    let c = &shared.counters;
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "ingress: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            c.rejected_connections.fetch_add(1, Ordering::Relaxed);
            shared.metrics.connections_rejected.inc();
            drop(stream);
            continue;
        };
        // One client cannot take every slot: past its share, its new connections are closed.
        let Some(client) = PerClient::admit(&per_client, peer.ip()) else {
            c.rejected_connections.fetch_add(1, Ordering::Relaxed);
            shared.metrics.connections_rejected.inc();
            drop(stream);
            continue;
        };
        c.connections_total.fetch_add(1, Ordering::Relaxed);
        c.connections_open.fetch_add(1, Ordering::Relaxed);
        shared.metrics.connections.inc();
        shared.metrics.connections_open.inc();
        let shared = shared.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _open = OpenGuard(shared.clone());
            conn::serve(shared, stream, cancel).await;
            drop(client);
            drop(permit);
        });
    }
    drop(listener);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(GRACE, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::info!("ingress: dropping connections still open after the grace period");
    }
}

/// Connections open per client address (an IPv6 client counts by its /64, which one host
/// usually holds whole). At most `max_connections` entries: each has a connection open.
struct PerClient {
    max: usize,
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One open connection of a client, given back on drop.
struct ClientSlot {
    of: Arc<PerClient>,
    ip: std::net::IpAddr,
}

impl PerClient {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn key(ip: std::net::IpAddr) -> std::net::IpAddr {
        match ip {
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => std::net::IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    std::net::IpAddr::V6(std::net::Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    ))
                }
            },
            v4 => v4,
        }
    }

    fn admit(this: &Arc<Self>, ip: std::net::IpAddr) -> Option<ClientSlot> {
        let ip = Self::key(ip);
        let mut open = this
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= this.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            of: Arc::clone(this),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self
            .of
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Counts a connection closed, however its task ends.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0
            .counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.connections_open.dec();
    }
}

/// Counts a request in flight to an endpoint, however its future ends.
struct InFlight {
    shared: Arc<Shared>,
    /// The deployment's gauge as it was when the request began: if the deployment is
    /// detached meanwhile, the decrement goes to the dropped series, not a new one.
    gauge: prometheus_client::metrics::gauge::Gauge,
    busy: Busy,
}

impl InFlight {
    fn new(shared: Arc<Shared>, id: &str, busy: Busy) -> Self {
        shared.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        let gauge = shared.metrics.in_flight_of(id);
        gauge.inc();
        busy.fetch_add(1, Ordering::Relaxed);
        Self {
            shared,
            gauge,
            busy,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared
            .counters
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
        self.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers one request.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request, busy: Busy) -> Response {
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let resp = route(&shared, req, busy).await;
    let class = match resp.status().as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    };
    shared.counters.by_class[class].fetch_add(1, Ordering::Relaxed);
    resp
}

async fn route(shared: &Arc<Shared>, req: Request, busy: Busy) -> Response {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    let Some(host) = authority.filter(|h| !h.trim().is_empty()) else {
        shared.metrics.refused.inc();
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadInput,
            &format!(
                "the request names no host; send a Host header with the deployment's name, such as <deployment-id>.{}",
                shared.settings.domain
            ),
        );
    };
    let (id, ep) = match shared.routes.resolve(&host) {
        Resolved::Endpoint { id, ep } => (id, ep),
        Resolved::NotServing { id } => {
            shared.metrics.not_serving.inc();
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                &format!(
                    "deployment {id} is not serving right now (stopped or restarting); retry shortly"
                ),
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            return r;
        }
        Resolved::Unknown => {
            shared.counters.not_found.fetch_add(1, Ordering::Relaxed);
            shared.metrics.not_found.inc();
            let quoted: String = host.chars().take(MAX_QUOTED_HOST).collect();
            return error(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                &format!(
                    "no deployment on this host answers to {quoted}; check the name or the deployment's URLs in `degroup ps`"
                ),
            );
        }
    };
    let limit = shared.settings.max_request_body;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limit) {
        shared.metrics.refused.inc();
        let mut r = error(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadInput,
            &format!(
                "the request body of {n} bytes is over this host's limit of {limit} bytes; send less"
            ),
        );
        // The body stays unread: the connection cannot carry another request.
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let _in_flight = InFlight::new(shared.clone(), &id, busy);
    let start = Instant::now();
    let mut resp = match std::panic::AssertUnwindSafe(ep.serve(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(_) => {
            tracing::error!(deployment = %id, "ingress: an endpoint panicked");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "the deployment failed to answer; retry later or tell the host",
            )
        }
    };
    host_only_cookies(resp.headers_mut());
    // A deployment detached meanwhile has had its series dropped: do not bring them back.
    if shared.routes.is_attached(&id) {
        shared
            .metrics
            .observe(&id, resp.status().as_u16(), start.elapsed());
    }
    resp
}

/// Makes every cookie a deployment sets host-only: the `Domain` attribute is removed, so a
/// cookie set by `<a>.<domain>` (or a claimed name) never reaches another deployment under a
/// shared parent domain (cookie tossing, session fixation between tenants).
pub(crate) fn host_only_cookies(headers: &mut http::HeaderMap) {
    use http::header::SET_COOKIE;
    if !headers.contains_key(SET_COOKIE) {
        return;
    }
    let cookies: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
    headers.remove(SET_COOKIE);
    for c in cookies {
        let Ok(text) = c.to_str() else {
            // Not visible ASCII: dropped rather than passed on unread.
            continue;
        };
        // The first part is the cookie's name and value; the attributes follow.
        let kept: Vec<&str> = text
            .split(';')
            .enumerate()
            .filter(|(i, part)| {
                *i == 0
                    || !part
                        .split('=')
                        .next()
                        .is_some_and(|name| name.trim().eq_ignore_ascii_case("domain"))
            })
            .map(|(_, part)| part)
            .collect();
        if let Ok(v) = HeaderValue::from_str(&kept.join(";")) {
            headers.append(SET_COOKIE, v);
        }
    }
}

/// A JSON error answer in the admin API's shape.
pub(crate) fn error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = serde_json::json!({
        "error": message,
        "code": code.as_str(),
        "retryable": code.retryable(),
    })
    .to_string();
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod cookie_tests {
    use super::*;

    #[test]
    fn cookies_lose_their_domain_attribute() {
        let mut h = http::HeaderMap::new();
        for v in [
            "sid=1; Domain=apps.example.org; Path=/; HttpOnly",
            "a=2;domain=.example.org",
            "b=3; Path=/x",
            "domainish=4; Secure",
        ] {
            h.append(http::header::SET_COOKIE, HeaderValue::from_static(v));
        }
        host_only_cookies(&mut h);
        let got: Vec<&str> = h
            .get_all(http::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap_or_default())
            .collect();
        assert_eq!(
            got,
            [
                "sid=1; Path=/; HttpOnly",
                "a=2",
                "b=3; Path=/x",
                "domainish=4; Secure"
            ]
        );
    }
}
