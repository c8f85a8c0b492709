//! The host's book of groups: the newest document per (tenant, name), the deployments known
//! gone, the local deployments' inboxes, and the rate buckets. Every decision of the mesh is
//! made here, under one short lock, without waiting on anything.
//!
//! Authority: a document is the tenant's word on its own deployments only. A member listed
//! on this host counts only while this host runs a deployment of that id for that tenant
//! ([`Local`]); otherwise it is treated as gone. A document is taken only when it lists such
//! a deployment or replaces one held, so what a host holds is bounded by what it runs (and by
//! [`MAX_DOCS`], [`MAX_DOCS_PER_TENANT`]); one that no longer lists anything on this host is
//! dropped.
//!
//! Gone: a member whose deployment stopped, as this host saw (its own) or as its host said in
//! a signed [`super::doc::Left`] notice. Deployment ids are never reused, so gone is for good;
//! the set is cut to the members of each newer document, so it stays bounded.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::doc::{GroupDoc, Left, Member};
use super::rate::Buckets;
use super::wire::{MeshEnvelope, MeshReply};
use crate::identity::peer_id_of;
use crate::plugin::control::{MeshMember, SendError};
use crate::plugin::worker::Inbox;
use crate::signed::Opened;

/// Most group documents a host holds.
pub const MAX_DOCS: usize = 4096;
/// Most group documents a host holds for one tenant.
pub const MAX_DOCS_PER_TENANT: usize = 64;

/// A document's key: tenant key and group name.
pub type Key = ([u8; 32], String);

/// A document held.
#[derive(Debug, Clone)]
pub struct Held {
    pub doc: GroupDoc,
    /// The envelope as received (what is stored).
    pub bytes: Vec<u8>,
    /// The tenant's peer id, as deployment records write it.
    pub tenant_peer: String,
    pub gone: HashSet<String>,
}

/// A deployment running on this host.
#[derive(Debug, Clone)]
pub struct Local {
    /// Its tenant's peer id.
    pub tenant: String,
    pub inbox: Inbox,
}

/// What to do with a document received.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not newer than the one held: acknowledge, change nothing.
    Old,
    /// Store it and hold it.
    Hold,
    /// It lists nothing on this host any more: delete the one held.
    Drop,
}

/// Where a message goes.
#[derive(Debug)]
pub enum Route {
    Local(Inbox),
    /// To another host, in an envelope naming this group and version.
    Remote {
        host: String,
        tenant: [u8; 32],
        group: String,
        version: u64,
    },
}

/// The book.
#[derive(Debug)]
pub struct Book {
    /// This host's peer id.
    me: String,
    docs: HashMap<Key, Held>,
    locals: HashMap<String, Local>,
    /// What local deployments send.
    sent: Buckets,
    /// What remote deployments send to this host's.
    received: Buckets,
}

impl Book {
    pub fn new(me: String) -> Self {
        Self {
            me,
            docs: HashMap::new(),
            locals: HashMap::new(),
            sent: Buckets::default(),
            received: Buckets::default(),
        }
    }

    fn key(doc: &GroupDoc) -> Key {
        (doc.tenant, doc.name.clone())
    }

    /// Whether `m` of a document of `tenant` counts: not gone, and, when listed here, a
    /// deployment this host runs for that tenant.
    fn counts(&self, held: &Held, m: &Member) -> bool {
        if held.gone.contains(&m.id) {
            return false;
        }
        m.host != self.me
            || self
                .locals
                .get(&m.id)
                .is_some_and(|l| l.tenant == held.tenant_peer)
    }

    /// Whether a verified document is newer than the one held and may be held.
    pub fn judge(&self, doc: &GroupDoc) -> Result<Verdict, String> {
        let held = self.docs.get(&Self::key(doc));
        if let Some(h) = held
            && h.doc.version >= doc.version
        {
            return Ok(Verdict::Old);
        }
        let tenant_peer = tenant_peer(&doc.tenant);
        let here = doc.members.iter().any(|m| {
            m.host == self.me
                && self
                    .locals
                    .get(&m.id)
                    .is_some_and(|l| l.tenant == tenant_peer)
        });
        let of_tenant = || self.docs.keys().filter(|k| k.0 == doc.tenant).count();
        match (held.is_some(), here) {
            (true, true) => Ok(Verdict::Hold),
            (false, true) if self.docs.len() >= MAX_DOCS => {
                Err(format!("this host holds {MAX_DOCS} groups already"))
            }
            (false, true) if of_tenant() >= MAX_DOCS_PER_TENANT => Err(format!(
                "this host holds {MAX_DOCS_PER_TENANT} groups of this tenant already"
            )),
            (false, true) => Ok(Verdict::Hold),
            (true, false) => Ok(Verdict::Drop),
            (false, false) => {
                Err("the group lists no deployment of its tenant on this host".into())
            }
        }
    }

