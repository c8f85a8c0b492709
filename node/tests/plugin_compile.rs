//! Compiling a tenant's component through the real child process (`degroup __compile`): a
//! normal component compiles there and loads in the node's pooling engine; a compile bomb is
//! stopped at its CPU bound, or its memory bound, with a clear message and its CPU counted;
//! the caches hit without charging anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod programs;

use programs::Now as _;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use degroup_node::plugin::config::Limits;
use degroup_node::plugin::kv::Kv;
use degroup_node::plugin::logs::Logs;
use degroup_node::plugin::runtime::{Compiler, Env, LeaseInfo, Runtime, SandboxError};
use degroup_node::resources::Resources;
use degroup_node::store::Store;

fn child() -> Compiler {
    Compiler::Child(PathBuf::from(env!("CARGO_BIN_EXE_degroup")))
}

fn limits(cpu_s: u64, memory: u64) -> Limits {
    Limits {
        max_deployments: 4,
        compile_cpu: Duration::from_secs(cpu_s),
        compile_memory: memory,
        compile_timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

fn env(store: &Store, id: &str) -> Env {
    Env {
        info: LeaseInfo {
            lease_id: "11".repeat(16),
            deployment_id: id.to_owned(),
            host: "host".into(),
            tenant: "tenant".into(),
            slice: Resources {
                cpu_millis: 1000,
                mem_bytes: 64 << 20,
                disk_bytes: 1 << 20,
                gpus: 0,
            },
            starts_at: 0,
            ends_at: u64::MAX,
            package_name: id.to_owned(),
            package_version: "0.1.0".into(),
        },
        kv: Kv::open(store, id, 1 << 20).unwrap(),
        logs: Logs::new(100, 100),
        control: degroup_node::plugin::control::Control::detached(),
    }
}

fn compile_err(runtime: &Arc<Runtime>, wasm: &[u8]) -> (String, Duration, Duration) {
    let started = Instant::now();
    let m = runtime.compile_metered(wasm);
    let wall = started.elapsed();
    match m.result {
        Err(e @ SandboxError::Compile(_)) => (e.to_string(), m.cpu, wall),
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn a_component_compiled_in_the_child_runs_in_the_pooling_engine_and_caches_hit_free() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let cache = tmp.path().join("cache");
    let runtime = Runtime::new(limits(10, 1 << 30), Some(cache.clone()), child()).unwrap();
    for name in ["hello", "counter", "compute", "scheduler"] {
        let started = Instant::now();
        let m = runtime.compile_metered(&programs::wasm(name));
        let c = m.result.unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!(
            "{name}: compiled in the child, {} ms CPU, {} ms wall",
            m.cpu.as_millis(),
            started.elapsed().as_millis()
        );
        assert!(!c.cached && m.cpu > Duration::ZERO, "{name}");
    }
    // The child's artifact loads in the pooling engine, and runs.
    let compiled = runtime.compile(&programs::wasm("counter")).unwrap();
    assert!(compiled.cached, "memory cache hit");
    let mut inst = runtime
        .instantiate(&compiled, env(&store, "c"))
        .now()
        .map_err(|e| e.0)
        .unwrap();
    assert_eq!(inst.init(&[]).now().result, Ok(Ok(())));
    assert_eq!(inst.tick(1).now().result, Ok(()));
    let (memory, disk) = runtime.cache_bytes();
    assert!(memory > 0 && disk >= memory, "{memory} {disk}");

    // A new runtime over the same cache: a disk hit, charged nothing.
    drop(inst);
    drop(runtime);
    let runtime = Runtime::new(limits(10, 1 << 30), Some(cache), child()).unwrap();
    let m = runtime.compile_metered(&programs::wasm("counter"));
    assert!(m.result.unwrap().cached);
    assert_eq!(m.cpu, Duration::ZERO);

    // Not a component: refused as such.
    let (msg, _, _) = compile_err(&runtime, b"\0asm nonsense");
    assert!(msg.contains("not a valid plugin component"), "{msg}");
}

#[test]
fn a_compile_bomb_is_stopped_at_its_cpu_bound_and_others_still_compile() {
    let bomb = programs::wasm("compile-bomb");
    assert!(
        bomb.len() < 64 * 1024,
        "a small package: {} bytes",
        bomb.len()
    );
    let runtime = Runtime::new(limits(1, 1 << 30), None, child()).unwrap();
    let (msg, cpu, wall) = compile_err(&runtime, &bomb);
    eprintln!(
        "compile bomb ({} bytes): {msg}; {} ms CPU, {} ms wall",
        bomb.len(),
        cpu.as_millis(),
        wall.as_millis()
    );
    assert!(
        msg.contains("compilation exceeded its CPU bound of 1 s"),
        "{msg}"
    );
    assert!(
        cpu >= Duration::from_millis(900),
        "its CPU is counted: {cpu:?}"
    );
    assert!(
        cpu < Duration::from_secs(3),
        "stopped at the bound: {cpu:?}"
    );
    assert!(wall < Duration::from_secs(30), "{wall:?}");
    // The same runtime goes on compiling well-behaved components.
    let m = runtime.compile_metered(&programs::wasm("hello"));
    assert!(m.result.is_ok());
}

#[test]
fn a_compile_bomb_is_stopped_at_its_memory_bound() {
    let bomb = programs::wasm("compile-bomb");
    // Room for the (debug) binary and a normal compile, not for the bomb.
    let runtime = Runtime::new(limits(60, 320 << 20), None, child()).unwrap();
    let (msg, cpu, wall) = compile_err(&runtime, &bomb);
    eprintln!(
        "compile bomb under 320MiB: {msg}; {} ms CPU, {} ms wall",
        cpu.as_millis(),
        wall.as_millis()
    );
    assert!(
        msg.contains("compilation exceeded its memory bound of 320MiB"),
        "{msg}"
    );
    assert!(runtime.compile(&programs::wasm("hello")).is_ok());
}

#[test]
fn a_slow_compile_is_killed_at_its_wall_clock_bound() {
    let bomb = programs::wasm("compile-bomb");
    let runtime = Runtime::new(
        Limits {
            compile_timeout: Duration::from_millis(300),
            ..limits(60, 1 << 30)
        },
        None,
        child(),
    )
    .unwrap();
    let (msg, _, wall) = compile_err(&runtime, &bomb);
    assert!(msg.contains("time bound"), "{msg}");
    assert!(wall < Duration::from_secs(5), "{wall:?}");
}
