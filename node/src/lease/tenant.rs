//! The tenant's side: negotiate a lease, renew it, release it, fetch its receipts.
//!
//! These run in the caller's task (an API request), talk to the host through the network
//! handle, check every signed answer, and hand the result to the lease actor to store. The
//! host's answers are checked against what was asked: a host cannot slip in other terms, a
//! higher price or another tenant.

use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};

use super::book::SignedReceipt;
use super::contract::{
    Acceptance, Ask, Contract, LeaseDoc, LeaseEnd, LeaseRequest, ReleaseRequest, UsageReceipt,
    hash, new_lease_id, open_receipt, verify_doc, verify_end,
};
use super::error::LeaseError;
use super::wire::{LeaseMsg, LeaseProtocol, LeaseReply, MAX_RECEIPTS_PER_REPLY};
use crate::capacity::AdvertBook;
use crate::identity::{Identity, key_of_peer};
use crate::net::Network;
use crate::resources::{LeaseId, Resources, now_ms};
use crate::signed::{Envelope, Opened};

/// What a tenant asks for.
#[derive(Debug, Clone)]
pub struct CreateParams {
    pub host: PeerId,
    pub slice: Resources,
    pub duration_ms: u64,
    pub max_hourly_micros: Option<u64>,
    /// Reuse to retry safely; a fresh one is drawn when `None`.
    pub idempotency_key: Option<[u8; 16]>,
}

/// What a host answered to a request.
#[derive(Debug, Clone)]
pub(crate) enum Proposal {
    /// Its signed offer, with this tenant's countersignature ready to send.
    Offer(LeaseDoc),
    /// The lease it already committed for this idempotency key.
    Committed(LeaseDoc),
}

/// The tenant's tools: its key, the network and the advert book (for host addresses).
#[derive(Clone)]
pub(crate) struct Tenant {
    identity: Identity,
    net: Network,
    adverts: Arc<AdvertBook>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant").finish_non_exhaustive()
    }
}

fn random16() -> Result<[u8; 16], LeaseError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| LeaseError::internal("drawing random bytes", e))?;
    Ok(b)
}

fn protocol(what: impl Into<String>) -> LeaseError {
    LeaseError::Protocol(what.into())
}

impl Tenant {
    /// The tenant's tools.
    pub(crate) fn new(identity: Identity, net: Network, adverts: Arc<AdvertBook>) -> Self {
        Self {
            identity,
            net,
            adverts,
        }
    }

    fn my_key(&self) -> [u8; 32] {
        self.identity.verifying_key().to_bytes()
    }

    fn host_key(host: &PeerId) -> Result<[u8; 32], LeaseError> {
        key_of_peer(host).ok_or_else(|| {
            LeaseError::BadInput(format!(
                "{host} is not an ed25519 peer id; degroup hosts have ids starting with 12D3KooW"
            ))
        })
    }

