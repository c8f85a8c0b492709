//! Crash safety of leases: a host process under lease load is killed with SIGKILL at random
//! moments and restarted. Every lease acknowledged to a tenant must be on the host afterwards,
//! intact (both signatures verify) and active; offers held before the crash are released; and
//! the reservation invariant holds (no capacity leaked or over-booked). Every fourth trial kills
//! the tenant instead: after its restart it holds every lease it acknowledged, and no lease is
//! left pending.
//!
//! `DEGROUP_LEASE_CRASH_TRIALS` sets the number of trials (100 by default; the documented long
//! run uses 1000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use degroup_node::api::lease::CreateBody;
use degroup_node::cli::ApiClient;
use degroup_node::lease::view::{LeaseList, LeaseState, LeaseView};

fn trials() -> u64 {
    std::env::var("DEGROUP_LEASE_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

const WORKERS: usize = 3;
/// Leases are short, so that some expire while the host is down or restarting and the set of
/// active leases stays bounded however many trials run.
const LEASE_MS: u64 = 20_000;

/// Present and intact: active with both signatures checked at load, or expired on time.
fn intact(l: &LeaseView) -> bool {
    (l.state == LeaseState::Active && l.verified == Some(true)) || l.state == LeaseState::Expired
}

fn start_host(dir: &std::path::Path, listen: &str) -> NodeProc {
    // A killed node leaves its api.addr behind; the restart writes a new one.
    let _ = std::fs::remove_file(dir.join("api.addr"));
    NodeProc::start(dir, &["--listen", listen])
}

/// After a tenant restart: every acknowledged lease is there, and the leases left pending by
/// the crash are confirmed with the host (or dropped if it never committed them).
fn check_tenant(
    rt: &tokio::runtime::Runtime,
    api: &ApiClient,
    acked: &HashSet<String>,
    trial: u64,
) {
    let mut list: Option<LeaseList> = None;
    for _ in 0..200 {
        let l: LeaseList = rt.block_on(api.get("/v1/leases")).unwrap();
        if l.leases.iter().all(|l| l.state != LeaseState::Pending) {
            list = Some(l);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let list = list.unwrap_or_else(|| panic!("trial {trial}: pending leases never reconciled"));
    let held: HashSet<&str> = list
        .leases
        .iter()
        .filter(|l| intact(l))
        .map(|l| l.id.as_str())
        .collect();
    let lost = acked
        .iter()
        .filter(|id| !held.contains(id.as_str()))
        .count();
    assert_eq!(
        lost, 0,
        "trial {trial}: the tenant lost acknowledged leases"
    );
}

#[test]
fn acknowledged_leases_survive_sigkill_of_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let host_dir = tmp.path().join("host");
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let mut host = start_host(&host_dir, &listen);
    let o = degroup(&host.dir, &["capacity", "set", "--cpu", "1000", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let host_id = host.peer_id();
    let tenant_dir = tmp.path().join("tenant");
    let tenant_boot = format!("{listen}/p2p/{host_id}");
    let mut tenant = NodeProc::start(&tenant_dir, &["--bootstrap", &tenant_boot]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut tenant_api = ApiClient::from_data_dir(&tenant.dir).unwrap();

    // Deterministic kill points, so that a failure can be replayed.
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut acked: HashSet<String> = HashSet::new();
    let mut killed_mid_load = 0;
    let mut reconciled = 0;
    for trial in 0..trials() {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let client = tenant_api.clone();
                let stop = stop.clone();
                let host = host_id.clone();
                rt.spawn(async move {
                    let mut ok = Vec::new();
                    let mut failed = 0u32;
                    while !stop.load(Ordering::Relaxed) && failed < 50 {
                        let body = CreateBody {
                            host: host.clone(),
                            cpu_millis: 1,
                            mem_bytes: 0,
                            disk_bytes: 0,
                            gpus: 0,
                            duration_ms: LEASE_MS,
                            max_hourly_micros: None,
                            idempotency_key: None,
                        };
                        match client.post::<LeaseView, _>("/v1/leases", &body).await {
                            Ok(v) => ok.push(v.id),
                            Err(_) => {
                                failed += 1;
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                    }
                    ok
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + next() % 250));
        // Every fourth trial kills the tenant instead: what it acknowledged must survive too.
        let kill_tenant = trial % 4 == 3;
        let victim = if kill_tenant { &mut tenant } else { &mut host };
        victim.child.kill().unwrap();
        let _ = victim.child.wait();
        stop.store(true, Ordering::Relaxed);
        let mut this_trial = 0;
        for w in workers {
            let ids = rt.block_on(w).unwrap();
            this_trial += ids.len();
            acked.extend(ids);
        }
        if this_trial > 0 {
            killed_mid_load += 1;
        }

        if kill_tenant {
            let _ = std::fs::remove_file(tenant_dir.join("api.addr"));
            tenant = NodeProc::start(&tenant_dir, &["--bootstrap", &tenant_boot]);
            tenant_api = ApiClient::from_data_dir(&tenant.dir).unwrap();
            check_tenant(&rt, &tenant_api, &acked, trial);
            reconciled += tenant.log().matches("pending lease").count();
            continue;
        }
        host = start_host(&host_dir, &listen);
        let host_api = ApiClient::from_data_dir(&host.dir).unwrap();
        let (list, check): (LeaseList, serde_json::Value) = rt.block_on(async {
            (
                host_api.get("/v1/leases").await.unwrap(),
                host_api.get("/v1/leases-check").await.unwrap(),
            )
        });
        let on_host: HashSet<&str> = list
            .leases
            .iter()
            .filter(|l| intact(l))
            .map(|l| l.id.as_str())
            .collect();
        let lost: Vec<&String> = acked
            .iter()
            .filter(|id| !on_host.contains(id.as_str()))
            .collect();
        assert!(
            lost.is_empty(),
            "trial {trial}: {} acknowledged lease(s) lost or damaged, e.g. {:?}",
            lost.len(),
            lost.first()
        );
        assert_eq!(check["ok"], true, "trial {trial}: {check}");
        assert_eq!(
            list.offers_held, 0,
            "trial {trial}: offers from before the crash are released"
        );
        let leased: u64 = list
            .leases
            .iter()
            .filter(|l| l.state == LeaseState::Active)
            .map(|l| l.cpu_millis)
            .sum();
        assert_eq!(
            list.host.leased.cpu_millis, leased,
            "trial {trial}: no capacity leaked"
        );
    }
    assert!(
        killed_mid_load * 2 >= trials(),
        "most kills should land under load ({killed_mid_load} of {})",
        trials()
    );
    // The tenant holds every lease it was told about.
    let tenant_list: LeaseList = rt.block_on(tenant_api.get("/v1/leases")).unwrap();
    let at_tenant: HashSet<&str> = tenant_list.leases.iter().map(|l| l.id.as_str()).collect();
    assert!(acked.iter().all(|id| at_tenant.contains(id.as_str())));
    eprintln!(
        "{} trials, {} acknowledged leases, all present after every kill; {reconciled} pending lease(s) reconciled after tenant kills",
        trials(),
        acked.len()
    );
}
