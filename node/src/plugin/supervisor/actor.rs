//! The supervisor's actor: the one owner of deployment records and workers.
//!
//! Its loop never waits on a plugin. Commands are answered from memory and the store; a worker
//! is told to stop and let go ([`Worker::retire`]), and what must wait for its thread to end
//! (dropping its key-value tree) happens when the worker reports [`WorkerEvent::Exited`].
//! Inbound deploy-protocol requests are answered in a bounded [`JoinSet`] of tasks
//! ([`super::inbound`]), never in the loop; when it is full the peer is told "unavailable" at
//! once. Ended leases arrive as [`LeaseEvent`]s from the lease actor. Child workloads are
//! records of their own, with a parent ([`children`]).

#[path = "children.rs"]
mod children;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::super::control::{Control, Membership};
use super::super::deployment::{self, Counters, Record, Side, State, View};
use super::super::distribution::Distribution;
use super::super::kv::Kv;
use super::super::logs::Logs;
use super::super::package::Package;
use super::super::runtime::{Compiled, Env, LeaseInfo, Runtime};
use super::super::wire::{DeployProtocol, Refusal, RefusalCode, Status};
use super::super::worker::{self, Started, Worker, WorkerEvent};
use super::PluginError;
use super::admit::{Admitted, admit};
use super::command::{Caller, Command, Install};
use super::http::HttpSide;
use super::inbound::HostSide;
use super::{info_of, lease_active};
use crate::lease::{LeaseEvent, LeaseHandle, Meter, Role};
use crate::net::{Inbound, Protocol as _};
use crate::resources::{LeaseId, now_ms};
use crate::store::{Domain, Op, Store, StoreError};

pub(crate) use children::CHILD_START;

/// Most inbound deploy-protocol requests answered at once; more are told "unavailable".
const MAX_ANSWERING: usize = 64;
/// How often the watchdog looks for workers stuck in a call (see `abandon_unresponsive`).
const WATCHDOG: Duration = Duration::from_millis(250);
/// How long shutdown waits for workers to end before leaving them.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// A worker told to stop, whose thread has not ended yet.
struct Retiring {
    id: String,
    /// Host side: its key-value tree goes once the thread is gone.
    drop_kv: bool,
}

/// The actor's state.
pub(crate) struct Actor {
    store: Store,
    runtime: Arc<Runtime>,
    /// Where packages are kept: a deployment holds its package's blob (`dep:<id>`).
    distribution: Distribution,
    leases: LeaseHandle,
    meter: Meter,
    records: HashMap<String, Record>,
    workers: HashMap<String, Worker>,
    retiring: HashMap<u64, Retiring>,
    logs: HashMap<String, Logs>,
    /// The HTTP ingress, when this host runs one.
    http: Option<HttpSide>,
    /// Groups: each deployment's mesh, and where mesh messages find its inbox.
    groups: Arc<dyn Membership>,
    events_tx: mpsc::UnboundedSender<WorkerEvent>,
    events: mpsc::UnboundedReceiver<WorkerEvent>,
    /// Child workloads: their requests, and the leases their parents run under.
    children: children::ChildState,
}

