//! Tenant load and the testnet's own ledger of what was acknowledged.
//!
//! The ledger is the ground truth the `verify_*` checks hold the nodes to: a lease enters it
//! only when a tenant's node answered `POST /v1/leases` with success (it was committed on both
//! sides), a release only when `release` succeeded, a deployment only when `deploy` did.

use std::path::Path;

use degroup_node::api::lease::CreateBody;
use degroup_node::lease::view::LeaseView;
use degroup_node::plugin::deployment::View;

use crate::cluster::Cluster;

/// A lease some tenant's node acknowledged.
#[derive(Debug, Clone)]
pub(super) struct LeaseRecord {
    pub id: String,
    pub host: usize,
    pub tenant: usize,
    pub released: bool,
    /// A release was asked for and not acknowledged: either state is allowed.
    pub release_unconfirmed: bool,
    /// The deployment on it, once `deploy` succeeded.
    pub deployment: Option<String>,
}

/// What the run has been told.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    pub leases: Vec<LeaseRecord>,
    pub attempts: u64,
    /// Refused by the host for want of free capacity.
    pub full: u64,
    /// Failed otherwise (the host or the tenant was down, paused or cut off).
    pub failed: u64,
    pub deploy_failures: u64,
    pub releases: u64,
}

/// Slice size of every chaos lease.
pub(super) const CPU_MILLIS: u64 = 500;
pub(super) const MEM_BYTES: u64 = 128 << 20;
pub(super) const DISK_BYTES: u64 = 16 << 20;

/// One request of the load.
#[derive(Debug, Clone, Copy)]
pub(super) enum Action {
    Lease { tenant: usize, host: usize },
    Release { record: usize },
}

/// Outcome of one action.
#[derive(Debug)]
enum Outcome {
    Leased {
        tenant: usize,
        host: usize,
        id: String,
        deployment: Option<String>,
    },
    Refused {
        full: bool,
    },
    Released(usize),
    ReleaseFailed(usize, String),
}

/// Runs `actions` concurrently (one task per action) and records the acknowledged ones.
pub(super) async fn run(
    bin: &Path,
    cluster: &Cluster,
    tenants: &[usize],
    package: &Path,
    ledger: &mut Ledger,
    actions: &[Action],
) {
    // Together, so that one paused or cut-off host does not serialise the rest.
    let outcomes = futures::future::join_all(
        actions
            .iter()
            .map(|&a| act(bin, cluster, tenants, package, ledger, a)),
    )
    .await;
    for o in outcomes {
        match o {
            Outcome::Leased {
                tenant,
                host,
                id,
                deployment,
            } => {
                ledger.attempts += 1;
                if deployment.is_none() {
                    ledger.deploy_failures += 1;
                }
                ledger.leases.push(LeaseRecord {
                    id,
                    host,
                    tenant,
                    released: false,
                    release_unconfirmed: false,
                    deployment,
                });
            }
            Outcome::Refused { full } => {
                ledger.attempts += 1;
                if full {
                    ledger.full += 1;
                } else {
                    ledger.failed += 1;
                }
            }
            Outcome::Released(i) => {
                ledger.releases += 1;
                if let Some(r) = ledger.leases.get_mut(i) {
                    r.released = true;
                }
            }
            Outcome::ReleaseFailed(i, why) => {
                // Not acknowledged: the host may or may not have released it.
                if let Some(r) = ledger.leases.get_mut(i) {
                    r.release_unconfirmed = true;
                    if std::env::var_os("DEGROUP_CHAOS_VERBOSE").is_some() {
                        eprintln!("  release of {} not acknowledged: {why}", r.id);
                    }
                }
            }
        }
    }
}

async fn act(
    bin: &Path,
    cluster: &Cluster,
    tenants: &[usize],
    package: &Path,
    ledger: &Ledger,
    action: Action,
) -> Outcome {
    match action {
        Action::Lease { tenant, host } => {
            let t = &cluster.nodes[tenants[tenant % tenants.len()]];
            let h = &cluster.nodes[host];
            let body = CreateBody {
                host: h.peer_id.clone(),
                cpu_millis: CPU_MILLIS,
                mem_bytes: MEM_BYTES,
                disk_bytes: DISK_BYTES,
                gpus: 0,
                duration_ms: 3_600_000,
                max_hourly_micros: None,
                idempotency_key: None,
            };
            let id = match t.post::<LeaseView, _>("/v1/leases", &body).await {
                Ok(l) => l.id,
                Err(e) => {
                    let full = format!("{e:#}").contains("not enough free capacity");
                    return Outcome::Refused { full };
                }
            };
            let file = package.display().to_string();
            let deployment = t
                .cli_json::<View>(bin, &["deploy", "--lease", &id, &file])
                .await
                .ok()
                .map(|v| v.id);
            Outcome::Leased {
                tenant: tenants[tenant % tenants.len()],
                host,
                id,
                deployment,
            }
        }
        Action::Release { record } => {
            let Some(r) = ledger.leases.get(record) else {
                return Outcome::ReleaseFailed(record, "no such record".into());
            };
            let t = &cluster.nodes[r.tenant];
            match t
                .post::<LeaseView, _>(&format!("/v1/leases/{}/release", r.id), &())
                .await
            {
                Ok(_) => Outcome::Released(record),
                Err(e) => Outcome::ReleaseFailed(record, format!("{e:#}")),
            }
        }
    }
}
