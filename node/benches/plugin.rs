//! The plugin sandbox, through the code the node runs (`plugin::runtime`):
//!
//! - `instantiate_call/*`: a cached plugin instantiated from its `InstancePre` in the pooling
//!   allocator, one export called, the instance dropped: the per-request path (target p50
//!   ≤ 20 µs); the floor, wasmtime's own, is ~2–12 µs.
//! - `deploy_cached`: what a host does for a deploy of a package it already compiled (memory
//!   cache hit, key-value tree opened, instantiate, `init`) up to running (target p50 ≤ 5 ms).
//! - `first_compile`: a ~100 KB component compiled from scratch (cache off; each iteration
//!   gets a unique custom section so nothing is reused) (target ≤ 250 ms).
//! - `guards/*`: a compute-heavy call (1M xorshift rounds) with fuel + epoch deadlines on, and
//!   on an engine without them: the ratio is the guards' cost.
//!
//! `cargo bench -p degroup-node --bench plugin` (builds `wasm-plugins/` first if needed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/programs/mod.rs"]
mod programs;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use degroup_node::plugin::config::Limits;
use degroup_node::plugin::kv::Kv;
use degroup_node::plugin::logs::Logs;
use degroup_node::plugin::runtime::{Compiler, Env, LeaseInfo, Runtime};
use degroup_node::resources::Resources;
use degroup_node::store::Store;

const MIB: u64 = 1 << 20;

fn info() -> LeaseInfo {
    LeaseInfo {
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
    }
}

fn env(store: &Store, name: &str) -> Env {
    Env {
        info: info(),
        kv: Kv::open(store, name, 16 * MIB).expect("kv"),
        // Quiet: a bench must not measure the log ring's rate limiter.
        logs: Logs::new(16, 1_000_000),
        control: degroup_node::plugin::control::Control::detached(),
    }
}

fn runtime(guarded: bool) -> Arc<Runtime> {
    let limits = Limits {
        max_deployments: 64,
        ..Limits::default()
    };
    if guarded {
        Runtime::new(limits, None, Compiler::InProcess).expect("runtime")
    } else {
        Runtime::new_unguarded(limits).expect("runtime")
    }
}

/// The single-threaded executor a worker thread runs its calls on.
fn executor() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("executor")
}

fn instantiate_call(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path()).expect("store");
    let rt = runtime(true);
    let ex = executor();
    let mut g = c.benchmark_group("instantiate_call");
    for name in ["hello", "compute"] {
        let compiled = rt.compile(&programs::wasm(name)).expect("compile");
        let mut slot = Some(env(&store, name));
        g.bench_function(name, |b| {
            b.iter(|| {
                let e = slot.take().expect("env");
                let mut inst = match ex.block_on(rt.instantiate(&compiled, e)) {
                    Ok(i) => i,
                    Err((err, _)) => panic!("{err}"),
                };
                let call = ex.block_on(inst.init(&[]));
                black_box(&call.result);
                slot = Some(inst.into_env());
            });
        });
    }
    g.finish();
}

fn deploy_cached(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path()).expect("store");
    let rt = runtime(true);
    let wasm = programs::wasm("counter");
    rt.compile(&wasm).expect("warm the cache");
    let ex = executor();
    let mut n = 0u64;
    c.bench_function("deploy_cached", |b| {
        b.iter(|| {
            n += 1;
            let compiled = rt.compile(&wasm).expect("cached");
            let e = env(&store, &format!("d{}", n % 64));
            let mut inst = match ex.block_on(rt.instantiate(&compiled, e)) {
                Ok(i) => i,
                Err((err, _)) => panic!("{err}"),
            };
            let call = ex.block_on(inst.init(&[]));
            assert!(matches!(call.result, Ok(Ok(()))));
            black_box(inst);
        });
    });
}

/// Appends a custom section (id 0) named `bench` holding `n`: a different, still valid component.
fn with_custom_section(wasm: &[u8], n: u64) -> Vec<u8> {
    let mut payload = vec![5u8];
    payload.extend_from_slice(b"bench");
    payload.extend_from_slice(&n.to_le_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    out.push(u8::try_from(payload.len()).expect("small"));
    out.extend_from_slice(&payload);
    out
}

fn first_compile(c: &mut Criterion) {
    let rt = runtime(true);
    let wasm = programs::wasm("counter");
    let mut n = 0u64;
    let mut g = c.benchmark_group("first_compile");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function(format!("counter_{}KB", wasm.len() / 1000), |b| {
        b.iter(|| {
            n += 1;
            let compiled = rt.compile(&with_custom_section(&wasm, n)).expect("compile");
            assert!(!compiled.cached);
            black_box(compiled);
        });
    });
    g.finish();
}

fn guards(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path()).expect("store");
    let payload = 1_000_000u64.to_le_bytes();
    let ex = executor();
    let mut g = c.benchmark_group("guards");
    g.sample_size(30);
    for (label, guarded) in [("fuel_and_epoch", true), ("none", false)] {
        let rt = runtime(guarded);
        let compiled = rt.compile(&programs::wasm("compute")).expect("compile");
        let mut inst = match ex.block_on(rt.instantiate(&compiled, env(&store, label))) {
            Ok(i) => i,
            Err((err, _)) => panic!("{err}"),
        };
        assert!(matches!(ex.block_on(inst.init(&[])).result, Ok(Ok(()))));
        g.bench_function(label, |b| {
            b.iter(|| {
                let call = ex.block_on(inst.message("bench", &payload));
                assert!(call.result.is_ok(), "{:?}", call.result);
            });
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    instantiate_call,
    deploy_cached,
    first_compile,
    guards
);
criterion_main!(benches);
