//! The scheduler's logic, free of host calls so that `cargo test` runs it on the build machine:
//! workload parsing, first-fit-decreasing bin packing onto equal virtual nodes, and
//! utilization.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest workload name, in bytes (names become KV keys `placement/<name>`).
pub const MAX_NAME: usize = 64;

/// What one virtual node offers: the lease's slice divided by the number of nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub mem_mb: u64,
}

impl Capacity {
    /// The lease slice (`cpu_millis`, `mem_bytes`) split into `nodes` equal nodes.
    pub fn split(cpu_millis: u32, mem_bytes: u64, nodes: u32) -> Result<Self, String> {
        if nodes == 0 {
            return Err("nodes must be at least 1".into());
        }
        let cap = Capacity {
            cpu_millis: u64::from(cpu_millis) / u64::from(nodes),
            mem_mb: mem_bytes / (1 << 20) / u64::from(nodes),
        };
        if cap.cpu_millis == 0 || cap.mem_mb == 0 {
            return Err(format!(
                "the lease ({cpu_millis} millicores, {} MiB) is too small for {nodes} nodes",
                mem_bytes >> 20
            ));
        }
        Ok(cap)
    }
}

/// A workload request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub cpu_millis: u64,
    pub mem_mb: u64,
}

/// Where a workload runs; stored as JSON under `placement/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub node: u32,
    pub cpu_millis: u64,
    pub mem_mb: u64,
}

/// Why a workload was not placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    InvalidName(String),
    Empty,
    AlreadyPlaced { node: u32 },
    TooLarge { need: Capacity, node: Capacity },
    NoRoom { need: Capacity },
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName(why) => write!(f, "invalid name: {why}"),
            Self::Empty => write!(f, "asks for no cpu and no memory"),
            Self::AlreadyPlaced { node } => {
                write!(f, "already placed on node {node} (remove it first)")
            }
            Self::TooLarge { need, node } => write!(
                f,
                "larger than a node (needs {} millis / {} MiB, a node has {} millis / {} MiB)",
                need.cpu_millis, need.mem_mb, node.cpu_millis, node.mem_mb
            ),
            Self::NoRoom { need } => write!(
                f,
                "no node has room for {} millis / {} MiB",
                need.cpu_millis, need.mem_mb
            ),
        }
    }
}

/// A request sent as a message payload (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Submit {
        name: String,
        cpu_millis: u64,
        mem_mb: u64,
    },
    Remove {
        name: String,
    },
    Status,
}

/// Parses a message payload.
pub fn parse_request(payload: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(payload).map_err(|e| format!("bad request: {e}"))
}

/// Parses `name:cpu_millis:mem_mb,...` (the `workloads` config value). Blank entries are
/// skipped.
pub fn parse_workloads(spec: &str) -> Result<Vec<Workload>, String> {
    let mut out = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
        let [name, cpu, mem] = parts[..] else {
            return Err(format!(
                "workloads: `{entry}` is not name:cpu_millis:mem_mb"
            ));
        };
        let num = |what: &str, v: &str| {
            v.parse::<u64>()
                .map_err(|e| format!("workloads: `{entry}`: {what} `{v}`: {e}"))
        };
        out.push(Workload {
            name: name.to_string(),
            cpu_millis: num("cpu_millis", cpu)?,
            mem_mb: num("mem_mb", mem)?,
        });
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), Reject> {
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
    Ok(())
}

/// Utilization of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Used {
    pub cpu_millis: u64,
    pub mem_mb: u64,
    pub workloads: u32,
}

/// The virtual nodes and what is placed on them.
#[derive(Debug, Clone)]
pub struct Cluster {
    capacity: Capacity,
    used: Vec<Used>,
    placements: BTreeMap<String, Placement>,
}

impl Cluster {
    /// `nodes` empty nodes of `capacity` each.
    pub fn new(capacity: Capacity, nodes: u32) -> Self {
        Self {
            capacity,
            used: vec![Used::default(); nodes as usize],
            placements: BTreeMap::new(),
        }
    }

    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    pub fn nodes(&self) -> &[Used] {
        &self.used
    }

    pub fn placements(&self) -> &BTreeMap<String, Placement> {
        &self.placements
    }

    fn fits(&self, node: usize, cpu: u64, mem: u64) -> bool {
        self.used.get(node).is_some_and(|u| {
            u.cpu_millis.saturating_add(cpu) <= self.capacity.cpu_millis
                && u.mem_mb.saturating_add(mem) <= self.capacity.mem_mb
        })
    }

