//! One thread per running deployment: it owns the wasm instance, ticks it on its timer, and
//! restarts it after a fault with exponential backoff.
//!
//! A deployment's calls run on its own OS thread, with its own single-threaded tokio executor,
//! so a plugin that spins or waits until its deadline only ever delays itself. Every call is a
//! future under a timeout (see `Instance::call`): the deadline holds inside host calls too, and
//! a stop cancels the call in flight at once. The thread reports through shared [`Counters`]
//! (read by `ps`), the [`Meter`] (read by the receipts) and, when it gives up, an event to the
//! supervisor, which records the failure durably. The supervisor never waits for the thread:
//! it tells it to stop and lets it go, and its watchdog abandons a thread whose call has not
//! returned long past its deadline ([`Shared::overdue`]).
//!
//! A component that only serves HTTP (it exports `wasi:http/incoming-handler` but not `init`,
//! `tick` and `message`) has no instance here: its worker marks it running, drops its messages
//! with a log line and waits for a stop or an upgrade; its requests are served by
//! [`super::http::HttpService`].
//!
//! A child workload's worker also holds a fuel rate ([`Spec::fuel_per_second`]): a token
//! bucket refilled at that rate, holding at most one second of it. Each call may burn at most
//! what the bucket holds (a call that needs more runs out of fuel: a fault, as for any
//! deployment); when the bucket is empty, ticks are skipped and messages dropped (with a
//! host log line) until it refills.
//!
//! Queues are bounded: messages wait in a queue of [`MESSAGE_QUEUE`] (a full one refuses the
//! sender), upgrades in one of [`CONTROL_QUEUE`]. Failures are counted over a sliding window
//! (`plugin.failure_window`), so a plugin that traps every other tick still ends `failed`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc as tmpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::deployment::{Counters, State};
use super::runtime::{Call, Compiled, Env, Fault, Instance, LeaseInfo, Runtime, SandboxError};
use crate::lease::Meter;
use crate::resources::LeaseId;
use crate::resources::now_ms;

/// Messages waiting for one deployment.
pub const MESSAGE_QUEUE: usize = 64;
/// Upgrades waiting for one deployment.
pub const CONTROL_QUEUE: usize = 4;
/// How far past its deadline a call may run before the supervisor abandons the worker.
pub const UNRESPONSIVE_GRACE: Duration = Duration::from_secs(2);

/// A control command for a worker (stops go through its cancellation token).
#[derive(Debug)]
enum Control {
    /// Swap the code (and configuration), keep the key-value store; answered after the new
    /// code's first start.
    Upgrade {
        compiled: Box<Compiled>,
        info: LeaseInfo,
        config: Vec<(String, String)>,
        started: oneshot::Sender<Started>,
    },
}

