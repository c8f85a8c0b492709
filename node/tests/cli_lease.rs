//! Leases end to end between two `degroup node` processes: create, show on both sides, verify
//! offline, renew, receipts, release; expiry with a short duration; termination by the host;
//! and bad input refused with a clear error and no state change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A host with 2 cores, 4 GiB and 10 GiB on offer, and a tenant that knows its advert.
fn pair(tmp: &Path) -> (NodeProc, NodeProc, String) {
    let host = NodeProc::start(&tmp.join("host"), &[]);
    let set = degroup(
        &host.dir,
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
            "--price",
            "cpu=0.5",
            "--price",
            "mem=0.1",
        ],
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let tenant = NodeProc::start(&tmp.join("tenant"), &["--bootstrap", &host.dial_addr()]);
    let host_id = host.peer_id();
    let known = eventually(Duration::from_secs(30), || {
        let found = json(&tenant.dir, &["find", "country=FR"]);
        found["matches"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["host"] == host_id.as_str()))
    });
    assert!(
        known,
        "tenant learns the host's advert; log: {}",
        tenant.log()
    );
    (host, tenant, host_id)
}

fn api_get(dir: &Path, path: &str) -> serde_json::Value {
    let addr = std::fs::read_to_string(dir.join("api.addr")).unwrap();
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    let (code, body) = http_get(addr.trim(), path, Some(token.trim()));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn free_cpu_seen_by(dir: &Path, host_id: &str) -> f64 {
    let found = json(dir, &["find", "country=FR"]);
    found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["host"] == host_id)
        .map(|m| m["advert"]["cpu"].as_f64().unwrap())
        .unwrap_or(-1.0)
}

#[test]
fn create_show_verify_renew_release_between_two_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let (host, tenant, host_id) = pair(tmp.path());

    let lease = json(
        &tenant.dir,
        &[
            "lease",
            "create",
            "--host",
            &host_id,
            "--cpu",
            "1",
            "--mem",
            "1GiB",
            "--disk",
            "2GiB",
            "--for",
            "1h",
            "--max-price",
            "2.5",
        ],
    );
    let id = lease["id"].as_str().unwrap().to_owned();
    assert_eq!(lease["role"], "tenant");
    assert_eq!(lease["state"], "active");
    assert_eq!(lease["verified"], true);
    assert_eq!(lease["cpu_millis"], 1000);
    assert_eq!(lease["hourly_price_eur"], 0.6, "1 core × 0.5 + 1 GiB × 0.1");

    // The host holds the same lease, countersigned, and its advert shows less free CPU.
    let on_host = json(&host.dir, &["lease", "show", &id]);
    assert_eq!(on_host["role"], "host");
    assert_eq!(on_host["verified"], true);
    assert_eq!(on_host["ends_at_ms"], lease["ends_at_ms"]);
    let list = json(&host.dir, &["lease", "list"]);
    assert_eq!(list["host"]["leased"]["cpu_millis"], 1000);
    assert!(
        eventually(Duration::from_secs(15), || free_cpu_seen_by(
            &tenant.dir,
            &host_id
        ) == 1.0),
        "the advert's free capacity follows the lease"
    );

    // Export, then verify with no node running for that data dir.
    let file = tmp.path().join("lease.json");
    let o = degroup(
        &tenant.dir,
        &["lease", "export", &id[..8], "--out", file.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let nowhere = tmp.path().join("no-node-here");
    let v = json(&nowhere, &["lease", "verify", file.to_str().unwrap()]);
    assert_eq!(v["verified"], true);
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["host"], host_id.as_str());
    // A tampered copy does not verify.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut export: serde_json::Value = serde_json::from_str(&text).unwrap();
    let contract = export["contract"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        &contract[..contract.len() - 2],
        if contract.ends_with('0') { "01" } else { "00" }
    );
    export["contract"] = serde_json::Value::String(flipped);
    let bad = tmp.path().join("tampered.json");
    std::fs::write(&bad, export.to_string()).unwrap();
    let o = degroup(&nowhere, &["lease", "verify", bad.to_str().unwrap()]);
    assert_clean_failure(&o, "does NOT verify");
    let o = degroup(
        &nowhere,
        &[
            "lease",
            "verify",
            tmp.path().join("missing.json").to_str().unwrap(),
        ],
    );
    assert_clean_failure(&o, "cannot read");

    // Renew: two more hours, version 2 on both sides.
    let renewed = json(&tenant.dir, &["lease", "renew", &id, "--for", "2h"]);
    assert_eq!(renewed["version"], 2);
    assert_eq!(
        renewed["ends_at_ms"].as_u64().unwrap(),
        lease["ends_at_ms"].as_u64().unwrap() + 2 * 3_600_000
    );
    assert_eq!(json(&host.dir, &["lease", "show", &id])["version"], 2);
    // A renewal past the host's maximum is refused and changes nothing.
    let o = degroup(&tenant.dir, &["lease", "renew", &id, "--for", "60d"]);
    assert_clean_failure(&o, "maximum");
    assert_eq!(json(&host.dir, &["lease", "show", &id])["version"], 2);

    // Only the tenant releases; only the host terminates.
    let o = degroup(&host.dir, &["lease", "release", &id]);
    assert_clean_failure(&o, "terminate");
    let o = degroup(&tenant.dir, &["lease", "terminate", &id, "--reason", "x"]);
    assert_clean_failure(&o, "release");

    let released = json(&tenant.dir, &["lease", "release", &id]);
    assert_eq!(released["state"], "released");
    assert_eq!(
        json(&host.dir, &["lease", "show", &id])["state"],
        "released"
    );
    assert_eq!(
        json(&host.dir, &["lease", "list"])["host"]["leased"]["cpu_millis"],
        0
    );

    // The host signed a final usage receipt; the tenant fetches and checks it.
    let receipts = json(&tenant.dir, &["lease", "receipts", &id]);
    let r = receipts["receipts"].as_array().unwrap();
    assert_eq!(r.len(), 1, "{receipts}");
    assert_eq!(r[0]["verified"], true);
    assert!(r[0]["wall_ms"].as_u64().unwrap() > 0);
    assert_eq!(r[0]["cpu_fuel"], 0, "no plugin ran");

    // Status counts leases; the export of a released lease carries the host's end notice.
    assert_eq!(json(&host.dir, &["status"])["leases_hosted"], 0);
    let o = degroup(
        &tenant.dir,
        &["lease", "export", &id, "--out", file.to_str().unwrap()],
    );
    assert!(o.status.success());
    assert_eq!(
        json(&nowhere, &["lease", "verify", file.to_str().unwrap()])["ended"],
        "released"
    );
}

