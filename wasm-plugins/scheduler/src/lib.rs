//! `scheduler`: a cloud-management plugin that spans hosts. Deployed several times into one
//! group (`degroup deploy … --group NAME`), one deployment plays leader and the others agents:
//! the leader bin-packs workload requests onto the agents' slices (first-fit decreasing), the
//! agents run them as child workloads of their own deployments, and when an agent stops
//! answering the leader's heartbeats its workloads are placed again on the others.
//!
//! Configuration:
//!
//! - `role`: `leader` (the default) or `agent`. The leader is an agent too: it runs workloads
//!   on its own slice.
//! - `workloads` (leader, optional): `NAME:CPU_MILLIS:MEM_MIB[:PACKAGE],…`, e.g.
//!   `web:100:32:hello@0.1.0` or `k:50:16:blake3:<hex>`; without a package a workload is a
//!   placement only (nothing is started).
//! - `heartbeat_ms` (1000), `dead_after_ms` (3000), `settle_ms` (= `dead_after_ms`): see
//!   [`leader`]. Heartbeats go out on ticks, so they are at most as frequent as ticks.
//! - `reserve_cpu_millis` (100), `reserve_mem_mib` (32), `child_kv_kib` (1024): see [`agent`].
//! - `report_every` (10): the leader logs a utilization summary every this many ticks.
//!
//! Messages (JSON, see [`wire`]), from the tenant (`degroup message`) to the leader:
//!
//! - `{"op":"submit","name":"web","cpu_millis":100,"mem_mib":32,"package":"hello@0.1.0"}`
//! - `{"op":"remove","name":"web"}`
//! - `{"op":"status"}`: log the summary and every workload.
//!
//! Every decision is logged: `accepted web (…)`, `placed web on <agent id> (<host>); …`,
//! `agent <id> on <host> missed heartbeats for N ms; re-placing a, b`, and on the agents
//! `started web as child <id> (…)`. The placement and heartbeat logic ([`pack`],
//! [`heartbeat`]) is free of host calls, with unit tests.

mod agent;
mod heartbeat;
mod leader;
mod pack;
mod wire;

use degroup_sdk::{Config, Plugin, export_plugin, info, lease, mesh, warn};

use crate::agent::Agent;
use crate::leader::Leader;
use crate::pack::Workload;
use crate::wire::Msg;

struct Scheduler {
    agent: Agent,
    /// `None` on an agent.
    leader: Option<Leader>,
    report_every: u64,
    ticks: u64,
}

impl Plugin for Scheduler {
    fn init(config: Config) -> Result<Self, String> {
        let report_every = config.parse_or("report_every", 10u64)?.max(1);
        let agent = Agent::from_config(&config)?;
        let lease = lease::info();
        let leader = match config.get_or("role", "leader") {
            "leader" => Some(Leader::init(&config, lease.deployment_id, lease.host)?),
            "agent" => {
                info!(
                    "scheduler agent {} on {}: {} for workloads",
                    lease.deployment_id,
                    lease.host,
                    agent.capacity()
                );
                None
            }
            other => return Err(format!("config: `role={other}`: must be leader or agent")),
        };
        Ok(Scheduler {
            agent,
            leader,
            report_every,
            ticks: 0,
        })
    }

    fn tick(&mut self, now_ms: u64) {
        self.ticks += 1;
        if let Some(l) = &mut self.leader {
            l.tick(now_ms, &mut self.agent);
            if self.ticks.is_multiple_of(self.report_every) {
                info!("{}", l.summary());
            }
        }
    }

    fn message(&mut self, from: String, payload: Vec<u8>) {
        let msg = match wire::parse(&payload) {
            Ok(m) => m,
            Err(e) => {
                warn!("message from {from}: {e}");
                return;
            }
        };
        match (msg, &mut self.leader) {
            (Msg::Ping { seq }, _) => {
                let pong = Msg::Pong {
                    seq,
                    capacity: self.agent.capacity(),
                    workloads: self.agent.report(),
                };
                if let Err(e) = mesh::send_json(&from, &pong) {
                    warn!("answering the heartbeat of {from}: {e}");
                }
            }
            (
                Msg::Run {
                    name,
                    package,
                    cpu_millis,
                    mem_mib,
                },
                _,
            ) => self.agent.run(&name, &package, cpu_millis, mem_mib),
            (Msg::Drop { name }, _) => self.agent.drop_workload(&name),
            (
                Msg::Pong {
                    capacity,
                    workloads,
                    ..
                },
                Some(l),
            ) => l.pong(&from, capacity, workloads),
            (
                Msg::Submit {
                    name,
                    cpu_millis,
                    mem_mib,
                    package,
                },
                Some(l),
            ) => l.submit(Workload {
                name,
                cpu_millis,
                mem_mib,
                package,
            }),
            (Msg::Remove { name }, Some(l)) => l.remove(&name),
            (Msg::Status, Some(l)) => l.status(),
            (Msg::Status, None) => {
                for r in self.agent.report() {
                    info!("  {}: child {} {}", r.name, r.child, r.state);
                }
            }
            (_, None) => {
                warn!("message from {from}: this is an agent; send requests to the leader");
            }
        }
    }
}

export_plugin!(Scheduler);

#[cfg(test)]
mod tests;
