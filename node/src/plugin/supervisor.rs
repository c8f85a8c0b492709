//! The plugin supervisor: one actor owns every deployment record and worker; the rest of the
//! node talks to it through a cloneable [`PluginHandle`].
//!
//! Host side, a deploy arriving over `/degroup/deploy/1` is verified and compiled outside the
//! actor (see [`host`]), then installed by the actor: the package and the record are written in
//! one durable batch before the worker starts, and the tenant is answered after the plugin's
//! first `init`. The actor also stops deployments whose lease has ended (checked every
//! second), records failures reported by workers, and at start-up restarts the deployments of
//! active leases with their key-value stores.
//!
//! Tenant side ([`tenant`]), the handle talks to the host directly and only asks the actor to
//! store what the host confirmed, so `ps`, `logs` and `stop` work from the tenant's node too.

mod host;
pub mod tenant;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::deployment::{self, Counters, Record, Side, State, View};
use super::kv::{self, Kv};
use super::logs::{LogPage, Logs};
use super::meter::Meter;
use super::package::Package;
use super::runtime::{Compiled, Env, LeaseInfo, LeaseSlice, Runtime, SandboxError};
use super::wire::{Refusal, RefusalCode};
use super::worker::{self, Started, Worker, WorkerCmd, WorkerEvent};
use crate::capacity::AdvertBook;
use crate::capacity::advert::now_ms;
use crate::identity::Identity;
use crate::lease::{LeaseHandle, Role};
use crate::net::{InboundDeploy, Network};
use crate::store::{Domain, Op, Store, StoreError};

pub use tenant::DeployParams;

/// How often the actor checks that hosted deployments' leases are still active.
const LEASE_CHECK: Duration = Duration::from_secs(1);

/// Plugin failures that reach users.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the host refused: {}", .0.message)]
    Refused(Refusal),
    #[error(
        "cannot reach host {peer}: {reason}; check that it runs and that this node knows its address (`degroup find`)"
    )]
    Unreachable { peer: String, reason: String },
    #[error("the host broke the deploy protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
    #[error("the plugin service has stopped")]
    Stopped,
}

/// A verified deploy or upgrade, ready to install.
pub(crate) struct Install {
    pub record: Record,
    pub package: Package,
    pub compiled: Compiled,
    pub info: LeaseInfo,
    pub upgrade: bool,
}

enum Command {
    List(oneshot::Sender<Vec<View>>),
    Get(String, oneshot::Sender<Result<View, PluginError>>),
    Record(String, oneshot::Sender<Result<Record, PluginError>>),
    Logs(
        String,
        u64,
        u32,
        oneshot::Sender<Result<LogPage, PluginError>>,
    ),
    Install(
        Box<Install>,
        oneshot::Sender<Result<oneshot::Receiver<Started>, Refusal>>,
    ),
    Stop {
        id: String,
        reason: String,
        tenant: Option<String>,
        reply: oneshot::Sender<Result<View, PluginError>>,
    },
    Message {
        id: String,
        from: String,
        payload: Vec<u8>,
        tenant: Option<String>,
        reply: oneshot::Sender<Result<(), PluginError>>,
    },
    SaveTenant(Box<Record>, oneshot::Sender<Result<(), PluginError>>),
    Counts(oneshot::Sender<(usize, usize)>),
}

/// Cloneable handle to the plugin supervisor.
#[derive(Clone)]
pub struct PluginHandle {
    tx: mpsc::Sender<Command>,
    identity: Identity,
    net: Network,
    leases: LeaseHandle,
    adverts: Arc<AdvertBook>,
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for PluginHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHandle").finish_non_exhaustive()
    }
}

