//! The host's side of `/degroup/deploy/3`: every check before anything runs.
//!
//! Each inbound request is answered in its own task (the actor runs them in a bounded
//! `JoinSet`), so a deploy that compiles for a while, or waits for its plugin's first `init`,
//! holds up nobody else. Everything here asks the actor for what it owns.
//!
//! Fetching and compiling cost the host bandwidth, disk, CPU and memory, so they come last:
//! after the signatures, the size cap, the publisher allowlist (against the release the
//! catalogue holds for the hash), the lease (the tenant's, active) and admission (one
//! deployment per lease, `plugin.max_deployments`). Then the package is fetched (or found in
//! the blob store), verified (signature, manifest, the allowlist again against the manifest's
//! publisher), and compiled: one compilation at a time per lease, its CPU time charged to the
//! lease.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use libp2p::PeerId;

use super::super::deployment::{PackageRef, Record, Side, State};
use super::super::wire::{
    DeployMsg, DeployProtocol, DeployReply, DeployRequest, MAX_HINTS, MAX_MESSAGE, MAX_REFERENCE,
    Refusal, RefusalCode, Status, check_config, check_routes,
};
use super::super::worker::Started;
use super::PluginError;
use super::command::{Caller, Command, Install};
use super::handle::PluginHandle;
use super::{info_of, lease_active};
use crate::error::Coded as _;
use crate::identity::key_of_peer;
use crate::lease::{Meter, Role};
use crate::net::InboundRequest;
use crate::resources::{LeaseId, id_hex, now_ms};
use crate::signed::Envelope;

fn not_allowed(publisher: &[u8; 32]) -> String {
    format!(
        "this host runs only packages of the publishers on its allowlist; publisher {} is not on it",
        hex::encode(publisher)
    )
}

/// How far a deploy request's creation time may be from the host's clock.
const REQUEST_WINDOW_MS: u64 = 5 * 60 * 1000;

fn refuse(code: RefusalCode, msg: impl Into<String>) -> DeployReply {
    DeployReply::Refused(Refusal::new(code, msg))
}

fn from_error(e: PluginError) -> DeployReply {
    match e {
        PluginError::NotFound(m) => refuse(RefusalCode::Unknown, m),
        PluginError::BadInput(m) => refuse(RefusalCode::Invalid, m),
        PluginError::Conflict(m) => refuse(RefusalCode::Conflict, m),
        other => refuse(RefusalCode::Unavailable, other.to_string()),
    }
}

fn status_reply(r: Result<Status, PluginError>) -> DeployReply {
    match r {
        Ok(s) => DeployReply::Deployment(Box::new(s)),
        Err(e) => from_error(e),
    }
}

/// Answers peers' deploy-protocol requests.
#[derive(Debug, Clone)]
pub(crate) struct HostSide {
    handle: PluginHandle,
    /// Compile CPU is charged here.
    meter: Meter,
    /// The HTTP ingress, when the host runs one: routes are checked against it.
    http: Option<super::HttpSide>,
    /// Leases with a compilation under way.
    compiling: Arc<Mutex<HashSet<LeaseId>>>,
}

/// A lease's compilation under way; the lease is free again on drop.
struct Compiling<'a> {
    set: &'a Mutex<HashSet<LeaseId>>,
    lease: LeaseId,
}

impl Drop for Compiling<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.lease);
    }
}

impl HostSide {
    pub(crate) fn new(handle: PluginHandle, meter: Meter, http: Option<super::HttpSide>) -> Self {
        Self {
            handle,
            meter,
            http,
            compiling: Arc::default(),
        }
    }