/// A message for the plugin.
#[derive(Debug)]
struct Message {
    from: String,
    payload: Vec<u8>,
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the deployment's message queue is full ({MESSAGE_QUEUE} waiting); retry later")]
    Full,
    #[error("the deployment's worker has ended")]
    Gone,
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
    /// It gave up: too many failures in the window, or `init` returned an error.
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

#[derive(Debug)]
struct Inner {
    state: State,
    reason: Option<String>,
    counters: Counters,
    /// The call in progress: when it began and its deadline.
    in_call: Option<(Instant, Duration)>,
}

/// State shared between a worker and whoever shows it.
#[derive(Debug, Clone)]
pub struct Shared {
    inner: Arc<Mutex<Inner>>,
}

impl Shared {
    fn new(quota: u64) -> Self {
        let counters = Counters {
            kv_quota: quota,
            ..Default::default()
        };
        Self {
            inner: Arc::new(Mutex::new(Inner {
                state: State::Starting,
                reason: None,
                counters,
                in_call: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// State, reason and counters now.
    pub fn snapshot(&self) -> (State, Option<String>, Counters) {
        let g = self.lock();
        (g.state, g.reason.clone(), g.counters.clone())
    }

    /// How long the call in progress has run past its deadline plus [`UNRESPONSIVE_GRACE`],
    /// if it has: the worker is then unresponsive (something the deadline cannot cancel).
    pub fn overdue(&self, now: Instant) -> Option<Duration> {
        let (since, deadline) = self.lock().in_call?;
        let ran = now.saturating_duration_since(since);
        ran.checked_sub(deadline.saturating_add(UNRESPONSIVE_GRACE))
            .filter(|d| !d.is_zero())
            .map(|_| ran)
    }

    fn set_state(&self, state: State, reason: Option<String>) {
        let mut g = self.lock();
        g.state = state;
        g.reason = reason;
    }

    fn update(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.lock().counters);
    }

    fn call_begins(&self, deadline: Duration) {
        self.lock().in_call = Some((Instant::now(), deadline));
    }

    fn call_ends(&self) {
        self.lock().in_call = None;
    }

    #[cfg(test)]
    fn pretend_call(&self, since: Instant, deadline: Duration) {
        self.lock().in_call = Some((since, deadline));
    }
}

/// A cloneable way into one worker's message queue: the mesh delivers through it without
/// going through the supervisor.
#[derive(Debug, Clone)]
pub struct Inbox {
    messages: tmpsc::Sender<Message>,
    shared: Shared,
}

impl Inbox {
    /// Queues a message if the plugin is running; refused at once when the queue is full.
    pub fn deliver(&self, from: String, payload: Vec<u8>) -> Result<(), QueueError> {
        if self.shared.lock().state != State::Running {
            return Err(QueueError::Gone);
        }
        self.messages
            .try_send(Message { from, payload })
            .map_err(|e| match e {
                tmpsc::error::TrySendError::Full(_) => QueueError::Full,
                tmpsc::error::TrySendError::Closed(_) => QueueError::Gone,
            })
    }
}

#[cfg(test)]
impl Inbox {
    /// An inbox of no worker, for tests: `capacity` messages, running or not; the closure
    /// takes the next message queued.
    #[allow(clippy::type_complexity)]
    pub(crate) fn for_tests(
        capacity: usize,
        running: bool,
    ) -> (Self, Box<dyn FnMut() -> Option<(String, Vec<u8>)> + Send>) {
        let (messages, mut rx) = tmpsc::channel(capacity);
        let shared = Shared::new(0);
        if running {
            shared.set_state(State::Running, None);
        }
        let take = move || rx.try_recv().ok().map(|m: Message| (m.from, m.payload));
        (Self { messages, shared }, Box::new(take))
    }
}

/// The supervisor's side of a worker.
#[derive(Debug)]
pub struct Worker {
    control: tmpsc::Sender<Control>,
    messages: tmpsc::Sender<Message>,
    stop: CancellationToken,
    pub shared: Shared,
    /// Unique in this process; carried by the worker's events.
    pub serial: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Queues a message for the plugin; refused at once when the queue is full.
    pub fn message(&self, from: String, payload: Vec<u8>) -> Result<(), QueueError> {
        self.messages
            .try_send(Message { from, payload })
            .map_err(|e| match e {
                tmpsc::error::TrySendError::Full(_) => QueueError::Full,
                tmpsc::error::TrySendError::Closed(_) => QueueError::Gone,
            })
    }

    /// Its message queue, for the mesh.
    pub fn inbox(&self) -> Inbox {
        Inbox {
            messages: self.messages.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Swaps the code, keeping the key-value store; `started` is answered after the new
    /// code's first start. False if the worker cannot take it (ended, or upgrades queued).
    pub fn upgrade(
        &self,
        compiled: Compiled,
        info: LeaseInfo,
        config: Vec<(String, String)>,
        started: oneshot::Sender<Started>,
    ) -> bool {
        self.control
            .try_send(Control::Upgrade {
                compiled: Box::new(compiled),
                info,
                config,
                started,
            })
            .is_ok()
    }

    /// Tells the thread to stop (cancelling the call in flight) and lets it go without
    /// waiting: its end is reported as [`WorkerEvent::Exited`]. What the supervisor does; it
    /// never waits on a plugin.
    pub fn retire(mut self) {
        self.stop.cancel();
        drop(self.thread.take());
    }

    /// Stops the thread and waits for it to end (at once, unless a host function is stuck).
    /// For callers that may block: tests.
    pub fn stop(mut self) {
        self.stop.cancel();
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
    /// A child workload's fuel per second; `None` for a deployment (its calls are bounded
    /// by `plugin.fuel_per_call` only).
    pub fuel_per_second: Option<u64>,
}

/// Fuel a child may still burn: refilled at its rate, at most one second of it.
#[derive(Debug)]
struct FuelBucket {
    rate: u64,
    tokens: u64,
    at: Instant,
    /// Calls skipped since the last log line about it.
    skipped: u64,
}

impl FuelBucket {
    fn new(rate: u64) -> Self {
        Self {
            rate,
            tokens: rate,
            at: Instant::now(),
            skipped: 0,
        }
    }

    /// Fuel available now.
    fn available(&mut self) -> u64 {
        let now = Instant::now();
        let add = now
            .saturating_duration_since(self.at)
            .as_nanos()
            .saturating_mul(u128::from(self.rate))
            / 1_000_000_000;
        if add > 0 {
            let add = u64::try_from(add).unwrap_or(u64::MAX);
            self.tokens = self.tokens.saturating_add(add).min(self.rate);
            self.at = now;
        }
        self.tokens
    }

    fn take(&mut self, fuel: u64) {
        self.tokens = self.tokens.saturating_sub(fuel);
    }
}

/// Starts a worker thread; `started` is answered after the first start.
pub fn spawn(spec: Spec, started: oneshot::Sender<Started>) -> std::io::Result<Worker> {
    let (control, control_rx) = tmpsc::channel(CONTROL_QUEUE);
    let (messages, messages_rx) = tmpsc::channel(MESSAGE_QUEUE);
    let stop = CancellationToken::new();
    let shared = Shared::new(spec.env.kv.quota());
    let queues = Queues {
        control: control_rx,
        messages: messages_rx,
        stop: stop.clone(),
    };
    let thread_shared = shared.clone();
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let thread = std::thread::Builder::new()
        .name(format!("plugin-{}", &spec.id[..8.min(spec.id.len())]))
        .spawn(move || {
            let executor = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match executor {
                Ok(rt) => rt.block_on(Loop::new(spec, serial, thread_shared, queues).run(started)),
                Err(e) => {
                    let _ = started.send(Started::Failed(format!(
                        "cannot start the worker's executor: {e}"
                    )));
                }
            }
        })?;
    Ok(Worker {
        control,
        messages,
        stop,
        shared,
        serial,
        thread: Some(thread),
    })
}

/// The worker's ends of its queues.
struct Queues {
    control: tmpsc::Receiver<Control>,
    messages: tmpsc::Receiver<Message>,
    stop: CancellationToken,
}

/// `fut`, unless the worker is told to stop first (then the future is dropped, cancelling
/// the call it is making).
async fn unless_stopped<T>(stop: &CancellationToken, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        v = fut => Some(v),
    }
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
    queues: Queues,
    env: Option<Env>,
    instance: Option<Instance>,
    /// When each failure inside the window happened.
    failures: VecDeque<Instant>,
    failed: bool,
    next_start: Instant,
    next_tick: Instant,
    /// A child's fuel rate.
    fuel: Option<FuelBucket>,
}

impl Loop {
    fn new(spec: Spec, serial: u64, shared: Shared, queues: Queues) -> Self {
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
            queues,
            env: Some(spec.env),
            instance: None,
            failures: VecDeque::new(),
            failed: false,
            next_start: now,
            next_tick: now,
            fuel: spec.fuel_per_second.map(FuelBucket::new),
        }
    }

    /// For a child: whether its fuel rate lets a call run now, and if so the instance may
    /// burn at most what is left. Always true for a deployment.
    fn fuel_allows(&mut self, what: &str) -> bool {
        let per_call = self.runtime.limits().fuel_per_call;
        let Some(bucket) = self.fuel.as_mut() else {
            return true;
        };
        let left = bucket.available();
        if left == 0 {
            bucket.skipped += 1;
            let skipped = bucket.skipped;
            if skipped == 1 || skipped.is_power_of_two() {
                self.host_log(
                    "warn",
                    format!("{what} skipped: over its fuel rate ({skipped} calls skipped so far)"),
                );
            }
            return false;
        }
        if let Some(i) = self.instance.as_mut() {
            i.set_fuel_per_call(left.min(per_call));
        }
        true
    }

    /// Charges a call's fuel to the child's rate.
    fn charge_fuel(&mut self, fuel: u64) {
        if let Some(b) = self.fuel.as_mut() {
            b.take(fuel);
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

    /// Whether the code serves HTTP only: nothing to run here.
    fn http_only(&self) -> bool {
        !self.compiled.has_plugin()
    }

    fn stopping(&self) -> bool {
        self.queues.stop.is_cancelled()
    }

    async fn run(mut self, started: oneshot::Sender<Started>) {
        let first = self.start().await;
        let _ = started.send(first);
        while !self.stopping() {
            let now = Instant::now();
            let wait = if self.failed || self.http_only() {
                Duration::from_secs(3600)
            } else if self.instance.is_some() {
                self.next_tick.saturating_duration_since(now)
            } else {
                self.next_start.saturating_duration_since(now)
            };
            tokio::select! {
                biased;
                () = self.queues.stop.cancelled() => break,
                cmd = self.queues.control.recv() => match cmd {
                    None => break,
                    Some(Control::Upgrade { compiled, info, config, started }) => {
                        self.retire();
                        if let Some(env) = self.env.as_mut() {
                            env.kv.set_quota(info.slice.disk_bytes);
                            env.info = info;
                        }
                        self.compiled = *compiled;
                        self.config = config;
                        self.failures.clear();
                        self.failed = false;
                        self.host_log("info", "upgrading: new code, same key-value store".into());
                        let outcome = self.start().await;
                        let _ = started.send(outcome);
                    }
                },
                msg = self.queues.messages.recv() => match msg {
                    None => break,
                    Some(Message { from, payload }) => self.deliver(&from, &payload).await,
                },
                () = tokio::time::sleep(wait) => {
                    if self.failed || self.http_only() {
                        continue;
                    }
                    if self.instance.is_none() {
                        if Instant::now() >= self.next_start {
                            self.start().await;
                        }
                    } else if Instant::now() >= self.next_tick {
                        self.tick().await;
                    }
                }
            }
        }
        self.retire();
        self.shared.set_state(State::Stopped, None);
        // The environment (and its key-value store) is released before this is read.
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

    /// Runs one call of the instance, marked in [`Shared`] for the watchdog; `None` if the
    /// worker was told to stop meanwhile (the call is then cancelled and the instance gone).
    async fn guarded<T>(
        &mut self,
        deadline: Duration,
        f: impl AsyncFnOnce(&mut Instance) -> Call<T>,
    ) -> Option<Call<T>> {
        let mut inst = self.instance.take()?;
        self.shared.call_begins(deadline);
        let stop = self.queues.stop.clone();
        let call = unless_stopped(&stop, f(&mut inst)).await;
        self.shared.call_ends();
        self.instance = Some(inst);
        if call.is_none() {
            self.retire();
        }
        call
    }

    async fn start(&mut self) -> Started {
        self.retire();
        let Some(env) = self.env.take() else {
            return Started::Failed("internal: no environment".into());
        };
        self.shared.set_state(State::Starting, None);
        self.shared.update(|c| c.starts += 1);
        if self.http_only() {
            env.logs.host(
                "info",
                "started: the component serves HTTP only (no init, tick or message)",
            );
            self.env = Some(env);
            self.shared.set_state(State::Running, None);
            return Started::Running;
        }
        let limits = self.runtime.limits().clone();
        self.shared.call_begins(limits.init_timeout);
        let stop = self.queues.stop.clone();
        let made = unless_stopped(&stop, self.runtime.instantiate(&self.compiled, env)).await;
        self.shared.call_ends();
        let inst = match made {
            None => return Started::Failed("stopped while starting".into()),
            Some(Ok(i)) => i,
            Some(Err((SandboxError::NoSlot(e), env))) => {
                // Not the plugin's fault: wait for a slot, without counting a failure.
                self.env = Some(*env);
                self.next_start = Instant::now() + limits.backoff;
                let why = format!("waiting for a free instance slot ({e})");
                self.shared.set_state(State::Backoff, Some(why.clone()));
                return Started::Retrying(why);
            }
            Some(Err((e, env))) => {
                // The component's start trapped: retried.
                self.env = Some(*env);
                return self.fault(&Fault::Trap(e.to_string()), "start");
            }
        };
        self.instance = Some(inst);
        let _ = self.fuel_allows("init");
        let config = self.config.clone();
        let Some(call) = self
            .guarded(limits.init_timeout, async |i| i.init(&config).await)
            .await
        else {
            return Started::Failed("stopped while starting".into());
        };
        match call.result {
            Ok(Ok(())) => {
                self.meter_call(call.fuel);
                self.shared.set_state(State::Running, None);
                self.host_log(
                    "info",
                    format!("started ({} µs init)", call.elapsed.as_micros()),
                );
                self.next_tick = Instant::now() + limits.tick_interval;
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

    async fn tick(&mut self) {
        let limits = self.runtime.limits().clone();
        let now_ms = now_ms();
        if !self.fuel_allows("tick") {
            let now = Instant::now();
            self.next_tick += limits.tick_interval;
            if self.next_tick < now {
                self.next_tick = now + limits.tick_interval;
            }
            return;
        }
        let Some(call) = self
            .guarded(limits.call_timeout, async |i| i.tick(now_ms).await)
            .await
        else {
            return;
        };
        // Missed ticks are skipped, not queued.
        let now = Instant::now();
        self.next_tick += limits.tick_interval;
        if self.next_tick < now {
            self.next_tick = now + limits.tick_interval;
        }
        let elapsed = call.elapsed;
        if self.after_call(call, "tick") {
            let failures = self.failures_in_window();
            self.shared.update(|c| {
                c.ticks += 1;
                c.consecutive_failures = failures;
                c.last_tick_ms = Some(now_ms);
                c.max_tick_us = c.max_tick_us.max(elapsed.as_micros() as u64);
            });
        }
    }

    async fn deliver(&mut self, from: &str, payload: &[u8]) {
        if self.instance.is_none() {
            let why = if self.http_only() {
                "the component serves HTTP only"
            } else {
                "the plugin is not running"
            };
            self.host_log("warn", format!("a message from {from} was dropped: {why}"));
            return;
        }
        if !self.fuel_allows("message") {
            self.host_log(
                "warn",
                format!("a message from {from} was dropped: over the fuel rate"),
            );
            return;
        }
        let deadline = self.runtime.limits().call_timeout;
        if let Some(call) = self
            .guarded(deadline, async |i| i.message(from, payload).await)
            .await
        {
            self.after_call(call, "message");
        }
    }

    fn meter_call(&mut self, fuel: u64) {
        self.charge_fuel(fuel);
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

    /// Failures inside the window now (older ones are forgotten).
    fn failures_in_window(&mut self) -> u32 {
        let window = self.runtime.limits().failure_window;
        let now = Instant::now();
        while self
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
        u32::try_from(self.failures.len()).unwrap_or(u32::MAX)
    }

    fn fault(&mut self, fault: &Fault, what: &str) -> Started {
        self.retire();
        self.failures.push_back(Instant::now());
        let failures = self.failures_in_window();
        let deadline = matches!(fault, Fault::Deadline(_));
        self.shared.update(|c| {
            if deadline {
                c.interrupts += 1;
            } else {
                c.traps += 1;
            }
            c.consecutive_failures = failures;
        });
        let limits = self.runtime.limits();
        if failures >= limits.max_failures {
            let reason = format!(
                "{failures} failures within {} s; last in {what}: {fault}",
                limits.failure_window.as_secs()
            );
            self.host_log("error", format!("{what}: {fault}; giving up"));
            return self.give_up(reason);
        }
        let factor = 1u32 << failures.saturating_sub(1).min(16);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fuel_bucket_holds_one_second_and_refills_at_its_rate() {
        let mut b = FuelBucket::new(1_000_000);
        assert_eq!(b.available(), 1_000_000, "starts full");
        b.take(1_000_000);
        b.at = Instant::now();
        assert!(b.available() < 1_000_000, "emptied");
        b.at = Instant::now() - Duration::from_millis(500);
        let half = b.available();
        assert!((490_000..=1_000_000).contains(&half), "{half}");
        b.at = Instant::now() - Duration::from_secs(10);
        assert_eq!(b.available(), 1_000_000, "never more than a second of it");
        b.take(u64::MAX);
        assert_eq!(b.tokens, 0);
    }

    #[test]
    fn a_call_is_overdue_only_past_its_deadline_and_the_grace() {
        let shared = Shared::new(0);
        let now = Instant::now();
        assert_eq!(shared.overdue(now), None, "no call in progress");
        let deadline = Duration::from_millis(100);
        shared.pretend_call(now, deadline);
        assert_eq!(shared.overdue(now + deadline), None);
        assert_eq!(shared.overdue(now + deadline + UNRESPONSIVE_GRACE), None);
        let late = deadline + UNRESPONSIVE_GRACE + Duration::from_millis(1);
        assert_eq!(shared.overdue(now + late), Some(late));
        shared.call_ends();
        assert_eq!(shared.overdue(now + late), None);
    }
}
