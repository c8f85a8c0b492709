//! The sandbox: wasmtime's component model with every guard a host needs to run code it does
//! not trust.
//!
//! One [`Runtime`] per node: one [`Engine`] with the pooling allocator (instance slots,
//! memories and stacks are reserved up front and reused, which is what makes instantiation a
//! few microseconds), fuel metering, epoch interruption and a bounded wasm stack, plus one
//! [`Linker`] with the host functions of the `degroup:plugin` world, WASI (clocks, random;
//! no preopened directories, no sockets allowed) and `wasi:http` (types and an outgoing
//! handler that denies what the deployment does not allow: [`super::http`]). An epoch thread ticks every
//! `plugin.epoch_tick`; each call sets its deadline in ticks, so a loop is interrupted within a
//! tick of its deadline whatever it does.
//!
//! Compiling is done once per component: [`Runtime::compile`] looks in memory, then in the
//! on-disk cache (keyed by the component's hash and the engine's compatibility hash; both
//! bounded in bytes, least recently used first out: [`cache`]), and only then compiles and
//! writes the cache. On a node, compiling a tenant's component runs in a child process under a
//! CPU-time and a memory bound ([`child`], [`Compiler::Child`]); its CPU time comes back with
//! the result ([`Metered`]) to be charged to the lease. The result is an `InstancePre` (imports
//! already resolved), so starting an instance is just allocation plus initialisation. A
//! [`Compiled`] component is a plugin (it exports `init`, `tick`, `message`: a worker runs it),
//! an HTTP handler (it exports `wasi:http/incoming-handler`: an [`super::http::HttpService`]
//! serves it), or both; one that is neither is refused when it is linked.
//!
//! An [`Instance`] is one running copy of a plugin with its own store: memory capped by the
//! lease ([`host::Limiter`]), its deployment's key-value store and log buffer. Each call
//! refuels the store and sets its deadline, and returns a [`Call`]: the plugin's result or the
//! [`Fault`] that stopped it, and the fuel it burnt.

mod cache;
mod child;
mod control;
pub(crate) mod host;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use self::cache::{DiskCache, MemoryCache};
use self::host::{HostState, Limiter};
use super::config::Limits;
use super::control::Control;
use super::http::Hooks;
use super::kv::Kv;
use super::logs::Logs;
use crate::resources::Resources;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../sdk/wit",
    with: {
        "wasi": wasmtime_wasi::p2::bindings,
    },
    // Calls into the plugin are futures: a call blocked in a host function (a `wasi:io/poll`
    // wait) is cancelled by dropping it at its deadline. The host functions of our own
    // interfaces stay synchronous: none of them waits.
    exports: { default: async },
    // The control plane's functions wait on the host (a peer's answer, the supervisor), each
    // bounded by the call's deadline (`control`).
    imports: {
        "degroup:plugin/mesh.members": async,
        "degroup:plugin/mesh.send": async,
        "degroup:plugin/mesh.broadcast": async,
        "degroup:plugin/workload.start": async,
        "degroup:plugin/workload.stop": async,
        "degroup:plugin/workload.list": async,
        "degroup:plugin/workload.status": async,
        "degroup:plugin/workload.route": async,
    },
    require_store_data_send: true,
});

/// The lease and deployment an instance runs under: what the plugin's `lease.info` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// 32 hex digits.
    pub lease_id: String,
    /// 32 hex digits, stable across restarts and upgrades.
    pub deployment_id: String,
    /// Peer ids.
    pub host: String,
    pub tenant: String,
    /// What the lease grants.
    pub slice: Resources,
    /// Unix milliseconds.
    pub starts_at: u64,
    pub ends_at: u64,
    pub package_name: String,
    pub package_version: String,
}

/// Longest text a plugin hands back (an `init` error) that the host keeps; the rest is cut.
pub const MAX_PLUGIN_TEXT: usize = 4096;

/// Cuts `text` to at most `max` bytes at a character boundary, saying so.
pub fn cap_text(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!(" … ({cut} more bytes cut)"));
}

pub use self::child::serve as serve_compile;

/// Longest one wait of an HTTP instance over its deployment's CPU budget (it waits again if
/// still over).
const CPU_WAIT_MAX: Duration = Duration::from_millis(50);

/// Most compilations in child processes at once (each may use `plugin.compile_memory`); more
/// wait their turn.
const MAX_COMPILES: usize = 4;

