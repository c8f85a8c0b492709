//! The leader: keeps the workload requests and their placements durable, heartbeats the
//! agents, places pending workloads on the live ones and re-places a dead agent's.
//!
//! Storage: `workload/<name>` holds each request, `placement/<name>` the agent (id and host)
//! it is placed on, so a restarted leader carries on where it was. A placement is deleted
//! before its workload is placed again elsewhere.
//!
//! Every `heartbeat_ms` (on the first tick past it) the leader:
//! 1. syncs its [`Book`] with the group's agents (`mesh::members()` with role `agent`, and
//!    itself: the leader is an agent too, answered locally);
//! 2. declares dead the agents silent for `dead_after_ms`, logs why and evicts their
//!    workloads (`agent <id> on <host> missed heartbeats for N ms; re-placing a, b`);
//! 3. places what is pending ([`Cluster::place_pending`]) — but only once every agent it knows
//!    has answered (or died) and `settle_ms` have passed since it started, so that a fresh
//!    leader does not pile everything onto the first agent to answer;
//! 4. reconciles each live agent with its last report: `run` for a placed workload it does not
//!    report (a repeated `run` is harmless: agents are idempotent), `drop` for one it reports
//!    but is not placed there (an agent that came back after its workloads moved);
//! 5. pings every other agent (a dead one on every fifth heartbeat), most recently heard
//!    first; the `pong`s come back as messages.

use std::collections::BTreeMap;

use degroup_sdk::{Config, info, kv, mesh, warn};
use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::heartbeat::{Book, Event};
use crate::pack::{Cluster, Workload, parse_workloads};
use crate::wire::{MAX_REPORTS, Msg, Report};

const WORKLOAD: &str = "workload/";
const PLACEMENT: &str = "placement/";

/// Where a workload is placed, as stored under `placement/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub agent: String,
    pub host: String,
}

/// The leader's state.
#[derive(Debug)]
pub struct Leader {
    me: String,
    host: String,
    pub(crate) cluster: Cluster,
    pub(crate) book: Book,
    heartbeat_ms: u64,
    settle_ms: u64,
    started_ms: Option<u64>,
    last_beat_ms: Option<u64>,
    /// The time of the last tick: answers are booked at it (a tick's time is the host's
    /// clock, so answers and silences are measured on one clock).
    now_ms: u64,
    seq: u64,
    /// Last reason logged per workload that could not be placed, or per agent that refused
    /// a ping, so a standing condition is logged once, not every heartbeat.
    said: BTreeMap<String, String>,
}

fn wkey(name: &str) -> String {
    format!("{WORKLOAD}{name}")
}

fn pkey(name: &str) -> String {
    format!("{PLACEMENT}{name}")
}

impl Leader {
    pub fn init(config: &Config, me: String, host: String) -> Result<Self, String> {
        let heartbeat_ms = config.parse_or("heartbeat_ms", 1000u64)?.max(1);
        let dead_after_ms = config.parse_or("dead_after_ms", 3000u64)?.max(1);
        let settle_ms = config.parse_or("settle_ms", dead_after_ms)?;
        let requested = parse_workloads(config.get_or("workloads", ""))?;
        let mut l = Leader {
            me,
            host,
            cluster: Cluster::new(),
            book: Book::new(dead_after_ms),
            heartbeat_ms,
            settle_ms,
            started_ms: None,
            last_beat_ms: None,
            now_ms: 0,
            seq: 0,
            said: BTreeMap::new(),
        };
        for k in kv::list(WORKLOAD, kv::MAX_LIST) {
            match kv::get_json::<Workload>(&k) {
                Ok(Some(w)) => {
                    if let Err(e) = l.cluster.submit(w) {
                        warn!("ignoring {k}: {e}");
                    }
                }
                Ok(None) => {}
                Err(e) => warn!("ignoring {k}: {e}"),
            }
        }
        for k in kv::list(PLACEMENT, kv::MAX_LIST) {
            let name = &k[PLACEMENT.len()..];
            let restored = match kv::get_json::<Stored>(&k) {
                Ok(Some(p)) => l.cluster.restore(name, &p.agent),
                Ok(None) => true,
                Err(e) => {
                    warn!("ignoring {k}: {e}");
                    false
                }
            };
            if !restored {
                kv::delete(&k)?;
            }
        }
        if !l.cluster.workloads().is_empty() {
            info!(
                "restored {} workloads, {} placed",
                l.cluster.workloads().len(),
                l.cluster.placements().len()
            );
        }
        // Configured workloads: the same request again is nothing to do; a changed one is
        // placed afresh.
        for w in requested {
            match l.cluster.workloads().get(&w.name) {
                Some(old) if *old == w => continue,
                Some(_) => {
                    kv::delete(&pkey(&w.name))?;
                    l.cluster.remove(&w.name);
                }
                None => {}
            }
            l.submit(w);
        }
        info!(
            "scheduler leader {}: {} workloads; heartbeat every {heartbeat_ms} ms, an agent is dead after {dead_after_ms} ms of silence",
            l.me,
            l.cluster.workloads().len()
        );
        Ok(l)
    }

