//! `wasi:http` in the sandbox, in one process with real wasmtime: `HttpService::handle` driven
//! with in-memory requests, against `http-hello`, the proxy-only anchor component, the
//! hostile HTTP plugins of `wasm-plugins/hostile` and `http-counter`. Timings are only ever
//! checked against generous bounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod programs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use degroup_node::ingress::Response;
use degroup_node::lease::Meter;
use degroup_node::plugin::config::{HttpLimits, Limits};
use degroup_node::plugin::http::{HttpEnv, HttpService};
use degroup_node::plugin::kv::Kv;
use degroup_node::plugin::logs::Logs;
use degroup_node::plugin::runtime::{Compiled, Compiler, Env, LeaseInfo, Runtime, SandboxError};
use degroup_node::plugin::worker::{self, Spec, Started};
use degroup_node::resources::Resources;
use degroup_node::store::Store;
use http_body_util::{BodyExt as _, Full};

const MIB: u64 = 1 << 20;
const LEASE: [u8; 16] = [0x11; 16];

fn http_limits() -> HttpLimits {
    HttpLimits {
        deadline: Duration::from_secs(5),
        ..HttpLimits::default()
    }
}

fn runtime(http: HttpLimits) -> Arc<Runtime> {
    let limits = Limits {
        max_deployments: 8,
        http,
        ..Limits::default()
    };
    // Compiled code is cached across the test processes of this file (debug builds of
    // Cranelift are slow).
    let cache = programs::dir().join("../sandbox-http-cache");
    Runtime::new(limits, Some(cache), Compiler::InProcess).unwrap()
}

fn info(id: &str, cpu_millis: u64, mem: u64) -> LeaseInfo {
    LeaseInfo {
        lease_id: "11".repeat(16),
        deployment_id: id.to_owned(),
        host: "host".into(),
        tenant: "tenant".into(),
        slice: Resources {
            cpu_millis,
            mem_bytes: mem,
            disk_bytes: 4 * MIB,
            gpus: 0,
        },
        starts_at: 0,
        ends_at: u64::MAX,
        package_name: id.to_owned(),
        package_version: "0.1.0".into(),
    }
}

/// One HTTP deployment and what the test looks at.
struct Deployed {
    service: Arc<HttpService>,
    compiled: Compiled,
    kv: Kv,
    logs: Logs,
    meter: Meter,
    _tmp: tempfile::TempDir,
    _store: Store,
}

fn deploy_wasm(
    rt: &Arc<Runtime>,
    id: &str,
    wasm: &[u8],
    cpu_millis: u64,
    outgoing: &[&str],
) -> Deployed {
    let compiled = rt.compile(wasm).unwrap_or_else(|e| panic!("{id}: {e}"));
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let kv = Kv::open(&store, id, 4 * MIB).unwrap();
    let logs = Logs::new(1000, 1000);
    let meter = Meter::default();
    let env = HttpEnv {
        id: id.to_owned(),
        lease: LEASE,
        info: info(id, cpu_millis, 64 * MIB),
        kv: kv.share(),
        logs: logs.clone(),
        meter: meter.clone(),
        outgoing: outgoing.iter().map(|s| (*s).to_owned()).collect(),
        share: None,
        control: degroup_node::plugin::control::Control::detached(),
    };
    let service = HttpService::new(Arc::clone(rt), &compiled, env).expect("serves HTTP");
    Deployed {
        service,
        compiled,
        kv,
        logs,
        meter,
        _tmp: tmp,
        _store: store,
    }
}

fn deploy(rt: &Arc<Runtime>, name: &str) -> Deployed {
    deploy_wasm(rt, name, &programs::wasm(name), 1000, &[])
}

