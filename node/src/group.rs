//! Groups and the mesh: a tenant's deployments, across hosts, that message each other.
//!
//! - [`doc`]: the group document the tenant signs (`degroup/group/v1`: name, tenant,
//!   version, members) and the leave notice a host signs (`degroup/group-left/v1`).
//! - [`tenant`]: the tenant's side. `degroup group create` makes an empty group (version 1);
//!   `deploy --group` adds the deployment once its host confirmed it; `stop` and the end of
//!   a member's lease remove it. Each change is signed, stored durably, then pushed.
//! - [`push`]: one task per (group, host) sends the newest document until that host
//!   acknowledges it, with capped backoff; a newer version supersedes the one being retried.
//!   At start-up every group is pushed again, so a host that was down catches up.
//! - [`book`]: the host's side. It keeps the newest document per (tenant, name), durably,
//!   knows which members are gone, holds the inboxes of the deployments it runs, and makes
//!   every mesh decision under one short lock.
//! - [`mesh`]: the [`crate::plugin::control::Mesh`] of one deployment: `members`, `send`
//!   (local: straight into the receiver's inbox; remote: `/degroup/mesh/1`), `broadcast`;
//!   and the host's answer to `/degroup/mesh/1`.
//! - [`rate`]: the send-rate cap (token buckets, 100 msg/s and 1 MiB/s per deployment).
//! - [`wire`]: the protocols `/degroup/group/1` and `/degroup/mesh/1`.
//!
//! Leaving: when a member running on a host stops (tenant stop, operator stop, lease end,
//! failure), that host treats it as gone at once and sends each other host of the group a
//! signed [`doc::Left`] notice; a receiver takes it only from the host its own document lists
//! the member on. The tenant's new version follows.
//!
//! Nothing here waits on a plugin: delivery is a `try_send` into a worker's bounded queue.

pub mod book;
pub mod doc;
mod host;
mod mesh;
mod push;
pub mod rate;
pub mod tenant;
pub mod wire;

use std::sync::{Arc, Mutex, MutexGuard};

use libp2p::{Multiaddr, PeerId};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::capacity::AdvertBook;
use crate::error::{Coded, ErrorCode};
use crate::identity::{Identity, key_of_peer};
use crate::lease::{LeaseEvent, Role};
use crate::net::{Inbound, Network};
use crate::plugin::PluginError;
use crate::plugin::control::Mesh;
use crate::plugin::deployment::Record;
use crate::plugin::worker::Inbox;
use crate::store::{Domain, Store, StoreError};

pub use doc::{GroupDoc, Member};
pub use tenant::{GroupView, MemberView};
pub use wire::{GroupProtocol, MeshProtocol};

/// Why a group operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for GroupError {
    fn code(&self) -> ErrorCode {
        match self {
            GroupError::BadInput(_) => ErrorCode::BadInput,
            GroupError::NotFound(_) => ErrorCode::NotFound,
            GroupError::Conflict(_) => ErrorCode::Conflict,
            GroupError::Internal(_) | GroupError::Store(_) => ErrorCode::Internal,
        }
    }
}

impl From<GroupError> for PluginError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::BadInput(m) => PluginError::BadInput(m),
            GroupError::NotFound(m) => PluginError::NotFound(m),
            GroupError::Conflict(m) => PluginError::Conflict(m),
            GroupError::Internal(m) => PluginError::Busy(m),
            GroupError::Store(e) => PluginError::Store(e),
        }
    }
}

/// Labels of a mesh refusal.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `too_large`, `rate_limited`, `unknown`, `not_in_group`, `unreachable`,
    /// `inbox_full`, `forged`, `bad_signature`, `malformed`.
    pub reason: &'static str,
}

/// Labels of a group document or notice received.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DocLabels {
    /// `held`, `old`, `dropped`, `refused`, `left`.
    pub verdict: &'static str,
}

/// The mesh's metrics (`degroup_mesh_*`, `degroup_group_docs_total`).
#[derive(Debug, Clone, Default)]
pub struct MeshMetrics {
    pub refused: Family<RefusalLabels, Counter>,
    pub delivered: Counter,
    pub docs: Family<DocLabels, Counter>,
}

impl MeshMetrics {
    /// Creates the metrics and registers them under `degroup_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("degroup");
        r.register(
            "mesh_refused",
            "Mesh messages refused, by reason (on the host that decided)",
            m.refused.clone(),
        );
        r.register(
            "mesh_delivered",
            "Mesh messages queued into a receiver's inbox on this host",
            m.delivered.clone(),
        );
        r.register(
            "group_docs",
            "Group documents and leave notices received, by verdict",
            m.docs.clone(),
        );
        m
    }

    fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&RefusalLabels { reason }).inc();
    }

    fn doc(&self, verdict: &'static str) {
        self.docs.get_or_create(&DocLabels { verdict }).inc();
    }
}