impl PluginHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, PluginError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| PluginError::Stopped)?;
        rx.await.map_err(|_| PluginError::Stopped)
    }

    /// Deployments known locally (hosted ones with live counters).
    pub async fn local_list(&self) -> Result<Vec<View>, PluginError> {
        self.ask(Command::List).await
    }

    /// Running hosted deployments and live tenant-side ones.
    pub async fn counts(&self) -> Result<(usize, usize), PluginError> {
        self.ask(Command::Counts).await
    }

    async fn record(&self, id: &str) -> Result<Record, PluginError> {
        self.ask(|r| Command::Record(id.to_owned(), r)).await?
    }

    /// The runtime (for `plugin run` and benchmarks).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}

/// Everything the supervisor starts with.
#[allow(missing_debug_implementations)]
pub struct Deps {
    pub identity: Identity,
    pub store: Store,
    pub runtime: Arc<Runtime>,
    pub leases: LeaseHandle,
    pub net: Network,
    pub adverts: Arc<AdvertBook>,
    pub meter: Meter,
}

/// Loads the records, restarts the deployments of active leases, and spawns the actor.
pub async fn start(
    deps: Deps,
    inbound: mpsc::Receiver<InboundDeploy>,
    shutdown: CancellationToken,
) -> Result<(PluginHandle, tokio::task::JoinHandle<()>), PluginError> {
    let (tx, rx) = mpsc::channel(1024);
    let (events_tx, events) = mpsc::unbounded_channel();
    let mut records = HashMap::new();
    for item in deps.store.tree(Domain::Deployments)?.scan_prefix(b"") {
        let (k, v) = item?;
        match deployment::decode(&v) {
            Ok(r) => {
                records.insert(r.id.clone(), r);
            }
            Err(e) => {
                tracing::error!(key = %String::from_utf8_lossy(&k), error = %e, "unreadable deployment record kept aside")
            }
        }
    }
    let handle = PluginHandle {
        tx,
        identity: deps.identity.clone(),
        net: deps.net.clone(),
        leases: deps.leases.clone(),
        adverts: deps.adverts.clone(),
        runtime: deps.runtime.clone(),
    };
    let mut service = Service {
        store: deps.store,
        runtime: deps.runtime,
        leases: deps.leases,
        meter: deps.meter,
        records,
        workers: HashMap::new(),
        logs: HashMap::new(),
        events_tx,
    };
    service.resume().await;
    let task = tokio::spawn(service.run(rx, inbound, events, handle.clone(), shutdown));
    Ok((handle, task))
}

struct Service {
    store: Store,
    runtime: Arc<Runtime>,
    leases: LeaseHandle,
    meter: Meter,
    records: HashMap<String, Record>,
    workers: HashMap<String, Worker>,
    logs: HashMap<String, Logs>,
    events_tx: mpsc::UnboundedSender<WorkerEvent>,
}

fn info_of(r: &Record, lease: &crate::lease::book::Lease) -> LeaseInfo {
    let c = &lease.contract;
    LeaseInfo {
        lease_id: hex::encode(r.lease_id),
        deployment_id: r.id.clone(),
        host: r.host.clone(),
        tenant: r.tenant.clone(),
        slice: LeaseSlice {
            cpu_millis: u32::try_from(c.slice.cpu_millis).unwrap_or(u32::MAX),
            mem_bytes: c.slice.mem_bytes,
            disk_bytes: c.slice.disk_bytes,
            gpus: c.slice.gpus,
        },
        starts_at: c.starts_at_ms,
        ends_at: c.ends_at_ms,
        package_name: r.package.name.clone(),
        package_version: r.package.version.clone(),
    }
}

/// Whether a lease is active now (not ended, not past its end).
pub(crate) fn lease_active(lease: &crate::lease::book::Lease, now: u64) -> bool {
    lease.stored.ended.is_none() && now < lease.contract.ends_at_ms && !lease.stored.pending
}

