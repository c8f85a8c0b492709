//! The HTTP ingress over real TCP: routing by `Host`, the ingress's own answers (400, 404, 413,
//! 503), hostile clients (huge or many headers, slowloris, too many connections), TLS, and a
//! graceful stop. Endpoints are fakes; no wasm is involved.
//!
//! The TLS files in `tests/data/` were made once with openssl: `ingress-ca.pem`, a test CA
//! (its key thrown away), and `ingress-cert.pem` / `ingress-key.pem`, an ed25519 leaf for
//! `localhost`, `*.localhost` and `shop.example` signed by it.
//!
//! No timing assertions except generous upper bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use degroup_node::ingress::{
    Endpoint, Ingress, IngressHandle, IngressSettings, Request, Response, RouteError, RouteTable,
};
use degroup_node::store::Store;
use futures::future::BoxFuture;
use http_body_util::{BodyExt as _, Full};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const A: &str = "0123456789abcdef0123456789abcdef";
const B: &str = "fedcba9876543210fedcba9876543210";
/// A bound for anything that should happen "at once".
const SOON: Duration = Duration::from_secs(10);

fn body(s: impl Into<Bytes>) -> degroup_node::ingress::ResponseBody {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

/// Answers `<name> <method> <path> <body length>`, after `delay`; counts its calls.
struct Echo {
    name: &'static str,
    delay: Duration,
    calls: AtomicUsize,
}

impl Echo {
    fn new(name: &'static str) -> Arc<Self> {
        Self::slow(name, Duration::ZERO)
    }
    fn slow(name: &'static str, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            name,
            delay,
            calls: AtomicUsize::new(0),
        })
    }
}

impl Endpoint for Echo {
    fn serve(self: Arc<Self>, req: Request) -> BoxFuture<'static, Response> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            let method = req.method().to_string();
            let path = req.uri().path().to_owned();
            let len = match req.into_body().collect().await {
                Ok(b) => b.to_bytes().len(),
                Err(_) => usize::MAX,
            };
            Response::new(body(format!("{} {method} {path} {len}", self.name)))
        })
    }
}

/// Answers the name of the thread its future runs on.
struct Where;

impl Endpoint for Where {
    fn serve(self: Arc<Self>, _req: Request) -> BoxFuture<'static, Response> {
        Box::pin(async {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            Response::new(body(name))
        })
    }
}

struct Panics;

impl Endpoint for Panics {
    fn serve(self: Arc<Self>, _req: Request) -> BoxFuture<'static, Response> {
        Box::pin(async { panic!("endpoint bug") })
    }
}

struct Node {
    _dir: tempfile::TempDir,
    routes: Arc<RouteTable>,
    handle: IngressHandle,
    cancel: CancellationToken,
}

impl Node {
    fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn settings() -> IngressSettings {
    IngressSettings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        header_timeout: Duration::from_secs(1),
        threads: 2,
        ..Default::default()
    }
}

fn start(settings: IngressSettings) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let routes = RouteTable::open(&store, &settings.domain).unwrap();
    let cancel = CancellationToken::new();
    let handle = Ingress::start(settings, routes.clone(), cancel.clone()).unwrap();
    Node {
        _dir: dir,
        routes,
        handle,
        cancel,
    }
}

/// Writes `bytes` and reads until the server closes (or `SOON`). A server that closes first
/// (an over-limit connection) may make the write fail: what was read is still the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, bytes: &[u8]) -> String {
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(SOON, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    exchange(TcpStream::connect(addr).await.unwrap(), bytes).await
}