/// Why the sandbox could not do what was asked (not a plugin fault: see [`Fault`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
    /// The component does not compile: not valid, or past the compile bounds.
    #[error("cannot compile the component: {0}")]
    Compile(String),
    #[error("the component does not fit the degroup:plugin world: {0}")]
    Link(String),
    #[error("cannot start an instance: {0}")]
    Instantiate(String),
    /// Every instance slot of the pool is taken for now: retried, never a failure.
    #[error("no free instance slot on this host for now: {0}")]
    NoSlot(String),
}

/// What stopped a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The call ran past its deadline and was interrupted.
    Deadline(Duration),
    /// The call burnt its fuel allowance.
    OutOfFuel(u64),
    /// The plugin tried to grow its memory past the lease's and then trapped.
    MemoryLimit(u64),
    /// The wasm stack overflowed.
    StackOverflow,
    /// Any other trap (a panic, `unreachable`, out-of-bounds access …), with wasmtime's words.
    Trap(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Deadline(d) => {
                write!(f, "deadline of {} ms exceeded; interrupted", d.as_millis())
            }
            Fault::OutOfFuel(n) => write!(f, "fuel allowance of {n} per call exhausted"),
            Fault::MemoryLimit(n) => write!(
                f,
                "memory limit of {} reached (the lease's memory)",
                crate::capacity::units::format_size(*n)
            ),
            Fault::StackOverflow => write!(f, "wasm stack overflow (deep recursion)"),
            Fault::Trap(s) => write!(f, "trap: {s}"),
        }
    }
}

/// The outcome of one call into a plugin.
#[derive(Debug)]
pub struct Call<T> {
    pub result: Result<T, Fault>,
    /// Fuel burnt by this call.
    pub fuel: u64,
    pub elapsed: Duration,
}

/// A compiled component, ready to instantiate: a plugin (`init`, `tick`, `message`), an HTTP
/// handler (`wasi:http/incoming-handler`), or both.
#[derive(Clone)]
pub struct Compiled {
    pre: Option<PluginPre<HostState>>,
    proxy: Option<ProxyPre<HostState>>,
    /// blake3 of the component bytes.
    pub hash: [u8; 32],
    /// Whether this came from a cache (memory or disk) rather than a fresh compile.
    pub cached: bool,
    /// Whether it imports `degroup:plugin/workload` (it may start children).
    pub imports_workload: bool,
}

/// A compilation and what it cost.
#[derive(Debug)]
pub struct Metered {
    pub result: Result<Compiled, SandboxError>,
    /// CPU time spent compiling, also when it failed: zero for a cache hit. In a child process
    /// it is the child's user + system time; in process ([`Compiler::InProcess`]), wall-clock
    /// time.
    pub cpu: Duration,
}

/// Where components are compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compiler {
    /// In a child process running this binary as `degroup __compile` (the path given), under
    /// the `plugin.compile_*` bounds. What a node uses.
    Child(PathBuf),
    /// In this process, unbounded: for tests and benchmarks whose executable is not `degroup`.
    InProcess,
}

impl Compiler {
    /// A child process of the running `degroup` binary: `/proc/self/exe` where there is one
    /// (the same binary even if the file was replaced since it started), else
    /// [`std::env::current_exe`].
    pub fn this_binary() -> Result<Self, SandboxError> {
        let proc = std::path::Path::new("/proc/self/exe");
        if proc.exists() {
            return Ok(Self::Child(proc.to_owned()));
        }
        std::env::current_exe()
            .map(Self::Child)
            .map_err(|e| SandboxError::Engine(format!("cannot find the degroup binary: {e}")))
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("hash", &hex::encode(self.hash))
            .field("cached", &self.cached)
            .field("plugin", &self.has_plugin())
            .field("http", &self.serves_http())
            .finish_non_exhaustive()
    }
}

impl Compiled {
    /// Whether the component exports `wasi:http/incoming-handler` (it can serve requests).
    pub fn serves_http(&self) -> bool {
        self.proxy.is_some()
    }

    /// Whether the component exports the `degroup:plugin` functions (`init`, `tick`,
    /// `message`): whether a worker can run it.
    pub fn has_plugin(&self) -> bool {
        self.pre.is_some()
    }