    /// Holds a verified document (after it is stored), unless one as new is held.
    pub fn hold(&mut self, doc: GroupDoc, bytes: Vec<u8>) {
        let key = Self::key(&doc);
        let gone = match self.docs.get(&key) {
            Some(h) if h.doc.version >= doc.version => return,
            Some(h) => h
                .gone
                .iter()
                .filter(|id| doc.member(id).is_some())
                .cloned()
                .collect(),
            None => HashSet::new(),
        };
        let tenant_peer = tenant_peer(&doc.tenant);
        self.docs.insert(
            key,
            Held {
                doc,
                bytes,
                tenant_peer,
                gone,
            },
        );
    }

    /// Forgets a document (after its deletion is stored).
    pub fn forget(&mut self, key: &Key, version: u64) {
        if self.docs.get(key).is_some_and(|h| h.doc.version < version) {
            self.docs.remove(key);
        }
    }

    /// A deployment's worker runs here.
    pub fn attach(&mut self, id: &str, tenant: &str, inbox: Inbox) {
        self.locals.insert(
            id.to_owned(),
            Local {
                tenant: tenant.to_owned(),
                inbox,
            },
        );
    }

    /// Its worker is gone (it may come back: an upgrade, a restart).
    pub fn detach(&mut self, id: &str) {
        self.locals.remove(id);
    }

    /// A deployment of this host stopped for good: gone from its groups at once. Returns, per
    /// group it was in, the notice to sign and the other hosts to tell.
    pub fn stopped(&mut self, id: &str, now_ms: u64) -> Vec<(Left, Vec<String>)> {
        let tenant = self.locals.get(id).map(|l| l.tenant.clone());
        self.sent.forget(id);
        let me = self.me.clone();
        let mut out = Vec::new();
        for h in self.docs.values_mut() {
            let listed = h.doc.member(id).is_some_and(|m| m.host == me);
            if !listed || tenant.as_ref().is_some_and(|t| *t != h.tenant_peer) {
                continue;
            }
            h.gone.insert(id.to_owned());
            let mut hosts: Vec<String> = h
                .doc
                .members
                .iter()
                .filter(|m| m.host != me)
                .map(|m| m.host.clone())
                .collect();
            hosts.sort();
            hosts.dedup();
            out.push((
                Left {
                    deployment: id.to_owned(),
                    tenant: h.doc.tenant,
                    group: h.doc.name.clone(),
                    at_ms: now_ms,
                },
                hosts,
            ));
        }
        out
    }

    /// A verified leave notice: taken only from the host the newest document lists the
    /// deployment on. The document to mark it gone in (once that is stored), if any.
    pub fn left(&self, notice: &Opened<Left>) -> Result<Option<Key>, String> {
        let l = &notice.value;
        let signer = peer_id_of(&notice.signer).to_string();
        let key = (l.tenant, l.group.clone());
        let Some(h) = self.docs.get(&key) else {
            // Nothing held: nothing to forget.
            return Ok(None);
        };
        match h.doc.member(&l.deployment) {
            Some(m) if m.host == signer => Ok((!h.gone.contains(&l.deployment)).then_some(key)),
            Some(_) => Err("the notice is not from the deployment's host".into()),
            None => Ok(None),
        }
    }

    /// Marks a listed member of a held document gone.
    pub fn mark_gone(&mut self, key: &Key, id: &str) {
        if let Some(h) = self.docs.get_mut(key)
            && h.doc.member(id).is_some()
        {
            h.gone.insert(id.to_owned());
        }
    }

