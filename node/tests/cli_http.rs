//! HTTP ingress end to end, with real `degroup` processes: a host running `--ingress`, tenants
//! deploying HTTP plugins with `--route`, and `curl`-like clients on real TCP.
//!
//! - `kv-api` behind a claimed route keeps its data across `kill -9` of the host, and its
//!   route answers 404 once the lease is released;
//! - route conflicts between tenants are refused (409 at the API, exit ≠ 0 in the CLI), and so
//!   are routes onto a component that serves no HTTP or a host that runs no ingress;
//! - hostile plugins (a handler that loops, one that bombs memory, one that streams without
//!   end) and hostile clients (slowloris, huge headers, a huge body) are contained with their
//!   status codes while a neighbour's requests keep succeeding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod programs;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`).
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Sends `method path` with `Host: host` (and `extra` header lines, and a body) to `addr`;
/// reads at most `max` bytes of the answer, for at most `limit`.
#[allow(clippy::too_many_arguments)]
fn request(
    addr: &str,
    method: &str,
    host: &str,
    path: &str,
    extra: &str,
    body: &[u8],
    max: usize,
    limit: Duration,
) -> Reply {
    // Refused (a host restarting): status 0, like any answer that is not HTTP.
    let Ok(mut s) = TcpStream::connect(addr) else {
        return Reply {
            status: 0,
            head: String::new(),
            body: Vec::new(),
        };
    };
    s.set_read_timeout(Some(limit)).ok();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    head.push_str(extra);
    let declared = extra.to_ascii_lowercase().contains("content-length:");
    if !declared && (!body.is_empty() || method == "PUT" || method == "POST") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    if !body.is_empty() {
        // A server that refuses early may close before the body is all written.
        let _ = s.write_all(body);
    }
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while raw.len() < max && started.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    Reply { status, head, body }
}

fn get(addr: &str, host: &str, path: &str) -> Reply {
    request(
        addr,
        "GET",
        host,
        path,
        "",
        b"",
        1 << 20,
        Duration::from_secs(15),
    )
}

/// The payload of a chunked body (as much as is there).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else { break };
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(b.len());
        out.extend_from_slice(&b[start..end]);
        if end + 2 > b.len() {
            break;
        }
        b = &b[end + 2..];
    }
    out
}

/// A host with capacity and an ingress on `ingress` (fixed, so that it survives a restart).
fn start_host(dir: &Path, listen: &str, ingress: &str, env: &[(&str, &str)]) -> NodeProc {
    let node = NodeProc::start_with_env(dir, &["--listen", listen, "--ingress", ingress], env);
    let set = degroup(
        dir,
        &[
            "capacity",
            "set",
            "--cpu",
            "2",
            "--mem",
            "4GiB",
            "--disk",
            "1GiB",
            "--country",
            "FR",
        ],
    );
    assert!(set.status.success(), "{}", stderr(&set));
    node
}

/// A tenant joined to the host, once it has the host's advert.
fn start_tenant(dir: &Path, boot: &str, host_id: &str) -> NodeProc {
    let t = NodeProc::start(dir, &["--bootstrap", boot]);
    assert!(
        eventually(Duration::from_secs(30), || {
            json(&t.dir, &["find", "ingress=true"])["matches"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["host"] == host_id))
        }),
        "the tenant finds the host with `find ingress=true`: {}",
        t.log()
    );
    t
}

fn pack(dir: &Path, name: &str, out: &Path) {
    pack_as(dir, &programs::path(name), name, "0.1.0", out);
}

fn deploy_routed(tenant: &Path, lease: &str, pkg: &Path, route: &str) -> serde_json::Value {
    json(
        tenant,
        &[
            "deploy",
            "--lease",
            &lease[..12],
            pkg.to_str().unwrap(),
            "--route",
            route,
        ],
    )
}

