//! `wasi:http` in the sandbox, through `plugin::http::HttpService::handle` (no sockets): one
//! GET to `http-hello`, its body read to the end.
//!
//! - `http_request/reuse`: instances kept between requests (the default): the per-request
//!   cost of arming an idle instance, the call and the body.
//! - `http_request/fresh`: `reuse = 1`, a new instance per request, what `wasmtime serve`
//!   does; the ratio is what reuse saves.
//!
//! `cargo bench -p degroup-node --bench http` (builds `wasm-plugins/` first if needed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/programs/mod.rs"]
mod programs;

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use degroup_node::lease::Meter;
use degroup_node::plugin::config::{HttpLimits, Limits};
use degroup_node::plugin::http::{HttpEnv, HttpService};
use degroup_node::plugin::kv::Kv;
use degroup_node::plugin::logs::Logs;
use degroup_node::plugin::runtime::{Compiler, LeaseInfo, Runtime};
use degroup_node::resources::Resources;
use degroup_node::store::Store;
use http_body_util::{BodyExt as _, Full};

const MIB: u64 = 1 << 20;

fn service(store: &Store, reuse: u64) -> Arc<HttpService> {
    let limits = Limits {
        http: HttpLimits {
            reuse,
            ..HttpLimits::default()
        },
        ..Limits::default()
    };
    let rt = Runtime::new(limits, None, Compiler::InProcess).unwrap();
    let compiled = rt.compile(&programs::wasm("http-hello")).unwrap();
    let info = LeaseInfo {
        lease_id: "11".repeat(16),
        deployment_id: "22".repeat(16),
        host: "host".into(),
        tenant: "tenant".into(),
        slice: Resources {
            cpu_millis: 1000,
            mem_bytes: 64 * MIB,
            disk_bytes: 16 * MIB,
            gpus: 0,
        },
        starts_at: 0,
        ends_at: u64::MAX,
        package_name: "bench".into(),
        package_version: "0.1.0".into(),
    };
    let env = HttpEnv {
        id: format!("bench-{reuse}"),
        lease: [0x11; 16],
        info,
        kv: Kv::open(store, &format!("bench-{reuse}"), 16 * MIB).unwrap(),
        // Quiet: a bench must not measure the log ring's rate limiter.
        logs: Logs::new(16, 1_000_000),
        meter: Meter::default(),
        outgoing: Vec::new(),
        share: None,
        control: degroup_node::plugin::control::Control::detached(),
    };
    HttpService::new(rt, &compiled, env).unwrap()
}

async fn one(svc: &Arc<HttpService>) {
    let req = http::Request::builder()
        .uri("http://bench.local/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = svc.handle(req).await;
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("http_request");
    for (name, reuse) in [("reuse", 10_000), ("fresh", 1)] {
        let svc = service(&store, reuse);
        g.bench_function(name, |b| b.iter(|| rt.block_on(one(&svc))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
