//! Groups and the mesh end to end, with real `degroup` processes: two hosts, a tenant and a
//! second tenant. `group create/show/list`, `deploy --group` onto both hosts, a mesh message
//! between the members (`from` is the sender's deployment id), the second tenant's
//! deployment refused with `not-in-group`, a peer forging a mesh envelope for another host's
//! deployment refused and counted, a stopped member gone from `group show` and from the
//! other member's `members()` within 5 s, a broadcast, and a member whose lease is released
//! gone the same way. And a host keeps the groups it holds across `kill -9`. The members run `wasm-plugins/mesh-echo`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod programs;

use std::path::Path;
use std::time::Duration;

use degroup_node::group::wire::{MeshEnvelope, MeshProtocol, MeshReply};
use degroup_node::identity::{Identity, key_of_peer};
use degroup_node::metrics::NodeMetrics;
use degroup_node::net::{NetParams, Network};
use degroup_node::signed::Envelope;
use libp2p::PeerId;
use tokio_util::sync::CancellationToken;

use common::*;

const HOST_ENV: &[(&str, &str)] = &[
    ("DEGROUP_PLUGIN__TICK_INTERVAL", "100ms"),
    ("DEGROUP_PLUGIN__COMPILE_CPU", "3s"),
];

fn start_host(dir: &Path, bootstrap: Option<&str>) -> NodeProc {
    std::fs::create_dir_all(dir).unwrap();
    let mut extra = Vec::new();
    if let Some(b) = bootstrap {
        extra.extend(["--bootstrap", b]);
    }
    let host = NodeProc::start_with_env(dir, &extra, HOST_ENV);
    offer_fr(dir);
    host
}

fn wait_for_advert(tenant: &NodeProc, host_id: &str) {
    assert!(
        eventually(Duration::from_secs(30), || {
            let f = json(&tenant.dir, &["find", "country=FR"]);
            f["matches"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["host"] == host_id))
        }),
        "tenant learns the advert of {host_id}: {}",
        tenant.log()
    );
}

fn deploy(tenant: &Path, lease: &str, pkg: &Path, extra: &[&str]) -> String {
    let mut args = vec!["deploy", "--lease", lease, pkg.to_str().unwrap()];
    args.extend(extra);
    let d = json(tenant, &args);
    d["id"].as_str().unwrap().to_owned()
}

fn logs(dir: &Path, id: &str) -> String {
    stdout(&degroup(dir, &["logs", id]))
}

fn message(dir: &Path, id: &str, text: &str) {
    let o = degroup(dir, &["message", id, text]);
    assert!(o.status.success(), "message {text}: {}", stderr(&o));
}

/// The members `id` sees (its `members` log line after asking), or None before it logs one.
fn members_seen(tenant: &Path, id: &str) -> Option<String> {
    // Refused while the deployment is not running (after a restart): nothing seen yet.
    if !degroup(tenant, &["message", id, "members"])
        .status
        .success()
    {
        return None;
    }
    std::thread::sleep(Duration::from_millis(200));
    logs(tenant, id)
        .lines()
        .rev()
        .find_map(|l| l.split("members: ").nth(1).map(|s| s.trim().to_owned()))
}

