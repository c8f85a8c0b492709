//! Child workloads: components a hosted deployment starts inside its own lease through the
//! `degroup:plugin/workload` interface.
//!
//! **A child is a hosted deployment record with a parent** ([`Record::child`]: the parent's id
//! and the child's limits). Everything a deployment has, a child has the same way: the
//! supervisor's record (durable, `ps`, `logs`, `stop`), a worker ([`worker::spawn`]: the same
//! guards, restart policy with backoff and failure window), its key-value store and logs,
//! metering under the parent's lease id (so its usage lands in that lease's receipts), the
//! stop with the lease, and the resume after a node restart (parents first; a child whose
//! parent does not come back is stopped). What differs:
//!
//! - its memory cap is its `mem-bytes` and its key-value quota its `kv-bytes` (the slice its
//!   [`LeaseInfo`] shows), and its worker holds a fuel rate of `fuel-per-second`;
//! - its limits come out of the parent's lease, checked by [`super::capacity`] (the rule is
//!   there): the parent's memory budget and key-value quota shrink as children start and grow
//!   back as they stop or fail;
//! - it has no mesh and no children of its own (its control plane is detached).
//!
//! `start` answers at once: the actor checks the reference (a `blake3:` package-file hash, or
//! a release reference resolved in this host's catalogue with its trust) and the capacity,
//! writes the record (`starting`) durably and returns the id; the package is fetched and
//! compiled in a task of its own, which reports back ([`ChildCommand::Ready`] or
//! [`ChildCommand::Failed`]): no task of the actor waits on it.
//!
//! **Children stop** when their parent stops or fails (any reason), with the lease, and when
//! the parent is upgraded to a component that does not import `degroup:plugin/workload`; an
//! upgrade to one that does adopts them. A child's failure never fails its parent.
//!
//! **Routes**: `route(name, child)` sends the requests for one of the parent's claimed host
//! names to a child that serves HTTP; `route(name, parent)` gives it back. The delegation is
//! kept in memory by the route table (a parent sets it again after a node restart, e.g. in
//! `init`) and goes when the child or the parent stops.
//!
//! The time from `start` to the child running is the histogram
//! `degroup_child_start_seconds`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use futures::future::BoxFuture;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::{mpsc, oneshot};

use super::Actor;
use crate::plugin::control::{ChildLimits, ChildStatus, Control, WorkloadError, Workloads};
use crate::plugin::deployment::{self, ChildOf, PackageRef, Record, Side, State};
use crate::plugin::kv::Kv;
use crate::plugin::runtime::{Compiled, LeaseInfo};
use crate::plugin::supervisor::capacity::{LeaseShare, admit, parent_share};
use crate::plugin::wire::{MAX_REFERENCE, check_config};
use crate::plugin::worker::Started;
use crate::resources::now_ms;
use crate::store::{Domain, Op};

/// Requests from the deployments' `workload` host functions (and the tasks that fetch and
/// compile children) waiting for the actor.
pub(super) const QUEUE: usize = 256;

/// Time from `workload.start` to the child running.
pub(crate) static CHILD_START: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 20)));

/// What the actor is asked about children.
pub(crate) enum ChildCommand {
    Start {
        parent: String,
        package: String,
        config: Vec<(String, String)>,
        limits: ChildLimits,
        reply: oneshot::Sender<Result<String, WorkloadError>>,
    },
    Stop {
        parent: String,
        id: String,
        reply: oneshot::Sender<Result<(), WorkloadError>>,
    },
    List {
        parent: String,
        reply: oneshot::Sender<Vec<ChildStatus>>,
    },
    Status {
        parent: String,
        id: String,
        reply: oneshot::Sender<Option<ChildStatus>>,
    },
    Route {
        parent: String,
        host_name: String,
        id: String,
        reply: oneshot::Sender<Result<(), WorkloadError>>,
    },
    /// A child's package is here and compiled.
    Ready {
        id: String,
        package: Box<PackageRef>,
        compiled: Box<Compiled>,
    },
    /// A child's package could not be fetched or compiled.
    Failed { id: String, reason: String },
}