fn get(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .uri(format!("http://test.local{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Status and the whole body (an error if the body was cut).
async fn read(resp: Response) -> (u16, Result<Bytes, String>) {
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string());
    (status, body)
}

fn json(body: &Result<Bytes, String>) -> serde_json::Value {
    serde_json::from_slice(body.as_ref().unwrap()).unwrap()
}

/// Polls `check` until it holds or `limit` passes.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_hello_answers_and_its_instance_is_reused() {
    let rt = runtime(http_limits());
    let d = deploy(&rt, "http-hello");
    assert!(d.compiled.serves_http() && d.compiled.has_plugin());
    for _ in 0..10 {
        let (status, body) = read(d.service.handle(get("/items")).await).await;
        assert_eq!(status, 200);
        assert_eq!(body.unwrap(), "hello from degroup\n");
    }
    assert!(eventually(Duration::from_secs(5), || d.service.stats().in_flight == 0).await);
    let stats = d.service.stats();
    assert_eq!(stats.requests, 10);
    assert_eq!(stats.status_2xx, 10);
    // The body's end waits for the instance to be back in the pool: one served them all.
    assert_eq!(stats.instances, 1, "{stats:?}");
    assert_eq!(stats.idle, 1, "{stats:?}");
    assert!(stats.fuel > 0);
    let usage = d.meter.take(&LEASE);
    assert!(usage.fuel > 0 && usage.peak_mem_bytes > 0, "{usage:?}");
    let page = d.logs.read(0, 100);
    assert!(
        page.lines
            .iter()
            .any(|l| l.source == "http" && l.message.starts_with("GET /items 200 ")),
        "{:?}",
        page.lines
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_instance_per_request_with_reuse_1() {
    let rt = runtime(HttpLimits {
        reuse: 1,
        ..http_limits()
    });
    let d = deploy(&rt, "http-hello");
    for _ in 0..3 {
        let (status, _) = read(d.service.handle(get("/")).await).await;
        assert_eq!(status, 200);
    }
    assert!(eventually(Duration::from_secs(5), || d.service.stats().instances == 0).await);
}

/// `../shared/anchors/http-hello`, built for wasm32-wasip2, if it is there and builds.
fn anchor() -> Option<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest = root.join("shared/anchors/http-hello/Cargo.toml");
    if !manifest.is_file() {
        eprintln!("skipped: {} is absent", manifest.display());
        return None;
    }
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/anchors");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "skipped: the anchor does not build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    std::fs::read(target.join("wasm32-wasip2/release/http_hello.wasm")).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_only_component_serves_http_and_its_worker_idles() {
    let Some(wasm) = anchor() else {
        return;
    };
    let rt = runtime(http_limits());
    let d = deploy_wasm(&rt, "anchor", &wasm, 1000, &[]);
    assert!(d.compiled.serves_http());
    assert!(!d.compiled.has_plugin());
    let (status, body) = read(d.service.handle(get("/")).await).await;
    assert_eq!(status, 200);
    assert_eq!(body.unwrap(), "hello from a plugin\n");

    // No plugin instance of it.
    let env = Env {
        info: info("anchor", 1000, 64 * MIB),
        kv: d.kv.share(),
        logs: d.logs.clone(),
        control: degroup_node::plugin::control::Control::detached(),
    };
    match rt.instantiate(&d.compiled, env).await {
        Err((SandboxError::Link(msg), _)) => assert!(msg.contains("HTTP only"), "{msg}"),
        other => panic!("expected a link error, got {:?}", other.map(|_| ()).err()),
    }

    // Its worker runs without an instance, drops messages, stops.
    let (events, _events_rx) = tokio::sync::mpsc::unbounded_channel();
    let spec = Spec {
        id: "anchor".into(),
        lease: LEASE,
        runtime: Arc::clone(&rt),
        compiled: d.compiled.clone(),
        env: Env {
            info: info("anchor", 1000, 64 * MIB),
            kv: d.kv.share(),
            logs: d.logs.clone(),
            control: degroup_node::plugin::control::Control::detached(),
        },
        config: Vec::new(),
        meter: d.meter.clone(),
        events,
        fuel_per_second: None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let w = worker::spawn(spec, tx).unwrap();
    assert_eq!(rx.await.unwrap(), Started::Running);
    w.message("cli".into(), b"hi".to_vec()).unwrap();
    let logs = d.logs.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            logs.read(0, 1000).lines.iter().any(|l| {
                l.message
                    .contains("dropped: the component serves HTTP only")
            })
        })
        .await
    );
    let (state, _, _) = w.shared.snapshot();
    assert_eq!(state, degroup_node::plugin::deployment::State::Running);
    tokio::task::spawn_blocking(move || w.stop()).await.unwrap();
}

#[tokio::test]
async fn a_component_with_neither_world_is_refused() {
    let rt = runtime(http_limits());
    // A component exporting nothing.
    let wasm = wat::parse_str("(component)").unwrap();
    match rt.compile(&wasm) {
        Err(SandboxError::Link(msg)) => assert!(
            msg.contains("exports neither the degroup:plugin world"),
            "{msg}"
        ),
        other => panic!("expected a link error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_handler_gets_504_and_other_deployments_keep_answering() {
    let deadline = Duration::from_millis(500);
    let rt = runtime(HttpLimits {
        deadline,
        ..http_limits()
    });
    let looping = deploy(&rt, "http-loop");
    let hello = deploy(&rt, "http-hello");
    let started = Instant::now();
    let svc = Arc::clone(&looping.service);
    let stuck = tokio::spawn(async move { read(svc.handle(get("/")).await).await });
    // While it spins, the other deployment answers.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _) = read(hello.service.handle(get("/")).await).await;
    assert_eq!(status, 200);
    let (status, body) = stuck.await.unwrap();
    assert_eq!(status, 504);
    let j = json(&body);
    assert_eq!(j["code"], "deadline");
    assert_eq!(j["retryable"], false);
    assert!(started.elapsed() < deadline + Duration::from_secs(5));
    let stats = looping.service.stats();
    assert_eq!(stats.deadline, 1, "{stats:?}");
    assert!(
        eventually(Duration::from_secs(5), || looping.service.stats().instances
            == 0)
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_gets_500_and_the_next_request_a_fresh_instance() {
    let rt = runtime(http_limits());
    let d = deploy(&rt, "http-memory-bomb");
    let (status, _) = read(d.service.handle(get("/")).await).await;
    assert_eq!(status, 200);
    let (status, body) = read(d.service.handle(get("/bomb")).await).await;
    assert_eq!(status, 500);
    let j = json(&body);
    assert_eq!(j["code"], "plugin_fault");
    assert!(j["error"].as_str().unwrap().contains("memory limit"), "{j}");
    assert_eq!(d.service.stats().traps, 1);
    let (status, body) = read(d.service.handle(get("/")).await).await;
    assert_eq!(status, 200);
    assert_eq!(body.unwrap(), "alive\n");
    let usage = d.meter.take(&LEASE);
    assert!(usage.peak_mem_bytes >= 32 * MIB, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_is_cut_at_the_cap_and_at_the_deadline() {
    let rt = runtime(HttpLimits {
        max_response_body: MIB,
        deadline: Duration::from_secs(2),
        ..http_limits()
    });
    let d = deploy(&rt, "http-endless-body");
    let t = Instant::now();
    let (status, body) = read(d.service.handle(get("/")).await).await;
    assert_eq!(status, 200);
    let err = body.unwrap_err();
    assert!(err.contains("passed 1048576 bytes"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(7));
    assert!(eventually(Duration::from_secs(5), || d.service.stats().instances == 0).await);

    // Past a cap it cannot reach in time, the deadline ends it.
    let rt = runtime(HttpLimits {
        max_response_body: u64::MAX,
        deadline: Duration::from_millis(500),
        ..http_limits()
    });
    let d = deploy(&rt, "http-endless-body");
    let t = Instant::now();
    let (status, body) = read(d.service.handle(get("/")).await).await;
    assert_eq!(status, 200);
    assert!(body.is_err());
    assert!(t.elapsed() < Duration::from_millis(500) + Duration::from_secs(5));
    assert!(eventually(Duration::from_secs(5), || d.service.stats().instances == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_is_503_with_retry_after() {
    let rt = runtime(HttpLimits {
        deadline: Duration::from_secs(2),
        ..http_limits()
    });
    // No CPU leased: the floor of two requests at once.
    let d = deploy_wasm(&rt, "http-loop", &programs::wasm("http-loop"), 0, &[]);
    assert_eq!(d.service.concurrency(), 2);
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let svc = Arc::clone(&d.service);
        stuck.push(tokio::spawn(async move {
            read(svc.handle(get("/")).await).await
        }));
    }
    assert!(eventually(Duration::from_secs(5), || d.service.stats().in_flight == 2).await);
    let resp = d.service.handle(get("/")).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let (_, body) = read(resp).await;
    let j = json(&body);
    assert_eq!(j["code"], "unavailable");
    assert_eq!(j["retryable"], true);
    for s in stuck {
        // The deadline stops them (fuel only measures an HTTP request).
        let (status, body) = s.await.unwrap();
        let j = json(&body);
        assert_eq!(status, 504, "{j}");
    }
    assert_eq!(d.service.stats().rejected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_cap_is_413_without_running_the_plugin() {
    let rt = runtime(HttpLimits {
        max_request_body: 10,
        ..http_limits()
    });
    // It would loop if it ran.
    let d = deploy(&rt, "http-loop");
    let req = http::Request::builder()
        .method("POST")
        .uri("http://test.local/upload")
        .header("content-length", "11")
        .body(Full::new(Bytes::from_static(b"01234567890")))
        .unwrap();
    let t = Instant::now();
    let (status, body) = read(d.service.handle(req).await).await;
    assert_eq!(status, 413);
    assert_eq!(json(&body)["code"], "too_large");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(d.service.stats().instances, 0);
}

/// A one-shot HTTP server on 127.0.0.1 answering `upstream`; its port.
async fn upstream() -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream",
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_http_is_denied_by_default_and_allowed_by_pattern() {
    let port = upstream().await;
    let rt = runtime(http_limits());
    let wasm = programs::wasm("http-outgoing");
    let path = format!("/?url=http://127.0.0.1:{port}/x");

    let denied = deploy_wasm(&rt, "denied", &wasm, 1000, &[]);
    let (status, body) = read(denied.service.handle(get(&path)).await).await;
    assert_eq!(status, 502);
    let text = String::from_utf8_lossy(body.as_ref().unwrap()).into_owned();
    assert!(text.contains("HttpRequestDenied"), "{text}");

    let other = deploy_wasm(&rt, "other", &wasm, 1000, &["127.0.0.2:*", "example.com"]);
    let (status, body) = read(other.service.handle(get(&path)).await).await;
    assert_eq!(status, 502);
    assert!(String::from_utf8_lossy(body.as_ref().unwrap()).contains("HttpRequestDenied"));

    let allowed = deploy_wasm(&rt, "allowed", &wasm, 1000, &["127.0.0.1:*"]);
    let (status, body) = read(allowed.service.handle(get(&path)).await).await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(body.unwrap(), "upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_instances_and_the_plugin_instance_share_the_store() {
    let rt = runtime(http_limits());
    let d = deploy(&rt, "http-counter");
    let env = Env {
        info: info("http-counter", 1000, 64 * MIB),
        kv: d.kv.share(),
        logs: d.logs.clone(),
        control: degroup_node::plugin::control::Control::detached(),
    };
    let mut inst = rt
        .instantiate(&d.compiled, env)
        .await
        .map_err(|e| e.0)
        .unwrap();
    inst.init(&[]).await.result.unwrap().unwrap();
    inst.message("cli", b"41").await.result.unwrap();
    let (status, body) = read(d.service.handle(get("/")).await).await;
    assert_eq!(status, 200);
    assert_eq!(body.unwrap(), "42");
    assert_eq!(d.kv.get("hits").unwrap().unwrap(), b"42");
    // Metered when the call has returned (just after its body ended).
    assert!(eventually(Duration::from_secs(5), || d.service.stats().in_flight == 0).await);
    let usage = d.meter.take(&LEASE);
    assert!(usage.storage_bytes > 0 && usage.fuel > 0, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_cap_is_413() {
    let rt = runtime(HttpLimits {
        max_request_body: 100,
        ..http_limits()
    });
    let d = deploy(&rt, "http-counter");
    let post = |chunks: Vec<&'static [u8]>| {
        let frames = chunks.into_iter().map(|c| {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from_static(c)))
        });
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        http::Request::builder()
            .method("POST")
            .uri("http://test.local/echo")
            .body(body)
            .unwrap()
    };
    let (status, body) = read(d.service.handle(post(vec![b"hello ", b"there"])).await).await;
    assert_eq!(status, 200);
    assert_eq!(body.unwrap(), "hello there");
    let big: &'static [u8] = &[b'x'; 60];
    let (status, body) = read(d.service.handle(post(vec![big, big, big])).await).await;
    assert_eq!(status, 413);
    assert_eq!(json(&body)["code"], "too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_at_the_concurrency_bound_are_never_refused() {
    let rt = runtime(http_limits());
    let d = deploy_wasm(&rt, "hello", &programs::wasm("http-hello"), 0, &[]);
    assert_eq!(d.service.concurrency(), 2);
    let mut clients = Vec::new();
    for _ in 0..2 {
        let svc = Arc::clone(&d.service);
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..25 {
                statuses.push(read(svc.handle(get("/")).await).await.0);
            }
            statuses
        }));
    }
    for c in clients {
        let statuses = c.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    let stats = d.service.stats();
    assert_eq!(stats.rejected, 0, "{stats:?}");
    assert!(stats.instances <= 2, "{stats:?}");
}

/// A deployment of `name` under a lease of `mem` bytes, sharing `share`.
fn deploy_shared(
    rt: &Arc<Runtime>,
    name: &str,
    mem: u64,
) -> (Deployed, Arc<degroup_node::plugin::http::HttpShare>) {
    let compiled = rt.compile(&programs::wasm(name)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let kv = Kv::open(&store, name, 4 * MIB).unwrap();
    let logs = Logs::new(1000, 1000);
    let meter = Meter::default();
    let lease = info(name, 1000, mem);
    let share = degroup_node::plugin::http::HttpShare::new(&rt.limits().http, &lease);
    let env = HttpEnv {
        id: name.to_owned(),
        lease: LEASE,
        info: lease,
        kv: kv.share(),
        logs: logs.clone(),
        meter: meter.clone(),
        outgoing: Vec::new(),
        share: Some(Arc::clone(&share)),
        control: degroup_node::plugin::control::Control::detached(),
    };
    let service = HttpService::new(Arc::clone(rt), &compiled, env).expect("serves HTTP");
    (
        Deployed {
            service,
            compiled,
            kv,
            logs,
            meter,
            _tmp: tmp,
            _store: store,
        },
        share,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_the_leases_memory() {
    let rt = runtime(HttpLimits {
        deadline: Duration::from_secs(2),
        ..http_limits()
    });
    // What one instance of the looping handler holds.
    let (probe, share) = deploy_shared(&rt, "http-loop", 64 * MIB);
    let svc = Arc::clone(&probe.service);
    let one = tokio::spawn(async move { read(svc.handle(get("/")).await).await });
    assert!(eventually(Duration::from_secs(10), || share.memory_used() > 0).await);
    let per = share.memory_used() as u64;
    assert_eq!(one.await.unwrap().0, 504);
    // A lease with room for two of them: two requests in flight, the third is refused (503),
    // not given memory beyond the lease.
    let (d, share) = deploy_shared(&rt, "http-loop", per * 2 + per / 2);
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let svc = Arc::clone(&d.service);
        stuck.push(tokio::spawn(async move {
            read(svc.handle(get("/")).await).await
        }));
    }
    assert!(
        eventually(Duration::from_secs(10), || share.memory_used() as u64
            >= 2 * per)
        .await,
        "two instances hold {} bytes",
        share.memory_used()
    );
    let (status, body) = read(d.service.handle(get("/")).await).await;
    assert_eq!(status, 503, "{body:?}");
    let j = json(&body);
    assert!(j["error"].as_str().unwrap().contains("memory"), "{j}");
    assert!(share.memory_used() as u64 <= per * 2 + per / 2);
    for s in stuck {
        assert_eq!(s.await.unwrap().0, 504);
    }
    // Their memory is given back with their instances.
    assert!(eventually(Duration::from_secs(10), || share.memory_used() == 0).await);
}

/// CPU time (user + system) this process has used, from /proc (clock ticks of 10 ms).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_requests_get_no_more_cpu_than_the_lease() {
    let deadline = Duration::from_secs(2);
    let rt = runtime(HttpLimits {
        deadline,
        ..http_limits()
    });
    // A tenth of a core: three requests in flight (N = max(2, 100 × 32 / 1000)).
    let spin = deploy_wasm(&rt, "http-loop", &programs::wasm("http-loop"), 100, &[]);
    let hello = deploy(&rt, "http-hello");
    assert_eq!(read(hello.service.handle(get("/")).await).await.0, 200);
    let before = process_cpu();
    let mut stuck = Vec::new();
    for _ in 0..spin.service.concurrency() {
        let svc = Arc::clone(&spin.service);
        stuck.push(tokio::spawn(async move {
            read(svc.handle(get("/")).await).await
        }));
    }
    // The neighbour is served while they spin.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(read(hello.service.handle(get("/")).await).await.0, 200);
    for s in stuck {
        assert_eq!(s.await.unwrap().0, 504, "the deadline still ends them");
    }
    let used = process_cpu().saturating_sub(before);
    // Unthrottled, they would keep both threads busy for the whole deadline (about 4 s of
    // CPU); the lease allows 0.1 core × 2 s plus a burst of 0.1 s.
    assert!(
        used < Duration::from_millis(1500),
        "the spinning deployment used {used:?} of CPU in {deadline:?}"
    );
}
