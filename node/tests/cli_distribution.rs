//! Package distribution end to end, on real `degroup node` processes on loopback.
//!
//! - Four nodes: publisher A, host B, tenant C, mirror D. A publishes; C finds the package with
//!   `search` within 5 s; D fetches it; A is killed with SIGKILL; C deploys `NAME@VERSION` onto
//!   its lease on B, and B fetches it from D. Then the refusals (yanked version, ambiguous
//!   name, untrusted publisher, unknown and malformed references, a package over a cap, a
//!   private package asked for by a node without a lease), and a restart of every node: the
//!   catalogue, the blobs, the provider records and the deployment come back.
//! - Two providers, one serving corrupted chunk groups (the `test-faults` switch): the fetch
//!   completes from the honest one and the bad one shows in the fetcher's metrics.
//! - A provider killed mid-transfer of a 32 MiB package: the fetch completes from another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod programs;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NODE_ENV: &[(&str, &str)] = &[
    ("DEGROUP_PLUGIN__TICK_INTERVAL", "100ms"),
    ("DEGROUP_PLUGIN__COMPILE_CPU", "3s"),
];

/// A fresh data dir with a config whose `[trust] publishers` are `trusted` (name, key).
fn init(dir: &Path, trusted: &[(&str, &str)], extra: &str) {
    std::fs::create_dir_all(dir).unwrap();
    if !dir.join("identity.key").exists() {
        assert!(degroup(dir, &["init"]).status.success());
    }
    if trusted.is_empty() && extra.is_empty() {
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
    let text = text.replace("\n[blobs]\n", &format!("\n[blobs]\n{extra}\n"));
    std::fs::write(&path, text).unwrap();
}

/// The hex public key of a data dir's identity.
fn key_of(dir: &Path) -> String {
    let k = json(dir, &["key", "show"]);
    k["public_key"]
        .as_str()
        .or_else(|| k["key"].as_str())
        .unwrap_or_else(|| panic!("key show: {k}"))
        .to_owned()
}

fn start(dir: &Path, bootstrap: Option<&str>, listen: &str, env: &[(&str, &str)]) -> NodeProc {
    let _ = std::fs::remove_file(dir.join("api.addr"));
    let mut args = vec!["--listen", listen];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    let mut all = NODE_ENV.to_vec();
    all.extend_from_slice(env);
    NodeProc::start_with_env(dir, &args, &all)
}

fn listen() -> String {
    format!("/ip4/127.0.0.1/tcp/{}", free_port())
}

/// Packs `wasm` as NAME@VERSION with the data dir's own key.
fn pack(dir: &Path, wasm: &Path, name: &str, version: &str) -> PathBuf {
    let out = dir.with_extension(format!("{name}-{version}.dgp"));
    pack_as(dir, wasm, name, version, &out);
    out
}

fn publish(dir: &Path, pkg: &Path) -> serde_json::Value {
    json(
        dir,
        &[
            "plugin",
            "publish",
            pkg.to_str().unwrap(),
            "--description",
            "greets the world",
        ],
    )
}

/// Whether `search TEXT` on `dir` lists NAME@VERSION.
fn finds(dir: &Path, text: &str, name: &str, version: &str) -> bool {
    let o = degroup(dir, &["plugin", "search", text, "--json"]);
    if !o.status.success() {
        return false;
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    v.as_array().is_some_and(|a| {
        a.iter()
            .any(|p| p["name"] == name && p["version"] == version)
    })
}

fn metric(dir: &Path, name: &str) -> f64 {
    let addr = std::fs::read_to_string(dir.join("api.addr")).unwrap();
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    let (code, body) = http_get(addr.trim(), "/metrics", Some(token.trim()));
    assert_eq!(code, 200);
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn set_capacity(dir: &Path) {
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
            "10GiB",
            "--country",
            "FR",
        ],
    );
    assert!(set.status.success(), "{}", stderr(&set));
}

fn lease(tenant: &Path, host_id: &str) -> String {
    lease_on(tenant, host_id, "0.5", "256MiB", "16MiB")
}

#[test]
fn publish_find_mirror_and_deploy_by_name_after_the_publisher_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir, c_dir, d_dir) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
        tmp.path().join("d"),
    );
    init(&a_dir, &[], "");
    let a_key = key_of(&a_dir);
    init(&d_dir, &[], "");
    let d_key = key_of(&d_dir);
    // B trusts nobody; C trusts A; D trusts A and itself.
    init(&b_dir, &[], "");
    init(&c_dir, &[("acme", &a_key)], "");
    init(&d_dir, &[("acme", &a_key), ("mirror", &d_key)], "");

    let b_listen = listen();
    let b = start(&b_dir, None, &b_listen, &[]);
    set_capacity(&b_dir);
    let boot = format!("{b_listen}/p2p/{}", b.peer_id());
    let a = start(&a_dir, Some(&boot), &listen(), &[]);
    let c_listen = listen();
    let c = start(&c_dir, Some(&boot), &c_listen, &[]);
    let d_listen = listen();
    let d = start(&d_dir, Some(&boot), &d_listen, &[]);

    // A publishes two versions of `greeter` (the counter program) and yanks the second.
    let counter = programs::path("counter");
    let v1 = pack(&a_dir, &counter, "greeter", "0.1.0");
    let v2 = pack(&a_dir, &counter, "greeter", "0.2.0");
    let published = publish(&a_dir, &v1);
    let hash = published["hash"].as_str().unwrap().to_owned();
    assert_eq!(published["publisher"], a_key.as_str());
    let human = stdout(&degroup(
        &a_dir,
        &["plugin", "publish", v1.to_str().unwrap()],
    ));
    assert!(human.contains(&hash), "publish prints the hash: {human}");
    let start_search = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || finds(
            &c_dir, "greet", "greeter", "0.1.0"
        )),
        "C finds the release within 5 s: {}",
        c.log()
    );
    eprintln!("search found it after {:?}", start_search.elapsed());
    publish(&a_dir, &v2);
    let yank = degroup(
        &a_dir,
        &["plugin", "yank", "greeter@0.2.0", "--reason", "broken"],
    );
    assert!(yank.status.success(), "yank: {}", stderr(&yank));
    assert!(
        eventually(Duration::from_secs(10), || {
            let o = degroup(&c_dir, &["plugin", "info", "greeter@0.2.0", "--json"]);
            stderr(&o).contains("yanked")
        }),
        "C hears of the yank"
    );

    // D mirrors 0.1.0.
    let fetched = json(&d_dir, &["plugin", "fetch", "greeter@0.1.0"]);
    assert_eq!(fetched["package"]["hash"], hash.as_str(), "{fetched}");
    assert!(fetched["bytes_moved"].as_u64().unwrap() > 0);
    let again = json(&d_dir, &["plugin", "fetch", "greeter@0.1.0"]);
    assert_eq!(
        again["bytes_moved"], 0,
        "a second fetch moves nothing: {again}"
    );

    // A dies; C deploys by name onto its lease on B, which fetches from D.
    a.signal(nix::sys::signal::Signal::SIGKILL);
    drop(a);
    let b_id = b.peer_id();
    assert!(
        eventually(Duration::from_secs(30), || {
            let f = json(&c_dir, &["find", "country=FR"]);
            f["matches"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["host"] == b_id.as_str()))
        }),
        "C learns B's advert"
    );
    let lease_id = lease(&c_dir, &b_id);
    let dep = json(
        &c_dir,
        &["deploy", "--lease", &lease_id[..12], "greeter@0.1.0"],
    );
    assert_eq!(dep["state"], "running", "{dep}");
    assert_eq!(dep["package"], hash.as_str());
    assert_eq!(dep["reference"], "greeter@0.1.0");
    let dep_id = dep["id"].as_str().unwrap().to_owned();
    let ps = json(&b_dir, &["ps"]);
    assert!(
        ps.as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == dep_id.as_str() && v["package"] == hash.as_str()),
        "B runs it and shows the hash: {ps}"
    );

    // Refusals, each with its error.
    let o = degroup(
        &c_dir,
        &["deploy", "--lease", &lease_id[..12], "greeter@0.2.0"],
    );
    assert_clean_failure(&o, "yanked");
    let o = degroup(&b_dir, &["plugin", "info", "greeter"]);
    assert_clean_failure(&o, "trust");
    publish(&d_dir, &pack(&d_dir, &counter, "greeter", "0.3.0"));
    let o = degroup(&d_dir, &["plugin", "info", "greeter"]);
    assert_clean_failure(&o, &a_key[..8]);
    assert!(
        stderr(&o).contains(&d_key[..8]),
        "lists both: {}",
        stderr(&o)
    );
    let o = degroup(&c_dir, &["plugin", "info", "no-such-plugin"]);
    assert_clean_failure(&o, "no-such-plugin");
    let o = degroup(&c_dir, &["deploy", "--lease", &lease_id[..12], "Bad Name!"]);
    assert_eq!(o.status.code(), Some(2), "malformed ref: {}", stderr(&o));
    let o = degroup(&c_dir, &["plugin", "info", "blake3:zz"]);
    assert_eq!(o.status.code(), Some(2), "malformed hash: {}", stderr(&o));
    // An exact hash of the yanked version still resolves, with a warning.
    let yanked_hash = json(&c_dir, &["plugin", "search", "greet"])
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["version"] == "0.2.0")
        .map(|p| p["hash"].as_str().unwrap().to_owned())
        .unwrap();
    let info = json(
        &c_dir,
        &["plugin", "info", &format!("blake3:{yanked_hash}")],
    );
    assert!(info["warning"].as_str().is_some(), "{info}");

    // A private package: C deploys from a file onto B. D, which has no lease with C, is
    // refused it.
    let private = pack(&c_dir, &programs::path("hello"), "secret", "1.0.0");
    let c_dep = degroup(&c_dir, &["stop", &dep_id]);
    assert!(c_dep.status.success(), "{}", stderr(&c_dep));
    let file_dep = json(
        &c_dir,
        &[
            "deploy",
            "--lease",
            &lease_id[..12],
            private.to_str().unwrap(),
        ],
    );
    assert_eq!(file_dep["state"], "running", "{file_dep}");
    let secret = file_dep["package"].as_str().unwrap().to_owned();
    // D asks C itself for it, by hash: C refuses.
    let c_id = c.peer_id();
    let o = degroup(
        &d_dir,
        &[
            "plugin",
            "fetch",
            &format!("blake3:{secret}"),
            "--from",
            &c_id,
        ],
    );
    assert!(
        !o.status.success(),
        "D must not get C's private package: {}",
        stdout(&o)
    );
    let blobs = json_api(&d_dir, "/v1/blobs");
    assert!(
        !blobs.to_string().contains(&secret),
        "D holds no copy: {blobs}"
    );

    // Restart every node: catalogue, blobs, provider records and the deployment come back.
    drop((b, c, d));
    let b = start(&b_dir, None, &b_listen, &[]);
    let c = start(&c_dir, Some(&boot), &c_listen, &[]);
    let d = start(&d_dir, Some(&boot), &d_listen, &[]);
    assert!(
        finds(&c_dir, "greet", "greeter", "0.1.0"),
        "C's catalogue is back"
    );
    assert!(
        json_api(&d_dir, "/v1/blobs").to_string().contains(&hash),
        "D's blob is back"
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            let i = json(&c_dir, &["plugin", "info", "greeter@0.1.0"]);
            i["package"]["providers"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == d.peer_id().as_str()))
        }),
        "D's provider record is back"
    );
    assert!(
        eventually(Duration::from_secs(30), || {
            json(&b_dir, &["ps"])
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["package"] == secret.as_str() && v["state"] == "running")
        }),
        "B resumes the deployment from its blob store: {}",
        b.log()
    );
    drop((b, c, d));
}

