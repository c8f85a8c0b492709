//! One thread per running deployment: it owns the wasm instance, ticks it on its timer, and
//! restarts it after a fault with exponential backoff.
//!
//! A deployment's calls run on its own OS thread, so a plugin that spins until its deadline
//! only ever delays itself; the epoch deadline bounds every call. The thread reports through
//! shared [`Counters`] (read by `ps`), the [`Meter`] (read by the receipts) and, when it gives
//! up, an event to the supervisor, which records the failure durably.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc as tmpsc, oneshot};

use super::deployment::{Counters, State};
use super::runtime::{Call, Compiled, Env, Fault, Instance, LeaseInfo, Runtime};
use crate::lease::Meter;
use crate::resources::LeaseId;
use crate::resources::now_ms;

/// What a worker is told.
#[derive(Debug)]
pub enum WorkerCmd {
    Stop,
    /// Swap the code (and configuration), keep the key-value store; answered after the new
    /// code's first start.
    Upgrade {
        compiled: Box<Compiled>,
        info: LeaseInfo,
        config: Vec<(String, String)>,
        started: oneshot::Sender<Started>,
    },
    Message {
        from: String,
        payload: Vec<u8>,
    },
}

/// How a (re)start went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Running,
    /// A fault; it will be retried after a backoff.
    Retrying(String),
    Failed(String),
}

/// What a worker tells the supervisor. `serial` tells apart the successive workers of one
/// deployment.
#[derive(Debug)]
pub enum WorkerEvent {
    /// It gave up: too many failures in a row, or `init` returned an error.
    Failed {
        id: String,
        serial: u64,
        reason: String,
    },
    /// Its thread is about to end (after a stop, or when the supervisor is gone).
    Exited { id: String, serial: u64 },
}

/// Serial numbers of workers, unique in this process.
static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// State shared between a worker and whoever shows it.
#[derive(Debug, Clone)]
pub struct Shared {
    inner: Arc<Mutex<(State, Option<String>, Counters)>>,
}

