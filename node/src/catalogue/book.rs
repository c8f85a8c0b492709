//! The catalogue: every valid release and yank this node knows, in memory and in sled.
//!
//! Every envelope, whatever way it came (gossip, sync, this node's own, the store at start-up),
//! goes through the same two steps: the stateless checks of [`super::release`], then the
//! stateful ones here, which decide the [`Verdict`]:
//!
//! - a release is identified by (publisher, name, version). The same identity with the same
//!   hash is a duplicate (ignored); with another hash it is refused ("version republished with
//!   other content"): the first seen wins, versions are immutable;
//! - a yank names the hash of the release it withdraws; one naming another hash than the
//!   release held is refused. A yank may arrive before its release: it is kept (and relayed) and
//!   applies when the release comes; if that release has another hash, the yank is dropped;
//! - at most [`MAX_PER_PUBLISHER`] releases (and as many yanks) per publisher and [`MAX_TOTAL`]
//!   releases (and as many yanks) in all; beyond, new ones are refused (`publisher_full`,
//!   `catalogue_full`), which bounds what one key, or the whole federation, can make every
//!   node store.
//!
//! Envelopes are kept exactly as received in the `releases` sled tree, under
//! `r/<publisher><name>\0<version>` and `y/<publisher><name>\0<version>` (value: first-seen time +
//! envelope), and re-checked when the catalogue opens. Gossip is acknowledged to nobody, so
//! those inserts rely on sled's periodic flush; this node's own [`Catalogue::publish`] and
//! [`Catalogue::yank`] are flushed before they return.
//!
//! The same key order drives sync paging ([`Catalogue::page`]), and an order-independent digest
//! (XOR of the BLAKE3 of every envelope held, kept up to date on every change) lets two nodes
//! see cheaply that they hold the same set ([`Catalogue::digest`]). One mutex guards the
//! memory side; it is never held across an await, and signatures are verified before taking it
//! (only this node's own, rare, publish and yank keep it across their flush, so that memory and
//! store never disagree).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::CatalogueError;
use super::release::{
    Hash, Item, MAX_ENVELOPE_SIZE, Rejection, Release, Yank, check_item, check_text_field, decode,
};
use crate::resources::now_ms;
use crate::signed::{Envelope, decode_exact};
use crate::store::{Domain, Store, StoreError, Tree};

/// Most releases (and, separately, yanks) held per publisher.
pub const MAX_PER_PUBLISHER: usize = 4096;
/// Most releases (and, separately, yanks) held in all.
pub const MAX_TOTAL: usize = 100_000;
/// Longest store key: `r/`, a key, a name, `\0`, a version.
pub const MAX_KEY_LEN: usize = 2 + 32 + super::release::MAX_NAME_LEN + 1 + 32;

/// What happened to an offered envelope; maps onto gossipsub's Accept / Ignore / Reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: stored, and relayed by gossip.
    Accepted,
    /// Valid but nothing new (a duplicate): dropped, not relayed, no penalty.
    Ignored(&'static str),
    /// Invalid or refused: dropped, not relayed, and the sender pays in peer score. The
    /// reason label is what metrics count.
    Rejected(&'static str),
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

    /// Reason label for metrics (empty when accepted).
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Accepted => "",
            Verdict::Ignored(r) | Verdict::Rejected(r) => r,
        }
    }
}

/// A release as the catalogue shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub release: Release,
    pub publisher_hex: String,
    pub hash_hex: String,
    /// The publisher's yank of this release, if any.
    pub yanked: Option<Yank>,
    /// Unix milliseconds at which this node first accepted the release.
    pub first_seen_ms: u64,
}

#[derive(Debug)]
struct HeldRelease {
    release: Release,
    /// Parsed once (always present: the version was checked).
    version: Option<semver::Version>,
    first_seen_ms: u64,
}

#[derive(Debug)]
struct HeldYank {
    yank: Yank,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    releases: usize,
    yanks: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// By identity (`<publisher><name>\0<version>`).
    releases: BTreeMap<Vec<u8>, HeldRelease>,
    yanks: BTreeMap<Vec<u8>, HeldYank>,
    /// Store key → envelope as received: what sync pages through.
    items: BTreeMap<Vec<u8>, Arc<Vec<u8>>>,
    /// BLAKE3 of every envelope held: duplicates are known before any signature check.
    seen: HashSet<Hash>,
    digest: Hash,
    counts: HashMap<[u8; 32], Counts>,
}

