//! The serving side of `/degroup/blob/1`, with per-peer limits.
//!
//! Who may fetch: a public blob anyone, a private one only the peers listed in its
//! [`super::Visibility`]; others are answered `NotFound`, as for a blob not held, so that they
//! do not learn it is here (`Forbidden` stays in the wire format, unused).
//!
//! Per peer, at most `per_peer_transfers` requests are answered at once (more are answered
//! `Busy` at once), and the bytes sent pass a token bucket of `per_peer_rate` bytes per second
//! (bursts of one second, or of two replies if that is more): a reply waits for its tokens
//! up to [`MAX_RATE_WAIT`], beyond which it is answered `Busy`. The table of peers is bounded
//! ([`MAX_PEERS`]); idle entries are evicted to make room, and when every entry is busy a new
//! peer is answered `Busy`.
//!
//! Encoding reads the files on a blocking thread with `encode_ranges_validated`: a range that
//! does not verify against the hash (a corrupt disk) is refused, never sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::store::groups_of;
use super::wire::{MAX_GROUPS_PER_REQUEST, MAX_REPLY};
use super::{BlobProtocol, BlobRefusal, BlobReply, BlobRequest, Blobs, lock};
use crate::net::{Inbound, InboundRequest};

/// Most peers tracked at once.
pub(super) const MAX_PEERS: usize = 1024;
/// Longest a reply waits for its peer's byte tokens before being answered `Busy`.
pub(super) const MAX_RATE_WAIT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` or until the network stops.
pub(super) async fn run(
    blobs: Blobs,
    mut inbound: Inbound<BlobProtocol>,
    shutdown: CancellationToken,
) {
    let limits = blobs.limits().clone();
    let peers = Arc::new(Mutex::new(Peers::new(
        limits.per_peer_transfers,
        limits.per_peer_rate,
    )));
    let mut tasks = JoinSet::new();
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => break,
            r = inbound.recv() => match r {
                Some(r) => r,
                None => break,
            },
        };
        while tasks.try_join_next().is_some() {}
        let admitted = lock(&peers).admit(request.peer, Instant::now());
        if !admitted {
            request.reply.send(BlobReply::refused(
                BlobRefusal::Busy,
                "too many transfers to this peer at once; retry in a moment",
            ));
            continue;
        }
        let blobs = blobs.clone();
        let peers = peers.clone();
        tasks.spawn(async move {
            let peer = request.peer;
            answer(&blobs, request, &peers).await;
            lock(&peers).done(&peer);
        });
    }
    tasks.abort_all();
}

pub(super) async fn answer(
    blobs: &Blobs,
    request: InboundRequest<BlobProtocol>,
    peers: &Mutex<Peers>,
) {
    let InboundRequest {
        peer,
        request,
        reply,
    } = request;
    let (hash, get) = match request {
        BlobRequest::Size { hash } => (hash, None),
        BlobRequest::Get {
            hash,
            first_group,
            groups,
        } => (hash, Some((first_group, groups))),
    };
    let Some(meta) = blobs.meta(&hash) else {
        reply.send(BlobReply::refused(
            BlobRefusal::NotFound,
            "this node does not hold the blob",
        ));
        return;
    };
    if !meta.visibility.allows(&peer) {
        // The same answer as for a blob this node does not hold: a peer not allowed to fetch
        // a private blob does not learn that it is here.
        reply.send(BlobReply::refused(
            BlobRefusal::NotFound,
            "this node does not hold the blob",
        ));
        return;
    }
    let Some((first, groups)) = get else {
        reply.send(BlobReply::Size(meta.size));
        return;
    };
    let total = groups_of(meta.size);
    if groups == 0 || groups > MAX_GROUPS_PER_REQUEST || first >= total {
        reply.send(BlobReply::refused(
            BlobRefusal::Invalid,
            format!("ask for 1 to {MAX_GROUPS_PER_REQUEST} chunk groups within the blob's {total}"),
        ));
        return;
    }
    let count = u64::from(groups).min(total - first);
    let this = blobs.clone();
    let size = meta.size;
    let encoded =
        tokio::task::spawn_blocking(move || this.inner.dir.encode(&hash, size, first, count)).await;
    #[allow(unused_mut)]
    let mut data = match encoded {
        Ok(Ok(data)) => data,
        Ok(Err(e)) => {
            tracing::warn!(
                hash = %hex::encode(hash),
                error = %e,
                "a stored blob failed verification while being served (disk corruption?)"
            );
            reply.send(BlobReply::refused(
                BlobRefusal::NotFound,
                "the blob is unreadable on this node",
            ));
            return;
        }
        Err(_) => return,
    };
    #[cfg(any(test, feature = "test-faults"))]
    if blobs
        .inner
        .corrupt_replies
        .load(std::sync::atomic::Ordering::Relaxed)
        && let Some(last) = data.last_mut()
    {
        // The last byte of a response is always leaf data.
        *last ^= 0x01;
    }
    let wait = lock(peers).charge(&peer, data.len() as u64, Instant::now());
    match wait {
        Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
        Some(_) => {}
        None => {
            reply.send(BlobReply::refused(
                BlobRefusal::Busy,
                "this peer's transfer rate is used up; retry in a moment",
            ));
            return;
        }
    }
    if reply.is_closed() {
        return;
    }
    blobs
        .inner
        .metrics
        .blob_bytes_served
        .inc_by(data.len() as u64);
    reply.send(BlobReply::Data(data));
}

/// One peer's share.
#[derive(Debug)]
struct Slot {
    active: u32,
    /// Byte tokens; negative while replies wait for their turn.
    tokens: f64,
    refilled: Instant,
}

/// The per-peer table.
#[derive(Debug)]
pub(super) struct Peers {
    slots: HashMap<PeerId, Slot>,
    transfers: u32,
    /// Bytes per second.
    rate: f64,
    /// Bucket size.
    burst: f64,
}

impl Peers {
    pub(super) fn new(transfers: u32, rate: u64) -> Self {
        let rate = rate.max(1) as f64;
        Self {
            slots: HashMap::new(),
            transfers: transfers.max(1),
            rate,
            burst: rate.max(2.0 * MAX_REPLY as f64),
        }
    }

    fn refill(&self, slot: &mut Slot, now: Instant) {
        let dt = now.saturating_duration_since(slot.refilled).as_secs_f64();
        slot.tokens = (slot.tokens + dt * self.rate).min(self.burst);
        slot.refilled = now;
    }

    /// Takes a transfer slot for `peer`; false when it has too many or the table is full of
    /// busy peers.
    pub(super) fn admit(&mut self, peer: PeerId, now: Instant) -> bool {
        if !self.slots.contains_key(&peer) && self.slots.len() >= MAX_PEERS {
            let (rate, burst) = (self.rate, self.burst);
            self.slots.retain(|_, s| {
                let dt = now.saturating_duration_since(s.refilled).as_secs_f64();
                s.active > 0 || s.tokens + dt * rate < burst
            });
            if self.slots.len() >= MAX_PEERS {
                return false;
            }
        }
        let burst = self.burst;
        let slot = self.slots.entry(peer).or_insert(Slot {
            active: 0,
            tokens: burst,
            refilled: now,
        });
        if slot.active >= self.transfers {
            return false;
        }
        slot.active += 1;
        true
    }

    /// Gives back a transfer slot.
    pub(super) fn done(&mut self, peer: &PeerId) {
        if let Some(slot) = self.slots.get_mut(peer) {
            slot.active = slot.active.saturating_sub(1);
        }
    }

    /// Charges `bytes` to `peer`'s bucket: how long the reply must wait for them, or `None`
    /// (nothing charged) if that is over [`MAX_RATE_WAIT`].
    pub(super) fn charge(&mut self, peer: &PeerId, bytes: u64, now: Instant) -> Option<Duration> {
        let mut slot = self.slots.remove(peer)?;
        self.refill(&mut slot, now);
        let after = slot.tokens - bytes as f64;
        let wait = if after >= 0.0 {
            Some(Duration::ZERO)
        } else {
            let secs = -after / self.rate;
            (secs <= MAX_RATE_WAIT.as_secs_f64()).then(|| Duration::from_secs_f64(secs))
        };
        if wait.is_some() {
            slot.tokens = after;
        }
        self.slots.insert(*peer, slot);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_and_bytes_are_bounded_per_peer() {
        let now = Instant::now();
        let mut peers = Peers::new(2, 1 << 20);
        let a = PeerId::random();
        assert!(peers.admit(a, now));
        assert!(peers.admit(a, now));
        assert!(!peers.admit(a, now), "a third transfer at once is refused");
        peers.done(&a);
        assert!(peers.admit(a, now));
        // The burst (two replies' worth) goes at once, then the bucket makes replies wait.
        let burst = peers.burst as u64;
        assert_eq!(peers.charge(&a, burst, now), Some(Duration::ZERO));
        let wait = peers.charge(&a, 1 << 20, now).unwrap_or_default();
        assert!(wait >= Duration::from_millis(900), "{wait:?}");
        assert_eq!(peers.charge(&a, 100 << 20, now), None, "too long a wait");
        // Refilled over time.
        let later = now + Duration::from_secs(30);
        assert_eq!(peers.charge(&a, 1 << 20, later), Some(Duration::ZERO));
    }

    #[test]
    fn the_peer_table_is_bounded() {
        let now = Instant::now();
        let mut peers = Peers::new(1, 1 << 20);
        let busy: Vec<PeerId> = (0..MAX_PEERS).map(|_| PeerId::random()).collect();
        for p in &busy {
            assert!(peers.admit(*p, now));
        }
        assert!(!peers.admit(PeerId::random(), now), "every slot busy");
        peers.done(&busy[0]);
        assert!(
            peers.admit(PeerId::random(), now),
            "an idle entry is evicted"
        );
        assert!(peers.slots.len() <= MAX_PEERS);
    }
}
