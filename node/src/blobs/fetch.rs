//! Fetching a blob from several providers, every chunk group verified before it is written.
//!
//! 1. **Providers**: the caller's hints first, then those a Kademlia lookup returns (started at
//!    once, in the background, for at most [`KAD_TIMEOUT`]); never this node. Providers
//!    penalised recently (for bad data, in any fetch) are sorted last.
//! 2. **Size**: if the caller gave none, a provider is asked (`Size`). Either way the first
//!    provider that answers is asked for the *last* chunk group, and that group is verified
//!    against the hash under the tree of that size: a BLAKE3 tree commits to its length, so
//!    a verified last group proves the size (a wrong one fails verification). Only then are
//!    `max_package` and the quota checked, and the `.part` file created at its full length.
//! 3. **Transfer**: the remaining groups are cut into ranges of
//!    [`MAX_GROUPS_PER_REQUEST`] (1 MiB) and handed out to up to [`PARALLEL_PROVIDERS`]
//!    providers, [`IN_FLIGHT_PER_PROVIDER`] requests each. Every response is decoded with
//!    bao-tree's `DecodeResponseIter` against the root (the hash): each leaf (one chunk group)
//!    is written at its offset only after its hash checked out up to the root, so bad bytes
//!    never reach the file ([`verify_response`]). A provider whose data fails verification is
//!    dropped for this fetch, counted in `degroup_blob_bad_chunks_total`, and penalised; one
//!    that fails (error, refusal, timeout, gone) has its range re-queued for the others and
//!    is dropped after [`MAX_FAILURES`] failures in a row. When the active providers are used
//!    up, the next candidates (and the lookup's results) take over.
//! 4. **Completion**: the part file is fsynced, the outboard computed from it and the root
//!    re-checked, both renamed into place, the metadata made durable, and a public blob
//!    announced.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bao_tree::BaoTree;
use bao_tree::io::BaoContentItem;
use bao_tree::io::sync::DecodeResponseIter;
use libp2p::PeerId;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::store::{BLOCK, group_ranges, groups_of};
use super::wire::MAX_GROUPS_PER_REQUEST;
use super::{
    BlobError, BlobProtocol, BlobRefusal, BlobReply, BlobRequest, Blobs, CHUNK_GROUP, Hash,
    Visibility, provider_key,
};
use crate::net::{NetError, RequestError};

/// How long the Kademlia lookup for providers may take.
pub(super) const KAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Most providers pulled from at once.
pub(super) const PARALLEL_PROVIDERS: usize = 3;
/// Requests in flight per provider.
pub(super) const IN_FLIGHT_PER_PROVIDER: u32 = 2;
/// Failures in a row after which a provider is dropped for this fetch.
pub(super) const MAX_FAILURES: u32 = 3;
/// Most candidate providers considered for one fetch.
const MAX_CANDIDATES: usize = 64;
/// Pause after a provider answered `Busy`, before its slot is used again.
const BUSY_BACKOFF: Duration = Duration::from_millis(300);

/// The outcome of a fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fetched {
    #[serde(serialize_with = "super::hex_hash")]
    pub hash: Hash,
    pub size: u64,
    /// Bytes received from providers (0 when the blob was already here).
    pub bytes_moved: u64,
    /// Providers that delivered verified data.
    pub providers: Vec<String>,
    /// Providers dropped for data that failed verification.
    pub bad_providers: Vec<String>,
    /// Whether the blob was already present.
    pub cached: bool,
}

/// What to fetch.
#[derive(Debug)]
pub(super) struct Job {
    pub hash: Hash,
    pub size: Option<u64>,
    pub hints: Vec<PeerId>,
    pub visibility: Visibility,
}

/// Groups that verified (and were written), and why decoding stopped early, if it did.
#[derive(Debug)]
pub(super) struct Verified {
    pub groups: Vec<u64>,
    pub error: Option<VerifyError>,
}

/// Why a response was not wholly accepted.
#[derive(Debug)]
pub(super) enum VerifyError {
    /// The provider's data does not verify (or is truncated, or has bytes left over).
    Bad(String),
    /// Writing a verified group here failed.
    Local(std::io::Error),
}

