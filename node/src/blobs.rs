//! Content-addressed blobs: stored by their BLAKE3 hash, served to peers, and fetched from
//! several providers at once with every piece verified before it touches the disk.
//!
//! A blob is a file named by its hash plus a bao outboard (the hash tree of its
//! [`CHUNK_GROUP`]-byte chunk groups), with its metadata — size, [`Visibility`], holds — in the
//! sled tree `blobs` (`blobs/store.rs` has the layout). Because the outboard lets anyone verify any
//! range against the root hash, a node can take different ranges from different peers and
//! still trust nothing but the hash it asked for.
//!
//! - **Adding** ([`Blobs::add`]) hashes the bytes, writes data and outboard, fsyncs both, and
//!   only then records the metadata durably. Adding what is already present writes nothing.
//! - **Serving** ([`Blobs::serve`], `blobs/serve.rs`): `/degroup/blob/1` ([`wire`]) answers
//!   sizes and bao-encoded ranges of chunk groups, read with `encode_ranges_validated` so a
//!   corrupt disk is never passed on. Public blobs go to anyone, private ones to the listed
//!   peers only; each peer has a bound on concurrent transfers and a token bucket of bytes.
//! - **Finding**: a public blob is announced as a Kademlia provider record under
//!   [`provider_key`] when added, fetched or made public, and again for every public blob when
//!   serving starts (provider records are not persisted); Kademlia re-announces them every
//!   hour, before they expire.
//! - **Fetching** ([`Blobs::fetch`], `blobs/fetch.rs`): providers from the caller's hints
//!   and from Kademlia, up to three pulled from in parallel, each chunk group verified against
//!   the hash before it is written at its offset in a `.part` file; a provider sending bad data
//!   is dropped and penalised, one that fails has its ranges given to the others. The size, if
//!   not given, is asked of a provider and proved by verifying the last chunk group.
//! - **Holding and collecting**: holds ([`Blobs::hold`]) are named GC roots ("pin",
//!   `dep:<id>`, …). [`Blobs::collect_garbage`] deletes, every minute, the blobs nobody holds
//!   once their grace period ([`BlobLimits::gc_grace`]) since the last release (or the add)
//!   has passed; the quota counts every blob stored plus the downloads under way.

pub mod config;
mod fetch;
mod serve;
mod store;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{Coded, ErrorCode};
use crate::metrics::{BlobFetchLabels, NodeMetrics};
use crate::net::{Inbound, Network};
use crate::resources::now_ms;
use crate::store::{Domain, Store, Tree};

pub use config::{BlobConfig, BlobLimits};
pub use fetch::Fetched;
pub use wire::{BlobProtocol, BlobRefusal, BlobReply, BlobRequest, decode_reply, decode_request};

/// A blob's BLAKE3 hash (the root of its bao tree).
pub type Hash = [u8; 32];
/// Bytes per chunk group: the unit of verification and of transfer.
pub const CHUNK_GROUP: usize = 16 * 1024;
/// Directory of the blobs inside a data directory.
pub const BLOBS_DIR: &str = "blobs";
/// How often [`Blobs::collect_garbage`] runs.
pub const GC_EVERY: Duration = Duration::from_secs(60);

/// The Kademlia key a blob is announced under.
pub fn provider_key(hash: &Hash) -> Vec<u8> {
    let mut key = b"/degroup/blob/".to_vec();
    key.extend_from_slice(hash);
    key
}

/// Who may fetch a blob from this node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Anyone; announced in the DHT.
    Public,
    /// Only these peers (peer ids as text); empty: nobody. Never announced.
    Private { peers: Vec<String> },
}

impl Visibility {
    /// The visibility of a blob wanted both ways: public wins, private peer lists are joined.
    fn merge(&self, other: &Visibility) -> Visibility {
        match (self, other) {
            (Visibility::Private { peers: a }, Visibility::Private { peers: b }) => {
                let mut peers = a.clone();
                for p in b {
                    if !peers.contains(p) && peers.len() < store::MAX_PRIVATE_PEERS {
                        peers.push(p.clone());
                    }
                }
                Visibility::Private { peers }
            }
            _ => Visibility::Public,
        }
    }

