//! Late-joiner and anti-entropy sync of the catalogue: `/degroup/catalogue/sync/1`.
//!
//! A request asks for the envelopes (releases and yanks) whose store keys come after a cursor,
//! at most [`PAGE_LIMIT`] per page; the answer carries them, the cursor of the next page, and the
//! answerer's digest ([`Catalogue::digest`]: XOR of the BLAKE3 of every envelope it holds). A
//! request with `limit: 0` is a probe: just the digest.
//!
//! - When a connection to a new peer is established, the node probes it and, unless the digests
//!   match, pulls every page; each envelope is validated exactly as if it had come by gossip.
//! - Every [`ANTI_ENTROPY_EVERY`] it probes one connected peer (in turn). It pulls only when the
//!   digests differ and the pair (its digest, the peer's) is not the one it ended its last pull
//!   from that peer with: a peer holding something this node refuses (a republished version)
//!   costs one probe a round, not a whole catalogue.
//! - The pull stops when the cursor does not move forward, after [`MAX_PAGES`] pages, or at the
//!   first failed request. Frames are capped both ways ([`CatalogueSyncProtocol`]'s limits), and
//!   only the first [`PAGE_LIMIT`] items of a page are looked at.
//!
//! A node whose sync queue is full answers an empty page without a digest: the asker stops
//! and tries again another round.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::book::{Catalogue, MAX_KEY_LEN, MAX_TOTAL, Verdict};
use super::release::{Hash, MAX_ENVELOPE_SIZE};
use crate::net::{Inbound, Limits, NetEvent, Network, PeerLimits, Protocol};
use crate::resources::now_ms;

/// Most envelopes per page.
pub const PAGE_LIMIT: u16 = 64;
/// How often one connected peer is probed.
pub const ANTI_ENTROPY_EVERY: Duration = Duration::from_secs(30);
/// Most pages taken from one peer in one pull: the largest catalogue (releases and yanks),
/// with room to spare.
pub const MAX_PAGES: usize = 2 * MAX_TOTAL / PAGE_LIMIT as usize + 16;
/// Most peers pulled from at once.
const MAX_PULLS: usize = 8;
/// Most peers whose last pull is remembered.
const MAX_REMEMBERED: usize = 1024;

/// Ask for the envelopes with store keys after `after` (at most `limit`; 0 asks only for the
/// digest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CatalogueSyncRequest {
    pub after: Option<Vec<u8>>,
    pub limit: u16,
}

/// A page of envelopes, the cursor of the next page, and the answerer's digest (`None` when it
/// is too busy to answer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CatalogueSyncResponse {
    pub items: Vec<Vec<u8>>,
    pub next: Option<Vec<u8>>,
    pub digest: Option<Hash>,
}

/// The protocol.
#[derive(Debug)]
pub struct CatalogueSyncProtocol;

impl Protocol for CatalogueSyncProtocol {
    const NAME: &'static str = "/degroup/catalogue/sync/1";
    const LIMITS: Limits = Limits {
        max_request: 64 + MAX_KEY_LEN,
        max_response: (PAGE_LIMIT as usize) * (MAX_ENVELOPE_SIZE + 8) + 2 * MAX_KEY_LEN + 256,
        max_inflight: 64,
        queue: 32,
        timeout: Duration::from_secs(20),
        per_peer: PeerLimits::DEFAULT,
        over_relay: false,
    };
    type Request = CatalogueSyncRequest;
    type Response = CatalogueSyncResponse;

    fn unavailable(_: &str) -> CatalogueSyncResponse {
        CatalogueSyncResponse {
            items: Vec::new(),
            next: None,
            digest: None,
        }
    }
}

/// The page a peer asked for.
pub fn answer(catalogue: &Catalogue, request: &CatalogueSyncRequest) -> CatalogueSyncResponse {
    let digest = Some(catalogue.digest());
    let after = match request.after.as_deref() {
        Some(a) if a.len() > MAX_KEY_LEN => {
            return CatalogueSyncResponse {
                items: Vec::new(),
                next: None,
                digest,
            };
        }
        a => a,
    };
    if request.limit == 0 {
        return CatalogueSyncResponse {
            items: Vec::new(),
            next: None,
            digest,
        };
    }
    let limit = usize::from(request.limit.min(PAGE_LIMIT));
    let (items, next) = catalogue.page(after, limit);
    CatalogueSyncResponse {
        items: items.iter().map(|e| e.as_ref().clone()).collect(),
        next,
        digest,
    }
}