#[test]
fn expiry_termination_and_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (host, tenant, host_id) = pair(tmp.path());

    // A short lease expires on its own on both sides, and its capacity comes back.
    let short = json(
        &tenant.dir,
        &[
            "lease", "create", "--host", &host_id, "--cpu", "2", "--for", "2s",
        ],
    );
    let short_id = short["id"].as_str().unwrap().to_owned();
    let o = degroup(
        &tenant.dir,
        &[
            "lease", "create", "--host", &host_id, "--cpu", "1", "--for", "1h",
        ],
    );
    assert_clean_failure(&o, "not enough free capacity");
    assert!(
        stderr(&o).contains("free now: cpu 0 cores"),
        "{}",
        stderr(&o)
    );
    let expired = eventually(Duration::from_secs(10), || {
        json(&host.dir, &["lease", "show", &short_id])["state"] == "expired"
            && json(&tenant.dir, &["lease", "show", &short_id])["state"] == "expired"
    });
    assert!(expired, "log: {}", host.log());
    assert_eq!(
        json(&host.dir, &["lease", "list"])["host"]["leased"]["cpu_millis"],
        0
    );

    // The host terminates a lease with a reason; the tenant is told.
    let l = json(
        &tenant.dir,
        &[
            "lease", "create", "--host", &host_id, "--cpu", "1", "--for", "1h",
        ],
    );
    let id = l["id"].as_str().unwrap().to_owned();
    let t = json(
        &host.dir,
        &["lease", "terminate", &id, "--reason", "rack maintenance"],
    );
    assert_eq!(t["state"], "terminated");
    assert_eq!(t["end_reason"], "rack maintenance");
    let told = eventually(Duration::from_secs(10), || {
        json(&tenant.dir, &["lease", "show", &id])["state"] == "terminated"
    });
    assert!(told, "tenant log: {}", tenant.log());

    // Bad input: usage errors (exit 2) before any node is asked, refusals with reasons.
    let before = json(&host.dir, &["lease", "list"]);
    for (args, needle) in [
        (
            vec![
                "lease", "create", "--host", "nobody", "--cpu", "1", "--for", "1h",
            ],
            "not a peer id",
        ),
        (
            vec![
                "lease", "create", "--host", &host_id, "--cpu", "1", "--for", "soon",
            ],
            "--for",
        ),
        (
            vec!["lease", "create", "--host", &host_id, "--for", "1h"],
            "nothing to lease",
        ),
        (
            vec![
                "lease", "create", "--host", &host_id, "--mem", "lots", "--for", "1h",
            ],
            "--mem",
        ),
        (
            vec![
                "lease",
                "create",
                "--host",
                &host_id,
                "--cpu",
                "1",
                "--for",
                "1h",
                "--max-price",
                "cheap",
            ],
            "--max-price",
        ),
        (vec!["lease", "show", "zz"], "not a lease id"),
    ] {
        let o = degroup(&tenant.dir, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_clean_failure(&o, needle);
    }
    for (args, needle) in [
        (
            vec![
                "lease", "create", "--host", &host_id, "--cpu", "1", "--for", "90d",
            ],
            "maximum",
        ),
        (
            vec![
                "lease",
                "create",
                "--host",
                &host_id,
                "--cpu",
                "1",
                "--for",
                "1h",
                "--max-price",
                "0.01",
            ],
            "above your maximum",
        ),
        (vec!["lease", "show", "abcdef"], "no lease"),
        (vec!["lease", "release", &short_id], "ended"),
    ] {
        let o = degroup(&tenant.dir, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert_clean_failure(&o, needle);
    }
    let own = tenant.peer_id();
    let o = degroup(
        &tenant.dir,
        &[
            "lease", "create", "--host", &own, "--cpu", "1", "--for", "1h",
        ],
    );
    assert_clean_failure(&o, "itself");
    let after = json(&host.dir, &["lease", "list"]);
    assert_eq!(
        before["leases"], after["leases"],
        "refusals change nothing on the host"
    );
    assert_eq!(after["offers_held"], 0);
    let check = api_get(&host.dir, "/v1/leases-check");
    assert_eq!(check["ok"], true, "{check}");
}
