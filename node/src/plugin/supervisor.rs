//! The plugin supervisor: one actor owns every deployment record and worker; the rest of the
//! node talks to it through a cloneable [`PluginHandle`].
//!
//! - [`command`]: what the actor is asked, and for whom ([`command::Caller`]: the host's
//!   operator, or a tenant that may see only its own deployments); [`admit`]: whether a
//!   verified deploy may be installed.
//! - [`actor`]: the actor. It installs verified deploys (package and record written in one
//!   durable batch before the worker starts), records failures reported by workers, stops the
//!   deployments of leases that end (it hears of them from the lease actor, as
//!   [`crate::lease::LeaseEvent`]s) and at start-up restarts the deployments of active leases
//!   with their key-value stores. It never waits on a plugin: workers are told to stop and let
//!   go, and report when their thread ends.
//! - [`http`]: the host's HTTP ingress as the actor sees it: endpoints attached as workers
//!   start, host names claimed with the install and released with the stop.
//! - [`inbound`]: the host's side of `/degroup/deploy/5`, every check before anything runs
//!   (the package is fetched by hash, from the blob store's providers, after the cheap checks);
//!   each request is answered in its own task, in a bounded set the actor keeps ("unavailable"
//!   when it is full).
//! - `actor::children` (in `children.rs`): child workloads, records with a parent that a
//!   deployment starts through `degroup:plugin/workload`; [`capacity`]: how much of the lease
//!   they may take.
//! - [`handle`]: the [`PluginHandle`]. Tenant side, it talks to the host directly and only asks
//!   the actor to store what the host confirmed, so `ps`, `logs` and `stop` work from the
//!   tenant's node too.

mod actor;
mod admit;
mod capacity;
mod command;
mod handle;
mod http;
mod inbound;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::deployment::{self, Record};
use super::distribution::Distribution;
use super::runtime::{LeaseInfo, Runtime};
use super::wire::DeployProtocol;
use crate::capacity::AdvertBook;
use crate::identity::Identity;
use crate::lease::book::Lease;
use crate::lease::{LeaseHandle, Meter};
use crate::net::{Inbound, Network};
use crate::store::{Domain, Store};

pub(crate) use self::http::HttpSide;
pub(crate) use super::error::PluginError;
pub(crate) use actor::CHILD_START;
pub(crate) use handle::{DeployParams, PluginHandle, Source};

/// Everything the supervisor starts with.
#[allow(missing_debug_implementations)]
pub(crate) struct Deps {
    pub identity: Identity,
    pub store: Store,
    pub runtime: Arc<Runtime>,
    pub leases: LeaseHandle,
    pub net: Network,
    pub adverts: Arc<AdvertBook>,
    pub meter: Meter,
    pub distribution: Distribution,
    /// The HTTP ingress, when the host runs one.
    pub http: Option<HttpSide>,
    /// Groups and the mesh: each hosted deployment's mesh, and its inbox for messages.
    pub groups: Arc<dyn super::control::Membership>,
}

/// Loads the records, restarts the deployments of active leases, and spawns the actor.
pub(crate) async fn start(
    deps: Deps,
    inbound: Inbound<DeployProtocol>,
    shutdown: CancellationToken,
) -> Result<(PluginHandle, tokio::task::JoinHandle<()>), PluginError> {
    let (tx, rx) = mpsc::channel(1024);
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
    // Every deployment that is not stopped holds its package, on either side (the holds are
    // written lazily, so they are restored here).
    for r in records.values() {
        if r.state != deployment::State::Stopped && r.package.blob != [0; 32] {
            deps.distribution
                .hold(&r.package.blob, &format!("dep:{}", r.id));
        }
    }
    // Subscribed before the deployments are resumed: a lease that ends meanwhile is heard of.
    let lease_events = deps.leases.subscribe();
    let handle = PluginHandle::new(
        tx,
        deps.identity,
        deps.net,
        deps.leases.clone(),
        deps.adverts,
        deps.runtime.clone(),
        deps.distribution.clone(),
    );
    let host = inbound::HostSide::new(handle.clone(), deps.meter.clone(), deps.http.clone());
    let mut actor = actor::Actor::new(
        deps.store,
        deps.runtime,
        deps.distribution,
        deps.leases,
        deps.meter,
        records,
        deps.http,
        deps.groups,
    );
    actor.resume().await;
    let task = tokio::spawn(actor.run(rx, inbound, lease_events, host, shutdown));
    Ok((handle, task))
}

/// The lease info a deployment's plugin sees.
pub(crate) fn info_of(r: &Record, lease: &Lease) -> LeaseInfo {
    let c = &lease.contract;
    LeaseInfo {
        lease_id: hex::encode(r.lease_id),
        deployment_id: r.id.clone(),
        host: r.host.clone(),
        tenant: r.tenant.clone(),
        slice: c.slice,
        starts_at: c.starts_at_ms,
        ends_at: c.ends_at_ms,
        package_name: r.package.name.clone(),
        package_version: r.package.version.clone(),
    }
}

/// Whether a lease is active now (not ended, not past its end).
pub(crate) fn lease_active(lease: &Lease, now: u64) -> bool {
    lease.stored.ended.is_none() && now < lease.contract.ends_at_ms && !lease.stored.pending
}