#[test]
fn kv_api_behind_a_route_survives_a_host_kill_and_leaves_with_its_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let host_dir = tmp.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    assert!(degroup(&host_dir, &["init"]).status.success());
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let ingress = format!("127.0.0.1:{}", free_port());
    let mut host = start_host(&host_dir, &listen, &ingress, &[]);
    let host_id = host.peer_id();
    let boot = format!("{listen}/p2p/{host_id}");
    let tenant = start_tenant(&tmp.path().join("tenant"), &boot, &host_id);
    assert_eq!(
        host.status()["ingress"]["listen"].as_str(),
        Some(ingress.as_str()),
        "status shows the ingress"
    );

    let pkg = tmp.path().join("kv-api.dgp");
    pack(&tenant.dir, "kv-api", &pkg);
    let lease = lease_on(&tenant.dir, &host_id, "1", "128MiB", "16MiB");
    let d = deploy_routed(&tenant.dir, &lease, &pkg, "kv.test");
    assert_eq!(d["state"], "running", "{d}");
    let id = d["id"].as_str().unwrap().to_owned();
    let port = ingress.rsplit(':').next().unwrap();
    let urls: Vec<String> = d["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    assert!(
        urls.contains(&format!("http://kv.test:{port}/"))
            && urls.contains(&format!("http://{id}.localhost:{port}/")),
        "deploy shows the deployment's URLs: {urls:?}"
    );

    let put = request(
        &ingress,
        "PUT",
        "kv.test",
        "/kv/greeting",
        "",
        b"bonjour",
        1 << 20,
        Duration::from_secs(15),
    );
    assert!(
        (200..300).contains(&put.status),
        "PUT: {} {}",
        put.head,
        put.text()
    );
    let got = get(&ingress, "kv.test", "/kv/greeting");
    assert_eq!(
        (got.status, got.text().as_str()),
        (200, "bonjour"),
        "{got:?}"
    );
    // The same deployment under its own name, with a port and in capitals.
    let by_id = get(
        &ingress,
        &format!("{}.LOCALHOST:{port}", id.to_uppercase()),
        "/kv/greeting",
    );
    assert_eq!((by_id.status, by_id.text().as_str()), (200, "bonjour"));
    let listed = get(&ingress, "kv.test", "/kv?prefix=gr");
    assert!(listed.text().contains("greeting"), "{listed:?}");
    // An unknown name: a 404 that says so, as JSON.
    let unknown = get(&ingress, "nobody.test", "/");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let err: serde_json::Value = serde_json::from_slice(&unknown.body).expect("a JSON 404");
    assert_eq!(err["code"], "not_found", "{err}");
    // The access log is in the deployment's logs.
    assert!(
        eventually(Duration::from_secs(10), || stdout(&degroup(
            &tenant.dir,
            &["logs", &id]
        ))
        .contains("GET /kv/greeting 200")),
        "an access-log line per request"
    );
    // The tenant's ps shows the URLs too.
    let ps = json(&tenant.dir, &["ps"]);
    let mine = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .unwrap();
    assert!(
        mine["urls"].as_array().is_some_and(|u| u.len() == 2),
        "{mine}"
    );

    // kill -9 of the host, then a restart: the route and the data are still there.
    host.signal(nix::sys::signal::Signal::SIGKILL);
    host.wait_exit(Duration::from_secs(10))
        .expect("the host dies");
    drop(host);
    let host = NodeProc::start(&host_dir, &["--listen", &listen, "--ingress", &ingress]);
    assert!(
        eventually(Duration::from_secs(30), || {
            let r = get(&ingress, "kv.test", "/kv/greeting");
            r.status == 200 && r.text() == "bonjour"
        }),
        "after kill -9 and a restart the value is served again; host log:\n{}",
        host.log()
    );

    // An upgrade (new code: kv-api packed again as 0.2.0) keeps the data and the route.
    let pkg2 = tmp.path().join("kv-api-2.dgp");
    pack_as(
        &tenant.dir,
        &programs::path("kv-api"),
        "kv-api",
        "0.2.0",
        &pkg2,
    );
    let up = json(
        &tenant.dir,
        &["deploy", "--upgrade", &id, pkg2.to_str().unwrap()],
    );
    assert_eq!(up["generation"], 2, "{up}");
    assert!(
        eventually(Duration::from_secs(30), || {
            let r = get(&ingress, "kv.test", "/kv/greeting");
            r.status == 200 && r.text() == "bonjour"
        }),
        "after an upgrade the value is served again"
    );

    // The lease released: the route goes with the deployment.
    let rel = degroup(&tenant.dir, &["lease", "release", &lease[..12]]);
    assert!(rel.status.success(), "release: {}", stderr(&rel));
    assert!(
        eventually(Duration::from_secs(20), || get(
            &ingress,
            "kv.test",
            "/kv/greeting"
        )
        .status
            == 404),
        "after the lease's release the route answers 404"
    );
    assert_eq!(
        get(&ingress, &format!("{id}.localhost"), "/").status,
        404,
        "and so does the deployment's own name"
    );
}

