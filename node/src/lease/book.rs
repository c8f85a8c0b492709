//! The lease book: every lease this node is party to, and the host's reservations.
//!
//! One owner (the lease actor) mutates it, so reservations are serialised; sled holds the
//! durable copy (`leases` and `receipts` trees) and every change is written in one transaction
//! and flushed before it is acknowledged. Held offers live only in memory: a crash releases them,
//! which is what the protocol wants.
//!
//! The invariant, per resource: `used + held ≤ offered`, where `used` is the sum of the host's
//! active leases and `held` the sum of its new offers waiting for a countersignature. A
//! reservation that would break it is refused with what is free. If the operator lowers the
//! offer below what is leased, existing leases stay and every new request is refused.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::contract::{Acceptance, Contract, EndReason, LeaseDoc, hash, verify_doc};
use super::wire::{Refusal, RefusalCode};
use crate::resources::{LeaseId, Resources, id_hex};
use crate::signed::{Envelope, Opened, decode_exact};
use crate::store::{Domain, Op, Store, StoreError, Tree};

/// Which side of a lease this node is on. (JSON: `host`, `tenant`; stored by variant index.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Host,
    Tenant,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Host => "host",
            Role::Tenant => "tenant",
        })
    }
}

/// A usage receipt to store: the lease and period it covers, and the signed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedReceipt {
    pub lease_id: LeaseId,
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    pub signed: Vec<u8>,
}

/// How many renewal idempotency keys a lease remembers.
const MAX_RENEWAL_KEYS: usize = 32;

/// A lease as stored: the signed document and what happened to it since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLease {
    pub role: Role,
    /// The current version, as both parties signed it.
    pub doc: LeaseDoc,
    /// When and why it ended (`None` while active).
    pub ended: Option<(u64, EndReason)>,
    /// The host's signed end notice, when there is one.
    pub end_notice: Option<Vec<u8>>,
    /// Idempotency keys of the renewals applied (the newest few).
    pub renewal_keys: Vec<[u8; 16]>,
    /// Usage receipts exist up to here (Unix ms).
    pub receipts_until_ms: u64,
    /// Tenant side: countersigned and stored, the host's commit not yet confirmed.
    pub pending: bool,
}

/// A lease in memory: the stored form and its decoded contract.
#[derive(Debug, Clone)]
pub struct Lease {
    pub stored: StoredLease,
    pub contract: Contract,
    /// Whether both signatures checked out when it was stored or loaded; `None` for an ended
    /// lease loaded from disk, which is checked only when shown.
    pub verified: Option<bool>,
}

impl Lease {
    /// Verifies the document; one that does not verify is kept (and counted, so the host never
    /// over-books) with `verified: Some(false)`.
    fn from_stored(stored: StoredLease) -> Result<Self, String> {
        let mut lease = Self::unchecked(stored)?;
        lease.verified = Some(verify_doc(&lease.stored.doc).is_ok());
        Ok(lease)
    }

    /// Decodes the contract without checking signatures.
    fn unchecked(stored: StoredLease) -> Result<Self, String> {
        let env = Envelope::decode(&stored.doc.contract, super::contract::MAX_LEASE_MSG)
            .map_err(|e| format!("contract unreadable: {e}"))?;
        let contract: Contract = decode_exact(env.payload()).map_err(|e| e.to_string())?;
        Ok(Self {
            stored,
            contract,
            verified: None,
        })
    }

    /// Whether the lease is still running.
    pub fn is_active(&self) -> bool {
        self.stored.ended.is_none()
    }

    /// Lease id in hex.
    pub fn id_hex(&self) -> String {
        id_hex(&self.contract.lease_id)
    }
}

/// What an offer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OfferKind {
    New,
    Renew { idempotency_key: [u8; 16] },
}

/// An offer waiting for the tenant's countersignature.
#[derive(Debug, Clone)]
pub(crate) struct HeldOffer {
    pub contract: Contract,
    /// The exact signed contract envelope.
    pub envelope: Vec<u8>,
    pub kind: OfferKind,
    committing: bool,
}

impl HeldOffer {
    /// A new held offer.
    pub(crate) fn new(contract: Contract, envelope: Vec<u8>, kind: OfferKind) -> Self {
        Self {
            contract,
            envelope,
            kind,
            committing: false,
        }
    }
}

