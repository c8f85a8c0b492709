//! Federated capacity end to end: five `degroup node` processes, capacity set on one, found
//! from another with `degroup find`, before and after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn find_json(dir: &std::path::Path, query: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["find", query, "--json"];
    args.extend_from_slice(extra);
    let o = degroup(dir, &args);
    assert!(o.status.success(), "find failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("find --json prints JSON")
}

fn hosts(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["host"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn five_nodes_set_capacity_and_find_it_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let first = NodeProc::start(&tmp.path().join("n0"), &[]);
    let boot = first.dial_addr();
    let mut nodes = vec![first];
    for i in 1..5 {
        nodes.push(NodeProc::start(
            &tmp.path().join(format!("n{i}")),
            &["--bootstrap", &boot],
        ));
    }
    let host = &nodes[2];
    let set = degroup(
        &host.dir,
        &[
            "capacity",
            "set",
            "--cpu",
            "1",
            "--mem",
            "1GiB",
            "--country",
            "fr",
            "--cert",
            "SecNumCloud",
            "--price",
            "cpu=0.02",
            "--operator",
            "Test Hosting SAS",
            "--json",
        ],
    );
    assert!(set.status.success(), "capacity set: {}", stderr(&set));
    let host_id = host.peer_id();
    let seq_before = {
        let v: serde_json::Value =
            serde_json::from_slice(&degroup(&host.dir, &["capacity", "show", "--json"]).stdout)
                .unwrap();
        assert_eq!(v["offered"]["country"], "FR");
        v["advert"]["seq"].as_u64().unwrap_or(0)
    };

    let query = "cpu>=1 mem>=1GiB country=FR cert=SecNumCloud";
    let seeker = &nodes[4];
    let found = eventually(Duration::from_secs(30), || {
        hosts(&find_json(&seeker.dir, query, &[]), "matches") == vec![host_id.clone()]
    });
    assert!(found, "node 4 finds node 2; log of 4:\n{}", seeker.log());

    // --explain names, for every other host, the clause it fails and its actual value.
    let explained = find_json(&seeker.dir, query, &["--explain"]);
    let misses = explained["not_matching"].as_array().unwrap();
    assert_eq!(misses.len(), 4, "{explained}");
    for m in misses {
        assert_eq!(m["clause"], "country=FR", "the first failing clause: {m}");
    }
    let human = degroup(&seeker.dir, &["find", query, "--explain"]);
    assert!(stdout(&human).contains(&host_id) && stdout(&human).contains("country=FR"));

    // A parse error points at the token, exit code 2.
    let bad = degroup(&seeker.dir, &["find", "cpus>=8"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("cpus"));

    // Restart the host: it keeps its settings and its sequence numbers keep growing.
    let mut host = nodes.remove(2);
    host.signal(Signal::SIGTERM);
    assert!(
        host.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    let host = NodeProc::start(&host.dir.clone(), &["--bootstrap", &boot]);
    let v: serde_json::Value =
        serde_json::from_slice(&degroup(&host.dir, &["capacity", "show", "--json"]).stdout)
            .unwrap();
    assert_eq!(v["offered"]["country"], "FR", "settings survive a restart");
    assert!(
        v["advert"]["seq"].as_u64().unwrap() > seq_before,
        "sequence numbers only grow: {v}"
    );

    // Restart the seeker too: its cache comes back from disk, and the federation still has it.
    let mut seeker = nodes.pop().unwrap();
    seeker.signal(Signal::SIGTERM);
    assert!(
        seeker
            .wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    let seeker = NodeProc::start(&seeker.dir.clone(), &[]);
    let cached = find_json(&seeker.dir, query, &[]);
    assert_eq!(
        hosts(&cached, "matches"),
        vec![host_id.clone()],
        "found from the on-disk cache, no peers needed"
    );
    drop(seeker);
    let late = NodeProc::start(&tmp.path().join("late"), &["--bootstrap", &boot]);
    let found = eventually(Duration::from_secs(30), || {
        hosts(&find_json(&late.dir, query, &[]), "matches") == vec![host_id.clone()]
    });
    assert!(
        found,
        "a late joiner gets the current adverts from its peers"
    );
    drop(host);
}