    /// Whether it imports `degroup:plugin/workload`: a parent upgraded to code that does not
    /// has its children stopped.
    pub fn imports_workload(&self) -> bool {
        self.imports_workload
    }

    pub(crate) fn proxy(&self) -> Option<&ProxyPre<HostState>> {
        self.proxy.as_ref()
    }
}

/// What an instance runs with.
#[derive(Debug)]
pub struct Env {
    pub info: LeaseInfo,
    pub kv: Kv,
    pub logs: Logs,
    /// Its group's mesh and its children.
    pub control: Control,
}

/// The node's wasm engine and linker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    disk: Option<DiskCache>,
    compiled: Mutex<MemoryCache<Compiled>>,
    compiler: Compiler,
    /// Compilations running in child processes, at most [`MAX_COMPILES`].
    compiling: (Mutex<usize>, Condvar),
    /// Fuel and epoch deadlines on (always, except to measure what they cost).
    guards: bool,
    /// One permit per HTTP instance alive ([`crate::plugin::http`]).
    http_slots: Arc<tokio::sync::Semaphore>,
    /// Memory caps that change while a deployment's instance lives (a parent's, shrunk by
    /// its children's limits), by deployment id: its worker's instances share it.
    budgets: Mutex<std::collections::HashMap<String, Arc<host::MemoryBudget>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .field("disk", &self.disk)
            .field("compiler", &self.compiler)
            .finish_non_exhaustive()
    }
}

fn werr(e: &wasmtime::Error) -> String {
    format!("{e:#}")
}

/// The engine settings that decide what compiled code is, shared by the node's engine and the
/// compile child (`degroup __compile`), so that what the child compiles loads in the node. The
/// node adds the pooling allocator, which does not change compiled code.
pub(crate) fn engine_config(max_wasm_stack: usize, guards: bool) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(guards)
        .epoch_interruption(guards)
        .max_wasm_stack(max_wasm_stack)
        // Calls run on a fiber of this size: the wasm stack plus room for host functions.
        .async_stack_size(max_wasm_stack.saturating_add(1 << 20).max(2 << 20))
        .parallel_compilation(true);
    config
}

/// Length of a compiled component's image: what `serialize` writes, and what it costs to keep.
fn image_len(c: &Component) -> u64 {
    let r = c.image_range();
    r.end.addr().saturating_sub(r.start.addr()) as u64
}

