//! The sandbox against the hostile plugins of `wasm-plugins/hostile`, in one process: each runs
//! in its own worker next to a well-behaved `counter`, exactly as deployments run on a host.
//! Every hostile one must end in the state it should, for the reason it should, while the
//! counter keeps ticking and nothing escapes (no file, no socket, no KV past the quota).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod programs;

use programs::Now as _;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use degroup_node::lease::Meter;
use degroup_node::plugin::config::Limits;
use degroup_node::plugin::deployment::State;
use degroup_node::plugin::kv::Kv;
use degroup_node::plugin::logs::Logs;
use degroup_node::plugin::package::{Package, PackageError};
use degroup_node::plugin::runtime::{Compiler, Env, Fault, LeaseInfo, Runtime};
use degroup_node::plugin::worker::{self, Spec, Started, Worker, WorkerEvent};
use degroup_node::resources::Resources;
use degroup_node::store::Store;

const MIB: u64 = 1 << 20;

fn limits() -> Limits {
    Limits {
        tick_interval: Duration::from_millis(50),
        // Generous: the machine running the tests is shared; the hostile ones that must hit it
        // (loop-forever, poll-block) never return at all.
        call_timeout: Duration::from_millis(500),
        init_timeout: Duration::from_secs(2),
        max_failures: 3,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_deployments: 32,
        ..Limits::default()
    }
}

fn info(id: &str, mem: u64, disk: u64) -> LeaseInfo {
    LeaseInfo {
        lease_id: "11".repeat(16),
        deployment_id: id.to_owned(),
        host: "host".into(),
        tenant: "tenant".into(),
        slice: Resources {
            cpu_millis: 1000,
            mem_bytes: mem,
            disk_bytes: disk,
            gpus: 0,
        },
        starts_at: 0,
        ends_at: u64::MAX,
        package_name: id.to_owned(),
        package_version: "0.1.0".into(),
    }
}

struct Deployed {
    worker: Worker,
    logs: Logs,
    first: Started,
}

