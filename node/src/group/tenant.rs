//! The tenant's groups: create, add a member, remove one, show.
//!
//! Each group is stored (`groups` tree, by name) as its newest signed document plus the lease
//! of each member (so a lease that ends removes its members). A change builds the next
//! version, signs it, stores it durably, and only then is it answered and pushed to every
//! host of the old and the new version (a host whose last member left learns it too).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::doc::{GroupDoc, MAX_MEMBERS, Member, check_doc, check_name, open_doc};
use super::{GroupError, Groups, Inner, lock};
use crate::identity::Identity;
use crate::resources::{LeaseId, now_ms};
use crate::signed::Envelope;
use crate::store::{Domain, Op, Store, StoreError};

/// Most groups one tenant node keeps.
pub const MAX_GROUPS: usize = 256;

/// A group as `degroup group show --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub name: String,
    /// The tenant's peer id.
    pub tenant: String,
    pub version: u64,
    pub members: Vec<MemberView>,
}

/// A member as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: String,
    pub host: String,
    pub package: String,
    pub role: String,
    /// `starting`, `running`, … as its host reports; `unknown` when not known.
    pub state: String,
}

/// A group as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    envelope: Vec<u8>,
    leases: Vec<(String, LeaseId)>,
}

/// A group of this tenant.
#[derive(Debug, Clone)]
pub struct TenantGroup {
    pub envelope: Vec<u8>,
    pub doc: GroupDoc,
    /// Each member's lease.
    pub leases: Vec<(String, LeaseId)>,
}

impl TenantGroup {
    /// The view, with member states from `states` (by deployment id).
    pub fn view(&self, states: &HashMap<String, String>) -> GroupView {
        GroupView {
            name: self.doc.name.clone(),
            tenant: super::book::tenant_peer(&self.doc.tenant),
            version: self.doc.version,
            members: self
                .doc
                .members
                .iter()
                .map(|m| MemberView {
                    id: m.id.clone(),
                    host: m.host.clone(),
                    package: m.package.clone(),
                    role: m.role.clone(),
                    state: states
                        .get(&m.id)
                        .cloned()
                        .unwrap_or_else(|| "unknown".into()),
                })
                .collect(),
        }
    }

    fn hosts(&self) -> BTreeSet<String> {
        self.doc.members.iter().map(|m| m.host.clone()).collect()
    }
}

/// A signed version to push.
pub(super) struct Push {
    pub(super) name: String,
    /// Its version: a push task never trades a newer one for it.
    pub(super) version: u64,
    pub(super) bytes: Arc<Vec<u8>>,
    pub(super) hosts: BTreeSet<String>,
}

/// Every group of this tenant.
#[derive(Debug, Default)]
pub struct Tenants {
    groups: BTreeMap<String, TenantGroup>,
}

impl Tenants {
    /// Loads the stored groups (each signature checked again).
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let mut groups = BTreeMap::new();
        for item in store.tree(Domain::Groups)?.scan_prefix(b"") {
            let (k, v) = item?;
            let stored: Result<Stored, _> = crate::signed::decode_exact(&v);
            match stored.map_err(|e| e.to_string()).and_then(|s| {
                open_doc(&s.envelope)
                    .map(|o| (s, o.value))
                    .map_err(|e| e.to_string())
            }) {
                Ok((s, doc)) => {
                    groups.insert(
                        doc.name.clone(),
                        TenantGroup {
                            envelope: s.envelope,
                            doc,
                            leases: s.leases,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(&k), error = %e, "unreadable group kept aside")
                }
            }
        }
        Ok(Self { groups })
    }

    /// Signs `doc`, stores it durably with `leases`, and keeps it.
    fn commit(
        &mut self,
        store: &Store,
        identity: &Identity,
        doc: GroupDoc,
        leases: Vec<(String, LeaseId)>,
    ) -> Result<TenantGroup, GroupError> {
        // What hosts would refuse is refused here, before it is signed.
        check_doc(&doc).map_err(GroupError::BadInput)?;
        let envelope = Envelope::seal_kind(identity.signing_key(), &doc)
            .map_err(|e| GroupError::Internal(format!("cannot sign the group: {e}")))?
            .to_bytes();
        let stored = Stored {
            envelope: envelope.clone(),
            leases: leases.clone(),
        };
        let value = postcard::to_stdvec(&stored)
            .map_err(|e| GroupError::Internal(format!("cannot encode the group: {e}")))?;
        store.apply_durable(&[Op::Put(Domain::Groups, doc.name.as_bytes().to_vec(), value)])?;
        let g = TenantGroup {
            envelope,
            doc,
            leases,
        };
        self.groups.insert(g.doc.name.clone(), g.clone());
        Ok(g)
    }

