//! The host side of the `degroup:plugin` world: the store's data, the memory limiter, and the
//! functions a plugin imports (lease info, key-value store, logging). `wasi:http` is served
//! from the same state ([`WasiHttpView`]): its context, and the deployment's outgoing policy
//! ([`Hooks`]).

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::Env;
use super::degroup::plugin::{kv, lease, log};
use crate::plugin::http::Hooks;
use crate::plugin::kv::KvError;

/// Memory shared by several stores: the HTTP instances of one deployment together stay
/// within the lease's memory, however many serve at once (each store charges what it grows
/// and gives it back when it is dropped). The cap can change while stores live
/// ([`MemoryBudget::try_set_cap`]): a parent's memory shrinks by what its children take.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    /// Cap and bytes charged, changed together.
    state: std::sync::Mutex<(usize, usize)>,
}

impl MemoryBudget {
    /// A budget of `cap` bytes.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            state: std::sync::Mutex::new((cap, 0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes charged now.
    pub(crate) fn used(&self) -> usize {
        self.lock().1
    }

    /// Sets the cap, unless more than it is charged now (then returns what is charged and
    /// leaves the cap as it was).
    pub(crate) fn try_set_cap(&self, cap: usize) -> Result<(), usize> {
        let mut s = self.lock();
        if s.1 > cap {
            return Err(s.1);
        }
        s.0 = cap;
        Ok(())
    }

    fn take(&self, n: usize) -> bool {
        let mut s = self.lock();
        match s.1.checked_add(n).filter(|t| *t <= s.0) {
            Some(t) => {
                s.1 = t;
                true
            }
            None => false,
        }
    }

    fn give(&self, n: usize) {
        let mut s = self.lock();
        s.1 = s.1.saturating_sub(n);
    }
}

/// The lease's CPU, shared by the HTTP instances of one deployment: a token bucket of
/// nanoseconds of wasm execution, refilled at the lease's cores (`cpu_millis` / 1000 per
/// second), with a burst of one second of it. The epoch callback charges each store's running
/// time to it; a deployment past its share is made to wait (its task sleeps, the ingress's
/// threads serve others) instead of running on.
#[derive(Debug)]
pub(crate) struct CpuBudget {
    /// Nanoseconds of execution per second of wall time.
    rate: f64,
    burst: f64,
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl CpuBudget {
    pub(crate) fn new(cpu_millis: u64) -> Self {
        // At least a tenth of a core: a lease with less still gets requests through.
        let rate = (cpu_millis.max(100) as f64) * 1e6;
        Self {
            rate,
            burst: rate,
            state: std::sync::Mutex::new((rate, std::time::Instant::now())),
        }
    }

    /// Charges `ran` of execution; how long to wait when the bucket is in deficit.
    pub(crate) fn charge(&self, ran: std::time::Duration) -> Option<std::time::Duration> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        let refill = now.saturating_duration_since(s.1).as_nanos() as f64 * self.rate / 1e9;
        s.0 = (s.0 + refill).min(self.burst) - ran.as_nanos() as f64;
        s.1 = now;
        (s.0 < 0.0).then(|| std::time::Duration::from_nanos((-s.0 / self.rate * 1e9) as u64))
    }
}

/// Caps linear memory at the lease's memory (per store, and within a shared
/// [`MemoryBudget`] when there is one) and tables at a fixed number of elements, and records
/// the peak.
#[derive(Debug)]
pub(crate) struct Limiter {
    mem_cap: usize,
    table_cap: usize,
    peak: usize,
    denied_memory: bool,
    /// The shared budget, and what this store has charged to it.
    budget: Option<(std::sync::Arc<MemoryBudget>, usize)>,
    /// The last refusal was the shared budget's, not this store's cap.
    denied_by_budget: bool,
}

impl Limiter {
    pub(crate) fn new(mem_cap: usize, table_cap: usize) -> Self {
        Self {
            mem_cap,
            table_cap,
            peak: 0,
            denied_memory: false,
            budget: None,
            denied_by_budget: false,
        }
    }

