//! End-to-end tests of the `degroup` binary: real node processes on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn three_nodes_find_each_other_through_bootstrap() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeProc::start(&tmp.path().join("a"), &[]);
    let b = NodeProc::start(&tmp.path().join("b"), &["--bootstrap", &a.dial_addr()]);
    // C knows only B, and only its address (no /p2p part): it must learn A through the DHT.
    let b_addr = b.status()["listen_addrs"][0].as_str().unwrap().to_owned();
    let c = NodeProc::start(&tmp.path().join("c"), &["--bootstrap", &b_addr]);
    let ids = [a.peer_id(), b.peer_id(), c.peer_id()];
    let nodes = [&a, &b, &c];
    let all_connected = eventually(Duration::from_secs(30), || {
        nodes.iter().enumerate().all(|(i, n)| {
            let peers = n.connected_peers();
            ids.iter()
                .enumerate()
                .all(|(j, id)| i == j || peers.contains(id))
        })
    });
    assert!(
        all_connected,
        "logs:\n{}\n{}\n{}",
        a.log(),
        b.log(),
        c.log()
    );
    assert!(
        a.log().contains("peer connected"),
        "one log line per connect"
    );
}

#[test]
fn api_needs_the_token_and_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let node = NodeProc::start(&dir, &[]);
    let addr = std::fs::read_to_string(dir.join("api.addr"))
        .unwrap()
        .trim()
        .to_owned();
    let token = std::fs::read_to_string(dir.join("api.token"))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(mode(&dir.join("api.token")), 0o600);
    assert_eq!(mode(&dir.join("api.addr")), 0o600);
    assert_eq!(mode(&dir.join("identity.key")), 0o600);
    for path in ["/v1/status", "/metrics", "/nope"] {
        let (code, body) = http_get(&addr, path, None);
        assert_eq!(code, 401, "{path} without token");
        assert!(body.contains("\"error\""), "JSON error body: {body}");
        assert_eq!(
            http_get(&addr, path, Some("wrong")).0,
            401,
            "{path} with a wrong token"
        );
    }
    let (code, body) = http_get(&addr, "/v1/status", Some(&token));
    assert_eq!(code, 200);
    assert!(body.contains(&node.peer_id()));
    let (code, body) = http_get(&addr, "/metrics", Some(&token));
    assert_eq!(code, 200);
    assert!(
        body.contains("degroup_connected_peers") && body.contains("libp2p_"),
        "{body}"
    );

    let s = node.status();
    for key in [
        "peer_id",
        "version",
        "data_dir",
        "listen_addrs",
        "connected_peers",
        "uptime_s",
    ] {
        assert!(s.get(key).is_some(), "status --json has {key}: {s}");
    }
}

#[test]
fn metrics_can_be_served_without_token_on_their_own_address() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let maddr = format!("127.0.0.1:{port}");
    let _node = NodeProc::start(&tmp.path().join("n"), &["--metrics", &maddr]);
    let (code, body) = http_get(&maddr, "/metrics", None);
    assert_eq!(code, 200);
    assert!(body.contains("degroup_"));
}

#[test]
fn sigterm_exits_cleanly_and_restart_keeps_identity_and_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let mut node = NodeProc::start(&dir, &[]);
    let id = node.peer_id();
    node.signal(Signal::SIGTERM);
    let status = node
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert!(status.success(), "exit code 0, got {status:?}");
    assert!(
        !dir.join("api.addr").exists(),
        "api.addr removed at shutdown"
    );
    let o = degroup(&dir, &["status"]);
    assert_clean_failure(&o, "no degroup node is running");

    let mut again = NodeProc::start(&dir, &[]);
    assert_eq!(again.peer_id(), id, "peer id survives a restart");
    again.signal(Signal::SIGINT);
    assert!(
        again
            .wait_exit(Duration::from_secs(10))
            .expect("exits after SIGINT")
            .success()
    );
}

