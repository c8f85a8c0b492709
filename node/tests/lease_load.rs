//! Over-booking under concurrency: 1,000 lease requests at once from 10 tenant processes
//! against a host process with room for exactly 100 of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use degroup_node::api::lease::CreateBody;
use degroup_node::cli::ApiClient;
use degroup_node::lease::view::{LeaseList, LeaseView};

const TENANTS: usize = 10;
const PER_TENANT: usize = 100;

#[test]
fn a_thousand_concurrent_requests_never_overbook() {
    let tmp = tempfile::tempdir().unwrap();
    let host = NodeProc::start(&tmp.path().join("host"), &[]);
    // Room for exactly 100 slices of 0.1 core.
    let o = degroup(&host.dir, &["capacity", "set", "--cpu", "10", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let host_id = host.peer_id();
    let boot = host.dial_addr();
    let tenants: Vec<NodeProc> = (0..TENANTS)
        .map(|i| NodeProc::start(&tmp.path().join(format!("t{i}")), &["--bootstrap", &boot]))
        .collect();
    for t in &tenants {
        assert!(
            eventually(Duration::from_secs(30), || t
                .connected_peers()
                .contains(&host_id)),
            "tenant connects to the host"
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let results: Vec<Result<LeaseView, String>> = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in &tenants {
            let client = ApiClient::from_data_dir(&t.dir).unwrap();
            for _ in 0..PER_TENANT {
                let client = client.clone();
                let body = CreateBody {
                    host: host_id.clone(),
                    cpu_millis: 100,
                    mem_bytes: 0,
                    disk_bytes: 0,
                    gpus: 0,
                    duration_ms: 3_600_000,
                    max_hourly_micros: None,
                    idempotency_key: None,
                };
                tasks.push(tokio::spawn(async move {
                    client
                        .post::<LeaseView, _>("/v1/leases", &body)
                        .await
                        .map_err(|e| format!("{e:#}"))
                }));
            }
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });

    let granted = results.iter().filter(|r| r.is_ok()).count();
    let refusals: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let other: Vec<&&String> = refusals
        .iter()
        .filter(|e| !e.contains("not enough free capacity"))
        .collect();
    assert!(
        other.is_empty(),
        "only capacity refusals: {:?}",
        &other[..other.len().min(5)]
    );
    assert_eq!(granted, 100, "exactly the capacity is granted");
    assert_eq!(refusals.len(), TENANTS * PER_TENANT - 100);

    let client = ApiClient::from_data_dir(&host.dir).unwrap();
    let (list, check): (LeaseList, serde_json::Value) = rt.block_on(async {
        (
            client.get("/v1/leases").await.unwrap(),
            client.get("/v1/leases-check").await.unwrap(),
        )
    });
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(list.leases.len(), 100);
    assert_eq!(list.host.leased.cpu_millis, 10_000);
    assert_eq!(list.offers_held, 0);
    let held_by_tenants: usize = tenants
        .iter()
        .map(|t| {
            let c = ApiClient::from_data_dir(&t.dir).unwrap();
            rt.block_on(c.get::<LeaseList>("/v1/leases"))
                .unwrap()
                .leases
                .len()
        })
        .sum();
    assert_eq!(
        held_by_tenants, 100,
        "every granted lease is stored by its tenant"
    );
}
