//! The tenant control plane end to end, on real `degroup node` processes on loopback: groups,
//! mesh messages and child workloads, told as the `scheduler` story.
//!
//! - Three hosts and a tenant. The tenant publishes `hello@0.1.0` (every host trusts it),
//!   creates the group `shop` and deploys the `scheduler` into it: agents on hosts 2 and 3
//!   (`role=agent`), then the leader on host 1 with six workloads of `hello@0.1.0`. The
//!   tenant's `ps --json` shows six children (entries with `"parent"`), running, each on its
//!   parent's host, as many under each parent as the leader's log placed there; `ps --tree`
//!   shows them under their parents.
//! - `kill -9` of host 3: within 30 s all six run again under the two others, and the leader's
//!   log says why (`agent <id> on <host> missed heartbeats for N ms; re-placing …`).
//! - A second tenant's deployment (`mesh-ping`, in no group) sends to a member of `shop`:
//!   `not-in-group`, and the member gets nothing.
//! - Message storms: in a group `storm`, `mesh-flood` sends as fast as it can; the host caps it
//!   (its log counts `rate-limited`) while two `mesh-ping` members complete their round trips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod programs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const NODE_ENV: &[(&str, &str)] = &[
    ("DEGROUP_PLUGIN__TICK_INTERVAL", "200ms"),
    ("DEGROUP_PLUGIN__COMPILE_CPU", "3s"),
];

/// A fresh data dir whose `[trust] publishers` are `trusted` (name, key).
fn init(dir: &Path, trusted: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    assert!(degroup(dir, &["init"]).status.success());
    if trusted.is_empty() {
        return;
    }
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let list: Vec<String> = trusted
        .iter()
        .map(|(n, k)| format!("{{ name = \"{n}\", key = \"{k}\" }}"))
        .collect();
    let text = text.replace(
        "\n[trust]\n",
        &format!("\n[trust]\npublishers = [{}]\n", list.join(", ")),
    );
    std::fs::write(&path, text).unwrap();
}

fn key_of(dir: &Path) -> String {
    let k = json(dir, &["key", "show"]);
    k["public_key"]
        .as_str()
        .or_else(|| k["key"].as_str())
        .unwrap_or_else(|| panic!("key show: {k}"))
        .to_owned()
}

fn listen() -> String {
    format!("/ip4/127.0.0.1/tcp/{}", free_port())
}

fn start(dir: &Path, bootstrap: Option<&str>) -> NodeProc {
    let l = listen();
    let mut args = vec!["--listen", l.as_str()];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    NodeProc::start_with_env(dir, &args, NODE_ENV)
}

/// Waits until `tenant` holds the adverts of every host in `hosts`.
fn learn_hosts(tenant: &Path, hosts: &[String]) {
    assert!(
        eventually(Duration::from_secs(30), || {
            let f = json(tenant, &["find", "country=FR"]);
            hosts.iter().all(|h| {
                f["matches"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["host"] == h.as_str()))
            })
        }),
        "{} learns every host's advert",
        tenant.display()
    );
}

/// Deploys `pkg` onto `lease` with `extra` arguments; the new deployment's id.
fn deploy(tenant: &Path, lease: &str, pkg: &str, extra: &[&str]) -> String {
    let mut args = vec!["deploy", "--lease", lease, pkg];
    args.extend_from_slice(extra);
    let v = json(tenant, &args);
    assert_eq!(v["state"], "running", "{args:?}: {v}");
    v["id"].as_str().unwrap().to_owned()
}

fn logs(dir: &Path, id: &str) -> String {
    stdout(&degroup(dir, &["logs", id]))
}