    fn addrs_of(&self, host_key: &[u8; 32]) -> Vec<Multiaddr> {
        self.adverts
            .get(host_key)
            .map(|(a, _)| a.addrs.iter().filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_default()
    }

    async fn send(&self, host: PeerId, msg: LeaseMsg) -> Result<LeaseReply, LeaseError> {
        let key = Self::host_key(&host)?;
        let addrs = self.addrs_of(&key);
        self.net
            .request_at::<LeaseProtocol>(host, addrs, msg)
            .await
            .map_err(|e| LeaseError::from_request(host, e))
    }

    /// Asks a host for a new lease and countersigns its offer (see [`Tenant::confirm`]).
    pub(crate) async fn propose_new(
        &self,
        p: &CreateParams,
    ) -> Result<(PeerId, Proposal), LeaseError> {
        if p.host == self.identity.peer_id() {
            return Err(LeaseError::BadInput(
                "that is this node's own peer id; a node cannot lease from itself".into(),
            ));
        }
        let host_key = Self::host_key(&p.host)?;
        let idempotency_key = match p.idempotency_key {
            Some(k) => k,
            None => random16()?,
        };
        let request = LeaseRequest {
            host: host_key,
            ask: Ask::New(p.slice),
            duration_ms: p.duration_ms,
            max_hourly_micros: p.max_hourly_micros,
            nonce: random16()?,
            idempotency_key,
            created_at_ms: now_ms(),
        };
        let expect_id = new_lease_id(&host_key, &self.my_key(), &idempotency_key);
        let check = |c: &Contract| -> Result<(), LeaseError> {
            if c.lease_id != expect_id || c.version != 1 {
                return Err(protocol("the host's contract has another lease id"));
            }
            if c.slice != p.slice {
                return Err(protocol("the host's contract is for another slice"));
            }
            if c.ends_at_ms.saturating_sub(c.starts_at_ms) != p.duration_ms {
                return Err(protocol("the host's contract has another duration"));
            }
            Ok(())
        };
        let proposal = self.propose(p.host, host_key, &request, check).await?;
        Ok((p.host, proposal))
    }

    /// Renews an active lease by `duration_ms` past its current end.
    pub(crate) async fn renew(
        &self,
        current: &Contract,
        duration_ms: u64,
        max_hourly_micros: Option<u64>,
    ) -> Result<LeaseDoc, LeaseError> {
        let host = peer_of(&current.host)?;
        let request = LeaseRequest {
            host: current.host,
            ask: Ask::Renew(current.lease_id),
            duration_ms,
            max_hourly_micros,
            nonce: random16()?,
            // One key per version renewed: a retry after a lost answer gets the renewal the host
            // already committed, instead of being stuck on the old version.
            idempotency_key: renewal_key(&current.lease_id, current.version),
            created_at_ms: now_ms(),
        };
        let check = |c: &Contract| -> Result<(), LeaseError> {
            if c.lease_id != current.lease_id || c.version <= current.version {
                return Err(protocol("the host's renewal is for another lease"));
            }
            if c.slice != current.slice || c.starts_at_ms != current.starts_at_ms {
                return Err(protocol("the host's renewal changes the slice or start"));
            }
            if c.ends_at_ms != current.ends_at_ms.saturating_add(duration_ms) {
                return Err(protocol("the host's renewal has another end time"));
            }
            Ok(())
        };
        self.negotiate(host, current.host, &request, check).await
    }

    async fn negotiate(
        &self,
        host: PeerId,
        host_key: [u8; 32],
        request: &LeaseRequest,
        check: impl Fn(&Contract) -> Result<(), LeaseError>,
    ) -> Result<LeaseDoc, LeaseError> {
        match self.propose(host, host_key, request, check).await? {
            Proposal::Offer(doc) => self
                .confirm(host, &doc)
                .await
                .map_err(|e| e.after_commit_attempt(host)),
            Proposal::Committed(doc) => Ok(doc),
        }
    }

    /// Sends the request and checks the host's offer; returns the contract with this tenant's
    /// countersignature (not yet sent), or the lease the host already committed for this
    /// idempotency key.
    async fn propose(
        &self,
        host: PeerId,
        host_key: [u8; 32],
        request: &LeaseRequest,
        check: impl Fn(&Contract) -> Result<(), LeaseError>,
    ) -> Result<Proposal, LeaseError> {
        let me = self.my_key();
        let env = Envelope::seal_kind(self.identity.signing_key(), request)
            .map_err(|e| LeaseError::internal("signing", e))?;
        match self.send(host, LeaseMsg::Request(env.to_bytes())).await? {
            LeaseReply::Offer(offer) => {
                let opened: Opened<Contract> = Envelope::open(&offer)
                    .map_err(|e| protocol(format!("the host's offer does not verify: {e}")))?;
                let c = &opened.value;
                if opened.signer.as_bytes() != &host_key || c.host != host_key || c.tenant != me {
                    return Err(protocol(
                        "the offer names or is signed by another host or tenant",
                    ));
                }
                if let Some(max) = request.max_hourly_micros
                    && c.hourly_micros > max
                {
                    return Err(protocol("the host's price is above your maximum"));
                }
                check(c)?;
                let acceptance = Acceptance {
                    lease_id: c.lease_id,
                    version: c.version,
                    contract_hash: hash(&offer),
                };
                let acceptance = Envelope::seal_kind(self.identity.signing_key(), &acceptance)
                    .map_err(|e| LeaseError::internal("signing", e))?
                    .to_bytes();
                Ok(Proposal::Offer(LeaseDoc {
                    contract: offer,
                    acceptance,
                }))
            }
            // A retry of a request the host already committed: the same lease comes back.
            LeaseReply::Committed {
                contract,
                acceptance,
            } => {
                let doc = LeaseDoc {
                    contract,
                    acceptance,
                };
                let v = verify_doc(&doc)
                    .map_err(|e| protocol(format!("the host's lease does not verify: {e}")))?;
                if v.contract.host != host_key || v.contract.tenant != me {
                    return Err(protocol("the lease names another host or tenant"));
                }
                Ok(Proposal::Committed(doc))
            }
            LeaseReply::Refused(r) => Err(LeaseError::Refused(r)),
            other => Err(protocol(format!(
                "unexpected answer to a lease request: {}",
                reply_kind(&other)
            ))),
        }
    }

    /// Sends the countersignature of a proposal; returns once the host has committed the lease.
    /// Safe to repeat: the host answers a countersignature it already committed with the lease.
    pub(crate) async fn confirm(
        &self,
        host: PeerId,
        doc: &LeaseDoc,
    ) -> Result<LeaseDoc, LeaseError> {
        match self
            .send(host, LeaseMsg::Accept(doc.acceptance.clone()))
            .await?
        {
            LeaseReply::Committed {
                contract,
                acceptance,
            } if contract == doc.contract && acceptance == doc.acceptance => Ok(LeaseDoc {
                contract,
                acceptance,
            }),
            LeaseReply::Refused(r) => Err(LeaseError::Refused(r)),
            other => Err(protocol(format!(
                "unexpected answer to the countersignature: {}",
                reply_kind(&other)
            ))),
        }
    }

    /// Asks the host to end the lease now; returns its signed end notice. Safe to repeat: the
    /// host answers a release it already applied with the same notice.
    pub(crate) async fn release(
        &self,
        contract: &Contract,
    ) -> Result<(Vec<u8>, LeaseEnd), LeaseError> {
        let host = peer_of(&contract.host)?;
        self.release_once(contract)
            .await
            .map_err(|e| e.after_commit_attempt(host))
    }

    async fn release_once(&self, contract: &Contract) -> Result<(Vec<u8>, LeaseEnd), LeaseError> {
        let host = peer_of(&contract.host)?;
        let req = ReleaseRequest {
            lease_id: contract.lease_id,
            at_ms: now_ms(),
        };
        let env = Envelope::seal_kind(self.identity.signing_key(), &req)
            .map_err(|e| LeaseError::internal("signing", e))?;
        match self.send(host, LeaseMsg::Release(env.to_bytes())).await? {
            LeaseReply::Ended(bytes) => {
                let end = verify_end(&bytes, contract)
                    .map_err(|e| protocol(format!("the host's end notice: {e}")))?;
                Ok((bytes, end))
            }
            LeaseReply::Refused(r) => Err(LeaseError::Refused(r)),
            other => Err(protocol(format!(
                "unexpected answer to a release: {}",
                reply_kind(&other)
            ))),
        }
    }

    /// Fetches the host's signed receipts for a lease and keeps those that verify.
    pub(crate) async fn receipts(
        &self,
        contract: &Contract,
        since_ms: u64,
    ) -> Result<Vec<SignedReceipt>, LeaseError> {
        let host = peer_of(&contract.host)?;
        let msg = LeaseMsg::Receipts {
            lease_id: contract.lease_id,
            since_ms,
        };
        match self.send(host, msg).await? {
            LeaseReply::Receipts(list) => Ok(list
                .into_iter()
                .take(MAX_RECEIPTS_PER_REPLY)
                .filter_map(|bytes| {
                    let r = check_receipt(&bytes, contract)?;
                    Some(SignedReceipt {
                        lease_id: r.lease_id,
                        period_start_ms: r.period_start_ms,
                        period_end_ms: r.period_end_ms,
                        signed: bytes,
                    })
                })
                .collect()),
            LeaseReply::Refused(r) => Err(LeaseError::Refused(r)),
            other => Err(protocol(format!(
                "unexpected answer to a receipts request: {}",
                reply_kind(&other)
            ))),
        }
    }
}

/// Verifies a receipt of this lease, signed by its host (either receipt version).
pub(crate) fn check_receipt(bytes: &[u8], contract: &Contract) -> Option<UsageReceipt> {
    let (r, signer) = open_receipt(bytes).ok()?;
    (signer.as_bytes() == &contract.host
        && r.host == contract.host
        && r.tenant == contract.tenant
        && r.lease_id == contract.lease_id)
        .then_some(r)
}

/// The idempotency key of renewing version `version` of a lease.
pub(crate) fn renewal_key(id: &LeaseId, version: u32) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(b"degroup/lease-renewal/v1");
    h.update(id);
    h.update(&version.to_be_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&h.finalize().as_bytes()[..16]);
    k
}

/// The peer id of a party's key.
pub(crate) fn peer_of(key: &[u8; 32]) -> Result<PeerId, LeaseError> {
    crate::identity::peer_id_of_bytes(key)
        .ok_or_else(|| protocol("the lease names a host key that is not a peer id"))
}

fn reply_kind(r: &LeaseReply) -> &'static str {
    match r {
        LeaseReply::Offer(_) => "offer",
        LeaseReply::Committed { .. } => "committed",
        LeaseReply::Ended(_) => "ended",
        LeaseReply::Receipts(_) => "receipts",
        LeaseReply::Ok => "ok",
        LeaseReply::Refused(_) => "refused",
    }
}