    fn commit(&mut self, name: &str, p: Placement) {
        if let Some(u) = self.used.get_mut(p.node as usize) {
            u.cpu_millis += p.cpu_millis;
            u.mem_mb += p.mem_mb;
            u.workloads += 1;
        }
        self.placements.insert(name.to_string(), p);
    }

    /// Takes back a placement found in storage if it still fits where it was (the node count
    /// or the lease may have changed since); `false` means it must be placed again.
    pub fn restore(&mut self, name: &str, p: &Placement) -> bool {
        if self.placements.contains_key(name) || !self.fits(p.node as usize, p.cpu_millis, p.mem_mb)
        {
            return false;
        }
        self.commit(name, p.clone());
        true
    }

    /// Places one workload on the first node with room (first fit).
    pub fn place(&mut self, w: &Workload) -> Result<Placement, Reject> {
        check_name(&w.name)?;
        if w.cpu_millis == 0 && w.mem_mb == 0 {
            return Err(Reject::Empty);
        }
        if let Some(p) = self.placements.get(&w.name) {
            return Err(Reject::AlreadyPlaced { node: p.node });
        }
        let need = Capacity {
            cpu_millis: w.cpu_millis,
            mem_mb: w.mem_mb,
        };
        if need.cpu_millis > self.capacity.cpu_millis || need.mem_mb > self.capacity.mem_mb {
            return Err(Reject::TooLarge {
                need,
                node: self.capacity,
            });
        }
        let node = (0..self.used.len())
            .find(|&n| self.fits(n, w.cpu_millis, w.mem_mb))
            .ok_or(Reject::NoRoom { need })?;
        let p = Placement {
            node: node as u32,
            cpu_millis: w.cpu_millis,
            mem_mb: w.mem_mb,
        };
        self.commit(&w.name, p.clone());
        Ok(p)
    }

    /// The size of `w` as its dominant share of a node, in parts per million: the FFD key.
    fn share(&self, w: &Workload) -> u64 {
        let ppm = |x: u64, cap: u64| x.saturating_mul(1_000_000) / cap.max(1);
        ppm(w.cpu_millis, self.capacity.cpu_millis).max(ppm(w.mem_mb, self.capacity.mem_mb))
    }

    /// Sorts a batch for first-fit decreasing: largest dominant share first, ties by name, so
    /// the outcome depends only on the batch.
    pub fn sort_decreasing(&self, batch: &mut [Workload]) {
        batch.sort_by(|a, b| {
            self.share(b)
                .cmp(&self.share(a))
                .then_with(|| a.name.cmp(&b.name))
        });
    }

    /// Places a batch first-fit decreasing. Returns each workload with its outcome, in the
    /// order they were tried. (The plugin places one at a time to store and log each.)
    #[cfg(test)]
    pub fn place_all(
        &mut self,
        mut batch: Vec<Workload>,
    ) -> Vec<(Workload, Result<Placement, Reject>)> {
        self.sort_decreasing(&mut batch);
        batch
            .into_iter()
            .map(|w| {
                let r = self.place(&w);
                (w, r)
            })
            .collect()
    }

    /// Removes a placement, freeing its room.
    pub fn remove(&mut self, name: &str) -> Option<Placement> {
        let p = self.placements.remove(name)?;
        if let Some(u) = self.used.get_mut(p.node as usize) {
            u.cpu_millis -= p.cpu_millis;
            u.mem_mb -= p.mem_mb;
            u.workloads -= 1;
        }
        Some(p)
    }