fn json_api(dir: &Path, path: &str) -> serde_json::Value {
    let addr = std::fs::read_to_string(dir.join("api.addr")).unwrap();
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    let (code, body) = http_get(addr.trim(), path, Some(token.trim()));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A "component" of `size` bytes: the component header, then filler. Distribution does not
/// compile what it moves, so this is a package as far as publish and fetch are concerned.
fn big_component(path: &Path, size: usize) {
    let mut bytes = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    bytes.extend((0..size as u64).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(path, bytes).unwrap();
}

#[test]
#[cfg_attr(
    not(feature = "test-faults"),
    ignore = "the corrupting provider needs `--features degroup-node/test-faults`"
)]
fn a_corrupting_provider_is_dropped_and_the_fetch_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let (p_dir, bad_dir, f_dir) = (
        tmp.path().join("honest"),
        tmp.path().join("bad"),
        tmp.path().join("fetcher"),
    );
    init(&p_dir, &[], "");
    let p_key = key_of(&p_dir);
    init(&bad_dir, &[("p", &p_key)], "");
    init(&f_dir, &[("p", &p_key)], "");
    let p_listen = listen();
    let p = start(&p_dir, None, &p_listen, &[]);
    let boot = format!("{p_listen}/p2p/{}", p.peer_id());
    let bad = start(
        &bad_dir,
        Some(&boot),
        &listen(),
        &[("DEGROUP_TEST_CORRUPT_BLOBS", "1")],
    );
    let wasm = tmp.path().join("big.wasm");
    big_component(&wasm, 6 * 1024 * 1024);
    let pkg = pack(&p_dir, &wasm, "bulky", "1.0.0");
    publish(&p_dir, &pkg);
    assert!(
        eventually(Duration::from_secs(10), || finds(
            &bad_dir, "bulky", "bulky", "1.0.0"
        )),
        "the mirror hears of it"
    );
    // The corrupting node fetches honestly (it only corrupts what it serves).
    json(&bad_dir, &["plugin", "fetch", "bulky@1.0.0"]);
    let f = start(&f_dir, Some(&boot), &listen(), &[]);
    assert!(
        eventually(Duration::from_secs(10), || finds(
            &f_dir, "bulky", "bulky", "1.0.0"
        )),
        "the fetcher hears of it"
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            let i = json(&f_dir, &["plugin", "info", "bulky@1.0.0"]);
            i["package"]["providers"]
                .as_array()
                .is_some_and(|p| p.len() >= 2)
        }),
        "both providers are known"
    );
    let fetched = json(&f_dir, &["plugin", "fetch", "bulky@1.0.0"]);
    let bad_id = bad.peer_id();
    assert!(
        fetched["bad_providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == bad_id.as_str()),
        "the corrupting provider is named: {fetched}"
    );
    assert!(
        metric(&f_dir, "degroup_blob_bad_chunks_total") >= 1.0,
        "and counted in metrics"
    );
    drop((p, bad, f));
}

