//! Answering peers: the host's side of the protocol (and the tenant's, for end notices).
//!
//! Every check that can refuse runs before anything changes; a refusal leaves the book as it
//! was. Replays are answered idempotently: the same idempotency key gets the same offer or the
//! same committed lease; a nonce reused with another key is refused.

use libp2p::PeerId;

use super::super::book::{CommitItem, HeldOffer, OfferKind, Role};
use super::super::contract::{
    Acceptance, Ask, Contract, LeaseRequest, ReleaseRequest, hash, new_lease_id, verify_end,
};
use super::super::wire::LeaseProtocol;
use super::super::wire::{LeaseMsg, LeaseReply, MAX_RECEIPTS_PER_REPLY, Refusal, RefusalCode};
use super::Service;
use crate::capacity::units::{format_duration, format_eur};
use crate::identity::peer_id_of;
use crate::net::InboundRequest;
use crate::resources::id_hex;
use crate::resources::now_ms;
use crate::signed::{Envelope, Kind, Opened};

/// Most nonces remembered; past this, new requests are refused until old ones age out.
const MAX_NONCES: usize = 1_000_000;

fn refuse(code: RefusalCode, message: impl Into<String>) -> LeaseReply {
    LeaseReply::Refused(Refusal::new(code, message))
}

enum AcceptOutcome {
    Reply(LeaseReply),
    Commit(Box<CommitItem>),
}

/// Opens a signed message and checks that the peer that sent it is its signer.
fn open_from<K: Kind>(peer: &PeerId, bytes: &[u8], what: &str) -> Result<Opened<K>, LeaseReply> {
    let opened = Envelope::open::<K>(bytes).map_err(|e| {
        refuse(
            RefusalCode::Invalid,
            format!("malformed or forged {what}: {e}"),
        )
    })?;
    let signer = peer_id_of(&opened.signer);
    if &signer != peer {
        return Err(refuse(
            RefusalCode::Invalid,
            format!("{what} signed by {signer} but sent by {peer}: it must come from its signer"),
        ));
    }
    Ok(opened)
}

