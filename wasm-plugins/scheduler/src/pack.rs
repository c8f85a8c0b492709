//! Placement, free of host calls so that `cargo test` runs it on the build machine: workload
//! parsing, and first-fit-decreasing bin packing onto the agents' slices.
//!
//! A [`Cluster`] knows the workloads asked for, the live agents with their capacity (what an
//! agent's slice offers children: its lease less a reserve for the agent itself), and where
//! each workload is placed. Placements name an agent by id and may outlive what the cluster
//! knows of that agent (after a leader restart, an agent's capacity is unknown until it
//! answers a heartbeat): [`Cluster::evict`] is what turns an agent's placements back into
//! pending workloads, and [`Cluster::place_pending`] places what is pending.
//!
//! Packing is first-fit decreasing: pending workloads are tried largest first (by their
//! dominant share of the largest agent, ties by name), each onto the first agent with room,
//! agents being ordered by how much room they have left (most first, ties by id) and
//! re-ordered after each placement, so equal workloads spread over equal agents and the
//! outcome depends only on the state, never on arrival order.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest workload name, in bytes (names become KV keys `placement/<name>`).
pub const MAX_NAME: usize = 64;
/// Most workloads a leader keeps.
pub const MAX_WORKLOADS: usize = 256;
/// Longest package reference, in bytes.
pub const MAX_PACKAGE: usize = 200;

/// What an agent offers its children, or what a workload needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub mem_mib: u64,
}

impl Capacity {
    /// `self` less `other`, floored at zero.
    pub fn minus(self, other: Capacity) -> Capacity {
        Capacity {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            mem_mib: self.mem_mib.saturating_sub(other.mem_mib),
        }
    }

    /// Whether `need` fits in `self`.
    pub fn holds(self, need: Capacity) -> bool {
        need.cpu_millis <= self.cpu_millis && need.mem_mib <= self.mem_mib
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} millis / {} MiB", self.cpu_millis, self.mem_mib)
    }
}

/// A workload request: a name, its size, and the package its agent runs as a child (none: a
/// placement only, nothing is started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub cpu_millis: u64,
    #[serde(alias = "mem_mb")]
    pub mem_mib: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

impl Workload {
    pub fn need(&self) -> Capacity {
        Capacity {
            cpu_millis: self.cpu_millis,
            mem_mib: self.mem_mib,
        }
    }
}

/// Why a workload was not accepted or not placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    InvalidName(String),
    InvalidPackage(String),
    Empty,
    AlreadySubmitted,
    TooMany,
    NoAgent,
    TooLarge { need: Capacity, largest: Capacity },
    NoRoom { need: Capacity },
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName(why) => write!(f, "invalid name: {why}"),
            Self::InvalidPackage(why) => write!(f, "invalid package: {why}"),
            Self::Empty => write!(f, "asks for no cpu and no memory"),
            Self::AlreadySubmitted => write!(f, "already submitted (remove it first)"),
            Self::TooMany => write!(f, "the leader keeps at most {MAX_WORKLOADS} workloads"),
            Self::NoAgent => write!(f, "no live agent"),
            Self::TooLarge { need, largest } => write!(
                f,
                "larger than any live agent (needs {need}, the largest offers {largest})"
            ),
            Self::NoRoom { need } => write!(f, "no live agent has room for {need}"),
        }
    }
}

/// Parses `name:cpu_millis:mem_mib[:package],...` (the `workloads` config value); the package
/// is the rest of the entry, so `blake3:<hex>` works. Blank entries are skipped.
pub fn parse_workloads(spec: &str) -> Result<Vec<Workload>, String> {
    let mut out = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parts: Vec<&str> = entry.splitn(4, ':').map(str::trim).collect();
        let (name, cpu, mem, package) = match parts[..] {
            [name, cpu, mem] => (name, cpu, mem, None),
            [name, cpu, mem, package] => (name, cpu, mem, Some(package.to_string())),
            _ => {
                return Err(format!(
                    "workloads: `{entry}` is not name:cpu_millis:mem_mib[:package]"
                ));
            }
        };
        let num = |what: &str, v: &str| {
            v.parse::<u64>()
                .map_err(|e| format!("workloads: `{entry}`: {what} `{v}`: {e}"))
        };
        out.push(Workload {
            name: name.to_string(),
            cpu_millis: num("cpu_millis", cpu)?,
            mem_mib: num("mem_mib", mem)?,
            package,
        });
    }
    if out.len() > MAX_WORKLOADS {
        return Err(format!("workloads: more than {MAX_WORKLOADS}"));
    }
    Ok(out)
}