/// Decodes a response for groups `first .. first + count` of the blob `hash` of `size`
/// bytes, verifying every chunk group up to the root before passing it to `sink` (offset,
/// bytes). A group that fails verification, and everything after it, is never passed on.
pub(super) fn verify_response(
    hash: &Hash,
    size: u64,
    first: u64,
    count: u64,
    encoded: &[u8],
    mut sink: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> Verified {
    let ranges = group_ranges(first, count);
    let tree = BaoTree::new(size, BLOCK);
    let mut reader = std::io::Cursor::new(encoded);
    let mut groups = Vec::new();
    let root = blake3::Hash::from_bytes(*hash);
    for item in DecodeResponseIter::new(root, tree, &mut reader, &ranges) {
        match item {
            Ok(BaoContentItem::Leaf(leaf)) => {
                if let Err(e) = sink(leaf.offset, &leaf.data) {
                    return Verified {
                        groups,
                        error: Some(VerifyError::Local(e)),
                    };
                }
                groups.push(leaf.offset / CHUNK_GROUP as u64);
            }
            Ok(BaoContentItem::Parent(_)) => {}
            Err(e) => {
                return Verified {
                    groups,
                    error: Some(VerifyError::Bad(e.to_string())),
                };
            }
        }
    }
    let error = (reader.position() != encoded.len() as u64)
        .then(|| VerifyError::Bad("bytes left over after the response".into()));
    Verified { groups, error }
}

/// How one request to a provider went.
#[derive(Debug)]
enum Outcome {
    /// Every group verified and was written.
    Ok { groups: Vec<u64>, moved: u64 },
    /// Data failed verification (the groups before the bad one were written).
    Bad {
        groups: Vec<u64>,
        moved: u64,
        reason: String,
    },
    /// No usable answer; `fatal` drops the provider at once.
    Failed { reason: String, fatal: bool },
    /// Writing here failed: the fetch stops.
    Local(std::io::Error),
}

/// The candidates of one fetch, in the order they will be tried.
struct Pool {
    local: PeerId,
    queue: VecDeque<PeerId>,
    seen: HashSet<PeerId>,
}

impl Pool {
    fn add(&mut self, blobs: &Blobs, peers: impl IntoIterator<Item = PeerId>) {
        let mut fresh: Vec<PeerId> = Vec::new();
        for p in peers {
            if p != self.local && self.seen.len() < MAX_CANDIDATES && self.seen.insert(p) {
                fresh.push(p);
            }
        }
        // Stable: hints keep their order; the penalised go last.
        fresh.sort_by_key(|p| blobs.is_penalised(p));
        self.queue.extend(fresh);
    }

    fn pop(&mut self) -> Option<PeerId> {
        self.queue.pop_front()
    }
}

/// Who did what in one fetch.
#[derive(Default)]
struct Tally {
    used: Vec<PeerId>,
    bad: Vec<PeerId>,
    failed: Vec<(PeerId, String)>,
}

impl Tally {
    /// The error once no provider is left.
    fn exhausted(&self, hash: &Hash) -> BlobError {
        let hash = hex::encode(hash);
        if !self.bad.is_empty() && self.failed.is_empty() {
            return BlobError::Corrupt {
                hash,
                bad: self.bad.iter().map(ToString::to_string).collect(),
            };
        }
        let mut tried: Vec<String> = self
            .failed
            .iter()
            .map(|(p, why)| format!("{p}: {why}"))
            .collect();
        tried.extend(
            self.bad
                .iter()
                .map(|p| format!("{p}: sent data failing verification")),
        );
        BlobError::NoProvider { hash, tried }
    }

    fn bad(&mut self, blobs: &Blobs, peer: PeerId, reason: &str) {
        tracing::warn!(%peer, reason, "blob provider sent data that fails verification; dropped");
        blobs.inner.metrics.blob_bad_chunks.inc();
        blobs.penalise(peer);
        if !self.bad.contains(&peer) {
            self.bad.push(peer);
        }
    }
}

fn refusal(code: BlobRefusal, message: &str) -> Outcome {
    Outcome::Failed {
        reason: format!(
            "refused ({code:?}): {}",
            message.chars().take(200).collect::<String>()
        ),
        fatal: code != BlobRefusal::Busy,
    }
}

fn request_failed(e: &RequestError) -> Outcome {
    Outcome::Failed {
        reason: e.to_string(),
        fatal: matches!(e, RequestError::Unreachable(_) | RequestError::Stopped),
    }
}

/// Runs one fetch to its end.
pub(super) async fn transfer(
    blobs: &Blobs,
    job: Job,
    progress: &watch::Sender<(u64, u64)>,
) -> Result<Fetched, BlobError> {
    let Job {
        hash,
        size,
        hints,
        visibility,
    } = job;
    let max = blobs.inner.limits.max_package;
    if let Some(size) = size
        && size > max
    {
        return Err(BlobError::TooLarge { size, max });
    }
    if hash == *blake3::hash(&[]).as_bytes() {
        // Nothing to move: the empty blob is known by its hash alone.
        blobs.add(Vec::new(), visibility).await?;
        return Ok(Fetched {
            hash,
            size: 0,
            bytes_moved: 0,
            providers: Vec::new(),
            bad_providers: Vec::new(),
            cached: false,
        });
    }
    let net = blobs.inner.net.clone();
    let mut pool = Pool {
        local: net.local_peer_id(),
        queue: VecDeque::new(),
        seen: HashSet::new(),
    };
    pool.add(blobs, hints);
    let key = provider_key(&hash);
    let lookup = net.clone();
    let mut kad: Option<Lookup> = Some(tokio::spawn(async move {
        lookup.providers(key, KAD_TIMEOUT).await
    }));
    let mut tally = Tally::default();
    let result = run(
        blobs,
        (hash, size, visibility),
        &mut pool,
        &mut kad,
        &mut tally,
        progress,
    )
    .await;
    if let Some(k) = kad {
        k.abort();
    }
    let (size, moved) = result?;
    Ok(Fetched {
        hash,
        size,
        bytes_moved: moved,
        providers: tally.used.iter().map(ToString::to_string).collect(),
        bad_providers: tally.bad.iter().map(ToString::to_string).collect(),
        cached: false,
    })
}

type Lookup = JoinHandle<Result<Vec<PeerId>, NetError>>;

/// Waits for the lookup's results and adds them to the pool, once.
async fn take_lookup(blobs: &Blobs, pool: &mut Pool, kad: &mut Option<Lookup>) {
    if let Some(k) = kad.take() {
        add_lookup(blobs, pool, k.await);
    }
}

/// The lookup's end, without taking it (a `select!` branch that loses keeps it running).
async fn lookup_done(
    kad: &mut Option<Lookup>,
) -> Result<Result<Vec<PeerId>, NetError>, tokio::task::JoinError> {
    match kad.as_mut() {
        Some(k) => k.await,
        None => std::future::pending().await,
    }
}

fn add_lookup(
    blobs: &Blobs,
    pool: &mut Pool,
    result: Result<Result<Vec<PeerId>, NetError>, tokio::task::JoinError>,
) {
    match result {
        Ok(Ok(peers)) => {
            tracing::debug!(found = peers.len(), "blob providers found in the DHT");
            pool.add(blobs, peers);
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "provider lookup failed"),
        Err(_) => {}
    }
}

/// Removes a `.part` file unless it was renamed into place.
struct PartFile(PathBuf);

impl Drop for PartFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The probe, the transfer and the commit; returns the size and the bytes moved.
async fn run(
    blobs: &Blobs,
    (hash, size, visibility): (Hash, Option<u64>, Visibility),
    pool: &mut Pool,
    kad: &mut Option<Lookup>,
    tally: &mut Tally,
    progress: &watch::Sender<(u64, u64)>,
) -> Result<(u64, u64), BlobError> {
    // Size and the last group, from the first provider that proves them.
    let (first_peer, size, last_bytes, probe_moved) = loop {
        let Some(peer) = pool.pop() else {
            if kad.is_some() {
                take_lookup(blobs, pool, kad).await;
                continue;
            }
            return Err(tally.exhausted(&hash));
        };
        match probe(blobs, peer, &hash, size).await {
            Ok((size, bytes, moved)) => break (peer, size, bytes, moved),
            Err(Outcome::Bad { reason, .. }) => tally.bad(blobs, peer, &reason),
            Err(Outcome::Failed { reason, .. }) => {
                tracing::debug!(%peer, reason, "blob provider failed");
                tally.failed.push((peer, reason));
            }
            Err(Outcome::Local(e)) => return Err(BlobError::io("fetching a blob")(e)),
            Err(Outcome::Ok { .. }) => {}
        }
    };
    let max = blobs.inner.limits.max_package;
    if size > max {
        return Err(BlobError::TooLarge { size, max });
    }
    let this = blobs.clone();
    let reservation = tokio::task::spawn_blocking(move || this.reserve(size))
        .await
        .map_err(|_| BlobError::Stopped)??;
    let tag = blobs.tag();
    let part = PartFile(blobs.inner.dir.part(&hash, &tag));
    let file = Arc::new(
        blobs
            .inner
            .dir
            .create_part(&hash, &tag, size)
            .map_err(BlobError::io("creating a download file"))?,
    );
    let total = groups_of(size);
    let last = total.saturating_sub(1);
    file.write_all_at(&last_bytes, last * CHUNK_GROUP as u64)
        .map_err(BlobError::io("writing a download file"))?;
    let group_len = |g: u64| (size - g * CHUNK_GROUP as u64).min(CHUNK_GROUP as u64);
    let mut done = vec![false; usize::try_from(total).unwrap_or(0)];
    let mut remaining = total;
    let mut done_bytes = 0u64;
    let mut mark = |g: u64, done: &mut Vec<bool>, remaining: &mut u64| {
        if let Some(d) = done.get_mut(usize::try_from(g).unwrap_or(usize::MAX))
            && !*d
        {
            *d = true;
            *remaining -= 1;
            done_bytes += group_len(g);
            blobs.inner.metrics.blob_bytes_fetched.inc_by(group_len(g));
            return Some(done_bytes);
        }
        None
    };
    mark(last, &mut done, &mut remaining);
    tally.used.push(first_peer);
    let _ = progress.send((group_len(last), size));
    let mut moved = probe_moved;

    let step = u64::from(MAX_GROUPS_PER_REQUEST);
    let mut queue: VecDeque<(u64, u64)> = (0..last.div_ceil(step))
        .map(|i| (i * step, step.min(last - i * step)))
        .collect();
    let mut active: HashMap<PeerId, (u32, u32)> = HashMap::new(); // (in flight, failures)
    let mut order: Vec<PeerId> = Vec::new();
    active.insert(first_peer, (0, 0));
    order.push(first_peer);
    let mut tasks: JoinSet<(PeerId, u64, u64, Outcome)> = JoinSet::new();

    while remaining > 0 {
        while active.len() < PARALLEL_PROVIDERS {
            let Some(p) = pool.pop() else { break };
            active.insert(p, (0, 0));
            order.push(p);
        }
        order.retain(|p| active.contains_key(p));
        for peer in &order {
            let Some(slot) = active.get_mut(peer) else {
                continue;
            };
            while slot.0 < IN_FLIGHT_PER_PROVIDER {
                let Some((first, count)) = queue.pop_front() else {
                    break;
                };
                let all_done = (first..first + count)
                    .all(|g| done.get(usize::try_from(g).unwrap_or(usize::MAX)) == Some(&true));
                if all_done {
                    continue;
                }
                slot.0 += 1;
                tasks.spawn(pull(
                    blobs.clone(),
                    file.clone(),
                    *peer,
                    hash,
                    size,
                    first,
                    count,
                ));
            }
        }
        if tasks.is_empty() && active.is_empty() && kad.is_none() {
            return Err(tally.exhausted(&hash));
        }
        tokio::select! {
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((peer, first, count, outcome)) = joined else { continue };
                if let Some(slot) = active.get_mut(&peer) {
                    slot.0 = slot.0.saturating_sub(1);
                }
                let verified: &[u64] = match &outcome {
                    Outcome::Ok { groups, .. } | Outcome::Bad { groups, .. } => groups,
                    _ => &[],
                };
                let mut newest = None;
                for g in verified {
                    newest = mark(*g, &mut done, &mut remaining).or(newest);
                }
                if let Some(bytes) = newest {
                    let _ = progress.send((bytes, size));
                }
                match outcome {
                    Outcome::Ok { moved: m, .. } => {
                        moved += m;
                        if let Some(slot) = active.get_mut(&peer) {
                            slot.1 = 0;
                        }
                        if !tally.used.contains(&peer) {
                            tally.used.push(peer);
                        }
                    }
                    Outcome::Bad { moved: m, reason, .. } => {
                        moved += m;
                        active.remove(&peer);
                        tally.bad(blobs, peer, &reason);
                    }
                    Outcome::Failed { reason, fatal } => {
                        tracing::debug!(%peer, reason, "blob range request failed; re-queued");
                        let drop_it = match active.get_mut(&peer) {
                            Some(slot) => {
                                slot.1 += 1;
                                fatal || slot.1 >= MAX_FAILURES
                            }
                            None => false,
                        };
                        if drop_it {
                            active.remove(&peer);
                            tally.failed.push((peer, reason));
                        }
                    }
                    Outcome::Local(e) => return Err(BlobError::io("writing a download file")(e)),
                }
                requeue(&mut queue, &done, first, count);
            }
            result = lookup_done(kad), if kad.is_some() => {
                *kad = None;
                add_lookup(blobs, pool, result);
            }
            else => return Err(tally.exhausted(&hash)),
        }
    }
    // Stragglers of already-done ranges carry verified bytes only; stop them.
    tasks.shutdown().await;
    let this = blobs.clone();
    let part_path = part.0.clone();
    let finished = tokio::task::spawn_blocking(move || {
        file.sync_all()?;
        drop(file);
        this.inner.dir.finish(&hash, &part_path, &tag)
    })
    .await
    .map_err(|_| BlobError::Stopped)?;
    finished.map_err(BlobError::io("completing a download"))?;
    let this = blobs.clone();
    tokio::task::spawn_blocking(move || this.commit(&hash, size, &visibility, &reservation))
        .await
        .map_err(|_| BlobError::Stopped)??;
    Ok((size, moved))
}