    /// Accepts a request: checked, stored, pending until the next heartbeat places it.
    pub fn submit(&mut self, w: Workload) {
        let name = w.name.clone();
        let what = format!(
            "{} millis, {} MiB, {}",
            w.cpu_millis,
            w.mem_mib,
            w.package.as_deref().unwrap_or("no package")
        );
        if let Err(e) = self.cluster.submit(w.clone()) {
            warn!("rejected {name}: {e}");
            return;
        }
        if let Err(e) = kv::set_json(&wkey(&name), &w) {
            self.cluster.remove(&name);
            warn!("rejected {name}: cannot store it: {e}");
            return;
        }
        info!("accepted {name} ({what})");
    }

    pub fn remove(&mut self, name: &str) {
        if !self.cluster.workloads().contains_key(name) {
            warn!("remove {name}: no such workload");
            return;
        }
        // Forget it durably first: a crash in between must not resurrect it.
        let deleted = kv::delete(&pkey(name)).and_then(|_| kv::delete(&wkey(name)));
        if let Err(e) = deleted {
            warn!("remove {name}: {e}");
            return;
        }
        match self.cluster.remove(name) {
            Some((_, Some(agent))) => info!("removed {name} (was on {agent})"),
            _ => info!("removed {name}"),
        }
    }

    pub fn status(&self) {
        info!("{}", self.cluster.summary());
        for (name, w) in self.cluster.workloads() {
            let at = self
                .cluster
                .placements()
                .get(name)
                .map_or("pending".to_string(), |a| format!("on {a}"));
            info!(
                "  {name}: {at}, {} millis, {} MiB, {}",
                w.cpu_millis,
                w.mem_mib,
                w.package.as_deref().unwrap_or("-")
            );
        }
    }

    pub fn summary(&self) -> String {
        self.cluster.summary()
    }

    /// An agent's answer to a heartbeat.
    pub fn pong(&mut self, from: &str, capacity: crate::pack::Capacity, mut r: Vec<Report>) {
        r.truncate(MAX_REPORTS);
        let now = self.now_ms;
        if let Some(Event::Back { id, host }) = self.book.answer(from, capacity, r, now) {
            info!("agent {id} on {host} answers again");
        }
    }

    /// The heartbeat, on the first tick `heartbeat_ms` after the last one.
    pub fn tick(&mut self, now: u64, agent: &mut Agent) {
        self.now_ms = self.now_ms.max(now);
        let started = *self.started_ms.get_or_insert(now);
        if self
            .last_beat_ms
            .is_some_and(|b| now.saturating_sub(b) < self.heartbeat_ms)
        {
            return;
        }
        self.last_beat_ms = Some(now);
        self.seq += 1;
        let mut agents: Vec<(String, String)> = mesh::members()
            .into_iter()
            .filter(|m| m.role == "agent" && m.id != self.me)
            .map(|m| (m.id, m.host))
            .collect();
        agents.push((self.me.clone(), self.host.clone()));
        for e in self.book.sync(&agents, now) {
            if let Event::Left { id, host } = e {
                self.lost(&id, &format!("agent {id} on {host} left the group"));
            }
        }
        let me = self.me.clone();
        self.book.answer(&me, agent.capacity(), agent.report(), now);
        for e in self.book.check(now) {
            match e {
                Event::Dead {
                    id,
                    host,
                    silent_ms,
                } => self.lost(
                    &id,
                    &format!("agent {id} on {host} missed heartbeats for {silent_ms} ms"),
                ),
                Event::Back { id, host } => info!("agent {id} on {host} answers again"),
                Event::Left { .. } => {}
            }
        }
        let live: Vec<(String, crate::pack::Capacity)> =
            self.book.live().map(|(id, _, c)| (id.clone(), c)).collect();
        for (id, c) in &live {
            self.cluster.set_agent(id, *c);
        }
        if self.book.settled() && now.saturating_sub(started) >= self.settle_ms {
            self.place();
        }
        self.reconcile(agent);
        // Pings go last, most recently heard agent first: a send to a host that does not
        // answer may wait until shortly before the call's deadline. A dead agent is pinged on
        // every fifth heartbeat only, so that it can come back without slowing every tick.
        let ping = Msg::Ping { seq: self.seq };
        let mut others: Vec<(&String, &crate::heartbeat::Peer)> = self
            .book
            .peers()
            .iter()
            .filter(|(id, p)| **id != self.me && (p.alive || self.seq.is_multiple_of(5)))
            .collect();
        others.sort_by(|a, b| b.1.last_ms.cmp(&a.1.last_ms).then_with(|| a.0.cmp(b.0)));
        let others: Vec<String> = others.into_iter().map(|(id, _)| id.clone()).collect();
        for id in others {
            let r = mesh::send_json(&id, &ping);
            self.say_once(&format!("ping {id}"), r.err().map(|e| e.to_string()));
        }
    }