/// The groups service: cloneable; the supervisor, the API and the protocol tasks share it.
#[derive(Clone)]
pub struct Groups {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Groups")
    }
}

pub(crate) struct Inner {
    identity: Identity,
    me: PeerId,
    net: Network,
    adverts: Arc<AdvertBook>,
    store: Store,
    book: Mutex<book::Book>,
    tenant: Mutex<tenant::Tenants>,
    push: push::Pusher,
    metrics: MeshMetrics,
    /// The node's runtime: remote sends and pushes run here, not on a plugin's thread.
    rt: tokio::runtime::Handle,
    shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    fn book(&self) -> MutexGuard<'_, book::Book> {
        lock(&self.book)
    }

    /// Addresses of a peer from its advert, for dialling when not connected.
    fn addrs_of(&self, peer: &PeerId) -> Vec<Multiaddr> {
        key_of_peer(peer)
            .and_then(|k| self.adverts.get(&k))
            .map(|(a, _)| a.addrs.iter().filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_default()
    }
}

impl Groups {
    /// Loads the groups this node made and the documents it holds. Call from the node's
    /// runtime.
    pub fn open(
        identity: Identity,
        store: Store,
        net: Network,
        adverts: Arc<AdvertBook>,
        metrics: MeshMetrics,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let me = identity.peer_id();
        let mut book = book::Book::new(me.to_string());
        let mut gone = Vec::new();
        for item in store.tree(Domain::GroupDocs)?.scan_prefix(b"") {
            let (k, v) = item?;
            if k.starts_with(host::GONE_PREFIX.as_bytes()) {
                gone.extend(host::parse_gone_key(&k));
                continue;
            }
            match doc::open_doc(&v) {
                Ok(o) => book.hold(o.value, v),
                Err(e) => tracing::error!(error = %e, "unreadable group document kept aside"),
            }
        }
        for (key, id) in gone {
            book.mark_gone(&key, &id);
        }
        let tenants = tenant::Tenants::load(&store)?;
        Ok(Self {
            inner: Arc::new(Inner {
                identity,
                me,
                net,
                adverts,
                store,
                book: Mutex::new(book),
                tenant: Mutex::new(tenants),
                push: push::Pusher::default(),
                metrics,
                rt: tokio::runtime::Handle::current(),
                shutdown,
            }),
        })
    }

    /// Serves `/degroup/group/1` and `/degroup/mesh/1`, removes members whose lease ended,
    /// and pushes every group once (a host that missed a version gets it now).
    pub fn start(
        &self,
        mut groups_in: Inbound<GroupProtocol>,
        mut mesh_in: Inbound<MeshProtocol>,
        mut lease_events: broadcast::Receiver<LeaseEvent>,
    ) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        let shutdown = inner.shutdown.clone();
        let mesh_task = {
            let inner = inner.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        req = mesh_in.recv() => match req {
                            Some(req) => {
                                let reply = inner.answer_mesh(&req.peer, &req.request);
                                req.reply.send(reply);
                            }
                            None => break,
                        },
                    }
                }
            })
        };
        self.push_all();
        tokio::spawn(async move {
            let mut leases_open = true;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    req = groups_in.recv() => match req {
                        Some(req) => {
                            let reply = inner.answer_group(req.request);
                            req.reply.send(reply);
                        }
                        None => break,
                    },
                    ev = lease_events.recv(), if leases_open => match ev {
                        Ok(LeaseEvent::Ended { id, role: Role::Tenant, .. }) => {
                            if let Err(e) = inner.lease_ended(&id) {
                                tracing::error!(error = %e, "cannot remove the members of an ended lease from their groups");
                            }
                        }
                        Ok(LeaseEvent::Ended { .. }) => {}
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "lease events missed by groups");
                        }
                        Err(broadcast::error::RecvError::Closed) => leases_open = false,
                    },
                }
            }
            let _ = mesh_task.await;
        })
    }
}

impl crate::plugin::control::Membership for Groups {
    /// The mesh of a hosted deployment.
    fn mesh_for(&self, r: &Record) -> Arc<dyn Mesh> {
        Arc::new(mesh::DeploymentMesh::new(self.inner.clone(), r.id.clone()))
    }

    /// A hosted deployment's worker runs: its inbox takes mesh messages.
    fn attach(&self, r: &Record, inbox: Inbox) {
        self.inner.book().attach(&r.id, &r.tenant, inbox);
    }

    /// A hosted deployment's worker is gone (it may come back).
    fn detach(&self, id: &str) {
        self.inner.book().detach(id);
    }

    /// A hosted deployment stopped for good (any reason): gone from its groups here at once,
    /// and the other hosts of each are told. Never waits.
    fn stopped(&self, id: &str) {
        self.inner.stopped(id);
    }
}
