//! The agent: runs the workloads the leader places on it as child workloads of its own
//! deployment, and answers the leader's heartbeats with its capacity and what it runs.
//!
//! Each workload it runs is kept durably under `child/<name>` (child id, package, size), so a
//! restarted agent knows its children (which the host keeps running across its restarts) and a
//! repeated `run` does not start a second child: `run` is idempotent, and a `run` with another
//! package or size replaces the child. `drop` stops the child and forgets it.
//!
//! A child gets `mem_mib` MiB of memory, `cpu_millis` × [`FUEL_PER_CPU_MILLI`] fuel per second
//! and `child_kv_kib` KiB of store out of the agent's lease; the agent offers the leader its
//! slice less a reserve for itself (`reserve_cpu_millis`, `reserve_mem_mib`).
//!
//! [`FUEL_PER_CPU_MILLI`]: degroup_sdk::workload::FUEL_PER_CPU_MILLI

use std::collections::BTreeMap;

use degroup_sdk::workload::{self, Limits};
use degroup_sdk::{Config, info, kv, lease, warn};
use serde::{Deserialize, Serialize};

use crate::pack::{Capacity, MAX_NAME};
use crate::wire::{MAX_REPORTS, Report};

const CHILD: &str = "child/";

/// A child this agent started, as stored under `child/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRecord {
    pub id: String,
    pub package: String,
    pub cpu_millis: u64,
    pub mem_mib: u64,
}

/// The agent's settings and the starts the host refused (reported until the next `run`).
#[derive(Debug, Clone)]
pub struct Agent {
    reserve: Capacity,
    child_kv_bytes: u64,
    refused: BTreeMap<String, String>,
}

fn key(name: &str) -> String {
    format!("{CHILD}{name}")
}