/// Puts back the groups of `first .. first + count` not yet done, as runs, first in line.
fn requeue(queue: &mut VecDeque<(u64, u64)>, done: &[bool], first: u64, count: u64) {
    let is_done = |g: u64| done.get(usize::try_from(g).unwrap_or(usize::MAX)) == Some(&true);
    let mut runs = Vec::new();
    let mut start = None;
    for g in first..first + count {
        match (is_done(g), start) {
            (false, None) => start = Some(g),
            (true, Some(s)) => {
                runs.push((s, g - s));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, first + count - s));
    }
    for run in runs.into_iter().rev() {
        queue.push_front(run);
    }
}

/// Asks `peer` for the size (unless known) and the last chunk group, and verifies that
/// group: the size is then proven. Returns the size, the last group's bytes and the bytes
/// received.
async fn probe(
    blobs: &Blobs,
    peer: PeerId,
    hash: &Hash,
    size: Option<u64>,
) -> Result<(u64, Vec<u8>, u64), Outcome> {
    let net = &blobs.inner.net;
    let given = size.is_some();
    let size = match size {
        Some(s) => s,
        None => match net
            .request::<BlobProtocol>(peer, BlobRequest::Size { hash: *hash })
            .await
        {
            Ok(BlobReply::Size(s)) => s,
            Ok(BlobReply::Refused { code, message }) => return Err(refusal(code, &message)),
            Ok(BlobReply::Data(_)) => {
                return Err(Outcome::Failed {
                    reason: "answered a size request with data".into(),
                    fatal: true,
                });
            }
            Err(e) => return Err(request_failed(&e)),
        },
    };
    if size > blobs.inner.limits.max_package {
        // Checked before anything is asked of it: a provider's size is not trusted, but one
        // over the cap ends this provider's turn at once.
        return Err(Outcome::Failed {
            reason: format!(
                "says the blob is {size} bytes, over this node's cap of {} bytes",
                blobs.inner.limits.max_package
            ),
            fatal: true,
        });
    }
    if size == 0 {
        // Only the empty blob has size 0, and it is never asked for.
        return Err(Outcome::Bad {
            groups: Vec::new(),
            moved: 0,
            reason: "claims the blob is empty".into(),
        });
    }
    let last = groups_of(size) - 1;
    let request = BlobRequest::Get {
        hash: *hash,
        first_group: last,
        groups: 1,
    };
    let encoded = match net.request::<BlobProtocol>(peer, request).await {
        Ok(BlobReply::Data(d)) => d,
        Ok(BlobReply::Refused { code, message }) => return Err(refusal(code, &message)),
        Ok(BlobReply::Size(_)) => {
            return Err(Outcome::Failed {
                reason: "answered a data request with a size".into(),
                fatal: true,
            });
        }
        Err(e) => return Err(request_failed(&e)),
    };
    let moved = encoded.len() as u64;
    let mut bytes = Vec::new();
    let verified = verify_response(hash, size, last, 1, &encoded, |_, data| {
        bytes.extend_from_slice(data);
        Ok(())
    });
    match verified.error {
        None if verified.groups == [last] => Ok((size, bytes, moved)),
        None => Err(Outcome::Bad {
            groups: Vec::new(),
            moved,
            reason: "the response holds no data".into(),
        }),
        Some(VerifyError::Bad(reason)) => {
            if given {
                // Perhaps the caller's size is wrong, not the provider: ask before blaming.
                let ask = BlobRequest::Size { hash: *hash };
                if let Ok(BlobReply::Size(s)) = net.request::<BlobProtocol>(peer, ask).await
                    && s != size
                {
                    return Err(Outcome::Failed {
                        reason: format!("says the blob is {s} bytes, not the {size} given"),
                        fatal: true,
                    });
                }
            }
            Err(Outcome::Bad {
                groups: Vec::new(),
                moved,
                reason: format!("last chunk group under the size {size}: {reason}"),
            })
        }
        Some(VerifyError::Local(e)) => Err(Outcome::Local(e)),
    }
}

