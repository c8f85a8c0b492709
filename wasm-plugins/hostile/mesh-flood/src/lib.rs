//! `mesh-flood`: a hostile group member. On every tick, and on a message `go`, it sends a
//! small message to every other member of its group as fast as it can, until the host refuses
//! one (its send rate, the receiver's inbox) or 40 ms have passed (calls have a deadline), and
//! logs how many sends got each result so far:
//! `mesh-flood: ok=N rate-limited=N inbox-full=N unreachable=N not-in-group=N unknown=N
//! too-large=N members=N`.
//!
//! The host must cap it (`rate-limited`) while the other members' messages keep arriving.

use std::collections::BTreeMap;

use degroup_sdk::{Config, Plugin, export_plugin, info, lease, mesh, time};

/// How long one burst may run, well inside a call's deadline.
const BURST_NS: u64 = 40_000_000;
/// Most sends in one burst.
const MAX_BURST: u64 = 100_000;

struct Flood {
    counts: BTreeMap<&'static str, u64>,
    me: String,
}

impl Flood {
    fn burst(&mut self) {
        let others: Vec<String> = mesh::members()
            .into_iter()
            .map(|m| m.id)
            .filter(|id| *id != self.me)
            .collect();
        let start = time::monotonic_ns();
        let mut n = 0u64;
        'burst: while !others.is_empty() && n < MAX_BURST {
            for to in &others {
                n += 1;
                let r = mesh::send(to, b"flood");
                let name = match &r {
                    Ok(()) => "ok",
                    Err(e) => e.name(),
                };
                *self.counts.entry(name).or_default() += 1;
                if r.is_err() || time::monotonic_ns().saturating_sub(start) > BURST_NS {
                    break 'burst;
                }
            }
        }
        let mut line = String::from("mesh-flood:");
        for k in [
            "ok",
            "rate-limited",
            "inbox-full",
            "unreachable",
            "not-in-group",
            "unknown",
            "too-large",
        ] {
            line.push_str(&format!(
                " {k}={}",
                self.counts.get(k).copied().unwrap_or(0)
            ));
        }
        line.push_str(&format!(" members={}", others.len() + 1));
        info!("{line}");
    }
}

impl Plugin for Flood {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Flood {
            counts: BTreeMap::new(),
            me: lease::info().deployment_id,
        })
    }

    fn tick(&mut self, _now_ms: u64) {
        self.burst();
    }

    fn message(&mut self, _from: String, payload: Vec<u8>) {
        if payload == b"go" {
            self.burst();
        }
    }
}

export_plugin!(Flood);