/// A counter of the node's Prometheus text (0 when absent).
fn metric(dir: &Path, series: &str) -> f64 {
    let addr = std::fs::read_to_string(dir.join("api.addr")).unwrap();
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    let (code, body) = http_get(addr.trim(), "/metrics", Some(token.trim()));
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[test]
fn group_of_two_hosts_messages_refuses_outsiders_and_forgers_and_sees_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let host_a = start_host(&tmp.path().join("host-a"), None);
    let a_addr = host_a.dial_addr();
    let host_b = start_host(&tmp.path().join("host-b"), Some(&a_addr));
    let (a_id, b_id) = (host_a.peer_id(), host_b.peer_id());
    let b_addr = host_b.dial_addr();
    let tenant = NodeProc::start(
        &tmp.path().join("tenant"),
        &["--bootstrap", &a_addr, "--bootstrap", &b_addr],
    );
    let other = NodeProc::start(&tmp.path().join("other"), &["--bootstrap", &b_addr]);
    wait_for_advert(&tenant, &a_id);
    wait_for_advert(&tenant, &b_id);
    wait_for_advert(&other, &b_id);

    // Usage errors and unknown groups.
    let o = degroup(&tenant.dir, &["group", "create", "Bad_Name"]);
    assert_clean_failure(&o, "a-z");
    assert_eq!(o.status.code(), Some(2));
    let o = degroup(&tenant.dir, &["group", "show", "nosuch"]);
    assert_clean_failure(&o, "no group");

    let g = json(&tenant.dir, &["group", "create", "shop"]);
    assert_eq!(g["name"], "shop");
    assert_eq!(g["version"], 1);
    assert_eq!(g["members"].as_array().unwrap().len(), 0);
    let o = degroup(&tenant.dir, &["group", "create", "shop"]);
    assert_clean_failure(&o, "exists");
    let list = json(&tenant.dir, &["group", "list"]);
    assert!(list.as_array().unwrap().iter().any(|g| g["name"] == "shop"));

    let pkg = tmp.path().join("mesh-echo.dgp");
    pack_as(
        &tenant.dir,
        &programs::path("mesh-echo"),
        "mesh-echo",
        "0.1.0",
        &pkg,
    );
    let lease_a = lease_on(&tenant.dir, &a_id, "0.5", "256MiB", "16MiB");
    let lease_b = lease_on(&tenant.dir, &b_id, "0.5", "256MiB", "16MiB");

    // An unknown group is refused before anything is deployed.
    let o = degroup(
        &tenant.dir,
        &[
            "deploy",
            "--lease",
            &lease_a,
            pkg.to_str().unwrap(),
            "--group",
            "nosuch",
        ],
    );
    assert_clean_failure(&o, "no group");
    let o = degroup(
        &tenant.dir,
        &[
            "deploy",
            "--lease",
            &lease_a,
            pkg.to_str().unwrap(),
            "--group",
            "UPPER",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(json(&tenant.dir, &["ps"]).as_array().unwrap().is_empty());

    let d1 = deploy(
        &tenant.dir,
        &lease_a,
        &pkg,
        &["--group", "shop", "--config", "role=leader"],
    );
    let d2 = deploy(
        &tenant.dir,
        &lease_b,
        &pkg,
        &["--group", "shop", "--config", "role=agent"],
    );
    let g = json(&tenant.dir, &["group", "show", "shop"]);
    assert_eq!(g["version"], 3, "{g}");
    let members = g["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{g}");
    let find = |id: &str| members.iter().find(|m| m["id"] == id).unwrap().clone();
    assert_eq!(find(&d1)["host"], a_id.as_str());
    assert_eq!(find(&d2)["host"], b_id.as_str());
    assert_eq!(find(&d1)["role"], "leader");
    assert_eq!(find(&d2)["role"], "agent");
    assert_eq!(find(&d1)["package"], "mesh-echo@0.1.0");
    assert!(
        eventually(Duration::from_secs(30), || {
            let g = json(&tenant.dir, &["group", "show", "shop"]);
            g["members"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["state"] == "running")
        }),
        "both members run"
    );

    // Both hosts hold the newest version: each member sees both.
    let mut sorted = [(d1.clone(), "leader"), (d2.clone(), "agent")];
    sorted.sort();
    let both = format!(
        "{}/{},{}/{}",
        sorted[0].0, sorted[0].1, sorted[1].0, sorted[1].1
    );
    for id in [&d1, &d2] {
        assert!(
            eventually(Duration::from_secs(20), || members_seen(&tenant.dir, id)
                .as_deref()
                == Some(both.as_str())),
            "{id} sees both members: {:?}\nA: {}\nB: {}",
            members_seen(&tenant.dir, id),
            host_a.log(),
            host_b.log()
        );
    }

    // A message from d1 (host A) to d2 (host B) arrives with `from` = d1.
    message(&tenant.dir, &d1, &format!("send:{d2}:hello"));
    assert!(
        eventually(Duration::from_secs(10), || logs(&tenant.dir, &d2)
            .contains(&format!("got from {d1}: hello"))),
        "d2 got it: {}\nd1: {}",
        logs(&tenant.dir, &d2),
        logs(&tenant.dir, &d1)
    );
    assert!(logs(&tenant.dir, &d1).contains(&format!("send {d2}: ok")));
    assert!(metric(&host_b.dir, "degroup_mesh_delivered_total") >= 1.0);

    // A second tenant's deployment on host B: not in the group.
    let pkg2 = tmp.path().join("mesh-echo-other.dgp");
    pack_as(
        &other.dir,
        &programs::path("mesh-echo"),
        "mesh-echo",
        "0.1.0",
        &pkg2,
    );
    let lease_o = lease_on(&other.dir, &b_id, "0.5", "256MiB", "16MiB");
    let d3 = deploy(&other.dir, &lease_o, &pkg2, &[]);
    assert!(eventually(Duration::from_secs(30), || {
        logs(&other.dir, &d3).contains("mesh-echo ready")
    }));
    let refused_before = metric(
        &host_b.dir,
        "degroup_mesh_refused_total{reason=\"not_in_group\"}",
    );
    message(&other.dir, &d3, &format!("send:{d2}:intrude"));
    assert!(
        eventually(Duration::from_secs(10), || logs(&other.dir, &d3)
            .contains(&format!("send {d2}: error not-in-group"))),
        "{}",
        logs(&other.dir, &d3)
    );
    assert!(
        metric(
            &host_b.dir,
            "degroup_mesh_refused_total{reason=\"not_in_group\"}"
        ) > refused_before
    );

    // A peer that signs an envelope itself, claiming d1 (on host A), is refused and counted.
    let tenant_key = key_of_peer(&tenant.peer_id().parse::<PeerId>().unwrap()).unwrap();
    let reply = forge(&b_addr, &b_id, &d1, &d2, tenant_key);
    assert_eq!(reply, MeshReply::Refused);
    assert!(metric(&host_b.dir, "degroup_mesh_refused_total{reason=\"forged\"}") >= 1.0);
    std::thread::sleep(Duration::from_millis(300));
    let d2_log = logs(&tenant.dir, &d2);
    assert!(
        !d2_log.contains("intrude") && !d2_log.contains("forged"),
        "{d2_log}"
    );

    // Stopping d2: gone from the group and, within 5 s, from d1's members on the other host.
    let o = degroup(&tenant.dir, &["stop", &d2]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = json(&tenant.dir, &["group", "show", "shop"]);
    assert_eq!(g["version"], 4, "{g}");
    assert_eq!(g["members"].as_array().unwrap().len(), 1, "{g}");
    assert_eq!(g["members"][0]["id"], d1.as_str());
    let only = format!("{d1}/leader");
    assert!(
        eventually(Duration::from_secs(5), || members_seen(&tenant.dir, &d1)
            .as_deref()
            == Some(only.as_str())),
        "d1 sees d2 gone: {:?}",
        members_seen(&tenant.dir, &d1)
    );
    // Refused: not-in-group while host A knows it left, unknown once no version lists it.
    message(&tenant.dir, &d1, &format!("send:{d2}:late"));
    assert!(
        eventually(Duration::from_secs(5), || {
            let l = logs(&tenant.dir, &d1);
            l.contains(&format!("send {d2}: error not-in-group"))
                || l.contains(&format!("send {d2}: error unknown"))
        }),
        "{}",
        logs(&tenant.dir, &d1)
    );

    // A member whose lease ends leaves too: on the tenant's side and on the other host.
    let d4 = deploy(
        &tenant.dir,
        &lease_b,
        &pkg,
        &["--group", "shop", "--config", "role=agent"],
    );
    let g = json(&tenant.dir, &["group", "show", "shop"]);
    assert_eq!(g["version"], 5, "{g}");
    let mut sorted = [(d1.clone(), "leader"), (d4.clone(), "agent")];
    sorted.sort();
    let with_d4 = format!(
        "{}/{},{}/{}",
        sorted[0].0, sorted[0].1, sorted[1].0, sorted[1].1
    );
    assert!(
        eventually(Duration::from_secs(20), || members_seen(&tenant.dir, &d1)
            .as_deref()
            == Some(with_d4.as_str())),
        "d1 sees d4: {:?}",
        members_seen(&tenant.dir, &d1)
    );
    // A broadcast reaches the other member.
    message(&tenant.dir, &d1, "broadcast:to-all");
    assert!(
        eventually(Duration::from_secs(10), || logs(&tenant.dir, &d4)
            .contains(&format!("got from {d1}: to-all"))),
        "d4 got the broadcast: {}",
        logs(&tenant.dir, &d4)
    );
    let o = degroup(&tenant.dir, &["lease", "release", &lease_b]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        eventually(Duration::from_secs(5), || members_seen(&tenant.dir, &d1)
            .as_deref()
            == Some(only.as_str())),
        "d1 sees d4 gone with its lease: {:?}",
        members_seen(&tenant.dir, &d1)
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            let g = json(&tenant.dir, &["group", "show", "shop"]);
            g["version"].as_u64() >= Some(6) && g["members"].as_array().unwrap().len() == 1
        }),
        "the tenant removed d4: {}",
        json(&tenant.dir, &["group", "show", "shop"])
    );
    drop(other);
    drop(tenant);
}

/// Acts as a raw libp2p peer: signs a mesh envelope with its own key, claiming `from` (a
/// deployment of another host), and sends it to host B.
fn forge(b_addr: &str, b_id: &str, from: &str, to: &str, tenant: [u8; 32]) -> MeshReply {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        let identity = Identity::generate().unwrap();
        let builder = Network::builder(
            &identity,
            NetParams {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                ..Default::default()
            },
        );
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = NodeMetrics::register(&mut registry);
        let (net, _task) = builder
            .start(&mut registry, metrics, shutdown.clone())
            .unwrap();
        let envelope = MeshEnvelope {
            from: from.to_owned(),
            to: to.to_owned(),
            tenant,
            group: "shop".into(),
            version: 3,
            payload: b"forged".to_vec(),
        };
        let bytes = Envelope::seal_kind(identity.signing_key(), &envelope)
            .unwrap()
            .to_bytes();
        let peer: PeerId = b_id.parse().unwrap();
        let addr = b_addr.parse().unwrap();
        let reply = net
            .request_at::<MeshProtocol>(peer, vec![addr], bytes)
            .await
            .unwrap();
        shutdown.cancel();
        reply
    })
}

