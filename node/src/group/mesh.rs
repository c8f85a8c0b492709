//! One deployment's mesh, and the host's answer to `/degroup/mesh/1`.
//!
//! `send` decides everything in [`super::book::Book::route`] (size, rate, membership), then
//! either `try_send`s into the receiver's inbox on this host, or signs a
//! [`MeshEnvelope`] and asks the receiver's host, from the node's runtime (not the plugin's
//! thread). `broadcast` routes every other member at once, so the rate cap applies to each
//! copy, and hands the remote ones to tasks without waiting for them.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use libp2p::PeerId;

use super::Inner;
use super::book::Route;
use super::wire::{MeshEnvelope, MeshProtocol, MeshReply};
use crate::plugin::control::{MAX_MESH_PAYLOAD, Mesh, MeshMember, SendError};
use crate::plugin::worker::{Inbox, QueueError};
use crate::signed::{Envelope, EnvelopeError};

/// The metric label of a refusal.
fn label(e: SendError) -> &'static str {
    match e {
        SendError::Unknown => "unknown",
        SendError::NotInGroup => "not_in_group",
        SendError::Unreachable => "unreachable",
        SendError::InboxFull => "inbox_full",
        SendError::TooLarge => "too_large",
        SendError::RateLimited => "rate_limited",
    }
}

/// The mesh as one hosted deployment sees it.
pub(super) struct DeploymentMesh {
    inner: Arc<Inner>,
    id: String,
}

impl DeploymentMesh {
    pub(super) fn new(inner: Arc<Inner>, id: String) -> Self {
        Self { inner, id }
    }
}

impl Mesh for DeploymentMesh {
    fn members(&self) -> BoxFuture<'static, Vec<MeshMember>> {
        let members = self.inner.book().members(&self.id);
        Box::pin(async move { members })
    }

    fn send(&self, to: String, payload: Vec<u8>) -> BoxFuture<'static, Result<(), SendError>> {
        let inner = self.inner.clone();
        let from = self.id.clone();
        Box::pin(async move { inner.send(from, to, payload).await })
    }

    fn broadcast(&self, payload: Vec<u8>) -> BoxFuture<'static, ()> {
        self.inner.broadcast(&self.id, &payload);
        Box::pin(async {})
    }
}

impl Inner {
    /// Queues into a local inbox.
    fn deliver(&self, inbox: &Inbox, from: String, payload: Vec<u8>) -> Result<(), SendError> {
        match inbox.deliver(from, payload) {
            Ok(()) => {
                self.metrics.delivered.inc();
                Ok(())
            }
            Err(QueueError::Full) => {
                self.metrics.refuse("inbox_full");
                Err(SendError::InboxFull)
            }
            Err(QueueError::Gone) => {
                self.metrics.refuse("unreachable");
                Err(SendError::Unreachable)
            }
        }
    }

    fn route(&self, from: &str, to: &str, len: usize) -> Result<Route, SendError> {
        if len > MAX_MESH_PAYLOAD {
            self.metrics.refuse("too_large");
            return Err(SendError::TooLarge);
        }
        self.book()
            .route(from, to, len, Instant::now())
            .inspect_err(|e| self.metrics.refuse(label(*e)))
    }

    async fn send(
        self: Arc<Self>,
        from: String,
        to: String,
        payload: Vec<u8>,
    ) -> Result<(), SendError> {
        match self.route(&from, &to, payload.len())? {
            Route::Local(inbox) => self.deliver(&inbox, from, payload),
            Route::Remote {
                host,
                tenant,
                group,
                version,
            } => {
                let envelope = MeshEnvelope {
                    from,
                    to,
                    tenant,
                    group,
                    version,
                    payload,
                };
                let inner = self.clone();
                self.rt
                    .spawn(async move { inner.remote(host, envelope).await })
                    .await
                    .unwrap_or(Err(SendError::Unreachable))
            }
        }
    }

    /// Sends to another host and waits for its answer (bounded by the protocol's timeout).
    async fn remote(&self, host: String, envelope: MeshEnvelope) -> Result<(), SendError> {
        let Ok(peer) = host.parse::<PeerId>() else {
            self.metrics.refuse("unreachable");
            return Err(SendError::Unreachable);
        };
        let bytes = match Envelope::seal_kind(self.identity.signing_key(), &envelope) {
            Ok(e) => e.to_bytes(),
            Err(_) => {
                self.metrics.refuse("too_large");
                return Err(SendError::TooLarge);
            }
        };
        let addrs = self.addrs_of(&peer);
        match self
            .net
            .request_at::<MeshProtocol>(peer, addrs, bytes)
            .await
        {
            // The receiving host counted its own refusal.
            Ok(reply) => reply.result(),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "mesh message not delivered");
                self.metrics.refuse("unreachable");
                Err(SendError::Unreachable)
            }
        }
    }

    /// Routes a copy to every other member; remote copies go in tasks of their own.
    fn broadcast(self: &Arc<Self>, from: &str, payload: &[u8]) {
        let others = self.book().others(from);
        for to in others {
            match self.route(from, &to, payload.len()) {
                Ok(Route::Local(inbox)) => {
                    let _ = self.deliver(&inbox, from.to_owned(), payload.to_vec());
                }
                Ok(Route::Remote {
                    host,
                    tenant,
                    group,
                    version,
                }) => {
                    let envelope = MeshEnvelope {
                        from: from.to_owned(),
                        to,
                        tenant,
                        group,
                        version,
                        payload: payload.to_vec(),
                    };
                    let inner = self.clone();
                    self.rt.spawn(async move {
                        let _ = inner.remote(host, envelope).await;
                    });
                }
                Err(_) => {}
            }
        }
    }

    /// The host's answer to one `/degroup/mesh/1` request.
    pub(super) fn answer_mesh(&self, peer: &PeerId, bytes: &[u8]) -> MeshReply {
        let opened = match Envelope::open::<MeshEnvelope>(bytes) {
            Ok(o) => o,
            Err(EnvelopeError::BadSignature | EnvelopeError::BadKey) => {
                self.metrics.refuse("bad_signature");
                return MeshReply::Refused;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "malformed mesh message");
                self.metrics.refuse("malformed");
                return MeshReply::Refused;
            }
        };
        if opened.value.payload.len() > MAX_MESH_PAYLOAD {
            self.metrics.refuse("too_large");
            return MeshReply::Refused;
        }
        let checked = self
            .book()
            .inbound(&opened, &peer.to_string(), Instant::now());
        let inbox = match checked {
            Ok(inbox) => inbox,
            Err((reply, reason)) => {
                if reason == "forged" {
                    tracing::warn!(%peer, from = %opened.value.from, "forged mesh message refused");
                }
                self.metrics.refuse(reason);
                return reply;
            }
        };
        let e = opened.value;
        match self.deliver(&inbox, e.from, e.payload) {
            Ok(()) => MeshReply::Delivered,
            Err(SendError::InboxFull) => MeshReply::InboxFull,
            Err(_) => MeshReply::Unreachable,
        }
    }
}
