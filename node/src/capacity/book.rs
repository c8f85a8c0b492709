//! The advert book: the newest valid advert of every known host.
//!
//! Every advert, whatever way it came (gossip, late-joiner sync, our own, the store at start-up),
//! goes through [`AdvertBook::offer`] or [`AdvertBook::offer_batch`], which run the stateless
//! checks of [`super::advert::check`] and then the stateful one: only a sequence number newer
//! than the one held is accepted. The verdict maps onto gossipsub's Accept / Reject / Ignore so
//! that invalid adverts are never relayed and cost their sender peer score.
//!
//! Entries live in a `BTreeMap` keyed by host (ordered, for paginated sync) behind a mutex that
//! is never held across an await, and in the `adverts` sled tree (host → first-seen time +
//! envelope bytes as received). Gossip is not acknowledged to anyone, so inserts are not flushed
//! one by one; sled's periodic flush and the shutdown flush cover them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::advert::{Advert, Rejection, check, check_fields};
use super::query::{FindResult, Query, find};
use crate::signed::{Envelope, Kind as _, Opened, decode_exact};
use crate::store::{Domain, Store, StoreError, Tree};

/// What happened to an offered advert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and newer than what was held: stored, and relayed by gossip.
    Accepted,
    /// Valid but not newer (a duplicate or an old sequence number): dropped, not relayed.
    Ignored(&'static str),
    /// Invalid: dropped, not relayed, and the sender pays in peer score.
    Rejected(Rejection),
}

impl Verdict {
    /// Label for metrics: `accepted`, `ignored`, `rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Ignored(_) => "ignored",
            Verdict::Rejected(_) => "rejected",
        }
    }

    /// Reason label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Accepted => "",
            Verdict::Ignored(r) => r,
            Verdict::Rejected(r) => r.label(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    advert: Advert,
    envelope: Arc<Vec<u8>>,
    first_seen_ns: u64,
    /// The host's peer id, computed once (it costs a point decompression).
    label: String,
}

fn label_of(advert: &Advert) -> String {
    advert
        .peer_id()
        .map_or_else(|| hex::encode(advert.host), |p| p.to_string())
}

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    first_seen_ns: u64,
    envelope: Vec<u8>,
}

/// What the admin API lists per known advert (`GET /v1/adverts`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdvertMeta {
    pub host: String,
    pub seq: u64,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    /// Unix nanoseconds at which this node first accepted this advert (this sequence number).
    pub first_seen_ns: u64,
}

