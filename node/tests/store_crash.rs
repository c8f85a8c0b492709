//! Crash safety of the store: a writer process is killed with SIGKILL at random points; every
//! write it acknowledged must be there, intact, when the store is reopened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use degroup_node::store::{Domain, Store};

/// Trials per run; `DEGROUP_CRASH_TRIALS` raises it for a longer run.
fn trials() -> u64 {
    std::env::var("DEGROUP_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    // A small deterministic generator: kill points vary, and a failure can be replayed.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut acked_total: Option<u64> = None;
    for trial in 0..trials() {
        let mut child = Command::new(common::bin())
            .arg("--data-dir")
            .arg(&dir)
            .args(["debug", "store-writer"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let wanted_acks = next() % 40;
        let extra_delay = Duration::from_micros(next() % 3000);
        let mut last_ack: Option<u64> = None;
        let mut lines = BufReader::new(stdout).lines();
        for _ in 0..wanted_acks {
            match lines.next() {
                Some(Ok(line)) => last_ack = line.strip_prefix("ack ").and_then(|n| n.parse().ok()),
                _ => break,
            }
        }
        std::thread::sleep(extra_delay);
        child.kill().unwrap();
        // Acks already written to the pipe before the kill count too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("ack ").and_then(|n| n.parse().ok()) {
                last_ack = Some(n);
            }
        }
        child.wait().unwrap();

        let store = Store::open(tmp.path().join("store").as_path())
            .unwrap_or_else(|e| panic!("trial {trial}: reopen failed: {e}"));
        let tree = store.tree(Domain::Scratch).unwrap();
        // Each trial rewrites from key 0, so everything up to the highest ack ever seen must hold.
        let highest = match (acked_total, last_ack) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(h) = highest {
            for i in 0..=h {
                let v = tree.get(&i.to_be_bytes()).unwrap();
                assert_eq!(
                    v.as_deref(),
                    Some(degroup_node::cli::store_writer_value(i).as_slice()),
                    "trial {trial}: acknowledged key {i} lost or damaged"
                );
            }
        }
        acked_total = highest;
    }
    assert!(
        acked_total.is_some_and(|h| h > 0),
        "the writer acknowledged writes"
    );
}