#[test]
fn a_host_keeps_the_groups_it_holds_across_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let host_dir = tmp.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    assert!(degroup(&host_dir, &["init"]).status.success());
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let mut host = NodeProc::start_with_env(&host_dir, &["--listen", &listen], HOST_ENV);
    offer_fr(&host_dir);
    let host_id = host.peer_id();
    let tenant = NodeProc::start(
        &tmp.path().join("tenant"),
        &["--bootstrap", &format!("{listen}/p2p/{host_id}")],
    );
    wait_for_advert(&tenant, &host_id);
    json(&tenant.dir, &["group", "create", "solo"]);
    let pkg = tmp.path().join("mesh-echo.dgp");
    pack_as(
        &tenant.dir,
        &programs::path("mesh-echo"),
        "mesh-echo",
        "0.1.0",
        &pkg,
    );
    let lease = lease_on(&tenant.dir, &host_id, "0.5", "256MiB", "16MiB");
    let d1 = deploy(&tenant.dir, &lease, &pkg, &["--group", "solo"]);
    let alone = format!("{d1}/-");
    assert!(
        eventually(Duration::from_secs(20), || members_seen(&tenant.dir, &d1)
            .as_deref()
            == Some(alone.as_str())),
        "d1 sees itself: {:?}",
        members_seen(&tenant.dir, &d1)
    );

    // The tenant's push is done; after kill -9 the host has only its store.
    host.signal(nix::sys::signal::Signal::SIGKILL);
    host.wait_exit(Duration::from_secs(10)).expect("host died");
    drop(host);
    let _ = std::fs::remove_file(host_dir.join("api.addr"));
    let host = NodeProc::start_with_env(&host_dir, &["--listen", &listen], HOST_ENV);
    assert!(
        eventually(Duration::from_secs(30), || members_seen(&tenant.dir, &d1)
            .as_deref()
            == Some(alone.as_str())),
        "after the restart d1 still sees its group: {:?}\n{}",
        members_seen(&tenant.dir, &d1),
        host.log()
    );
}