fn ps(dir: &Path) -> Vec<Value> {
    let o = degroup(dir, &["ps", "--json"]);
    if !o.status.success() {
        return Vec::new();
    }
    serde_json::from_slice::<Value>(&o.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// The running children of `parents` in the tenant's `ps --json`: parent id → their entries.
fn running_children(tenant: &Path, parents: &[&str]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for v in ps(tenant) {
        let Some(parent) = v["parent"].as_str() else {
            continue;
        };
        if parents.contains(&parent) && v["state"] == "running" {
            out.entry(parent.to_owned()).or_default().push(v);
        }
    }
    out
}

fn count(m: &BTreeMap<String, Vec<Value>>) -> usize {
    m.values().map(Vec::len).sum()
}

/// The last placement of each workload the leader's log states: name → agent id.
fn placements(log: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Some(rest) = line.split("placed ").nth(1) else {
            continue;
        };
        let mut w = rest.split_whitespace();
        if let (Some(name), Some("on"), Some(agent)) = (w.next(), w.next(), w.next()) {
            out.insert(name.to_owned(), agent.to_owned());
        }
    }
    out
}

fn pack_file(dir: &Path, program: &str, name: &str) -> PathBuf {
    let out = dir.with_extension(format!("{name}.dgp"));
    pack_as(dir, &programs::path(program), name, "0.1.0", &out);
    out
}

#[test]
fn scheduler_places_six_workloads_and_re_places_them_after_a_host_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let t_dir = tmp.path().join("tenant");
    let t2_dir = tmp.path().join("tenant2");
    let h_dirs: Vec<PathBuf> = (1..=3)
        .map(|i| tmp.path().join(format!("host{i}")))
        .collect();
    init(&t_dir, &[]);
    init(&t2_dir, &[]);
    let t_key = key_of(&t_dir);
    for d in &h_dirs {
        init(d, &[("shop", &t_key)]);
    }

    let h1 = start(&h_dirs[0], None);
    let boot = h1.dial_addr();
    let h2 = start(&h_dirs[1], Some(&boot));
    let mut h3 = start(&h_dirs[2], Some(&boot));
    for d in &h_dirs {
        offer_fr(d);
    }
    let tenant = start(&t_dir, Some(&boot));
    let tenant2 = start(&t2_dir, Some(&boot));
    let hosts = [h1.peer_id(), h2.peer_id(), h3.peer_id()];
    learn_hosts(&t_dir, &hosts);
    learn_hosts(&t2_dir, &hosts[..1]);

    // The children's package, published: every host resolves `hello@0.1.0` to it.
    let hello = pack_file(&t_dir, "hello", "hello");
    json(&t_dir, &["plugin", "publish", hello.to_str().unwrap()]);
    for d in &h_dirs {
        assert!(
            eventually(Duration::from_secs(20), || {
                degroup(d, &["plugin", "info", "hello@0.1.0", "--json"])
                    .status
                    .success()
            }),
            "{} hears of hello@0.1.0",
            d.display()
        );
    }

    let scheduler = pack_file(&t_dir, "scheduler", "scheduler");
    let scheduler = scheduler.to_str().unwrap();
    json(&t_dir, &["group", "create", "shop"]);
    let leases: Vec<String> = hosts
        .iter()
        .map(|h| lease_on(&t_dir, h, "1", "512MiB", "64MiB"))
        .collect();
    let agent2 = deploy(
        &t_dir,
        &leases[1],
        scheduler,
        &["--group", "shop", "--config", "role=agent"],
    );
    let agent3 = deploy(
        &t_dir,
        &leases[2],
        scheduler,
        &["--group", "shop", "--config", "role=agent"],
    );
    let workloads: Vec<String> = (1..=6)
        .map(|i| format!("w{i}:100:32:hello@0.1.0"))
        .collect();
    let workloads = format!("workloads={}", workloads.join(","));
    let leader = deploy(
        &t_dir,
        &leases[0],
        scheduler,
        &[
            "--group",
            "shop",
            "--config",
            "role=leader",
            "--config",
            &workloads,
        ],
    );
    let group = json(&t_dir, &["group", "show", "shop"]);
    let members = group["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{group}");
    for (id, host) in [
        (&leader, &hosts[0]),
        (&agent2, &hosts[1]),
        (&agent3, &hosts[2]),
    ] {
        assert!(
            members
                .iter()
                .any(|m| m["id"] == id.as_str() && m["host"] == host.as_str()),
            "{id} on {host} in {group}"
        );
    }

    // Six children, running, on the right hosts.
    let parents = [leader.as_str(), agent2.as_str(), agent3.as_str()];
    let host_of = |p: &str| {
        parents
            .iter()
            .position(|x| *x == p)
            .map(|i| hosts[i].clone())
            .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(60), || count(&running_children(
            &t_dir, &parents
        )) == 6),
        "six children run: {:?}\nleader: {}",
        ps(&t_dir),
        logs(&t_dir, &leader)
    );
    let children = running_children(&t_dir, &parents);
    let placed = placements(&logs(&t_dir, &leader));
    assert_eq!(placed.len(), 6, "{placed:?}");
    for (parent, kids) in &children {
        for k in kids {
            assert_eq!(
                k["host"],
                host_of(parent).as_str(),
                "a child runs on its parent's host: {k}"
            );
        }
        let n = placed.values().filter(|a| *a == parent).count();
        assert_eq!(
            kids.len(),
            n,
            "{parent} runs what the leader placed there: {placed:?}"
        );
    }
    assert_eq!(children.len(), 3, "every agent runs some: {children:?}");
    let tree = degroup(&t_dir, &["ps", "--tree"]);
    assert!(tree.status.success(), "{}", stderr(&tree));
    let tree = stdout(&tree);
    for kids in children.values() {
        for k in kids {
            let id = k["id"].as_str().unwrap();
            assert!(tree.contains(&id[..8]), "ps --tree shows {id}: {tree}");
        }
    }
    // A child's logs, from the tenant's node.
    let some_child = children[&agent2][0]["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(10), || logs(&t_dir, &some_child)
            .contains("hello")),
        "logs CHILD on the tenant"
    );

    // kill -9 host 3: everything runs on hosts 1 and 2 within 30 s, and the leader says why.
    h3.signal(nix::sys::signal::Signal::SIGKILL);
    h3.wait_exit(Duration::from_secs(10));
    let killed = Instant::now();
    let survivors = [leader.as_str(), agent2.as_str()];
    let moved = eventually(Duration::from_secs(30), || {
        count(&running_children(&t_dir, &survivors)) == 6
    });
    let took = killed.elapsed();
    let log = logs(&t_dir, &leader);
    assert!(
        moved,
        "all six run on the two others within 30 s: {:?}\nleader: {log}",
        running_children(&t_dir, &survivors)
    );
    eprintln!("re-placed after {took:?}");
    let why = format!("agent {agent3} on {} missed heartbeats for", hosts[2]);
    assert!(log.contains(&why), "the leader's log says why: {log}");
    assert!(log.contains("re-placing"), "{log}");
    drop(h3);

    // A second tenant's deployment, in no group, sends to a member of `shop`: refused.
    let t2_lease = lease_on(&t2_dir, &hosts[0], "0.2", "128MiB", "16MiB");
    let ping = pack_file(&t2_dir, "mesh-ping", "mesh-ping");
    let outsider = deploy(&t2_dir, &t2_lease, ping.to_str().unwrap(), &[]);
    let o = degroup(
        &t2_dir,
        &["message", &outsider, &format!("ping {agent2} 1")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        eventually(Duration::from_secs(10), || logs(&t2_dir, &outsider)
            .contains("not-in-group")),
        "the outsider is refused: {}",
        logs(&t2_dir, &outsider)
    );
    assert!(
        !logs(&t_dir, &agent2).contains(&outsider),
        "and nothing reached the member: {}",
        logs(&t_dir, &agent2)
    );

    // A storm: mesh-flood is capped while two others keep talking.
    json(&t_dir, &["group", "create", "storm"]);
    let small = |h: &str| lease_on(&t_dir, h, "0.2", "128MiB", "16MiB");
    let (l_p1, l_p2, l_f) = (small(&hosts[0]), small(&hosts[1]), small(&hosts[0]));
    let ping = pack_file(&t_dir, "mesh-ping", "mesh-ping");
    let ping = ping.to_str().unwrap();
    let flood = pack_file(&t_dir, "mesh-flood", "mesh-flood");
    let p1 = deploy(&t_dir, &l_p1, ping, &["--group", "storm"]);
    let p2 = deploy(&t_dir, &l_p2, ping, &["--group", "storm"]);
    let f = deploy(&t_dir, &l_f, flood.to_str().unwrap(), &["--group", "storm"]);
    let rate_limited = |log: &str| {
        log.lines()
            .filter_map(|l| l.split("rate-limited=").nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(20), || rate_limited(&logs(&t_dir, &f))
            > 0),
        "the flood is capped: {}",
        logs(&t_dir, &f)
    );
    let o = degroup(&t_dir, &["message", &p1, &format!("ping {p2} 20")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        eventually(Duration::from_secs(30), || logs(&t_dir, &p1)
            .contains("n=20")),
        "the others' messages keep arriving under the flood: {}\nflood: {}",
        logs(&t_dir, &p1),
        logs(&t_dir, &f)
    );
    let rtt = logs(&t_dir, &p1);
    eprintln!(
        "{}",
        rtt.lines()
            .find(|l| l.contains("mesh rtt"))
            .unwrap_or_default()
    );
    drop((h1, h2, tenant, tenant2));
}