/// Asks `peer` for groups `first .. first + count` and writes those that verify.
async fn pull(
    blobs: Blobs,
    file: Arc<std::fs::File>,
    peer: PeerId,
    hash: Hash,
    size: u64,
    first: u64,
    count: u64,
) -> (PeerId, u64, u64, Outcome) {
    let request = BlobRequest::Get {
        hash,
        first_group: first,
        groups: u32::try_from(count).unwrap_or(MAX_GROUPS_PER_REQUEST),
    };
    let outcome = match blobs.inner.net.request::<BlobProtocol>(peer, request).await {
        Ok(BlobReply::Data(encoded)) => {
            let moved = encoded.len() as u64;
            let verified = tokio::task::spawn_blocking(move || {
                verify_response(&hash, size, first, count, &encoded, |offset, data| {
                    file.write_all_at(data, offset)
                })
            })
            .await;
            match verified {
                Ok(Verified {
                    groups,
                    error: None,
                }) => Outcome::Ok { groups, moved },
                Ok(Verified {
                    groups,
                    error: Some(VerifyError::Bad(reason)),
                }) => Outcome::Bad {
                    groups,
                    moved,
                    reason,
                },
                Ok(Verified {
                    error: Some(VerifyError::Local(e)),
                    ..
                }) => Outcome::Local(e),
                Err(_) => Outcome::Failed {
                    reason: "verification task failed".into(),
                    fatal: false,
                },
            }
        }
        Ok(BlobReply::Refused { code, message }) => {
            if code == BlobRefusal::Busy {
                tokio::time::sleep(BUSY_BACKOFF).await;
            }
            refusal(code, &message)
        }
        Ok(BlobReply::Size(_)) => Outcome::Failed {
            reason: "answered a data request with a size".into(),
            fatal: true,
        },
        Err(e) => request_failed(&e),
    };
    (peer, first, count, outcome)
}
