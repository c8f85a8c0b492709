//! `scheduler`: a small cloud-management plugin. It cuts the lease's slice into `nodes` equal
//! virtual nodes and bin-packs workload requests onto them (first-fit decreasing), keeping
//! every placement durable in the key-value store under `placement/<name>`.
//!
//! Configuration:
//!
//! - `nodes` (default 1): how many virtual nodes to split the lease into.
//! - `workloads` (optional): `name:cpu_millis:mem_mb,...`, placed at start.
//! - `report_every` (default 10): log a utilization summary every this many ticks.
//!
//! Messages (JSON payloads):
//!
//! - `{"op":"submit","name":"web","cpu_millis":500,"mem_mb":256}`
//! - `{"op":"remove","name":"web"}`
//! - `{"op":"status"}`: log the summary and every placement now.
//!
//! Every decision is logged: `placed web on node 0 (...)` or `rejected web: <reason>`.
//! The packing logic is in [`pack`], free of host calls, with unit tests.

mod pack;

use degroup_sdk::{Config, Plugin, error, export_plugin, info, kv, lease, warn};

use crate::pack::{
    Capacity, Cluster, Placement, Request, Workload, parse_request, parse_workloads,
};

const PREFIX: &str = "placement/";

struct Scheduler {
    cluster: Cluster,
    report_every: u64,
    ticks: u64,
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

impl Scheduler {
    /// Places `batch` (first-fit decreasing) and stores each placement; a placement that
    /// cannot be stored is undone and reported as rejected. Each decision is logged as it is
    /// made.
    fn submit(&mut self, mut batch: Vec<Workload>) {
        self.cluster.sort_decreasing(&mut batch);
        for w in batch {
            match self.cluster.place(&w) {
                Ok(p) => match kv::set_json(&key(&w.name), &p) {
                    Ok(()) => self.log_placed(&w.name, &p),
                    Err(e) => {
                        self.cluster.remove(&w.name);
                        warn!("rejected {}: cannot store the placement: {e}", w.name);
                    }
                },
                Err(reason) => warn!("rejected {}: {reason}", w.name),
            }
        }
    }

    fn log_placed(&self, name: &str, p: &Placement) {
        let cap = self.cluster.capacity();
        let used = self
            .cluster
            .nodes()
            .get(p.node as usize)
            .copied()
            .unwrap_or_default();
        info!(
            "placed {name} on node {} ({} millis, {} MiB; node now {}/{} millis, {}/{} MiB)",
            p.node,
            p.cpu_millis,
            p.mem_mb,
            used.cpu_millis,
            cap.cpu_millis,
            used.mem_mb,
            cap.mem_mb
        );
    }

    fn remove(&mut self, name: &str) {
        if self.cluster.placements().get(name).is_none() {
            warn!("remove {name}: not placed");
            return;
        }
        // Forget it durably first: a crash in between must not resurrect it.
        match kv::delete(&key(name)) {
            Ok(_) => {
                if let Some(p) = self.cluster.remove(name) {
                    info!("removed {name} from node {}", p.node);
                }
            }
            Err(e) => error!("remove {name}: cannot delete the placement: {e}"),
        }
    }

    fn status(&self) {
        info!("{}", self.cluster.summary());
        for (name, p) in self.cluster.placements() {
            info!(
                "  {name}: node {}, {} millis, {} MiB",
                p.node, p.cpu_millis, p.mem_mb
            );
        }
    }
}

impl Plugin for Scheduler {
    fn init(config: Config) -> Result<Self, String> {
        let nodes = config.parse_or("nodes", 1u32)?;
        let report_every = config.parse_or("report_every", 10u64)?.max(1);
        let requested = parse_workloads(config.get_or("workloads", ""))?;
        let lease = lease::info();
        let capacity = Capacity::split(lease.slice.cpu_millis, lease.slice.mem_bytes, nodes)?;
        info!(
            "scheduler: {nodes} nodes of {} millis / {} MiB each (lease {})",
            capacity.cpu_millis, capacity.mem_mb, lease.lease_id
        );
        let mut s = Scheduler {
            cluster: Cluster::new(capacity, nodes),
            report_every,
            ticks: 0,
        };

        // Placements from earlier runs come back where they were, if they still fit (the
        // node count or the lease may have changed); the others are placed again.
        let mut again = Vec::new();
        let mut stored_again = Vec::new();
        for k in kv::list(PREFIX, kv::MAX_LIST) {
            let name = k[PREFIX.len()..].to_string();
            match kv::get_json::<Placement>(&k) {
                Ok(Some(p)) if s.cluster.restore(&name, &p) => {}
                Ok(Some(p)) => {
                    stored_again.push(name.clone());
                    again.push(Workload {
                        name,
                        cpu_millis: p.cpu_millis,
                        mem_mb: p.mem_mb,
                    });
                }
                Ok(None) => {}
                Err(e) => warn!("ignoring {k}: {e}"),
            }
        }
        if !s.cluster.placements().is_empty() {
            info!("restored {} placements", s.cluster.placements().len());
        }
        // Configured workloads: already placed with the same size means nothing to do; a new
        // size means place again.
        for w in requested {
            match s.cluster.placements().get(&w.name) {
                Some(p) if p.cpu_millis == w.cpu_millis && p.mem_mb == w.mem_mb => {}
                Some(_) => {
                    s.cluster.remove(&w.name);
                    stored_again.push(w.name.clone());
                    again.push(w);
                }
                None => again.push(w),
            }
        }
        s.submit(again);
        // A stored placement that could not be placed again must not linger in storage.
        for name in stored_again {
            if s.cluster.placements().get(&name).is_none() {
                kv::delete(&key(&name))?;
            }
        }
        Ok(s)
    }