impl Service {
    pub(super) fn on_inbound(&mut self, batch: Vec<InboundRequest<LeaseProtocol>>) {
        let now = now_ms();
        let mut replies = Vec::with_capacity(batch.len());
        let mut commits = Vec::new();
        for InboundRequest {
            peer,
            request: msg,
            reply: channel,
        } in batch
        {
            let reply = match msg {
                LeaseMsg::Request(bytes) => self.on_request(&peer, &bytes, now),
                LeaseMsg::Accept(bytes) => match self.on_accept(&peer, &bytes, now) {
                    AcceptOutcome::Reply(r) => r,
                    AcceptOutcome::Commit(item) => {
                        commits.push((*item, channel));
                        continue;
                    }
                },
                LeaseMsg::Release(bytes) => self.on_release(&peer, &bytes, now),
                LeaseMsg::Ended(bytes) => self.on_ended(&peer, &bytes),
                LeaseMsg::Receipts { lease_id, since_ms } => {
                    self.on_receipts(&peer, &lease_id, since_ms)
                }
            };
            replies.push((channel, reply));
        }
        if !commits.is_empty() {
            let items: Vec<CommitItem> = commits.iter().map(|(i, _)| i.clone()).collect();
            let t0 = std::time::Instant::now();
            let committed = self.book.commit(&items);
            tracing::debug!(
                leases = items.len(),
                us = t0.elapsed().as_micros(),
                "group commit"
            );
            match committed {
                Ok(()) => {
                    for (item, channel) in commits {
                        let doc = item.doc();
                        tracing::debug!(lease = %id_hex(&item.lease_id()), "lease committed");
                        replies.push((
                            channel,
                            LeaseReply::Committed {
                                contract: doc.contract.clone(),
                                acceptance: doc.acceptance.clone(),
                            },
                        ));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot commit leases");
                    for (_, channel) in commits {
                        replies.push((
                            channel,
                            refuse(
                                RefusalCode::Unavailable,
                                "the host could not store the lease; retry",
                            ),
                        ));
                    }
                }
            }
        }
        for (channel, reply) in replies {
            channel.send(reply);
        }
    }

    fn check_nonce(&self, tenant: &[u8; 32], r: &LeaseRequest) -> Result<(), LeaseReply> {
        match self.nonces.get(&(*tenant, r.nonce)) {
            Some((key, _)) if *key != r.idempotency_key => Err(refuse(
                RefusalCode::Replay,
                "this nonce was already used with another idempotency key (replayed request)",
            )),
            None if self.nonces.len() >= MAX_NONCES => Err(refuse(
                RefusalCode::Unavailable,
                "the host is busy; retry in a moment",
            )),
            _ => Ok(()),
        }
    }

    fn on_request(&mut self, peer: &PeerId, bytes: &[u8], now: u64) -> LeaseReply {
        let opened = match open_from::<LeaseRequest>(peer, bytes, "lease request") {
            Ok(o) => o,
            Err(r) => return r,
        };
        let tenant = opened.signer.to_bytes();
        let r = &opened.value;
        if r.host != self.key {
            return refuse(
                RefusalCode::Invalid,
                "the request is addressed to another host",
            );
        }
        if tenant == self.key {
            return refuse(RefusalCode::Policy, "a node cannot lease from itself");
        }
        let skew = now.abs_diff(r.created_at_ms);
        if skew > self.policy.request_window_ms {
            return refuse(
                RefusalCode::Replay,
                format!(
                    "stale request: created {} away from the host's clock (limit {}); check the clocks and send a new one",
                    format_duration(skew),
                    format_duration(self.policy.request_window_ms)
                ),
            );
        }
        if let Err(refusal) = self.policy.check_tenant(peer) {
            return LeaseReply::Refused(refusal);
        }
        let reply = match &r.ask {
            Ask::New(_) => self.on_new(&tenant, r, bytes, now),
            Ask::Renew(_) => self.on_renew(&tenant, r, bytes, now),
        };
        if let LeaseReply::Offer(_) = reply {
            self.nonces
                .entry((tenant, r.nonce))
                .or_insert((r.idempotency_key, now));
        }
        reply
    }

    fn price(&self, r: &LeaseRequest, hourly: u64) -> Result<(), LeaseReply> {
        if let Err(refusal) = self.policy.check_price(hourly) {
            return Err(LeaseReply::Refused(refusal));
        }
        if let Some(max) = r.max_hourly_micros
            && hourly > max
        {
            return Err(refuse(
                RefusalCode::Price,
                format!(
                    "the slice costs {} EUR/h, above your maximum of {} EUR/h; accept a higher price or ask for less",
                    format_eur(hourly),
                    format_eur(max)
                ),
            ));
        }
        Ok(())
    }

    fn on_new(
        &mut self,
        tenant: &[u8; 32],
        r: &LeaseRequest,
        bytes: &[u8],
        now: u64,
    ) -> LeaseReply {
        let Ask::New(slice) = r.ask else {
            return refuse(RefusalCode::Invalid, "not a new-lease request");
        };
        let id = new_lease_id(&self.key, tenant, &r.idempotency_key);
        // Retries with the same idempotency key get the same answer.
        if let Some(lease) = self.book.get(&id) {
            return LeaseReply::Committed {
                contract: lease.stored.doc.contract.clone(),
                acceptance: lease.stored.doc.acceptance.clone(),
            };
        }
        if let Some(offer) = self.book.offer(&id, 1) {
            return LeaseReply::Offer(offer.envelope.clone());
        }
        if let Err(reply) = self.check_nonce(tenant, r) {
            return reply;
        }
        if slice.is_empty() {
            return refuse(
                RefusalCode::Invalid,
                "the request asks for nothing; ask for some CPU, memory, disk or GPUs",
            );
        }
        if let Err(refusal) = self.policy.check_duration(r.duration_ms) {
            return LeaseReply::Refused(refusal);
        }
        let prices = self.capacity.offered().prices;
        let hourly = slice.hourly_micros(&prices);
        if let Err(reply) = self.price(r, hourly) {
            return reply;
        }
        let contract = Contract {
            lease_id: id,
            version: 1,
            host: self.key,
            tenant: *tenant,
            slice,
            starts_at_ms: now,
            ends_at_ms: now.saturating_add(r.duration_ms),
            prices,
            hourly_micros: hourly,
            request_hash: hash(bytes),
            offer_expires_at_ms: now.saturating_add(self.policy.offer_hold_ms),
        };
        self.hold(contract, OfferKind::New)
    }

    fn hold(&mut self, contract: Contract, kind: OfferKind) -> LeaseReply {
        let envelope = match Envelope::seal_kind(self.identity.signing_key(), &contract) {
            Ok(e) => e.to_bytes(),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign an offer");
                return refuse(
                    RefusalCode::Unavailable,
                    "the host could not sign the offer; retry",
                );
            }
        };
        let offered = self.offered();
        match self
            .book
            .reserve(&offered, HeldOffer::new(contract, envelope.clone(), kind))
        {
            Ok(()) => LeaseReply::Offer(envelope),
            Err(refusal) => LeaseReply::Refused(refusal),
        }
    }