/// The actor's state about children.
pub(super) struct ChildState {
    pub(super) tx: mpsc::Sender<ChildCommand>,
    pub(super) rx: mpsc::Receiver<ChildCommand>,
    /// The lease info of each hosted deployment that runs (what its children come out of).
    leases: HashMap<String, LeaseInfo>,
    /// When each starting child was asked for.
    asked: HashMap<String, Instant>,
}

impl ChildState {
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            rx,
            leases: HashMap::new(),
            asked: HashMap::new(),
        }
    }
}

/// One deployment's children, as its instances' `workload` host functions see them.
struct Children {
    parent: String,
    tx: mpsc::Sender<ChildCommand>,
}

fn gone() -> WorkloadError {
    WorkloadError::Unavailable("the host's supervisor is shutting down".into())
}

impl Children {
    async fn ask<T>(
        tx: mpsc::Sender<ChildCommand>,
        make: impl FnOnce(oneshot::Sender<T>) -> ChildCommand,
    ) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply)).await.ok()?;
        rx.await.ok()
    }
}

impl Workloads for Children {
    fn start(
        &self,
        package: String,
        config: Vec<(String, String)>,
        limits: ChildLimits,
    ) -> BoxFuture<'static, Result<String, WorkloadError>> {
        let (tx, parent) = (self.tx.clone(), self.parent.clone());
        Box::pin(async move {
            Self::ask(tx, |reply| ChildCommand::Start {
                parent,
                package,
                config,
                limits,
                reply,
            })
            .await
            .unwrap_or_else(|| Err(gone()))
        })
    }

    fn stop(&self, id: String) -> BoxFuture<'static, Result<(), WorkloadError>> {
        let (tx, parent) = (self.tx.clone(), self.parent.clone());
        Box::pin(async move {
            Self::ask(tx, |reply| ChildCommand::Stop { parent, id, reply })
                .await
                .unwrap_or_else(|| Err(gone()))
        })
    }

    fn list(&self) -> BoxFuture<'static, Vec<ChildStatus>> {
        let (tx, parent) = (self.tx.clone(), self.parent.clone());
        Box::pin(async move {
            Self::ask(tx, |reply| ChildCommand::List { parent, reply })
                .await
                .unwrap_or_default()
        })
    }

    fn status(&self, id: String) -> BoxFuture<'static, Option<ChildStatus>> {
        let (tx, parent) = (self.tx.clone(), self.parent.clone());
        Box::pin(async move {
            Self::ask(tx, |reply| ChildCommand::Status { parent, id, reply })
                .await
                .flatten()
        })
    }

    fn route(
        &self,
        host_name: String,
        id: String,
    ) -> BoxFuture<'static, Result<(), WorkloadError>> {
        let (tx, parent) = (self.tx.clone(), self.parent.clone());
        Box::pin(async move {
            Self::ask(tx, |reply| ChildCommand::Route {
                parent,
                host_name,
                id,
                reply,
            })
            .await
            .unwrap_or_else(|| Err(gone()))
        })
    }
}

/// A package reference a child asks for, resolved on this host.
struct Resolved {
    blob: [u8; 32],
    /// Size of the package file, when a release names it.
    size: Option<u64>,
    name: String,
    version: String,
    publisher: [u8; 32],
}

/// Stopped or failed children a parent keeps on record (for `ps`, `status`, `logs`); older
/// ones are forgotten when it starts another.
pub(crate) const KEEP_DEAD_CHILDREN: usize = 16;

fn parse_blake3(text: &str) -> Option<[u8; 32]> {
    let hex_part = text.strip_prefix("blake3:")?;
    let bytes = hex::decode(hex_part).ok()?;
    <[u8; 32]>::try_from(bytes).ok()
}

impl Actor {
    /// Gives a hosted deployment (not a child) its children.
    pub(super) fn attach_children(&self, r: &Record, control: &mut Control) {
        if r.side == Side::Host && r.child.is_none() {
            control.workloads = Arc::new(Children {
                parent: r.id.clone(),
                tx: self.children.tx.clone(),
            });
        } else if r.child.is_some() {
            control.workloads = Arc::new(crate::plugin::control::NoWorkloads::CHILD);
        }
    }