#[test]
fn conflicting_routes_and_routes_without_http_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let host_dir = tmp.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    assert!(degroup(&host_dir, &["init"]).status.success());
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let ingress = format!("127.0.0.1:{}", free_port());
    let host = start_host(&host_dir, &listen, &ingress, &[]);
    let host_id = host.peer_id();
    let boot = format!("{listen}/p2p/{host_id}");
    let first = start_tenant(&tmp.path().join("first"), &boot, &host_id);
    let second = start_tenant(&tmp.path().join("second"), &boot, &host_id);

    let hello = tmp.path().join("http-hello.dgp");
    pack(&first.dir, "http-hello", &hello);
    let l1 = lease_on(&first.dir, &host_id, "0.5", "64MiB", "1MiB");
    let d = deploy_routed(&first.dir, &l1, &hello, "shop.test");
    assert_eq!(d["state"], "running", "{d}");
    assert_eq!(get(&ingress, "shop.test", "/").status, 200);

    // The second tenant asks for the same name: refused, exit ≠ 0 …
    let hello2 = tmp.path().join("http-hello-2.dgp");
    pack(&second.dir, "http-hello", &hello2);
    let l2 = lease_on(&second.dir, &host_id, "0.5", "64MiB", "1MiB");
    let o = degroup(
        &second.dir,
        &[
            "deploy",
            "--lease",
            &l2[..12],
            hello2.to_str().unwrap(),
            "--route",
            "SHOP.test",
        ],
    );
    assert_clean_failure(&o, "shop.test");
    // … and 409 at the admin API.
    let addr = std::fs::read_to_string(second.dir.join("api.addr")).unwrap();
    let token = std::fs::read_to_string(second.dir.join("api.token")).unwrap();
    let body = serde_json::json!({
        "lease": l2,
        "package": base64_of(&std::fs::read(&hello2).unwrap()),
        "routes": ["shop.test"],
    })
    .to_string();
    let api = request(
        addr.trim(),
        "POST",
        addr.trim(),
        "/v1/deployments",
        &format!(
            "Authorization: Bearer {}\r\nContent-Type: application/json\r\n",
            token.trim()
        ),
        body.as_bytes(),
        1 << 20,
        Duration::from_secs(60),
    );
    assert_eq!(api.status, 409, "{api:?}");
    let err: serde_json::Value = serde_json::from_slice(&api.body).unwrap();
    assert_eq!(err["code"], "conflict", "{err}");
    // The first tenant's route still answers.
    assert_eq!(get(&ingress, "shop.test", "/").status, 200);

    // A name under the ingress domain is reserved for deployment ids.
    let o = degroup(
        &second.dir,
        &[
            "deploy",
            "--lease",
            &l2[..12],
            hello2.to_str().unwrap(),
            "--route",
            "mine.localhost",
        ],
    );
    assert!(!o.status.success(), "a route under the ingress domain");

    // A component that serves no HTTP cannot take a route.
    let counter = tmp.path().join("counter.dgp");
    pack(&second.dir, "counter", &counter);
    let o = degroup(
        &second.dir,
        &[
            "deploy",
            "--lease",
            &l2[..12],
            counter.to_str().unwrap(),
            "--route",
            "counter.test",
        ],
    );
    assert_clean_failure(&o, "incoming-handler");
    assert_eq!(get(&ingress, "counter.test", "/").status, 404);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn hostile_http_plugins_and_clients_are_contained_while_a_neighbour_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let host_dir = tmp.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    assert!(degroup(&host_dir, &["init"]).status.success());
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let ingress = format!("127.0.0.1:{}", free_port());
    let env = [
        ("DEGROUP_INGRESS__REQUEST_TIMEOUT", "2s"),
        ("DEGROUP_INGRESS__HEADER_TIMEOUT", "1s"),
        ("DEGROUP_INGRESS__MAX_REQUEST_BODY", "1MiB"),
        ("DEGROUP_INGRESS__MAX_RESPONSE_BODY", "4MiB"),
    ];
    let host = start_host(&host_dir, &listen, &ingress, &env);
    let host_id = host.peer_id();
    let boot = format!("{listen}/p2p/{host_id}");
    let good = start_tenant(&tmp.path().join("good"), &boot, &host_id);
    let bad = start_tenant(&tmp.path().join("bad"), &boot, &host_id);

    let hello = tmp.path().join("hello.dgp");
    pack(&good.dir, "http-hello", &hello);
    let l = lease_on(&good.dir, &host_id, "0.5", "64MiB", "1MiB");
    assert_eq!(
        deploy_routed(&good.dir, &l, &hello, "good.test")["state"],
        "running"
    );
    let neighbour_ok = || {
        let r = get(&ingress, "good.test", "/");
        assert_eq!(r.status, 200, "the neighbour answers: {r:?}");
    };
    neighbour_ok();

    for (name, route) in [
        ("http-loop", "loop.test"),
        ("http-memory-bomb", "bomb.test"),
        ("http-endless-body", "endless.test"),
    ] {
        let pkg = tmp.path().join(format!("{name}.dgp"));
        pack(&bad.dir, name, &pkg);
        let l = lease_on(&bad.dir, &host_id, "0.5", "64MiB", "1MiB");
        let d = deploy_routed(&bad.dir, &l, &pkg, route);
        assert_eq!(d["state"], "running", "{name}: {d}");
    }

    // A handler that loops: 504 at its deadline (2 s).
    let t = Instant::now();
    let r = get(&ingress, "loop.test", "/");
    assert_eq!(r.status, 504, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{r:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    neighbour_ok();
    // A handler that bombs memory: 500, twice (a fresh instance each time).
    for _ in 0..2 {
        let r = get(&ingress, "bomb.test", "/bomb");
        assert_eq!(r.status, 500, "{r:?}");
        let r = get(&ingress, "bomb.test", "/");
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "alive\n"),
            "a fresh instance"
        );
        neighbour_ok();
    }
    // A handler that streams forever: cut at the response cap (4 MiB) or the deadline.
    let r = request(
        &ingress,
        "GET",
        "endless.test",
        "/",
        "",
        b"",
        64 << 20,
        Duration::from_secs(20),
    );
    assert!(
        r.body.len() <= (4 << 20) + (64 << 10),
        "the endless body is cut: {} bytes",
        r.body.len()
    );
    neighbour_ok();

    // Hostile clients. Slowloris: half a request head, then nothing; the host closes it.
    let mut slow = TcpStream::connect(&ingress).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: good.test\r\nX-Slow: ")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let t = Instant::now();
    neighbour_ok();
    let mut sink = Vec::new();
    let _ = slow.read_to_end(&mut sink);
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "a slowloris connection is closed after the header timeout (took {:?})",
        t.elapsed()
    );
    // Huge headers: 431.
    let huge = format!("X-Big: {}\r\n", "a".repeat(64 * 1024));
    let r = request(
        &ingress,
        "GET",
        "good.test",
        "/",
        &huge,
        b"",
        1 << 20,
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 431, "{}", r.head);
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = request(
        &ingress,
        "GET",
        "good.test",
        "/",
        &many,
        b"",
        1 << 20,
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 431, "{}", r.head);
    // A huge body: 413 (declared), without reading it.
    let r = request(
        &ingress,
        "POST",
        "good.test",
        "/",
        "Content-Length: 104857600\r\n",
        b"",
        1 << 20,
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 413, "{}", r.head);
    let r = request(
        &ingress,
        "PUT",
        "good.test",
        "/",
        "",
        &vec![b'x'; 2 << 20],
        1 << 20,
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 413, "{}", r.head);
    neighbour_ok();

    // Every hostile request is counted; the ingress's counters are in `status`.
    let st = host.status();
    assert!(
        st["ingress"]["requests"].as_u64().unwrap_or(0) >= 8,
        "{}",
        st["ingress"]
    );
}

