//! Plugins end to end with the real `degroup` binary: the developer loop (`plugin new`, `build`,
//! `run`, `pack`), and a deployment across two `degroup node` processes: deploy `counter` onto a
//! lease, `ps`/`logs` from both sides, `kill -9` the host and restart it (the counter continues
//! from its stored value), `deploy --upgrade` (state kept), `stop`; and the refusals: a lease
//! that is not the tenant's, an expired lease, a tampered or unsigned package, bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod programs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const HOST_ENV: &[(&str, &str)] = &[
    ("DEGROUP_PLUGIN__TICK_INTERVAL", "100ms"),
    ("DEGROUP_PLUGIN__BACKOFF", "50ms"),
    // Normal plugins compile in well under a second of CPU (debug build).
    ("DEGROUP_PLUGIN__COMPILE_CPU", "3s"),
];

/// The compile CPU on a lease's receipts, as the host lists them.
fn compile_cpu_ms(dir: &Path, lease_id: &str) -> u64 {
    let receipts = json(dir, &["lease", "receipts", lease_id]);
    receipts["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["compile_cpu_ms"].as_u64().unwrap_or(0))
        .sum()
}

fn start_host(dir: &Path, listen: &str) -> NodeProc {
    // A killed node leaves its api.addr behind; the restart writes a new one.
    let _ = std::fs::remove_file(dir.join("api.addr"));
    NodeProc::start_with_env(dir, &["--listen", listen], HOST_ENV)
}

/// The highest `count = N` the counter logged, as `degroup logs` shows it.
fn last_count(dir: &Path, id: &str) -> Option<u64> {
    let o = degroup(dir, &["logs", id]);
    if !o.status.success() {
        return None;
    }
    stdout(&o)
        .lines()
        .filter_map(|l| l.split("count = ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .max()
}

fn starts_at(dir: &Path, id: &str) -> Vec<u64> {
    let o = degroup(dir, &["logs", id]);
    stdout(&o)
        .lines()
        .filter_map(|l| l.split("counter starts at ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

fn pack(dir: &Path, wasm: &Path, version: &str, out: &Path) {
    let o = degroup(
        dir,
        &[
            "plugin",
            "pack",
            wasm.to_str().unwrap(),
            "--name",
            "counter",
            "--version",
            version,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "pack: {}", stderr(&o));
}

fn lease(tenant: &Path, host_id: &str, duration: &str) -> String {
    let l = json(
        tenant,
        &[
            "lease", "create", "--host", host_id, "--cpu", "0.5", "--mem", "256MiB", "--disk",
            "16MiB", "--for", duration,
        ],
    );
    l["id"].as_str().unwrap().to_owned()
}

#[test]
fn counter_survives_kill_9_of_its_host_and_an_upgrade() {
    let tmp = tempfile::tempdir().unwrap();
    let host_dir = tmp.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    assert!(degroup(&host_dir, &["init"]).status.success());
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let mut host = start_host(&host_dir, &listen);
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
            "10GiB",
            "--country",
            "FR",
        ],
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let host_id = host.peer_id();
    let tenant = NodeProc::start(
        &tmp.path().join("tenant"),
        &["--bootstrap", &format!("{listen}/p2p/{host_id}")],
    );
    assert!(
        eventually(Duration::from_secs(30), || {
            let f = json(&tenant.dir, &["find", "country=FR"]);
            f["matches"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["host"] == host_id.as_str()))
        }),
        "tenant learns the host's advert: {}",
        tenant.log()
    );
    let lease_id = lease(&tenant.dir, &host_id, "1h");

    // Pack with the tenant's own identity (the default key) and deploy.
    let pkg = tmp.path().join("counter.dgp");
    pack(&tenant.dir, &programs::path("counter"), "0.1.0", &pkg);
    let d = json(
        &tenant.dir,
        &[
            "deploy",
            "--lease",
            &lease_id[..12],
            pkg.to_str().unwrap(),
            "--config",
            "step=1",
        ],
    );
    let id = d["id"].as_str().unwrap().to_owned();
    assert_eq!(d["state"], "running", "{d}");
    assert_eq!(d["version"], "0.1.0");

    // Both sides list it and read its logs.
    for dir in [&tenant.dir, &host.dir] {
        let ps = json(dir, &["ps"]);
        assert!(
            ps.as_array()
                .unwrap()
                .iter()
                .any(|v| v["id"] == id.as_str()),
            "{ps}"
        );
    }
    assert!(
        eventually(Duration::from_secs(30), || last_count(&host.dir, &id)
            .is_some_and(|n| n >= 5)),
        "counter ticks on the host: {}",
        host.log()
    );
    assert!(last_count(&tenant.dir, &id).is_some(), "tenant reads logs");
    let human = stdout(&degroup(&tenant.dir, &["ps"]));
    assert!(
        human.contains("counter 0.1.0") && human.contains("running"),
        "{human}"
    );

    // kill -9 the host, restart it: the counter resumes from its stored value.
    let before = last_count(&host.dir, &id).unwrap();
    host.signal(nix::sys::signal::Signal::SIGKILL);
    host.wait_exit(Duration::from_secs(10)).expect("host died");
    drop(host);
    let host = start_host(&host_dir, &listen);
    assert!(
        eventually(Duration::from_secs(30), || !starts_at(&host.dir, &id)
            .is_empty()),
        "deployment resumed after restart: {}",
        host.log()
    );
    let resumed = starts_at(&host.dir, &id)[0];
    eprintln!("logged {before} before kill -9; resumed at {resumed}");
    assert!(
        resumed >= before,
        "resumed at {resumed}, had logged {before}"
    );
    assert!(
        eventually(Duration::from_secs(30), || last_count(&tenant.dir, &id)
            .is_some_and(|n| n > resumed)),
        "counter ticks again, seen from the tenant: {}",
        tenant.log()
    );

    // Upgrade: new code, same key-value state.
    let before = last_count(&host.dir, &id).unwrap();
    let pkg2 = tmp.path().join("counter-0.2.0.dgp");
    pack(&tenant.dir, &programs::path("counter"), "0.2.0", &pkg2);
    let up = json(
        &tenant.dir,
        &["deploy", "--upgrade", &id, pkg2.to_str().unwrap()],
    );
    assert_eq!(up["version"], "0.2.0", "{up}");
    assert_eq!(up["generation"], 2, "{up}");
    assert!(
        eventually(Duration::from_secs(10), || starts_at(&host.dir, &id).len()
            >= 2),
        "the upgrade restarted it"
    );
    let after_upgrade = *starts_at(&host.dir, &id).last().unwrap();
    eprintln!("logged {before} before the upgrade; restarted at {after_upgrade}");
    assert!(after_upgrade >= before, "{after_upgrade} < {before}");

    // A second deployment on the same lease is refused: the lease's limits are one deployment's.
    let second = degroup(
        &tenant.dir,
        &["deploy", "--lease", &lease_id, pkg.to_str().unwrap()],
    );
    assert_clean_failure(&second, "already runs deployment");

    // A message reaches the plugin: `reset` through the tenant's node.
    let sent = degroup(&tenant.dir, &["message", &id, "reset"]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert!(
        eventually(Duration::from_secs(10), || {
            stdout(&degroup(&host.dir, &["logs", &id])).contains("reset asked by")
        }),
        "the plugin got the message"
    );
    let o = degroup(&tenant.dir, &["message", &id]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Metering reaches the receipts once a period closes (the release closes the last one).
    let stopped = json(&tenant.dir, &["stop", &id]);
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    let ps = json(&host.dir, &["ps"]);
    let v = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(v["state"], "stopped");
    let released = degroup(&tenant.dir, &["lease", "release", &lease_id]);
    assert!(released.status.success(), "{}", stderr(&released));
    let receipts = json(&host.dir, &["lease", "receipts", &lease_id]);
    let fuel: u64 = receipts["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cpu_fuel"].as_u64().unwrap_or(0))
        .sum();
    assert!(fuel > 0, "fuel metered into receipts: {receipts}");
    eprintln!("fuel in receipts: {fuel}");
    // The first deploy's compile CPU went with the killed host's meter; the upgrade carries
    // the same component, a cache hit, which charges nothing.
    let compile = compile_cpu_ms(&host.dir, &lease_id);
    assert_eq!(compile, 0, "a cache hit is free: {receipts}");
}

#[test]
fn deploys_are_refused_with_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let host = NodeProc::start_with_env(&tmp.path().join("host"), &[], HOST_ENV);
    let set = degroup(
        &host.dir,
        &[
            "capacity", "set", "--cpu", "2", "--mem", "4GiB", "--disk", "10GiB",
        ],
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let host_id = host.peer_id();
    let tenant = NodeProc::start(
        &tmp.path().join("tenant"),
        &["--bootstrap", &host.dial_addr()],
    );
    let other = NodeProc::start(
        &tmp.path().join("other"),
        &["--bootstrap", &host.dial_addr()],
    );
    assert!(
        eventually(Duration::from_secs(30), || {
            let f = json(&tenant.dir, &["find", "cpu>=1"]);
            f["matches"].as_array().is_some_and(|m| !m.is_empty())
        }),
        "{}",
        tenant.log()
    );
    let lease_id = lease(&tenant.dir, &host_id, "1h");
    let pkg = tmp.path().join("hello.dgp");
    let o = degroup(
        &tenant.dir,
        &[
            "plugin",
            "pack",
            programs::path("hello").to_str().unwrap(),
            "--name",
            "hello",
            "--version",
            "1.0.0",
            "--out",
            pkg.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let p = pkg.to_str().unwrap();

    // Someone else's lease: another node cannot deploy onto it, nor can the host itself.
    assert_clean_failure(
        &degroup(&other.dir, &["deploy", "--lease", &lease_id, p]),
        "no lease",
    );
    assert_clean_failure(
        &degroup(&host.dir, &["deploy", "--lease", &lease_id, p]),
        "deploy from the tenant's node",
    );

    // A tampered package (one byte of the component flipped) and an unsigned one.
    let mut bytes = std::fs::read(&pkg).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    let tampered = tmp.path().join("tampered.dgp");
    std::fs::write(&tampered, &bytes).unwrap();
    assert_clean_failure(
        &degroup(
            &tenant.dir,
            &["deploy", "--lease", &lease_id, tampered.to_str().unwrap()],
        ),
        "package",
    );
    let unsigned = tmp.path().join("unsigned.dgp");
    std::fs::write(&unsigned, programs::wasm("hello")).unwrap();
    assert_clean_failure(
        &degroup(
            &tenant.dir,
            &["deploy", "--lease", &lease_id, unsigned.to_str().unwrap()],
        ),
        "package",
    );

    // Bad input: no target, a bad --config, a missing file.
    let o = degroup(&tenant.dir, &["deploy", p]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = degroup(
        &tenant.dir,
        &["deploy", "--lease", &lease_id, p, "--config", "novalue"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_clean_failure(&o, "key=value");
    assert_clean_failure(
        &degroup(
            &tenant.dir,
            &["deploy", "--lease", &lease_id, "/nonexistent.dgp"],
        ),
        "cannot read",
    );
    assert_clean_failure(
        &degroup(&tenant.dir, &["logs", "ffffffff"]),
        "no deployment",
    );

    // An expired lease.
    let short = lease(&tenant.dir, &host_id, "2s");
    std::thread::sleep(Duration::from_secs(3));
    assert_clean_failure(
        &degroup(&tenant.dir, &["deploy", "--lease", &short, p]),
        "not active",
    );

    // A compile bomb (a small package that takes seconds of CPU and hundreds of MiB to
    // compile) is refused at deploy with its compile bound; the CPU is the lease's.
    let bomb = tmp.path().join("bomb.dgp");
    let o = degroup(
        &tenant.dir,
        &[
            "plugin",
            "pack",
            programs::path("compile-bomb").to_str().unwrap(),
            "--name",
            "compile-bomb",
            "--version",
            "1.0.0",
            "--out",
            bomb.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let started = std::time::Instant::now();
    let o = degroup(
        &tenant.dir,
        &["deploy", "--lease", &lease_id, bomb.to_str().unwrap()],
    );
    assert_clean_failure(&o, "compilation exceeded its");
    eprintln!(
        "compile bomb refused in {:?}: {}",
        started.elapsed(),
        stderr(&o).trim()
    );

    // Nothing was deployed by any of it; a good deploy still works.
    assert_eq!(json(&host.dir, &["ps"]).as_array().unwrap().len(), 0);
    let d = json(&tenant.dir, &["deploy", "--lease", &lease_id, p]);
    assert_eq!(d["state"], "running", "{d}");

    // Releasing the lease stops its deployment on the host.
    let id = d["id"].as_str().unwrap().to_owned();
    let released = degroup(&tenant.dir, &["lease", "release", &lease_id]);
    assert!(released.status.success(), "{}", stderr(&released));
    assert!(
        eventually(Duration::from_secs(15), || {
            json(&host.dir, &["ps"])
                .as_array()
                .unwrap()
                .iter()
                .any(|v| {
                    v["id"] == id.as_str()
                        && v["state"] == "stopped"
                        && v["reason"].as_str().is_some_and(|r| r.contains("lease"))
                })
        }),
        "deployment stopped with its lease: {}",
        stdout(&degroup(&host.dir, &["ps"]))
    );
    // The final receipt carries the bomb's CPU (and the good deploy's).
    let compile = compile_cpu_ms(&host.dir, &lease_id);
    eprintln!("compile CPU charged to the lease: {compile} ms");
    assert!(compile >= 500, "{compile} ms");
}

#[test]
fn developer_loop_new_build_run_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let krate: PathBuf = tmp.path().join("my-manager");
    let o = degroup(
        &dir,
        &[
            "plugin",
            "new",
            "my-manager",
            "--path",
            krate.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(krate.join("src/lib.rs").is_file());

    // Build into the tests' shared target directory, so the SDK's dependencies build once.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm-plugins");
    programs::dir();
    let o = std::process::Command::new(bin())
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "plugin",
            "build",
            "--json",
        ])
        .arg(&krate)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(o.status.success(), "build: {}", stderr(&o));
    let built: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let wasm = built["wasm"].as_str().unwrap().to_owned();
    assert!(wasm.ends_with("my_manager.wasm"), "{built}");

    let o = degroup(
        &dir,
        &[
            "plugin",
            "run",
            &wasm,
            "--ticks",
            "3",
            "--config",
            "greeting=bonjour",
        ],
    );
    assert!(o.status.success(), "run: {}", stderr(&o));
    assert!(stdout(&o).contains("bonjour"), "{}", stdout(&o));

    let key = tmp.path().join("publisher.key");
    assert!(
        degroup(&dir, &["key", "generate", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let out = tmp.path().join("my-manager.dgp");
    let packed = json(
        &dir,
        &[
            "plugin",
            "pack",
            &wasm,
            "--name",
            "my-manager",
            "--version",
            "0.1.0",
            "--key",
            key.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(packed["name"], "my-manager");
    assert!(out.is_file());
    // The package runs too, and reports what it did.
    let run = json(
        &dir,
        &["plugin", "run", out.to_str().unwrap(), "--ticks", "2"],
    );
    assert_eq!(run["ticks_ok"], 2, "{run}");
    assert!(run["fuel"].as_u64().unwrap() > 0);

    // Bad input.
    let o = degroup(&dir, &["plugin", "new", "Bad Name"]);
    assert_eq!(o.status.code(), Some(2));
    let o = degroup(
        &dir,
        &[
            "plugin",
            "pack",
            &wasm,
            "--name",
            "x",
            "--version",
            "one",
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();
    assert_clean_failure(
        &degroup(&dir, &["plugin", "run", junk.to_str().unwrap()]),
        "junk.wasm",
    );
    assert_clean_failure(
        &degroup(
            &dir,
            &[
                "plugin",
                "run",
                programs::path("init-trap").to_str().unwrap(),
            ],
        ),
        "init",
    );
}