impl Actor {
    /// The actor over the stored records.
    #[allow(clippy::too_many_arguments)] // the node's services, each a handle
    pub(crate) fn new(
        store: Store,
        runtime: Arc<Runtime>,
        distribution: Distribution,
        leases: LeaseHandle,
        meter: Meter,
        records: HashMap<String, Record>,
        http: Option<HttpSide>,
        groups: Arc<dyn Membership>,
    ) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        Self {
            store,
            runtime,
            distribution,
            leases,
            meter,
            records,
            workers: HashMap::new(),
            retiring: HashMap::new(),
            logs: HashMap::new(),
            http,
            groups,
            events_tx,
            events,
            children: children::ChildState::new(),
        }
    }

    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut inbound: Inbound<DeployProtocol>,
        mut lease_events: broadcast::Receiver<LeaseEvent>,
        host: HostSide,
        shutdown: CancellationToken,
    ) {
        let mut answering = JoinSet::new();
        let mut leases_open = true;
        let mut watchdog = tokio::time::interval(WATCHDOG);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = watchdog.tick() => self.abandon_unresponsive(),
                Some(cmd) = commands.recv() => self.command(cmd),
                Some(req) = inbound.recv() => {
                    if answering.len() >= MAX_ANSWERING {
                        req.reply.send(DeployProtocol::unavailable(
                            "the host is answering too many deploy requests; retry in a moment",
                        ));
                    } else {
                        let host = host.clone();
                        answering.spawn(async move { host.answer(req).await });
                    }
                }
                Some(_) = answering.join_next(), if !answering.is_empty() => {}
                Some(ev) = self.events.recv() => self.event(ev),
                Some(c) = self.children.rx.recv() => self.child_command(c),
                event = lease_events.recv(), if leases_open => match event {
                    Ok(LeaseEvent::Ended { id, role: Role::Host, reason }) => {
                        self.lease_ended(&id, &format!("lease {reason}"));
                    }
                    Ok(LeaseEvent::Ended { .. }) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "lease events missed; checking every deployment's lease");
                        self.reconcile_leases().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => leases_open = false,
                },
            }
        }
        answering.abort_all();
        self.shut_down().await;
    }

    /// Tells every worker to stop and gives them a moment to end.
    async fn shut_down(mut self) {
        for (id, w) in self.workers.drain() {
            self.retiring
                .insert(w.serial, Retiring { id, drop_kv: false });
            w.retire();
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while !self.retiring.is_empty() {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) => self.event(ev),
                Ok(None) | Err(_) => break,
            }
        }
        if !self.retiring.is_empty() {
            tracing::warn!(
                workers = self.retiring.len(),
                "plugin workers still running at shutdown; left behind"
            );
        }
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

    /// A record the caller may act on.
    fn find_for(&self, text: &str, caller: &Caller) -> Result<Record, PluginError> {
        match self.find(text) {
            Ok(r) if caller.may_see(r) => Ok(r.clone()),
            Ok(_) => Err(PluginError::NotFound(format!(
                "no deployment {text} of yours here"
            ))),
            Err(e) => Err(e),
        }
    }

    /// State, reason and counters of a record now: the worker's when it runs.
    fn live(&self, r: &Record) -> (State, Option<String>, Option<Counters>) {
        let mut state = r.state;
        let mut reason = r.reason.clone();
        let counters = self.workers.get(&r.id).map(|w| {
            let (live_state, live_reason, counters) = w.shared.snapshot();
            if r.state.is_live() {
                state = live_state;
                if live_reason.is_some() {
                    reason = live_reason;
                }
            }
            counters
        });
        let counters = counters.or_else(|| (r.side == Side::Host).then(Counters::default));
        (state, reason, counters)
    }

    fn view(&self, r: &Record) -> View {
        let (state, reason, counters) = self.live(r);
        let mut v = View::of(r, counters);
        v.state = state;
        v.reason = reason;
        v.urls = self.urls(r);
        v
    }

    fn status(&self, r: &Record) -> Status {
        let (state, reason, counters) = self.live(r);
        let mut s = Status::of(r, state, reason, &counters.unwrap_or_default());
        s.urls = self.urls(r);
        s
    }

    /// Where a hosted deployment answers HTTP (nothing once it is stopped).
    fn urls(&self, r: &Record) -> Vec<String> {
        match &self.http {
            Some(side) if r.side == Side::Host && r.state != State::Stopped => side.urls(&r.id),
            _ => Vec::new(),
        }
    }

    fn save(&self, r: &Record) -> Result<(), StoreError> {
        self.store.apply_durable(&[Op::Put(
            Domain::Deployments,
            r.id.as_bytes().to_vec(),
            deployment::encode(r),
        )])
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::List(reply) => {
                let mut all: Vec<View> = self.records.values().map(|r| self.view(r)).collect();
                all.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
                let _ = reply.send(all);
            }
            Command::Counts(reply) => {
                let live = |side| {
                    self.records
                        .values()
                        .filter(|r| r.side == side && r.state.is_live())
                        .count()
                };
                let _ = reply.send((live(Side::Host), live(Side::Tenant)));
            }
            Command::Get { id, reply } => {
                let _ = reply.send(self.find(&id).map(|r| self.view(r)));
            }
            Command::Record { id, reply } => {
                let _ = reply.send(self.find(&id).cloned());
            }
            Command::Statuses { tenant, reply } => {
                let caller = Caller::Tenant(tenant);
                let mut all: Vec<&Record> = self
                    .records
                    .values()
                    .filter(|r| caller.may_see(r))
                    .collect();
                all.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
                let _ = reply.send(all.into_iter().map(|r| self.status(r)).collect());
            }
            Command::Status { id, caller, reply } => {
                let r = self.find_for(&id, &caller).map(|r| self.status(&r));
                let _ = reply.send(r);
            }
            Command::Logs {
                id,
                caller,
                after,
                limit,
                reply,
            } => {
                let result = self.find_for(&id, &caller).and_then(|r| {
                    self.logs.get(&r.id).map(|l| l.read(after, limit as usize)).ok_or_else(|| {
                        PluginError::NotFound(format!(
                            "deployment {} runs on another node; ask its host (this node keeps logs only of what it runs)",
                            r.id
                        ))
                    })
                });
                let _ = reply.send(result);
            }
            Command::Admit {
                record,
                upgrade,
                reply,
            } => {
                let max = self.runtime.limits().max_deployments as usize;
                let _ = reply.send(admit(&self.records, max, *record, upgrade).map(|_| ()));
            }
            Command::Install { install, reply } => {
                let _ = reply.send(self.install(*install));
            }
            Command::Stop {
                id,
                reason,
                caller,
                reply,
            } => {
                let result = self
                    .find_for(&id, &caller)
                    .and_then(|r| self.stop(&r.id, reason).map(|()| r.id))
                    .and_then(|id| {
                        self.records
                            .get(&id)
                            .map(|r| self.status(r))
                            .ok_or_else(|| PluginError::NotFound(format!("no deployment {id}")))
                    });
                let _ = reply.send(result);
            }
            Command::Message {
                id,
                from,
                payload,
                caller,
                reply,
            } => {
                let result =
                    self.find_for(&id, &caller)
                        .and_then(|r| match self.workers.get(&r.id) {
                            Some(w) if w.shared.snapshot().0 == State::Running => {
                                w.message(from, payload).map_err(|e| {
                                    PluginError::Busy(format!("deployment {}: {e}", r.id))
                                })
                            }
                            _ => Err(PluginError::Conflict(format!(
                                "deployment {} is {}; messages go only to running deployments",
                                r.id,
                                self.view(&r).state
                            ))),
                        });
                let _ = reply.send(result);
            }
            Command::SaveTenant { record, reply } => {
                let result = self.save(&record).map_err(PluginError::from);
                if result.is_ok() {
                    self.records.insert(record.id.clone(), *record);
                }
                let _ = reply.send(result);
            }
        }
    }

    /// Marks failed, durably, every deployment whose worker has been in one call far past its
    /// deadline (a wait the deadline could not cancel), and lets that thread go: the worker
    /// is abandoned, and the deployment stays `failed` across restarts.
    fn abandon_unresponsive(&mut self) {
        let now = std::time::Instant::now();
        let stuck: Vec<(String, u64, std::time::Duration)> = self
            .workers
            .iter()
            .filter_map(|(id, w)| w.shared.overdue(now).map(|ran| (id.clone(), w.serial, ran)))
            .collect();
        for (id, serial, ran) in stuck {
            let reason = format!(
                "unresponsive: a call has not returned after {} ms; the worker was abandoned",
                ran.as_millis()
            );
            if let Some(l) = self.logs.get(&id) {
                l.host("error", reason.clone());
            }
            self.fail(&id, serial, reason);
        }
    }

    /// Records a deployment failed (if `serial` is still its worker) and retires the worker.
    fn fail(&mut self, id: &str, serial: u64, reason: String) {
        if self.workers.get(id).map(|w| w.serial) != Some(serial) {
            return;
        }
        tracing::warn!(deployment = %id, %reason, "deployment failed");
        if let Some(r) = self.records.get_mut(id) {
            r.state = State::Failed;
            r.reason = Some(reason);
            r.updated_ms = now_ms();
            let r = r.clone();
            if let Err(e) = self.save(&r) {
                tracing::error!(error = %e, "cannot record a deployment failure");
            }
        }
        if let Some(side) = &self.http {
            side.detach(id);
        }
        self.left_groups(id);
        self.retire_worker(id, false);
        self.after_stop(id, "failed");
    }

    fn event(&mut self, ev: WorkerEvent) {
        match ev {
            WorkerEvent::Failed { id, serial, reason } => self.fail(&id, serial, reason),
            WorkerEvent::Exited { id, serial } => {
                if let Some(r) = self.retiring.remove(&serial)
                    && r.drop_kv
                {
                    self.drop_kv(&r.id);
                }
                tracing::debug!(deployment = %id, serial, "worker ended");
            }
        }
    }

    /// Tells a deployment's worker to stop; its key-value tree goes when the thread is gone
    /// (`drop_kv`).
    fn retire_worker(&mut self, id: &str, drop_kv: bool) {
        let Some(w) = self.workers.remove(id) else {
            return;
        };
        self.groups.detach(id);
        self.retiring.insert(
            w.serial,
            Retiring {
                id: id.to_owned(),
                drop_kv,
            },
        );
        w.retire();
    }

    fn drop_kv(&self, id: &str) {
        if let Err(e) = Kv::remove(&self.store, id) {
            tracing::error!(deployment = %id, error = %e, "cannot delete a stopped deployment's key-value store");
        }
    }

    fn env_for(&mut self, r: &Record, info: LeaseInfo) -> Result<Env, PluginError> {
        let kv = Kv::open(&self.store, &r.id, info.slice.disk_bytes)
            .map_err(|e| PluginError::internal("opening the key-value store", e))?;
        let limits = self.runtime.limits();
        let logs = self
            .logs
            .entry(r.id.clone())
            .or_insert_with(|| Logs::new(limits.log_lines, limits.log_rate))
            .clone();
        let control = self.control_for(r);
        Ok(Env {
            info,
            kv,
            logs,
            control,
        })
    }

    /// The control plane of a hosted deployment: its group's mesh and its children.
    fn control_for(&self, r: &Record) -> Control {
        let mut control = Control::detached();
        control.mesh = self.groups.mesh_for(r);
        self.attach_children(r, &mut control);
        control
    }

    /// A hosted deployment stopped for good: gone from its groups at once, here and (by a
    /// signed notice) on the group's other hosts.
    fn left_groups(&self, id: &str) {
        self.groups.stopped(id);
    }

    fn spawn_worker(
        &mut self,
        r: &Record,
        compiled: Compiled,
        info: LeaseInfo,
    ) -> Result<oneshot::Receiver<Started>, PluginError> {
        let info = self.info_for(r, info);
        let (compiled_http, info_http) = (compiled.clone(), info.clone());
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
                fuel_per_second: r.child.as_ref().map(|c| c.limits.fuel_per_second),
            },
            started,
        )
        .map_err(|e| PluginError::internal("starting a worker thread", e))?;
        self.groups.attach(r, w.inbox());
        self.workers.insert(r.id.clone(), w);
        self.serve_http(r, &compiled_http, &info_http);
        if r.child.is_none() {
            // Its HTTP instances' budget exists now: held to what its children leave.
            self.apply_parent_share(&r.id);
        }
        Ok(rx)
    }

    /// Attaches (or replaces) the deployment's HTTP endpoint, when the host runs an ingress.
    fn serve_http(&mut self, r: &Record, compiled: &Compiled, info: &LeaseInfo) {
        let Some(side) = self.http.clone() else {
            return;
        };
        if !compiled.serves_http() {
            side.detach(&r.id);
            return;
        }
        let kv = match Kv::open(&self.store, &r.id, info.slice.disk_bytes) {
            Ok(kv) => kv,
            Err(e) => {
                tracing::error!(deployment = %r.id, error = %e, "cannot open the key-value store for HTTP; not serving");
                side.detach(&r.id);
                return;
            }
        };
        let limits = self.runtime.limits();
        let logs = self
            .logs
            .entry(r.id.clone())
            .or_insert_with(|| Logs::new(limits.log_lines, limits.log_rate))
            .clone();
        let control = self.control_for(r);
        side.attach(
            &self.runtime,
            r,
            compiled,
            info,
            kv,
            logs,
            &self.meter,
            control,
        );
    }

    fn install(&mut self, install: Install) -> Result<oneshot::Receiver<Started>, Refusal> {
        let Install {
            record,
            package,
            compiled,
            info,
            upgrade,
            routes,
        } = install;
        let max = self.runtime.limits().max_deployments as usize;
        let (record, existing) = match admit(&self.records, max, record, upgrade)? {
            Admitted::Retry(old) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(match old.state {
                    State::Failed => Started::Failed(old.reason.clone().unwrap_or_default()),
                    _ => Started::Running,
                });
                return Ok(rx);
            }
            Admitted::New { record, existing } => (*record, existing),
        };
        // The package is in the blob store, held for this deployment since it was fetched.
        let _ = &package;
        // Its host names, claimed durably before it is: a refusal leaves nothing behind.
        if !routes.is_empty() {
            let Some(side) = &self.http else {
                return Err(super::http::no_ingress());
            };
            side.claim(&routes, &record.id)?;
        }
        let mut ops = vec![Op::Put(
            Domain::Deployments,
            record.id.as_bytes().to_vec(),
            deployment::encode(&record),
        )];
        if let Some(old) = &existing
            && old.package.blob != record.package.blob
        {
            self.let_go_of_package(old, &mut ops);
        }
        if let Err(e) = self.store.apply_durable(&ops) {
            if !routes.is_empty()
                && existing.is_none()
                && let Some(side) = &self.http
            {
                side.release(&record.id);
            }
            return Err(Refusal::new(
                RefusalCode::Unavailable,
                format!("the host cannot store the deployment: {e}"),
            ));
        }
        self.records.insert(record.id.clone(), record.clone());
        if existing.is_some() {
            self.after_upgrade(&record.id, &compiled);
        }
        if self.workers.contains_key(&record.id) {
            let upgraded = self.info_for(&record, info.clone());
            let (started, rx) = oneshot::channel();
            let taken = self.workers.get(&record.id).is_some_and(|w| {
                w.upgrade(
                    compiled.clone(),
                    upgraded.clone(),
                    record.config.clone(),
                    started,
                )
            });
            if taken {
                self.serve_http(&record, &compiled, &upgraded);
                // A new HTTP budget may have come with the new code: held to what the
                // children leave, as at a start.
                self.apply_parent_share(&record.id);
                return Ok(rx);
            }
            // The thread is gone: a new one takes over with the same key-value store.
            self.retire_worker(&record.id, false);
        }
        self.spawn_worker(&record, compiled, info)
            .map_err(|e| Refusal::new(RefusalCode::Unavailable, e.to_string()))
    }

    /// Stops a deployment durably; its worker is told to stop and let go.
    fn stop(&mut self, id: &str, reason: String) -> Result<(), PluginError> {
        let Some(mut r) = self.records.get(id).cloned() else {
            return Err(PluginError::NotFound(format!("no deployment {id}")));
        };
        if r.state == State::Stopped {
            return Ok(());
        }
        r.state = State::Stopped;
        r.reason = Some(reason);
        r.updated_ms = now_ms();
        let mut ops = vec![Op::Put(
            Domain::Deployments,
            r.id.as_bytes().to_vec(),
            deployment::encode(&r),
        )];
        let host = r.side == Side::Host;
        if host {
            self.let_go_of_package(&r, &mut ops);
        }
        self.store.apply_durable(&ops)?;
        self.records.insert(r.id.clone(), r.clone());
        if host {
            self.left_groups(&r.id);
            // Its key-value store goes now if no thread uses it, else when the thread ends.
            self.retire_worker(&r.id, true);
            let mut waiting = false;
            for w in self.retiring.values_mut().filter(|w| w.id == r.id) {
                w.drop_kv = true;
                waiting = true;
            }
            if !waiting {
                self.drop_kv(&r.id);
            }
            self.meter.stopped(r.lease_id, &r.id);
            if let Some(side) = &self.http {
                side.release(&r.id);
            }
            if let Some(l) = self.logs.get(&r.id) {
                l.host(
                    "info",
                    format!("stopped: {}", r.reason.as_deref().unwrap_or_default()),
                );
            }
        }
        tracing::info!(deployment = %r.id, reason = ?r.reason, "deployment stopped");
        if host {
            self.after_stop(&r.id, "stopped");
        }
        Ok(())
    }

    /// A hosted deployment no longer uses its package: its hold on the blob goes (the blob
    /// store's garbage collection takes it after the grace period), and a package stored the
    /// old way (before distribution) is deleted when no other deployment uses it.
    fn let_go_of_package(&self, r: &Record, ops: &mut Vec<Op>) {
        if r.package.blob == [0; 32] {
            if !self.package_in_use(&r.package.hash, &r.id) {
                ops.push(Op::Delete(Domain::Packages, r.package.hash.to_vec()));
            }
        } else {
            self.distribution
                .release(&r.package.blob, &format!("dep:{}", r.id));
        }
    }

    /// Whether a live hosted deployment other than `except` runs the package `hash` (then its
    /// stored copy stays).
    fn package_in_use(&self, hash: &[u8; 32], except: &str) -> bool {
        self.records.values().any(|r| {
            r.id != except && r.side == Side::Host && r.package.hash == *hash && r.state.is_live()
        })
    }

    /// Hosted deployments that end with their lease: live ones, and failed ones (their
    /// key-value store and package go when the lease ends).
    fn hosted_on(&self, lease: Option<&LeaseId>) -> Vec<(String, LeaseId)> {
        self.records
            .values()
            .filter(|r| r.side == Side::Host && (r.state.is_live() || r.state == State::Failed))
            .filter(|r| lease.is_none_or(|l| *l == r.lease_id))
            .map(|r| (r.id.clone(), r.lease_id))
            .collect()
    }

    /// Stops the hosted deployments of a lease that ended.
    fn lease_ended(&mut self, lease: &LeaseId, reason: &str) {
        for (id, _) in self.hosted_on(Some(lease)) {
            if let Err(e) = self.stop(&id, reason.to_owned()) {
                tracing::error!(deployment = %id, error = %e, "cannot stop a deployment whose lease ended");
            }
        }
    }

    /// Checks every hosted deployment's lease (after lease events were missed).
    async fn reconcile_leases(&mut self) {
        let now = now_ms();
        for (id, lease_id) in self.hosted_on(None) {
            let ended = match self.leases.get(&hex::encode(lease_id)).await {
                Ok(l) if lease_active(&l, now) => None,
                Ok(l) => Some(match &l.stored.ended {
                    Some((_, reason)) => format!("lease {reason}"),
                    None => "lease expired".to_owned(),
                }),
                Err(crate::lease::LeaseError::NotFound(_)) => Some("lease unknown".to_owned()),
                Err(_) => None,
            };
            if let Some(reason) = ended
                && let Err(e) = self.stop(&id, reason)
            {
                tracing::error!(deployment = %id, error = %e, "cannot stop a deployment whose lease ended");
            }
        }
    }

    /// At start-up: runs again every hosted deployment that should run and whose lease is
    /// still active; removes what stopped deployments left behind.
    pub(crate) async fn resume(&mut self) {
        let now = now_ms();
        let stopped: Vec<String> = self
            .records
            .values()
            .filter(|r| r.side == Side::Host && r.state == State::Stopped)
            .map(|r| r.id.clone())
            .collect();
        for id in stopped {
            self.drop_kv(&id);
            // A stop whose release of routes did not reach the disk before a crash.
            if let Some(side) = &self.http {
                side.release(&id);
            }
        }
        let mut live: Vec<Record> = self
            .records
            .values()
            .filter(|r| r.side == Side::Host && r.state.is_live())
            .cloned()
            .collect();
        // Parents before their children.
        live.sort_by_key(|r| r.child.is_some());
        for r in live {
            if self.orphan(&r) {
                if let Err(e) = self.stop(&r.id, "its parent did not come back".into()) {
                    tracing::error!(deployment = %r.id, error = %e, "cannot stop");
                }
                continue;
            }
            let lease = match self.leases.get(&hex::encode(r.lease_id)).await {
                Ok(l) if lease_active(&l, now) && l.stored.role == Role::Host => l,
                _ => {
                    if let Err(e) = self.stop(&r.id, "lease ended while the node was down".into()) {
                        tracing::error!(deployment = %r.id, error = %e, "cannot stop");
                    }
                    continue;
                }
            };
            match self.load_compiled(&r).await {
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

    /// The stored package of a record, compiled (from the cache when it is there).
    async fn load_compiled(&self, r: &Record) -> Result<Compiled, PluginError> {
        let package = if r.package.blob == [0; 32] {
            let bytes = self
                .store
                .tree(Domain::Packages)?
                .get(&r.package.hash)?
                .ok_or_else(|| PluginError::NotFound("package missing from the store".into()))?;
            Package::open(&bytes)?
        } else {
            self.distribution.load(&r.package.blob).await?
        };
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.compile(&package.component))
            .await
            .map_err(|e| PluginError::internal("compiling on a blocking thread", e))?
            .map_err(PluginError::from)
    }
}