    /// The next version of `name`, changed by `f`; what to push, `None` when `f` changed
    /// nothing.
    fn change(
        &mut self,
        store: &Store,
        identity: &Identity,
        name: &str,
        f: impl FnOnce(&mut Vec<Member>, &mut Vec<(String, LeaseId)>) -> bool,
    ) -> Result<Option<Push>, GroupError> {
        let old = self
            .groups
            .get(name)
            .ok_or_else(|| not_found(name))?
            .clone();
        let mut members = old.doc.members.clone();
        let mut leases = old.leases.clone();
        if !f(&mut members, &mut leases) {
            return Ok(None);
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members.dedup_by(|a, b| a.id == b.id);
        let doc = GroupDoc {
            members,
            version: old.doc.version + 1,
            issued_ms: now_ms(),
            ..old.doc.clone()
        };
        let new = self.commit(store, identity, doc, leases)?;
        let mut hosts = old.hosts();
        hosts.extend(new.hosts());
        Ok(Some(Push {
            name: name.to_owned(),
            version: new.doc.version,
            bytes: Arc::new(new.envelope),
            hosts,
        }))
    }
}

fn not_found(name: &str) -> GroupError {
    GroupError::NotFound(format!(
        "no group {name:?} on this node; create it with `degroup group create {name}`"
    ))
}

impl Inner {
    fn tenants(&self) -> std::sync::MutexGuard<'_, Tenants> {
        lock(&self.tenant)
    }

    /// Removes the members of a lease that ended, from every group.
    pub(super) fn lease_ended(self: &Arc<Self>, lease: &LeaseId) -> Result<(), GroupError> {
        let names: Vec<String> = self
            .tenants()
            .groups
            .values()
            .filter(|g| g.leases.iter().any(|(_, l)| l == lease))
            .map(|g| g.doc.name.clone())
            .collect();
        for name in names {
            let push =
                self.tenants()
                    .change(&self.store, &self.identity, &name, |members, leases| {
                        let gone: Vec<String> = leases
                            .iter()
                            .filter(|(_, l)| l == lease)
                            .map(|(id, _)| id.clone())
                            .collect();
                        members.retain(|m| !gone.contains(&m.id));
                        leases.retain(|(_, l)| l != lease);
                        !gone.is_empty()
                    })?;
            if let Some(p) = push {
                tracing::info!(group = %name, "members of an ended lease removed");
                self.push(p);
            }
        }
        Ok(())
    }
}

impl Groups {
    /// `degroup group create`: a signed, empty group, version 1.
    pub fn create(&self, name: &str) -> Result<GroupView, GroupError> {
        check_name(name).map_err(GroupError::BadInput)?;
        let inner = &self.inner;
        let mut t = inner.tenants();
        if t.groups.contains_key(name) {
            return Err(GroupError::Conflict(format!(
                "group {name:?} exists already; `degroup group show {name}` shows it"
            )));
        }
        if t.groups.len() >= MAX_GROUPS {
            return Err(GroupError::Conflict(format!(
                "this node has {MAX_GROUPS} groups already"
            )));
        }
        let doc = GroupDoc {
            name: name.to_owned(),
            tenant: inner.identity.verifying_key().to_bytes(),
            version: 1,
            issued_ms: now_ms(),
            members: Vec::new(),
        };
        let g = t.commit(&inner.store, &inner.identity, doc, Vec::new())?;
        tracing::info!(group = %name, "group created");
        Ok(g.view(&HashMap::new()))
    }

    /// One group of this tenant.
    pub fn get(&self, name: &str) -> Result<TenantGroup, GroupError> {
        check_name(name).map_err(GroupError::BadInput)?;
        self.inner
            .tenants()
            .groups
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))
    }

    /// Every group of this tenant, by name.
    pub fn list(&self) -> Vec<TenantGroup> {
        self.inner.tenants().groups.values().cloned().collect()
    }

    /// Adds a deployment the host confirmed; the new version goes to every host.
    pub fn add_member(
        &self,
        name: &str,
        member: Member,
        lease: LeaseId,
    ) -> Result<TenantGroup, GroupError> {
        let inner = &self.inner;
        let push =
            inner
                .tenants()
                .change(&inner.store, &inner.identity, name, |members, leases| {
                    if members.len() >= MAX_MEMBERS {
                        return false;
                    }
                    leases.retain(|(id, _)| *id != member.id);
                    leases.push((member.id.clone(), lease));
                    members.retain(|m| m.id != member.id);
                    members.push(member);
                    true
                })?;
        match push {
            Some(p) => {
                inner.push(p);
                self.get(name)
            }
            None => Err(GroupError::Conflict(format!(
                "group {name:?} has {MAX_MEMBERS} members already; the deployment runs but is in no group"
            ))),
        }
    }

    /// Removes a deployment from every group of this tenant (it stopped).
    pub fn remove_deployment(&self, id: &str) -> Result<(), GroupError> {
        let inner = &self.inner;
        let names: Vec<String> = inner
            .tenants()
            .groups
            .values()
            .filter(|g| g.doc.member(id).is_some())
            .map(|g| g.doc.name.clone())
            .collect();
        for name in names {
            let push = inner.tenants().change(
                &inner.store,
                &inner.identity,
                &name,
                |members, leases| {
                    let before = members.len();
                    members.retain(|m| m.id != id);
                    leases.retain(|(m, _)| m != id);
                    members.len() != before
                },
            )?;
            if let Some(p) = push {
                tracing::info!(group = %name, deployment = %id, "member removed");
                inner.push(p);
            }
        }
        Ok(())
    }

    /// Pushes every group's newest version to its hosts (at start-up).
    pub(super) fn push_all(&self) {
        let all: Vec<Push> = self
            .inner
            .tenants()
            .groups
            .values()
            .map(|g| Push {
                name: g.doc.name.clone(),
                version: g.doc.version,
                bytes: Arc::new(g.envelope.clone()),
                hosts: g.hosts(),
            })
            .collect();
        for p in all {
            self.inner.push(p);
        }
    }
}