    /// Whether `peer` may fetch the blob.
    fn allows(&self, peer: &PeerId) -> bool {
        match self {
            Visibility::Public => true,
            Visibility::Private { peers } => peers.contains(&peer.to_string()),
        }
    }
}

/// What is known of a stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobInfo {
    #[serde(serialize_with = "hex_hash")]
    pub hash: Hash,
    pub size: u64,
    pub visibility: Visibility,
    pub holds: Vec<String>,
    pub added_ms: u64,
}

fn hex_hash<S: serde::Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(hash))
}

/// What can go wrong with blobs. Every message says what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BlobError {
    #[error("blob {hash} is not held by this node; fetch or add it first")]
    NotFound { hash: String },
    #[error(
        "the blob is {size} bytes, over the {max}-byte limit (blobs.max_package); raise the limit or use a smaller blob"
    )]
    TooLarge { size: u64, max: u64 },
    #[error(
        "storing {size} more bytes would exceed the blob quota of {quota} bytes ({used} in use, after collecting garbage); release blobs or raise blobs.quota"
    )]
    Quota { size: u64, used: u64, quota: u64 },
    #[error(
        "no provider of blob {hash} could be reached (tried: {}); check the hints or retry once a provider is online",
        if tried.is_empty() { "none known".to_owned() } else { tried.join("; ") }
    )]
    NoProvider { hash: String, tried: Vec<String> },
    #[error(
        "every provider of blob {hash} sent data that fails verification (bad: {}); check the hash (and size, if given) or find an honest provider",
        bad.join(", ")
    )]
    Corrupt { hash: String, bad: Vec<String> },
    #[error(
        "blob {hash} on disk no longer matches its hash (disk corruption); delete it and fetch it again"
    )]
    DiskCorrupt { hash: String },
    #[error("bad blob request: {0}")]
    BadInput(String),
    #[error("too many blob fetches are running; retry in a moment")]
    Busy,
    #[error("blob storage failed while {what}: {reason}; check the disk and the data directory")]
    Io { what: &'static str, reason: String },
    #[error("blob metadata store: {0}")]
    Store(String),
    #[error("the node is shutting down")]
    Stopped,
}

impl BlobError {
    fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> BlobError {
        move |e| BlobError::Io {
            what,
            reason: e.to_string(),
        }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            BlobError::NotFound { .. } => ErrorCode::NotFound,
            BlobError::TooLarge { .. } | BlobError::BadInput(_) => ErrorCode::BadInput,
            BlobError::Quota { .. } => ErrorCode::CapacityExhausted,
            BlobError::NoProvider { .. } | BlobError::Busy | BlobError::Stopped => {
                ErrorCode::Unavailable
            }
            BlobError::Corrupt { .. } => ErrorCode::ProtocolError,
            BlobError::DiskCorrupt { .. } | BlobError::Io { .. } | BlobError::Store(_) => {
                ErrorCode::Internal
            }
        }
    }

    /// The label of a failed fetch in `degroup_blob_fetches`.
    fn outcome(&self) -> &'static str {
        match self {
            BlobError::NoProvider { .. } => "no_provider",
            BlobError::Corrupt { .. } => "corrupt",
            BlobError::TooLarge { .. } => "too_large",
            BlobError::Quota { .. } => "quota",
            _ => "error",
        }
    }
}

impl Coded for BlobError {
    fn code(&self) -> ErrorCode {
        BlobError::code(self)
    }
}

impl From<crate::store::StoreError> for BlobError {
    fn from(e: crate::store::StoreError) -> Self {
        BlobError::Store(e.to_string())
    }
}

/// Disk accounting, guarded by one lock with every metadata read-modify-write.
#[derive(Debug, Default)]
struct State {
    /// Bytes of the blobs stored.
    used: u64,
    /// Bytes promised to writes and downloads under way.
    reserved: u64,
}

/// A fetch under way, shared by every caller asking for the same hash.
#[derive(Debug, Clone)]
struct Running {
    progress: watch::Receiver<(u64, u64)>,
    done: watch::Receiver<Option<Result<Fetched, BlobError>>>,
}

/// Most distinct fetches under way at once.
const MAX_FETCHES: usize = 64;
/// Most providers remembered as penalised.
const MAX_PENALTIES: usize = 1024;
/// How long a provider that sent bad data is sorted last.
const PENALTY: Duration = Duration::from_secs(600);