impl Shared {
    fn new(quota: u64) -> Self {
        let counters = Counters {
            kv_quota: quota,
            ..Default::default()
        };
        Self {
            inner: Arc::new(Mutex::new((State::Starting, None, counters))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (State, Option<String>, Counters)> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// State, reason and counters now.
    pub fn snapshot(&self) -> (State, Option<String>, Counters) {
        self.lock().clone()
    }

    fn set_state(&self, state: State, reason: Option<String>) {
        let mut g = self.lock();
        g.0 = state;
        g.1 = reason;
    }

    fn update(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.lock().2);
    }
}

/// The supervisor's side of a worker.
#[derive(Debug)]
pub struct Worker {
    tx: Sender<WorkerCmd>,
    pub shared: Shared,
    /// Unique in this process; carried by the worker's events.
    pub serial: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    pub fn send(&self, cmd: WorkerCmd) -> bool {
        self.tx.send(cmd).is_ok()
    }

    /// Tells the thread to stop and lets it go without waiting: its end is reported as
    /// [`WorkerEvent::Exited`]. What the supervisor does; it never waits on a plugin.
    pub fn retire(mut self) {
        let _ = self.tx.send(WorkerCmd::Stop);
        drop(self.thread.take());
    }

    /// Stops the thread and waits for it to end (at most one call's deadline plus a little).
    /// For callers that may block: `plugin run`, tests.
    pub fn stop(mut self) {
        let _ = self.tx.send(WorkerCmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Everything a worker starts with.
#[allow(missing_debug_implementations)]
pub struct Spec {
    pub id: String,
    pub lease: LeaseId,
    pub runtime: Arc<Runtime>,
    pub compiled: Compiled,
    pub env: Env,
    pub config: Vec<(String, String)>,
    pub meter: Meter,
    pub events: tmpsc::UnboundedSender<WorkerEvent>,
}

/// Starts a worker thread; `started` is answered after the first start.
pub fn spawn(spec: Spec, started: oneshot::Sender<Started>) -> std::io::Result<Worker> {
    let (tx, rx) = std::sync::mpsc::channel();
    let shared = Shared::new(spec.env.kv.quota());
    let thread_shared = shared.clone();
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let thread = std::thread::Builder::new()
        .name(format!("plugin-{}", &spec.id[..8.min(spec.id.len())]))
        .spawn(move || Loop::new(spec, serial, thread_shared, rx).run(started))?;
    Ok(Worker {
        tx,
        shared,
        serial,
        thread: Some(thread),
    })
}

struct Loop {
    id: String,
    serial: u64,
    lease: LeaseId,
    runtime: Arc<Runtime>,
    compiled: Compiled,
    config: Vec<(String, String)>,
    meter: Meter,
    events: tmpsc::UnboundedSender<WorkerEvent>,
    shared: Shared,
    rx: Receiver<WorkerCmd>,
    env: Option<Env>,
    instance: Option<Instance>,
    failures: u32,
    failed: bool,
    next_start: Instant,
    next_tick: Instant,
}

impl Loop {
    fn new(spec: Spec, serial: u64, shared: Shared, rx: Receiver<WorkerCmd>) -> Self {
        let now = Instant::now();
        Self {
            id: spec.id,
            serial,
            lease: spec.lease,
            runtime: spec.runtime,
            compiled: spec.compiled,
            config: spec.config,
            meter: spec.meter,
            events: spec.events,
            shared,
            rx,
            env: Some(spec.env),
            instance: None,
            failures: 0,
            failed: false,
            next_start: now,
            next_tick: now,
        }
    }

    fn logs(&self) -> Option<&super::logs::Logs> {
        self.env.as_ref().map(|e| &e.logs)
    }

    fn host_log(&self, level: &str, msg: String) {
        if let Some(l) = self.logs() {
            l.host(level, msg);
        } else if let Some(i) = &self.instance {
            i.host_log(level, msg);
        }
    }

    fn run(mut self, started: oneshot::Sender<Started>) {
        let first = self.start();
        let _ = started.send(first);
        loop {
            let now = Instant::now();
            let wait = if self.failed {
                Duration::from_secs(3600)
            } else if self.instance.is_some() {
                self.next_tick.saturating_duration_since(now)
            } else {
                self.next_start.saturating_duration_since(now)
            };
            match self.rx.recv_timeout(wait) {
                Ok(WorkerCmd::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(WorkerCmd::Upgrade {
                    compiled,
                    info,
                    config,
                    started,
                }) => {
                    self.retire();
                    if let Some(env) = self.env.as_mut() {
                        env.kv.set_quota(info.slice.disk_bytes);
                        env.info = info;
                    }
                    self.compiled = *compiled;
                    self.config = config;
                    self.failures = 0;
                    self.failed = false;
                    self.host_log("info", "upgrading: new code, same key-value store".into());
                    let outcome = self.start();
                    let _ = started.send(outcome);
                }
                Ok(WorkerCmd::Message { from, payload }) => {
                    if let Some(inst) = self.instance.as_mut() {
                        let call = inst.message(&from, &payload);
                        self.after_call(call, "message");
                    } else {
                        self.host_log(
                            "warn",
                            format!("a message from {from} was dropped: the plugin is not running"),
                        );
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.failed {
                        continue;
                    }
                    if self.instance.is_none() {
                        if Instant::now() >= self.next_start {
                            self.start();
                        }
                    } else if Instant::now() >= self.next_tick {
                        self.tick();
                    }
                }
            }
        }
        self.retire();
        self.shared.set_state(State::Stopped, None);
        // The environment (and its key-value tree handle) is released before this is read.
        drop(self.env.take());
        let _ = self.events.send(WorkerEvent::Exited {
            id: self.id.clone(),
            serial: self.serial,
        });
    }

    /// Drops the instance, keeping its environment for the next one.
    fn retire(&mut self) {
        if let Some(inst) = self.instance.take() {
            self.env = Some(inst.into_env());
        }
    }

    fn start(&mut self) -> Started {
        self.retire();
        let Some(env) = self.env.take() else {
            return Started::Failed("internal: no environment".into());
        };
        self.shared.set_state(State::Starting, None);
        self.shared.update(|c| c.starts += 1);
        let mut inst = match self.runtime.instantiate(&self.compiled, env) {
            Ok(i) => i,
            Err((e, env)) => {
                // Out of instance slots, or the component's start trapped: retried.
                self.env = Some(*env);
                return self.fault(&Fault::Trap(e.to_string()), "start");
            }
        };
        let call = inst.init(&self.config);
        self.instance = Some(inst);
        match call.result {
            Ok(Ok(())) => {
                self.meter_call(call.fuel);
                self.shared.set_state(State::Running, None);
                self.host_log(
                    "info",
                    format!("started ({} µs init)", call.elapsed.as_micros()),
                );
                self.next_tick = Instant::now() + self.runtime.limits().tick_interval;
                Started::Running
            }
            Ok(Err(msg)) => {
                self.meter_call(call.fuel);
                self.retire();
                self.host_log("error", format!("init returned an error: {msg}"));
                self.give_up(format!("init returned an error: {msg}"))
            }
            Err(fault) => {
                self.meter_call(call.fuel);
                self.fault(&fault, "init")
            }
        }
    }

    fn tick(&mut self) {
        let interval = self.runtime.limits().tick_interval;
        let Some(inst) = self.instance.as_mut() else {
            return;
        };
        let call = inst.tick(now_ms());
        // Missed ticks are skipped, not queued.
        let now = Instant::now();
        self.next_tick += interval;
        if self.next_tick < now {
            self.next_tick = now + interval;
        }
        let elapsed = call.elapsed;
        if self.after_call(call, "tick") {
            self.failures = 0;
            self.shared.update(|c| {
                c.ticks += 1;
                c.consecutive_failures = 0;
                c.last_tick_ms = Some(now_ms());
                c.max_tick_us = c.max_tick_us.max(elapsed.as_micros() as u64);
            });
        }
    }

    fn meter_call(&self, fuel: u64) {
        let (mem, kv) = self
            .instance
            .as_ref()
            .map_or((0, 0), |i| (i.peak_memory(), i.kv_bytes()));
        self.meter.record(self.lease, &self.id, fuel, mem, kv);
        let dropped = self.instance.as_ref().map_or(0, Instance::logs_dropped);
        self.shared.update(|c| {
            c.fuel = c.fuel.saturating_add(fuel);
            c.peak_mem_bytes = c.peak_mem_bytes.max(mem);
            c.kv_bytes = kv;
            c.logs_dropped = dropped;
        });
    }

    /// Meters a call and handles its fault; whether it succeeded.
    fn after_call(&mut self, call: Call<()>, what: &str) -> bool {
        self.meter_call(call.fuel);
        match call.result {
            Ok(()) => true,
            Err(fault) => {
                self.fault(&fault, what);
                false
            }
        }
    }

    fn fault(&mut self, fault: &Fault, what: &str) -> Started {
        self.retire();
        self.failures += 1;
        let deadline = matches!(fault, Fault::Deadline(_));
        let failures = self.failures;
        self.shared.update(|c| {
            if deadline {
                c.interrupts += 1;
            } else {
                c.traps += 1;
            }
            c.consecutive_failures = failures;
        });
        let limits = self.runtime.limits();
        if self.failures >= limits.max_failures {
            let reason = format!(
                "{} consecutive failures; last in {what}: {fault}",
                self.failures
            );
            self.host_log("error", format!("{what}: {fault}; giving up"));
            return self.give_up(reason);
        }
        let factor = 1u32 << (self.failures - 1).min(16);
        let backoff = limits
            .backoff
            .saturating_mul(factor)
            .min(limits.max_backoff);
        self.next_start = Instant::now() + backoff;
        self.host_log(
            "warn",
            format!("{what}: {fault}; restarting in {} ms", backoff.as_millis()),
        );
        self.shared
            .set_state(State::Backoff, Some(format!("{what}: {fault}")));
        Started::Retrying(format!("{what}: {fault}"))
    }

    fn give_up(&mut self, reason: String) -> Started {
        self.failed = true;
        self.shared.set_state(State::Failed, Some(reason.clone()));
        let _ = self.events.send(WorkerEvent::Failed {
            id: self.id.clone(),
            serial: self.serial,
            reason: reason.clone(),
        });
        Started::Failed(reason)
    }
}