    fn on_renew(
        &mut self,
        tenant: &[u8; 32],
        r: &LeaseRequest,
        bytes: &[u8],
        now: u64,
    ) -> LeaseReply {
        let Ask::Renew(id) = r.ask else {
            return refuse(RefusalCode::Invalid, "not a renewal");
        };
        let Some(lease) = self
            .book
            .get(&id)
            .filter(|l| l.stored.role == Role::Host && &l.contract.tenant == tenant)
        else {
            return refuse(
                RefusalCode::Unknown,
                format!("no lease {} of yours on this host", id_hex(&id)),
            );
        };
        if !lease.is_active() {
            return refuse(
                RefusalCode::NotActive,
                "the lease has ended; create a new one",
            );
        }
        if lease.stored.renewal_keys.contains(&r.idempotency_key) {
            return LeaseReply::Committed {
                contract: lease.stored.doc.contract.clone(),
                acceptance: lease.stored.doc.acceptance.clone(),
            };
        }
        let current = lease.contract.clone();
        let version = current.version + 1;
        if let Some(offer) = self.book.offer(&id, version) {
            return match offer.kind {
                OfferKind::Renew { idempotency_key } if idempotency_key == r.idempotency_key => {
                    LeaseReply::Offer(offer.envelope.clone())
                }
                _ => refuse(
                    RefusalCode::Replay,
                    "another renewal of this lease is waiting for its countersignature; retry in a moment",
                ),
            };
        }
        if let Err(reply) = self.check_nonce(tenant, r) {
            return reply;
        }
        let ends_at = current.ends_at_ms.saturating_add(r.duration_ms);
        if r.duration_ms == 0 {
            return refuse(
                RefusalCode::Invalid,
                "a renewal must extend the lease by a duration above zero",
            );
        }
        if let Err(refusal) = self.policy.check_duration(ends_at.saturating_sub(now)) {
            return LeaseReply::Refused(refusal);
        }
        // A renewal is priced at today's prices, for the whole term.
        let prices = self.capacity.offered().prices;
        let hourly = current.slice.hourly_micros(&prices);
        if let Err(reply) = self.price(r, hourly) {
            return reply;
        }
        let contract = Contract {
            version,
            ends_at_ms: ends_at,
            prices,
            hourly_micros: hourly,
            request_hash: hash(bytes),
            offer_expires_at_ms: now.saturating_add(self.policy.offer_hold_ms),
            ..current
        };
        self.hold(
            contract,
            OfferKind::Renew {
                idempotency_key: r.idempotency_key,
            },
        )
    }

