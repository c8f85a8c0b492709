//! The lease actor: one task owns the [`LeaseBook`]; everything else talks to it through a
//! cloneable [`LeaseHandle`].
//!
//! It multiplexes three sources: lease messages from peers (answered as host, or as tenant for
//! termination notices), commands from the admin API, and a sweep timer (lapsed offers, expired
//! leases, usage receipts). Inbound messages are taken in batches: every countersignature in a
//! batch is committed in one sled transaction and one flush (group commit), and only then are
//! the tenants acknowledged. After anything that changes what is leased, the capacity actor is
//! told, so the advert's free capacity follows.

mod host;
mod sweep;

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::book::{Lease, LeaseBook, Role, SignedReceipt, StoredLease};
use super::contract::{EndReason, MAX_REASON};
use super::error::LeaseError;
use super::meter::Meter;
use super::policy::Policy;
use super::tenant::{CreateParams, Proposal, Tenant, check_receipt, peer_of};
use super::view::{LeaseExport, LeaseList, LeaseView, reason_text};
use super::wire::{LeaseMsg, LeaseProtocol};
use crate::capacity::CapacityHandle;
use crate::identity::Identity;
use crate::net::{Inbound, Network};
use crate::resources::{LeaseId, Resources, id_hex, now_ms};
use crate::store::{Store, StoreError};

/// Most inbound messages handled (and countersignatures committed) in one batch.
const MAX_BATCH: usize = 256;
/// Longest wait between two sweeps.
const SWEEP_MAX: Duration = Duration::from_secs(1);
/// Lease events kept for slow subscribers; one that falls further behind is told it lagged.
const EVENTS: usize = 1024;

/// Something that happened to a lease, for the domains that act on it (the plugin supervisor
/// stops the deployments of a lease that ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// The lease ended: released, terminated, expired. Sent once it is durable.
    Ended {
        id: LeaseId,
        role: Role,
        /// `released`, `terminated: …` or `expired`.
        reason: String,
    },
}

enum Command {
    List(oneshot::Sender<LeaseList>),
    Counts(oneshot::Sender<(usize, usize)>),
    Get(String, oneshot::Sender<Result<Lease, LeaseError>>),
    Store(Box<StoredLease>, oneshot::Sender<Result<Lease, LeaseError>>),
    End {
        id: LeaseId,
        at_ms: u64,
        reason: EndReason,
        notice: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<Lease, LeaseError>>,
    },
    AddReceipts {
        receipts: Vec<SignedReceipt>,
        reply: oneshot::Sender<Result<(), LeaseError>>,
    },
    Receipts {
        id: LeaseId,
        reply: oneshot::Sender<Vec<Vec<u8>>>,
    },
    Terminate {
        id: String,
        reason: String,
        reply: oneshot::Sender<Result<Lease, LeaseError>>,
    },
    Check(oneshot::Sender<Result<(), String>>),
    Confirm(LeaseId, oneshot::Sender<Result<Lease, LeaseError>>),
    Forget(LeaseId),
    Pending(oneshot::Sender<Vec<Lease>>),
}

/// Cloneable handle to the lease actor.
#[derive(Clone)]
pub struct LeaseHandle {
    tx: mpsc::Sender<Command>,
    tenant: Tenant,
    events: broadcast::Sender<LeaseEvent>,
}

impl std::fmt::Debug for LeaseHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseHandle").finish_non_exhaustive()
    }
}

/// A usage receipt as `lease receipts --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptView {
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    pub wall_ms: u64,
    pub cpu_fuel: u64,
    pub peak_mem_bytes: u64,
    pub storage_bytes: u64,
    /// CPU time the host spent compiling the lease's components (0 on receipts signed before
    /// it was metered, `degroup/usage/v1`).
    #[serde(default)]
    pub compile_cpu_ms: u64,
    /// The host's signature checks out.
    pub verified: bool,
    /// The signed envelope, hex.
    pub signed: String,
}

/// `GET /v1/leases/{id}/receipts`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptList {
    pub lease: String,
    pub receipts: Vec<ReceiptView>,
    /// Set when the host could not be asked for newer receipts (the list is what is stored).
    pub warning: Option<String>,
}