#[test]
fn status_without_a_node_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let o = degroup(tmp.path(), &["status", "--json"]);
    assert_clean_failure(&o, "no degroup node is running");
    assert!(o.stdout.is_empty());
    // A node killed with SIGKILL leaves a stale api.addr behind.
    let dir = tmp.path().join("n");
    let mut node = NodeProc::start(&dir, &[]);
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    assert_clean_failure(&degroup(&dir, &["status"]), "no degroup node is answering");
}

#[test]
fn refuses_a_key_readable_by_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    assert!(degroup(&dir, &["init"]).status.success());
    let key = dir.join("identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = degroup(&dir, &["node", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert_clean_failure(&o, "chmod 600");
    assert!(stderr(&o).contains("identity.key"));
}

#[test]
fn corrupted_files_and_bad_flags_fail_cleanly_without_overwriting() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    assert!(degroup(&dir, &["init"]).status.success());
    let key = dir.join("identity.key");
    let cfg = dir.join("config.toml");
    let good_key = std::fs::read(&key).unwrap();

    std::fs::write(&key, b"degroup-ed25519-secret-v1\nnot hex at all\n").unwrap();
    let o = degroup(&dir, &["node", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert_clean_failure(&o, "malformed");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        b"degroup-ed25519-secret-v1\nnot hex at all\n"
    );
    std::fs::write(&key, &good_key).unwrap();

    std::fs::write(&cfg, "listen = [\"/ip4/127.0.0.1/tcp/0\"\napi = 12\n").unwrap();
    let o = degroup(&dir, &["node"]);
    assert_clean_failure(&o, "config.toml");
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        "listen = [\"/ip4/127.0.0.1/tcp/0\"\napi = 12\n"
    );
    std::fs::write(&cfg, "").unwrap();

    let o = degroup(&dir, &["node", "--bootstrap", "not-a-multiaddr"]);
    assert_clean_failure(&o, "not-a-multiaddr");
    assert_eq!(o.status.code(), Some(2), "usage errors exit with 2");
    assert_eq!(std::fs::read(&key).unwrap(), good_key, "key untouched");
    assert!(!dir.join("api.addr").exists());
}

#[test]
fn init_refuses_to_overwrite_and_force_keeps_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let first = degroup(&dir, &["init"]);
    assert!(first.status.success());
    let id = stdout(&first).trim().to_owned();
    assert!(id.starts_with("12D3KooW"), "prints the peer id: {id}");
    assert!(
        std::fs::read_to_string(dir.join("config.toml"))
            .unwrap()
            .contains("# listen =")
    );
    assert_clean_failure(&degroup(&dir, &["init"]), "--force");
    let shown = degroup(&dir, &["key", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(v["peer_id"], id.as_str());
    let forced = degroup(&dir, &["init", "--force"]);
    assert!(forced.status.success());
    assert_ne!(stdout(&forced).trim(), id);
    assert!(dir.join("identity.key.bak").exists());
}

#[test]
fn a_second_node_on_the_same_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let _node = NodeProc::start(&dir, &[]);
    let addr_before = std::fs::read_to_string(dir.join("api.addr")).unwrap();
    let o = degroup(&dir, &["node", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert_clean_failure(&o, "in use");
    assert_eq!(
        std::fs::read_to_string(dir.join("api.addr")).unwrap(),
        addr_before
    );
}

#[test]
fn key_generate_writes_a_private_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pub.key");
    let o = degroup(
        tmp.path(),
        &["key", "generate", "--out", out.to_str().unwrap(), "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["public_key"].as_str().unwrap().len(), 64);
    assert_eq!(mode(&out), 0o600);
    assert_clean_failure(
        &degroup(
            tmp.path(),
            &["key", "generate", "--out", out.to_str().unwrap()],
        ),
        "--force",
    );
    let o = degroup(tmp.path(), &["completions", "bash"]);
    assert!(stdout(&o).contains("degroup"));
}