    pub(super) fn child_command(&mut self, cmd: ChildCommand) {
        match cmd {
            ChildCommand::Start {
                parent,
                package,
                config,
                limits,
                reply,
            } => {
                let _ = reply.send(self.start_child(&parent, package, config, limits));
            }
            ChildCommand::Stop { parent, id, reply } => {
                let result = match self.own_child(&parent, &id) {
                    Some(r) if r.state == State::Stopped => Ok(()),
                    Some(r) => self
                        .stop(&r.id, "stopped by its parent".into())
                        .map_err(|e| WorkloadError::Unavailable(e.to_string())),
                    None => Err(WorkloadError::Unknown),
                };
                let _ = reply.send(result);
            }
            ChildCommand::List { parent, reply } => {
                let mut all: Vec<&Record> = self
                    .records
                    .values()
                    .filter(|r| r.parent() == Some(parent.as_str()) && r.state != State::Stopped)
                    .collect();
                all.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
                let list = all.into_iter().map(|r| self.child_status(r)).collect();
                let _ = reply.send(list);
            }
            ChildCommand::Status { parent, id, reply } => {
                let s = self.own_child(&parent, &id).map(|r| self.child_status(&r));
                let _ = reply.send(s);
            }
            ChildCommand::Route {
                parent,
                host_name,
                id,
                reply,
            } => {
                let _ = reply.send(self.route_child(&parent, &host_name, &id));
            }
            ChildCommand::Ready {
                id,
                package,
                compiled,
            } => self.child_ready(&id, *package, *compiled),
            ChildCommand::Failed { id, reason } => self.child_failed(&id, reason),
        }
    }

    /// The record of a child of `parent`, by exact id.
    fn own_child(&self, parent: &str, id: &str) -> Option<Record> {
        let id = id.trim().to_ascii_lowercase();
        self.records
            .get(&id)
            .filter(|r| r.parent() == Some(parent))
            .cloned()
    }

    fn child_status(&self, r: &Record) -> ChildStatus {
        let (state, reason, counters) = self.live(r);
        let counters = counters.unwrap_or_default();
        ChildStatus {
            id: r.id.clone(),
            package: r.package.reference.clone(),
            state,
            reason,
            restarts: counters.starts.saturating_sub(1),
            mem_bytes: counters.peak_mem_bytes,
            fuel: counters.fuel,
            limits: r.child.as_ref().map(|c| c.limits).unwrap_or_default(),
        }
    }

    /// The limits of a parent's children that hold resources (starting, running, backoff).
    fn live_children(&self, parent: &str) -> Vec<ChildLimits> {
        self.records
            .values()
            .filter(|r| r.state.is_live())
            .filter_map(|r| r.child.as_ref().filter(|c| c.parent == parent))
            .map(|c| c.limits)
            .collect()
    }

    fn lease_share(&self, info: &LeaseInfo) -> LeaseShare {
        LeaseShare::of(info, self.runtime.limits().fuel_per_cpu_milli)
    }

    /// The lease info an instance of `r` runs with: a child's slice is its limits; a parent's
    /// key-value quota is what its children leave (and its memory budget is set to what they
    /// leave). Remembers a parent's lease info for its children.
    pub(super) fn info_for(&mut self, r: &Record, mut info: LeaseInfo) -> LeaseInfo {
        if let Some(c) = &r.child {
            let per_milli = self.runtime.limits().fuel_per_cpu_milli.max(1);
            info.slice.mem_bytes = c.limits.mem_bytes;
            info.slice.disk_bytes = c.limits.kv_bytes;
            info.slice.cpu_millis = c.limits.fuel_per_second / per_milli;
            info.slice.gpus = 0;
            return info;
        }
        if r.side != Side::Host {
            return info;
        }
        self.children.leases.insert(r.id.clone(), info.clone());
        let share = parent_share(&self.lease_share(&info), &self.live_children(&r.id));
        let budget = self.runtime.memory_budget(&r.id, share.mem_cap);
        if let Err(used) = budget.try_set_cap(usize::try_from(share.mem_cap).unwrap_or(usize::MAX))
        {
            tracing::warn!(deployment = %r.id, used, "parent holds more memory than its children leave it");
        }
        info.slice.disk_bytes = share.kv_quota;
        info
    }