impl Inner {
    fn add_item(&mut self, key: Vec<u8>, envelope: Vec<u8>) {
        let fp = fingerprint(&envelope);
        xor(&mut self.digest, &fp);
        self.seen.insert(fp);
        if let Some(old) = self.items.insert(key, Arc::new(envelope)) {
            // Not reached (identities are checked first); keep the digest right regardless.
            let fp = fingerprint(&old);
            xor(&mut self.digest, &fp);
            self.seen.remove(&fp);
        }
    }

    fn remove_item(&mut self, key: &[u8]) {
        if let Some(old) = self.items.remove(key) {
            let fp = fingerprint(&old);
            xor(&mut self.digest, &fp);
            self.seen.remove(&fp);
        }
    }

    fn remove_yank(&mut self, id: &[u8]) {
        if let Some(held) = self.yanks.remove(id) {
            self.remove_item(&yank_key(id));
            if let Some(c) = self.counts.get_mut(&held.yank.publisher) {
                c.yanks = c.yanks.saturating_sub(1);
            }
        }
    }

    fn entry(&self, id: &[u8], held: &HeldRelease) -> Entry {
        let yanked = self
            .yanks
            .get(id)
            .filter(|y| y.yank.hash == held.release.hash)
            .map(|y| y.yank.clone());
        Entry {
            publisher_hex: hex::encode(held.release.publisher),
            hash_hex: hex::encode(held.release.hash),
            release: held.release.clone(),
            yanked,
            first_seen_ms: held.first_seen_ms,
        }
    }

    /// Entries of the releases picked, in catalogue order (name, publisher, version
    /// descending).
    fn entries<'a>(
        &'a self,
        picked: impl Iterator<Item = (&'a Vec<u8>, &'a HeldRelease)>,
        limit: usize,
    ) -> Vec<Entry> {
        let mut picked: Vec<_> = picked.collect();
        picked.sort_by(|a, b| catalogue_order(a.1, b.1));
        picked
            .into_iter()
            .take(limit)
            .map(|(id, held)| self.entry(id, held))
            .collect()
    }
}

fn catalogue_order(a: &HeldRelease, b: &HeldRelease) -> Ordering {
    a.release
        .name
        .cmp(&b.release.name)
        .then_with(|| a.release.publisher.cmp(&b.release.publisher))
        .then_with(|| match (&a.version, &b.version) {
            (Some(x), Some(y)) => y.cmp(x),
            _ => b.release.version.cmp(&a.release.version),
        })
}

fn fingerprint(envelope: &[u8]) -> Hash {
    *blake3::hash(envelope).as_bytes()
}

fn xor(digest: &mut Hash, with: &Hash) {
    for (d, w) in digest.iter_mut().zip(with) {
        *d ^= w;
    }
}

/// The identity of a release or yank: `<publisher><name>\0<version>`.
fn identity(publisher: &[u8; 32], name: &str, version: &str) -> Vec<u8> {
    let mut id = Vec::with_capacity(32 + name.len() + 1 + version.len());
    id.extend_from_slice(publisher);
    id.extend_from_slice(name.as_bytes());
    id.push(0);
    id.extend_from_slice(version.as_bytes());
    id
}

fn release_key(id: &[u8]) -> Vec<u8> {
    [b"r/".as_slice(), id].concat()
}

fn yank_key(id: &[u8]) -> Vec<u8> {
    [b"y/".as_slice(), id].concat()
}

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    first_seen_ms: u64,
    envelope: Vec<u8>,
}

/// How an admitted envelope reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// Already there (loading at start-up).
    No,
    /// Written, flushed by sled in its own time; a failure is logged (gossip and sync).
    Lazy,
    /// Written and flushed before the catalogue changes; a failure is returned (our own).
    Durable,
}

/// The federation's package catalogue. Share it as `Arc<Catalogue>`.
#[derive(Debug)]
pub struct Catalogue {
    inner: Mutex<Inner>,
    tree: Tree,
}

