//! Heartbeat bookkeeping, free of host calls: which agents the leader knows, when each last
//! answered, and which are dead.
//!
//! The leader [`sync`](Book::sync)s the book with the group's agents on every heartbeat: a new
//! agent starts with a grace period (as if it had answered when it was first seen), an agent
//! that left the group is [`Event::Left`]. Each answer ([`answer`](Book::answer)) records the
//! time, the agent's capacity and what it reports running. [`check`](Book::check) declares an
//! agent dead once it has not answered for `dead_after_ms`, once ([`Event::Dead`]); a dead
//! agent that answers again is [`Event::Back`]. Only agents that are alive and have answered
//! at least once are [`live`](Book::live): their capacity is known.

use std::collections::BTreeMap;

use crate::pack::Capacity;
use crate::wire::Report;

/// What the leader knows of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub host: String,
    /// When it last answered (or was first seen), Unix ms.
    pub last_ms: u64,
    pub alive: bool,
    /// Its capacity, once it has answered.
    pub capacity: Option<Capacity>,
    /// What it reported running in its last answer.
    pub reported: Vec<Report>,
}

/// Something the leader acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// No answer for `silent_ms`.
    Dead {
        id: String,
        host: String,
        silent_ms: u64,
    },
    /// A dead agent answered again.
    Back { id: String, host: String },
    /// The agent is no longer in the group.
    Left { id: String, host: String },
}

/// Most agents a book keeps (the group caps members anyway).
pub const MAX_AGENTS: usize = 256;

/// The leader's view of its agents.
#[derive(Debug, Clone)]
pub struct Book {
    dead_after_ms: u64,
    peers: BTreeMap<String, Peer>,
}

impl Book {
    pub fn new(dead_after_ms: u64) -> Self {
        Self {
            dead_after_ms,
            peers: BTreeMap::new(),
        }
    }

    pub fn peers(&self) -> &BTreeMap<String, Peer> {
        &self.peers
    }

    /// Brings the book in line with the group's agents `(id, host)` as of `now_ms`.
    pub fn sync(&mut self, agents: &[(String, String)], now_ms: u64) -> Vec<Event> {
        let mut events = Vec::new();
        let gone: Vec<String> = self
            .peers
            .keys()
            .filter(|id| !agents.iter().any(|(a, _)| a == *id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(p) = self.peers.remove(&id) {
                events.push(Event::Left { id, host: p.host });
            }
        }
        for (id, host) in agents {
            if self.peers.len() >= MAX_AGENTS && !self.peers.contains_key(id) {
                break;
            }
            let p = self.peers.entry(id.clone()).or_insert_with(|| Peer {
                host: host.clone(),
                last_ms: now_ms,
                alive: true,
                capacity: None,
                reported: Vec::new(),
            });
            p.host.clone_from(host);
        }
        events
    }

    /// Records an answer from `id`; answers from agents not in the book are ignored (`None`).
    pub fn answer(
        &mut self,
        id: &str,
        capacity: Capacity,
        reported: Vec<Report>,
        now_ms: u64,
    ) -> Option<Event> {
        let p = self.peers.get_mut(id)?;
        p.last_ms = p.last_ms.max(now_ms);
        p.capacity = Some(capacity);
        p.reported = reported;
        if p.alive {
            return None;
        }
        p.alive = true;
        Some(Event::Back {
            id: id.to_string(),
            host: p.host.clone(),
        })
    }

    /// Declares dead every live agent silent for longer than `dead_after_ms`.
    pub fn check(&mut self, now_ms: u64) -> Vec<Event> {
        let mut events = Vec::new();
        for (id, p) in &mut self.peers {
            let silent_ms = now_ms.saturating_sub(p.last_ms);
            if p.alive && silent_ms > self.dead_after_ms {
                p.alive = false;
                p.reported.clear();
                events.push(Event::Dead {
                    id: id.clone(),
                    host: p.host.clone(),
                    silent_ms,
                });
            }
        }
        events
    }

    /// Whether every agent alive has answered at least once (nothing to wait for).
    pub fn settled(&self) -> bool {
        self.peers
            .values()
            .all(|p| !p.alive || p.capacity.is_some())
    }

    /// Alive agents that have answered, with their capacity.
    pub fn live(&self) -> impl Iterator<Item = (&String, &Peer, Capacity)> {
        self.peers
            .iter()
            .filter(|(_, p)| p.alive)
            .filter_map(|(id, p)| p.capacity.map(|c| (id, p, c)))
    }

    pub fn get(&self, id: &str) -> Option<&Peer> {
        self.peers.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents(ids: &[&str]) -> Vec<(String, String)> {
        ids.iter()
            .map(|i| (i.to_string(), format!("host-{i}")))
            .collect()
    }

    const CAP: Capacity = Capacity {
        cpu_millis: 900,
        mem_mib: 448,
    };

    #[test]
    fn silence_past_the_limit_is_death_once_and_an_answer_brings_it_back() {
        let mut b = Book::new(3000);
        assert!(b.sync(&agents(&["a", "b"]), 0).is_empty());
        assert!(!b.settled(), "nobody answered yet");
        assert_eq!(b.live().count(), 0);
        assert_eq!(b.answer("a", CAP, vec![], 500), None);
        assert_eq!(b.answer("ghost", CAP, vec![], 500), None);
        assert!(!b.settled());
        assert_eq!(b.answer("b", CAP, vec![], 900), None);
        assert!(b.settled());
        assert_eq!(b.live().count(), 2);
        assert!(b.check(3500).is_empty(), "a: 3000 ms is not past the limit");
        assert_eq!(
            b.check(3501),
            [Event::Dead {
                id: "a".into(),
                host: "host-a".into(),
                silent_ms: 3001
            }]
        );
        assert!(
            b.check(9000)
                .iter()
                .all(|e| !matches!(e, Event::Dead { id, .. } if id == "a"))
        );
        assert_eq!(b.live().count(), 0, "b died at 9000 too");
        assert_eq!(
            b.answer("a", CAP, vec![], 9100),
            Some(Event::Back {
                id: "a".into(),
                host: "host-a".into()
            })
        );
        assert_eq!(b.live().count(), 1);
    }

    #[test]
    fn newcomers_get_a_grace_period_and_leavers_are_reported() {
        let mut b = Book::new(1000);
        b.sync(&agents(&["a"]), 0);
        b.sync(&agents(&["a", "c"]), 5000);
        let dead = b.check(5500);
        assert_eq!(dead.len(), 1, "only a, never answered since 0: {dead:?}");
        assert!(b.get("c").is_some_and(|p| p.alive));
        assert_eq!(
            b.sync(&agents(&["c"]), 6000),
            [Event::Left {
                id: "a".into(),
                host: "host-a".into()
            }]
        );
    }
}
