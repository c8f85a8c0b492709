//! [`PluginHandle`]: what the rest of the node (the admin API) calls.
//!
//! Operations on deployments this node hosts go to the actor. Operations on deployments this
//! node made as a tenant go to their host over `/degroup/deploy/2`, from the caller's task; the
//! actor only stores what the host confirmed. So `ps`, `logs` and `stop` work from either side.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::super::deployment::{PackageRef, Record, Side, State, View};
use super::super::distribution::{Distribution, Staged};
use super::super::logs::LogPage;
use super::super::runtime::Runtime;
use super::super::wire::{
    DeployMsg, DeployProtocol, DeployReply, DeployRequest, MAX_MESSAGE, RefusalCode, Status,
    check_config, check_routes,
};
use super::PluginError;
use super::command::{Caller, Command};
use super::lease_active;
use crate::capacity::AdvertBook;
use crate::identity::{Identity, key_of_peer};
use crate::lease::{LeaseHandle, Role};
use crate::net::Network;
use crate::resources::{DeploymentId, LeaseId, now_ms, parse_id};
use crate::signed::Envelope;

/// How long `ps` waits for each host.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// What to deploy: a package file's bytes, or a reference the catalogue resolves
/// (`greeter`, `greeter@0.1.0`, `5a1f…/greeter@^0.1`, `blake3:HEX`).
#[derive(Debug, Clone)]
pub enum Source {
    File(Vec<u8>),
    Reference(String),
}

/// `degroup deploy`.
#[derive(Debug, Clone)]
pub struct DeployParams {
    /// Lease id or unique prefix.
    pub lease: String,
    pub source: Source,
    pub config: Vec<(String, String)>,
    /// Host names to claim on the host's ingress (`--route`).
    pub routes: Vec<String>,
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
    distribution: Distribution,
}

/// Live children of one parent a tenant's node takes from its host's answers, at most: more
/// than a host runs by default (`plugin.max_children`, 16).
const MAX_LEARNED_CHILDREN: usize = 64;

impl std::fmt::Debug for PluginHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHandle").finish_non_exhaustive()
    }
}

/// Refreshes a tenant's view of its deployment with what the host reported.
fn refresh(v: &mut View, s: &Status) {
    v.state = s.phase.into();
    v.reason = s.reason.clone();
    v.generation = s.generation;
    v.updated_ms = s.updated_ms;
    v.counters = Some((&s.usage).into());
    v.warning = None;
    v.urls.clone_from(&s.urls);
}

/// A tenant's view of its deployment: its own record, refreshed with what the host reported.
fn reported(r: &Record, s: &Status) -> View {
    let mut v = View::of(r, None);
    refresh(&mut v, s);
    v
}

/// The stored view of a tenant's deployment, with why it is not fresh.
fn stale(r: &Record, warning: String) -> View {
    let mut v = View::of(r, None);
    v.warning = Some(warning);
    v
}

fn unexpected(what: &str, other: &DeployReply) -> PluginError {
    PluginError::Protocol(format!("unexpected answer to {what}: {other:?}"))
}

impl PluginHandle {
    pub(super) fn new(
        tx: mpsc::Sender<Command>,
        identity: Identity,
        net: Network,
        leases: LeaseHandle,
        adverts: Arc<AdvertBook>,
        runtime: Arc<Runtime>,
        distribution: Distribution,
    ) -> Self {
        Self {
            tx,
            identity,
            net,
            leases,
            adverts,
            runtime,
            distribution,
        }
    }

    /// Package distribution: publish, search, info, fetch, yank.
    pub fn distribution(&self) -> &Distribution {
        &self.distribution
    }

    /// What a source deploys onto `host`.
    async fn stage(&self, source: Source, host: &[u8; 32]) -> Result<Staged, PluginError> {
        match source {
            Source::File(bytes) => {
                let peer = crate::identity::peer_id_of_bytes(host).ok_or_else(|| {
                    PluginError::Protocol("host key is not a valid ed25519 key".into())
                })?;
                self.distribution.stage_file(bytes, &peer).await
            }
            Source::Reference(r) => self.distribution.stage_reference(&r),
        }
    }

