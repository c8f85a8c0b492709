//! Pushing a group's newest version to each of its hosts until it acknowledges.
//!
//! One task per (group, host), fed by a `watch` channel that holds only the newest signed
//! document: a newer version replaces the one being retried (the older is abandoned), and
//! the number of tasks is bounded by groups × hosts. A task retries with a backoff that
//! doubles from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], then waits for the next version. A host
//! that refuses for good (a bad document, no member there) is not asked again for that
//! version. When this node is the host too, the document goes straight to its own book.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::watch;

use super::Inner;
use super::lock;
use super::tenant::Push;
use super::wire::{GroupMsg, GroupProtocol, GroupReply};

/// First pause before a push is retried.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest pause between tries.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The newest signed version of one group (its version number and bytes), for one host's
/// push task.
type Slot = watch::Sender<(u64, Arc<Vec<u8>>)>;

/// The push tasks, by (group, host).
#[derive(Debug, Default)]
pub(super) struct Pusher {
    slots: Mutex<HashMap<(String, String), Slot>>,
}

impl Inner {
    /// Hands a new version to the push task of each of its hosts (starting the missing ones).
    pub(super) fn push(self: &Arc<Self>, p: Push) {
        let mut slots = lock(&self.push.slots);
        for host in p.hosts {
            let key = (p.name.clone(), host.clone());
            if let Some(tx) = slots.get(&key)
                && !tx.is_closed()
            {
                // Versions committed concurrently may be handed over out of order: an older one
                // never replaces a newer one (the host would be left a version behind).
                tx.send_if_modified(|(version, bytes)| {
                    if p.version > *version {
                        *version = p.version;
                        *bytes = p.bytes.clone();
                        true
                    } else {
                        false
                    }
                });
                continue;
            }
            let Ok(peer) = host.parse::<PeerId>() else {
                continue;
            };
            let (tx, rx) = watch::channel((p.version, p.bytes.clone()));
            slots.insert(key, tx);
            let inner = self.clone();
            let name = p.name.clone();
            self.rt
                .spawn(async move { inner.push_loop(name, peer, rx).await });
        }
    }

    async fn push_loop(
        self: Arc<Self>,
        name: String,
        peer: PeerId,
        mut rx: watch::Receiver<(u64, Arc<Vec<u8>>)>,
    ) {
        'versions: loop {
            let bytes = rx.borrow_and_update().1.clone();
            let mut pause = BACKOFF_MIN;
            loop {
                if self.push_once(&name, peer, &bytes).await {
                    break;
                }
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue 'versions;
                    }
                }
                pause = (pause * 2).min(BACKOFF_MAX);
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                changed = rx.changed() => if changed.is_err() {
                    return;
                },
            }
        }
    }

    /// One try; true when the host is done with this version (held it, or refused it for
    /// good).
    async fn push_once(&self, name: &str, peer: PeerId, bytes: &Arc<Vec<u8>>) -> bool {
        let reply = if peer == self.me {
            Ok(self.receive_doc(bytes.to_vec()))
        } else {
            let addrs = self.addrs_of(&peer);
            self.net
                .request_at::<GroupProtocol>(peer, addrs, GroupMsg::Doc(bytes.to_vec()))
                .await
        };
        match reply {
            Ok(GroupReply::Ok) => {
                tracing::debug!(group = %name, %peer, "group pushed");
                true
            }
            Ok(GroupReply::Refused(why)) => {
                tracing::warn!(group = %name, %peer, reason = %why, "host refused the group");
                true
            }
            Ok(GroupReply::Busy(why)) => {
                tracing::debug!(group = %name, %peer, reason = %why, "host busy; retrying");
                false
            }
            Err(e) => {
                tracing::debug!(group = %name, %peer, error = %e, "group push failed; retrying");
                false
            }
        }
    }
}