async fn get(addr: SocketAddr, host: &str) -> String {
    raw(
        addr,
        format!("GET /p HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

fn status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn json(resp: &str) -> serde_json::Value {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

fn resp_body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn routes_by_host() {
    let node = start(settings());
    let addr = node.addr();
    node.routes.attach(A, Echo::new("a"));
    node.routes.attach(B, Echo::new("b"));
    node.routes.claim(&["Shop.Example".to_owned()], A).unwrap();

    for host in [
        "shop.example".to_owned(),
        "SHOP.example:8080".to_owned(),
        format!("{A}.localhost"),
        format!("{}.LocalHost:{}", A.to_uppercase(), addr.port()),
    ] {
        let r = get(addr, &host).await;
        assert_eq!(status(&r), 200, "{host}: {r}");
        assert_eq!(resp_body(&r), "a GET /p 0", "{host}");
    }
    let r = get(addr, &format!("{B}.localhost")).await;
    assert_eq!(resp_body(&r), "b GET /p 0");
    // Absolute-form request targets name the host too.
    let r = raw(
        addr,
        format!("GET http://{B}.localhost/q HTTP/1.1\r\nHost: {B}.localhost\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(resp_body(&r), "b GET /q 0");

    let r = get(addr, "nobody.example").await;
    assert_eq!(status(&r), 404, "{r}");
    assert_eq!(
        json(&r),
        serde_json::json!({
            "error": "no deployment on this host answers to nobody.example; check the name or the deployment's URLs in `degroup ps`",
            "code": "not_found",
            "retryable": false,
        })
    );
    // An id-shaped name of no known deployment is unknown too.
    let r = get(addr, &format!("{}.localhost", "1".repeat(32))).await;
    assert_eq!(status(&r), 404);

    // HTTP/1.0 without a Host.
    let r = raw(addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&r), 400, "{r}");
    assert_eq!(json(&r)["code"], "bad_input");

    node.routes.detach(B);
    let r = get(addr, &format!("{B}.localhost")).await;
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.to_ascii_lowercase().contains("retry-after:"), "{r}");
    assert_eq!(json(&r)["retryable"], true);

    let stats = node.handle.stats();
    assert_eq!(stats.requests, 10);
    assert_eq!(stats.responses.c2xx, 6);
    assert_eq!(stats.responses.c4xx, 3);
    assert_eq!(stats.responses.c5xx, 1);
    assert_eq!(stats.not_found, 2);
    assert_eq!(stats.domain, "localhost");
    assert!(!stats.tls);
    assert!(stats.connections_total >= 10);

    let mut registry = prometheus_client::registry::Registry::default();
    node.routes.metrics().register(&mut registry);
    let text = degroup_node::metrics::encode(&registry);
    assert!(
        text.contains(&format!(
            "degroup_http_requests_total{{deployment=\"{A}\",class=\"2xx\"}} 4"
        )),
        "{text}"
    );
    assert!(text.contains("degroup_http_not_found_total 2"), "{text}");
    assert!(
        text.contains("degroup_http_request_duration_seconds_count"),
        "{text}"
    );
    // B was detached: its series are gone.
    assert!(!text.contains(B), "{text}");
}

#[tokio::test]
async fn claims_conflict_and_release_over_the_wire() {
    let node = start(settings());
    let addr = node.addr();
    node.routes.attach(A, Echo::new("a"));
    node.routes.attach(B, Echo::new("b"));
    node.routes.claim(&["api.example".to_owned()], A).unwrap();
    match node.routes.claim(&["api.example".to_owned()], B) {
        Err(RouteError::Taken { name, by }) => {
            assert_eq!(name, "api.example");
            assert_eq!(by, A);
        }
        other => panic!("expected Taken, got {other:?}"),
    }
    assert!(matches!(
        node.routes.claim(&[format!("x.{}", "localhost")], B),
        Err(RouteError::Reserved { .. })
    ));
    assert_eq!(resp_body(&get(addr, "api.example").await), "a GET /p 0");
    assert_eq!(node.routes.release(A).unwrap(), ["api.example"]);
    assert_eq!(status(&get(addr, "api.example").await), 404);
    node.routes.claim(&["api.example".to_owned()], B).unwrap();
    assert_eq!(resp_body(&get(addr, "api.example").await), "b GET /p 0");
}

#[tokio::test]
async fn claims_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let routes = RouteTable::open(&store, "localhost").unwrap();
        routes
            .claim(&["one.example".to_owned(), "two.example".to_owned()], A)
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let routes = RouteTable::open(&store, "localhost").unwrap();
    assert_eq!(routes.names_of(A), ["one.example", "two.example"]);
    assert!(matches!(
        routes.claim(&["two.example".to_owned()], B),
        Err(RouteError::Taken { .. })
    ));
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let node = start(settings());
    let addr = node.addr();
    let echo = Echo::new("a");
    node.routes.attach(A, echo.clone());
    let host = format!("{A}.localhost");

    // One header of 20 KiB, over the 16 KiB default.
    let big = "x".repeat(20 * 1024);
    let r = raw(
        addr,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 431, "{r}");

    // 100 small headers, over the 64 default.
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(
        addr,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 431, "{r}");

    // Within the limits, the same shapes pass.
    let ok = "x".repeat(8 * 1024);
    let few: String = (0..50).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(
        addr,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: {ok}\r\n{few}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(echo.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slowloris_is_cut_off_while_others_are_served() {
    let node = start(settings()); // header_timeout 1s
    let addr = node.addr();
    node.routes.attach(A, Echo::new("a"));
    let host = format!("{A}.localhost");

    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes())
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let r = tokio::time::timeout(SOON, slow.read_to_end(&mut out)).await;
        (r.is_ok(), out, started.elapsed())
    });
    // Meanwhile another client is served, several times.
    for _ in 0..3 {
        let r = get(addr, &host).await;
        assert_eq!(status(&r), 200, "{r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (closed, out, after) = reader.await.unwrap();
    assert!(closed, "the slow connection was not closed");
    // hyper closes without an answer.
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(after < Duration::from_secs(6), "closed after {after:?}");
}

#[tokio::test]
async fn idle_keep_alive_is_closed_by_the_header_timer() {
    // idle_timeout is a minute, but hyper's header timer also runs while a keep-alive
    // connection waits for its next request.
    let node = start(settings());
    let addr = node.addr();
    node.routes.attach(A, Echo::new("a"));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {A}.localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let r = tokio::time::timeout(SOON, s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "an idle keep-alive connection stayed open");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status(&text), 200, "{text}");
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn idle_timeout_closes_quiet_connections() {
    let node = start(IngressSettings {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_millis(300),
        ..settings()
    });
    let addr = node.addr();
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    let r = tokio::time::timeout(SOON, s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "a quiet connection stayed open");
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_without_the_endpoint() {
    let node = start(settings());
    let addr = node.addr();
    let echo = Echo::new("a");
    node.routes.attach(A, echo.clone());
    let r = raw(
        addr,
        format!(
            "POST / HTTP/1.1\r\nHost: {A}.localhost\r\nContent-Length: {}\r\n\r\nsome",
            100u64 << 20
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 413, "{r}");
    assert_eq!(json(&r)["code"], "bad_input");
    assert_eq!(echo.calls.load(Ordering::SeqCst), 0);

    // A body within the limit reaches the endpoint.
    let r = raw(
        addr,
        format!("POST / HTTP/1.1\r\nHost: {A}.localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            .as_bytes(),
    )
    .await;
    assert_eq!(resp_body(&r), "a POST / 5", "{r}");
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_and_service_resumes() {
    let node = start(IngressSettings {
        max_connections: 4,
        header_timeout: Duration::from_secs(30),
        ..settings()
    });
    let addr = node.addr();
    node.routes.attach(A, Echo::new("a"));
    let host = format!("{A}.localhost");

    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Wait until the ingress has accepted all four.
    let deadline = Instant::now() + SOON;
    while node.handle.stats().connections_open < 4 {
        assert!(Instant::now() < deadline, "{:?}", node.handle.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        // The connect succeeds (the kernel accepts), then the ingress closes it at once.
        let r = get(addr, &host).await;
        assert_eq!(r, "", "an over-limit connection was served");
    }
    assert!(node.handle.stats().rejected_connections >= 3);

    drop(held);
    let deadline = Instant::now() + SOON;
    loop {
        let r = get(addr, &host).await;
        if status(&r) == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the ingress did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_client_cannot_take_every_connection() {
    let node = start(IngressSettings {
        max_connections: 64,
        max_connections_per_ip: 3,
        header_timeout: Duration::from_secs(30),
        ..settings()
    });
    let addr = node.addr();
    node.routes.attach(A, Echo::new("a"));
    let host = format!("{A}.localhost");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let deadline = Instant::now() + SOON;
    while node.handle.stats().connections_open < 3 {
        assert!(Instant::now() < deadline, "{:?}", node.handle.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The same address's fourth connection is closed at once, though the ingress has room.
    assert_eq!(get(addr, &host).await, "", "over the per-client limit");
    assert!(node.handle.stats().rejected_connections >= 1);
    // One of its connections closed: it is served again.
    held.pop();
    let deadline = Instant::now() + SOON;
    loop {
        if status(&get(addr, &host).await) == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the client is not served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_panicking_endpoint_gets_500_and_the_ingress_goes_on() {
    let node = start(settings());
    let addr = node.addr();
    node.routes.attach(A, Arc::new(Panics));
    node.routes.attach(B, Echo::new("b"));
    let r = get(addr, &format!("{A}.localhost")).await;
    assert_eq!(status(&r), 500, "{r}");
    assert_eq!(json(&r)["code"], "internal");
    assert_eq!(status(&get(addr, &format!("{B}.localhost")).await), 200);
    assert_eq!(node.handle.stats().in_flight, 0);
}

#[tokio::test]
async fn serves_over_tls() {
    use tokio_rustls::rustls;
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let node = start(IngressSettings {
        tls: Some(degroup_node::ingress::TlsFiles {
            cert: format!("{data}/ingress-cert.pem").into(),
            key: format!("{data}/ingress-key.pem").into(),
        }),
        ..settings()
    });
    let addr = node.addr();
    node.routes.attach(A, Echo::new("a"));
    node.routes.claim(&["shop.example".to_owned()], A).unwrap();
    assert!(node.handle.stats().tls);

    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls_pki_types::CertificateDer::pem_file_iter(format!("{data}/ingress-ca.pem")).unwrap()
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("shop.example").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let r = exchange(
        tls,
        b"GET /secure HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(resp_body(&r), "a GET /secure 0");

    // Plain HTTP on the TLS port gets nothing useful.
    let r = get(addr, "shop.example").await;
    assert_ne!(status(&r), 200);
}

#[tokio::test]
async fn bad_tls_files_and_busy_addresses_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let routes = RouteTable::open(&store, "localhost").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = Ingress::start(
        IngressSettings {
            listen: Some(taken.local_addr().unwrap()),
            ..settings()
        },
        routes.clone(),
        CancellationToken::new(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains(&taken.local_addr().unwrap().to_string()),
        "{err}"
    );
    let err = Ingress::start(
        IngressSettings {
            tls: Some(degroup_node::ingress::TlsFiles {
                cert: dir.path().join("missing.pem"),
                key: dir.path().join("missing-key.pem"),
            }),
            ..settings()
        },
        routes,
        CancellationToken::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[tokio::test]
async fn stopping_lets_the_request_in_flight_finish() {
    let node = start(settings());
    let addr = node.addr();
    node.routes
        .attach(A, Echo::slow("a", Duration::from_millis(500)));
    let pending = tokio::spawn(async move { get(addr, &format!("{A}.localhost")).await });
    let deadline = Instant::now() + SOON;
    while node.handle.stats().in_flight == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.cancel.cancel();
    let r = pending.await.unwrap();
    assert_eq!(status(&r), 200, "{r}");
    tokio::time::timeout(SOON, node.handle.stopped())
        .await
        .expect("the ingress did not stop");
    assert!(TcpStream::connect(addr).await.is_err());
}

/// Answers a body of `len` zero bytes.
struct Big(usize);

impl Endpoint for Big {
    fn serve(self: Arc<Self>, _req: Request) -> BoxFuture<'static, Response> {
        Box::pin(async move { Response::new(body(vec![0u8; self.0])) })
    }
}

#[tokio::test]
async fn idle_timeout_spares_slow_endpoints_but_not_clients_that_stop_reading() {
    let node = start(IngressSettings {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_millis(300),
        ..settings()
    });
    let addr = node.addr();
    node.routes
        .attach(A, Echo::slow("a", Duration::from_millis(1200)));
    let full = 64 << 20;
    node.routes.attach(B, Arc::new(Big(full)));

    // A request in flight longer than idle_timeout is not cut.
    let r = get(addr, &format!("{A}.localhost")).await;
    assert_eq!(status(&r), 200, "{r}");

    // A client that asks for 64 MiB and reads none of it loses the connection.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {B}.localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(SOON, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled connection stayed open");
    assert!(got < full, "the whole body arrived ({got} bytes)");
    let deadline = Instant::now() + SOON;
    while node.handle.stats().connections_open > 0 {
        assert!(Instant::now() < deadline, "{:?}", node.handle.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_run_on_the_ingress_runtime() {
    let node = start(settings());
    node.routes.attach(A, Arc::new(Where));
    let r = get(node.addr(), &format!("{A}.localhost")).await;
    assert_eq!(resp_body(&r), "degroup-ingress", "{r}");
}
