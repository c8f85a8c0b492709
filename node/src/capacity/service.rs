//! The capacity actor: owns this node's offer and advert.
//!
//! One task, driven by commands ([`CapacityHandle`]) and three timers: the publish debounce
//! (leading edge: a change after a quiet spell is published at once, further changes within the
//! window become one advert at its end), the refresh (a new advert at a third of the
//! lifetime, so it never expires while the node runs) and the sweep of expired adverts from the
//! book. Every advert gets the next sequence number, which is stored durably *before* the
//! advert is signed, so a restart never reuses one.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::advert::Advert;
use super::book::{AdvertBook, Verdict};
use super::inventory::{Detected, detect};
use super::offer::{OfferSettings, Offered};
use super::query::AdvertSummary;
use crate::identity::Identity;
use crate::net::Network;
use crate::resources::{Resources, now_ms};
use crate::signed::Envelope;
use crate::store::{Domain, Store, StoreError, Tree};

const SEQ_KEY: &[u8] = b"advert_seq";
const SETTINGS_KEY: &[u8] = b"settings";
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Least time between two adverts caused by lease changes (a busy host coalesces them).
const LEASED_DEBOUNCE: Duration = Duration::from_millis(200);
/// Plugin API versions this build runs (announced in adverts).
/// 0.1.1 (mesh, workload) links 0.1.0 components too.
pub(crate) const PLUGIN_APIS: &[&str] = &["degroup:plugin@0.1.1", "degroup:plugin@0.1.0"];

/// The plugin APIs a host announces: [`PLUGIN_APIS`], plus `wasi:http/incoming-handler` when
/// it runs an HTTP ingress (what `find 'ingress=true'` looks for).
pub(crate) fn plugin_apis(ingress: bool) -> Vec<String> {
    let mut apis: Vec<String> = PLUGIN_APIS.iter().map(|s| (*s).to_owned()).collect();
    if ingress {
        apis.push(super::query::HTTP_API.to_owned());
    }
    apis
}

/// Capacity failures that reach users.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the capacity service has stopped")]
    Stopped,
}

impl crate::error::Coded for CapacityError {
    fn code(&self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        match self {
            CapacityError::Invalid(_) => ErrorCode::BadInput,
            CapacityError::Store(_) => ErrorCode::Internal,
            CapacityError::Stopped => ErrorCode::Unavailable,
        }
    }
}

/// `GET /v1/capacity`: what was detected, what is set, what is offered, and the advert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapacityView {
    pub detected: Detected,
    /// Settings from `capacity set` (the config file's `[capacity]` table sits below them).
    pub settings: OfferSettings,
    pub offered: Offered,
    /// The advert currently published (`None` until the first one is out).
    pub advert: Option<AdvertSummary>,
}

enum Command {
    Show(oneshot::Sender<CapacityView>),
    Set {
        update: Box<OfferSettings>,
        force: bool,
        reply: oneshot::Sender<Result<CapacityView, CapacityError>>,
    },
    /// What active leases take from the offer; the advert's free capacity follows.
    Leased(Resources),
}

/// Cloneable handle to the capacity actor.
#[derive(Clone)]
pub struct CapacityHandle {
    tx: mpsc::Sender<Command>,
    book: Arc<AdvertBook>,
    offered: watch::Receiver<Offered>,
}

impl std::fmt::Debug for CapacityHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapacityHandle").finish_non_exhaustive()
    }
}

impl CapacityHandle {
    /// The advert book.
    pub fn book(&self) -> &Arc<AdvertBook> {
        &self.book
    }

    /// What this node offers now (updated on every `capacity set`).
    pub fn offered(&self) -> Offered {
        self.offered.borrow().clone()
    }

    /// Tells the actor what active leases take; the next advert's free capacity is the offer
    /// minus this. Never blocks: returns false when the queue is full (the caller tries again).
    pub fn set_leased(&self, leased: Resources) -> bool {
        self.tx.try_send(Command::Leased(leased)).is_ok()
    }

    /// The current capacity view.
    pub async fn show(&self) -> Result<CapacityView, CapacityError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Show(reply))
            .await
            .map_err(|_| CapacityError::Stopped)?;
        rx.await.map_err(|_| CapacityError::Stopped)
    }

    /// Applies an update (fields it sets replace the stored ones); durable before it returns.
    pub async fn set(
        &self,
        update: OfferSettings,
        force: bool,
    ) -> Result<CapacityView, CapacityError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Set {
                update: Box::new(update),
                force,
                reply,
            })
            .await
            .map_err(|_| CapacityError::Stopped)?;
        rx.await.map_err(|_| CapacityError::Stopped)?
    }
}

/// Timing of the actor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub ttl_ms: u64,
    pub debounce_ms: u64,
}

struct Service {
    identity: Identity,
    net: Network,
    book: Arc<AdvertBook>,
    tree: Tree,
    detected: Detected,
    config: OfferSettings,
    settings: OfferSettings,
    timing: Timing,
    /// What the adverts announce in `plugin_apis`.
    plugin_apis: Vec<String>,
    current: Option<Advert>,
    data_dir: std::path::PathBuf,
    leased: Resources,
    offered_tx: watch::Sender<Offered>,
}

