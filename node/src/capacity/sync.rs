//! Late-joiner sync of adverts: `/degroup/adverts/sync/1`, a request-response protocol.
//!
//! When a connection to a new peer is established, the node asks it for its current adverts,
//! page by page (host order, at most [`PAGE_LIMIT`] per page), telling it which adverts it
//! already holds so that only the missing or newer ones travel; each advert is validated exactly
//! as if it had come by gossip. Messages are postcard, read with a hard cap, trailing bytes
//! rejected.
//!
//! Anti-entropy: every [`ANTI_ENTROPY_EVERY`] the node asks one connected peer (in turn) the
//! same way, so that gossip lost to a partition, a hung peer or a publish before any peer
//! subscribed is repaired even when no connection was re-established (for federations of up
//! to [`MAX_KNOWN`] adverts; beyond, a summary no longer fits in a request).
//!
//! A node whose sync queue is full answers an empty page: the protocol has no refusal, and the
//! asker's next anti-entropy round asks again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::advert::MAX_ADVERT_SIZE;
use super::book::{AdvertBook, Verdict};
use super::gossip::count;
use crate::metrics::NodeMetrics;
use crate::net::{Inbound, Limits, NetEvent, Network, PeerLimits, Protocol};
use crate::resources::now_ms;

/// Most adverts per page.
pub const PAGE_LIMIT: u16 = 64;
/// Most entries in a request's summary of what the requester holds.
pub const MAX_KNOWN: usize = 1024;
/// How often one connected peer is asked for what this node lacks.
pub const ANTI_ENTROPY_EVERY: Duration = Duration::from_secs(5);
/// Most peers synced from at once.
const MAX_PULLS: usize = 16;
/// Most pages taken from one peer in one sync (the whole book, a few times over).
const MAX_PAGES: usize = 4 * (MAX_KNOWN / PAGE_LIMIT as usize) + 16;

/// Ask for the adverts of hosts after `after`, except those the requester already holds at
/// least as new (`known`: host key prefix, sequence number; empty means "send everything").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncRequest {
    pub after: Option<[u8; 32]>,
    pub limit: u16,
    pub known: Vec<([u8; 8], u64)>,
}

/// A page of advert envelopes, and the cursor of the next page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncResponse {
    pub adverts: Vec<Vec<u8>>,
    pub next: Option<[u8; 32]>,
}

/// The protocol.
#[derive(Debug)]
pub struct SyncProtocol;

impl Protocol for SyncProtocol {
    const NAME: &'static str = "/degroup/adverts/sync/1";
    const LIMITS: Limits = Limits {
        max_request: 256 + MAX_KNOWN * 20,
        max_response: (PAGE_LIMIT as usize) * (MAX_ADVERT_SIZE + 8) + 256,
        max_inflight: 128,
        queue: 64,
        timeout: Duration::from_secs(20),
        per_peer: PeerLimits::DEFAULT,
        over_relay: false,
    };
    type Request = SyncRequest;
    type Response = SyncResponse;

    fn unavailable(_: &str) -> SyncResponse {
        SyncResponse {
            adverts: Vec::new(),
            next: None,
        }
    }
}

/// Answers peers' sync requests, and asks new peers (and one peer every
/// [`ANTI_ENTROPY_EVERY`]) for what this node lacks. Ends with `shutdown`.
pub async fn run(
    net: Network,
    book: Arc<AdvertBook>,
    metrics: NodeMetrics,
    mut inbound: Inbound<SyncProtocol>,
    mut events: broadcast::Receiver<NetEvent>,
    shutdown: CancellationToken,
) {
    let mut pulls = JoinSet::new();
    let mut pulling: HashSet<PeerId> = HashSet::new();
    let mut tick = tokio::time::interval(ANTI_ENTROPY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut round = 0usize;
    let puller = Puller { net, book, metrics };
    loop {
        let pull = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(req) = inbound.recv() => {
                let response = puller.page(&req.request);
                req.reply.send(response);
                None
            }
            event = events.recv() => match event {
                Ok(NetEvent::PeerConnected(peer)) => Some(peer),
                Ok(NetEvent::PeerDisconnected(_)) | Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(done) = pulls.join_next() => {
                if let Ok(peer) = done {
                    pulling.remove(&peer);
                }
                None
            }
            _ = tick.tick() => {
                round += 1;
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
    book: Arc<AdvertBook>,
    metrics: NodeMetrics,
}

impl Puller {
    /// The page a peer asked for.
    fn page(&self, request: &SyncRequest) -> SyncResponse {
        let limit = usize::from(request.limit.clamp(1, PAGE_LIMIT));
        let known: HashMap<[u8; 8], u64> = request.known.iter().take(MAX_KNOWN).copied().collect();
        let (page, next) = self.book.page(request.after, limit, now_ms(), &known);
        SyncResponse {
            adverts: page.iter().map(|e| e.as_ref().clone()).collect(),
            next,
        }
    }

    /// The peer to ask this anti-entropy round, if any. Skipped when the node holds more
    /// adverts than a request can summarise: the answer would then be the whole set every time.
    async fn anti_entropy_peer(&self, round: usize) -> Option<PeerId> {
        if self.book.len() > MAX_KNOWN {
            return None;
        }
        let peers = self.net.status().await.ok()?.connected_peers;
        if peers.is_empty() {
            return None;
        }
        Some(peers[round % peers.len()])
    }

    /// Takes what `peer` has and this node lacks, page by page.
    async fn pull(&self, peer: PeerId) {
        let mut after = None;
        for _ in 0..MAX_PAGES {
            let request = SyncRequest {
                after,
                limit: PAGE_LIMIT,
                known: self.book.summary(MAX_KNOWN),
            };
            let response = match self.net.request::<SyncProtocol>(peer, request).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "advert sync request failed");
                    return;
                }
            };
            let adverts = &response.adverts[..response.adverts.len().min(PAGE_LIMIT.into())];
            let verdicts = self.book.offer_batch(adverts, now_ms());
            for v in &verdicts {
                count(&self.metrics, "sync", v);
            }
            let accepted = verdicts.iter().filter(|v| **v == Verdict::Accepted).count();
            tracing::debug!(%peer, received = verdicts.len(), accepted, "advert sync page");
            self.metrics
                .adverts_known
                .set(i64::try_from(self.book.len()).unwrap_or(i64::MAX));
            // A peer that pages forever is bounded by the cursor moving forward.
            match response.next {
                Some(next) if !adverts.is_empty() && after.is_none_or(|a| next > a) => {
                    after = Some(next);
                }
                _ => return,
            }
        }
    }
}