    /// Logs `what: why` when `why` differs from what was last logged for `what`.
    fn say_once(&mut self, what: &str, why: Option<String>) {
        match why {
            Some(why) => {
                if self.said.get(what) != Some(&why) {
                    warn!("{what}: {why}");
                    self.said.insert(what.to_string(), why);
                }
            }
            None => {
                self.said.remove(what);
            }
        }
    }

    /// An agent is dead or gone: its workloads are pending again, durably, then placed on the
    /// others at once.
    fn lost(&mut self, id: &str, why: &str) {
        let names = self.cluster.evict(id);
        for n in &names {
            if let Err(e) = kv::delete(&pkey(n)) {
                warn!("cannot forget the placement of {n}: {e}");
            }
        }
        if names.is_empty() {
            warn!("{why}; it ran no workloads");
        } else {
            warn!("{why}; re-placing {}", names.join(", "));
        }
    }

    fn place(&mut self) {
        for (name, r) in self.cluster.place_pending() {
            match r {
                Ok(agent) => {
                    let host = self
                        .book
                        .get(&agent)
                        .map(|p| p.host.clone())
                        .unwrap_or_default();
                    let stored = Stored {
                        agent: agent.clone(),
                        host: host.clone(),
                    };
                    if let Err(e) = kv::set_json(&pkey(&name), &stored) {
                        self.cluster.unplace(&name);
                        warn!("cannot place {name}: cannot store the placement: {e}");
                        continue;
                    }
                    self.said.remove(&format!("place {name}"));
                    let w = self.cluster.workloads().get(&name);
                    let size = w.map(|w| w.need().to_string()).unwrap_or_default();
                    info!("placed {name} on {agent} ({host}): {size}");
                }
                Err(reason) => {
                    self.say_once(
                        &format!("place {name}"),
                        Some(format!("not placed yet: {reason}")),
                    );
                }
            }
        }
    }

    fn reconcile(&mut self, agent: &mut Agent) {
        let live: Vec<(String, Vec<Report>)> = self
            .book
            .live()
            .map(|(id, p, _)| (id.clone(), p.reported.clone()))
            .collect();
        for (id, reported) in live {
            let local = id == self.me;
            for name in self.cluster.on(&id) {
                let Some(w) = self.cluster.workloads().get(&name).cloned() else {
                    continue;
                };
                let Some(package) = w.package.clone() else {
                    continue; // a placement only
                };
                let report = reported.iter().find(|r| r.name == name);
                match report {
                    Some(r) if r.state != "gone" => {
                        let failed =
                            (r.state == "failed").then(|| r.reason.clone().unwrap_or_default());
                        self.say_once(&format!("{name} on {id} failed"), failed);
                        continue;
                    }
                    _ => {}
                }
                if local {
                    agent.run(&name, &package, w.cpu_millis, w.mem_mib);
                } else {
                    let run = Msg::Run {
                        name: name.clone(),
                        package,
                        cpu_millis: w.cpu_millis,
                        mem_mib: w.mem_mib,
                    };
                    let r = mesh::send_json(&id, &run);
                    self.say_once(
                        &format!("run {name} on {id}"),
                        r.err().map(|e| e.to_string()),
                    );
                }
            }
            for r in &reported {
                if self.cluster.placements().get(&r.name) == Some(&id) {
                    continue;
                }
                if local {
                    agent.drop_workload(&r.name);
                } else {
                    info!("telling {id} to drop {}: it is placed elsewhere", r.name);
                    let drop = Msg::Drop {
                        name: r.name.clone(),
                    };
                    if let Err(e) = mesh::send_json(&id, &drop) {
                        warn!("drop {} on {id}: {e}", r.name);
                    }
                }
            }
        }
    }
}