impl LeaseHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, LeaseError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| LeaseError::Stopped)?;
        rx.await.map_err(|_| LeaseError::Stopped)
    }

    /// Lease events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LeaseEvent> {
        self.events.subscribe()
    }

    /// Every lease and the host's totals.
    pub async fn list(&self) -> Result<LeaseList, LeaseError> {
        self.ask(Command::List).await
    }

    /// Active leases this node hosts, and holds as a tenant.
    pub async fn counts(&self) -> Result<(usize, usize), LeaseError> {
        self.ask(Command::Counts).await
    }

    /// A lease by id or unique prefix.
    pub async fn get(&self, id: &str) -> Result<Lease, LeaseError> {
        self.ask(|r| Command::Get(id.to_owned(), r)).await?
    }

    /// Negotiates a lease with a host; returns it once committed on both sides.
    ///
    /// The countersigned contract is stored (flushed) on this node while the countersignature
    /// travels and the host commits, so that both flushes overlap; it is marked pending until
    /// the host's answer arrives. A pending lease left by a crash is confirmed (or dropped, if
    /// the host never committed it) at the next start.
    pub async fn create(&self, params: &CreateParams) -> Result<LeaseView, LeaseError> {
        let (host, proposal) = self.tenant.propose_new(params).await?;
        let tenant_copy = |doc, pending| StoredLease {
            role: Role::Tenant,
            receipts_until_ms: 0,
            doc,
            ended: None,
            end_notice: None,
            renewal_keys: Vec::new(),
            pending,
        };
        let doc = match proposal {
            Proposal::Committed(doc) => doc,
            Proposal::Offer(doc) => {
                let pending = tenant_copy(doc.clone(), true);
                let (answer, stored) = tokio::join!(
                    self.tenant.confirm(host, &doc),
                    self.ask(|r| Command::Store(Box::new(pending), r))
                );
                // The countersignature went out: a failure now may hide a committed lease.
                let answer = answer.map_err(|e| e.after_commit_attempt(host));
                let lease = stored??;
                let id = lease.contract.lease_id;
                return match answer {
                    Ok(_) => Ok(LeaseView::listed(
                        &self.ask(|r| Command::Confirm(id, r)).await??,
                    )),
                    Err(e) => {
                        if matches!(e, LeaseError::Refused(_)) {
                            let _ = self.tx.send(Command::Forget(id)).await;
                        }
                        Err(e)
                    }
                };
            }
        };
        let lease = self
            .ask(|r| Command::Store(Box::new(tenant_copy(doc, false)), r))
            .await??;
        Ok(LeaseView::of(&lease))
    }

    /// Confirms (or drops) the leases left pending by a crash between countersigning and the
    /// host's answer; a host that cannot be reached leaves them pending until the next start.
    async fn reconcile(self) {
        let Ok(pending) = self.ask(Command::Pending).await else {
            return;
        };
        for lease in pending {
            let Ok(host) = peer_of(&lease.contract.host) else {
                continue;
            };
            let id = lease.contract.lease_id;
            match self.tenant.confirm(host, &lease.stored.doc).await {
                Ok(_) => {
                    let _ = self.ask(|r| Command::Confirm(id, r)).await;
                    tracing::info!(lease = %lease.id_hex(), "pending lease confirmed by its host");
                }
                Err(LeaseError::Refused(r)) => {
                    let _ = self.tx.send(Command::Forget(id)).await;
                    tracing::info!(lease = %lease.id_hex(), reason = %r, "pending lease was never committed; dropped");
                }
                Err(e) => {
                    tracing::warn!(lease = %lease.id_hex(), error = %e, "pending lease not confirmed yet");
                }
            }
        }
    }

    fn tenant_side(lease: &Lease, what: &str) -> Result<(), LeaseError> {
        if lease.stored.role != Role::Tenant {
            return Err(LeaseError::Conflict(format!(
                "this node is the host of lease {}; only its tenant can {what} it{}",
                lease.id_hex(),
                if what == "release" {
                    " (a host ends a lease with `degroup lease terminate ID --reason TEXT`)"
                } else {
                    ""
                }
            )));
        }
        if !lease.is_active() {
            return Err(LeaseError::Conflict(format!(
                "lease {} has ended; create a new one with `degroup lease create`",
                lease.id_hex()
            )));
        }
        Ok(())
    }

    /// Extends a lease by `duration_ms` past its current end.
    pub async fn renew(
        &self,
        id: &str,
        duration_ms: u64,
        max_hourly_micros: Option<u64>,
    ) -> Result<LeaseView, LeaseError> {
        let lease = self.get(id).await?;
        Self::tenant_side(&lease, "renew")?;
        let doc = self
            .tenant
            .renew(&lease.contract, duration_ms, max_hourly_micros)
            .await?;
        let mut stored = lease.stored.clone();
        stored.doc = doc;
        let lease = self.ask(|r| Command::Store(Box::new(stored), r)).await??;
        Ok(LeaseView::of(&lease))
    }

    /// Ends a lease early (tenant side).
    pub async fn release(&self, id: &str) -> Result<LeaseView, LeaseError> {
        let lease = self.get(id).await?;
        Self::tenant_side(&lease, "release")?;
        let (notice, end) = self.tenant.release(&lease.contract).await?;
        let lease = self
            .ask(|reply| Command::End {
                id: lease.contract.lease_id,
                at_ms: end.at_ms,
                reason: end.reason,
                notice: Some(notice),
                reply,
            })
            .await??;
        Ok(LeaseView::of(&lease))
    }

    /// Ends a lease as its host, with a reason the tenant is told.
    pub async fn terminate(&self, id: &str, reason: &str) -> Result<LeaseView, LeaseError> {
        let lease = self
            .ask(|reply| Command::Terminate {
                id: id.to_owned(),
                reason: reason.to_owned(),
                reply,
            })
            .await??;
        Ok(LeaseView::of(&lease))
    }

    /// The export file of a lease.
    pub async fn export(&self, id: &str) -> Result<LeaseExport, LeaseError> {
        Ok(LeaseExport::of(&self.get(id).await?))
    }

    /// Usage receipts of a lease; a tenant first fetches the newest from the host.
    pub async fn receipts(&self, id: &str) -> Result<ReceiptList, LeaseError> {
        let lease = self.get(id).await?;
        let lid = lease.contract.lease_id;
        let mut warning = None;
        if lease.stored.role == Role::Tenant {
            let since = lease.stored.receipts_until_ms;
            match self.tenant.receipts(&lease.contract, since).await {
                Ok(fetched) => {
                    self.ask(|reply| Command::AddReceipts {
                        receipts: fetched,
                        reply,
                    })
                    .await??;
                }
                Err(e) => warning = Some(format!("showing stored receipts only: {e}")),
            }
        }
        let receipts = self
            .ask(|reply| Command::Receipts { id: lid, reply })
            .await?
            .into_iter()
            .map(|bytes| {
                let r = check_receipt(&bytes, &lease.contract);
                ReceiptView {
                    period_start_ms: r.as_ref().map_or(0, |r| r.period_start_ms),
                    period_end_ms: r.as_ref().map_or(0, |r| r.period_end_ms),
                    wall_ms: r.as_ref().map_or(0, |r| r.wall_ms),
                    cpu_fuel: r.as_ref().map_or(0, |r| r.cpu_fuel),
                    peak_mem_bytes: r.as_ref().map_or(0, |r| r.peak_mem_bytes),
                    storage_bytes: r.as_ref().map_or(0, |r| r.storage_bytes),
                    compile_cpu_ms: r.as_ref().map_or(0, |r| r.compile_cpu_ms),
                    verified: r.is_some(),
                    signed: hex::encode(&bytes),
                }
            })
            .collect();
        Ok(ReceiptList {
            lease: id_hex(&lid),
            receipts,
            warning,
        })
    }

    /// Checks the reservation invariant (for tests and the testnet's `verify_*`).
    pub async fn check(&self) -> Result<Result<(), String>, LeaseError> {
        self.ask(Command::Check).await
    }
}