    /// Marks a lease as compiling; `None` when it already is.
    fn start_compiling(&self, lease: LeaseId) -> Option<Compiling<'_>> {
        let fresh = self
            .compiling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(lease);
        fresh.then_some(Compiling {
            set: &self.compiling,
            lease,
        })
    }

    /// Answers one inbound request.
    pub(crate) async fn answer(&self, req: InboundRequest<DeployProtocol>) {
        let InboundRequest {
            peer,
            request,
            reply,
        } = req;
        let reply_value = self.handle_msg(&peer, request).await;
        reply.send(reply_value);
    }

    async fn handle_msg(&self, peer: &PeerId, msg: DeployMsg) -> DeployReply {
        let caller = Caller::Tenant(peer.to_string());
        let h = &self.handle;
        match msg {
            DeployMsg::Deploy { request } => self.deploy(peer, &request).await,
            DeployMsg::List => match h
                .ask(|reply| Command::Statuses {
                    tenant: peer.to_string(),
                    reply,
                })
                .await
            {
                Ok(list) => DeployReply::List(list),
                Err(e) => from_error(e),
            },
            DeployMsg::Get { deployment } => status_reply(
                h.ask(|reply| Command::Status {
                    id: id_hex(&deployment),
                    caller,
                    reply,
                })
                .await
                .and_then(|r| r),
            ),
            DeployMsg::Logs {
                deployment,
                after,
                limit,
            } => match h
                .ask(|reply| Command::Logs {
                    id: id_hex(&deployment),
                    caller,
                    after,
                    limit,
                    reply,
                })
                .await
                .and_then(|r| r)
            {
                Ok(page) => DeployReply::Logs(page.into()),
                Err(e) => from_error(e),
            },
            DeployMsg::Stop { deployment } => status_reply(
                h.ask(|reply| Command::Stop {
                    id: id_hex(&deployment),
                    reason: "stopped by the tenant".into(),
                    caller,
                    reply,
                })
                .await
                .and_then(|r| r),
            ),
            DeployMsg::Message {
                deployment,
                payload,
            } => {
                if payload.len() > MAX_MESSAGE {
                    return refuse(
                        RefusalCode::Invalid,
                        format!("message payload over {MAX_MESSAGE} bytes"),
                    );
                }
                match h
                    .ask(|reply| Command::Message {
                        id: id_hex(&deployment),
                        from: peer.to_string(),
                        payload,
                        caller,
                        reply,
                    })
                    .await
                    .and_then(|r| r)
                {
                    Ok(()) => DeployReply::Ok,
                    Err(e) => from_error(e),
                }
            }
        }
    }

    /// Verifies a deploy or upgrade, compiles it, installs it, and waits for the first `init`.
    async fn deploy(&self, peer: &PeerId, request: &[u8]) -> DeployReply {
        let h = &self.handle;
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
        if req.host != h.identity().verifying_key().to_bytes() {
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
        if req.reference.len() > MAX_REFERENCE || req.providers.len() > MAX_HINTS {
            return refuse(
                RefusalCode::Invalid,
                "the deploy request's reference or provider list is too long",
            );
        }
        if let Err(e) = check_routes(&req.routes) {
            return refuse(RefusalCode::Invalid, e);
        }
        // Routes are checked before anything is fetched: a name taken is a quick 409.
        let routes = match (&self.http, req.routes.is_empty()) {
            (_, true) => Vec::new(),
            (None, false) => return DeployReply::Refused(super::http::no_ingress()),
            (Some(side), false) => match side.check(&req.routes, &hex::encode(req.deployment_id)) {
                Ok(r) => r,
                Err(refusal) => return DeployReply::Refused(refusal),
            },
        };
        let dist = h.distribution();
        if req.package_size > dist.max_package() {
            return refuse(
                RefusalCode::Package,
                format!(
                    "the package is {} bytes; this host takes packages of at most {} bytes (`[blobs] max_package`)",
                    req.package_size,
                    dist.max_package()
                ),
            );
        }
        let publishers = &h.runtime().limits().publishers;
        let allowed = |key: &[u8; 32]| publishers.is_empty() || publishers.contains(key);
        // Anyone may sign a release naming any hash: refuse early only when releases exist and
        // none is by an allowed publisher. The manifest's publisher, checked after the fetch,
        // is what counts.
        let release_publishers = dist.release_publishers(&req.package_hash);
        if let Some(p) = release_publishers.first()
            && !release_publishers.iter().any(allowed)
        {
            return refuse(RefusalCode::Policy, not_allowed(p));
        }
        let lease_hex = hex::encode(req.lease_id);
        let Ok(lease) = h.leases().get(&lease_hex).await else {
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
        let mut record = Record {
            id: hex::encode(req.deployment_id),
            side: Side::Host,
            lease_id: req.lease_id,
            host: h.identity().peer_id().to_string(),
            tenant: peer.to_string(),
            // Filled from the package's manifest once it is here.
            package: PackageRef {
                name: String::new(),
                version: String::new(),
                hash: [0; 32],
                publisher: [0; 32],
                blob: req.package_hash,
                reference: req.reference.clone(),
            },
            config: req.config.clone(),
            state: State::Starting,
            reason: None,
            created_ms: now,
            updated_ms: now,
            generation: 0,
            request: request.to_vec(),
            child: None,
        };
        // Admission before fetching and compiling (the actor checks again when it installs).
        match h
            .ask(|reply| Command::Admit {
                record: Box::new(record.clone()),
                upgrade: req.upgrade,
                reply,
            })
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(refusal)) => return DeployReply::Refused(refusal),
            Err(e) => return from_error(e),
        }
        // The package is held for this request while it is fetched and compiled, and for the
        // deployment (`dep:<id>`) once installed: a retry of the same deploy, or a refused
        // upgrade, never takes away the hold of what runs.
        let mut nonce = [0u8; 8];
        let _ = getrandom::fill(&mut nonce);
        let holder = format!("deploying:{}:{}", record.id, hex::encode(nonce));
        let package = match dist
            .host_fetch(req.package_hash, req.package_size, &req.providers, &holder)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let code = match e.code() {
                    crate::error::ErrorCode::Unavailable
                    | crate::error::ErrorCode::HostUnreachable
                    | crate::error::ErrorCode::NotFound => RefusalCode::Unavailable,
                    _ => RefusalCode::Package,
                };
                return refuse(code, format!("package not obtained: {e}"));
            }
        };
        let m = &package.manifest;
        record.package.name.clone_from(&m.name);
        record.package.version.clone_from(&m.version);
        record.package.hash = m.hash;
        record.package.publisher = m.publisher;
        let publisher = m.publisher;
        let id = record.id.clone();
        let reply = if allowed(&publisher) {
            self.compile_and_install(record, package, &lease, &req, routes, &lease_hex)
                .await
        } else {
            refuse(RefusalCode::Policy, not_allowed(&publisher))
        };
        if !matches!(reply, DeployReply::Refused(_)) {
            dist.hold(&req.package_hash, &format!("dep:{id}"));
            // A public package a host runs is one it provides.
            dist.provide_if_released(&req.package_hash, &publisher);
        }
        dist.release(&req.package_hash, &holder);
        reply
    }

    /// The last steps of a deploy, once its package is here and verified.
    async fn compile_and_install(
        &self,
        record: Record,
        package: super::super::package::Package,
        lease: &crate::lease::book::Lease,
        req: &DeployRequest,
        routes: Vec<String>,
        lease_hex: &str,
    ) -> DeployReply {
        let h = &self.handle;
        let Some(turn) = self.start_compiling(req.lease_id) else {
            return refuse(
                RefusalCode::Conflict,
                format!("a deploy onto lease {lease_hex} is being compiled; wait for its answer"),
            );
        };
        let runtime = h.runtime().clone();
        let wasm = package.component.clone();
        let metered = tokio::task::spawn_blocking(move || runtime.compile_metered(&wasm)).await;
        drop(turn);
        let compiled = match metered {
            Ok(m) => {
                if !m.cpu.is_zero() {
                    self.meter.compiled(req.lease_id, m.cpu);
                }
                match m.result {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(
                            lease = %lease_hex,
                            cpu_ms = m.cpu.as_millis() as u64,
                            error = %e,
                            "deploy refused: the component does not compile"
                        );
                        return refuse(RefusalCode::Compile, e.to_string());
                    }
                }
            }
            Err(e) => return refuse(RefusalCode::Unavailable, e.to_string()),
        };
        if !routes.is_empty() && !compiled.serves_http() {
            return DeployReply::Refused(super::http::not_http());
        }
        let info = info_of(&record, lease);
        let id = record.id.clone();
        let install = Install {
            record,
            package,
            compiled,
            info,
            upgrade: req.upgrade,
            routes,
        };
        let started = match h
            .ask(|reply| Command::Install {
                install: Box::new(install),
                reply,
            })
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
        status_reply(
            h.ask(|reply| Command::Status {
                id,
                caller: Caller::Operator,
                reply,
            })
            .await
            .and_then(|r| r),
        )
    }
}
