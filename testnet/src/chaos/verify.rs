//! The invariants checked after every fault. Each `verify_*` returns `Err` with what broke.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use degroup_node::api::lease::CheckResponse;
use degroup_node::lease::Role;
use degroup_node::lease::view::{LeaseList, LeaseState, LeaseView};
use degroup_node::plugin::deployment::{State, View};

use super::load::Ledger;
use crate::cluster::Cluster;

/// No acknowledged lease lost: every lease the ledger holds is held by its host and its tenant,
/// signed by both, and in the state the ledger expects (active, or released once the release
/// was acknowledged).
pub(super) async fn verify_no_lease_lost(cluster: &Cluster, ledger: &Ledger) -> anyhow::Result<()> {
    for r in &ledger.leases {
        for (side, node) in [
            ("host", &cluster.nodes[r.host]),
            ("tenant", &cluster.nodes[r.tenant]),
        ] {
            let v: LeaseView = match node.get(&format!("/v1/leases/{}", r.id)).await {
                Ok(v) => v,
                Err(e) => bail!(
                    "acknowledged lease {} is not held by its {side} {}: {e:#}",
                    r.id,
                    node.name
                ),
            };
            let state = v.state;
            let want_ok = if r.released {
                state == LeaseState::Released
            } else if r.release_unconfirmed {
                matches!(state, LeaseState::Released | LeaseState::Active)
            } else {
                state == LeaseState::Active
            };
            if !want_ok {
                bail!(
                    "lease {} is {state} on its {side} {} (expected {})",
                    r.id,
                    node.name,
                    if r.released { "released" } else { "active" }
                );
            }
            if v.verified == Some(false) {
                bail!("lease {} on {} no longer verifies", r.id, node.name);
            }
        }
    }
    Ok(())
}

/// No host over-booked: on every host, the active leases add up to at most what it offers, and
/// the host's own reservation invariant (`/v1/leases-check`) holds.
pub(super) async fn verify_no_overbooking(
    cluster: &Cluster,
    hosts: &[usize],
) -> anyhow::Result<()> {
    for &h in hosts {
        let node = &cluster.nodes[h];
        let check: CheckResponse = node.get("/v1/leases-check").await?;
        if !check.ok {
            bail!(
                "{} breaks its reservation invariant: {}",
                node.name,
                check.problem.as_deref().unwrap_or("no problem given")
            );
        }
        let list: LeaseList = node.get("/v1/leases").await?;
        let offered = &list.host.offered;
        let (mut cpu, mut mem, mut disk) = (0u64, 0u64, 0u64);
        for l in &list.leases {
            if l.role != Role::Host || l.state != LeaseState::Active {
                continue;
            }
            cpu += l.cpu_millis;
            mem += l.mem_bytes;
            disk += l.disk_bytes;
        }
        for (f, total, cap) in [
            ("cpu_millis", cpu, offered.cpu_millis),
            ("mem_bytes", mem, offered.mem_bytes),
            ("disk_bytes", disk, offered.disk_bytes),
        ] {
            if total > cap {
                bail!(
                    "{} is over-booked: {total} {f} leased, {cap} offered",
                    node.name
                );
            }
        }
    }
    Ok(())
}

/// Deployments of active leases run again: every deployment the ledger holds on a lease that is
/// still active is `running` on its host within `limit` (a restarted host resumes them).
pub(super) async fn verify_deployments_running(
    cluster: &Cluster,
    ledger: &Ledger,
    limit: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let mut missing = Vec::new();
        for r in ledger
            .leases
            .iter()
            .filter(|r| !r.released && !r.release_unconfirmed)
        {
            let Some(dep) = &r.deployment else { continue };
            let host = &cluster.nodes[r.host];
            let state = match host.get::<View>(&format!("/v1/deployments/{dep}")).await {
                Ok(v) if v.state == State::Running => continue,
                Ok(v) => v.state.to_string(),
                Err(e) => format!("unknown ({e:#})"),
            };
            missing.push(format!("{dep} on {} is {state}", host.name));
        }
        if missing.is_empty() {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!(
                "{} deployments of active leases are not running {limit:?} after recovery: {}",
                missing.len(),
                missing.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Adverts converged: every node holds every host's advert at the sequence number the host
/// itself is at, within `limit` of `since` (the heal). Returns how long after `since`.
pub(super) async fn verify_adverts_converged(
    cluster: &Cluster,
    hosts: &[usize],
    since: Instant,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = since;
    loop {
        let mut own = HashMap::new();
        for &h in hosts {
            let node = &cluster.nodes[h];
            let seq = node.advert_seq(&node.peer_id).await?;
            own.insert(node.peer_id.clone(), (node.name.clone(), seq));
        }
        let mut behind = Vec::new();
        for (name, seq) in own.values() {
            if seq.is_none() {
                behind.push(format!("{name} holds no advert of its own"));
            }
        }
        let own: HashMap<String, (String, u64)> = own
            .into_iter()
            .filter_map(|(peer, (name, seq))| seq.map(|s| (peer, (name, s))))
            .collect();
        for node in &cluster.nodes {
            let held: HashMap<String, u64> = node
                .adverts()
                .await?
                .into_iter()
                .map(|a| (a.host, a.seq))
                .collect();
            for (peer, (name, seq)) in &own {
                let have = held.get(peer).copied().unwrap_or(0);
                if have < *seq {
                    behind.push(format!("{} has {name} at seq {have} < {seq}", node.name));
                }
            }
        }
        if behind.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!(
                "adverts did not converge within {limit:?} after the heal: {}",
                behind.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The partition is real: a host on the cut-off side changed its offer, and no node on the
/// other side has the new advert while the partition lasts.
pub(super) async fn verify_partition_holds(
    cluster: &Cluster,
    side: &[usize],
    changed: usize,
) -> anyhow::Result<()> {
    let host = &cluster.nodes[changed];
    let own = host.advert_seq(&host.peer_id).await?.unwrap_or(0);
    for (i, node) in cluster.nodes.iter().enumerate() {
        if side.contains(&i) {
            continue;
        }
        let seen = node.advert_seq(&host.peer_id).await?.unwrap_or(0);
        if seen >= own {
            bail!(
                "the partition leaks: {} (other side) already has {}'s advert seq {own}, changed while cut off",
                node.name,
                host.name
            );
        }
    }
    Ok(())
}
