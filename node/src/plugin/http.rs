//! `wasi:http` in the sandbox: a deployment's HTTP requests, served by instances of its
//! component (`wasi:http/incoming-handler`), under the lease's limits.
//!
//! One [`HttpService`] per deployment whose component serves HTTP; the ingress holds it as an
//! [`Endpoint`]. It runs its instances in the same engine and linker as the deployment's
//! worker (same memory limiter, fuel, epoch deadlines, WASI without files or sockets) with a
//! second handle on the deployment's key-value store ([`Kv::share`]) and its logs, so the
//! worker's instance and the HTTP instances see the same data.
//!
//! Per request:
//!
//! - **Admission.** At most [`HttpService::concurrency`] requests in flight (from the lease's
//!   CPU, [`HttpLimits::concurrency`]); beyond, 503 with `Retry-After: 1`, never a queue. The
//!   host's HTTP instances are bounded too (`max_instances`, a semaphore of the
//!   [`Runtime`], sized into the pooling allocator); none free is a 503 as well.
//! - **Body.** A `Content-Length` over `max_request_body` is 413 before any plugin code runs;
//!   a chunked body fails past the cap, and the answer is 413 if that happened before the
//!   plugin answered ([`body::RequestBody`]).
//! - **Instance.** An idle one of this deployment ([`pool`]) if there is one, else a fresh one
//!   from the `ProxyPre` (instantiation is a few microseconds with the pooling allocator;
//!   reuse is what saves the component's own start-up and the WASI context). It is armed for
//!   the request: its deadline (epoch callback and a timeout around the call), a fuel
//!   allowance too large to run out ([`HTTP_FUEL`]: the deadline bounds a request's CPU, fuel
//!   only measures it), the memory limiter's flag reset.
//! - **Call.** `handle` runs in a task of its own; the response head comes back through the
//!   outparam. The body is streamed as the guest writes it ([`body::ResponseBody`]), capped
//!   at `max_response_body` and cut at the deadline; a cut stops the call at once.
//! - **Outcome.** Deadline before the head: 504. A trap (the memory limit included): 500,
//!   instance dropped. An `error-code` answer, or a return without an answer: 500. The
//!   instance goes back to the pool only if the call returned, answered, and its body ended
//!   cleanly, at most `reuse` times.
//! - **CPU.** The deployment's requests together run on its lease's cores: the epoch callback
//!   charges each instance's running time to a token bucket shared by the deployment
//!   ([`HttpShare`]), and makes an instance past it sleep (in steps of at most 50 ms) so the
//!   ingress's threads serve other deployments meanwhile.
//! - **Accounting.** Fuel burnt, peak memory and key-value bytes go to the [`Meter`] after
//!   every request; counters to [`HttpStats`]; one access-log line (`GET /items 200 1.3 ms`)
//!   to the deployment's logs under their rate limit.
//! - **Outgoing.** Denied unless `HttpEnv::outgoing` allows the authority ([`outgoing`]).

mod body;
mod limits;
mod outgoing;
mod pool;
mod reply;

use super::control::Control;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt as _;
use hyper::body::Body;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use wasmtime::Trap;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use self::body::{RequestBody, ResponseBody};
pub use self::limits::HttpLimits;
pub(crate) use self::outgoing::Hooks;
use self::pool::{Alive, Pool, Slot};
use self::reply::{Refusal, refuse};
use super::kv::Kv;
use super::logs::Logs;
use super::runtime::host::{CpuBudget, HostState, MemoryBudget};
use super::runtime::{Compiled, Env, Fault, LeaseInfo, Runtime, classify};
use crate::ingress::{BoxError, Endpoint, Response};
use crate::lease::Meter;
use crate::resources::LeaseId;

/// Fuel given to each request: more than any request can burn before its deadline, so that a
/// handler that loops is stopped by the deadline (504), not by fuel; what it burns is metered.
pub const HTTP_FUEL: u64 = u64::MAX / 4;

/// Longest path an access-log line quotes, in bytes.
const MAX_LOGGED_PATH: usize = 512;