/// A countersigned offer on its way to disk.
#[derive(Debug, Clone)]
pub(crate) struct CommitItem {
    key: (LeaseId, u32),
    stored: StoredLease,
    contract: Contract,
}

impl CommitItem {
    /// The lease being committed.
    pub(crate) fn lease_id(&self) -> LeaseId {
        self.key.0
    }

    /// The document as it will be stored.
    pub(crate) fn doc(&self) -> &LeaseDoc {
        &self.stored.doc
    }
}

/// Host-side totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub offered: Resources,
    pub leased: Resources,
    pub held: Resources,
    pub free: Resources,
}

/// The book.
#[derive(Debug)]
pub(crate) struct LeaseBook {
    store: Store,
    leases_tree: Tree,
    receipts_tree: Tree,
    leases: HashMap<LeaseId, Lease>,
    offers: HashMap<(LeaseId, u32), HeldOffer>,
    used: Resources,
    held: Resources,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(v).map_err(|e| StoreError::Db(e.to_string()))
}

/// Key of a receipt: lease id, then period start (big endian, so keys sort by time).
pub(crate) fn receipt_key(id: &LeaseId, period_start_ms: u64) -> Vec<u8> {
    let mut k = id.to_vec();
    k.extend_from_slice(&period_start_ms.to_be_bytes());
    k
}

/// Checks the signatures of the active leases on every core; logs the ones that fail.
fn verify_active(leases: &mut HashMap<LeaseId, Lease>) {
    let mut active: Vec<&mut Lease> = leases.values_mut().filter(|l| l.is_active()).collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = active.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for part in active.chunks_mut(chunk) {
            scope.spawn(move || {
                for lease in part.iter_mut() {
                    lease.verified = Some(verify_doc(&lease.stored.doc).is_ok());
                }
            });
        }
    });
    for lease in leases.values().filter(|l| l.verified == Some(false)) {
        tracing::error!(lease = %lease.id_hex(), "stored lease does not verify");
    }
}

impl LeaseBook {
    /// Loads every stored lease. Held offers do not survive a restart.
    pub(crate) fn open(store: &Store) -> Result<Self, StoreError> {
        let leases_tree = store.tree(Domain::Leases)?;
        let receipts_tree = store.tree(Domain::Receipts)?;
        let mut leases = HashMap::new();
        let mut used = Resources::default();
        for item in leases_tree.scan_prefix(b"") {
            let (key, value) = item?;
            let lease = decode_exact::<StoredLease>(&value)
                .map_err(|e| e.to_string())
                .and_then(Lease::unchecked);
            match lease {
                Ok(lease) => {
                    if lease.stored.role == Role::Host && lease.is_active() {
                        used = used.plus(&lease.contract.slice);
                    }
                    leases.insert(lease.contract.lease_id, lease);
                }
                Err(e) => {
                    return Err(StoreError::Corrupt {
                        path: store.path().to_owned(),
                        reason: format!("lease {} unreadable: {e}", hex::encode(&key)),
                    });
                }
            }
        }
        verify_active(&mut leases);
        Ok(Self {
            store: store.clone(),
            leases_tree,
            receipts_tree,
            leases,
            offers: HashMap::new(),
            used,
            held: Resources::default(),
        })
    }

    /// Sum of the host's active leases.
    pub(crate) fn used(&self) -> Resources {
        self.used
    }

    /// Sum of the host's held new offers.
    #[cfg(test)]
    pub(crate) fn held(&self) -> Resources {
        self.held
    }

    /// Totals against what is offered.
    pub(crate) fn totals(&self, offered: &Resources) -> Totals {
        Totals {
            offered: *offered,
            leased: self.used,
            held: self.held,
            free: offered.minus(&self.used.plus(&self.held)),
        }
    }

    /// Number of held offers.
    pub(crate) fn offers_held(&self) -> usize {
        self.offers.len()
    }

    /// A lease by id.
    pub(crate) fn get(&self, id: &LeaseId) -> Option<&Lease> {
        self.leases.get(id)
    }

