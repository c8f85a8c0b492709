//! Tenant side: deploying onto a leased host and reaching deployments through it; and the
//! operations the admin API offers on either side.

use std::collections::BTreeMap;
use std::time::Duration;

use libp2p::PeerId;

use super::super::deployment::{PackageRef, Record, Side, State, View};
use super::super::logs::LogPage;
use super::super::package::Package;
use super::super::wire::{DeployMsg, DeployReply, DeployRequest, MAX_MESSAGE, check_config};
use super::{Command, PluginError, PluginHandle, lease_active};
use crate::capacity::advert::now_ms;
use crate::identity::key_of_peer;
use crate::lease::Role;
use crate::signed::Envelope;

/// How long `ps` waits for each host.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// `degroup deploy`.
#[derive(Debug, Clone)]
pub struct DeployParams {
    /// Lease id or unique prefix.
    pub lease: String,
    /// The package file's bytes.
    pub package: Vec<u8>,
    pub config: Vec<(String, String)>,
}

impl PluginHandle {
    fn addrs_of(&self, host: &PeerId) -> Vec<libp2p::Multiaddr> {
        key_of_peer(host)
            .and_then(|k| self.adverts.get(&k))
            .map(|(a, _)| a.addrs.iter().filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_default()
    }

    async fn send(&self, host: &str, msg: DeployMsg) -> Result<DeployReply, PluginError> {
        let peer: PeerId = host
            .parse()
            .map_err(|_| PluginError::Protocol(format!("stored host {host:?} is not a peer id")))?;
        let addrs = self.addrs_of(&peer);
        match self.net.deploy_request(peer, addrs, msg).await {
            Ok(DeployReply::Refused(r)) => Err(PluginError::Refused(r)),
            Ok(reply) => Ok(reply),
            Err(e) => Err(PluginError::Unreachable {
                peer: host.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// Deploys a package onto a lease this node rents.
    pub async fn deploy(&self, p: DeployParams) -> Result<View, PluginError> {
        let package = Package::open(&p.package)
            .map_err(|e| PluginError::BadInput(format!("package: {e}")))?;
        check_config(&p.config).map_err(PluginError::BadInput)?;
        let lease = self.leases.get(&p.lease).await?;
        if lease.stored.role != Role::Tenant {
            return Err(PluginError::BadInput(format!(
                "lease {} is one this node hosts; deploy from the tenant's node",
                lease.id_hex()
            )));
        }
        if !lease_active(&lease, now_ms()) {
            return Err(PluginError::BadInput(format!(
                "lease {} is not active; `degroup lease show` says why",
                lease.id_hex()
            )));
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id)
            .map_err(|e| PluginError::BadInput(format!("no randomness: {e}")))?;
        self.send_deploy(
            id,
            lease.contract.lease_id,
            lease.contract.host,
            &package,
            p.config,
            false,
        )
        .await
    }

    /// Replaces the code of one of this node's deployments, keeping its key-value store.
    /// `config: None` keeps the current configuration.
    pub async fn upgrade(
        &self,
        deployment: &str,
        package: &[u8],
        config: Option<Vec<(String, String)>>,
    ) -> Result<View, PluginError> {
        let package =
            Package::open(package).map_err(|e| PluginError::BadInput(format!("package: {e}")))?;
        let r = self.record(deployment).await?;
        if r.side != Side::Tenant {
            return Err(PluginError::BadInput(format!(
                "deployment {} runs here for another tenant; upgrades come from its tenant",
                r.id
            )));
        }
        let config = config.unwrap_or_else(|| r.config.clone());
        check_config(&config).map_err(PluginError::BadInput)?;
        let id: [u8; 16] = hex::decode(&r.id)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                PluginError::Protocol("stored deployment id is not 16 bytes of hex".into())
            })?;
        let host_peer: PeerId = r
            .host
            .parse()
            .map_err(|_| PluginError::Protocol("bad stored host".into()))?;
        let host = key_of_peer(&host_peer)
            .ok_or_else(|| PluginError::Protocol("bad stored host key".into()))?;
        self.send_deploy(id, r.lease_id, host, &package, config, true)
            .await
    }

    async fn send_deploy(
        &self,
        id: [u8; 16],
        lease_id: crate::lease::LeaseId,
        host: [u8; 32],
        package: &Package,
        config: Vec<(String, String)>,
        upgrade: bool,
    ) -> Result<View, PluginError> {
        let req = DeployRequest {
            deployment_id: id,
            lease_id,
            host,
            tenant: self.identity.verifying_key().to_bytes(),
            package_hash: package.manifest.hash,
            config: config.clone(),
            upgrade,
            created_ms: now_ms(),
        };
        let request = Envelope::seal_kind(self.identity.signing_key(), &req)
            .map_err(|e| PluginError::BadInput(e.to_string()))?
            .to_bytes();
        let host_peer = crate::identity::peer_id_of_bytes(&host)
            .ok_or_else(|| PluginError::Protocol("host key is not a valid ed25519 key".into()))?
            .to_string();
        let msg = DeployMsg::Deploy {
            request: request.clone(),
            manifest: package.manifest_bytes.clone(),
            component: package.component.clone(),
        };
        let view = match self.send(&host_peer, msg).await? {
            DeployReply::Deployment(v) => *v,
            other => {
                return Err(PluginError::Protocol(format!(
                    "unexpected answer {other:?}"
                )));
            }
        };
        if view.id != hex::encode(id) {
            return Err(PluginError::Protocol(
                "the host answered for another deployment".into(),
            ));
        }
        let now = now_ms();
        let record = Record {
            id: view.id.clone(),
            side: Side::Tenant,
            lease_id,
            host: host_peer,
            tenant: self.identity.peer_id().to_string(),
            package: PackageRef {
                name: package.manifest.name.clone(),
                version: package.manifest.version.clone(),
                hash: package.manifest.hash,
                publisher: package.manifest.publisher,
            },
            config,
            state: view.state,
            reason: view.reason.clone(),
            created_ms: view.created_ms.min(now),
            updated_ms: now,
            generation: view.generation,
            request,
        };
        self.ask(|r| Command::SaveTenant(Box::new(record), r))
            .await??;
        let mut view = view;
        view.side = Side::Tenant;
        Ok(view)
    }

    /// Every deployment this node hosts or made, tenant-side ones refreshed from their hosts.
    pub async fn list(&self) -> Result<Vec<View>, PluginError> {
        let mut all = self.local_list().await?;
        let mut hosts: BTreeMap<String, ()> = BTreeMap::new();
        for v in &all {
            if v.side == Side::Tenant && v.state != State::Stopped {
                hosts.insert(v.host.clone(), ());
            }
        }
        let asks = hosts.keys().map(|h| async move {
            let r = tokio::time::timeout(LIST_TIMEOUT, self.send(h, DeployMsg::List)).await;
            (h.clone(), r)
        });
        let answers = futures::future::join_all(asks).await;
        for (host, answer) in answers {
            let live: Result<Vec<View>, String> = match answer {
                Ok(Ok(DeployReply::List(v))) => Ok(v),
                Ok(Ok(other)) => Err(format!("unexpected answer {other:?}")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} s", LIST_TIMEOUT.as_secs())),
            };
            for v in all
                .iter_mut()
                .filter(|v| v.side == Side::Tenant && v.host == host && v.state != State::Stopped)
            {
                match &live {
                    Ok(list) => match list.iter().find(|l| l.id == v.id) {
                        Some(l) => {
                            let mut l = l.clone();
                            l.side = Side::Tenant;
                            *v = l;
                        }
                        None => v.warning = Some("the host no longer knows this deployment".into()),
                    },
                    Err(e) => {
                        v.warning = Some(format!("host unreachable, stored state shown: {e}"))
                    }
                }
            }
        }
        Ok(all)
    }

    /// One deployment (refreshed from its host when this node is its tenant).
    pub async fn get(&self, id: &str) -> Result<View, PluginError> {
        let r = self.record(id).await?;
        if r.side == Side::Tenant && r.state != State::Stopped {
            let all = self.list().await?;
            if let Some(v) = all.into_iter().find(|v| v.id == r.id) {
                return Ok(v);
            }
        }
        self.ask(|reply| Command::Get(r.id.clone(), reply)).await?
    }

    /// Log lines after `after` (from the host when this node is the tenant).
    pub async fn logs(&self, id: &str, after: u64, limit: u32) -> Result<LogPage, PluginError> {
        let r = self.record(id).await?;
        match r.side {
            Side::Host => {
                self.ask(|reply| Command::Logs(r.id.clone(), after, limit, reply))
                    .await?
            }
            Side::Tenant => match self
                .send(
                    &r.host,
                    DeployMsg::Logs {
                        deployment: r.id.clone(),
                        after,
                        limit,
                    },
                )
                .await?
            {
                DeployReply::Logs(page) => Ok(page),
                other => Err(PluginError::Protocol(format!(
                    "unexpected answer {other:?}"
                ))),
            },
        }
    }

    /// Stops a deployment: as its host (operator) or through its host (tenant).
    pub async fn stop(&self, id: &str) -> Result<View, PluginError> {
        let r = self.record(id).await?;
        match r.side {
            Side::Host => {
                self.ask(|reply| Command::Stop {
                    id: r.id.clone(),
                    reason: "stopped by the host's operator".into(),
                    tenant: None,
                    reply,
                })
                .await?
            }
            Side::Tenant => {
                let view = match self
                    .send(
                        &r.host,
                        DeployMsg::Stop {
                            deployment: r.id.clone(),
                        },
                    )
                    .await
                {
                    Ok(DeployReply::Deployment(v)) => *v,
                    Ok(other) => {
                        return Err(PluginError::Protocol(format!(
                            "unexpected answer {other:?}"
                        )));
                    }
                    Err(PluginError::Refused(refusal))
                        if refusal.code == super::super::wire::RefusalCode::Unknown =>
                    {
                        // The host no longer has it (its lease ended): stopped all the same.
                        View::of(&r, None)
                    }
                    Err(e) => return Err(e),
                };
                let mut record = r.clone();
                record.state = State::Stopped;
                record.reason = view.reason.clone().or(Some("stopped by the tenant".into()));
                record.updated_ms = now_ms();
                self.ask(|rep| Command::SaveTenant(Box::new(record.clone()), rep))
                    .await??;
                let mut v = View::of(&record, view.counters);
                v.side = Side::Tenant;
                Ok(v)
            }
        }
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
                    tenant: None,
                    reply,
                })
                .await?
            }
            Side::Tenant => match self
                .send(
                    &r.host,
                    DeployMsg::Message {
                        deployment: r.id.clone(),
                        payload,
                    },
                )
                .await?
            {
                DeployReply::Ok => Ok(()),
                other => Err(PluginError::Protocol(format!(
                    "unexpected answer {other:?}"
                ))),
            },
        }
    }
}
