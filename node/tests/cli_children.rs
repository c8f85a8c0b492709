//! Child workloads end to end, with real `degroup` processes: a host and a tenant. The tenant
//! deploys `spawner`, which starts children (`degroup:plugin/workload`) from packages the
//! host's operator published (`blake3:` references).
//!
//! - the children run: `ps --tree` shows them under the parent on the host and on the tenant,
//!   `logs CHILD` works on both, and their fuel lands in the parent lease's receipt;
//! - asking for more than the lease has left is `insufficient-capacity`, and nothing starts;
//! - a child memory bomb fails only that child: the parent and a sibling keep running;
//! - stopping the parent stops its children;
//! - children come back after a host restart (SIGTERM, start), an upgrade of the parent to code
//!   that imports `workload` adopts them and one to code that does not stops them, and a lease
//!   release stops everything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod programs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const HOST_ENV: &[(&str, &str)] = &[
    ("DEGROUP_PLUGIN__TICK_INTERVAL", "100ms"),
    ("DEGROUP_PLUGIN__BACKOFF", "50ms"),
    ("DEGROUP_PLUGIN__MAX_FAILURES", "3"),
];

const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    _tmp: tempfile::TempDir,
    host: NodeProc,
    tenant: NodeProc,
    host_id: String,
    listen: String,
    /// `blake3:` references of `hello` and `memory-bomb`, published by the host's operator.
    hello: String,
    bomb: String,
    http_hello: String,
    spawner: PathBuf,
}

fn setup() -> Setup {
    setup_with(&[])
}

fn setup_with(extra: &[&str]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let host_dir = tmp.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    assert!(degroup(&host_dir, &["init"]).status.success());
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let mut args = vec!["--listen", listen.as_str()];
    args.extend_from_slice(extra);
    let host = NodeProc::start_with_env(&host_dir, &args, HOST_ENV);
    let set = degroup(
        &host_dir,
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
    let host_id = host.peer_id();
    let boot = format!("{listen}/p2p/{host_id}");
    let tenant = NodeProc::start(&tmp.path().join("tenant"), &["--bootstrap", &boot]);
    assert!(
        eventually(WAIT, || {
            let f = json(&tenant.dir, &["find", "country=FR"]);
            f["matches"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["host"] == host_id.as_str()))
        }),
        "the tenant sees the host's advert"
    );
    let publish = |name: &str| {
        let pkg = tmp.path().join(format!("{name}.dgp"));
        pack_as(&host_dir, &programs::path(name), name, "0.1.0", &pkg);
        let p = json(&host_dir, &["plugin", "publish", pkg.to_str().unwrap()]);
        format!("blake3:{}", p["hash"].as_str().unwrap())
    };
    let hello = publish("hello");
    let bomb = publish("memory-bomb");
    let http_hello = publish("http-hello");
    let spawner = tmp.path().join("spawner.dgp");
    pack_as(
        &tenant.dir,
        &programs::path("spawner"),
        "spawner",
        "0.1.0",
        &spawner,
    );
    Setup {
        _tmp: tmp,
        host,
        tenant,
        host_id,
        listen,
        hello,
        bomb,
        http_hello,
        spawner,
    }
}

fn deploy(s: &Setup, lease: &str, children: &str) -> String {
    deploy_with(s, lease, children, &[])
}

fn deploy_with(s: &Setup, lease: &str, children: &str, extra: &[&str]) -> String {
    let config = format!("children={children}");
    let mut args = vec![
        "deploy",
        "--lease",
        &lease[..12],
        s.spawner.to_str().unwrap(),
        "--config",
        &config,
        "--config",
        "child.name=kid",
    ];
    args.extend_from_slice(extra);
    let d = json(&s.tenant.dir, &args);
    d["id"].as_str().unwrap().to_owned()
}

/// `GET /` on the ingress with `Host: host`: the body, empty on any failure.
fn body_for(ingress: &str, host: &str) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(ingress) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    if write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return String::new();
    }
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok();
    resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
}

fn ps(dir: &Path) -> Vec<serde_json::Value> {
    json(dir, &["ps"]).as_array().unwrap().clone()
}