    /// The members of a held document known gone.
    pub fn gone_of(&self, key: &Key) -> Vec<String> {
        self.docs
            .get(key)
            .map(|h| h.gone.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The document `id` (a local deployment) is a counted member of.
    fn group_of(&self, id: &str) -> Option<&Held> {
        let local = self.locals.get(id)?;
        self.docs.values().find(|h| {
            h.tenant_peer == local.tenant
                && !h.gone.contains(id)
                && h.doc.member(id).is_some_and(|m| m.host == self.me)
        })
    }

    /// Whether `id` is known here at all: a local deployment, or listed in a document.
    fn known(&self, id: &str) -> bool {
        self.locals.contains_key(id) || self.docs.values().any(|h| h.doc.member(id).is_some())
    }

    /// The members of `id`'s group, ordered by id; empty when it is in none.
    pub fn members(&self, id: &str) -> Vec<MeshMember> {
        let Some(h) = self.group_of(id) else {
            return Vec::new();
        };
        h.doc
            .members
            .iter()
            .filter(|m| self.counts(h, m))
            .map(|m| MeshMember {
                id: m.id.clone(),
                host: m.host.clone(),
                package: m.package.clone(),
                role: m.role.clone(),
            })
            .collect()
    }

    /// The other counted members of `id`'s group.
    pub fn others(&self, id: &str) -> Vec<String> {
        self.members(id)
            .into_iter()
            .map(|m| m.id)
            .filter(|m| m != id)
            .collect()
    }

    /// Decides where a message from the local deployment `from` goes, charging its rate.
    pub fn route(
        &mut self,
        from: &str,
        to: &str,
        len: usize,
        now: Instant,
    ) -> Result<Route, SendError> {
        if !self.sent.take(from, len, now) {
            return Err(SendError::RateLimited);
        }
        let Some(h) = self.group_of(from) else {
            return Err(if self.known(to) {
                SendError::NotInGroup
            } else {
                SendError::Unknown
            });
        };
        let Some(m) = h.doc.member(to).filter(|m| self.counts(h, m)) else {
            return Err(if self.known(to) {
                SendError::NotInGroup
            } else {
                SendError::Unknown
            });
        };
        if m.host == self.me {
            return self
                .locals
                .get(to)
                .map(|l| Route::Local(l.inbox.clone()))
                .ok_or(SendError::Unreachable);
        }
        Ok(Route::Remote {
            host: m.host.clone(),
            tenant: h.doc.tenant,
            group: h.doc.name.clone(),
            version: h.doc.version,
        })
    }

    /// Checks a verified mesh envelope from `peer`; the receiver's inbox when it may be
    /// delivered.
    pub fn inbound(
        &mut self,
        opened: &Opened<MeshEnvelope>,
        peer: &str,
        now: Instant,
    ) -> Result<Inbox, (MeshReply, &'static str)> {
        let e = &opened.value;
        let signer = peer_id_of(&opened.signer).to_string();
        if signer != peer {
            return Err((MeshReply::Refused, "forged"));
        }
        let Some(h) = self.docs.get(&(e.tenant, e.group.clone())) else {
            return Err(if self.locals.contains_key(&e.to) {
                (MeshReply::NotInGroup, "not_in_group")
            } else {
                (MeshReply::Unknown, "unknown")
            });
        };
        let Some(from) = h.doc.member(&e.from) else {
            return Err((MeshReply::NotInGroup, "not_in_group"));
        };
        if from.host != signer {
            return Err((MeshReply::Refused, "forged"));
        }
        if !self.counts(h, from) {
            return Err((MeshReply::NotInGroup, "not_in_group"));
        }
        let Some(to) = h.doc.member(&e.to).filter(|m| self.counts(h, m)) else {
            return Err(
                if h.doc.member(&e.to).is_some() || self.locals.contains_key(&e.to) {
                    (MeshReply::NotInGroup, "not_in_group")
                } else {
                    (MeshReply::Unknown, "unknown")
                },
            );
        };
        if to.host != self.me {
            return Err((MeshReply::Unknown, "unknown"));
        }
        let inbox = self
            .locals
            .get(&e.to)
            .map(|l| l.inbox.clone())
            .ok_or((MeshReply::Unreachable, "unreachable"))?;
        if !self.received.take(&e.from, e.payload.len(), now) {
            return Err((MeshReply::RateLimited, "rate_limited"));
        }
        Ok(inbox)
    }

    /// The newest document of (tenant, name), if held.
    pub fn held(&self, key: &Key) -> Option<&Held> {
        self.docs.get(key)
    }
}

/// A tenant key's peer id, as deployment records write it.
pub fn tenant_peer(key: &[u8; 32]) -> String {
    crate::identity::peer_id_of_bytes(key)
        .map(|p| p.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
