//! Deployment logs: a ring buffer per deployment behind `degroup logs`, fed through a rate
//! limiter so a flooding plugin costs the host a bounded amount of work and memory.
//!
//! Lines over the rate are dropped and counted, never queued; when the plugin is allowed to
//! write again, one host line says how many were dropped. Lines are cut at [`MAX_LINE`] bytes.
//! Every line has a sequence number, so `logs --follow` asks for "everything after N".

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Longest line kept, in bytes.
pub const MAX_LINE: usize = 4096;
/// Most lines returned by one read.
pub const MAX_PAGE: usize = 1000;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub at_ms: u64,
    /// `trace`, `debug`, `info`, `warn`, `error`.
    pub level: String,
    /// `plugin` for lines the plugin wrote, `host` for the supervisor's own (starts, traps),
    /// `http` for the access log of the requests it served.
    pub source: String,
    pub message: String,
}

/// A page of lines after a sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Sequence number to ask for next (`after`).
    pub next: u64,
    /// Lines the rate limit dropped so far.
    pub dropped: u64,
    /// Lines that fell out of the ring before they were read (`after` was too old).
    pub missed: u64,
}

#[derive(Debug)]
struct Ring {
    lines: VecDeque<LogLine>,
    cap: usize,
    next_seq: u64,
    dropped: u64,
    dropped_unreported: u64,
    tokens: f64,
    last_refill: Instant,
    rate: f64,
    burst: f64,
}

/// A deployment's log buffer; cloning shares it.
#[derive(Debug, Clone)]
pub struct Logs {
    inner: Arc<Mutex<Ring>>,
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl Logs {
    /// A buffer of `cap` lines accepting `rate` plugin lines per second (bursts of `2 × rate`).
    pub fn new(cap: usize, rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            inner: Arc::new(Mutex::new(Ring {
                lines: VecDeque::with_capacity(cap.min(1024)),
                cap: cap.max(1),
                next_seq: 1,
                dropped: 0,
                dropped_unreported: 0,
                tokens: rate * 2.0,
                last_refill: Instant::now(),
                rate,
                burst: rate * 2.0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A line from the plugin, subject to the rate limit. Returns whether it was kept.
    pub fn plugin(&self, level: &str, message: String) -> bool {
        self.limited(level, "plugin", message)
    }

    /// An access-log line (`GET /items 200 1.3 ms`, source `http`), under the same rate limit
    /// as the plugin's own lines: a flood of requests costs the log what a flood of lines does.
    pub fn access(&self, message: String) -> bool {
        self.limited("info", "http", message)
    }

    fn limited(&self, level: &str, source: &str, message: String) -> bool {
        let mut ring = self.lock();
        let now = Instant::now();
        let elapsed = now.duration_since(ring.last_refill).as_secs_f64();
        ring.last_refill = now;
        ring.tokens = (ring.tokens + elapsed * ring.rate).min(ring.burst);
        if ring.tokens < 1.0 {
            ring.dropped += 1;
            ring.dropped_unreported += 1;
            return false;
        }
        ring.tokens -= 1.0;
        if ring.dropped_unreported > 0 {
            let n = std::mem::take(&mut ring.dropped_unreported);
            push(
                &mut ring,
                "warn",
                "host",
                format!("{n} log lines dropped (rate limit)"),
            );
        }
        push(&mut ring, level, source, cut(message));
        true
    }

    /// A line from the host about this deployment (never rate limited).
    pub fn host(&self, level: &str, message: impl Into<String>) {
        let mut ring = self.lock();
        push(&mut ring, level, "host", cut(message.into()));
    }

    /// Lines with a sequence number above `after`, at most `limit`.
    pub fn read(&self, after: u64, limit: usize) -> LogPage {
        let ring = self.lock();
        let limit = limit.clamp(1, MAX_PAGE);
        let first = ring.lines.front().map_or(ring.next_seq, |l| l.seq);
        let missed = first.saturating_sub(after.saturating_add(1));
        let lines: Vec<LogLine> = ring
            .lines
            .iter()
            .filter(|l| l.seq > after)
            .take(limit)
            .cloned()
            .collect();
        let next = lines
            .last()
            .map_or(after.max(first.saturating_sub(1)), |l| l.seq);
        LogPage {
            lines,
            next,
            dropped: ring.dropped,
            missed,
        }
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> LogPage {
        let after = {
            let ring = self.lock();
            ring.next_seq.saturating_sub(n.min(MAX_PAGE) as u64 + 1)
        };
        let mut page = self.read(after, n);
        page.missed = 0;
        page
    }

    /// Lines dropped by the rate limit so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

fn push(ring: &mut Ring, level: &str, source: &str, message: String) {
    let seq = ring.next_seq;
    ring.next_seq += 1;
    if ring.lines.len() >= ring.cap {
        ring.lines.pop_front();
    }
    ring.lines.push_back(LogLine {
        seq,
        at_ms: crate::resources::now_ms(),
        level: level.to_owned(),
        source: source.to_owned(),
        message,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_and_reports_what_was_missed() {
        let logs = Logs::new(3, 1000);
        for i in 0..5 {
            logs.host("info", format!("line {i}"));
        }
        let page = logs.read(0, 100);
        assert_eq!(page.lines.len(), 3);
        assert_eq!(page.lines[0].message, "line 2");
        assert_eq!(page.missed, 2);
        assert_eq!(page.next, 5);
        let again = logs.read(page.next, 100);
        assert!(again.lines.is_empty());
        assert_eq!(again.next, 5);
        assert_eq!(logs.tail(1).lines[0].message, "line 4");
    }

    #[test]
    fn flood_is_capped_and_counted() {
        let logs = Logs::new(10_000, 100);
        let kept = (0..10_000)
            .filter(|i| logs.plugin("info", format!("{i}")))
            .count();
        // The burst (200) plus whatever refilled while looping; far below 10,000.
        assert!((200..1000).contains(&kept), "{kept}");
        assert_eq!(logs.dropped(), 10_000 - kept as u64);
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let logs = Logs::new(10, 10);
        logs.plugin("info", "é".repeat(5000));
        let line = &logs.read(0, 1).lines[0].message;
        assert!(line.len() <= MAX_LINE + '…'.len_utf8());
        assert!(line.ends_with('…'));
    }
}