impl Agent {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Ok(Self {
            reserve: Capacity {
                cpu_millis: config.parse_or("reserve_cpu_millis", 100u64)?,
                mem_mib: config.parse_or("reserve_mem_mib", 32u64)?,
            },
            child_kv_bytes: config
                .parse_or("child_kv_kib", 1024u64)?
                .saturating_mul(1024),
            refused: BTreeMap::new(),
        })
    }

    /// What this agent offers children: its slice less the reserve.
    pub fn capacity(&self) -> Capacity {
        let s = lease::info().slice;
        Capacity {
            cpu_millis: u64::from(s.cpu_millis),
            mem_mib: s.mem_bytes >> 20,
        }
        .minus(self.reserve)
    }

    /// Starts `name` as a child unless it runs already with the same package and size.
    pub fn run(&mut self, name: &str, package: &str, cpu_millis: u64, mem_mib: u64) {
        if name.is_empty() || name.len() > MAX_NAME {
            warn!("run: bad workload name");
            return;
        }
        let want = |id: String| ChildRecord {
            id,
            package: package.to_string(),
            cpu_millis,
            mem_mib,
        };
        match kv::get_json::<ChildRecord>(&key(name)) {
            Ok(Some(rec)) if rec == want(rec.id.clone()) => {
                if workload::status(&rec.id).is_some() {
                    return; // Runs already (or failed: the leader hears it in the report).
                }
                info!("child {} of {name} is gone; starting it again", rec.id);
            }
            Ok(Some(rec)) => {
                info!("{name} changed; replacing child {}", rec.id);
                self.stop(name, &rec.id);
            }
            Ok(None) => {}
            Err(e) => warn!("{name}: {e}; starting it afresh"),
        }
        let limits = Limits::for_cpu(cpu_millis, mem_mib << 20, self.child_kv_bytes);
        let config: Config = [("name", name)].into_iter().collect();
        match workload::start(package, &config, limits) {
            Ok(id) => {
                if let Err(e) = kv::set_json(&key(name), &want(id.clone())) {
                    // Without its record the child would be orphaned: stop it, retry later.
                    warn!("{name}: cannot keep the child's record ({e}); stopping it");
                    let _ = workload::stop(&id);
                    return;
                }
                self.refused.remove(name);
                info!(
                    "started {name} as child {id} ({package}, {cpu_millis} millis, {mem_mib} MiB)"
                );
            }
            Err(e) => {
                warn!("cannot start {name} ({package}): {e}");
                self.refused.insert(name.to_string(), e.to_string());
            }
        }
    }

    fn stop(&mut self, name: &str, id: &str) {
        match workload::stop(id) {
            Ok(()) | Err(workload::WorkloadError::Unknown) => {}
            Err(e) => warn!("stop {name} (child {id}): {e}"),
        }
    }

    /// Stops `name`'s child and forgets it.
    pub fn drop_workload(&mut self, name: &str) {
        self.refused.remove(name);
        match kv::get_json::<ChildRecord>(&key(name)) {
            Ok(Some(rec)) => {
                self.stop(name, &rec.id);
                match kv::delete(&key(name)) {
                    Ok(_) => info!("dropped {name} (child {})", rec.id),
                    Err(e) => warn!("drop {name}: {e}"),
                }
            }
            Ok(None) => {}
            Err(e) => warn!("drop {name}: {e}"),
        }
    }

    /// What this agent runs: each recorded child with its state (`gone` when the host no
    /// longer has it), and each start the host refused (`failed`, with the reason).
    pub fn report(&self) -> Vec<Report> {
        let mut out = Vec::new();
        for k in kv::list(CHILD, MAX_REPORTS as u32) {
            let name = k[CHILD.len()..].to_string();
            let Ok(Some(rec)) = kv::get_json::<ChildRecord>(&k) else {
                continue;
            };
            let (state, reason) = match workload::status(&rec.id) {
                Some(s) => (s.state.to_string(), s.reason),
                None => ("gone".to_string(), None),
            };
            out.push(Report {
                name,
                child: rec.id,
                state,
                reason,
            });
        }
        for (name, why) in &self.refused {
            if out.len() >= MAX_REPORTS {
                break;
            }
            if !out.iter().any(|r| &r.name == name) {
                out.push(Report {
                    name: name.clone(),
                    child: String::new(),
                    state: "failed".into(),
                    reason: Some(why.clone()),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use degroup_sdk::testing;
    use degroup_sdk::workload::{Limits, State};

    use super::*;

    #[test]
    fn run_is_idempotent_and_drop_stops_the_child() -> Result<(), String> {
        testing::reset();
        let mut a = Agent::from_config(&Config::new())?;
        assert_eq!(
            a.capacity(),
            Capacity {
                cpu_millis: 900,
                mem_mib: 32
            },
            "the default lease (1000 millis, 64 MiB) less the reserve"
        );
        a.run("web", "hello@0.1.0", 100, 16);
        a.run("web", "hello@0.1.0", 100, 16);
        assert_eq!(
            testing::children().len(),
            1,
            "a repeated run starts nothing"
        );
        let child = testing::children()[0].clone();
        assert_eq!(child.limits, Limits::for_cpu(100, 16 << 20, 1 << 20));
        let r = a.report();
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].name.as_str(), r[0].state.as_str()),
            ("web", "running")
        );

        // Another package replaces the child; a lost child is started again.
        a.run("web", "hello@0.2.0", 100, 16);
        let now = testing::children();
        assert_eq!(now.len(), 1);
        assert_ne!(now[0].id, child.id);
        testing::set_child_state(&now[0].id, State::Failed, Some("trap".into()));
        assert_eq!(a.report()[0].reason.as_deref(), Some("trap"));
        let _ = workload::stop(&now[0].id);
        assert_eq!(a.report()[0].state, "gone");
        a.run("web", "hello@0.2.0", 100, 16);
        assert_eq!(testing::children().len(), 1);

        // The host refuses what does not fit; the refusal is reported.
        a.run("big", "hello@0.1.0", 5000, 16);
        let r = a.report();
        let big = r.iter().find(|r| r.name == "big");
        assert!(
            big.is_some_and(|b| b.state == "failed"
                && b.reason
                    .as_deref()
                    .is_some_and(|x| x.starts_with("insufficient-capacity"))),
            "{r:?}"
        );
        a.drop_workload("big");
        a.drop_workload("web");
        assert!(testing::children().is_empty());
        assert!(a.report().is_empty());
        assert!(kv::list(CHILD, 10).is_empty());
        Ok(())
    }
}