/// Nonces seen: (tenant, nonce) → (idempotency key, first seen ms).
type NonceBook = HashMap<([u8; 32], [u8; 16]), ([u8; 16], u64)>;

struct Service {
    identity: Identity,
    key: [u8; 32],
    book: LeaseBook,
    policy: Policy,
    net: Network,
    capacity: CapacityHandle,
    nonces: NonceBook,
    last_leased: Option<Resources>,
    /// Usage of the deployments on hosted leases, filled by the plugin runtime.
    meter: Meter,
    events: broadcast::Sender<LeaseEvent>,
}

/// What the lease actor starts with.
#[derive(Debug)]
pub struct Deps {
    pub identity: Identity,
    pub store: Store,
    pub policy: Policy,
    pub net: Network,
    pub capacity: CapacityHandle,
    /// Usage of the deployments, read when receipts are signed.
    pub meter: Meter,
}

/// Starts the lease actor.
pub fn start(
    deps: Deps,
    inbound: Inbound<LeaseProtocol>,
    shutdown: CancellationToken,
) -> Result<(LeaseHandle, tokio::task::JoinHandle<()>), LeaseError> {
    let Deps {
        identity,
        store,
        policy,
        net,
        capacity,
        meter,
    } = deps;
    let book = LeaseBook::open(&store)?;
    let (tx, rx) = mpsc::channel(256);
    let (events, _) = broadcast::channel(EVENTS);
    let tenant = Tenant::new(identity.clone(), net.clone(), capacity.book().clone());
    let service = Service {
        key: identity.verifying_key().to_bytes(),
        identity,
        book,
        policy,
        net,
        capacity,
        nonces: HashMap::new(),
        last_leased: None,
        meter,
        events: events.clone(),
    };
    let task = tokio::spawn(service.run(inbound, rx, shutdown));
    let handle = LeaseHandle { tx, tenant, events };
    tokio::spawn(handle.clone().reconcile());
    Ok((handle, task))
}