    pub(super) async fn ask<T>(
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

    pub(super) fn identity(&self) -> &Identity {
        &self.identity
    }

    pub(super) fn leases(&self) -> &LeaseHandle {
        &self.leases
    }

    /// The runtime (for `plugin run` and benchmarks).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
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
        let found = self
            .ask(|reply| Command::Record {
                id: id.to_owned(),
                reply,
            })
            .await?;
        if !matches!(found, Err(PluginError::NotFound(_))) {
            return found;
        }
        // Perhaps a child workload this node has not heard of yet: its hosts tell.
        self.list().await?;
        self.ask(|reply| Command::Record {
            id: id.to_owned(),
            reply,
        })
        .await?
    }

    async fn send(&self, host: &str, msg: DeployMsg) -> Result<DeployReply, PluginError> {
        let peer: PeerId = host
            .parse()
            .map_err(|_| PluginError::Protocol(format!("stored host {host:?} is not a peer id")))?;
        let addrs = key_of_peer(&peer)
            .and_then(|k| self.adverts.get(&k))
            .map(|(a, _)| a.addrs.iter().filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_default();
        match self
            .net
            .request_at::<DeployProtocol>(peer, addrs, msg)
            .await
        {
            Ok(DeployReply::Refused(r)) => Err(PluginError::Refused(r)),
            Ok(reply) => Ok(reply),
            Err(e) => Err(PluginError::from_request(peer, e)),
        }
    }

    /// Deploys a package onto a lease this node rents.
    pub async fn deploy(&self, p: DeployParams) -> Result<View, PluginError> {
        check_config(&p.config).map_err(PluginError::BadInput)?;
        check_routes(&p.routes).map_err(PluginError::BadInput)?;
        let lease = self.leases.get(&p.lease).await?;
        if lease.stored.role != Role::Tenant {
            return Err(PluginError::Conflict(format!(
                "lease {} is one this node hosts; deploy from the tenant's node",
                lease.id_hex()
            )));
        }
        if !lease_active(&lease, now_ms()) {
            return Err(PluginError::Conflict(format!(
                "lease {} is not active; `degroup lease show` says why",
                lease.id_hex()
            )));
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| PluginError::internal("drawing random bytes", e))?;
        let target = Target {
            id,
            lease_id: lease.contract.lease_id,
            host: lease.contract.host,
        };
        let staged = self.stage(p.source, &target.host).await?;
        self.send_deploy(target, &staged, p.config, p.routes, false, false)
            .await
    }

    /// Replaces the code of one of this node's deployments, keeping its key-value store.
    /// `config: None` keeps the current configuration.
    pub async fn upgrade(
        &self,
        deployment: &str,
        source: Source,
        config: Option<Vec<(String, String)>>,
        routes: Vec<String>,
    ) -> Result<View, PluginError> {
        check_routes(&routes).map_err(PluginError::BadInput)?;
        let r = self.record(deployment).await?;
        if r.side != Side::Tenant {
            return Err(PluginError::Conflict(format!(
                "deployment {} runs here for another tenant; upgrades come from its tenant",
                r.id
            )));
        }
        let config = config.unwrap_or_else(|| r.config.clone());
        check_config(&config).map_err(PluginError::BadInput)?;
        let id = parse_id(&r.id).ok_or_else(|| {
            PluginError::Protocol("stored deployment id is not 16 bytes of hex".into())
        })?;
        let host_peer: PeerId = r
            .host
            .parse()
            .map_err(|_| PluginError::Protocol("bad stored host".into()))?;
        let host = key_of_peer(&host_peer)
            .ok_or_else(|| PluginError::Protocol("bad stored host key".into()))?;
        let target = Target {
            id,
            lease_id: r.lease_id,
            host,
        };
        let staged = self.stage(source, &target.host).await?;
        let same = r.package.blob == staged.hash;
        let view = self
            .send_deploy(target, &staged, config, routes, true, same)
            .await?;
        if r.package.blob != staged.hash {
            self.distribution
                .release(&r.package.blob, &format!("dep:{}", r.id));
        }
        Ok(view)
    }

    async fn send_deploy(
        &self,
        target: Target,
        staged: &Staged,
        config: Vec<(String, String)>,
        routes: Vec<String>,
        upgrade: bool,
        keep_hold: bool,
    ) -> Result<View, PluginError> {
        let req = DeployRequest {
            deployment_id: target.id,
            lease_id: target.lease_id,
            host: target.host,
            tenant: self.identity.verifying_key().to_bytes(),
            package_hash: staged.hash,
            package_size: staged.size,
            reference: staged.reference.clone(),
            providers: staged.hints.clone(),
            config: config.clone(),
            upgrade,
            created_ms: now_ms(),
            routes,
        };
        let request = Envelope::seal_kind(self.identity.signing_key(), &req)
            .map_err(|e| PluginError::internal("signing the deploy request", e))?
            .to_bytes();
        let host_peer = crate::identity::peer_id_of_bytes(&target.host)
            .ok_or_else(|| PluginError::Protocol("host key is not a valid ed25519 key".into()))?
            .to_string();
        let msg = DeployMsg::Deploy {
            request: request.clone(),
        };
        // Held before the host asks for it: garbage collection must not take it meanwhile.
        let holder = format!("dep:{}", hex::encode(target.id));
        self.distribution.hold(&staged.hash, &holder);
        let answer = match self.send(&host_peer, msg).await {
            Ok(DeployReply::Deployment(s)) => Ok(*s),
            Ok(other) => Err(unexpected("a deploy", &other)),
            Err(e) => Err(e),
        };
        let status = match answer {
            Ok(s) => s,
            Err(e) => {
                // An upgrade to the package the deployment already runs keeps its hold.
                if !keep_hold {
                    self.distribution.release(&staged.hash, &holder);
                }
                return Err(e);
            }
        };
        if status.id != target.id {
            return Err(PluginError::Protocol(
                "the host answered for another deployment".into(),
            ));
        }
        let now = now_ms();
        let record = Record {
            id: hex::encode(target.id),
            side: Side::Tenant,
            lease_id: target.lease_id,
            host: host_peer,
            tenant: self.identity.peer_id().to_string(),
            package: PackageRef {
                name: staged.name.clone(),
                version: staged.version.clone(),
                hash: status.package_hash,
                publisher: staged.publisher,
                blob: staged.hash,
                reference: staged.reference.clone(),
            },
            config,
            state: status.phase.into(),
            reason: status.reason.clone(),
            created_ms: status.created_ms.min(now),
            updated_ms: now,
            generation: status.generation,
            request,
            child: None,
        };
        let mut view = reported(&record, &status);
        if view.warning.is_none() {
            view.warning.clone_from(&staged.warning);
        }
        self.distribution
            .hold(&staged.hash, &format!("dep:{}", record.id));
        self.ask(|reply| Command::SaveTenant {
            record: Box::new(record),
            reply,
        })
        .await??;
        Ok(view)
    }

    /// Every deployment this node hosts or made, tenant-side ones refreshed from their hosts.
    pub async fn list(&self) -> Result<Vec<View>, PluginError> {
        let mut all = self.local_list().await?;
        let hosts: BTreeSet<String> = all
            .iter()
            .filter(|v| v.side == Side::Tenant && v.state != State::Stopped)
            .map(|v| v.host.clone())
            .collect();
        let asks = hosts.iter().map(|h| async move {
            let r = tokio::time::timeout(LIST_TIMEOUT, self.send(h, DeployMsg::List)).await;
            (h.clone(), r)
        });
        let answers = futures::future::join_all(asks).await;
        for (host, answer) in answers {
            let live: Result<Vec<Status>, String> = match answer {
                Ok(Ok(DeployReply::List(v))) => Ok(v),
                Ok(Ok(other)) => Err(unexpected("a list", &other).to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} s", LIST_TIMEOUT.as_secs())),
            };
            for v in all
                .iter_mut()
                .filter(|v| v.side == Side::Tenant && v.host == host && v.state != State::Stopped)
            {
                let id = parse_id(&v.id);
                match &live {
                    Ok(list) => match list.iter().find(|s| Some(s.id) == id) {
                        Some(s) => refresh(v, s),
                        None => v.warning = Some("the host no longer knows this deployment".into()),
                    },
                    Err(e) => {
                        v.warning = Some(format!("host unreachable, stored state shown: {e}"))
                    }
                }
            }
            if let Ok(list) = &live {
                self.learn_children(&host, list, &mut all).await;
            }
        }
        Ok(all)
    }

    /// Stores (and shows) the child workloads a host reported that this node has no record
    /// of yet: their parents are this node's deployments there.
    async fn learn_children(&self, host: &str, list: &[Status], all: &mut Vec<View>) {
        for s in list {
            let Some(c) = &s.child else {
                continue;
            };
            let id = hex::encode(s.id);
            if s.phase == super::super::wire::Phase::Stopped || all.iter().any(|v| v.id == id) {
                continue;
            }
            // Only children of this tenant's own deployments on that host and lease, and no
            // more per parent than a host may run: a host cannot fill the tenant's store.
            let parent = hex::encode(c.parent);
            let ours = all
                .iter()
                .any(|v| v.id == parent && v.host == host && v.lease == hex::encode(s.lease_id));
            let siblings = all
                .iter()
                .filter(|v| v.parent.as_deref() == Some(parent.as_str()) && v.state.is_live())
                .count();
            if !ours || siblings >= MAX_LEARNED_CHILDREN {
                tracing::debug!(host, child = %id, "a reported child is not taken");
                continue;
            }
            let record = Record {
                id,
                side: Side::Tenant,
                lease_id: s.lease_id,
                host: host.to_owned(),
                tenant: self.identity.peer_id().to_string(),
                package: PackageRef {
                    name: c.name.clone(),
                    version: c.version.clone(),
                    hash: s.package_hash,
                    publisher: c.publisher,
                    blob: c.blob,
                    reference: c.reference.clone(),
                },
                config: c.config.clone(),
                state: s.phase.into(),
                reason: s.reason.clone(),
                created_ms: s.created_ms,
                updated_ms: s.updated_ms,
                generation: s.generation,
                request: Vec::new(),
                child: Some(super::super::deployment::ChildOf {
                    parent: hex::encode(c.parent),
                    limits: super::super::control::ChildLimits {
                        mem_bytes: c.mem_bytes,
                        fuel_per_second: c.fuel_per_second,
                        kv_bytes: c.kv_bytes,
                    },
                }),
            };
            let view = reported(&record, s);
            let saved = self
                .ask(|reply| Command::SaveTenant {
                    record: Box::new(record),
                    reply,
                })
                .await;
            if let Ok(Err(e)) | Err(e) = saved {
                tracing::warn!(error = %e, "cannot store a child workload a host reported");
            }
            all.push(view);
        }
    }

    /// One deployment, asked of its host when this node is its tenant.
    pub async fn get(&self, id: &str) -> Result<View, PluginError> {
        let r = self.record(id).await?;
        if r.side == Side::Host || r.state == State::Stopped {
            return self
                .ask(|reply| Command::Get {
                    id: r.id.clone(),
                    reply,
                })
                .await?;
        }
        let deployment = self.wire_id(&r)?;
        let answer = tokio::time::timeout(
            LIST_TIMEOUT,
            self.send(&r.host, DeployMsg::Get { deployment }),
        )
        .await;
        Ok(match answer {
            Ok(Ok(DeployReply::Deployment(s))) => reported(&r, &s),
            Ok(Ok(other)) => stale(&r, unexpected("a get", &other).to_string()),
            Ok(Err(PluginError::Refused(refusal))) if refusal.code == RefusalCode::Unknown => {
                stale(&r, "the host no longer knows this deployment".into())
            }
            Ok(Err(e)) => stale(&r, format!("host unreachable, stored state shown: {e}")),
            Err(_) => stale(
                &r,
                format!(
                    "no answer within {} s, stored state shown",
                    LIST_TIMEOUT.as_secs()
                ),
            ),
        })
    }

    fn wire_id(&self, r: &Record) -> Result<DeploymentId, PluginError> {
        parse_id(&r.id).ok_or_else(|| {
            PluginError::Protocol("stored deployment id is not 16 bytes of hex".into())
        })
    }

    /// Log lines after `after` (from the host when this node is the tenant).
    pub async fn logs(&self, id: &str, after: u64, limit: u32) -> Result<LogPage, PluginError> {
        let r = self.record(id).await?;
        match r.side {
            Side::Host => {
                self.ask(|reply| Command::Logs {
                    id: r.id.clone(),
                    caller: Caller::Operator,
                    after,
                    limit,
                    reply,
                })
                .await?
            }
            Side::Tenant => {
                let deployment = self.wire_id(&r)?;
                let msg = DeployMsg::Logs {
                    deployment,
                    after,
                    limit,
                };
                match self.send(&r.host, msg).await? {
                    DeployReply::Logs(page) => Ok(page.into()),
                    other => Err(unexpected("a logs request", &other)),
                }
            }
        }
    }

    /// Stops a deployment: as its host (operator) or through its host (tenant).
    pub async fn stop(&self, id: &str) -> Result<View, PluginError> {
        let r = self.record(id).await?;
        if r.side == Side::Host {
            self.ask(|reply| Command::Stop {
                id: r.id.clone(),
                reason: "stopped by the host's operator".into(),
                caller: Caller::Operator,
                reply,
            })
            .await??;
            return self
                .ask(|reply| Command::Get {
                    id: r.id.clone(),
                    reply,
                })
                .await?;
        }
        let deployment = self.wire_id(&r)?;
        let status = match self.send(&r.host, DeployMsg::Stop { deployment }).await {
            Ok(DeployReply::Deployment(s)) => Some(*s),
            Ok(other) => return Err(unexpected("a stop", &other)),
            // The host no longer has it (its lease ended): stopped all the same.
            Err(PluginError::Refused(refusal)) if refusal.code == RefusalCode::Unknown => None,
            Err(e) => return Err(e),
        };
        self.distribution
            .release(&r.package.blob, &format!("dep:{}", r.id));
        let mut record = r.clone();
        record.state = State::Stopped;
        record.reason = status
            .as_ref()
            .and_then(|s| s.reason.clone())
            .or(Some("stopped by the tenant".into()));
        record.updated_ms = now_ms();
        self.ask(|reply| Command::SaveTenant {
            record: Box::new(record.clone()),
            reply,
        })
        .await??;
        let mut v = View::of(&record, status.as_ref().map(|s| (&s.usage).into()));
        v.side = Side::Tenant;
        Ok(v)
    }

    /// Sends a payload to a deployment's `message` export.
    pub async fn message(&self, id: &str, payload: Vec<u8>) -> Result<(), PluginError> {
        if payload.len() > MAX_MESSAGE {
            return Err(PluginError::BadInput(format!(
                "message payload over {MAX_MESSAGE} bytes"
            )));
        }
        let r = self.record(id).await?;
        match r.side {
            Side::Host => {
                self.ask(|reply| Command::Message {
                    id: r.id.clone(),
                    from: "cli".into(),
                    payload,
                    caller: Caller::Operator,
                    reply,
                })
                .await?
            }
            Side::Tenant => {
                let deployment = self.wire_id(&r)?;
                let msg = DeployMsg::Message {
                    deployment,
                    payload,
                };
                match self.send(&r.host, msg).await? {
                    DeployReply::Ok => Ok(()),
                    other => Err(unexpected("a message", &other)),
                }
            }
        }
    }
}

/// Where a deploy goes.
struct Target {
    id: DeploymentId,
    lease_id: LeaseId,
    host: [u8; 32],
}
