//! The sandbox against hostile tenants, end to end with real `degroup` processes: one host, a
//! hostile tenant and a well-behaved one whose `counter` must keep ticking throughout.
//!
//! The hostile tenant deploys a plugin that waits in `wasi:io/poll` (stopped while it waits:
//! the host's worker thread must end at once, and `ps` and `status` must answer all along; left
//! alone, it ends `failed` at its deadlines and stays so across a restart of the host), and a
//! component holding a thousand core instances (refused at deploy), and a plugin rewriting
//! large values (the host's disk stays within the quota plus the documented overhead).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod programs;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Long enough that a plugin waiting in a host call is still waiting when it is stopped.
const HOST_ENV: &[(&str, &str)] = &[
    ("DEGROUP_PLUGIN__TICK_INTERVAL", "100ms"),
    ("DEGROUP_PLUGIN__CALL_TIMEOUT", "3s"),
    ("DEGROUP_PLUGIN__BACKOFF", "50ms"),
    ("DEGROUP_PLUGIN__MAX_FAILURES", "3"),
];

fn pack(dir: &Path, wasm: &Path, name: &str, out: &Path) {
    pack_as(dir, wasm, name, "0.1.0", out);
}

fn lease(tenant: &Path, host_id: &str) -> String {
    lease_on(tenant, host_id, "0.25", "128MiB", "8MiB")
}