    fn on_accept(&mut self, peer: &PeerId, bytes: &[u8], now: u64) -> AcceptOutcome {
        let opened = match open_from::<Acceptance>(peer, bytes, "countersignature") {
            Ok(o) => o,
            Err(r) => return AcceptOutcome::Reply(r),
        };
        let a = &opened.value;
        // A retried countersignature of a lease already committed gets the same answer.
        if let Some(lease) = self.book.get(&a.lease_id)
            && lease.contract.version == a.version
            && lease.stored.doc.acceptance == bytes
        {
            return AcceptOutcome::Reply(LeaseReply::Committed {
                contract: lease.stored.doc.contract.clone(),
                acceptance: lease.stored.doc.acceptance.clone(),
            });
        }
        match self.book.prepare_commit(&opened, now) {
            Ok(item) => AcceptOutcome::Commit(Box::new(item)),
            Err(refusal) => AcceptOutcome::Reply(LeaseReply::Refused(refusal)),
        }
    }

    fn on_release(&mut self, peer: &PeerId, bytes: &[u8], now: u64) -> LeaseReply {
        let opened = match open_from::<ReleaseRequest>(peer, bytes, "release") {
            Ok(o) => o,
            Err(r) => return r,
        };
        let id = opened.value.lease_id;
        let Some(lease) = self.book.get(&id).filter(|l| {
            l.stored.role == Role::Host && l.contract.tenant == opened.signer.to_bytes()
        }) else {
            return refuse(
                RefusalCode::Unknown,
                format!("no lease {} of yours on this host", id_hex(&id)),
            );
        };
        let lease = lease.clone();
        if !lease.is_active() {
            return match lease.stored.end_notice {
                Some(n) => LeaseReply::Ended(n),
                None => refuse(RefusalCode::NotActive, "the lease has already ended"),
            };
        }
        match self.end_as_host(&lease, now, super::super::contract::EndReason::Released) {
            Ok(notice) => {
                tracing::info!(lease = %lease.id_hex(), "lease released by its tenant");
                LeaseReply::Ended(notice)
            }
            Err(e) => refuse(
                RefusalCode::Unavailable,
                format!("the host could not record the release: {e}; retry"),
            ),
        }
    }

    fn on_ended(&mut self, peer: &PeerId, bytes: &[u8]) -> LeaseReply {
        let Some(lease) = Envelope::decode(bytes, super::super::contract::MAX_LEASE_MSG)
            .ok()
            .and_then(|env| {
                crate::signed::decode_exact::<super::super::contract::LeaseEnd>(env.payload()).ok()
            })
            .and_then(|end| self.book.get(&end.lease_id).cloned())
            .filter(|l| l.stored.role == Role::Tenant)
        else {
            return refuse(RefusalCode::Unknown, "no such lease of this tenant");
        };
        if crate::identity::peer_id_of_bytes(&lease.contract.host).as_ref() != Some(peer) {
            return refuse(RefusalCode::Invalid, "only the lease's host can end it");
        }
        let end = match verify_end(bytes, &lease.contract) {
            Ok(e) => e,
            Err(e) => return refuse(RefusalCode::Invalid, e.to_string()),
        };
        if !lease.is_active() {
            return LeaseReply::Ok;
        }
        match self.end_lease(&lease, end.at_ms, end.reason, Some(bytes.to_vec())) {
            Ok(()) => {
                tracing::info!(lease = %lease.id_hex(), "lease terminated by its host");
                LeaseReply::Ok
            }
            Err(e) => refuse(RefusalCode::Unavailable, e.to_string()),
        }
    }

    fn on_receipts(&self, peer: &PeerId, id: &[u8; 16], since_ms: u64) -> LeaseReply {
        let Some(lease) = self.book.get(id).filter(|l| l.stored.role == Role::Host) else {
            return refuse(RefusalCode::Unknown, "no such lease on this host");
        };
        if crate::identity::peer_id_of_bytes(&lease.contract.tenant).as_ref() != Some(peer) {
            return refuse(RefusalCode::Unknown, "no such lease of yours on this host");
        }
        LeaseReply::Receipts(self.book.receipts(id, since_ms, MAX_RECEIPTS_PER_REPLY))
    }
}