impl Service {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<InboundDeploy>,
        mut events: mpsc::UnboundedReceiver<WorkerEvent>,
        handle: PluginHandle,
        shutdown: CancellationToken,
    ) {
        let mut check = tokio::time::interval(LEASE_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(cmd) = rx.recv() => self.command(cmd).await,
                Some(msg) = inbound.recv() => {
                    let h = handle.clone();
                    tokio::spawn(async move { h.inbound(msg).await });
                }
                Some(ev) = events.recv() => self.event(ev).await,
                _ = check.tick() => self.check_leases().await,
            }
        }
        let workers: Vec<Worker> = self.workers.drain().map(|(_, w)| w).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                w.stop();
            }
        })
        .await;
    }

    fn find(&self, text: &str) -> Result<&Record, PluginError> {
        let t = text.trim().to_ascii_lowercase();
        if t.len() < 4 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(PluginError::BadInput(format!(
                "{text:?} is not a deployment id (hex, at least 4 digits; see `degroup ps`)"
            )));
        }
        if let Some(r) = self.records.get(&t) {
            return Ok(r);
        }
        let mut found = self.records.values().filter(|r| r.id.starts_with(&t));
        match (found.next(), found.next()) {
            (Some(r), None) => Ok(r),
            (Some(_), Some(_)) => Err(PluginError::BadInput(format!(
                "deployment id prefix {t} is ambiguous; give more digits"
            ))),
            _ => Err(PluginError::NotFound(format!(
                "no deployment {t} on this node; `degroup ps` lists them"
            ))),
        }
    }

    fn view(&self, r: &Record) -> View {
        let mut r = r.clone();
        let counters = self.workers.get(&r.id).map(|w| {
            let (state, reason, counters) = w.shared.snapshot();
            if r.state.is_live() {
                r.state = state;
                if reason.is_some() {
                    r.reason = reason;
                }
            }
            counters
        });
        View::of(
            &r,
            counters.or_else(|| (r.side == Side::Host).then(Counters::default)),
        )
    }

    fn save(&self, r: &Record) -> Result<(), StoreError> {
        self.store.apply_durable(&[Op::Put(
            Domain::Deployments,
            r.id.as_bytes().to_vec(),
            deployment::encode(r),
        )])
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::List(reply) => {
                let mut all: Vec<View> = self.records.values().map(|r| self.view(r)).collect();
                all.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
                let _ = reply.send(all);
            }
            Command::Counts(reply) => {
                let host = self
                    .records
                    .values()
                    .filter(|r| r.side == Side::Host && r.state.is_live())
                    .count();
                let tenant = self
                    .records
                    .values()
                    .filter(|r| r.side == Side::Tenant && r.state.is_live())
                    .count();
                let _ = reply.send((host, tenant));
            }
            Command::Get(id, reply) => {
                let _ = reply.send(self.find(&id).map(|r| self.view(r)));
            }
            Command::Record(id, reply) => {
                let _ = reply.send(self.find(&id).cloned());
            }
            Command::Logs(id, after, limit, reply) => {
                let result = self.find(&id).map(|r| r.id.clone()).and_then(|id| {
                    self.logs.get(&id).map(|l| l.read(after, limit as usize)).ok_or_else(|| {
                        PluginError::NotFound(format!(
                            "deployment {id} runs on another node; ask its host (this node keeps logs only of what it runs)"
                        ))
                    })
                });
                let _ = reply.send(result);
            }
            Command::Install(install, reply) => {
                let result = self.install(*install).await;
                let _ = reply.send(result);
            }
            Command::Stop {
                id,
                reason,
                tenant,
                reply,
            } => {
                let result = match self.find(&id).cloned() {
                    Ok(r) if tenant.as_ref().is_some_and(|t| *t != r.tenant) => Err(
                        PluginError::NotFound(format!("no deployment {id} of yours here")),
                    ),
                    Ok(r) => self.stop(&r.id, State::Stopped, reason).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::Message {
                id,
                from,
                payload,
                tenant,
                reply,
            } => {
                let result = match self.find(&id).cloned() {
                    Ok(r) if tenant.as_ref().is_some_and(|t| *t != r.tenant) => Err(
                        PluginError::NotFound(format!("no deployment {id} of yours here")),
                    ),
                    Ok(r) => match self.workers.get(&r.id) {
                        Some(w)
                            if w.shared.snapshot().0 == State::Running
                                && w.send(WorkerCmd::Message { from, payload }) =>
                        {
                            Ok(())
                        }
                        _ => Err(PluginError::BadInput(format!(
                            "deployment {} is {}; messages go only to running deployments",
                            r.id,
                            self.view(&r).state
                        ))),
                    },
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::SaveTenant(record, reply) => {
                let result = self.save(&record).map_err(PluginError::from);
                if result.is_ok() {
                    self.records.insert(record.id.clone(), *record);
                }
                let _ = reply.send(result);
            }
        }
    }

    async fn event(&mut self, ev: WorkerEvent) {
        match ev {
            WorkerEvent::Failed { id, reason } => {
                tracing::warn!(deployment = %id, %reason, "deployment failed");
                if let Some(r) = self.records.get_mut(&id) {
                    r.state = State::Failed;
                    r.reason = Some(reason);
                    r.updated_ms = now_ms();
                    let r = r.clone();
                    if let Err(e) = self.save(&r) {
                        tracing::error!(error = %e, "cannot record a deployment failure");
                    }
                }
                if let Some(w) = self.workers.remove(&id) {
                    let _ = tokio::task::spawn_blocking(move || w.stop()).await;
                }
            }
        }
    }

    fn env_for(&mut self, r: &Record, info: LeaseInfo) -> Result<Env, PluginError> {
        let kv = Kv::open(&self.store, &r.id, info.slice.disk_bytes)
            .map_err(|e| PluginError::Store(StoreError::Db(e.to_string())))?;
        let limits = self.runtime.limits();
        let logs = self
            .logs
            .entry(r.id.clone())
            .or_insert_with(|| Logs::new(limits.log_lines, limits.log_rate))
            .clone();
        Ok(Env { info, kv, logs })
    }

    fn spawn_worker(
        &mut self,
        r: &Record,
        compiled: Compiled,
        info: LeaseInfo,
    ) -> Result<oneshot::Receiver<Started>, PluginError> {
        let env = self.env_for(r, info)?;
        let (started, rx) = oneshot::channel();
        let w = worker::spawn(
            worker::Spec {
                id: r.id.clone(),
                lease: r.lease_id,
                runtime: self.runtime.clone(),
                compiled,
                env,
                config: r.config.clone(),
                meter: self.meter.clone(),
                events: self.events_tx.clone(),
            },
            started,
        )
        .map_err(|e| PluginError::BadInput(format!("cannot start a worker thread: {e}")))?;
        self.workers.insert(r.id.clone(), w);
        Ok(rx)
    }

    async fn install(&mut self, install: Install) -> Result<oneshot::Receiver<Started>, Refusal> {
        let Install {
            mut record,
            package,
            compiled,
            info,
            upgrade,
        } = install;
        let existing = self.records.get(&record.id).cloned();
        if let Some(old) = &existing {
            if old.tenant != record.tenant || old.lease_id != record.lease_id {
                return Err(Refusal::new(
                    RefusalCode::Invalid,
                    "that deployment id is taken; pick another",
                ));
            }
            if old.state == State::Stopped {
                return Err(Refusal::new(
                    RefusalCode::Unknown,
                    format!("deployment {} was stopped; deploy anew", old.id),
                ));
            }
        }
        if upgrade {
            let Some(old) = existing.clone() else {
                return Err(Refusal::new(
                    RefusalCode::Unknown,
                    format!("no deployment {} of yours to upgrade", record.id),
                ));
            };
            record.generation = old.generation.saturating_add(1);
            record.created_ms = old.created_ms;
        } else if let Some(old) = &existing {
            // A retry of the same deploy: answer with what runs.
            if old.package.hash == record.package.hash && old.request == record.request {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(match old.state {
                    State::Failed => Started::Failed(old.reason.clone().unwrap_or_default()),
                    _ => Started::Running,
                });
                return Ok(rx);
            }
            return Err(Refusal::new(
                RefusalCode::Invalid,
                format!(
                    "deployment {} exists; use `degroup deploy --upgrade {}` to change its code",
                    old.id, old.id
                ),
            ));
        } else {
            // The lease's memory, CPU and disk are the limits of one deployment: a second live
            // one on the same lease would double them.
            if let Some(other) = self.records.values().find(|r| {
                r.side == Side::Host && r.lease_id == record.lease_id && r.state.is_live()
            }) {
                return Err(Refusal::new(
                    RefusalCode::Lease,
                    format!(
                        "lease {} already runs deployment {}; change its code with `degroup deploy --upgrade {}`, or `degroup stop {}` first",
                        hex::encode(record.lease_id),
                        other.id,
                        other.id,
                        other.id
                    ),
                ));
            }
            let live = self
                .records
                .values()
                .filter(|r| r.side == Side::Host && r.state.is_live())
                .count();
            let max = self.runtime.limits().max_deployments as usize;
            if live >= max {
                return Err(Refusal::new(
                    RefusalCode::Unavailable,
                    format!(
                        "this host runs its maximum of {max} deployments (plugin.max_deployments); try another host"
                    ),
                ));
            }
            record.generation = 1;
        }
        let mut ops = vec![
            Op::Put(
                Domain::Packages,
                package.manifest.hash.to_vec(),
                package.to_bytes(),
            ),
            Op::Put(
                Domain::Deployments,
                record.id.as_bytes().to_vec(),
                deployment::encode(&record),
            ),
        ];
        if let Some(old) = &existing
            && old.package.hash != record.package.hash
            && !self.package_in_use(&old.package.hash, &old.id)
        {
            ops.push(Op::Delete(Domain::Packages, old.package.hash.to_vec()));
        }
        if let Err(e) = self.store.apply_durable(&ops) {
            return Err(Refusal::new(
                RefusalCode::Unavailable,
                format!("the host cannot store the deployment: {e}"),
            ));
        }
        self.records.insert(record.id.clone(), record.clone());
        let unavailable = |e: PluginError| Refusal::new(RefusalCode::Unavailable, e.to_string());
        if let Some(w) = self.workers.get(&record.id) {
            let (started, rx) = oneshot::channel();
            if w.send(WorkerCmd::Upgrade {
                compiled: Box::new(compiled.clone()),
                info: info.clone(),
                config: record.config.clone(),
                started,
            }) {
                return Ok(rx);
            }
            if let Some(w) = self.workers.remove(&record.id) {
                let _ = tokio::task::spawn_blocking(move || w.stop()).await;
            }
        }
        self.spawn_worker(&record, compiled, info)
            .map_err(unavailable)
    }

    async fn stop(&mut self, id: &str, state: State, reason: String) -> Result<View, PluginError> {
        let Some(mut r) = self.records.get(id).cloned() else {
            return Err(PluginError::NotFound(format!("no deployment {id}")));
        };
        if r.state == State::Stopped {
            return Ok(self.view(&r));
        }
        if let Some(w) = self.workers.remove(id) {
            let _ = tokio::task::spawn_blocking(move || w.stop()).await;
        }
        r.state = state;
        r.reason = Some(reason);
        r.updated_ms = now_ms();
        let mut ops = vec![Op::Put(
            Domain::Deployments,
            r.id.as_bytes().to_vec(),
            deployment::encode(&r),
        )];
        if r.side == Side::Host && !self.package_in_use(&r.package.hash, &r.id) {
            ops.push(Op::Delete(Domain::Packages, r.package.hash.to_vec()));
        }
        self.store.apply_durable(&ops)?;
        if r.side == Side::Host {
            self.store.drop_named_tree(&kv::tree_name(&r.id))?;
            self.meter.stopped(r.lease_id, &r.id);
            if let Some(l) = self.logs.get(&r.id) {
                l.host(
                    "info",
                    format!("stopped: {}", r.reason.as_deref().unwrap_or_default()),
                );
            }
        }
        tracing::info!(deployment = %r.id, reason = ?r.reason, "deployment stopped");
        self.records.insert(r.id.clone(), r.clone());
        Ok(self.view(&r))
    }

    /// Whether a live hosted deployment other than `except` runs the package `hash` (then its
    /// stored copy stays).
    fn package_in_use(&self, hash: &[u8; 32], except: &str) -> bool {
        self.records.values().any(|r| {
            r.id != except && r.side == Side::Host && r.package.hash == *hash && r.state.is_live()
        })
    }

    /// Stops hosted deployments whose lease is no longer active.
    async fn check_leases(&mut self) {
        let now = now_ms();
        // Failed deployments too: their key-value store and package go when the lease ends.
        let live: Vec<(String, String)> = self
            .records
            .values()
            .filter(|r| r.side == Side::Host && (r.state.is_live() || r.state == State::Failed))
            .map(|r| (r.id.clone(), hex::encode(r.lease_id)))
            .collect();
        for (id, lease_id) in live {
            let ended = match self.leases.get(&lease_id).await {
                Ok(l) if lease_active(&l, now) => None,
                Ok(l) => Some(match &l.stored.ended {
                    Some((_, reason)) => format!("lease {reason}"),
                    None => "lease expired".to_owned(),
                }),
                Err(crate::lease::LeaseError::NotFound(_)) => Some("lease unknown".to_owned()),
                Err(_) => None,
            };
            if let Some(reason) = ended
                && let Err(e) = self.stop(&id, State::Stopped, reason).await
            {
                tracing::error!(deployment = %id, error = %e, "cannot stop a deployment whose lease ended");
            }
        }
    }

    /// At start-up: runs again every hosted deployment that should run and whose lease is
    /// still active.
    async fn resume(&mut self) {
        let now = now_ms();
        let live: Vec<Record> = self
            .records
            .values()
            .filter(|r| r.side == Side::Host && r.state.is_live())
            .cloned()
            .collect();
        for r in live {
            let lease = match self.leases.get(&hex::encode(r.lease_id)).await {
                Ok(l) if lease_active(&l, now) && l.stored.role == Role::Host => l,
                _ => {
                    if let Err(e) = self
                        .stop(
                            &r.id,
                            State::Stopped,
                            "lease ended while the node was down".into(),
                        )
                        .await
                    {
                        tracing::error!(deployment = %r.id, error = %e, "cannot stop");
                    }
                    continue;
                }
            };
            let loaded = self
                .store
                .tree(Domain::Packages)
                .and_then(|t| t.get(&r.package.hash))
                .map_err(PluginError::from)
                .and_then(|b| {
                    b.ok_or_else(|| PluginError::NotFound("package missing from the store".into()))
                })
                .and_then(|b| Package::open(&b).map_err(|e| PluginError::BadInput(e.to_string())));
            let runtime = self.runtime.clone();
            let compiled = match loaded {
                Ok(p) => tokio::task::spawn_blocking(move || runtime.compile(&p.component))
                    .await
                    .map_err(|e| PluginError::BadInput(e.to_string()))
                    .and_then(|r| r.map_err(PluginError::from)),
                Err(e) => Err(e),
            };
            match compiled {
                Ok(c) => {
                    let info = info_of(&r, &lease);
                    match self.spawn_worker(&r, c, info) {
                        Ok(_) => tracing::info!(deployment = %r.id, "deployment resumed"),
                        Err(e) => tracing::error!(deployment = %r.id, error = %e, "cannot resume"),
                    }
                }
                Err(e) => {
                    tracing::error!(deployment = %r.id, error = %e, "cannot resume; marking failed");
                    let mut r = r.clone();
                    r.state = State::Failed;
                    r.reason = Some(format!("cannot resume after restart: {e}"));
                    let _ = self.save(&r);
                    self.records.insert(r.id.clone(), r);
                }
            }
        }
    }
}