impl Service {
    async fn run(
        mut self,
        mut inbound: Inbound<LeaseProtocol>,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        // Leases that ended while the node was down end now, before anything is answered.
        self.sweep(now_ms());
        self.publish_leased();
        let mut last_sweep = Instant::now();
        loop {
            let wake = self.next_wake(last_sweep);
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(first) = inbound.recv() => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match inbound.try_recv() {
                            Some(m) => batch.push(m),
                            None => break,
                        }
                    }
                    self.on_inbound(batch);
                }
                Some(cmd) = commands.recv() => self.on_command(cmd),
                () = sleep_until(wake) => {
                    self.sweep(now_ms());
                    last_sweep = Instant::now();
                }
            }
            self.publish_leased();
        }
        tracing::debug!("lease service stopped");
    }

    fn offered(&self) -> Resources {
        self.capacity.offered().total.counted()
    }

    /// A lease as the book holds it now, after a write.
    fn reread(&self, id: &LeaseId) -> Result<Lease, LeaseError> {
        self.book
            .get(id)
            .cloned()
            .ok_or_else(|| LeaseError::NotFound(id_hex(id)))
    }

    /// Ends a lease durably and tells the subscribers.
    fn end_lease(
        &mut self,
        lease: &Lease,
        at_ms: u64,
        reason: EndReason,
        notice: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let id = lease.contract.lease_id;
        let (kind, detail) = reason_text(&reason);
        if self.book.end(&id, at_ms, reason, notice)? {
            let reason = match detail {
                Some(d) => format!("{kind}: {d}"),
                None => kind.to_owned(),
            };
            let _ = self.events.send(LeaseEvent::Ended {
                id,
                role: lease.stored.role,
                reason,
            });
        }
        Ok(())
    }

    fn publish_leased(&mut self) {
        let used = self.book.used();
        if self.last_leased != Some(used) && self.capacity.set_leased(used) {
            self.last_leased = Some(used);
        }
    }

    /// When to sweep next: at the next offer lapse or lease end, and at least every
    /// [`SWEEP_MAX`] however busy the actor is.
    fn next_wake(&self, last_sweep: Instant) -> Instant {
        let now = now_ms();
        let regular = last_sweep + SWEEP_MAX;
        [self.book.next_offer_expiry(), self.book.next_lease_end()]
            .into_iter()
            .flatten()
            .min()
            .map_or(regular, |t| {
                (Instant::now() + Duration::from_millis(t.saturating_sub(now))).min(regular)
            })
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::List(reply) => {
                let offered = self.offered();
                let _ = reply.send(LeaseList {
                    leases: self
                        .book
                        .list()
                        .into_iter()
                        .map(LeaseView::listed)
                        .collect(),
                    host: self.book.totals(&offered),
                    offers_held: self.book.offers_held(),
                });
            }
            Command::Counts(reply) => {
                let _ = reply.send(self.book.active_counts());
            }
            Command::Get(id, reply) => {
                let r = self.book.find(&id).cloned().map_err(LeaseError::NotFound);
                let _ = reply.send(r);
            }
            Command::Store(stored, reply) => {
                let r = self
                    .book
                    .put(*stored)
                    .map_err(LeaseError::from)
                    .and_then(|id| self.reread(&id));
                let _ = reply.send(r);
            }
            Command::End {
                id,
                at_ms,
                reason,
                notice,
                reply,
            } => {
                let r = self.reread(&id).and_then(|lease| {
                    self.end_lease(&lease, at_ms, reason, notice)?;
                    self.reread(&id)
                });
                let _ = reply.send(r);
            }
            Command::AddReceipts { receipts, reply } => {
                let _ = reply.send(self.book.add_receipts(&receipts).map_err(LeaseError::from));
            }
            Command::Receipts { id, reply } => {
                let _ = reply.send(self.book.receipts(&id, 0, usize::MAX));
            }
            Command::Terminate { id, reason, reply } => {
                let _ = reply.send(self.terminate(&id, &reason));
            }
            Command::Confirm(id, reply) => {
                let r = self
                    .book
                    .confirm(&id)
                    .map_err(LeaseError::from)
                    .and_then(|_| self.reread(&id));
                let _ = reply.send(r);
            }
            Command::Forget(id) => {
                if let Err(e) = self.book.forget(&id) {
                    tracing::warn!(error = %e, "cannot drop a pending lease");
                }
            }
            Command::Pending(reply) => {
                let _ = reply.send(self.book.pending());
            }
            Command::Check(reply) => {
                let offered = self.offered();
                let _ = reply.send(self.book.check_invariant(&offered));
            }
        }
    }

    fn terminate(&mut self, id: &str, reason: &str) -> Result<Lease, LeaseError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > MAX_REASON {
            return Err(LeaseError::BadInput(format!(
                "give a reason of 1 to {MAX_REASON} bytes with --reason; the tenant is told"
            )));
        }
        let lease = self.book.find(id).map_err(LeaseError::NotFound)?.clone();
        if lease.stored.role != Role::Host {
            return Err(LeaseError::Conflict(format!(
                "this node is the tenant of lease {}; a tenant ends a lease with `degroup lease release ID`",
                lease.id_hex()
            )));
        }
        if !lease.is_active() {
            return Err(LeaseError::Conflict(format!(
                "lease {} has already ended",
                lease.id_hex()
            )));
        }
        let now = now_ms();
        let notice = self.end_as_host(&lease, now, EndReason::Terminated(reason.to_owned()))?;
        // Tell the tenant, best effort: its own copy expires on time regardless.
        if let Some(tenant) = crate::identity::peer_id_of_bytes(&lease.contract.tenant) {
            let net = self.net.clone();
            tokio::spawn(async move {
                let msg = LeaseMsg::Ended(notice);
                if let Err(e) = net.request::<LeaseProtocol>(tenant, msg).await {
                    tracing::info!(%tenant, error = %e, "tenant not told of the termination");
                }
            });
        }
        self.reread(&lease.contract.lease_id)
    }
}
