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

#[test]
fn detected_gpus_are_offered_and_found() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("nvidia-smi");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/inventory/h100/nvidia-smi-query.csv"
    );
    std::fs::write(&fake, format!("#!/bin/sh\ncat {fixture}\n")).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = NodeProc::start_with_env(
        &tmp.path().join("gpu"),
        &[],
        &[("DEGROUP_NVIDIA_SMI", fake.to_str().unwrap())],
    );
    let show: serde_json::Value =
        serde_json::from_slice(&degroup(&node.dir, &["capacity", "show", "--json"]).stdout)
            .unwrap();
    assert_eq!(
        show["detected"]["gpus"][0]["model"], "NVIDIA H100 80GB HBM3",
        "{show}"
    );
    let found = find_json(&node.dir, "gpu.model~H100 gpu.mem>=79GiB", &[]);
    assert_eq!(hosts(&found, "matches"), vec![node.peer_id()]);
    // Offering more GPUs than detected needs --force; bad input is refused with exit code 2.
    let o = degroup(&node.dir, &["capacity", "set", "--gpu", "2xH100:80GiB"]);
    assert!(
        !o.status.success() && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    let o = degroup(&node.dir, &["capacity", "set", "--country", "XX"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("ISO 3166-1"));
    let o = degroup(&node.dir, &["capacity", "set", "--mem", "lots"]);
    assert_eq!(o.status.code(), Some(2));
    let o = degroup(&node.dir, &["capacity", "set"]);
    assert_eq!(o.status.code(), Some(2), "nothing to set");
    let after: serde_json::Value =
        serde_json::from_slice(&degroup(&node.dir, &["capacity", "show", "--json"]).stdout)
            .unwrap();
    assert_eq!(
        after["settings"], show["settings"],
        "refused changes change nothing"
    );
}