#[test]
fn a_provider_killed_mid_transfer_of_32_mib_does_not_stop_the_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let (p_dir, m_dir, f_dir) = (
        tmp.path().join("publisher"),
        tmp.path().join("mirror"),
        tmp.path().join("fetcher"),
    );
    init(&p_dir, &[], "");
    let p_key = key_of(&p_dir);
    init(&m_dir, &[("p", &p_key)], "");
    // The fetcher refuses more than 1 MiB at first: the cap's error.
    init(&f_dir, &[("p", &p_key)], "max_package = \"1MiB\"");
    // Both providers serve slowly (4 MiB/s per peer), so the transfer takes seconds.
    let slow = [("DEGROUP_BLOBS__PER_PEER_RATE", "4MiB")];
    let p_listen = listen();
    let mut p = start(&p_dir, None, &p_listen, &slow);
    let boot = format!("{p_listen}/p2p/{}", p.peer_id());
    let m = start(&m_dir, Some(&boot), &listen(), &slow);
    let wasm = tmp.path().join("big.wasm");
    big_component(&wasm, 32 * 1024 * 1024);
    let pkg = pack(&p_dir, &wasm, "huge", "1.0.0");
    publish(&p_dir, &pkg);
    assert!(
        eventually(Duration::from_secs(10), || finds(
            &m_dir, "huge", "huge", "1.0.0"
        )),
        "the mirror hears of it"
    );
    json(&m_dir, &["plugin", "fetch", "huge@1.0.0"]);

    let f_listen = listen();
    let f = start(&f_dir, Some(&boot), &f_listen, &[]);
    assert!(
        eventually(Duration::from_secs(10), || finds(
            &f_dir, "huge", "huge", "1.0.0"
        )),
        "the fetcher hears of it"
    );
    let o = degroup(&f_dir, &["plugin", "fetch", "huge@1.0.0"]);
    assert_clean_failure(&o, "cap");
    drop(f);
    let path = f_dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_package = \"1MiB\"", "");
    std::fs::write(&path, text).unwrap();
    let f = start(&f_dir, Some(&boot), &f_listen, &[]);
    assert!(
        eventually(Duration::from_secs(20), || {
            let i = json(&f_dir, &["plugin", "info", "huge@1.0.0"]);
            i["package"]["providers"]
                .as_array()
                .is_some_and(|p| p.len() >= 2)
        }),
        "both providers are known"
    );
    let hash = json(&f_dir, &["plugin", "info", "huge@1.0.0"])["package"]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let fetch = Command::new(bin())
        .arg("--data-dir")
        .arg(&f_dir)
        .args(["plugin", "fetch", "huge@1.0.0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the publisher once the transfer is under way.
    let under_way = eventually(Duration::from_secs(20), || {
        let addr = std::fs::read_to_string(f_dir.join("api.addr")).unwrap();
        let token = std::fs::read_to_string(f_dir.join("api.token")).unwrap();
        let (code, body) = http_get(
            addr.trim(),
            &format!("/v1/packages/progress/{hash}"),
            Some(token.trim()),
        );
        code == 200 && {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            v["done"].as_u64().unwrap_or(0) > 0 && v["done"].as_u64() < v["total"].as_u64()
        }
    });
    assert!(under_way, "the transfer starts: {}", f.log());
    p.signal(nix::sys::signal::Signal::SIGKILL);
    p.wait_exit(Duration::from_secs(10));
    let out = fetch.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the fetch completes from the mirror: {} {}",
        String::from_utf8_lossy(&out.stderr),
        f.log()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["package"]["hash"], hash.as_str());
    assert!(
        v["bytes_moved"].as_u64().unwrap() >= 32 * 1024 * 1024,
        "{v}"
    );
    drop((m, f));
}
