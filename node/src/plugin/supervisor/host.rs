//! Host side of `/degroup/deploy/1`: every check before anything runs.

use super::super::deployment::{PackageRef, Record, Side, State};
use super::super::package::Package;
use super::super::wire::{
    DeployMsg, DeployReply, DeployRequest, MAX_MESSAGE, Refusal, RefusalCode, check_config,
};
use super::super::worker::Started;
use super::{Command, Install, PluginError, PluginHandle, info_of, lease_active};
use crate::capacity::advert::now_ms;
use crate::identity::key_of_peer;
use crate::lease::Role;
use crate::net::InboundDeploy;
use crate::signed::Envelope;

/// How far a deploy request's creation time may be from the host's clock.
const REQUEST_WINDOW_MS: u64 = 5 * 60 * 1000;

fn refuse(code: RefusalCode, msg: impl Into<String>) -> DeployReply {
    DeployReply::Refused(Refusal::new(code, msg))
}

fn from_error(e: PluginError) -> DeployReply {
    match e {
        PluginError::NotFound(m) => refuse(RefusalCode::Unknown, m),
        PluginError::BadInput(m) => refuse(RefusalCode::Invalid, m),
        other => refuse(RefusalCode::Unavailable, other.to_string()),
    }
}

impl PluginHandle {
    /// Answers one inbound deploy-protocol message.
    pub(super) async fn inbound(&self, msg: InboundDeploy) {
        let InboundDeploy { peer, msg, channel } = msg;
        let tenant = peer.to_string();
        let reply = match msg {
            DeployMsg::Deploy {
                request,
                manifest,
                component,
            } => self.host_deploy(&peer, &request, manifest, component).await,
            DeployMsg::List => match self.local_list().await {
                Ok(all) => DeployReply::List(
                    all.into_iter()
                        .filter(|v| v.side == Side::Host && v.tenant == tenant)
                        .collect(),
                ),
                Err(e) => from_error(e),
            },
            DeployMsg::Logs {
                deployment,
                after,
                limit,
            } => match self.record(&deployment).await {
                Ok(r) if r.side == Side::Host && r.tenant == tenant => {
                    match self
                        .ask(|rep| Command::Logs(r.id.clone(), after, limit, rep))
                        .await
                    {
                        Ok(Ok(page)) => DeployReply::Logs(page),
                        Ok(Err(e)) | Err(e) => from_error(e),
                    }
                }
                Ok(_) => refuse(
                    RefusalCode::Unknown,
                    format!("no deployment {deployment} of yours on this host"),
                ),
                Err(e) => from_error(e),
            },
            DeployMsg::Stop { deployment } => {
                let t = tenant.clone();
                match self
                    .ask(|reply| Command::Stop {
                        id: deployment,
                        reason: "stopped by the tenant".into(),
                        tenant: Some(t),
                        reply,
                    })
                    .await
                {
                    Ok(Ok(v)) => DeployReply::Deployment(Box::new(v)),
                    Ok(Err(e)) | Err(e) => from_error(e),
                }
            }
            DeployMsg::Message {
                deployment,
                payload,
            } => {
                if payload.len() > MAX_MESSAGE {
                    refuse(
                        RefusalCode::Invalid,
                        format!("message payload over {MAX_MESSAGE} bytes"),
                    )
                } else {
                    let t = tenant.clone();
                    match self
                        .ask(|reply| Command::Message {
                            id: deployment,
                            from: t.clone(),
                            payload,
                            tenant: Some(t),
                            reply,
                        })
                        .await
                    {
                        Ok(Ok(())) => DeployReply::Ok,
                        Ok(Err(e)) | Err(e) => from_error(e),
                    }
                }
            }
        };
        self.net.respond_deploy(channel, reply).await;
    }