/// A client's path as an access-log line shows it: printable ASCII as is, every other byte
/// percent-encoded (no line separators, bidi overrides or escapes reach a log viewer), at most
/// [`MAX_LOGGED_PATH`] bytes.
fn log_safe_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len().min(MAX_LOGGED_PATH));
    for b in path.bytes() {
        if out.len() >= MAX_LOGGED_PATH {
            out.push('…');
            break;
        }
        if (0x21..0x7f).contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Most idle instances one deployment keeps (each holds one of the host's HTTP instance
/// slots and part of the lease's memory).
pub const MAX_IDLE: usize = 8;

/// What the successive HTTP services of one deployment share (a new one is made on every
/// upgrade and restart of its worker): the in-flight permits and the memory budget, so that a
/// new generation starts with what the old one's requests still hold, not a fresh allowance.
#[derive(Debug)]
pub struct HttpShare {
    in_flight: Arc<Semaphore>,
    memory: Arc<MemoryBudget>,
    cpu: Arc<CpuBudget>,
    concurrency: usize,
}

impl HttpShare {
    /// The allowance of a deployment running under `info`'s lease: N requests in flight
    /// ([`HttpLimits::concurrency`] of its CPU) and its memory for all of them together.
    pub fn new(limits: &HttpLimits, info: &LeaseInfo) -> Arc<Self> {
        let concurrency = limits.concurrency(info.slice.cpu_millis);
        let mem = usize::try_from(info.slice.mem_bytes).unwrap_or(usize::MAX);
        Arc::new(Self {
            in_flight: Arc::new(Semaphore::new(concurrency)),
            memory: Arc::new(MemoryBudget::new(mem)),
            cpu: Arc::new(CpuBudget::new(info.slice.cpu_millis)),
            concurrency,
        })
    }

    /// The memory budget its HTTP instances share: a parent's cap shrinks by what its child
    /// workloads take.
    pub(crate) fn memory_budget(&self) -> &Arc<MemoryBudget> {
        &self.memory
    }

    /// Bytes of linear memory its HTTP instances hold now.
    pub fn memory_used(&self) -> usize {
        self.memory.used()
    }
}

/// How long an idle instance is kept.
pub const IDLE_TTL: Duration = Duration::from_secs(30);

/// What a deployment's HTTP instances run with.
#[derive(Debug)]
pub struct HttpEnv {
    /// The deployment id.
    pub id: String,
    pub lease: LeaseId,
    pub info: LeaseInfo,
    /// A handle on the deployment's store: [`Kv::share`] of the worker's, or [`Kv::open`] of
    /// the same deployment.
    pub kv: Kv,
    pub logs: Logs,
    pub meter: Meter,
    /// Authorities the plugin may send requests to (`host`, `host:port`, `*.suffix`,
    /// `host:*`); empty: none.
    pub outgoing: Vec<String>,
    /// The allowance the deployment's earlier services used, if any ([`HttpShare`]); `None`
    /// makes a new one.
    pub share: Option<Arc<HttpShare>>,
    /// The deployment's control plane (mesh and children), as its worker's instances have.
    pub control: Control,
}

/// A deployment's HTTP counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HttpStats {
    /// Requests answered, whatever the answer.
    pub requests: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// Requests being served now.
    pub in_flight: u64,
    /// Answered 503: over the deployment's concurrency or the host's instances.
    pub rejected: u64,
    /// Answered 504, or whose body was cut at the deadline.
    pub deadline: u64,
    /// Calls that trapped (answered 500 if they had not answered yet).
    pub traps: u64,
    /// Instances alive now (serving or idle).
    pub instances: u64,
    /// Of which idle.
    pub idle: u64,
    /// Fuel burnt by all requests.
    pub fuel: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    by_class: [AtomicU64; 4],
    rejected: AtomicU64,
    deadline: AtomicU64,
    traps: AtomicU64,
    fuel: AtomicU64,
}

/// What stopped a request's call.
#[derive(Debug)]
enum Ended {
    /// The call returned; whether it had answered.
    Returned { answered: bool },
    /// It faulted.
    Fault(Fault),
    /// Its response body was cut (over the cap, past the deadline, the client gone).
    Cut,
}

/// Why no instance could be had.
enum NoInstance {
    Unavailable(String),
    Fault(Fault),
}

/// One deployment's HTTP endpoint.
pub struct HttpService {
    runtime: Arc<Runtime>,
    pre: ProxyPre<HostState>,
    env: HttpEnv,
    hooks: Hooks,
    limits: HttpLimits,
    fuel_per_call: u64,
    concurrency: usize,
    in_flight: Arc<Semaphore>,
    /// The lease's memory, shared by every HTTP instance of the deployment.
    memory: Arc<MemoryBudget>,
    /// The lease's cores, shared likewise.
    cpu: Arc<CpuBudget>,
    pool: Pool,
    alive: Arc<AtomicU64>,
    counters: Counters,
    reaper: AtomicBool,
}

impl std::fmt::Debug for HttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpService")
            .field("id", &self.env.id)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl HttpService {
    /// The endpoint of a deployment, `None` if its component does not serve HTTP.
    pub fn new(runtime: Arc<Runtime>, compiled: &Compiled, env: HttpEnv) -> Option<Arc<Self>> {
        let pre = compiled.proxy()?.clone();
        let limits = runtime.limits().http.clone();
        let (hooks, bad) = Hooks::allowing(&env.outgoing);
        if !bad.is_empty() {
            env.logs.host(
                "warn",
                format!("outgoing HTTP patterns ignored (not HOST[:PORT]): {bad:?}"),
            );
        }
        let share = env
            .share
            .clone()
            .unwrap_or_else(|| HttpShare::new(&limits, &env.info));
        let concurrency = share.concurrency;
        Some(Arc::new(Self {
            fuel_per_call: HTTP_FUEL,
            pool: Pool::new(concurrency.min(MAX_IDLE), IDLE_TTL, limits.reuse.max(1)),
            in_flight: Arc::clone(&share.in_flight),
            memory: Arc::clone(&share.memory),
            cpu: Arc::clone(&share.cpu),
            runtime,
            pre,
            env,
            hooks,
            limits,
            concurrency,
            alive: Arc::new(AtomicU64::new(0)),
            counters: Counters::default(),
            reaper: AtomicBool::new(false),
        }))
    }

    /// Requests served at once, at most; more are answered 503.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The counters now.
    pub fn stats(&self) -> HttpStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let free = self.in_flight.available_permits();
        HttpStats {
            requests: get(&c.requests),
            status_2xx: get(&c.by_class[0]),
            status_3xx: get(&c.by_class[1]),
            status_4xx: get(&c.by_class[2]),
            status_5xx: get(&c.by_class[3]),
            in_flight: self.concurrency.saturating_sub(free) as u64,
            rejected: get(&c.rejected),
            deadline: get(&c.deadline),
            traps: get(&c.traps),
            instances: get(&self.alive),
            idle: self.pool.len() as u64,
            fuel: get(&c.fuel),
        }
    }

    /// Drops the idle instances (a stop, an upgrade: requests in flight finish on theirs).
    pub fn drain(&self) {
        self.pool.clear();
    }

    /// Serves one request.
    pub async fn handle<B>(self: &Arc<Self>, req: http::Request<B>) -> Response
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        self.start_reaper();
        let method: String = req.method().as_str().chars().take(32).collect();
        let path = log_safe_path(req.uri().path());
        let resp = self.serve(req, started).await;
        let status = resp.status();
        let c = &self.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        let class = usize::from(status.as_u16() / 100).clamp(2, 5) - 2;
        c.by_class[class].fetch_add(1, Ordering::Relaxed);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.env
            .logs
            .access(format!("{method} {path} {} {ms:.1} ms", status.as_u16()));
        resp
    }

    async fn serve<B>(self: &Arc<Self>, req: http::Request<B>, started: Instant) -> Response
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return refuse(
                Refusal::Unavailable,
                format!(
                    "the deployment is serving {} requests already; retry later",
                    self.concurrency
                ),
            );
        };
        let cap = self.limits.max_request_body;
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap) {
            return refuse(
                Refusal::TooLarge,
                format!("the request body is over {cap} bytes"),
            );
        }
        let deadline = started + self.limits.deadline;
        let mut slot = match self.pool.take() {
            Some(s) => s,
            None => match self.fresh(deadline).await {
                Ok(s) => s,
                Err(NoInstance::Unavailable(why)) => {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    return refuse(Refusal::Unavailable, why);
                }
                Err(NoInstance::Fault(f)) => return self.fault_reply(&f),
            },
        };
        if let Err(e) = self.arm(&mut slot, deadline) {
            return refuse(Refusal::PluginFault, e);
        }
        let over = Arc::new(AtomicBool::new(false));
        let req = req.map(|b| RequestBody::new(b, cap, Arc::clone(&over)));
        let answered = Arc::new(AtomicBool::new(false));
        let (head_tx, head_rx) = oneshot::channel();
        let resources = {
            let mut view = slot.store.data_mut().http();
            let flag = Arc::clone(&answered);
            view.new_incoming_request(Scheme::Http, req).and_then(|r| {
                let out = view.new_response_outparam_from_callback(move |head| {
                    flag.store(true, Ordering::Release);
                    let _ = head_tx.send(head);
                })?;
                Ok((r, out))
            })
        };
        let (request, outparam) = match resources {
            Ok(r) => r,
            Err(e) => {
                // Nothing ran; the table may hold the request: the instance is not reused.
                return refuse(Refusal::BadRequest, format!("{e:#}"));
            }
        };
        let cut = CancellationToken::new();
        let (end_tx, end_rx) = oneshot::channel();
        let (ended_tx, ended_rx) = oneshot::channel();
        let (released_tx, released_rx) = oneshot::channel();
        let call = Call {
            service: Arc::clone(self),
            deadline,
            cut: cut.clone(),
            answered,
            _permit: permit,
            _released: released_tx,
        };
        tokio::spawn(call.run(slot, request, outparam, end_rx, ended_tx));
        let head = head_rx.await;
        if over.load(Ordering::Relaxed) {
            cut.cancel();
            return refuse(
                Refusal::TooLarge,
                format!("the request body is over {cap} bytes"),
            );
        }
        match head {
            Ok(Ok(resp)) => self.stream(resp, deadline, end_tx, released_rx, cut),
            Ok(Err(code)) => refuse(
                Refusal::PluginFault,
                format!("the plugin answered with an error: {}", error_code(&code)),
            ),
            Err(_) => match ended_rx.await {
                Ok(Ended::Fault(f)) => self.fault_reply(&f),
                Ok(Ended::Returned { .. }) => refuse(
                    Refusal::PluginFault,
                    "the plugin returned without setting a response",
                ),
                Ok(Ended::Cut) | Err(_) => {
                    refuse(Refusal::PluginFault, "the plugin's call ended unexpectedly")
                }
            },
        }
    }

    fn stream(
        &self,
        resp: hyper::Response<HyperOutgoingBody>,
        deadline: Instant,
        end: oneshot::Sender<bool>,
        released: oneshot::Receiver<()>,
        cut: CancellationToken,
    ) -> Response {
        let cap = self.limits.max_response_body;
        resp.map(|b| {
            ResponseBody::new(b, cap, deadline, end, cut)
                .released_by(released)
                .boxed()
        })
    }

    fn fault_reply(&self, f: &Fault) -> Response {
        match f {
            Fault::Deadline(d) => refuse(
                Refusal::Deadline,
                format!(
                    "the plugin did not answer within {} ms",
                    d.as_millis().max(1)
                ),
            ),
            other => refuse(Refusal::PluginFault, format!("the plugin failed: {other}")),
        }
    }

    /// A new instance under the deadline, holding one of the host's HTTP instance permits.
    async fn fresh(&self, deadline: Instant) -> Result<Slot, NoInstance> {
        let Ok(permit) = Arc::clone(self.runtime.http_slots()).try_acquire_owned() else {
            return Err(NoInstance::Unavailable(
                "every HTTP instance of this host is taken; retry later".into(),
            ));
        };
        let env = Env {
            info: self.env.info.clone(),
            kv: self.env.kv.share(),
            logs: self.env.logs.clone(),
            control: self.env.control.clone(),
        };
        let mut store = self.runtime.store(
            env,
            self.hooks.clone(),
            Some(Arc::clone(&self.memory)),
            Some(Arc::clone(&self.cpu)),
        );
        let timeout = deadline.saturating_duration_since(Instant::now());
        if self.runtime.guards() {
            store.data_mut().deadline = deadline;
            store.set_epoch_deadline(1);
            if let Err(e) = store.set_fuel(self.fuel_per_call) {
                return Err(NoInstance::Fault(Fault::Trap(format!("{e:#}"))));
            }
        }
        let made = tokio::time::timeout_at(deadline.into(), self.pre.instantiate_async(&mut store));
        let made = match made.await {
            Ok(r) => r,
            Err(_) => Err(Trap::Interrupt.into()),
        };
        match made {
            Ok(proxy) => Ok(Slot::new(
                store,
                proxy,
                Alive::new(permit, Arc::clone(&self.alive)),
            )),
            Err(e) if e.is::<wasmtime::PoolConcurrencyLimitError>() => Err(
                NoInstance::Unavailable(format!("no free instance slot on this host: {e}")),
            ),
            Err(_) if store.data().limiter.denied_by_budget() => Err(NoInstance::Unavailable(
                "the lease's memory is held by this deployment's requests in flight; retry later"
                    .into(),
            )),
            Err(e) => {
                let fault = classify(&e, &store, timeout);
                self.counters.traps.fetch_add(1, Ordering::Relaxed);
                self.env.logs.host(
                    "warn",
                    format!("http: starting an instance failed: {fault}"),
                );
                Err(NoInstance::Fault(fault))
            }
        }
    }

    /// Arms an instance for one request: deadline, fuel, hooks, limiter.
    fn arm(&self, slot: &mut Slot, deadline: Instant) -> Result<(), String> {
        let data = slot.store.data_mut();
        data.limiter.reset_denied();
        data.hooks.deadline = deadline;
        // Time idle in the pool is not running time.
        if let Some((_, last)) = &mut data.cpu {
            *last = Instant::now();
        }
        if self.runtime.guards() {
            data.deadline = deadline;
            slot.store.set_epoch_deadline(1);
            slot.store
                .set_fuel(self.fuel_per_call)
                .map_err(|e| format!("cannot refuel the instance: {e:#}"))?;
        }
        Ok(())
    }

    /// Drops idle instances past their time, every half of it, while the service lives.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(IDLE_TTL / 2).await;
                let Some(service) = weak.upgrade() else {
                    return;
                };
                service.pool.reap();
            }
        });
    }

    /// Meters one request's call.
    fn meter(&self, slot: &Slot, fuel: u64) {
        let data = slot.store.data();
        let mem = data.limiter.peak() as u64;
        let kv = data.kv_used();
        self.counters.fuel.fetch_add(fuel, Ordering::Relaxed);
        self.env
            .meter
            .record(self.env.lease, &self.env.id, fuel, mem, kv);
    }
}