struct Inner {
    dir: store::Dir,
    tree: Tree,
    limits: BlobLimits,
    net: Network,
    metrics: NodeMetrics,
    state: Mutex<State>,
    fetches: Mutex<HashMap<Hash, Running>>,
    penalties: Mutex<HashMap<PeerId, tokio::time::Instant>>,
    /// Tags for temporary file names.
    next_tag: AtomicU64,
    /// Test hook: corrupt every `Data` reply this node sends.
    #[cfg(any(test, feature = "test-faults"))]
    corrupt_replies: std::sync::atomic::AtomicBool,
}

/// The blob store: a cheap, cloneable handle.
#[derive(Clone)]
pub struct Blobs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("dir", &self.inner.dir.path())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Blobs {
    /// Opens `<data_dir>/blobs/` (blob files `<hex>` and outboards `<hex>.obao`; unfinished
    /// `.part` files are removed) with metadata in the sled `blobs` tree.
    pub fn open(
        data_dir: &Path,
        store: &Store,
        limits: BlobLimits,
        net: Network,
        metrics: NodeMetrics,
    ) -> Result<Blobs, BlobError> {
        let dir = store::Dir::new(data_dir.join(BLOBS_DIR));
        let files = dir
            .open()
            .map_err(BlobError::io("opening the blob directory"))?;
        let tree = store.tree(Domain::Blobs)?;
        let mut used = 0u64;
        let mut known = HashSet::new();
        let files: HashMap<Hash, u64> = files.into_iter().collect();
        let mut dangling = Vec::new();
        for entry in tree.scan_prefix(&[]) {
            let (key, value) = entry?;
            let Ok(hash) = <Hash>::try_from(key.as_slice()) else {
                continue;
            };
            let meta = Meta::decode(&value);
            match (meta, files.get(&hash)) {
                (Some(meta), Some(len)) if *len == meta.size => {
                    used = used.saturating_add(meta.size);
                    known.insert(hash);
                }
                _ => dangling.push(hash),
            }
        }
        for hash in &dangling {
            tracing::warn!(
                hash = %hex::encode(hash),
                "blob metadata without a matching file; forgetting the blob"
            );
            tree.remove(hash)?;
        }
        if !dangling.is_empty() {
            tree.flush()?;
        }
        let outboards = dir
            .outboards()
            .map_err(BlobError::io("listing the blob directory"))?;
        for hash in files.keys().chain(outboards.iter()) {
            if !known.contains(hash) {
                tracing::debug!(hash = %hex::encode(hash), "removing blob files without metadata");
                dir.remove(hash)
                    .map_err(BlobError::io("removing leftover blob files"))?;
            }
        }
        #[cfg(feature = "test-faults")]
        let corrupt = std::env::var("DEGROUP_TEST_CORRUPT_BLOBS").is_ok_and(|v| v == "1");
        #[cfg(all(test, not(feature = "test-faults")))]
        let corrupt = false;
        Ok(Blobs {
            inner: Arc::new(Inner {
                dir,
                tree,
                limits,
                net,
                metrics,
                state: Mutex::new(State { used, reserved: 0 }),
                fetches: Mutex::new(HashMap::new()),
                penalties: Mutex::new(HashMap::new()),
                next_tag: AtomicU64::new(0),
                #[cfg(any(test, feature = "test-faults"))]
                corrupt_replies: std::sync::atomic::AtomicBool::new(corrupt),
            }),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &BlobLimits {
        &self.inner.limits
    }

    /// Serves `/degroup/blob/1` until `shutdown`; first announces every public blob held, so
    /// that provider records come back after a restart.
    pub async fn serve(self, inbound: Inbound<BlobProtocol>, shutdown: CancellationToken) {
        for info in self.list() {
            if info.visibility == Visibility::Public {
                self.inner.net.provide(provider_key(&info.hash));
            }
        }
        serve::run(self, inbound, shutdown).await;
    }

    /// Collects garbage every [`GC_EVERY`] until `shutdown`.
    pub async fn collect_garbage(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(GC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.gc_now(now_ms())).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(deleted = n, "blob garbage collected"),
                Ok(Err(e)) => tracing::warn!(error = %e, "blob garbage collection failed"),
                Err(e) => tracing::warn!(error = %e, "blob garbage collection panicked"),
            }
        }
    }

    /// Deletes the blobs nobody holds whose grace period has passed at `now_ms`; returns how
    /// many. Metadata goes first (durably), then the files.
    pub fn gc_now(&self, now_ms: u64) -> Result<usize, BlobError> {
        let grace = u64::try_from(self.inner.limits.gc_grace.as_millis()).unwrap_or(u64::MAX);
        let mut state = lock(&self.inner.state);
        let mut doomed = Vec::new();
        for entry in self.inner.tree.scan_prefix(&[]) {
            let (key, value) = entry?;
            let (Ok(hash), Some(meta)) = (<Hash>::try_from(key.as_slice()), Meta::decode(&value))
            else {
                continue;
            };
            if let Some(since) = meta.unheld_since()
                && since.saturating_add(grace) <= now_ms
            {
                doomed.push((hash, meta));
            }
        }
        for (hash, meta) in &doomed {
            self.inner.tree.remove(hash)?;
            if meta.visibility == Visibility::Public {
                self.inner.net.unprovide(provider_key(hash));
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        self.inner.tree.flush()?;
        for (hash, meta) in &doomed {
            state.used = state.used.saturating_sub(meta.size);
            if let Err(e) = self.inner.dir.remove(hash) {
                tracing::warn!(hash = %hex::encode(hash), error = %e, "cannot remove blob files");
            }
        }
        Ok(doomed.len())
    }

    fn meta(&self, hash: &Hash) -> Option<Meta> {
        self.inner
            .tree
            .get(hash)
            .ok()
            .flatten()
            .and_then(|v| Meta::decode(&v))
    }

    fn put_meta(&self, hash: &Hash, meta: &Meta) -> Result<(), BlobError> {
        self.inner.tree.insert_durable(hash, &meta.encode())?;
        Ok(())
    }

    /// Stores `bytes` under their hash (data and outboard fsynced, then metadata durable) and
    /// returns the hash. If the blob is present nothing is written and the visibilities are
    /// merged. Refuses blobs over `max_package`, and beyond the quota after collecting garbage.
    pub async fn add(&self, bytes: Vec<u8>, visibility: Visibility) -> Result<Hash, BlobError> {
        let size = bytes.len() as u64;
        if size > self.inner.limits.max_package {
            return Err(BlobError::TooLarge {
                size,
                max: self.inner.limits.max_package,
            });
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.add_blocking(&bytes, &visibility))
            .await
            .map_err(|_| BlobError::Stopped)?
    }

    fn add_blocking(&self, bytes: &[u8], visibility: &Visibility) -> Result<Hash, BlobError> {
        let hash: Hash = *blake3::hash(bytes).as_bytes();
        if self.merge_existing(&hash, visibility)? {
            return Ok(hash);
        }
        let size = bytes.len() as u64;
        let reservation = self.reserve(size)?;
        let tag = self.tag();
        self.inner
            .dir
            .write(&hash, bytes, &tag)
            .map_err(BlobError::io("writing a blob"))?;
        self.commit(&hash, size, visibility, &reservation)?;
        Ok(hash)
    }

    /// Merges `visibility` into a present blob's; whether it was present.
    fn merge_existing(&self, hash: &Hash, visibility: &Visibility) -> Result<bool, BlobError> {
        let _state = lock(&self.inner.state);
        let Some(mut meta) = self.meta(hash) else {
            return Ok(false);
        };
        let merged = meta.visibility.merge(visibility);
        if merged != meta.visibility {
            let newly_public = merged == Visibility::Public;
            meta.visibility = merged;
            self.put_meta(hash, &meta)?;
            if newly_public {
                self.inner.net.provide(provider_key(hash));
            }
        }
        Ok(true)
    }

    /// Records a blob whose files are in place; if another write got there first, merges
    /// visibilities instead. Announces a public blob.
    fn commit(
        &self,
        hash: &Hash,
        size: u64,
        visibility: &Visibility,
        reservation: &Reservation,
    ) -> Result<(), BlobError> {
        let mut state = lock(&self.inner.state);
        let existing = self.meta(hash);
        let new = existing.is_none();
        let meta = match existing {
            Some(mut meta) => {
                meta.visibility = meta.visibility.merge(visibility);
                meta
            }
            None => Meta {
                size,
                visibility: visibility.clone(),
                holds: Vec::new(),
                added_ms: now_ms(),
                released_ms: 0,
            },
        };
        // Under the lock, so that two writers of one blob count it once.
        self.put_meta(hash, &meta)?;
        if new {
            state.used = state.used.saturating_add(size);
        }
        state.reserved = state.reserved.saturating_sub(reservation.take());
        drop(state);
        if meta.visibility == Visibility::Public {
            self.inner.net.provide(provider_key(hash));
        }
        Ok(())
    }

    /// Promises `size` bytes of the quota, collecting garbage first if they do not fit.
    fn reserve(&self, size: u64) -> Result<Reservation, BlobError> {
        let quota = self.inner.limits.quota;
        let fits = |s: &State| s.used.saturating_add(s.reserved).saturating_add(size) <= quota;
        if !fits(&lock(&self.inner.state)) {
            self.gc_now(now_ms())?;
        }
        let mut state = lock(&self.inner.state);
        if !fits(&state) {
            return Err(BlobError::Quota {
                size,
                used: state.used.saturating_add(state.reserved),
                quota,
            });
        }
        state.reserved = state.reserved.saturating_add(size);
        Ok(Reservation {
            blobs: self.clone(),
            size: AtomicU64::new(size),
        })
    }

    fn tag(&self) -> String {
        let n = self.inner.next_tag.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", std::process::id())
    }

    /// Whether the blob is stored here.
    pub fn has(&self, hash: &Hash) -> bool {
        self.meta(hash).is_some()
    }

    /// What is known of a stored blob.
    pub fn info(&self, hash: &Hash) -> Option<BlobInfo> {
        self.meta(hash).map(|m| info_of(*hash, m))
    }

    /// Every stored blob, in hash order.
    pub fn list(&self) -> Vec<BlobInfo> {
        self.inner
            .tree
            .scan_prefix(&[])
            .filter_map(Result::ok)
            .filter_map(|(k, v)| {
                Some(info_of(
                    <Hash>::try_from(k.as_slice()).ok()?,
                    Meta::decode(&v)?,
                ))
            })
            .collect()
    }

    /// Reads a whole blob, checking its hash: disk corruption is an error, never data.
    pub async fn read(&self, hash: &Hash) -> Result<Vec<u8>, BlobError> {
        if !self.has(hash) {
            return Err(not_found(hash));
        }
        let this = self.clone();
        let h = *hash;
        let read = tokio::task::spawn_blocking(move || this.inner.dir.read(&h))
            .await
            .map_err(|_| BlobError::Stopped)?;
        match read {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(BlobError::DiskCorrupt {
                hash: hex::encode(hash),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found(hash)),
            Err(e) => Err(BlobError::io("reading a blob")(e)),
        }
    }

    /// Changes a stored blob's metadata under the lock, durably.
    fn update(&self, hash: &Hash, change: impl FnOnce(&mut Meta)) -> Result<Meta, BlobError> {
        self.update_with(hash, true, change)
    }

    /// As [`Blobs::update`]; `durable: false` leaves the write to the store's next periodic
    /// flush (within half a second) instead of flushing now.
    fn update_with(
        &self,
        hash: &Hash,
        durable: bool,
        change: impl FnOnce(&mut Meta),
    ) -> Result<Meta, BlobError> {
        let _state = lock(&self.inner.state);
        let mut meta = self.meta(hash).ok_or_else(|| not_found(hash))?;
        let before = meta.clone();
        change(&mut meta);
        if meta != before {
            if durable {
                self.put_meta(hash, &meta)?;
            } else {
                self.inner.tree.insert(hash, &meta.encode())?;
            }
        }
        Ok(meta)
    }

    /// Adds a GC root (e.g. `pin`, `dep:<deployment id>`), durably. Idempotent.
    pub fn hold(&self, hash: &Hash, holder: &str) -> Result<(), BlobError> {
        self.hold_with(hash, holder, true)
    }

    /// Adds a GC root written with the store's next periodic flush, not flushed now: for
    /// holders that are restored at start-up anyway (a deployment's, from its record) or that
    /// do not outlive the process (a deploy under way). A crash loses at most the last half
    /// second of them, and the grace period covers that.
    pub fn hold_soon(&self, hash: &Hash, holder: &str) -> Result<(), BlobError> {
        self.hold_with(hash, holder, false)
    }

    fn hold_with(&self, hash: &Hash, holder: &str, durable: bool) -> Result<(), BlobError> {
        if holder.is_empty() || holder.len() > store::MAX_HOLDER_LEN {
            return Err(BlobError::BadInput(format!(
                "a holder name is 1 to {} bytes",
                store::MAX_HOLDER_LEN
            )));
        }
        let mut full = false;
        self.update_with(hash, durable, |m| {
            if !m.holds.iter().any(|h| h == holder) {
                if m.holds.len() >= store::MAX_HOLDS {
                    full = true;
                } else {
                    m.holds.push(holder.to_owned());
                }
            }
        })?;
        if full {
            return Err(BlobError::BadInput(format!(
                "blob {} already has {} holds; release some first",
                hex::encode(hash),
                store::MAX_HOLDS
            )));
        }
        Ok(())
    }

    /// Removes a GC root; the grace period starts when the last one goes. Idempotent. Not
    /// flushed at once (the store's periodic flush writes it): a release lost in a crash only
    /// keeps the blob longer.
    pub fn release(&self, hash: &Hash, holder: &str) -> Result<(), BlobError> {
        self.update_with(hash, false, |m| {
            let before = m.holds.len();
            m.holds.retain(|h| h != holder);
            if m.holds.is_empty() && before > 0 {
                m.released_ms = now_ms();
            }
        })?;
        Ok(())
    }

    /// Makes a stored blob public and announces it.
    pub fn publicize(&self, hash: &Hash) -> Result<(), BlobError> {
        self.update(hash, |m| m.visibility = Visibility::Public)?;
        self.inner.net.provide(provider_key(hash));
        Ok(())
    }

    /// Lets `peer` fetch a private blob from this node (a public one already may).
    pub fn allow(&self, hash: &Hash, peer: &PeerId) -> Result<(), BlobError> {
        let mut full = false;
        self.update(hash, |m| {
            if let Visibility::Private { peers } = &mut m.visibility {
                let p = peer.to_string();
                if !peers.contains(&p) {
                    if peers.len() >= store::MAX_PRIVATE_PEERS {
                        full = true;
                    } else {
                        peers.push(p);
                    }
                }
            }
        })?;
        if full {
            return Err(BlobError::BadInput(format!(
                "a private blob is shared with at most {} peers",
                store::MAX_PRIVATE_PEERS
            )));
        }
        Ok(())
    }

    /// Fetches a blob unless it is present (then no bytes move and `visibility` is merged).
    /// Concurrent fetches of one hash share one transfer; see the module docs for how providers are
    /// found, used and verified. Progress (bytes done, total) goes to `progress`.
    // `visibility` by value: the signature callers code against.
    #[allow(clippy::needless_pass_by_value)]
    pub async fn fetch(
        &self,
        hash: Hash,
        size: Option<u64>,
        hints: Vec<PeerId>,
        visibility: Visibility,
        progress: Option<watch::Sender<(u64, u64)>>,
    ) -> Result<Fetched, BlobError> {
        if let Some(meta) = self.meta(&hash) {
            self.merge_existing(&hash, &visibility)?;
            self.count_fetch("cached");
            if let Some(p) = &progress {
                let _ = p.send((meta.size, meta.size));
            }
            return Ok(Fetched {
                hash,
                size: meta.size,
                bytes_moved: 0,
                providers: Vec::new(),
                bad_providers: Vec::new(),
                cached: true,
            });
        }
        let running = {
            let mut fetches = lock(&self.inner.fetches);
            match fetches.get(&hash) {
                Some(r) => r.clone(),
                None => {
                    if fetches.len() >= MAX_FETCHES {
                        return Err(BlobError::Busy);
                    }
                    let (progress_tx, progress_rx) = watch::channel((0, size.unwrap_or(0)));
                    let (done_tx, done_rx) = watch::channel(None);
                    let running = Running {
                        progress: progress_rx,
                        done: done_rx,
                    };
                    fetches.insert(hash, running.clone());
                    let this = self.clone();
                    let job = fetch::Job {
                        hash,
                        size,
                        hints,
                        visibility: visibility.clone(),
                    };
                    tokio::spawn(async move {
                        // Forgets the fetch however the task ends (a panic included), so
                        // that a later call starts afresh instead of joining a dead one.
                        let forget = Forget(this.clone(), hash);
                        let result = fetch::transfer(&this, job, &progress_tx).await;
                        match &result {
                            Ok(_) => this.count_fetch("fetched"),
                            Err(e) => this.count_fetch(e.outcome()),
                        }
                        drop(forget);
                        let _ = done_tx.send(Some(result));
                    });
                    running
                }
            }
        };
        let Running {
            progress: mut progress_rx,
            mut done,
        } = running;
        loop {
            if let Some(result) = done.borrow_and_update().clone() {
                let fetched = result?;
                // A caller that joined a running transfer brings its own visibility.
                self.merge_existing(&hash, &visibility)?;
                if let Some(p) = &progress {
                    let _ = p.send((fetched.size, fetched.size));
                }
                return Ok(fetched);
            }
            tokio::select! {
                changed = done.changed() => {
                    if changed.is_err() && done.borrow().is_none() {
                        return Err(BlobError::Stopped);
                    }
                }
                changed = progress_rx.changed(), if progress.is_some() => {
                    if changed.is_ok()
                        && let Some(p) = &progress
                    {
                        let _ = p.send(*progress_rx.borrow_and_update());
                    }
                }
            }
        }
    }

    /// Progress of a running fetch of `hash` (bytes done, total), if any.
    pub fn progress(&self, hash: &Hash) -> Option<(u64, u64)> {
        lock(&self.inner.fetches)
            .get(hash)
            .map(|r| *r.progress.borrow())
    }

    fn count_fetch(&self, outcome: &'static str) {
        self.inner
            .metrics
            .blob_fetches
            .get_or_create(&BlobFetchLabels { outcome })
            .inc();
    }

    /// Sorts `peer` last in provider lists for [`PENALTY`].
    fn penalise(&self, peer: PeerId) {
        let now = tokio::time::Instant::now();
        let mut p = lock(&self.inner.penalties);
        p.retain(|_, until| *until > now);
        if p.len() >= MAX_PENALTIES
            && let Some(oldest) = p.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k)
        {
            p.remove(&oldest);
        }
        p.insert(peer, now + PENALTY);
        self.inner.metrics.blob_providers_penalised.inc();
    }

    fn is_penalised(&self, peer: &PeerId) -> bool {
        lock(&self.inner.penalties)
            .get(peer)
            .is_some_and(|until| *until > tokio::time::Instant::now())
    }

    /// Test hook: make this node corrupt every `Data` reply it sends.
    #[cfg(test)]
    pub(crate) fn set_corrupt_replies(&self, on: bool) {
        self.inner.corrupt_replies.store(on, Ordering::Relaxed);
    }
}

use store::Meta;

fn info_of(hash: Hash, m: Meta) -> BlobInfo {
    BlobInfo {
        hash,
        size: m.size,
        visibility: m.visibility,
        holds: m.holds,
        added_ms: m.added_ms,
    }
}

fn not_found(hash: &Hash) -> BlobError {
    BlobError::NotFound {
        hash: hex::encode(hash),
    }
}

/// Removes a fetch from the running ones when dropped.
struct Forget(Blobs, Hash);

impl Drop for Forget {
    fn drop(&mut self) {
        lock(&self.0.inner.fetches).remove(&self.1);
    }
}

/// Bytes of the quota promised to a write or download; given back when dropped unless taken.
struct Reservation {
    blobs: Blobs,
    size: AtomicU64,
}

impl Reservation {
    /// The size, leaving nothing to give back.
    fn take(&self) -> u64 {
        self.size.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let size = self.take();
        if size > 0 {
            let mut state = lock(&self.blobs.inner.state);
            state.reserved = state.reserved.saturating_sub(size);
        }
    }
}

#[cfg(test)]
mod tests;