#[test]
fn plugin_run_serves_http_locally_in_the_same_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = std::process::Command::new(bin())
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["plugin", "run"])
        .arg(programs::path("kv-api"))
        .args(["--http", &addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || get(&addr, "any.name", "/kv/x")
            .status
            == 404),
        "plugin run --http answers (404 for a missing key)"
    );
    let put = request(
        &addr,
        "PUT",
        "any.name",
        "/kv/x",
        "",
        b"local",
        1 << 20,
        Duration::from_secs(10),
    );
    assert_eq!(put.status, 201, "{put:?}");
    let got = get(&addr, "other.name", "/kv/x");
    assert_eq!((got.status, got.text().as_str()), (200, "local"));
    // A declared body over the default cap (10 MiB) is refused as on a host.
    let big = request(
        &addr,
        "PUT",
        "any.name",
        "/kv/y",
        "Content-Length: 104857600\r\n",
        b"",
        1 << 20,
        Duration::from_secs(10),
    );
    assert_eq!(big.status, 413, "{big:?}");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("serving http://"), "{err}");
    assert!(err.contains("HTTP requests served"), "{err}");
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("PUT /kv/x 201"), "the access log: {logs}");
}

#[test]
fn plugin_run_http_refuses_a_component_without_a_handler() {
    let tmp = tempfile::tempdir().unwrap();
    let o = degroup(
        tmp.path(),
        &[
            "plugin",
            "run",
            programs::path("counter").to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
        ],
    );
    assert_clean_failure(&o, "incoming-handler");
}

