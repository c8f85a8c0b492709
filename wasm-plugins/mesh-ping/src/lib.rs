//! `mesh-ping`: measures mesh round trips between members of a group.
//!
//! `degroup message <id> 'ping <member id> <n>'` makes it do `n` ping-pong round trips with
//! that member (which runs `mesh-ping` too), one after the other: each next ping is sent from
//! the `message` export that receives the previous pong, and each round trip is timed with the
//! monotonic clock. After the last one it logs `mesh rtt p50_us=… p99_us=… n=…`. A send the
//! host refuses is logged (`mesh-ping: send to <id>: not-in-group: …`); a ping whose pong has
//! not come back within a second is sent again from a tick.
//!
//! It answers every `ping-rt K` from a member with `pong-rt K`, and logs on its tick how many
//! pings it answered and how many other messages it got (`mesh-ping: answered=N other=N`),
//! when those change.

use degroup_sdk::{Config, Plugin, export_plugin, info, mesh, time, warn};

/// Most round trips one run does.
const MAX_N: u64 = 100_000;
/// A ping unanswered this long is sent again, from a tick.
const RESEND_NS: u64 = 1_000_000_000;

struct Run {
    peer: String,
    n: u64,
    /// Round trip being timed (0-based) and when its ping went out.
    seq: u64,
    sent_ns: u64,
    rtts_us: Vec<u64>,
}

struct Ping {
    run: Option<Run>,
    answered: u64,
    other: u64,
    logged: (u64, u64),
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[i.min(sorted.len() - 1)]
}

impl Ping {
    fn send_ping(&mut self) {
        let Some(run) = &mut self.run else {
            return;
        };
        run.sent_ns = time::monotonic_ns();
        let payload = format!("ping-rt {}", run.seq);
        if let Err(e) = mesh::send(&run.peer, payload.as_bytes()) {
            warn!("mesh-ping: send to {}: {e}", run.peer);
            if !e.is_transient() {
                self.run = None;
            }
        }
    }

    fn pong(&mut self, from: &str, k: u64) {
        let Some(run) = &mut self.run else {
            return;
        };
        if run.peer != from || run.seq != k {
            return; // a late answer to a resent ping
        }
        let rtt = time::monotonic_ns().saturating_sub(run.sent_ns) / 1000;
        run.rtts_us.push(rtt);
        run.seq += 1;
        if run.seq < run.n {
            self.send_ping();
            return;
        }
        let mut r = std::mem::take(&mut run.rtts_us);
        r.sort_unstable();
        info!(
            "mesh rtt p50_us={} p99_us={} n={} peer={}",
            percentile(&r, 50),
            percentile(&r, 99),
            r.len(),
            run.peer
        );
        self.run = None;
    }
}

impl Plugin for Ping {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Ping {
            run: None,
            answered: 0,
            other: 0,
            logged: (0, 0),
        })
    }

    fn tick(&mut self, _now_ms: u64) {
        if let Some(run) = &self.run
            && time::monotonic_ns().saturating_sub(run.sent_ns) > RESEND_NS
        {
            self.send_ping();
        }
        if self.logged != (self.answered, self.other) {
            self.logged = (self.answered, self.other);
            info!("mesh-ping: answered={} other={}", self.answered, self.other);
        }
    }

    fn message(&mut self, from: String, payload: Vec<u8>) {
        let text = String::from_utf8_lossy(&payload);
        let words: Vec<&str> = text.split_whitespace().collect();
        match words[..] {
            ["ping", peer, n] => {
                let Ok(n) = n.parse::<u64>() else {
                    warn!("mesh-ping: `{n}` is not a count");
                    return;
                };
                self.run = Some(Run {
                    peer: peer.to_string(),
                    n: n.clamp(1, MAX_N),
                    seq: 0,
                    sent_ns: 0,
                    rtts_us: Vec::new(),
                });
                info!("mesh-ping: {n} round trips with {peer}");
                self.send_ping();
            }
            ["ping-rt", k] => {
                self.answered += 1;
                let answer = format!("pong-rt {k}");
                if let Err(e) = mesh::send(&from, answer.as_bytes()) {
                    warn!("mesh-ping: answer to {from}: {e}");
                }
            }
            ["pong-rt", k] => {
                if let Ok(k) = k.parse::<u64>() {
                    self.pong(&from, k);
                }
            }
            _ => self.other += 1,
        }
    }
}

export_plugin!(Ping);

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
    }
}