/// A slot of [`Runtime::compiling`], given back on drop.
struct Turn<'a>(&'a (Mutex<usize>, Condvar));

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let (count, freed) = self.0;
        *lock(count) -= 1;
        freed.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Runtime {
    /// An engine with the given limits; compiled code is cached under `cache_dir` when given;
    /// components are compiled where `compiler` says.
    pub fn new(
        limits: Limits,
        cache_dir: Option<PathBuf>,
        compiler: Compiler,
    ) -> Result<Arc<Self>, SandboxError> {
        Self::build(limits, cache_dir, compiler, true)
    }

    /// A runtime **without** fuel metering and epoch deadlines: a plugin that loops never
    /// returns. Only for measuring what the guards cost (`benches/plugin.rs`); the node never
    /// makes one.
    #[doc(hidden)]
    pub fn new_unguarded(limits: Limits) -> Result<Arc<Self>, SandboxError> {
        Self::build(limits, None, Compiler::InProcess, false)
    }

    fn build(
        limits: Limits,
        cache_dir: Option<PathBuf>,
        compiler: Compiler,
        guards: bool,
    ) -> Result<Arc<Self>, SandboxError> {
        let config = pooled_config(&limits, guards);
        let engine = Engine::new(&config).map_err(|e| SandboxError::Engine(werr(&e)))?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| SandboxError::Engine(werr(&e)))?;
        degroup::plugin::lease::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .and_then(|()| degroup::plugin::kv::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .and_then(|()| degroup::plugin::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .and_then(|()| {
                degroup::plugin::mesh::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            })
            .and_then(|()| {
                degroup::plugin::workload::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            })
            .map_err(|e| SandboxError::Engine(werr(&e)))?;
        // `wasi:http/types` and `wasi:http/outgoing-handler`: outgoing requests go through
        // `Hooks::send_request`, which denies what the deployment's policy does not allow.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| SandboxError::Engine(werr(&e)))?;
        let http_slots = Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(limits.http.max_instances).unwrap_or(usize::MAX),
        ));
        let disk = cache_dir
            .map(|dir| DiskCache::open(dir, limits.compile_cache_bytes))
            .transpose()?;
        start_epoch_ticker(&engine, limits.epoch_tick);
        Ok(Arc::new(Self {
            engine,
            linker,
            compiled: Mutex::new(MemoryCache::new(limits.compile_memory_cache_bytes)),
            limits,
            disk,
            compiler,
            compiling: (Mutex::new(0), Condvar::new()),
            guards,
            http_slots,
            budgets: Mutex::new(std::collections::HashMap::new()),
        }))
    }

    /// The limits instances run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a component (or takes it from the memory or disk cache) and resolves its
    /// imports against the host's.
    pub fn compile(&self, wasm: &[u8]) -> Result<Compiled, SandboxError> {
        self.compile_metered(wasm).result
    }

    /// [`Self::compile`], with the CPU time it took (to charge to a lease).
    pub fn compile_metered(&self, wasm: &[u8]) -> Metered {
        let hash = *blake3::hash(wasm).as_bytes();
        let cached = |result| Metered {
            result,
            cpu: Duration::ZERO,
        };
        if let Some(mut c) = lock(&self.compiled).get(&hash) {
            c.cached = true;
            return cached(Ok(c));
        }
        if let Some((component, len)) = self.disk.as_ref().and_then(|d| d.load(&self.engine, &hash))
        {
            return cached(self.link(&component, hash, len, true));
        }
        let (component, cpu) = match &self.compiler {
            Compiler::InProcess => {
                let started = Instant::now();
                let component = Component::new(&self.engine, wasm).map_err(|e| {
                    SandboxError::Compile(format!("not a valid plugin component: {}", werr(&e)))
                });
                let cpu = started.elapsed();
                if let (Ok(c), Some(disk)) = (&component, &self.disk) {
                    match c.serialize() {
                        Ok(artifact) => disk.store(&self.engine, &hash, &artifact),
                        Err(e) => {
                            tracing::warn!(error = %werr(&e), "cannot serialize a compiled component");
                        }
                    }
                }
                (component, cpu)
            }
            Compiler::Child(exe) => {
                let out = {
                    let _turn = self.turn();
                    child::compile(exe, &self.limits, self.guards, wasm)
                };
                tracing::debug!(
                    component = %hex::encode(&hash[..8]),
                    cpu_ms = out.cpu.as_millis() as u64,
                    peak_vm = out.peak_vm,
                    peak_rss = out.peak_rss,
                    ok = out.result.is_ok(),
                    "compiled in a child process"
                );
                let component = out.result.and_then(|artifact| {
                    let c = self.load_artifact(&artifact)?;
                    if let Some(disk) = &self.disk {
                        disk.store(&self.engine, &hash, &artifact);
                    }
                    Ok(c)
                });
                (component, out.cpu)
            }
        };
        let result = component.and_then(|c| self.link(&c, hash, image_len(&c), false));
        Metered { result, cpu }
    }

    /// Loads what the compile child wrote.
    fn load_artifact(&self, artifact: &[u8]) -> Result<Component, SandboxError> {
        // SAFETY: wasmtime requires that deserialized bytes come from `Component::serialize`
        // of a compatible engine. These came from `serialize` in the compile child, which runs
        // this same binary (`Compiler::Child` is the node's own executable) with the same
        // compilation settings (`engine_config`), over a pipe only the two processes hold;
        // wasmtime checks the compatibility (version, target, settings) before loading.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(&self.engine, artifact) };
        loaded.map_err(|e| {
            SandboxError::Engine(format!(
                "the compile child's artifact does not load: {}",
                werr(&e)
            ))
        })
    }

    /// Resolves a component's imports and keeps it in the memory cache.
    fn link(
        &self,
        component: &Component,
        hash: [u8; 32],
        len: u64,
        cached: bool,
    ) -> Result<Compiled, SandboxError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| SandboxError::Link(werr(&e)))?;
        let proxy = ProxyPre::new(pre.clone()).ok();
        let plugin = PluginPre::new(pre);
        let pre = match (plugin, &proxy) {
            (Ok(p), _) => Some(p),
            (Err(_), Some(_)) => None,
            (Err(e), None) => {
                return Err(SandboxError::Link(format!(
                    "exports neither the degroup:plugin world (init, tick, message) nor \
                     wasi:http/incoming-handler ({})",
                    werr(&e)
                )));
            }
        };
        let imports_workload = component
            .component_type()
            .imports(&self.engine)
            .any(|(name, _)| name.starts_with("degroup:plugin/workload"));
        let compiled = Compiled {
            pre,
            proxy,
            hash,
            cached,
            imports_workload,
        };
        lock(&self.compiled).insert(hash, compiled.clone(), len);
        Ok(compiled)
    }

    /// Waits for a free compile slot.
    fn turn(&self) -> Turn<'_> {
        let (count, freed) = &self.compiling;
        let mut n = lock(count);
        while *n >= MAX_COMPILES {
            n = freed
                .wait(n)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *n += 1;
        Turn(&self.compiling)
    }

    /// Bytes held by the memory and disk compile caches.
    #[doc(hidden)]
    pub fn cache_bytes(&self) -> (u64, u64) {
        (
            lock(&self.compiled).used(),
            self.disk.as_ref().map_or(0, DiskCache::used),
        )
    }

    /// A store for an instance under the lease's memory and the epoch deadline callback.
    pub(crate) fn store(
        &self,
        env: Env,
        hooks: Hooks,
        budget: Option<Arc<host::MemoryBudget>>,
        cpu: Option<Arc<host::CpuBudget>>,
    ) -> Store<HostState> {
        let mem_cap = usize::try_from(env.info.slice.mem_bytes).unwrap_or(usize::MAX);
        let mut limiter = Limiter::new(mem_cap, self.limits.max_table_elements);
        if let Some(b) = budget {
            limiter = limiter.sharing(b);
        }
        let mut state = HostState::new(env, limiter, hooks);
        state.cpu = cpu.map(|c| (c, Instant::now()));
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if self.guards {
            // Every epoch tick, a call past its deadline traps; one still within it yields to
            // the executor, so the call's timeout is looked at even while wasm runs. An HTTP
            // instance also charges the time it ran to its deployment's CPU budget, and sleeps
            // when the deployment is past its lease's cores.
            let tick = self.limits.epoch_tick;
            store.epoch_deadline_callback(move |mut ctx| {
                let now = Instant::now();
                let data = ctx.data_mut();
                if now >= data.deadline {
                    return Err(Trap::Interrupt.into());
                }
                if let Some((budget, last)) = &mut data.cpu {
                    // Time since the last charge, at most a few ticks: a store that waited in
                    // a host call (or was not scheduled) is not charged for the wait.
                    let ran = now.saturating_duration_since(*last).min(tick * 4);
                    *last = now;
                    if let Some(wait) = budget.charge(ran) {
                        let wait = wait
                            .min(CPU_WAIT_MAX)
                            .min(data.deadline.saturating_duration_since(now));
                        *last = now + wait;
                        return Ok(UpdateDeadline::YieldCustom(
                            1,
                            Box::pin(tokio::time::sleep(wait)),
                        ));
                    }
                }
                Ok(UpdateDeadline::Yield(1))
            });
        }
        store
    }

    /// The memory budget of a deployment's worker instances, made with `cap` bytes if it
    /// has none (a cap changed since is kept).
    pub(crate) fn memory_budget(&self, deployment: &str, cap: u64) -> Arc<host::MemoryBudget> {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        lock(&self.budgets)
            .entry(deployment.to_owned())
            .or_insert_with(|| Arc::new(host::MemoryBudget::new(cap)))
            .clone()
    }

    /// Forgets a deployment's memory budget (it stopped).
    pub(crate) fn forget_memory_budget(&self, deployment: &str) {
        lock(&self.budgets).remove(deployment);
    }

    /// Whether fuel and epoch deadlines are on.
    pub(crate) fn guards(&self) -> bool {
        self.guards
    }

    /// HTTP instances alive on this host: at most `limits.http.max_instances`.
    pub(crate) fn http_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.http_slots
    }

    /// Starts an instance (no plugin code runs but the component's own start functions, under
    /// the init deadline). On failure the environment is handed back.
    pub async fn instantiate(
        &self,
        compiled: &Compiled,
        env: Env,
    ) -> Result<Instance, (SandboxError, Box<Env>)> {
        let Some(pre) = compiled.pre.as_ref() else {
            return Err((
                SandboxError::Link(
                    "the component serves HTTP only: it does not export the degroup:plugin \
                     world (init, tick, message)"
                        .into(),
                ),
                Box::new(env),
            ));
        };
        let budget = lock(&self.budgets).get(&env.info.deployment_id).cloned();
        let store = self.store(env, Hooks::deny_all(), budget, None);
        let mut instance = Instance {
            store,
            plugin: None,
            fuel_per_call: self.limits.fuel_per_call,
            call_timeout: self.limits.call_timeout,
            init_timeout: self.limits.init_timeout,
            guards: self.guards,
        };
        let timeout = self.limits.init_timeout;
        if let Err(e) = instance.arm(timeout) {
            return Err((e, Box::new(instance.into_env())));
        }
        let started = pre.instantiate_async(&mut instance.store);
        let result = match tokio::time::timeout(timeout, started).await {
            Ok(r) => r,
            Err(_) => Err(Trap::Interrupt.into()),
        };
        match result {
            Ok(plugin) => {
                instance.plugin = Some(plugin);
                Ok(instance)
            }
            Err(e) => {
                let error = if e.is::<wasmtime::PoolConcurrencyLimitError>() {
                    SandboxError::NoSlot(werr(&e))
                } else {
                    SandboxError::Instantiate(classify(&e, &instance.store, timeout).to_string())
                };
                Err((error, Box::new(instance.into_env())))
            }
        }
    }
}