impl Catalogue {
    /// Loads the `releases` tree, re-checking every envelope (signature and fields; not the
    /// clock). Invalid, misfiled or over-cap entries are removed.
    pub fn open(store: &Store) -> Result<Self, CatalogueError> {
        let tree = store.tree(Domain::Releases)?;
        let catalogue = Self {
            inner: Mutex::new(Inner::default()),
            tree,
        };
        let mut stale = Vec::new();
        {
            let mut inner = catalogue.lock();
            // Key order puts every release (`r/`) before every yank (`y/`).
            for pair in catalogue.tree.scan_prefix(b"") {
                let (key, value) = pair?;
                let item = decode_exact::<Stored>(&value)
                    .ok()
                    .and_then(|s| decode(&s.envelope).ok().map(|i| (s, i)));
                let Some((stored, item)) = item else {
                    stale.push(key);
                    continue;
                };
                if store_key(&item) != key {
                    stale.push(key);
                    continue;
                }
                let verdict = catalogue.admit(
                    &mut inner,
                    item,
                    stored.envelope,
                    stored.first_seen_ms,
                    Persist::No,
                )?;
                if verdict != Verdict::Accepted {
                    stale.push(key);
                }
            }
        }
        if !stale.is_empty() {
            tracing::warn!(
                count = stale.len(),
                "dropping invalid entries from the catalogue store"
            );
        }
        for key in stale {
            catalogue.tree.remove(&key)?;
        }
        tracing::debug!(releases = catalogue.len(), "catalogue loaded");
        Ok(catalogue)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Validates a release or yank envelope (from gossip or sync) and stores it when new.
    pub fn offer(&self, envelope: &[u8], now_ms: u64) -> Verdict {
        if envelope.len() > MAX_ENVELOPE_SIZE {
            return Verdict::Rejected(Rejection::Oversize.label());
        }
        if self.lock().seen.contains(&fingerprint(envelope)) {
            return Verdict::Ignored("duplicate");
        }
        let item = match check_item(envelope, now_ms) {
            Ok(item) => item,
            Err(r) => return Verdict::Rejected(r.label()),
        };
        let mut inner = self.lock();
        // A lazy write never fails the admission (it is logged).
        self.admit(&mut inner, item, envelope.to_vec(), now_ms, Persist::Lazy)
            .unwrap_or(Verdict::Ignored("store_error"))
    }

    fn admit(
        &self,
        inner: &mut Inner,
        item: Item,
        envelope: Vec<u8>,
        first_seen_ms: u64,
        persist: Persist,
    ) -> Result<Verdict, StoreError> {
        match item {
            Item::Release(o) => {
                self.admit_release(inner, o.value, envelope, first_seen_ms, persist)
            }
            Item::Yank(o) => self.admit_yank(inner, o.value, envelope, first_seen_ms, persist),
        }
    }

    fn admit_release(
        &self,
        inner: &mut Inner,
        release: Release,
        envelope: Vec<u8>,
        first_seen_ms: u64,
        persist: Persist,
    ) -> Result<Verdict, StoreError> {
        let id = identity(&release.publisher, &release.name, &release.version);
        if let Some(held) = inner.releases.get(&id) {
            return Ok(if held.release.hash == release.hash {
                Verdict::Ignored("duplicate")
            } else {
                Verdict::Rejected("republished")
            });
        }
        let counts = inner
            .counts
            .get(&release.publisher)
            .copied()
            .unwrap_or_default();
        if counts.releases >= MAX_PER_PUBLISHER {
            return Ok(Verdict::Rejected("publisher_full"));
        }
        if inner.releases.len() >= MAX_TOTAL {
            return Ok(Verdict::Rejected("catalogue_full"));
        }
        let mismatched_yank = inner
            .yanks
            .get(&id)
            .is_some_and(|y| y.yank.hash != release.hash);
        let key = release_key(&id);
        let drop_key = mismatched_yank.then(|| yank_key(&id));
        self.write(persist, &key, first_seen_ms, &envelope, drop_key.as_deref())?;
        if mismatched_yank {
            tracing::debug!(
                name = %release.name,
                version = %release.version,
                "dropping a yank that names another hash than the release"
            );
            inner.remove_yank(&id);
        }
        inner.add_item(key, envelope);
        inner.counts.entry(release.publisher).or_default().releases += 1;
        tracing::debug!(
            name = %release.name,
            version = %release.version,
            publisher = %hex::encode(&release.publisher[..8]),
            "release accepted"
        );
        let version = semver::Version::parse(&release.version).ok();
        inner.releases.insert(
            id,
            HeldRelease {
                release,
                version,
                first_seen_ms,
            },
        );
        Ok(Verdict::Accepted)
    }

    fn admit_yank(
        &self,
        inner: &mut Inner,
        yank: Yank,
        envelope: Vec<u8>,
        first_seen_ms: u64,
        persist: Persist,
    ) -> Result<Verdict, StoreError> {
        let id = identity(&yank.publisher, &yank.name, &yank.version);
        if let Some(held) = inner.yanks.get(&id) {
            return Ok(if held.yank.hash == yank.hash {
                Verdict::Ignored("already_yanked")
            } else {
                Verdict::Rejected("yank_mismatch")
            });
        }
        if inner
            .releases
            .get(&id)
            .is_some_and(|r| r.release.hash != yank.hash)
        {
            return Ok(Verdict::Rejected("yank_mismatch"));
        }
        let counts = inner
            .counts
            .get(&yank.publisher)
            .copied()
            .unwrap_or_default();
        if counts.yanks >= MAX_PER_PUBLISHER {
            return Ok(Verdict::Rejected("publisher_full"));
        }
        if inner.yanks.len() >= MAX_TOTAL {
            return Ok(Verdict::Rejected("catalogue_full"));
        }
        let key = yank_key(&id);
        self.write(persist, &key, first_seen_ms, &envelope, None)?;
        inner.add_item(key, envelope);
        inner.counts.entry(yank.publisher).or_default().yanks += 1;
        tracing::debug!(name = %yank.name, version = %yank.version, "yank accepted");
        inner.yanks.insert(id, HeldYank { yank });
        Ok(Verdict::Accepted)
    }

    fn write(
        &self,
        persist: Persist,
        key: &[u8],
        first_seen_ms: u64,
        envelope: &[u8],
        remove: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        if persist == Persist::No {
            return Ok(());
        }
        let value = postcard::to_stdvec(&Stored {
            first_seen_ms,
            envelope: envelope.to_vec(),
        })
        .map_err(|e| StoreError::Db(e.to_string()))?;
        let result = (|| {
            if let Some(old) = remove {
                self.tree.remove(old)?;
            }
            if persist == Persist::Durable {
                self.tree.insert_durable(key, &value)
            } else {
                self.tree.insert(key, &value)
            }
        })();
        match (result, persist) {
            (Err(e), Persist::Lazy) => {
                tracing::warn!(error = %e, "cannot store a catalogue entry");
                Ok(())
            }
            (result, _) => result,
        }
    }

    /// Signs and records this node's own release, durably, and returns the envelope to
    /// gossip. `release.publisher` must be `key`'s public key. Publishing again what is
    /// already held (same identity, same hash) returns the envelope held; the same
    /// (publisher, name, version) with another hash is [`CatalogueError::Republished`].
    pub fn publish(&self, key: &SigningKey, release: Release) -> Result<Vec<u8>, CatalogueError> {
        if release.publisher != key.verifying_key().to_bytes() {
            return Err(CatalogueError::Invalid(Rejection::WrongSigner));
        }
        let id = identity(&release.publisher, &release.name, &release.version);
        let mut inner = self.lock();
        if let Some(held) = inner.releases.get(&id) {
            if held.release.hash != release.hash {
                return Err(CatalogueError::Republished {
                    name: release.name,
                    version: release.version,
                    hash_hex: hex::encode(held.release.hash),
                });
            }
            return Ok(inner
                .items
                .get(&release_key(&id))
                .map(|e| e.to_vec())
                .unwrap_or_default());
        }
        let envelope = Envelope::seal_kind(key, &release)
            .map_err(|e| CatalogueError::Invalid(e.into()))?
            .to_bytes();
        let item = check_item(&envelope, now_ms())?;
        let verdict = self.admit(
            &mut inner,
            item,
            envelope.clone(),
            now_ms(),
            Persist::Durable,
        )?;
        match verdict {
            Verdict::Rejected(reason) => Err(CatalogueError::Full(reason)),
            Verdict::Accepted | Verdict::Ignored(_) => {
                tracing::info!(name = %release.name, version = %release.version, "release published");
                Ok(envelope)
            }
        }
    }

    /// Signs and records this node's yank of one of its own releases, durably, and returns the
    /// envelope to gossip. [`CatalogueError::NotFound`] unless `key` published that version;
    /// yanking again returns the yank held.
    pub fn yank(
        &self,
        key: &SigningKey,
        name: &str,
        version: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<Vec<u8>, CatalogueError> {
        let publisher = key.verifying_key().to_bytes();
        let id = identity(&publisher, name, version);
        let mut inner = self.lock();
        let not_found = || CatalogueError::NotFound {
            name: name.chars().take(64).collect(),
            version: version.chars().take(32).collect(),
        };
        let hash = inner
            .releases
            .get(&id)
            .map(|r| r.release.hash)
            .ok_or_else(not_found)?;
        if inner.yanks.contains_key(&id) {
            return Ok(inner
                .items
                .get(&yank_key(&id))
                .map(|e| e.to_vec())
                .unwrap_or_default());
        }
        check_text_field(reason).map_err(|r| CatalogueError::Invalid(Rejection::BadReason(r)))?;
        let yank = Yank {
            publisher,
            name: name.to_owned(),
            version: version.to_owned(),
            hash,
            yanked_ms: now_ms,
            reason: reason.to_owned(),
        };
        let envelope = Envelope::seal_kind(key, &yank)
            .map_err(|e| CatalogueError::Invalid(e.into()))?
            .to_bytes();
        let item = check_item(&envelope, now_ms)?;
        let verdict = self.admit(&mut inner, item, envelope.clone(), now_ms, Persist::Durable)?;
        match verdict {
            Verdict::Rejected(reason) => Err(CatalogueError::Full(reason)),
            Verdict::Accepted | Verdict::Ignored(_) => {
                tracing::info!(%name, %version, "release yanked");
                Ok(envelope)
            }
        }
    }

    /// Releases whose name or description contains `text` (case-insensitive; `""` matches
    /// all), sorted by name, publisher, then version descending; at most `limit`.
    pub fn search(&self, text: &str, limit: usize) -> Vec<Entry> {
        let needle = text.to_lowercase();
        let inner = self.lock();
        let picked = inner.releases.iter().filter(|(_, h)| {
            needle.is_empty()
                || h.release.name.contains(&needle)
                || h.release.description.to_lowercase().contains(&needle)
        });
        inner.entries(picked, limit)
    }

    /// Every release of a package file, by its hash (several publishers may list the same
    /// file).
    pub fn by_hash(&self, hash: &Hash) -> Vec<Entry> {
        let inner = self.lock();
        let picked = inner
            .releases
            .iter()
            .filter(|(_, h)| &h.release.hash == hash);
        inner.entries(picked, usize::MAX)
    }

    /// Every release of a package name, all publishers.
    pub fn releases(&self, name: &str) -> Vec<Entry> {
        let inner = self.lock();
        let picked = inner
            .releases
            .iter()
            .filter(|(_, h)| h.release.name == name);
        inner.entries(picked, usize::MAX)
    }

    /// Every release of one publisher.
    pub fn own(&self, publisher: &[u8; 32]) -> Vec<Entry> {
        let inner = self.lock();
        let picked = inner
            .releases
            .range(publisher.to_vec()..)
            .take_while(|(id, _)| id.starts_with(publisher));
        inner.entries(picked, usize::MAX)
    }

    /// Number of releases held (yanked ones included).
    pub fn len(&self) -> usize {
        self.lock().releases.len()
    }

    /// Whether no release is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of yanks held (including those waiting for their release).
    pub fn yanks(&self) -> usize {
        self.lock().yanks.len()
    }

    /// XOR of the BLAKE3 of every envelope held: equal digests mean (barring a collision)
    /// equal sets.
    pub fn digest(&self) -> Hash {
        self.lock().digest
    }

    /// Up to `limit` envelopes (releases and yanks) with store keys after `after`, in key
    /// order, and the cursor of the next page when there is one.
    pub fn page(&self, after: Option<&[u8]>, limit: usize) -> (Vec<Arc<Vec<u8>>>, Option<Vec<u8>>) {
        use std::ops::Bound;
        let inner = self.lock();
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut range = inner.items.range::<[u8], _>((lower, Bound::Unbounded));
        let mut out = Vec::new();
        let mut last = None;
        for (k, e) in range.by_ref().take(limit) {
            out.push(e.clone());
            last = Some(k.clone());
        }
        let more = range.next().is_some();
        (out, if more { last } else { None })
    }
}

/// The store key of a decoded item.
fn store_key(item: &Item) -> Vec<u8> {
    match item {
        Item::Release(r) => release_key(&identity(
            &r.value.publisher,
            &r.value.name,
            &r.value.version,
        )),
        Item::Yank(y) => yank_key(&identity(
            &y.value.publisher,
            &y.value.name,
            &y.value.version,
        )),
    }
}