impl Drop for HttpService {
    fn drop(&mut self) {
        self.pool.clear();
    }
}

/// A short text for a guest's error code.
fn error_code(code: &ErrorCode) -> String {
    let mut s = format!("{code:?}");
    super::runtime::cap_text(&mut s, 500);
    s
}

/// One request's call, run in a task of its own: it owns the instance until the call and its
/// response body end, then puts it back in the pool or drops it.
struct Call {
    service: Arc<HttpService>,
    deadline: Instant,
    cut: CancellationToken,
    answered: Arc<AtomicBool>,
    /// The deployment's in-flight permit, held until the instance is free again.
    _permit: tokio::sync::OwnedSemaphorePermit,
    /// Dropped last, after the permit and once the instance is back in the pool (or gone):
    /// the response body ends for the client only then (see [`ResponseBody`]), so that a
    /// client's next request finds both free.
    _released: oneshot::Sender<()>,
}

impl Call {
    async fn run(
        self,
        mut slot: Slot,
        request: wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>,
        outparam: wasmtime::component::Resource<
            wasmtime_wasi_http::p2::types::HostResponseOutparam,
        >,
        end: oneshot::Receiver<bool>,
        ended: oneshot::Sender<Ended>,
    ) {
        let service = &self.service;
        let timeout = service.limits.deadline;
        let result = {
            let Slot { store, proxy, .. } = &mut slot;
            let call =
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut *store, request, outparam);
            tokio::select! {
                r = tokio::time::timeout_at(self.deadline.into(), call) => Some(match r {
                    Ok(r) => r,
                    Err(_) => Err(Trap::Interrupt.into()),
                }),
                () = self.cut.cancelled() => None,
            }
        };
        let outcome = match result {
            None => Ended::Cut,
            Some(Ok(())) => Ended::Returned {
                answered: self.answered.load(Ordering::Acquire),
            },
            Some(Err(e)) => Ended::Fault(classify(&e, &slot.store, timeout)),
        };
        let failed = !matches!(outcome, Ended::Returned { answered: true });
        slot.store.data_mut().drain_stdio(failed);
        let fuel = if service.runtime.guards() {
            service
                .fuel_per_call
                .saturating_sub(slot.store.get_fuel().unwrap_or(0))
        } else {
            0
        };
        service.meter(&slot, fuel);
        match &outcome {
            Ended::Fault(f) => {
                if matches!(f, Fault::Deadline(_)) {
                    service.counters.deadline.fetch_add(1, Ordering::Relaxed);
                } else {
                    service.counters.traps.fetch_add(1, Ordering::Relaxed);
                }
                service
                    .env
                    .logs
                    .host("warn", format!("http: request failed: {f}"));
            }
            Ended::Cut => {
                if Instant::now() >= self.deadline {
                    service.counters.deadline.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ended::Returned { .. } => {}
        }
        if failed {
            // The instance (and the outparam or body it may still hold) goes now, before the
            // answer is known: its memory is back in the lease's budget (and its host slot
            // free) by the time the client can send its next request. A body still streaming
            // ends with an error.
            self.cut.cancel();
            drop(slot);
            let _ = ended.send(outcome);
            return;
        }
        let _ = ended.send(outcome);
        // Returned and answered: reusable once its body has ended cleanly.
        let clean = tokio::select! {
            r = end => r.unwrap_or(false),
            () = tokio::time::sleep_until(self.deadline.into()) => false,
            () = self.cut.cancelled() => false,
        };
        if clean {
            slot.served += 1;
            service.pool.put(slot);
        } else {
            self.cut.cancel();
            if Instant::now() >= self.deadline {
                service.counters.deadline.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Endpoint for HttpService {
    fn serve(self: Arc<Self>, req: crate::ingress::Request) -> BoxFuture<'static, Response> {
        Box::pin(async move { self.handle(req).await })
    }
}

#[cfg(test)]
mod log_tests {
    use super::log_safe_path;

    #[test]
    fn logged_paths_are_printable_ascii_and_capped() {
        assert_eq!(log_safe_path("/kv/a"), "/kv/a");
        assert_eq!(log_safe_path("/a\u{2028}b"), "/a%E2%80%A8b");
        assert_eq!(log_safe_path("/a%20b"), "/a%20b");
        assert_eq!(log_safe_path("/\u{202e}x"), "/%E2%80%AEx");
        let long = "/".repeat(5000);
        assert!(log_safe_path(&long).len() <= super::MAX_LOGGED_PATH + '…'.len_utf8());
    }
}
