//! Whether a verified deploy or upgrade may be installed, given the deployments that exist and
//! the host's limits. Pure: it reads the records and decides; the actor writes.

use std::collections::HashMap;

use super::super::deployment::{Record, Side, State};
use super::super::wire::{Refusal, RefusalCode};

/// Checks an install against what exists and the host's limits; returns the record to
/// write (generation set), or a refusal.
pub(crate) fn admit(
    records: &HashMap<String, Record>,
    max_deployments: usize,
    mut record: Record,
    upgrade: bool,
) -> Result<Admitted, Refusal> {
    let existing = records.get(&record.id).cloned();
    if let Some(old) = &existing {
        if old.tenant != record.tenant || old.lease_id != record.lease_id {
            return Err(Refusal::new(
                RefusalCode::Invalid,
                "that deployment id is taken; pick another",
            ));
        }
        if old.state == State::Stopped {
            return Err(Refusal::new(
                RefusalCode::Conflict,
                format!("deployment {} was stopped; deploy anew", old.id),
            ));
        }
        // A child is its parent's: deployed over (or "upgraded"), it would become a
        // deployment of its own with the whole lease, outside the parent's share.
        if let Some(c) = &old.child {
            return Err(Refusal::new(
                RefusalCode::Conflict,
                format!(
                    "{} is a child workload of deployment {}; only its parent starts and \
                     stops it",
                    old.id, c.parent
                ),
            ));
        }
    }
    if upgrade {
        let Some(old) = existing.clone() else {
            return Err(Refusal::new(
                RefusalCode::Unknown,
                format!("no deployment {} of yours to upgrade", record.id),
            ));
        };
        record.generation = old.generation.saturating_add(1);
        record.created_ms = old.created_ms;
    } else if let Some(old) = &existing {
        // A retry of the same deploy: answer with what runs.
        // (The signed request names the package's hash; the same bytes are the same deploy.)
        if old.request == record.request {
            return Ok(Admitted::Retry(Box::new(old.clone())));
        }
        return Err(Refusal::new(
            RefusalCode::Conflict,
            format!(
                "deployment {} exists; upgrade it to change its code",
                old.id
            ),
        ));
    } else {
        // The lease's memory, CPU and disk are the limits of one deployment: a second live
        // one on the same lease would double them (its children are carved out of it).
        if let Some(other) = records.values().find(|r| {
            r.side == Side::Host
                && r.lease_id == record.lease_id
                && r.state.is_live()
                && r.child.is_none()
        }) {
            return Err(Refusal::new(
                RefusalCode::Conflict,
                format!(
                    "lease {} already runs deployment {}; upgrade that one, or stop it first",
                    hex::encode(record.lease_id),
                    other.id
                ),
            ));
        }
        let live = records
            .values()
            .filter(|r| r.side == Side::Host && r.state.is_live())
            .count();
        let max = max_deployments;
        if live >= max {
            return Err(Refusal::new(
                RefusalCode::Unavailable,
                format!("this host runs its maximum of {max} deployments; try another host"),
            ));
        }
        record.generation = 1;
    }
    Ok(Admitted::New {
        record: Box::new(record),
        existing: existing.map(Box::new),
    })
}

/// What [`admit`] decided.
pub(crate) enum Admitted {
    /// The same deploy again: answer with what runs.
    Retry(Box<Record>),
    /// Write this record (and replace `existing`, for an upgrade).
    New {
        record: Box<Record>,
        existing: Option<Box<Record>>,
    },
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{Admitted, admit};
    use crate::plugin::control::ChildLimits;
    use crate::plugin::deployment::ChildOf;
    use crate::plugin::deployment::tests::record;
    use crate::plugin::wire::RefusalCode;

    #[test]
    fn a_child_cannot_be_deployed_over_or_upgraded_into_a_deployment() {
        let child = record(Some(ChildOf {
            parent: "cd".repeat(16),
            limits: ChildLimits::default(),
        }));
        let records = HashMap::from([(child.id.clone(), child.clone())]);
        let mut over = child.clone();
        over.child = None;
        for upgrade in [true, false] {
            match admit(&records, 64, over.clone(), upgrade) {
                Err(r) => assert_eq!(r.code, RefusalCode::Conflict, "{}", r.message),
                Ok(_) => panic!("a child taken over (upgrade: {upgrade})"),
            }
        }
        // A deployment of its own is upgraded as before.
        let own = record(None);
        let records = HashMap::from([(own.id.clone(), own.clone())]);
        assert!(matches!(
            admit(&records, 64, own, true),
            Ok(Admitted::New { .. })
        ));
    }
}