    /// A lease by id or unique hex prefix (at least 4 digits).
    pub(crate) fn find(&self, text: &str) -> Result<&Lease, String> {
        let t = text.trim().to_ascii_lowercase();
        if t.len() < 4 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "`{text}` is not a lease id; give the id (or its first 4+ hex digits) from `degroup lease list`"
            ));
        }
        let mut hits = self.leases.values().filter(|l| l.id_hex().starts_with(&t));
        match (hits.next(), hits.next()) {
            (Some(l), None) => Ok(l),
            (None, _) => Err(format!(
                "no lease {text} on this node; see `degroup lease list`"
            )),
            (Some(_), Some(_)) => Err(format!(
                "lease id prefix {text} is ambiguous; give more digits"
            )),
        }
    }

    /// Active leases: (hosted, rented).
    pub(crate) fn active_counts(&self) -> (usize, usize) {
        let mut c = (0, 0);
        for l in self.leases.values().filter(|l| l.is_active()) {
            match l.stored.role {
                Role::Host => c.0 += 1,
                Role::Tenant => c.1 += 1,
            }
        }
        c
    }

    /// Active leases this node hosts, in no particular order.
    pub(crate) fn active_hosted(&self) -> impl Iterator<Item = &Lease> {
        self.leases
            .values()
            .filter(|l| l.stored.role == Role::Host && l.is_active())
    }

    /// All leases, newest first.
    pub(crate) fn list(&self) -> Vec<&Lease> {
        let mut v: Vec<&Lease> = self.leases.values().collect();
        v.sort_by(|a, b| {
            b.contract
                .starts_at_ms
                .cmp(&a.contract.starts_at_ms)
                .then(a.contract.lease_id.cmp(&b.contract.lease_id))
        });
        v
    }

    /// An offer waiting for a countersignature.
    pub(crate) fn offer(&self, id: &LeaseId, version: u32) -> Option<&HeldOffer> {
        self.offers.get(&(*id, version))
    }

    /// Holds an offer. A new lease must fit: `used + held + slice ≤ offered`, per resource.
    pub(crate) fn reserve(&mut self, offered: &Resources, offer: HeldOffer) -> Result<(), Refusal> {
        let key = (offer.contract.lease_id, offer.contract.version);
        if self.offers.contains_key(&key) {
            return Err(Refusal::new(
                RefusalCode::Replay,
                "an offer for this lease is already held",
            ));
        }
        if offer.kind == OfferKind::New {
            let wanted = self.used.plus(&self.held).plus(&offer.contract.slice);
            if !wanted.fits_in(offered) {
                return Err(Refusal {
                    code: RefusalCode::Capacity,
                    message: "not enough free capacity".into(),
                    free: Some(offered.minus(&self.used.plus(&self.held))),
                });
            }
            self.held = self.held.plus(&offer.contract.slice);
        }
        self.offers.insert(key, offer);
        Ok(())
    }

    fn drop_offer(&mut self, key: &(LeaseId, u32)) {
        if let Some(o) = self.offers.remove(key)
            && o.kind == OfferKind::New
        {
            self.held = self.held.minus(&o.contract.slice);
        }
    }

    /// Releases offers not countersigned by `now_ms`; returns how many.
    pub(crate) fn expire_offers(&mut self, now_ms: u64) -> usize {
        let due: Vec<_> = self
            .offers
            .iter()
            .filter(|(_, o)| !o.committing && o.contract.offer_expires_at_ms <= now_ms)
            .map(|(k, _)| *k)
            .collect();
        for k in &due {
            self.drop_offer(k);
        }
        due.len()
    }

    /// Earliest offer expiry.
    pub(crate) fn next_offer_expiry(&self) -> Option<u64> {
        self.offers
            .values()
            .map(|o| o.contract.offer_expires_at_ms)
            .min()
    }

    /// Checks a verified acceptance against the held offer and marks it as committing.
    pub(crate) fn prepare_commit(
        &mut self,
        acceptance: &Opened<Acceptance>,
        now_ms: u64,
    ) -> Result<CommitItem, Refusal> {
        let a = &acceptance.value;
        let key = (a.lease_id, a.version);
        let Some(offer) = self.offers.get_mut(&key) else {
            return Err(Refusal::new(
                RefusalCode::Unknown,
                "no offer is held for this lease (it lapsed, or was never made); send a new request",
            ));
        };
        if acceptance.signer.as_bytes() != &offer.contract.tenant {
            return Err(Refusal::new(
                RefusalCode::Invalid,
                "the acceptance is not signed by the tenant of the offer",
            ));
        }
        if a.contract_hash != hash(&offer.envelope) {
            return Err(Refusal::new(
                RefusalCode::Invalid,
                "the acceptance countersigns another contract",
            ));
        }
        if offer.committing {
            return Err(Refusal::new(
                RefusalCode::Unavailable,
                "this offer is being committed; retry",
            ));
        }
        if offer.contract.offer_expires_at_ms <= now_ms {
            return Err(Refusal::new(
                RefusalCode::Unknown,
                "the offer lapsed before it was countersigned; send a new request",
            ));
        }
        offer.committing = true;
        let doc = LeaseDoc {
            contract: offer.envelope.clone(),
            acceptance: acceptance.envelope.to_bytes(),
        };
        let stored = match (&offer.kind, self.leases.get(&a.lease_id)) {
            (OfferKind::New, _) => StoredLease {
                role: Role::Host,
                doc,
                ended: None,
                end_notice: None,
                renewal_keys: Vec::new(),
                receipts_until_ms: offer.contract.starts_at_ms,
                pending: false,
            },
            (OfferKind::Renew { idempotency_key }, Some(old)) if old.is_active() => {
                let mut s = old.stored.clone();
                s.doc = doc;
                s.renewal_keys.push(*idempotency_key);
                if s.renewal_keys.len() > MAX_RENEWAL_KEYS {
                    s.renewal_keys.remove(0);
                }
                s
            }
            (OfferKind::Renew { .. }, _) => {
                offer.committing = false;
                self.drop_offer(&key);
                return Err(Refusal::new(
                    RefusalCode::NotActive,
                    "the lease ended before the renewal was countersigned",
                ));
            }
        };
        Ok(CommitItem {
            key,
            stored,
            contract: offer.contract.clone(),
        })
    }

    /// Writes countersigned offers in one transaction, flushes, and only then makes them
    /// leases. On a store error nothing changes and the offers are held again.
    pub(crate) fn commit(&mut self, items: &[CommitItem]) -> Result<(), StoreError> {
        let mut ops = Vec::with_capacity(items.len());
        for item in items {
            ops.push(Op::Put(
                Domain::Leases,
                item.key.0.to_vec(),
                encode(&item.stored)?,
            ));
        }
        if let Err(e) = self.store.apply_durable(&ops) {
            for item in items {
                if let Some(o) = self.offers.get_mut(&item.key) {
                    o.committing = false;
                }
            }
            return Err(e);
        }
        for item in items {
            self.drop_offer(&item.key);
            // The host signed the contract and checked the countersignature: verified.
            self.install(Lease {
                stored: item.stored.clone(),
                contract: item.contract.clone(),
                verified: Some(true),
            });
        }
        Ok(())
    }

    /// Replaces the record of a lease whose signed document did not change.
    fn restate(&mut self, id: &LeaseId, stored: StoredLease) {
        if let Some(old) = self.leases.get(id) {
            let lease = Lease {
                stored,
                contract: old.contract.clone(),
                verified: old.verified,
            };
            self.install(lease);
        }
    }

    fn install(&mut self, lease: Lease) {
        let id = lease.contract.lease_id;
        if let Some(old) = self.leases.remove(&id)
            && old.stored.role == Role::Host
            && old.is_active()
        {
            self.used = self.used.minus(&old.contract.slice);
        }
        if lease.stored.role == Role::Host && lease.is_active() {
            self.used = self.used.plus(&lease.contract.slice);
        }
        self.leases.insert(id, lease);
    }

    /// Stores a lease durably (the tenant's copy, or any rewrite of a record).
    pub(crate) fn put(&mut self, stored: StoredLease) -> Result<LeaseId, StoreError> {
        let bytes = encode(&stored)?;
        let lease = Lease::from_stored(stored).map_err(StoreError::Db)?;
        let id = lease.contract.lease_id;
        self.leases_tree.insert_durable(&id, &bytes)?;
        self.install(lease);
        Ok(id)
    }

    /// Marks a tenant's pending lease as confirmed by its host. Not flushed: a crash before
    /// the next flush leaves it pending, and the start-up reconciliation confirms it again.
    pub(crate) fn confirm(&mut self, id: &LeaseId) -> Result<bool, StoreError> {
        let Some(lease) = self.leases.get(id).filter(|l| l.stored.pending) else {
            return Ok(false);
        };
        let mut stored = lease.stored.clone();
        stored.pending = false;
        self.leases_tree.insert(id, &encode(&stored)?)?;
        self.restate(id, stored);
        Ok(true)
    }

    /// Drops a tenant's pending lease that its host never committed.
    pub(crate) fn forget(&mut self, id: &LeaseId) -> Result<bool, StoreError> {
        if !self.leases.get(id).is_some_and(|l| l.stored.pending) {
            return Ok(false);
        }
        self.leases_tree.remove(id)?;
        self.leases.remove(id);
        Ok(true)
    }

    /// The tenant's leases whose commit is not confirmed yet.
    pub(crate) fn pending(&self) -> Vec<Lease> {
        self.leases
            .values()
            .filter(|l| l.stored.pending)
            .cloned()
            .collect()
    }

    /// Ends an active lease durably; its capacity is free once this returns.
    pub(crate) fn end(
        &mut self,
        id: &LeaseId,
        at_ms: u64,
        reason: EndReason,
        notice: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let Some(lease) = self.leases.get(id) else {
            return Ok(false);
        };
        if !lease.is_active() {
            return Ok(false);
        }
        let mut stored = lease.stored.clone();
        stored.ended = Some((at_ms, reason));
        stored.end_notice = notice;
        self.leases_tree.insert_durable(id, &encode(&stored)?)?;
        self.restate(id, stored);
        Ok(true)
    }

    /// Active leases whose term is over by `now_ms`.
    pub(crate) fn due_to_expire(&self, now_ms: u64) -> Vec<LeaseId> {
        self.leases
            .values()
            .filter(|l| l.is_active() && l.contract.ends_at_ms <= now_ms)
            .map(|l| l.contract.lease_id)
            .collect()
    }

    /// Earliest end of an active lease.
    pub(crate) fn next_lease_end(&self) -> Option<u64> {
        self.leases
            .values()
            .filter(|l| l.is_active())
            .map(|l| l.contract.ends_at_ms)
            .min()
    }

    /// Stores receipts and moves the leases' receipt marks, in one durable transaction.
    pub(crate) fn add_receipts(&mut self, receipts: &[SignedReceipt]) -> Result<(), StoreError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::new();
        let mut marks: HashMap<LeaseId, u64> = HashMap::new();
        for r in receipts {
            ops.push(Op::Put(
                Domain::Receipts,
                receipt_key(&r.lease_id, r.period_start_ms),
                r.signed.clone(),
            ));
            let m = marks.entry(r.lease_id).or_insert(0);
            *m = (*m).max(r.period_end_ms);
        }
        let mut updated = Vec::new();
        for (id, mark) in &marks {
            if let Some(l) = self.leases.get(id) {
                let mut s = l.stored.clone();
                s.receipts_until_ms = s.receipts_until_ms.max(*mark);
                ops.push(Op::Put(Domain::Leases, id.to_vec(), encode(&s)?));
                updated.push((*id, s));
            }
        }
        self.store.apply_durable(&ops)?;
        for (id, s) in updated {
            self.restate(&id, s);
        }
        Ok(())
    }

    /// Stored receipts of a lease with a period starting at or after `since_ms`, oldest first.
    pub(crate) fn receipts(&self, id: &LeaseId, since_ms: u64, max: usize) -> Vec<Vec<u8>> {
        self.receipts_tree
            .scan_prefix(id)
            .filter_map(Result::ok)
            .filter(|(k, _)| {
                k.get(16..24)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .is_some_and(|b| u64::from_be_bytes(b) >= since_ms)
            })
            .take(max)
            .map(|(_, v)| v)
            .collect()
    }

    /// Checks the invariant against `offered` (for tests and the chaos checks).
    pub(crate) fn check_invariant(&self, offered: &Resources) -> Result<(), String> {
        let mut used = Resources::default();
        for l in self.leases.values() {
            if l.stored.role == Role::Host && l.is_active() {
                used = used.plus(&l.contract.slice);
            }
        }
        if used != self.used {
            return Err(format!("used {:?} != sum of leases {used:?}", self.used));
        }
        let mut held = Resources::default();
        for o in self.offers.values() {
            if o.kind == OfferKind::New {
                held = held.plus(&o.contract.slice);
            }
        }
        if held != self.held {
            return Err(format!("held {:?} != sum of offers {held:?}", self.held));
        }
        if !used.plus(&held).fits_in(offered) {
            return Err(format!(
                "over-booked: leased {used:?} + held {held:?} > offered {offered:?}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