/// Answers peers' sync requests, pulls from every new peer and probes one peer every
/// [`ANTI_ENTROPY_EVERY`]. Ends with `shutdown`.
pub async fn sync(
    net: Network,
    catalogue: Arc<Catalogue>,
    mut inbound: Inbound<CatalogueSyncProtocol>,
    mut events: broadcast::Receiver<NetEvent>,
    shutdown: CancellationToken,
) {
    let mut pulls = JoinSet::new();
    let mut pulling: HashSet<PeerId> = HashSet::new();
    let mut tick = tokio::time::interval(ANTI_ENTROPY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut round = 0usize;
    let puller = Puller {
        net,
        catalogue,
        last: Arc::new(Mutex::new(HashMap::new())),
    };
    loop {
        let pull = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(req) = inbound.recv() => {
                let response = answer(&puller.catalogue, &req.request);
                req.reply.send(response);
                None
            }
            event = events.recv() => match event {
                Ok(NetEvent::PeerConnected(peer)) => Some(peer),
                Ok(NetEvent::PeerDisconnected(peer)) => {
                    puller.forget(&peer);
                    None
                }
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(done) = pulls.join_next() => {
                if let Ok(peer) = done {
                    pulling.remove(&peer);
                }
                None
            }
            _ = tick.tick() => {
                round = round.wrapping_add(1);
                puller.anti_entropy_peer(round).await
            }
        };
        if let Some(peer) = pull
            && pulls.len() < MAX_PULLS
            && pulling.insert(peer)
        {
            let p = puller.clone();
            pulls.spawn(async move {
                p.pull(peer).await;
                peer
            });
        }
    }
    pulls.abort_all();
}

#[derive(Clone)]
struct Puller {
    net: Network,
    catalogue: Arc<Catalogue>,
    /// Per peer: (its digest, ours) when the last pull from it ended.
    last: Arc<Mutex<HashMap<PeerId, (Hash, Hash)>>>,
}

impl Puller {
    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, (Hash, Hash)>> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn forget(&self, peer: &PeerId) {
        self.memo().remove(peer);
    }

    async fn anti_entropy_peer(&self, round: usize) -> Option<PeerId> {
        let peers = self.net.status().await.ok()?.connected_peers;
        if peers.is_empty() {
            return None;
        }
        Some(peers[round % peers.len()])
    }

    async fn request(
        &self,
        peer: PeerId,
        after: Option<Vec<u8>>,
        limit: u16,
    ) -> Option<CatalogueSyncResponse> {
        let request = CatalogueSyncRequest { after, limit };
        match self
            .net
            .request::<CatalogueSyncProtocol>(peer, request)
            .await
        {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "catalogue sync request failed");
                None
            }
        }
    }

    /// Probes `peer`, then takes what it has, page by page, unless nothing can be new.
    async fn pull(&self, peer: PeerId) {
        let Some(probe) = self.request(peer, None, 0).await else {
            return;
        };
        let Some(theirs) = probe.digest else {
            return;
        };
        let ours = self.catalogue.digest();
        if theirs == ours || self.memo().get(&peer) == Some(&(theirs, ours)) {
            return;
        }
        let (mut received, mut accepted) = (0usize, 0usize);
        let mut after: Option<Vec<u8>> = None;
        for _ in 0..MAX_PAGES {
            let Some(response) = self.request(peer, after.clone(), PAGE_LIMIT).await else {
                break;
            };
            let items = &response.items[..response.items.len().min(PAGE_LIMIT.into())];
            for item in items {
                received += 1;
                if self.catalogue.offer(item, now_ms()) == Verdict::Accepted {
                    accepted += 1;
                }
            }
            // A peer that pages forever is bounded by the cursor moving forward.
            match response.next {
                Some(next)
                    if !items.is_empty()
                        && next.len() <= MAX_KEY_LEN
                        && after.as_ref().is_none_or(|a| next > *a) =>
                {
                    after = Some(next);
                }
                _ => break,
            }
        }
        tracing::debug!(%peer, received, accepted, "catalogue sync pull");
        let mut memo = self.memo();
        if memo.len() >= MAX_REMEMBERED && !memo.contains_key(&peer) {
            memo.clear();
        }
        memo.insert(peer, (theirs, self.catalogue.digest()));
    }
}