/// Core instances one component may hold (a Rust component has a handful: its module, the
/// WASI shims and fix-ups). Checked when a component is compiled or loaded, so a component
/// built to hold more is refused at deploy, before it takes any slot.
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Tables one component may define.
pub const MAX_TABLES_PER_COMPONENT: u32 = 32;

/// The engine's settings. The pool is sized so that every deployment the host admits fits at
/// the per-component maximum: `max_deployments` (plus a few spare slots for `plugin run` and
/// for workers abandoned as unresponsive) × the per-component limits. A deployment can
/// therefore never take another's slots, whatever its component holds. HTTP instances come on
/// top: `http.max_instances` more slots, which [`Runtime::http_slots`] hands out, so requests
/// can never take a worker's slot either.
pub(crate) fn pooled_config(limits: &Limits, guards: bool) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    // Plus the HTTP instances (`limits.http.max_instances`, host-wide, each with a memory, a
    // table set and, while it serves a request, a stack).
    let slots = limits
        .max_deployments
        .saturating_add(4)
        .saturating_add(limits.http.max_instances);
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(MAX_CORE_INSTANCES_PER_COMPONENT))
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        // One linear memory per component: the lease's memory cap is per memory, so a
        // second one would double it. (Rust and C guests have exactly one.)
        .max_memories_per_component(1)
        .total_memories(slots)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .total_tables(slots.saturating_mul(MAX_TABLES_PER_COMPONENT))
        .table_elements(limits.max_table_elements)
        // One fiber stack per call in flight: a deployment makes one call at a time.
        .total_stacks(slots)
        .max_memory_size(4 << 30)
        .max_unused_warm_slots(slots.min(64));
    let mut config = engine_config(limits.max_stack, guards);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