    /// This store's memory also counts against `budget`.
    pub(crate) fn sharing(mut self, budget: std::sync::Arc<MemoryBudget>) -> Self {
        self.budget = Some((budget, 0));
        self
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    pub(crate) fn mem_cap(&self) -> usize {
        self.mem_cap
    }

    /// Whether a memory growth was refused since the last reset.
    pub(crate) fn denied_memory(&self) -> bool {
        self.denied_memory
    }

    /// Whether the last refusal was the shared budget's (other stores hold the memory).
    pub(crate) fn denied_by_budget(&self) -> bool {
        self.denied_by_budget
    }

    pub(crate) fn reset_denied(&mut self) {
        self.denied_memory = false;
        self.denied_by_budget = false;
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        if let Some((budget, charged)) = &self.budget {
            budget.give(*charged);
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.mem_cap {
            self.denied_memory = true;
            return Ok(false);
        }
        if let Some((budget, charged)) = &mut self.budget {
            let more = desired.saturating_sub(current);
            if !budget.take(more) {
                self.denied_memory = true;
                self.denied_by_budget = true;
                return Ok(false);
            }
            *charged = charged.saturating_add(more);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_cap)
    }
}

/// A store's data.
pub(crate) struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) hooks: Hooks,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    /// When the call in progress must end (see `Instance::arm`).
    pub(crate) deadline: std::time::Instant,
    /// HTTP instances: the deployment's CPU budget, and when this store's running time was
    /// last charged to it.
    pub(crate) cpu: Option<(std::sync::Arc<CpuBudget>, std::time::Instant)>,
    env: Env,
    /// The guest's stdout and stderr (a panic message goes there), turned into log lines
    /// after every call; `seen` is how much of each was already logged.
    stdio: [(MemoryOutputPipe, usize, &'static str); 2],
}

/// Bytes of stdout and of stderr kept per instance; past it the guest's writes fail.
const STDIO_CAP: usize = 64 * 1024;
/// Most random bytes one `wasi:random` call returns.
pub(crate) const MAX_RANDOM: u64 = 1 << 20;
/// Most WASI resources (pollables, streams, …) an instance holds at once.
pub(crate) const MAX_HANDLES: usize = 1024;
/// Largest `wasi:http` `fields` (headers, trailers) one resource holds, in its in-memory form.
pub(crate) const MAX_FIELDS_BYTES: usize = 32 * 1024;

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl HostState {
    pub(super) fn new(env: Env, limiter: Limiter, hooks: Hooks) -> Self {
        // No arguments, no environment, no stdio, no preopened directories, and the default
        // socket policy, which refuses every address: a plugin reaches nothing but the host
        // functions of its world.
        // stdout and stderr go to in-memory pipes, whose lines end up in the deployment's logs.
        let out = MemoryOutputPipe::new(STDIO_CAP);
        let err = MemoryOutputPipe::new(STDIO_CAP);
        let wasi = WasiCtxBuilder::new()
            .allow_ip_name_lookup(false)
            .stdout(out.clone())
            .stderr(err.clone())
            // One `get-random-bytes` call asks for at most this much (wasmtime's default is
            // 64 MiB, which takes longer to fill than a call may last).
            .max_random_size(MAX_RANDOM)
            .build();
        let mut table = ResourceTable::new();
        // Every WASI handle a plugin holds (pollables, streams …) is an entry here.
        table.set_max_capacity(MAX_HANDLES);
        Self {
            wasi,
            http: {
                // A `fields` resource the guest builds holds at most this much host memory
                // (wasmtime's default is 128 KiB); with `MAX_HANDLES` that bounds what an
                // instance can hold outside its linear memory.
                let mut ctx = WasiHttpCtx::new();
                ctx.set_field_size_limit(MAX_FIELDS_BYTES);
                ctx
            },
            hooks,
            table,
            limiter,
            deadline: std::time::Instant::now(),
            cpu: None,
            env,
            stdio: [(out, 0, "info"), (err, 0, "error")],
        }
    }

    /// Logs what the guest wrote to stdout and stderr since the last call, a line at a time;
    /// with `all`, an unfinished last line too (after a trap nothing more will come).
    pub(crate) fn drain_stdio(&mut self, all: bool) {
        for (pipe, seen, level) in &mut self.stdio {
            let bytes = pipe.contents();
            let Some(fresh) = bytes.get(*seen..).filter(|f| !f.is_empty()) else {
                continue;
            };
            let upto = if all {
                fresh.len()
            } else {
                fresh.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
            };
            for line in fresh[..upto].split(|b| *b == b'\n') {
                let line = String::from_utf8_lossy(line);
                let line = line.trim_end();
                if !line.is_empty() {
                    self.env.logs.plugin(level, line.to_owned());
                }
            }
            *seen += upto;
        }
    }

    pub(crate) fn kv_used(&self) -> u64 {
        self.env.kv.used()
    }

    pub(crate) fn logs(&self) -> &crate::plugin::logs::Logs {
        &self.env.logs
    }

    /// The deployment's control plane.
    pub(super) fn control(&self) -> &crate::plugin::control::Control {
        &self.env.control
    }

    /// How long a host call may still wait: up to the call's deadline, less a margin so that
    /// the answer (an error at worst) reaches the plugin before the deadline traps it.
    pub(super) fn wait_left(&self) -> std::time::Duration {
        self.deadline
            .saturating_duration_since(std::time::Instant::now())
            .saturating_sub(std::time::Duration::from_millis(5))
    }

    pub(super) fn into_env(self) -> Env {
        self.env
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl lease::Host for HostState {
    fn info(&mut self) -> lease::LeaseInfo {
        let i = &self.env.info;
        lease::LeaseInfo {
            lease_id: i.lease_id.clone(),
            deployment_id: i.deployment_id.clone(),
            host: i.host.clone(),
            tenant: i.tenant.clone(),
            slice: lease::Slice {
                cpu_millis: u32::try_from(i.slice.cpu_millis).unwrap_or(u32::MAX),
                mem_bytes: i.slice.mem_bytes,
                disk_bytes: i.slice.disk_bytes,
                gpus: i.slice.gpus,
            },
            starts_at: i.starts_at,
            ends_at: i.ends_at,
            package_name: i.package_name.clone(),
            package_version: i.package_version.clone(),
        }
    }
}

fn kv_error(e: KvError) -> kv::Error {
    match e {
        KvError::QuotaExceeded(q) => kv::Error::QuotaExceeded(q),
        KvError::ValueTooLarge(m) => kv::Error::ValueTooLarge(m),
        KvError::InvalidKey => kv::Error::InvalidKey,
        KvError::Storage(s) => kv::Error::Storage(s),
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        match self.env.kv.get(&key) {
            Ok(v) => v,
            Err(e) => {
                self.env.logs.host("error", format!("kv get failed: {e}"));
                None
            }
        }
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), kv::Error> {
        self.env.kv.set(&key, &value).map_err(kv_error)
    }

    fn delete(&mut self, key: String) -> Result<bool, kv::Error> {
        self.env.kv.delete(&key).map_err(kv_error)
    }

    fn list(&mut self, prefix: String, limit: u32) -> Vec<String> {
        match self.env.kv.list(&prefix, limit) {
            Ok(v) => v,
            Err(e) => {
                self.env.logs.host("error", format!("kv list failed: {e}"));
                Vec::new()
            }
        }
    }

    fn usage(&mut self) -> (u64, u64) {
        (self.env.kv.used(), self.env.kv.quota())
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.env.logs.plugin(level, message);
    }
}

#[cfg(test)]
mod budget_tests {
    use std::sync::Arc;

    use wasmtime::ResourceLimiter as _;

    use super::{Limiter, MemoryBudget};

    #[test]
    fn stores_sharing_a_budget_stay_within_it_together() {
        let budget = Arc::new(MemoryBudget::new(10 << 20));
        let mut a = Limiter::new(8 << 20, 10).sharing(Arc::clone(&budget));
        let mut b = Limiter::new(8 << 20, 10).sharing(Arc::clone(&budget));
        assert!(a.memory_growing(0, 6 << 20, None).unwrap_or(false));
        // Within its own cap, but not within what is left of the budget.
        assert!(!b.memory_growing(0, 6 << 20, None).unwrap_or(true));
        assert!(b.denied_memory() && b.denied_by_budget());
        assert!(b.memory_growing(0, 4 << 20, None).unwrap_or(false));
        assert_eq!(budget.used(), 10 << 20);
        // Over its own cap: refused as before, whatever the budget.
        assert!(!a.memory_growing(6 << 20, 9 << 20, None).unwrap_or(true));
        drop(a);
        assert_eq!(
            budget.used(),
            4 << 20,
            "a dropped store gives its memory back"
        );
        let mut c = Limiter::new(8 << 20, 10).sharing(Arc::clone(&budget));
        assert!(c.memory_growing(0, 6 << 20, None).unwrap_or(false));
        drop((b, c));
        assert_eq!(budget.used(), 0);
    }
}