    /// The memory budget of a deployment's HTTP instances, when it serves HTTP here.
    fn http_budget(&self, id: &str) -> Option<Arc<crate::plugin::runtime::host::MemoryBudget>> {
        let side = self.http.as_ref()?;
        let shares = side
            .shares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shares.get(id).map(|s| Arc::clone(s.memory_budget()))
    }

    /// Sets a running parent's memory budgets (its worker's, its HTTP instances') and
    /// key-value quota to what its children leave.
    pub(super) fn apply_parent_share(&self, parent: &str) {
        let Some(info) = self.children.leases.get(parent) else {
            return;
        };
        if !self.records.get(parent).is_some_and(|r| r.state.is_live()) {
            return;
        }
        let share = parent_share(&self.lease_share(info), &self.live_children(parent));
        let cap = usize::try_from(share.mem_cap).unwrap_or(usize::MAX);
        let budget = self.runtime.memory_budget(parent, share.mem_cap);
        let _ = budget.try_set_cap(cap);
        if let Some(http) = self.http_budget(parent) {
            let _ = http.try_set_cap(cap);
        }
        match Kv::open(&self.store, parent, share.kv_quota) {
            Ok(kv) => drop(kv),
            Err(e) => {
                tracing::warn!(deployment = %parent, error = %e, "cannot set a parent's quota")
            }
        }
    }

    fn resolve_child_package(&self, package: &str) -> Result<Resolved, WorkloadError> {
        if package.len() > MAX_REFERENCE {
            return Err(WorkloadError::BadPackage(format!(
                "references are at most {MAX_REFERENCE} bytes"
            )));
        }
        let publishers = &self.runtime.limits().publishers;
        let allowed = |p: &[u8; 32]| publishers.is_empty() || publishers.contains(p);
        if package.starts_with("blake3:") {
            let blob = parse_blake3(package).ok_or_else(|| {
                WorkloadError::BadPackage(format!(
                    "{package:?} is not blake3:<64 hex digits> (a package file's hash)"
                ))
            })?;
            let releases = self.distribution.catalogue().by_hash(&blob);
            let release = releases.first().map(|e| e.release.clone());
            if release.is_none() && !self.distribution.blobs().has(&blob) {
                return Err(WorkloadError::BadPackage(format!(
                    "{package}: no release names this hash and this host does not hold it"
                )));
            }
            if let Some(r) = &release
                && !releases.iter().any(|e| allowed(&e.release.publisher))
            {
                return Err(WorkloadError::BadPackage(format!(
                    "{}@{}: its publisher is not allowed on this host",
                    r.name, r.version
                )));
            }
            return Ok(Resolved {
                blob,
                size: release.as_ref().map(|r| r.size),
                name: release.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
                version: release
                    .as_ref()
                    .map(|r| r.version.clone())
                    .unwrap_or_default(),
                publisher: release.map(|r| r.publisher).unwrap_or_default(),
            });
        }
        let staged = self
            .distribution
            .stage_reference(package)
            .map_err(|e| WorkloadError::BadPackage(e.to_string()))?;
        if !allowed(&staged.publisher) {
            return Err(WorkloadError::BadPackage(format!(
                "{}@{}: its publisher is not allowed on this host",
                staged.name, staged.version
            )));
        }
        Ok(Resolved {
            blob: staged.hash,
            size: Some(staged.size),
            name: staged.name,
            version: staged.version,
            publisher: staged.publisher,
        })
    }

    /// Forgets the oldest stopped or failed children of `parent` past [`KEEP_DEAD_CHILDREN`]
    /// (their records, durably, and their logs): a parent that starts and stops children in a
    /// loop holds a bounded number of records on the host, and in every status answer.
    fn prune_dead_children(&mut self, parent: &str) {
        let mut dead: Vec<(u64, String)> = self
            .records
            .values()
            .filter(|r| r.parent() == Some(parent) && !r.state.is_live())
            .map(|r| (r.updated_ms, r.id.clone()))
            .collect();
        if dead.len() <= KEEP_DEAD_CHILDREN {
            return;
        }
        dead.sort();
        let gone: Vec<String> = dead
            .into_iter()
            .rev()
            .skip(KEEP_DEAD_CHILDREN)
            .map(|(_, id)| id)
            .filter(|id| !self.workers.contains_key(id))
            .collect();
        let ops: Vec<Op> = gone
            .iter()
            .map(|id| Op::Delete(Domain::Deployments, id.as_bytes().to_vec()))
            .collect();
        if let Err(e) = self.store.apply_durable(&ops) {
            tracing::warn!(parent = %parent, error = %e, "cannot forget stopped children");
            return;
        }
        for id in &gone {
            self.records.remove(id);
            self.logs.remove(id);
        }
    }