/// The book. Share it as `Arc<AdvertBook>`.
#[derive(Debug)]
pub struct AdvertBook {
    entries: Mutex<BTreeMap<[u8; 32], Entry>>,
    tree: Tree,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl AdvertBook {
    /// Loads the stored adverts, re-checking each; expired or invalid ones are dropped.
    pub fn open(store: &Store, now_ms: u64) -> Result<Self, StoreError> {
        let tree = store.tree(Domain::Adverts)?;
        let mut entries = BTreeMap::new();
        let mut stale = Vec::new();
        for item in tree.scan_prefix(b"") {
            let (key, value) = item?;
            let parsed = decode_exact::<Stored>(&value)
                .ok()
                .and_then(|s| check(&s.envelope, now_ms).ok().map(|o| (s, o)));
            match parsed {
                Some((s, opened)) if key.as_slice() == opened.value.host.as_slice() => {
                    entries.insert(
                        opened.value.host,
                        Entry {
                            label: label_of(&opened.value),
                            advert: opened.value,
                            envelope: Arc::new(s.envelope),
                            first_seen_ns: s.first_seen_ns,
                        },
                    );
                }
                _ => stale.push(key),
            }
        }
        for key in stale {
            tree.remove(&key)?;
        }
        Ok(Self {
            entries: Mutex::new(entries),
            tree,
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<[u8; 32], Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Validates one advert envelope and stores it when it is newer than what is held.
    pub fn offer(&self, bytes: &[u8], now_ms: u64) -> Verdict {
        match check(bytes, now_ms) {
            Ok(opened) => self.admit(opened, bytes),
            Err(r) => Verdict::Rejected(r),
        }
    }

    /// Same as [`AdvertBook::offer`] for many adverts, verifying signatures as one batch when
    /// they are all valid (the common case for sync pages) and one by one otherwise.
    pub fn offer_batch(&self, items: &[Vec<u8>], now_ms: u64) -> Vec<Verdict> {
        let mut decoded = Vec::with_capacity(items.len());
        for bytes in items {
            decoded.push(decode_unverified(bytes));
        }
        let all_ok = decoded.iter().all(Option::is_some);
        if all_ok && parallel_batch_verify(&decoded) {
            return decoded
                .into_iter()
                .zip(items)
                .map(|(d, bytes)| match d {
                    Some((envelope, value, signer)) => {
                        let opened = Opened {
                            value,
                            signer,
                            envelope,
                        };
                        match check_fields(&opened, now_ms) {
                            Ok(()) => self.admit(opened, bytes),
                            Err(r) => Verdict::Rejected(r),
                        }
                    }
                    None => Verdict::Rejected(Rejection::Malformed("undecodable".into())),
                })
                .collect();
        }
        items.iter().map(|b| self.offer(b, now_ms)).collect()
    }

    fn admit(&self, opened: Opened<Advert>, bytes: &[u8]) -> Verdict {
        let host = opened.value.host;
        let mut entries = self.lock();
        if let Some(held) = entries.get(&host) {
            if opened.value.seq == held.advert.seq && held.envelope.as_slice() == bytes {
                return Verdict::Ignored("duplicate");
            }
            if opened.value.seq <= held.advert.seq {
                return Verdict::Ignored("not_newer");
            }
        }
        let first_seen_ns = now_ns();
        let stored = Stored {
            first_seen_ns,
            envelope: bytes.to_vec(),
        };
        if let Ok(value) = postcard::to_stdvec(&stored)
            && let Err(e) = self.tree.insert(&host, &value)
        {
            tracing::warn!(error = %e, "cannot store advert");
        }
        entries.insert(
            host,
            Entry {
                label: label_of(&opened.value),
                advert: opened.value,
                envelope: Arc::new(stored.envelope),
                first_seen_ns,
            },
        );
        Verdict::Accepted
    }

    /// Drops expired adverts; returns how many.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut entries = self.lock();
        let expired: Vec<[u8; 32]> = entries
            .iter()
            .filter(|(_, e)| e.advert.expires_at_ms <= now_ms)
            .map(|(k, _)| *k)
            .collect();
        for k in &expired {
            entries.remove(k);
            let _ = self.tree.remove(k);
        }
        expired.len()
    }

    /// Number of adverts held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `limit` envelopes of hosts after `after` (in host order), and the cursor for the
    /// next page when there is one.
    /// Adverts the requester already holds (`known`: host key prefix → sequence number) are
    /// skipped, so a node that reconnects receives only what it is missing.
    pub fn page(
        &self,
        after: Option<[u8; 32]>,
        limit: usize,
        now_ms: u64,
        known: &HashMap<[u8; 8], u64>,
    ) -> (Vec<Arc<Vec<u8>>>, Option<[u8; 32]>) {
        use std::ops::Bound;
        let entries = self.lock();
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::new();
        let mut last = None;
        let mut more = false;
        for (k, e) in entries.range((lower, Bound::Unbounded)) {
            if e.advert.expires_at_ms <= now_ms {
                continue;
            }
            if known
                .get(&prefix(k))
                .is_some_and(|seq| *seq >= e.advert.seq)
            {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(e.envelope.clone());
            last = Some(*k);
        }
        (out, if more { last } else { None })
    }

    /// What this node holds, as (host key prefix, sequence number), for a sync request; empty
    /// (ask for everything) when it holds more than `max`.
    pub fn summary(&self, max: usize) -> Vec<([u8; 8], u64)> {
        let entries = self.lock();
        if entries.len() > max {
            return Vec::new();
        }
        entries
            .iter()
            .map(|(k, e)| (prefix(k), e.advert.seq))
            .collect()
    }

    /// Runs a query over the unexpired adverts.
    pub fn find(
        &self,
        query: &Query,
        text: &str,
        now_ms: u64,
        limit: Option<usize>,
        explain: bool,
    ) -> FindResult {
        let entries = self.lock();
        let live = entries
            .values()
            .filter(|e| e.advert.expires_at_ms > now_ms)
            .map(|e| (&e.advert, e.label.as_str()));
        find(query, text, live, now_ms, limit, explain)
    }

    /// The advert held for a host.
    pub fn get(&self, host: &[u8; 32]) -> Option<(Advert, u64)> {
        self.lock()
            .get(host)
            .map(|e| (e.advert.clone(), e.first_seen_ns))
    }

    /// Metadata of every advert held.
    pub fn list(&self) -> Vec<AdvertMeta> {
        self.lock()
            .values()
            .map(|e| AdvertMeta {
                host: e.label.clone(),
                seq: e.advert.seq,
                issued_at_ms: e.advert.issued_at_ms,
                expires_at_ms: e.advert.expires_at_ms,
                first_seen_ns: e.first_seen_ns,
            })
            .collect()
    }
}

/// The first 8 bytes of a host key: enough to tell hosts apart in a sync summary.
pub fn prefix(host: &[u8; 32]) -> [u8; 8] {
    let mut p = [0u8; 8];
    p.copy_from_slice(&host[..8]);
    p
}

/// A decoded advert envelope whose signature is not checked yet.
pub type Unverified = (Envelope, Advert, VerifyingKey);

/// Decodes an advert envelope without verifying it (weak keys refused).
pub fn decode_unverified(bytes: &[u8]) -> Option<Unverified> {
    let envelope = Envelope::decode(bytes, Advert::MAX_SIZE).ok()?;
    if envelope.tag() != Advert::TAG {
        return None;
    }
    let signer = VerifyingKey::from_bytes(envelope.signer_bytes()).ok()?;
    // Batch verification is not strict about small-order keys; refuse them up front.
    if signer.is_weak() {
        return None;
    }
    let value = decode_exact::<Advert>(envelope.payload()).ok()?;
    Some((envelope, value, signer))
}

/// Smallest batch worth splitting across threads.
const PARALLEL_MIN: usize = 32;

/// Batch verification, split across the available cores for large batches.
pub fn parallel_batch_verify(decoded: &[Option<Unverified>]) -> bool {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(8);
    if threads < 2 || decoded.len() < PARALLEL_MIN {
        return batch_verify(decoded.iter().flatten());
    }
    let chunk = decoded.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = decoded
            .chunks(chunk)
            .map(|part| scope.spawn(move || batch_verify(part.iter().flatten())))
            .collect();
        handles.into_iter().all(|h| h.join().unwrap_or(false))
    })
}

/// Verifies many advert signatures at once; false if any fails (or on a malformed signature).
pub fn batch_verify<'a>(items: impl Iterator<Item = &'a Unverified>) -> bool {
    let mut messages = Vec::new();
    let mut signatures = Vec::new();
    let mut keys = Vec::new();
    for (envelope, _, key) in items {
        let Ok(sig) = Signature::from_slice(envelope.signature_bytes()) else {
            return false;
        };
        messages.push(envelope.signed_message());
        signatures.push(sig);
        keys.push(*key);
    }
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_ok()
}

#[cfg(test)]
mod tests;