fn start_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("degroup-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch thread; deadlines will not fire");
    }
}

pub(crate) fn classify(e: &wasmtime::Error, store: &Store<HostState>, timeout: Duration) -> Fault {
    if store.data().limiter.denied_memory() {
        return Fault::MemoryLimit(store.data().limiter.mem_cap() as u64);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Fault::Deadline(timeout),
        Some(Trap::OutOfFuel) => Fault::OutOfFuel(0),
        Some(Trap::StackOverflow) => Fault::StackOverflow,
        _ => {
            // The root cause ("wasm trap: wasm `unreachable` instruction executed"); the
            // wasm backtrace is for debug logs, not for one-line reasons.
            tracing::debug!(error = %format!("{e:#}"), "plugin trap");
            let mut text = e.root_cause().to_string();
            cap_text(&mut text, 2000);
            Fault::Trap(text)
        }
    }
}

/// One running copy of a plugin.
pub struct Instance {
    store: Store<HostState>,
    plugin: Option<Plugin>,
    fuel_per_call: u64,
    call_timeout: Duration,
    init_timeout: Duration,
    guards: bool,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

impl Instance {
    /// The most fuel the next calls may burn (at least 1): what a child's fuel rate leaves it.
    pub fn set_fuel_per_call(&mut self, fuel: u64) {
        self.fuel_per_call = fuel.max(1);
    }