/// The highest `count = N` the counter logged.
fn last_count(dir: &Path, id: &str) -> u64 {
    let o = degroup(dir, &["logs", id]);
    stdout(&o)
        .lines()
        .filter_map(|l| l.split("count = ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

/// Names of the host process's plugin worker threads (`plugin-<id prefix>`).
fn worker_threads(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("plugin-"))
        .collect()
}

/// Bytes allocated on disk (what `du` counts) by a deployment's key-value files on the host.
fn allocated(host: &Path, deployment: &str) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::read_dir(host.join("kv"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(deployment))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

/// `ps --json` and `status --json` on the host both answer now.
fn host_answers(host: &Path) -> Duration {
    let t = Instant::now();
    let ps = degroup(host, &["ps", "--json"]);
    assert!(ps.status.success(), "host ps: {}", stderr(&ps));
    let st = degroup(host, &["status", "--json"]);
    assert!(st.status.success(), "host status: {}", stderr(&st));
    t.elapsed()
}

fn deploy(tenant: &Path, lease: &str, pkg: &Path) -> serde_json::Value {
    json(
        tenant,
        &["deploy", "--lease", &lease[..12], pkg.to_str().unwrap()],
    )
}

fn state_on(dir: &Path, id: &str) -> (String, String) {
    let ps = json(dir, &["ps"]);
    let d = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .cloned()
        .unwrap_or_default();
    (
        d["state"].as_str().unwrap_or_default().to_owned(),
        d["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn hostile_tenants_cannot_stall_the_host_or_their_neighbour() {
    let tmp = tempfile::tempdir().unwrap();
    let host_dir = tmp.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    assert!(degroup(&host_dir, &["init"]).status.success());
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let mut host = NodeProc::start_with_env(&host_dir, &["--listen", &listen], HOST_ENV);
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
    let hostile = NodeProc::start(&tmp.path().join("hostile"), &["--bootstrap", &boot]);
    let good = NodeProc::start(&tmp.path().join("good"), &["--bootstrap", &boot]);
    for t in [&hostile, &good] {
        assert!(
            eventually(Duration::from_secs(30), || {
                let f = json(&t.dir, &["find", "country=FR"]);
                f["matches"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["host"] == host_id.as_str()))
            }),
            "tenant learns the host's advert: {}",
            t.log()
        );
    }

    // The neighbour: a counter, ticking every 100 ms.
    let counter_pkg = tmp.path().join("counter.dgp");
    pack(
        &good.dir,
        &programs::path("counter"),
        "counter",
        &counter_pkg,
    );
    let d = deploy(&good.dir, &lease(&good.dir, &host_id), &counter_pkg);
    assert_eq!(d["state"], "running", "{d}");
    let counter = d["id"].as_str().unwrap().to_owned();
    let mut last = 0;
    let mut ticking = |what: &str| {
        assert!(
            eventually(Duration::from_secs(20), || last_count(&good.dir, &counter)
                > last),
            "the counter stopped ticking ({what}); host log:\n{}",
            host.log()
        );
        last = last_count(&good.dir, &counter);
    };
    ticking("after its deploy");

    // A plugin that waits an hour in wasi:io/poll, stopped while it waits.
    let block_pkg = tmp.path().join("poll-block.dgp");
    pack(
        &hostile.dir,
        &programs::path("poll-block"),
        "poll-block",
        &block_pkg,
    );
    let d = deploy(&hostile.dir, &lease(&hostile.dir, &host_id), &block_pkg);
    assert_eq!(d["state"], "running", "{d}");
    let blocked = d["id"].as_str().unwrap().to_owned();
    let thread = format!("plugin-{}", &blocked[..8]);
    assert!(
        eventually(Duration::from_secs(20), || {
            stdout(&degroup(&hostile.dir, &["logs", &blocked])).contains("waiting an hour")
        }),
        "the plugin reached its wait"
    );
    assert!(worker_threads(host.child.id()).contains(&thread));
    let slowest = (0..5).map(|_| host_answers(&host_dir)).max().unwrap();
    eprintln!("host ps + status while a plugin waits in a host call: slowest {slowest:?}");
    ticking("while a plugin waits in a host call");
    let stopping = Instant::now();
    let o = degroup(&hostile.dir, &["stop", &blocked]);
    assert!(o.status.success(), "stop: {}", stderr(&o));
    assert!(
        eventually(Duration::from_secs(10), || {
            !worker_threads(host.child.id()).contains(&thread)
        }),
        "the worker thread of the stopped plugin is still there: {:?}",
        worker_threads(host.child.id())
    );
    eprintln!(
        "stop of a plugin waiting in wasi:io/poll, until its worker thread ended: {:?}",
        stopping.elapsed()
    );
    assert_eq!(state_on(&host_dir, &blocked).0, "stopped");

    // Left alone, the same plugin fails at its deadlines, and the host answers all along.
    let d = deploy(&hostile.dir, &lease(&hostile.dir, &host_id), &block_pkg);
    let failing = d["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(60), || {
            host_answers(&host_dir);
            state_on(&host_dir, &failing).0 == "failed"
        }),
        "poll-block did not end failed: {:?}",
        state_on(&host_dir, &failing)
    );
    let (_, reason) = state_on(&host_dir, &failing);
    assert!(reason.contains("deadline"), "{reason}");
    ticking("after a plugin failed at its deadlines");

    // A plugin rewriting 1 MiB values as fast as it may: the host's disk for it stays within the
    // quota plus the documented overhead, and is given back at stop.
    let rewrite_pkg = tmp.path().join("kv-rewrite.dgp");
    pack(
        &hostile.dir,
        &programs::path("kv-rewrite"),
        "kv-rewrite",
        &rewrite_pkg,
    );
    let d = deploy(&hostile.dir, &lease(&hostile.dir, &host_id), &rewrite_pkg);
    assert_eq!(d["state"], "running", "{d}");
    let rewriting = d["id"].as_str().unwrap().to_owned();
    let bound = degroup_node::plugin::kv::disk_bound(8 << 20);
    let mut most = 0;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(200));
        most = most.max(allocated(&host_dir, &rewriting));
    }
    eprintln!(
        "kv-rewrite for 6 s under an 8 MiB quota: at most {most} bytes allocated (bound {bound})"
    );
    assert!(most > 0 && most <= bound, "{most} > {bound}");
    assert_eq!(state_on(&host_dir, &rewriting).0, "running");
    let o = degroup(&hostile.dir, &["stop", &rewriting]);
    assert!(o.status.success(), "stop: {}", stderr(&o));
    assert!(
        eventually(Duration::from_secs(10), || allocated(&host_dir, &rewriting)
            == 0),
        "the stopped deployment's store is deleted"
    );
    ticking("while a plugin rewrote large values");

    // A component holding a thousand core instances is refused at deploy, with the reason.
    let hog_pkg = tmp.path().join("pool-hog.dgp");
    pack(
        &hostile.dir,
        &programs::path("pool-hog"),
        "pool-hog",
        &hog_pkg,
    );
    let hog_lease = lease(&hostile.dir, &host_id);
    let o = degroup(
        &hostile.dir,
        &[
            "deploy",
            "--lease",
            &hog_lease[..12],
            hog_pkg.to_str().unwrap(),
        ],
    );
    assert_clean_failure(&o, "core module instances");
    ticking("after a pool hog was refused");

    // After a restart of the host, the failed deployment stays failed and the counter resumes.
    host.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        host.wait_exit(Duration::from_secs(20)).is_some(),
        "host exits on SIGTERM"
    );
    let _ = std::fs::remove_file(host_dir.join("api.addr"));
    let host = NodeProc::start_with_env(&host_dir, &["--listen", &listen], HOST_ENV);
    assert_eq!(state_on(&host_dir, &failing).0, "failed");
    assert!(
        !worker_threads(host.child.id()).contains(&format!("plugin-{}", &failing[..8])),
        "a failed deployment is not run again"
    );
    let before = last_count(&good.dir, &counter);
    assert!(
        eventually(Duration::from_secs(30), || last_count(&good.dir, &counter)
            > before),
        "the counter resumes after the restart; host log:\n{}",
        host.log()
    );
}