    fn start_child(
        &mut self,
        parent: &str,
        package: String,
        config: Vec<(String, String)>,
        limits: ChildLimits,
    ) -> Result<String, WorkloadError> {
        let Some(p) = self
            .records
            .get(parent)
            .filter(|p| p.side == Side::Host && p.child.is_none() && p.state.is_live())
            .cloned()
        else {
            return Err(WorkloadError::Unavailable(
                "the parent deployment is not running".into(),
            ));
        };
        let Some(info) = self.children.leases.get(parent).cloned() else {
            return Err(WorkloadError::Unavailable(
                "the parent deployment is not running here yet".into(),
            ));
        };
        let hosted = self
            .records
            .values()
            .filter(|r| r.side == Side::Host && r.state.is_live())
            .count();
        let most = self.runtime.limits().max_deployments as usize;
        if hosted >= most {
            return Err(WorkloadError::Unavailable(format!(
                "this host runs its maximum of {most} deployments and children"
            )));
        }
        let max = self.runtime.limits().max_children;
        let children = self.live_children(parent);
        if children.len() >= max as usize {
            return Err(WorkloadError::TooMany(max));
        }
        check_config(&config).map_err(|e| WorkloadError::BadPackage(format!("config: {e}")))?;
        self.prune_dead_children(parent);
        let resolved = self.resolve_child_package(&package)?;
        // What the parent holds now: its worker's memory, its store's bytes.
        let budget = self.runtime.memory_budget(parent, info.slice.mem_bytes);
        let lease = self.lease_share(&info);
        let before = parent_share(&lease, &children);
        let kv = Kv::open(&self.store, parent, before.kv_quota)
            .map_err(|e| WorkloadError::Unavailable(format!("the parent's store: {e}")))?;
        // Its worker's instance and its HTTP instances each stay within what the children
        // leave: the larger is what must fit.
        let http = self.http_budget(parent);
        let used = budget.used().max(http.as_ref().map_or(0, |h| h.used()));
        let share = admit(&lease, &children, used as u64, kv.used(), limits)
            .map_err(WorkloadError::InsufficientCapacity)?;
        let cap = usize::try_from(share.mem_cap).unwrap_or(usize::MAX);
        let grew = |used: usize| {
            WorkloadError::InsufficientCapacity(format!(
                "memory: the parent grew to {used} bytes meanwhile"
            ))
        };
        budget.try_set_cap(cap).map_err(grew)?;
        if let Some(h) = &http
            && let Err(used) = h.try_set_cap(cap)
        {
            self.apply_parent_share(parent);
            return Err(grew(used));
        }
        kv.set_quota(share.kv_quota);
        let mut raw = [0u8; 16];
        if getrandom::fill(&mut raw).is_err() {
            self.apply_parent_share(parent);
            return Err(WorkloadError::Unavailable("no randomness for an id".into()));
        }
        let id = hex::encode(raw);
        let now = now_ms();
        let record = Record {
            id: id.clone(),
            side: Side::Host,
            lease_id: p.lease_id,
            host: p.host.clone(),
            tenant: p.tenant.clone(),
            package: PackageRef {
                name: resolved.name.clone(),
                version: resolved.version.clone(),
                hash: [0; 32],
                publisher: resolved.publisher,
                blob: resolved.blob,
                reference: package,
            },
            config,
            state: State::Starting,
            reason: None,
            created_ms: now,
            updated_ms: now,
            generation: 1,
            request: Vec::new(),
            child: Some(ChildOf {
                parent: parent.to_owned(),
                limits,
            }),
        };
        if let Err(e) = self.save(&record) {
            self.apply_parent_share(parent);
            return Err(WorkloadError::Unavailable(format!(
                "the host cannot store the child: {e}"
            )));
        }
        self.records.insert(id.clone(), record);
        self.children.asked.insert(id.clone(), Instant::now());
        tracing::info!(parent = %parent, child = %id, "child workload starting");
        self.fetch_child(id.clone(), resolved.blob, resolved.size);
        Ok(id)
    }