/// Checks a workload's name, size and package reference.
pub fn check(w: &Workload) -> Result<(), Reject> {
    let name = &w.name;
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Reject::InvalidName(format!(
            "must be 1 to {MAX_NAME} bytes"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Reject::InvalidName(
            "only letters, digits, `-`, `_` and `.`".into(),
        ));
    }
    if let Some(p) = &w.package
        && (p.is_empty() || p.len() > MAX_PACKAGE || p.chars().any(char::is_whitespace))
    {
        return Err(Reject::InvalidPackage(format!(
            "`{p}` must be 1 to {MAX_PACKAGE} bytes without spaces"
        )));
    }
    if w.cpu_millis == 0 && w.mem_mib == 0 {
        return Err(Reject::Empty);
    }
    Ok(())
}

/// The workloads, the live agents and the placements.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    workloads: BTreeMap<String, Workload>,
    /// Live agents with a known capacity.
    agents: BTreeMap<String, Capacity>,
    /// Workload name → agent id.
    placements: BTreeMap<String, String>,
}

impl Cluster {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn workloads(&self) -> &BTreeMap<String, Workload> {
        &self.workloads
    }

    pub fn placements(&self) -> &BTreeMap<String, String> {
        &self.placements
    }

    /// Names placed on `agent`, in order.
    pub fn on(&self, agent: &str) -> Vec<String> {
        self.placements
            .iter()
            .filter(|(_, a)| a.as_str() == agent)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Workloads not placed, in name order.
    pub fn pending(&self) -> Vec<String> {
        self.workloads
            .keys()
            .filter(|n| !self.placements.contains_key(*n))
            .cloned()
            .collect()
    }

    /// What the placements on `agent` take.
    pub fn used(&self, agent: &str) -> Capacity {
        self.placements
            .iter()
            .filter(|(_, a)| a.as_str() == agent)
            .filter_map(|(n, _)| self.workloads.get(n))
            .fold(Capacity::default(), |acc, w| Capacity {
                cpu_millis: acc.cpu_millis + w.cpu_millis,
                mem_mib: acc.mem_mib + w.mem_mib,
            })
    }

    /// What `agent` has left (zero when unknown).
    pub fn free(&self, agent: &str) -> Capacity {
        self.agents
            .get(agent)
            .map_or_else(Capacity::default, |c| c.minus(self.used(agent)))
    }

    /// Accepts a workload request (pending until placed).
    pub fn submit(&mut self, w: Workload) -> Result<(), Reject> {
        check(&w)?;
        if self.workloads.contains_key(&w.name) {
            return Err(Reject::AlreadySubmitted);
        }
        if self.workloads.len() >= MAX_WORKLOADS {
            return Err(Reject::TooMany);
        }
        self.workloads.insert(w.name.clone(), w);
        Ok(())
    }

    /// Forgets a workload; returns it and the agent it was placed on.
    pub fn remove(&mut self, name: &str) -> Option<(Workload, Option<String>)> {
        let w = self.workloads.remove(name)?;
        Some((w, self.placements.remove(name)))
    }

    /// Takes back a placement found in storage (the agent need not be known yet).
    pub fn restore(&mut self, name: &str, agent: &str) -> bool {
        if !self.workloads.contains_key(name) || self.placements.contains_key(name) {
            return false;
        }
        self.placements.insert(name.to_string(), agent.to_string());
        true
    }

    /// Forgets where `name` was placed (it is pending again).
    pub fn unplace(&mut self, name: &str) -> Option<String> {
        self.placements.remove(name)
    }

    /// Marks `agent` live with `capacity` (or updates it).
    pub fn set_agent(&mut self, agent: &str, capacity: Capacity) {
        self.agents.insert(agent.to_string(), capacity);
    }

    /// `agent` is dead or gone: forgets it; its workloads are pending again. Returns their
    /// names.
    pub fn evict(&mut self, agent: &str) -> Vec<String> {
        self.agents.remove(agent);
        let names = self.on(agent);
        for n in &names {
            self.placements.remove(n);
        }
        names
    }

    /// The size of `need` as its dominant share of `of`, in parts per million.
    fn share(need: Capacity, of: Capacity) -> u64 {
        let ppm = |x: u64, cap: u64| x.saturating_mul(1_000_000) / cap.max(1);
        ppm(need.cpu_millis, of.cpu_millis).max(ppm(need.mem_mib, of.mem_mib))
    }

    /// How much room `agent` has left, in parts per million of its capacity (its scarcer
    /// resource).
    fn room(&self, agent: &str) -> u64 {
        let Some(cap) = self.agents.get(agent) else {
            return 0;
        };
        let free = self.free(agent);
        let ppm = |x: u64, c: u64| x.saturating_mul(1_000_000) / c.max(1);
        ppm(free.cpu_millis, cap.cpu_millis).min(ppm(free.mem_mib, cap.mem_mib))
    }

    /// Places every pending workload, first-fit decreasing (see the module doc). Returns each
    /// with its outcome, in the order tried: `Ok(agent id)` or why it stays pending.
    pub fn place_pending(&mut self) -> Vec<(String, Result<String, Reject>)> {
        let largest = self
            .agents
            .values()
            .copied()
            .max_by_key(|c| (c.cpu_millis, c.mem_mib))
            .unwrap_or_default();
        let mut batch: Vec<Workload> = self
            .pending()
            .iter()
            .filter_map(|n| self.workloads.get(n).cloned())
            .collect();
        batch.sort_by(|a, b| {
            Self::share(b.need(), largest)
                .cmp(&Self::share(a.need(), largest))
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut out = Vec::new();
        for w in batch {
            let r = self.place_one(&w);
            if let Ok(agent) = &r {
                self.placements.insert(w.name.clone(), agent.clone());
            }
            out.push((w.name, r));
        }
        out
    }

    fn place_one(&self, w: &Workload) -> Result<String, Reject> {
        if self.agents.is_empty() {
            return Err(Reject::NoAgent);
        }
        let need = w.need();
        if !self.agents.values().any(|c| c.holds(need)) {
            let largest = self
                .agents
                .values()
                .copied()
                .max_by_key(|c| (c.cpu_millis, c.mem_mib))
                .unwrap_or_default();
            return Err(Reject::TooLarge { need, largest });
        }
        let mut order: Vec<(&String, u64)> =
            self.agents.keys().map(|a| (a, self.room(a))).collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        order
            .into_iter()
            .map(|(a, _)| a)
            .find(|a| self.free(a).holds(need))
            .cloned()
            .ok_or(Reject::NoRoom { need })
    }

    /// One line: workloads placed and pending, then each live agent's use in percent.
    pub fn summary(&self) -> String {
        let pct = |x: u64, cap: u64| x.saturating_mul(100) / cap.max(1);
        let mut s = format!(
            "utilization: {} workloads, {} placed, {} pending, on {} agents",
            self.workloads.len(),
            self.placements.len(),
            self.pending().len(),
            self.agents.len()
        );
        for (a, cap) in &self.agents {
            let used = self.used(a);
            s.push_str(&format!(
                "; {}: {} workloads, cpu {}%, mem {}%",
                short(a),
                self.on(a).len(),
                pct(used.cpu_millis, cap.cpu_millis),
                pct(used.mem_mib, cap.mem_mib),
            ));
        }
        s
    }
}

/// The first 8 characters of an id, for summaries.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str, cpu: u64, mem: u64) -> Workload {
        Workload {
            name: name.into(),
            cpu_millis: cpu,
            mem_mib: mem,
            package: Some("hello@0.1.0".into()),
        }
    }

    fn cap(cpu: u64, mem: u64) -> Capacity {
        Capacity {
            cpu_millis: cpu,
            mem_mib: mem,
        }
    }

    fn cluster(agents: &[(&str, u64, u64)], batch: &[Workload]) -> Cluster {
        let mut c = Cluster::new();
        for (a, cpu, mem) in agents {
            c.set_agent(a, cap(*cpu, *mem));
        }
        for x in batch {
            assert_eq!(c.submit(x.clone()), Ok(()));
        }
        c
    }

    #[test]
    fn parses_workloads_with_and_without_a_package() {
        assert_eq!(
            parse_workloads(" web:100:32:hello@0.1.0, db:1000:2048 ,k:1:1:blake3:ab12"),
            Ok(vec![
                w("web", 100, 32),
                Workload {
                    package: None,
                    ..w("db", 1000, 2048)
                },
                Workload {
                    package: Some("blake3:ab12".into()),
                    ..w("k", 1, 1)
                },
            ])
        );
        assert!(parse_workloads("web:500").is_err());
        assert!(parse_workloads("web:x:1").is_err());
    }

    #[test]
    fn equal_workloads_spread_over_equal_agents() {
        let batch: Vec<Workload> = (0..6).map(|i| w(&format!("w{i}"), 100, 32)).collect();
        let mut c = cluster(&[("a", 900, 448), ("b", 900, 448), ("c", 900, 448)], &batch);
        let out = c.place_pending();
        assert!(out.iter().all(|(_, r)| r.is_ok()), "{out:?}");
        for a in ["a", "b", "c"] {
            assert_eq!(c.on(a).len(), 2, "{:?}", c.placements());
        }
        assert!(c.pending().is_empty());
    }

    #[test]
    fn first_fit_decreasing_places_the_largest_first() {
        // Arrival order would strand `c`; largest first fits everything.
        let batch = vec![
            w("a", 300, 1),
            w("b", 300, 1),
            w("c", 700, 1),
            w("d", 700, 1),
        ];
        let mut c = cluster(&[("x", 1000, 100), ("y", 1000, 100)], &batch);
        let out = c.place_pending();
        let order: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(order, ["c", "d", "a", "b"]);
        assert!(out.iter().all(|(_, r)| r.is_ok()), "{out:?}");
        assert_eq!(c.used("x").cpu_millis, 1000);
        assert_eq!(c.used("y").cpu_millis, 1000);
    }

    #[test]
    fn eviction_re_places_on_the_others_and_refusals_carry_a_reason() {
        let batch: Vec<Workload> = (0..6).map(|i| w(&format!("w{i}"), 100, 32)).collect();
        let mut c = cluster(&[("a", 900, 448), ("b", 900, 448), ("c", 900, 448)], &batch);
        c.place_pending();
        let moved = c.evict("b");
        assert_eq!(moved.len(), 2);
        assert_eq!(c.pending(), moved);
        let out = c.place_pending();
        assert!(out.iter().all(|(_, r)| r.is_ok()), "{out:?}");
        assert_eq!(c.on("a").len() + c.on("c").len(), 6);
        assert_eq!(c.on("a").len(), 3);

        // Too large for anyone, then no room, then no agent at all.
        assert_eq!(c.submit(w("huge", 5000, 1)), Ok(()));
        assert!(matches!(
            c.place_pending()[..],
            [(_, Err(Reject::TooLarge { .. }))]
        ));
        c.remove("huge");
        assert_eq!(c.submit(w("big", 800, 1)), Ok(()));
        let out = c.place_pending();
        assert_eq!(
            out[0].1.as_ref().err().map(ToString::to_string).as_deref(),
            Some("no live agent has room for 800 millis / 1 MiB")
        );
        c.evict("a");
        c.evict("c");
        assert!(matches!(c.place_pending()[0], (_, Err(Reject::NoAgent))));
        assert_eq!(c.pending().len(), 7);
    }

    #[test]
    fn submissions_are_checked_and_restores_need_a_workload() {
        let mut c = Cluster::new();
        assert!(matches!(
            c.submit(w("bad/name", 1, 1)),
            Err(Reject::InvalidName(_))
        ));
        assert_eq!(c.submit(w("none", 0, 0)), Err(Reject::Empty));
        let mut spaced = w("p", 1, 1);
        spaced.package = Some("a b".into());
        assert!(matches!(c.submit(spaced), Err(Reject::InvalidPackage(_))));
        assert_eq!(c.submit(w("a", 1, 1)), Ok(()));
        assert_eq!(c.submit(w("a", 1, 1)), Err(Reject::AlreadySubmitted));
        assert!(c.restore("a", "agent-x"), "agents may be unknown yet");
        assert!(!c.restore("a", "agent-y"), "once");
        assert!(!c.restore("ghost", "agent-x"), "no such workload");
        assert_eq!(c.free("agent-x"), Capacity::default());
        c.set_agent("agent-x", cap(10, 10));
        assert_eq!(c.free("agent-x"), cap(9, 9));
        assert_eq!(
            c.summary(),
            "utilization: 1 workloads, 1 placed, 0 pending, on 1 agents; agent-x: 1 workloads, cpu 10%, mem 10%"
        );
        assert_eq!(c.remove("a").map(|(_, a)| a), Some(Some("agent-x".into())));
    }
}