/// Starts the actor; it publishes a first advert right away.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    identity: Identity,
    store: &Store,
    data_dir: &std::path::Path,
    book: Arc<AdvertBook>,
    net: Network,
    config: OfferSettings,
    timing: Timing,
    plugin_apis: Vec<String>,
    shutdown: CancellationToken,
) -> Result<(CapacityHandle, tokio::task::JoinHandle<()>), CapacityError> {
    let tree = store.tree(Domain::Capacity)?;
    let settings = match tree.get(SETTINGS_KEY)? {
        Some(bytes) => crate::signed::decode_exact(&bytes).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "stored capacity settings unreadable; using the config file's");
            OfferSettings::default()
        }),
        None => OfferSettings::default(),
    };
    let (tx, rx) = mpsc::channel(64);
    let detected = detect(data_dir);
    let (offered_tx, offered) = watch::channel(config.overlay(&settings).effective(&detected));
    let service = Service {
        identity,
        net,
        book: book.clone(),
        tree,
        detected,
        config,
        settings,
        timing,
        plugin_apis,
        current: None,
        data_dir: data_dir.to_owned(),
        leased: Resources::default(),
        offered_tx,
    };
    let task = tokio::spawn(service.run(rx, shutdown));
    Ok((CapacityHandle { tx, book, offered }, task))
}

impl Service {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let refresh = Duration::from_millis((self.timing.ttl_ms / 3).max(1000));
        // Publish at once: a node that starts is news.
        let mut publish_at = Instant::now();
        let debounce = Duration::from_millis(self.timing.debounce_ms);
        let mut last_published = Instant::now();
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(Command::Show(reply)) => { let _ = reply.send(self.view()); }
                    Some(Command::Set { update, force, reply }) => {
                        let result = self.apply(*update, force);
                        if result.is_ok() {
                            // Leading-edge debounce: a change after a quiet spell goes out at
                            // once (and the reply shows its advert); changes that follow within
                            // the window are coalesced into one advert at the window's end.
                            let now = Instant::now();
                            if now >= last_published + debounce && publish_at > now {
                                self.publish().await;
                                last_published = Instant::now();
                                publish_at = last_published + refresh;
                            } else {
                                publish_at = publish_at.min(last_published + debounce);
                            }
                        }
                        let _ = reply.send(result.map(|()| self.view()));
                    }
                    Some(Command::Leased(leased)) => {
                        if leased != self.leased {
                            self.leased = leased;
                            let soonest = last_published + debounce.max(LEASED_DEBOUNCE);
                            publish_at = publish_at.min(soonest);
                        }
                    }
                    None => break,
                },
                () = sleep_until(publish_at) => {
                    self.publish().await;
                    last_published = Instant::now();
                    publish_at = last_published + refresh;
                }
                () = sleep_until(next_sweep) => {
                    let dropped = self.book.sweep(now_ms());
                    if dropped > 0 {
                        tracing::debug!(dropped, "expired adverts dropped");
                    }
                    next_sweep = Instant::now() + SWEEP_EVERY;
                }
            }
        }
    }

    fn effective_settings(&self) -> OfferSettings {
        self.config.overlay(&self.settings)
    }

    fn view(&self) -> CapacityView {
        CapacityView {
            detected: self.detected.clone(),
            settings: self.settings.clone(),
            offered: self.effective_settings().effective(&self.detected),
            advert: self.current.as_ref().map(AdvertSummary::of),
        }
    }

    fn apply(&mut self, mut update: OfferSettings, force: bool) -> Result<(), CapacityError> {
        update.validate_fields().map_err(CapacityError::Invalid)?;
        if let Some(c) = update.country.as_mut().filter(|c| !c.is_empty()) {
            *c = super::country::normalize_country(c).map_err(CapacityError::Invalid)?;
        }
        // Disk space changes; look again before judging a request against it.
        self.detected = detect(&self.data_dir);
        let merged = self.settings.overlay(&update);
        self.config
            .overlay(&merged)
            .check_against(&self.detected, force)
            .map_err(CapacityError::Invalid)?;
        let bytes =
            postcard::to_stdvec(&merged).map_err(|e| CapacityError::Invalid(e.to_string()))?;
        self.tree.insert_durable(SETTINGS_KEY, &bytes)?;
        self.settings = merged;
        let _ = self
            .offered_tx
            .send(self.effective_settings().effective(&self.detected));
        Ok(())
    }

    fn next_seq(&self) -> Result<u64, StoreError> {
        let last = self
            .tree
            .get(SEQ_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        let next = last + 1;
        self.tree.insert_durable(SEQ_KEY, &next.to_be_bytes())?;
        Ok(next)
    }

    async fn publish(&mut self) {
        let seq = match self.next_seq() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot persist the advert sequence number; not publishing");
                return;
            }
        };
        let addrs = match self.net.status().await {
            Ok(s) => s.listen_addrs.iter().map(ToString::to_string).collect(),
            Err(_) => Vec::new(),
        };
        let offered = self.effective_settings().effective(&self.detected);
        let now = now_ms();
        let advert = Advert {
            host: self.identity.verifying_key().to_bytes(),
            seq,
            issued_at_ms: now,
            expires_at_ms: now + self.timing.ttl_ms,
            addrs,
            free: offered.total.less(&self.leased),
            total: offered.total,
            bandwidth_bps: offered.bandwidth_bps,
            country: offered.country,
            region: offered.region,
            operator: offered.operator,
            certs: offered.certs,
            prices: offered.prices,
            plugin_apis: self.plugin_apis.clone(),
        };
        let envelope = match Envelope::seal_kind(self.identity.signing_key(), &advert) {
            Ok(e) => e.to_bytes(),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign the advert (too large?)");
                return;
            }
        };
        match self.book.offer(&envelope, now) {
            Verdict::Accepted => {}
            other => tracing::warn!(verdict = ?other, "own advert not accepted by the local book"),
        }
        tracing::debug!(seq, "publishing advert");
        self.current = Some(advert);
        self.net
            .publish(super::gossip::ADVERT_TOPIC, envelope)
            .await;
    }
}