    fn tick(&mut self, _now_ms: u64) {
        self.ticks += 1;
        if self.ticks.is_multiple_of(self.report_every) {
            info!("{}", self.cluster.summary());
        }
    }

    fn message(&mut self, from: String, payload: Vec<u8>) {
        match parse_request(&payload) {
            Ok(Request::Submit {
                name,
                cpu_millis,
                mem_mb,
            }) => self.submit(vec![Workload {
                name,
                cpu_millis,
                mem_mb,
            }]),
            Ok(Request::Remove { name }) => self.remove(&name),
            Ok(Request::Status) => self.status(),
            Err(e) => warn!("message from {from}: {e}"),
        }
    }
}

export_plugin!(Scheduler);

#[cfg(test)]
mod tests {
    use degroup_sdk::{Config, Plugin, kv, testing};

    use super::Scheduler;

    fn config(pairs: &[(&str, &str)]) -> Config {
        pairs.iter().copied().collect()
    }

    fn messages() -> Vec<String> {
        testing::take_logs()
            .into_iter()
            .map(|l| l.message)
            .collect()
    }

    #[test]
    fn places_persists_and_restores() -> Result<(), String> {
        testing::reset();
        let mut lease = testing::default_lease();
        lease.slice.cpu_millis = 2000;
        lease.slice.mem_bytes = 2 << 30;
        testing::set_lease(lease);

        let cfg = config(&[
            ("nodes", "2"),
            ("workloads", "a:300:100,c:700:100,huge:5000:1"),
        ]);
        let mut s = Scheduler::init(cfg.clone())?;
        let logs = messages();
        assert!(
            logs.iter().any(|l| l.starts_with("placed c on node 0")),
            "{logs:?}"
        );
        assert!(
            logs.iter()
                .any(|l| l.starts_with("rejected huge: larger than a node")),
            "{logs:?}"
        );
        assert_eq!(kv::list("placement/", 10), ["placement/a", "placement/c"]);

        s.message(
            "cli".into(),
            br#"{"op":"submit","name":"d","cpu_millis":700,"mem_mb":1}"#.to_vec(),
        );
        s.message("cli".into(), br#"{"op":"remove","name":"a"}"#.to_vec());
        s.message("cli".into(), b"nonsense".to_vec());
        let logs = messages();
        assert!(
            logs.iter().any(|l| l.starts_with("placed d on node 1")),
            "{logs:?}"
        );
        assert!(
            logs.iter().any(|l| l == "removed a from node 0"),
            "{logs:?}"
        );
        assert!(
            logs.iter()
                .any(|l| l.starts_with("message from cli: bad request")),
            "{logs:?}"
        );

        // A restart gets the same placements back; `a` comes back from config.
        let s = Scheduler::init(cfg)?;
        let logs = messages();
        assert!(
            logs.iter().any(|l| l == "restored 2 placements"),
            "{logs:?}"
        );
        assert_eq!(s.cluster.placements().len(), 3);
        assert_eq!(s.cluster.placements()["d"].node, 1);
        Ok(())
    }

    #[test]
    fn reports_every_n_ticks_and_refuses_bad_config() {
        testing::reset();
        assert!(Scheduler::init(config(&[("nodes", "zero")])).is_err());
        assert!(Scheduler::init(config(&[("workloads", "a:1")])).is_err());
        let Ok(mut s) = Scheduler::init(config(&[("report_every", "3")])) else {
            panic!("init failed");
        };
        testing::take_logs();
        for t in 0..6 {
            s.tick(t);
        }
        let summaries = messages()
            .iter()
            .filter(|l| l.starts_with("utilization:"))
            .count();
        assert_eq!(summaries, 2);
    }
}