    /// Fetches and compiles a child's package in a task of its own, which reports back.
    fn fetch_child(&self, id: String, blob: [u8; 32], size: Option<u64>) {
        let dist = self.distribution.clone();
        let runtime = self.runtime.clone();
        let tx = self.children.tx.clone();
        let publishers = self.runtime.limits().publishers.clone();
        tokio::spawn(async move {
            let holder = format!("dep:{id}");
            let package = match size {
                Some(size) => dist.host_fetch(blob, size, &[], &holder).await,
                None => {
                    dist.hold(&blob, &holder);
                    dist.load(&blob).await
                }
            };
            let outcome = match package {
                Err(e) => Err(format!("package not obtained: {e}")),
                Ok(p) if !publishers.is_empty() && !publishers.contains(&p.manifest.publisher) => {
                    Err("the package's publisher is not allowed on this host".into())
                }
                Ok(p) => {
                    let m = p.manifest.clone();
                    let compiled =
                        tokio::task::spawn_blocking(move || runtime.compile(&p.component)).await;
                    match compiled {
                        Ok(Ok(c)) => Ok((m, c)),
                        Ok(Err(e)) => Err(format!("does not compile: {e}")),
                        Err(e) => Err(format!("compiling: {e}")),
                    }
                }
            };
            let cmd = match outcome {
                Ok((m, compiled)) => ChildCommand::Ready {
                    id,
                    package: Box::new(PackageRef {
                        name: m.name,
                        version: m.version,
                        hash: m.hash,
                        publisher: m.publisher,
                        blob,
                        reference: String::new(),
                    }),
                    compiled: Box::new(compiled),
                },
                Err(reason) => ChildCommand::Failed { id, reason },
            };
            let _ = tx.send(cmd).await;
        });
    }

    fn child_ready(&mut self, id: &str, package: PackageRef, compiled: Compiled) {
        let Some(mut r) = self.records.get(id).cloned().filter(|r| r.state.is_live()) else {
            return;
        };
        let Some(parent) = r.parent().map(str::to_owned) else {
            return;
        };
        let Some(mut info) = self.children.leases.get(&parent).cloned() else {
            self.child_failed(id, "its parent no longer runs".into());
            return;
        };
        r.package.name = package.name;
        r.package.version = package.version;
        r.package.hash = package.hash;
        r.package.publisher = package.publisher;
        r.updated_ms = now_ms();
        // Not flushed: what changed is what the package turned out to be, which a restart
        // finds again from the blob the durable record (written at `start`) names. The flush
        // is sled's own, within its flush interval.
        let written = self
            .store
            .tree(Domain::Deployments)
            .and_then(|t| t.insert(r.id.as_bytes(), &deployment::encode(&r)));
        if let Err(e) = written {
            self.child_failed(id, format!("the host cannot store the child: {e}"));
            return;
        }
        self.records.insert(r.id.clone(), r.clone());
        info.deployment_id = r.id.clone();
        info.package_name = r.package.name.clone();
        info.package_version = r.package.version.clone();
        match self.spawn_worker(&r, compiled, info) {
            Ok(started) => {
                let asked = self.children.asked.remove(id);
                let child = r.id.clone();
                let logs = self.logs.get(id).cloned();
                tokio::spawn(async move {
                    if let (Ok(Started::Running), Some(t)) = (started.await, asked) {
                        let took = t.elapsed();
                        CHILD_START.observe(took.as_secs_f64());
                        // In the child's own logs too: what `degroup logs CHILD` shows (and
                        // what `degroup-testnet bench control` reads).
                        if let Some(l) = logs {
                            l.host(
                                "info",
                                format!("running={}µs after workload.start", took.as_micros()),
                            );
                        }
                        tracing::debug!(child = %child, "child workload running");
                    }
                });
            }
            Err(e) => self.child_failed(id, format!("cannot start a worker: {e}")),
        }
    }