/// A one-answer HTTP server on 127.0.0.1 (the upstream a plugin calls out to): answers every
/// request with `body` until the test ends.
fn upstream(body: &'static str) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(32) {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn outgoing_http_is_denied_unless_the_host_allows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = upstream("from the allowed upstream");
    let other = upstream("from another upstream");
    let host_dir = tmp.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    assert!(degroup(&host_dir, &["init"]).status.success());
    // Every tenant may call 127.0.0.1 on the allowed upstream's port, nothing else.
    let mut cfg = std::fs::read_to_string(host_dir.join("config.toml")).unwrap();
    cfg = cfg.replacen(
        "[ingress]\n",
        &format!(
            "[ingress]\noutgoing = [{{ tenant = \"*\", hosts = [\"127.0.0.1:{allowed}\"] }}]\n"
        ),
        1,
    );
    std::fs::write(host_dir.join("config.toml"), cfg).unwrap();
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let ingress = format!("127.0.0.1:{}", free_port());
    let host = start_host(&host_dir, &listen, &ingress, &[]);
    let host_id = host.peer_id();
    let tenant = start_tenant(
        &tmp.path().join("tenant"),
        &format!("{listen}/p2p/{host_id}"),
        &host_id,
    );
    let pkg = tmp.path().join("out.dgp");
    pack(&tenant.dir, "http-outgoing", &pkg);
    let lease = lease_on(&tenant.dir, &host_id, "0.5", "64MiB", "1MiB");
    assert_eq!(
        deploy_routed(&tenant.dir, &lease, &pkg, "out.test")["state"],
        "running"
    );
    let ok = get(
        &ingress,
        "out.test",
        &format!("/?url=http://127.0.0.1:{allowed}/"),
    );
    assert_eq!(
        (ok.status, ok.text().as_str()),
        (200, "from the allowed upstream"),
        "{ok:?}"
    );
    let denied = get(
        &ingress,
        "out.test",
        &format!("/?url=http://127.0.0.1:{other}/"),
    );
    assert_eq!(denied.status, 502, "{denied:?}");
    assert!(denied.text().contains("HttpRequestDenied"), "{denied:?}");
}