fn children_of(dir: &Path, parent: &str) -> Vec<serde_json::Value> {
    ps(dir)
        .into_iter()
        .filter(|v| v["parent"] == parent)
        .collect()
}

fn state(dir: &Path, id: &str) -> String {
    ps(dir)
        .iter()
        .find(|v| v["id"] == id)
        .and_then(|v| v["state"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn logs(dir: &Path, id: &str) -> String {
    stdout(&degroup(dir, &["logs", id]))
}

/// The child started from `reference`, by the spawner's log line `started <id> <ref>`.
fn child_id(dir: &Path, parent: &str, reference: &str) -> Option<String> {
    logs(dir, parent)
        .lines()
        .filter_map(|l| l.split("started ").nth(1))
        .filter(|rest| rest.trim_end().ends_with(reference))
        .find_map(|rest| rest.split_whitespace().next().map(str::to_owned))
}

fn fuel(v: &serde_json::Value) -> u64 {
    v["counters"]["fuel"].as_u64().unwrap_or(0)
}

#[test]
fn children_run_under_their_parent_within_its_lease() {
    let s = setup();
    let host = &s.host.dir;
    let tenant = &s.tenant.dir;
    let lease = lease_on(tenant, &s.host_id, "0.5", "256MiB", "8MiB");
    let children = format!("{}|32|100000000|64;{}|16|50000000|0", s.hello, s.bomb);
    let parent = deploy(&s, &lease, &children);

    // Both children start; the bomb fails alone.
    let mut hello = None;
    let mut bomb = None;
    assert!(
        eventually(WAIT, || {
            hello = child_id(host, &parent, &s.hello);
            bomb = child_id(host, &parent, &s.bomb);
            hello.is_some() && bomb.is_some()
        }),
        "the spawner started both children: {}",
        logs(host, &parent)
    );
    let (hello, bomb) = (hello.unwrap(), bomb.unwrap());
    assert!(
        eventually(WAIT, || state(host, &bomb) == "failed"),
        "the memory bomb fails: {:?}",
        ps(host)
    );
    let bomb_view = ps(host)
        .into_iter()
        .find(|v| v["id"] == bomb.as_str())
        .unwrap();
    assert!(
        bomb_view["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("memory"),
        "{bomb_view}"
    );
    assert!(
        eventually(WAIT, || state(host, &hello) == "running"),
        "the sibling runs"
    );
    assert!(
        eventually(WAIT, || logs(host, &hello).contains("hello, kid")),
        "the child got its config: {}",
        logs(host, &hello)
    );
    assert_eq!(state(host, &parent), "running", "the parent keeps running");
    assert_eq!(state(host, &hello), "running", "the sibling keeps running");
    let kids: Vec<String> = children_of(host, &parent)
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids.len(), 2, "{kids:?}");

    // `ps --tree`: the children right under their parent, indented.
    let tree = stdout(&degroup(host, &["ps", "--tree"]));
    let lines: Vec<&str> = tree.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with(&parent[..12]))
        .unwrap_or_else(|| panic!("parent in the tree: {tree}"));
    for l in &lines[at + 1..at + 3] {
        assert!(l.starts_with("  "), "children indented: {tree}");
        assert!(
            kids.iter().any(|k| l.trim_start().starts_with(&k[..12])),
            "{tree}"
        );
    }

    // The tenant's node learns them from the host (asked for a child it does not know yet,
    // it asks its hosts).
    assert!(
        eventually(WAIT, || logs(tenant, &hello).contains("hello, kid")),
        "logs CHILD on the tenant's node before any `ps` there"
    );
    assert!(
        eventually(WAIT, || children_of(tenant, &parent).len() == 2),
        "the tenant lists the children: {:?}",
        ps(tenant)
    );
    let tree = stdout(&degroup(tenant, &["ps", "--tree"]));
    assert!(
        tree.lines()
            .any(|l| l.starts_with("  ") && l.trim_start().starts_with(&hello[..12])),
        "{tree}"
    );
    assert!(
        logs(tenant, &hello).contains("hello, kid"),
        "logs CHILD on the tenant's node"
    );

    // More than the lease has left: refused, nothing started.
    for (ask, what) in [
        (format!("start {}|300|1000|0", s.hello), "memory"),
        (format!("start {}|1|999999999999|0", s.hello), "fuel"),
        (format!("start {}|1|1000|9000", s.hello), "kv"),
    ] {
        let sent = degroup(tenant, &["message", &parent, &ask]);
        assert!(sent.status.success(), "{}", stderr(&sent));
        assert!(
            eventually(WAIT, || {
                logs(host, &parent)
                    .lines()
                    .any(|l| l.contains("refused: Error::InsufficientCapacity") && l.contains(what))
            }),
            "{what}: {}",
            logs(host, &parent)
        );
    }
    assert_eq!(children_of(host, &parent).len(), 2, "nothing more started");

    // Bad references are refused; `list` shows the children as the host sees them.
    for (ask, what) in [
        (
            "start blake3:zz|1|1000|0",
            "start blake3:zz refused: Error::BadPackage",
        ),
        (
            "start hello@0.1.0|1|1000|0",
            "start hello@0.1.0 refused: Error::BadPackage",
        ),
        ("list", "2 children"),
    ] {
        let sent = degroup(tenant, &["message", &parent, ask]);
        assert!(sent.status.success(), "{}", stderr(&sent));
        assert!(
            eventually(WAIT, || logs(host, &parent).contains(what)),
            "{ask}: {}",
            logs(host, &parent)
        );
    }
    let log = logs(host, &parent);
    assert!(
        log.contains(&format!("child {bomb} failed"))
            && log.contains(&format!("child {hello} running")),
        "{log}"
    );
    assert_eq!(children_of(host, &parent).len(), 2, "nothing more started");

    // The child's fuel is in the lease's receipt.
    assert!(
        eventually(WAIT, || ps(host)
            .iter()
            .any(|v| v["id"] == hello.as_str() && fuel(v) > 0)),
        "the child burns fuel"
    );
    let before: u64 = ps(host)
        .iter()
        .filter(|v| v["id"] == hello.as_str() || v["id"] == parent.as_str())
        .map(fuel)
        .sum();

    // Stopping the parent stops its children.
    let stopped = json(tenant, &["stop", &parent]);
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(
        eventually(Duration::from_secs(5), || children_of(host, &parent)
            .iter()
            .all(|v| v["state"] == "stopped")),
        "children stop with their parent: {:?}",
        children_of(host, &parent)
    );
    let released = degroup(tenant, &["lease", "release", &lease]);
    assert!(released.status.success(), "{}", stderr(&released));
    let receipts = json(host, &["lease", "receipts", &lease]);
    let billed: u64 = receipts["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cpu_fuel"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        billed >= before,
        "receipts carry the child's fuel: {billed} < {before}: {receipts}"
    );
    let addr = std::fs::read_to_string(host.join("api.addr")).unwrap();
    let token = std::fs::read_to_string(host.join("api.token")).unwrap();
    let metrics = http_get(addr.trim(), "/metrics", Some(token.trim()));
    assert!(
        metrics.1.contains("degroup_child_start_seconds_count"),
        "{}",
        metrics.1
    );
}

#[test]
fn children_come_back_after_a_host_restart_and_go_with_the_lease() {
    let mut s = setup();
    let tenant = s.tenant.dir.clone();
    let lease = lease_on(&tenant, &s.host_id, "0.5", "256MiB", "8MiB");
    let parent = deploy(&s, &lease, &format!("{}|32|100000000|0", s.hello));
    let mut child = None;
    assert!(
        eventually(WAIT, || {
            child = child_id(&s.host.dir, &parent, &s.hello);
            child.is_some()
        }),
        "started: {}",
        logs(&s.host.dir, &parent)
    );
    let child = child.unwrap();
    assert!(eventually(WAIT, || state(&s.host.dir, &child) == "running"));

    s.host.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(s.host.wait_exit(WAIT).is_some(), "the host exits");
    let host_dir = s.host.dir.clone();
    s.host = NodeProc::start_with_env(&host_dir, &["--listen", &s.listen], HOST_ENV);
    assert!(
        eventually(WAIT, || state(&host_dir, &child) == "running"
            && state(&host_dir, &parent) == "running"),
        "the child is back: {:?}",
        ps(&host_dir)
    );
    assert_eq!(
        children_of(&host_dir, &parent).len(),
        1,
        "the same child, not a second one"
    );

    // An upgrade to code that imports `workload` adopts the children…
    let upgrade = |name: &str, version: &str| {
        let pkg = tenant.join(format!("{name}-{version}.dgp"));
        pack_as(&tenant, &programs::path(name), name, version, &pkg);
        let up = json(
            &tenant,
            &["deploy", "--upgrade", &parent, pkg.to_str().unwrap()],
        );
        assert_eq!(up["version"], version, "{up}");
    };
    upgrade("spawner", "0.2.0");
    assert!(
        eventually(WAIT, || state(&host_dir, &parent) == "running"),
        "upgraded"
    );
    assert_eq!(state(&host_dir, &child), "running", "adopted");
    assert_eq!(children_of(&host_dir, &parent).len(), 1);
    // …and one to code that does not stops them.
    upgrade("hello", "0.3.0");
    assert!(
        eventually(Duration::from_secs(5), || state(&host_dir, &child)
            == "stopped"),
        "children stop when the parent no longer imports workload: {:?}",
        ps(&host_dir)
    );
    let v = ps(&host_dir)
        .into_iter()
        .find(|v| v["id"] == child.as_str())
        .unwrap();
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("upgraded"),
        "{v}"
    );

    let released = degroup(&tenant, &["lease", "release", &lease]);
    assert!(released.status.success(), "{}", stderr(&released));
    assert!(
        eventually(Duration::from_secs(5), || {
            let all = ps(&host_dir);
            [&parent, &child].iter().all(|id| {
                all.iter()
                    .any(|v| v["id"] == id.as_str() && v["state"] == "stopped")
            })
        }),
        "a lease release stops everything: {:?}",
        ps(&host_dir)
    );
}

#[test]
fn a_parents_route_goes_to_a_child_and_back() {
    let ingress = format!("127.0.0.1:{}", free_port());
    let s = setup_with(&["--ingress", &ingress]);
    let host = &s.host.dir;
    let tenant = &s.tenant.dir;
    let lease = lease_on(tenant, &s.host_id, "0.5", "256MiB", "8MiB");
    let children = format!("{}|32|100000000|0", s.http_hello);
    let parent = deploy_with(&s, &lease, &children, &["--route", "shop.test"]);
    let mut child = None;
    assert!(
        eventually(WAIT, || {
            child = child_id(host, &parent, &s.http_hello);
            child.is_some()
        }),
        "started: {}",
        logs(host, &parent)
    );
    let child = child.unwrap();
    assert!(eventually(WAIT, || state(host, &child) == "running"));
    assert!(
        eventually(WAIT, || body_for(&ingress, "shop.test").contains("spawner")),
        "the parent answers its route"
    );
    let route = |to: &str| {
        let sent = degroup(
            tenant,
            &["message", &parent, &format!("route shop.test {to}")],
        );
        assert!(sent.status.success(), "{}", stderr(&sent));
    };
    route(&child);
    assert!(
        eventually(WAIT, || logs(host, &parent)
            .contains(&format!("routed shop.test {child}"))),
        "{}",
        logs(host, &parent)
    );
    assert!(
        body_for(&ingress, "shop.test").contains("hello from degroup"),
        "the child answers the parent's route"
    );
    route(&parent);
    assert!(
        eventually(WAIT, || body_for(&ingress, "shop.test").contains("spawner")),
        "routed back to the parent"
    );
    let sent = degroup(
        tenant,
        &["message", &parent, &format!("route other.test {child}")],
    );
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert!(
        eventually(WAIT, || logs(host, &parent).contains("route other.test")
            && logs(host, &parent).contains("BadRoute")),
        "a name the parent does not hold is refused: {}",
        logs(host, &parent)
    );
    // The child stops: the name is the parent's again.
    route(&child);
    assert!(eventually(WAIT, || body_for(&ingress, "shop.test")
        .contains("hello from degroup")));
    let stopped = degroup(tenant, &["message", &parent, &format!("stop {child}")]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert!(
        eventually(WAIT, || body_for(&ingress, "shop.test").contains("spawner")),
        "a stopped child's route goes back to its parent"
    );
}