fn deploy(
    runtime: &Arc<Runtime>,
    store: &Store,
    meter: &Meter,
    events: &tokio::sync::mpsc::UnboundedSender<WorkerEvent>,
    name: &str,
    disk: u64,
) -> Deployed {
    let compiled = runtime
        .compile(&programs::wasm(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let logs = Logs::new(1000, runtime.limits().log_rate);
    let env = Env {
        info: info(name, 64 * MIB, disk),
        kv: Kv::open(store, name, disk).unwrap(),
        logs: logs.clone(),
        control: degroup_node::plugin::control::Control::detached(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let worker = worker::spawn(
        Spec {
            id: name.to_owned(),
            lease: [0x11; 16],
            runtime: runtime.clone(),
            compiled,
            env,
            config: Vec::new(),
            meter: meter.clone(),
            events: events.clone(),
        },
        tx,
    )
    .unwrap();
    let first = rx.blocking_recv().unwrap();
    Deployed {
        worker,
        logs,
        first,
    }
}

fn text(logs: &Logs) -> String {
    logs.read(0, 10_000)
        .lines
        .iter()
        .map(|l| format!("{} {} {}\n", l.source, l.level, l.message))
        .collect()
}

/// What each hostile plugin must end as: its state, and words its reason or logs must contain.
fn expectations() -> Vec<(&'static str, State, &'static str)> {
    vec![
        ("loop-forever", State::Failed, "deadline"),
        ("memory-bomb", State::Failed, "memory"),
        ("table-bomb", State::Failed, "tick"),
        ("deep-recursion", State::Failed, "stack"),
        ("init-trap", State::Failed, "init"),
        ("tick-trap", State::Failed, "tick"),
        ("kv-huge-value", State::Running, "refused"),
        ("kv-flood", State::Running, "quota reached"),
        ("file-open", State::Running, "file access denied"),
        ("socket", State::Running, "network denied"),
        // Found by a hostile tester: a wait inside a host call, a capped table of WASI
        // handles, a random call too big to fill in time, a 16 MiB init error, a trap every
        // other tick, host calls with 8 MiB keys, and rewriting large values without end.
        ("poll-block", State::Failed, "deadline"),
        ("handle-flood", State::Failed, "tick"),
        ("random-huge", State::Failed, "tick"),
        ("init-error-huge", State::Failed, "init returned an error"),
        ("flaky-tick", State::Failed, "failures within"),
        ("kv-huge-key", State::Running, "huge keys refused"),
        ("kv-rewrite", State::Running, "stored"),
    ]
}

#[test]
fn hostile_plugins_are_contained_while_a_neighbour_keeps_ticking() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let runtime = Runtime::new(
        limits(),
        Some(tmp.path().join("cache")),
        Compiler::InProcess,
    )
    .unwrap();
    let meter = Meter::default();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();

    let counter = deploy(&runtime, &store, &meter, &events_tx, "counter", MIB);
    assert_eq!(counter.first, Started::Running, "{}", text(&counter.logs));

    let mut hostile: HashMap<&str, Deployed> = HashMap::new();
    for (name, _, _) in expectations() {
        let disk = if name == "kv-rewrite" { 4 * MIB } else { MIB };
        hostile.insert(
            name,
            deploy(&runtime, &store, &meter, &events_tx, name, disk),
        );
    }
    let flood = deploy(&runtime, &store, &meter, &events_tx, "log-flood", MIB);

    // Watch the counter while the hostile ones misbehave, until every one that must fail has.
    let must_fail = expectations()
        .iter()
        .filter(|(_, s, _)| *s == State::Failed)
        .count();
    let started = Instant::now();
    let mut failed = HashMap::new();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(60) {
        while let Ok(WorkerEvent::Failed { id, reason, .. }) = events.try_recv() {
            failed.insert(id, reason);
        }
        samples.push(counter.worker.shared.snapshot().2.ticks);
        if failed.len() >= must_fail && started.elapsed() > Duration::from_secs(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // The neighbour never stopped: its ticks went up across the whole run, and it never faulted.
    let (state, reason, c) = counter.worker.shared.snapshot();
    assert_eq!(state, State::Running, "counter: {reason:?}");
    assert_eq!(c.traps + c.interrupts, 0, "{}", text(&counter.logs));
    let quarter = samples.len() / 4;
    assert!(
        samples[samples.len() - 1] > samples[3 * quarter] && samples[quarter] > samples[0],
        "the counter kept ticking throughout: {samples:?}"
    );
    assert!(text(&counter.logs).contains("count = "));

    for (name, want, needle) in expectations() {
        let d = &hostile[name];
        let (state, reason, c) = d.worker.shared.snapshot();
        let logs = text(&d.logs);
        assert_eq!(state, want, "{name}: reason {reason:?}\n{logs}");
        assert!(!logs.contains("ESCAPED"), "{name} escaped:\n{logs}");
        let said = format!("{} {}", reason.clone().unwrap_or_default(), logs).to_lowercase();
        assert!(
            said.contains(needle),
            "{name}: expected {needle:?} in its reason or logs; reason {reason:?}\n{logs}"
        );
        if want == State::Failed {
            assert_eq!(failed.get(name), reason.as_ref(), "{name}: supervisor told");
            assert!(
                c.traps + c.interrupts >= 1 || name == "init-trap" || name == "init-error-huge",
                "{name}: {c:?}"
            );
        }
        match name {
            "loop-forever" => assert!(c.interrupts >= 3, "{c:?}"),
            "memory-bomb" => assert!(c.peak_mem_bytes <= 64 * MIB, "{c:?}"),
            "kv-flood" | "kv-huge-value" => {
                assert!(c.kv_bytes <= MIB, "{name} stored {} bytes", c.kv_bytes);
            }
            "kv-rewrite" => {
                assert!(c.kv_bytes <= 4 * MIB, "{name} stored {} bytes", c.kv_bytes);
            }
            "init-error-huge" => {
                let len = reason.as_ref().map_or(0, String::len);
                assert!(len <= 8192, "the init error is capped: {len} bytes kept");
            }
            "kv-huge-key" => assert_eq!(c.interrupts + c.traps, 0, "{c:?}\n{logs}"),
            "poll-block" => assert!(c.interrupts >= 1, "{c:?}"),
            _ => {}
        }
    }
    assert!(
        matches!(hostile["init-trap"].first, Started::Retrying(_)),
        "{:?}",
        hostile["init-trap"].first
    );

    // The log flood is rate limited: the ring stays bounded, and the drop is counted.
    let (state, reason, c) = flood.worker.shared.snapshot();
    assert!(
        c.logs_dropped > 0,
        "log flood not limited: {state:?} {reason:?} {c:?}"
    );
    assert!(flood.logs.read(0, 100_000).lines.len() <= 1000);

    // Metering saw every deployment of the lease.
    let usage = meter.take(&[0x11; 16]);
    assert!(usage.fuel > 0 && usage.peak_mem_bytes > 0, "{usage:?}");

    for (_, d) in hostile {
        d.worker.stop();
    }
    flood.worker.stop();
    counter.worker.stop();
}

#[test]
fn state_survives_restarts_and_quota_errors_are_results() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let runtime = Runtime::new(limits(), None, Compiler::InProcess).unwrap();
    let compiled = runtime.compile(&programs::wasm("counter")).unwrap();
    let logs = Logs::new(1000, 1000);
    let mut env = Env {
        info: info("c", 64 * MIB, MIB),
        kv: Kv::open(&store, "c", MIB).unwrap(),
        logs: logs.clone(),
        control: degroup_node::plugin::control::Control::detached(),
    };
    for round in 0..3u64 {
        let mut inst = runtime
            .instantiate(&compiled, env)
            .now()
            .map_err(|e| e.0)
            .unwrap();
        assert_eq!(inst.init(&[]).now().result, Ok(Ok(())));
        for _ in 0..4 {
            let call = inst.tick(1).now();
            assert_eq!(call.result, Ok(()));
            assert!(call.fuel > 0);
        }
        assert!(
            text(&logs).contains(&format!("counter starts at {}", round * 4)),
            "{}",
            text(&logs)
        );
        env = inst.into_env();
    }
    // A store reopened from disk (a node restart) still has the count.
    drop(env);
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    let kv = Kv::open(&store, "c", MIB).unwrap();
    assert!(kv.get("count").unwrap().is_some());

    // A quota too small for one value: the plugin sees an error result, not a trap.
    let compiled = runtime.compile(&programs::wasm("kv-huge-value")).unwrap();
    let logs = Logs::new(1000, 1000);
    let env = Env {
        info: info("h", 64 * MIB, 4096),
        kv: Kv::open(&store, "h", 4096).unwrap(),
        logs: logs.clone(),
        control: degroup_node::plugin::control::Control::detached(),
    };
    let mut inst = runtime
        .instantiate(&compiled, env)
        .now()
        .map_err(|e| e.0)
        .unwrap();
    assert_eq!(inst.init(&[]).now().result, Ok(Ok(())));
    assert_eq!(inst.tick(1).now().result, Ok(()));
    assert!(text(&logs).contains("refused"), "{}", text(&logs));
    assert_eq!(inst.kv_bytes(), 0);
}

#[test]
fn a_stop_cancels_a_call_blocked_in_a_host_call() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    // A call deadline far longer than the test: only the stop can end the wait.
    let runtime = Runtime::new(
        Limits {
            call_timeout: Duration::from_secs(600),
            ..limits()
        },
        None,
        Compiler::InProcess,
    )
    .unwrap();
    let meter = Meter::default();
    let (events_tx, _events) = tokio::sync::mpsc::unbounded_channel();
    let d = deploy(&runtime, &store, &meter, &events_tx, "poll-block", MIB);
    assert_eq!(d.first, Started::Running, "{}", text(&d.logs));
    let waiting = Instant::now();
    while !text(&d.logs).contains("waiting an hour") {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "{}",
            text(&d.logs)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // `stop` joins the thread: it returns only once the wait was cancelled.
    let stopping = Instant::now();
    d.worker.stop();
    eprintln!(
        "stopped a worker blocked in wasi:io/poll in {:?}",
        stopping.elapsed()
    );
}

#[test]
fn a_component_holding_many_core_instances_is_refused_before_it_takes_a_slot() {
    let runtime = Runtime::new(limits(), None, Compiler::InProcess).unwrap();
    let err = runtime
        .compile(&programs::wasm("pool-hog"))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("core module instances"), "{err}");
    // Every slot is still free: as many counters as the host admits all start.
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let compiled = runtime.compile(&programs::wasm("counter")).unwrap();
    let mut live = Vec::new();
    for i in 0..runtime.limits().max_deployments {
        let env = Env {
            info: info(&format!("c{i}"), 64 * MIB, MIB),
            kv: Kv::open(&store, &format!("c{i}"), MIB).unwrap(),
            logs: Logs::new(100, 100),
            control: degroup_node::plugin::control::Control::detached(),
        };
        live.push(
            runtime
                .instantiate(&compiled, env)
                .now()
                .map_err(|e| e.0)
                .unwrap(),
        );
    }
}

/// A tick that spins in wasm (`loop-forever`) and one that waits in a host call
/// (`poll-block`, in `wasi:io/poll`) both end at their deadline.
#[test]
fn spinning_and_waiting_calls_end_at_their_deadline() {
    let runtime = Runtime::new(limits(), None, Compiler::InProcess).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for name in ["loop-forever", "poll-block"] {
        let compiled = runtime.compile(&programs::wasm(name)).unwrap();
        let env = Env {
            info: info(name, 64 * MIB, MIB),
            kv: Kv::open(&store, name, MIB).unwrap(),
            logs: Logs::new(100, 100),
            control: degroup_node::plugin::control::Control::detached(),
        };
        let mut inst = runtime
            .instantiate(&compiled, env)
            .now()
            .map_err(|e| e.0)
            .unwrap();
        assert_eq!(inst.init(&[]).now().result, Ok(Ok(())), "{name}");
        let call = inst.tick(1).now();
        assert!(
            matches!(call.result, Err(Fault::Deadline(_))),
            "{name}: {:?}",
            call.result
        );
        assert!(
            !inst.is_live(),
            "{name}: a trapped instance is not entered again"
        );
    }
}

#[test]
fn an_oversized_package_is_refused_under_a_hosts_cap() {
    let big = programs::wasm("oversized");
    assert!(big.len() > 8 * 1024 * 1024, "{} bytes", big.len());
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    // Under the 64 MiB ceiling it packs; a host whose `[blobs] max_package` is 8 MiB refuses
    // it before parsing anything.
    let packed = Package::pack(&key, big.clone(), "oversized", "0.1.0", Vec::new(), 1).unwrap();
    let opened = Package::open_capped(&packed.to_bytes(), 8 * 1024 * 1024);
    assert!(
        matches!(opened, Err(PackageError::TooLarge { .. })),
        "{opened:?}"
    );
    let mut huge = big.clone();
    huge.resize(degroup_node::plugin::package::MAX_COMPONENT + 1, 0);
    assert!(matches!(
        Package::pack(&key, huge, "oversized", "0.1.0", Vec::new(), 1),
        Err(PackageError::TooLarge { .. })
    ));
    // A package built by hand around it is refused before anything is parsed.
    let small = Package::pack(
        &key,
        programs::wasm("hello"),
        "hello",
        "0.1.0",
        Vec::new(),
        1,
    )
    .unwrap();
    let forged = Package::from_parts(small.manifest_bytes, big);
    assert!(forged.is_err());
}

/// A component built against `degroup:plugin@0.1.0` (the SDK before `mesh` and `workload`;
/// `tests/fixtures/counter-wit-0.1.0.wasm` is the `counter` guest of that time) still links and
/// runs on a host of 0.1.1, and the `counter` built now imports 0.1.1.
#[test]
fn components_of_the_previous_minor_version_still_run() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let runtime = Runtime::new(limits(), None, Compiler::InProcess).unwrap();
    let old = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/counter-wit-0.1.0.wasm"),
    )
    .unwrap();
    let engine = wasmtime::Engine::default();
    let imports = |wasm: &[u8]| -> Vec<String> {
        let c = wasmtime::component::Component::new(&engine, wasm).unwrap();
        c.component_type()
            .imports(&engine)
            .map(|(name, _)| name.to_owned())
            .filter(|n| n.starts_with("degroup:"))
            .collect()
    };
    let old_imports = imports(&old);
    assert!(
        old_imports.iter().all(|n| n.ends_with("@0.1.0")) && !old_imports.is_empty(),
        "{old_imports:?}"
    );
    let new_imports = imports(&programs::wasm("counter"));
    assert!(
        new_imports.iter().all(|n| n.ends_with("@0.1.1")) && !new_imports.is_empty(),
        "{new_imports:?}"
    );
    let compiled = runtime.compile(&old).unwrap();
    let logs = Logs::new(1000, 1000);
    let env = Env {
        info: info("old", 64 * MIB, MIB),
        kv: Kv::open(&store, "old", MIB).unwrap(),
        logs: logs.clone(),
        control: degroup_node::plugin::control::Control::detached(),
    };
    let mut inst = runtime
        .instantiate(&compiled, env)
        .now()
        .map_err(|e| e.0)
        .unwrap();
    assert_eq!(inst.init(&[]).now().result, Ok(Ok(())));
    for _ in 0..3 {
        assert_eq!(inst.tick(1).now().result, Ok(()));
    }
    assert!(text(&logs).contains("count = 3"), "{}", text(&logs));
}