    fn child_failed(&mut self, id: &str, reason: String) {
        self.children.asked.remove(id);
        let Some(mut r) = self.records.get(id).cloned().filter(|r| r.state.is_live()) else {
            return;
        };
        tracing::warn!(child = %id, %reason, "child workload failed");
        if let Some(l) = self.logs.get(id) {
            l.host("error", reason.clone());
        }
        r.state = State::Failed;
        r.reason = Some(reason);
        r.updated_ms = now_ms();
        if let Err(e) = self.save(&r) {
            tracing::error!(error = %e, "cannot record a child's failure");
        }
        let parent = r.parent().map(str::to_owned);
        self.records.insert(r.id.clone(), r);
        if let Some(p) = parent {
            self.apply_parent_share(&p);
        }
    }

    /// After a hosted deployment stopped or failed: its children stop, or (a child) its
    /// parent gets back what it held.
    pub(super) fn after_stop(&mut self, id: &str, why: &str) {
        let Some(r) = self.records.get(id).cloned() else {
            return;
        };
        if let Some(parent) = r.parent() {
            if let Some(side) = &self.http {
                side.routes.undelegate_to(id);
            }
            self.apply_parent_share(parent);
            return;
        }
        let children: Vec<String> = self
            .records
            .values()
            .filter(|c| c.parent() == Some(id) && (c.state.is_live() || c.state == State::Failed))
            .map(|c| c.id.clone())
            .collect();
        for c in children {
            if let Err(e) = self.stop(&c, format!("its parent {why}")) {
                tracing::error!(child = %c, error = %e, "cannot stop a child");
            }
        }
        if r.state == State::Stopped {
            self.children.leases.remove(id);
            self.runtime.forget_memory_budget(id);
        }
    }

    /// After a parent's upgrade: code that does not import `degroup:plugin/workload` has its
    /// children stopped; code that does adopts them.
    pub(super) fn after_upgrade(&mut self, id: &str, compiled: &Compiled) {
        if compiled.imports_workload() {
            return;
        }
        let children: Vec<String> = self
            .records
            .values()
            .filter(|c| c.parent() == Some(id) && c.state != State::Stopped)
            .map(|c| c.id.clone())
            .collect();
        for c in children {
            let reason =
                "its parent was upgraded to code that does not import degroup:plugin/workload";
            if let Err(e) = self.stop(&c, reason.into()) {
                tracing::error!(child = %c, error = %e, "cannot stop a child");
            }
        }
    }

    /// Whether a record may run now: a child only while its parent is live.
    pub(super) fn orphan(&self, r: &Record) -> bool {
        r.parent()
            .is_some_and(|p| !self.records.get(p).is_some_and(|p| p.state.is_live()))
    }

    fn route_child(&self, parent: &str, host_name: &str, id: &str) -> Result<(), WorkloadError> {
        let Some(side) = &self.http else {
            return Err(WorkloadError::BadRoute(
                "this host runs no HTTP ingress".into(),
            ));
        };
        let name = side
            .routes
            .check_name(host_name)
            .map_err(|e| WorkloadError::BadRoute(e.to_string()))?;
        if side.routes.holder(&name).as_deref() != Some(parent) {
            return Err(WorkloadError::BadRoute(format!(
                "{name} is not one of this deployment's routes (`degroup deploy --route`)"
            )));
        }
        let id = id.trim().to_ascii_lowercase();
        if id == parent {
            side.routes.delegate(&name, None);
            return Ok(());
        }
        let Some(child) = self.own_child(parent, &id) else {
            return Err(WorkloadError::Unknown);
        };
        if !child.state.is_live() {
            return Err(WorkloadError::BadRoute(format!(
                "child {} is {}",
                child.id, child.state
            )));
        }
        if !side.routes.is_attached(&child.id) {
            return Err(WorkloadError::BadRoute(format!(
                "child {} serves no HTTP (or has not started yet)",
                child.id
            )));
        }
        side.routes.delegate(&name, Some(&child.id));
        Ok(())
    }
}