    /// Verifies a deploy or upgrade, compiles it, installs it, and waits for the first `init`.
    async fn host_deploy(
        &self,
        peer: &libp2p::PeerId,
        request: &[u8],
        manifest: Vec<u8>,
        component: Vec<u8>,
    ) -> DeployReply {
        let opened = match Envelope::open::<DeployRequest>(request) {
            Ok(o) => o,
            Err(e) => return refuse(RefusalCode::Invalid, format!("deploy request: {e}")),
        };
        let req = opened.value;
        let signer = opened.signer.to_bytes();
        if key_of_peer(peer) != Some(signer) || req.tenant != signer {
            return refuse(
                RefusalCode::Invalid,
                "the deploy request is not signed by the peer sending it",
            );
        }
        if req.host != self.identity.verifying_key().to_bytes() {
            return refuse(
                RefusalCode::Invalid,
                "the deploy request is addressed to another host",
            );
        }
        let now = now_ms();
        if req.created_ms.abs_diff(now) > REQUEST_WINDOW_MS {
            return refuse(
                RefusalCode::Invalid,
                "the deploy request is stale or from the future; check both clocks",
            );
        }
        if let Err(e) = check_config(&req.config) {
            return refuse(RefusalCode::Invalid, e);
        }
        let package = match Package::from_parts(manifest, component) {
            Ok(p) => p,
            Err(e) => return refuse(RefusalCode::Package, format!("package refused: {e}")),
        };
        if package.manifest.hash != req.package_hash {
            return refuse(
                RefusalCode::Package,
                "the package is not the one the request signs for",
            );
        }
        let publishers = &self.runtime.limits().publishers;
        if !publishers.is_empty() && !publishers.contains(&package.manifest.publisher) {
            return refuse(
                RefusalCode::Policy,
                format!(
                    "this host runs only packages of the publishers on its allowlist; publisher {} is not on it",
                    package.publisher_hex()
                ),
            );
        }
        let lease_hex = hex::encode(req.lease_id);
        let Ok(lease) = self.leases.get(&lease_hex).await else {
            return refuse(
                RefusalCode::Lease,
                format!("no lease {lease_hex} on this host"),
            );
        };
        if lease.stored.role != Role::Host || lease.contract.tenant != signer {
            return refuse(
                RefusalCode::Lease,
                format!("lease {lease_hex} is not yours"),
            );
        }
        if !lease_active(&lease, now) {
            return refuse(
                RefusalCode::Lease,
                format!("lease {lease_hex} is not active (ended or expired); lease anew"),
            );
        }
        let runtime = self.runtime.clone();
        let wasm = package.component.clone();
        let compiled = match tokio::task::spawn_blocking(move || runtime.compile(&wasm)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return refuse(RefusalCode::Compile, e.to_string()),
            Err(e) => return refuse(RefusalCode::Unavailable, e.to_string()),
        };
        let record = Record {
            id: hex::encode(req.deployment_id),
            side: Side::Host,
            lease_id: req.lease_id,
            host: self.identity.peer_id().to_string(),
            tenant: peer.to_string(),
            package: PackageRef {
                name: package.manifest.name.clone(),
                version: package.manifest.version.clone(),
                hash: package.manifest.hash,
                publisher: package.manifest.publisher,
            },
            config: req.config.clone(),
            state: State::Starting,
            reason: None,
            created_ms: now,
            updated_ms: now,
            generation: 0,
            request: request.to_vec(),
        };
        let info = info_of(&record, &lease);
        let id = record.id.clone();
        let install = Install {
            record,
            package,
            compiled,
            info,
            upgrade: req.upgrade,
        };
        let started = match self
            .ask(|reply| Command::Install(Box::new(install), reply))
            .await
        {
            Ok(Ok(rx)) => rx,
            Ok(Err(refusal)) => return DeployReply::Refused(refusal),
            Err(e) => return from_error(e),
        };
        match started.await {
            Ok(Started::Running | Started::Retrying(_) | Started::Failed(_)) => {}
            Err(_) => return refuse(RefusalCode::Unavailable, "the deployment's worker stopped"),
        }
        match self.ask(|r| Command::Get(id, r)).await {
            Ok(Ok(view)) => DeployReply::Deployment(Box::new(view)),
            Ok(Err(e)) | Err(e) => from_error(e),
        }
    }
}
