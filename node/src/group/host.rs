//! The host's side of `/degroup/group/1`: documents from tenants, leave notices from hosts,
//! and the notices this host sends when one of its members stops.
//!
//! A document is verified, judged against the one held ([`super::book::Book::judge`]), stored
//! durably and only then held and acknowledged. A leave notice taken is stored too
//! (`gone/<tenant>/<group>/<deployment>`, deleted with the version that no longer lists the
//! member). Notices are sent from tasks on the node's
//! runtime, a few tries each with a short backoff: they only make the leave quicker; the
//! tenant's next version says the same for good.

use std::time::Duration;

use super::Inner;
use super::book::{Key, Verdict};
use super::doc::{DocError, open_doc, open_left};
use super::wire::{GroupMsg, GroupProtocol, GroupReply};
use crate::resources::now_ms;
use crate::signed::Envelope;
use crate::store::{Domain, Op};

/// Tries per host for a leave notice.
const LEFT_TRIES: u32 = 4;
/// The first pause between tries (doubled each time).
const LEFT_BACKOFF: Duration = Duration::from_millis(200);

/// The store key of a held document.
fn doc_key(key: &Key) -> Vec<u8> {
    format!("{}/{}", hex::encode(key.0), key.1).into_bytes()
}

/// Prefix of the store keys of members known gone (`gone/<tenant>/<group>/<deployment>`).
pub(super) const GONE_PREFIX: &str = "gone/";

/// The store key saying that member `id` of a held document is gone.
fn gone_key(key: &Key, id: &str) -> Vec<u8> {
    format!("{GONE_PREFIX}{}/{}/{id}", hex::encode(key.0), key.1).into_bytes()
}

/// Parses a [`gone_key`].
pub(super) fn parse_gone_key(k: &[u8]) -> Option<(Key, String)> {
    let text = std::str::from_utf8(k).ok()?.strip_prefix(GONE_PREFIX)?;
    let mut parts = text.split('/');
    let (tenant, name, id) = (parts.next()?, parts.next()?, parts.next()?);
    let mut t = [0u8; 32];
    hex::decode_to_slice(tenant, &mut t).ok()?;
    Some(((t, name.to_owned()), id.to_owned()))
}

impl Inner {
    /// Answers one `/degroup/group/1` request.
    pub(super) fn answer_group(&self, msg: GroupMsg) -> GroupReply {
        match msg {
            GroupMsg::Doc(bytes) => self.receive_doc(bytes),
            GroupMsg::Left(bytes) => self.receive_left(&bytes),
        }
    }

    /// A group document, from its tenant (or from this node, when it is tenant and host).
    pub(super) fn receive_doc(&self, bytes: Vec<u8>) -> GroupReply {
        let opened = match open_doc(&bytes) {
            Ok(o) => o,
            Err(e) => return self.refused_doc(&e),
        };
        let doc = opened.value;
        let key: Key = (doc.tenant, doc.name.clone());
        let verdict = self.book().judge(&doc);
        match verdict {
            Ok(Verdict::Old) => {
                self.metrics.doc("old");
                GroupReply::Ok
            }
            Ok(Verdict::Hold) => {
                // Members gone that the new version no longer lists are forgotten with it.
                let mut ops = vec![Op::Put(Domain::GroupDocs, doc_key(&key), bytes.clone())];
                for id in self.book().gone_of(&key) {
                    if doc.member(&id).is_none() {
                        ops.push(Op::Delete(Domain::GroupDocs, gone_key(&key, &id)));
                    }
                }
                if let Err(e) = self.store.apply_durable(&ops) {
                    return GroupReply::Busy(format!("cannot store the group: {e}"));
                }
                tracing::info!(group = %doc.name, version = doc.version, members = doc.members.len(), "group document held");
                self.book().hold(doc, bytes);
                self.metrics.doc("held");
                GroupReply::Ok
            }
            Ok(Verdict::Drop) => {
                let mut ops = vec![Op::Delete(Domain::GroupDocs, doc_key(&key))];
                for id in self.book().gone_of(&key) {
                    ops.push(Op::Delete(Domain::GroupDocs, gone_key(&key, &id)));
                }
                if let Err(e) = self.store.apply_durable(&ops) {
                    return GroupReply::Busy(format!("cannot store the group: {e}"));
                }
                self.book().forget(&key, doc.version);
                self.metrics.doc("dropped");
                GroupReply::Ok
            }
            Err(why) => {
                self.metrics.doc("refused");
                GroupReply::Refused(why)
            }
        }
    }

    fn refused_doc(&self, e: &DocError) -> GroupReply {
        tracing::debug!(error = %e, reason = e.label(), "group document refused");
        self.metrics.doc("refused");
        GroupReply::Refused(e.to_string())
    }

    fn receive_left(&self, bytes: &[u8]) -> GroupReply {
        let opened = match open_left(bytes) {
            Ok(o) => o,
            Err(e) => return self.refused_doc(&e),
        };
        let verdict = self.book().left(&opened);
        match verdict {
            Ok(None) => GroupReply::Ok,
            Ok(Some(key)) => {
                // Durable before it is acknowledged: a restart does not bring the member back.
                let id = &opened.value.deployment;
                let op = Op::Put(Domain::GroupDocs, gone_key(&key, id), Vec::new());
                if let Err(e) = self.store.apply_durable(&[op]) {
                    return GroupReply::Busy(format!("cannot store the notice: {e}"));
                }
                self.book().mark_gone(&key, id);
                self.metrics.doc("left");
                GroupReply::Ok
            }
            Err(why) => {
                self.metrics.doc("refused");
                GroupReply::Refused(why)
            }
        }
    }

    /// A member of this host stopped: gone here, and the other hosts are told.
    pub(super) fn stopped(&self, id: &str) {
        let notices = self.book().stopped(id, now_ms());
        for (left, hosts) in notices {
            let bytes = match Envelope::seal_kind(self.identity.signing_key(), &left) {
                Ok(e) => e.to_bytes(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign a leave notice");
                    continue;
                }
            };
            tracing::info!(deployment = %id, group = %left.group, hosts = hosts.len(), "member stopped; telling the group's hosts");
            for host in hosts {
                let Ok(peer) = host.parse::<libp2p::PeerId>() else {
                    continue;
                };
                let net = self.net.clone();
                let addrs = self.addrs_of(&peer);
                let bytes = bytes.clone();
                let shutdown = self.shutdown.clone();
                self.rt.spawn(async move {
                    let mut pause = LEFT_BACKOFF;
                    for _ in 0..LEFT_TRIES {
                        let msg = GroupMsg::Left(bytes.clone());
                        match net
                            .request_at::<GroupProtocol>(peer, addrs.clone(), msg)
                            .await
                        {
                            Ok(GroupReply::Ok | GroupReply::Refused(_)) => return,
                            Ok(GroupReply::Busy(_)) | Err(_) => {}
                        }
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(pause) => {}
                        }
                        pause *= 2;
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_keys_round_trip_and_never_look_like_documents() {
        let key: Key = ([7; 32], "shop-1".into());
        let id = format!("{:032x}", 5);
        let k = gone_key(&key, &id);
        assert_eq!(parse_gone_key(&k), Some((key.clone(), id)));
        assert!(!doc_key(&key).starts_with(GONE_PREFIX.as_bytes()));
        assert_eq!(parse_gone_key(&doc_key(&key)), None);
        assert_eq!(parse_gone_key(b"gone/zz/shop/1"), None);
    }
}