    fn arm(&mut self, timeout: Duration) -> Result<(), SandboxError> {
        if !self.guards {
            return Ok(());
        }
        self.store.data_mut().deadline = Instant::now() + timeout;
        // The callback looks at the deadline every tick.
        self.store.set_epoch_deadline(1);
        self.store
            .set_fuel(self.fuel_per_call)
            .map_err(|e| SandboxError::Instantiate(werr(&e)))
    }

    /// Runs one call under its deadline. The deadline holds whatever the plugin does: while
    /// wasm runs, the epoch callback traps it; while it waits in a host function, the timeout
    /// drops the call's future, which cancels the wait. Either way the instance is not entered
    /// again.
    async fn call<T>(
        &mut self,
        timeout: Duration,
        f: impl AsyncFnOnce(&Plugin, &mut Store<HostState>) -> wasmtime::Result<T>,
    ) -> Call<T> {
        let started = Instant::now();
        let Some(plugin) = self.plugin.take() else {
            return Call {
                result: Err(Fault::Trap("instance is not running".into())),
                fuel: 0,
                elapsed: Duration::ZERO,
            };
        };
        if let Err(e) = self.arm(timeout) {
            return Call {
                result: Err(Fault::Trap(e.to_string())),
                fuel: 0,
                elapsed: Duration::ZERO,
            };
        }
        self.store.data_mut().limiter.reset_denied();
        let result = if self.guards {
            match tokio::time::timeout(timeout, f(&plugin, &mut self.store)).await {
                Ok(r) => r,
                Err(_) => Err(Trap::Interrupt.into()),
            }
        } else {
            f(&plugin, &mut self.store).await
        };
        self.store.data_mut().drain_stdio(result.is_err());
        let fuel = if self.guards {
            let left = self.store.get_fuel().unwrap_or(0);
            self.fuel_per_call.saturating_sub(left)
        } else {
            0
        };
        let result = result.map_err(|e| match classify(&e, &self.store, timeout) {
            Fault::OutOfFuel(_) => Fault::OutOfFuel(self.fuel_per_call),
            other => other,
        });
        // A trapped (or cancelled) component instance cannot be entered again.
        if result.is_ok() {
            self.plugin = Some(plugin);
        }
        Call {
            result,
            fuel,
            elapsed: started.elapsed(),
        }
    }

    /// Calls `init` with the deployment's configuration. The error text is capped at
    /// [`MAX_PLUGIN_TEXT`] bytes.
    pub async fn init(&mut self, config: &[(String, String)]) -> Call<Result<(), String>> {
        let timeout = self.init_timeout;
        let mut call = self
            .call(timeout, async |p, s| p.call_init(s, config).await)
            .await;
        if let Ok(Err(msg)) = &mut call.result {
            cap_text(msg, MAX_PLUGIN_TEXT);
        }
        call
    }

    /// Calls `tick`.
    pub async fn tick(&mut self, now_ms: u64) -> Call<()> {
        let timeout = self.call_timeout;
        self.call(timeout, async |p, s| p.call_tick(s, now_ms).await)
            .await
    }

    /// Calls `message`.
    pub async fn message(&mut self, from: &str, payload: &[u8]) -> Call<()> {
        let timeout = self.call_timeout;
        self.call(timeout, async |p, s| p.call_message(s, from, payload).await)
            .await
    }

    /// Whether the instance can still be called (no trap so far).
    pub fn is_live(&self) -> bool {
        self.plugin.is_some()
    }

    /// Largest linear memory this instance has had, in bytes.
    pub fn peak_memory(&self) -> u64 {
        self.store.data().limiter.peak() as u64
    }

    /// Bytes its key-value store uses.
    pub fn kv_bytes(&self) -> u64 {
        self.store.data().kv_used()
    }

    /// Writes a host line into the deployment's logs.
    pub fn host_log(&self, level: &str, message: String) {
        self.store.data().logs().host(level, message);
    }

    /// Log lines the rate limit dropped so far.
    pub fn logs_dropped(&self) -> u64 {
        self.store.data().logs().dropped()
    }

    /// Gives back the environment (the key-value store and logs) for the next instance.
    pub fn into_env(self) -> Env {
        self.store.into_data().into_env()
    }
}