    /// One line: totals, then each node's cpu and memory use in percent.
    pub fn summary(&self) -> String {
        let pct = |x: u64, cap: u64| x.saturating_mul(100) / cap.max(1);
        let n = self.used.len() as u64;
        let cpu: u64 = self.used.iter().map(|u| u.cpu_millis).sum();
        let mem: u64 = self.used.iter().map(|u| u.mem_mb).sum();
        let mut s = format!(
            "utilization: {} workloads on {} nodes, cpu {}%, mem {}%",
            self.placements.len(),
            n,
            pct(cpu, self.capacity.cpu_millis * n),
            pct(mem, self.capacity.mem_mb * n),
        );
        for (i, u) in self.used.iter().enumerate() {
            s.push_str(&format!(
                "; node {i}: {} workloads, cpu {}%, mem {}%",
                u.workloads,
                pct(u.cpu_millis, self.capacity.cpu_millis),
                pct(u.mem_mb, self.capacity.mem_mb),
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str, cpu: u64, mem: u64) -> Workload {
        Workload {
            name: name.into(),
            cpu_millis: cpu,
            mem_mb: mem,
        }
    }

    fn cap(cpu: u64, mem: u64) -> Capacity {
        Capacity {
            cpu_millis: cpu,
            mem_mb: mem,
        }
    }

    #[test]
    fn splits_the_lease() {
        assert_eq!(Capacity::split(4000, 8 << 30, 4), Ok(cap(1000, 2048)));
        assert!(Capacity::split(4000, 8 << 30, 0).is_err());
        assert!(Capacity::split(3, 8 << 30, 4).is_err());
    }

    #[test]
    fn parses_workloads_and_requests() {
        assert_eq!(
            parse_workloads(" web:500:256, db:1000:2048 ,"),
            Ok(vec![w("web", 500, 256), w("db", 1000, 2048)])
        );
        assert!(parse_workloads("web:500").is_err());
        assert!(parse_workloads("web:x:1").is_err());
        assert_eq!(
            parse_request(br#"{"op":"submit","name":"a","cpu_millis":1,"mem_mb":2}"#),
            Ok(Request::Submit {
                name: "a".into(),
                cpu_millis: 1,
                mem_mb: 2
            })
        );
        assert_eq!(
            parse_request(br#"{"op":"remove","name":"a"}"#),
            Ok(Request::Remove { name: "a".into() })
        );
        assert_eq!(parse_request(br#"{"op":"status"}"#), Ok(Request::Status));
        assert!(parse_request(b"reset").is_err());
    }

    #[test]
    fn first_fit_decreasing_packs_tighter_than_arrival_order() {
        // Arrival order with first fit needs 3 nodes for these; FFD fits them in 2.
        let batch = vec![
            w("a", 300, 1),
            w("b", 300, 1),
            w("c", 700, 1),
            w("d", 700, 1),
        ];
        let mut c = Cluster::new(cap(1000, 100), 2);
        let out = c.place_all(batch);
        assert!(out.iter().all(|(_, r)| r.is_ok()), "{out:?}");
        assert_eq!(c.placements()["c"].node, 0);
        assert_eq!(c.placements()["d"].node, 1);
        assert_eq!(c.placements()["a"].node, 0);
        assert_eq!(c.placements()["b"].node, 1);
        assert_eq!(c.nodes()[0].cpu_millis, 1000);
    }

    #[test]
    fn rejections_carry_a_reason() {
        let mut c = Cluster::new(cap(1000, 1024), 1);
        assert!(matches!(
            c.place(&w("huge", 2000, 1)),
            Err(Reject::TooLarge { .. })
        ));
        assert!(matches!(
            c.place(&w("bad/name", 1, 1)),
            Err(Reject::InvalidName(_))
        ));
        assert_eq!(c.place(&w("none", 0, 0)), Err(Reject::Empty));
        assert!(c.place(&w("a", 800, 512)).is_ok());
        assert_eq!(
            c.place(&w("a", 1, 1)),
            Err(Reject::AlreadyPlaced { node: 0 })
        );
        let no_room = c.place(&w("b", 300, 1));
        assert!(matches!(no_room, Err(Reject::NoRoom { .. })));
        assert_eq!(
            no_room.err().map(|e| e.to_string()).as_deref(),
            Some("no node has room for 300 millis / 1 MiB")
        );
        assert!(c.remove("a").is_some());
        assert!(c.place(&w("b", 300, 1)).is_ok());
        assert_eq!(c.nodes()[0].workloads, 1);
    }

    #[test]
    fn restore_keeps_valid_placements_only() {
        let mut c = Cluster::new(cap(1000, 1024), 2);
        let p = |node, cpu| Placement {
            node,
            cpu_millis: cpu,
            mem_mb: 1,
        };
        assert!(c.restore("a", &p(1, 600)));
        assert!(!c.restore("a", &p(1, 1)), "duplicate");
        assert!(!c.restore("b", &p(1, 600)), "over capacity");
        assert!(!c.restore("c", &p(5, 1)), "node gone");
        assert_eq!(c.placements().len(), 1);
        assert_eq!(
            c.summary(),
            "utilization: 1 workloads on 2 nodes, cpu 30%, mem 0%; \
             node 0: 0 workloads, cpu 0%, mem 0%; node 1: 1 workloads, cpu 60%, mem 0%"
        );
    }
}
