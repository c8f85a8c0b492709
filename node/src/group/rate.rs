//! The mesh's send-rate cap: a token bucket per deployment, in messages and in bytes.
//!
//! Each sender has [`MSG_RATE`] messages per second (burst [`MSG_BURST`]) and
//! [`BYTE_RATE`] bytes per second (burst [`BYTE_BURST`]); a message takes one of the first and
//! its length of the second, or is refused (`rate-limited`) and takes nothing. The sending
//! host charges its own deployments; the receiving host charges each remote sender again, so
//! a host that does not cap its deployments gains nothing. The buckets live in
//! [`Buckets`], a map bounded by [`MAX_BUCKETS`]: when it is full, buckets idle long enough
//! to be full again are dropped (they would be created full anyway), else the newcomer is
//! refused.

use std::collections::HashMap;
use std::time::Instant;

/// Messages per second a deployment may send.
pub const MSG_RATE: f64 = 100.0;
/// Messages a deployment may send at once.
pub const MSG_BURST: f64 = 100.0;
/// Bytes per second a deployment may send.
pub const BYTE_RATE: f64 = 1024.0 * 1024.0;
/// Bytes a deployment may send at once.
pub const BYTE_BURST: f64 = 1024.0 * 1024.0;
/// Most senders tracked by one map.
pub const MAX_BUCKETS: usize = 4096;

/// One sender's tokens.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    msgs: f64,
    bytes: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(now: Instant) -> Self {
        Self {
            msgs: MSG_BURST,
            bytes: BYTE_BURST,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.msgs = (self.msgs + dt * MSG_RATE).min(MSG_BURST);
        self.bytes = (self.bytes + dt * BYTE_RATE).min(BYTE_BURST);
        self.at = now;
    }

    /// Takes one message of `len` bytes, or nothing when either is short.
    pub fn take(&mut self, len: usize, now: Instant) -> bool {
        self.refill(now);
        // A message larger than the burst could never pass; payloads are capped far below.
        let len = len as f64;
        if self.msgs >= 1.0 && self.bytes >= len {
            self.msgs -= 1.0;
            self.bytes -= len;
            true
        } else {
            false
        }
    }

    /// Whether it has been idle long enough to be full again.
    fn is_full(&self, now: Instant) -> bool {
        let mut b = *self;
        b.refill(now);
        b.msgs >= MSG_BURST && b.bytes >= BYTE_BURST
    }
}

/// The buckets of many senders, bounded.
#[derive(Debug, Default)]
pub struct Buckets {
    map: HashMap<String, Bucket>,
}

impl Buckets {
    /// Charges `sender` one message of `len` bytes; false when it is over its rate (or the
    /// map is full of active senders).
    pub fn take(&mut self, sender: &str, len: usize, now: Instant) -> bool {
        if let Some(b) = self.map.get_mut(sender) {
            return b.take(len, now);
        }
        if self.map.len() >= MAX_BUCKETS {
            self.map.retain(|_, b| !b.is_full(now));
            if self.map.len() >= MAX_BUCKETS {
                return false;
            }
        }
        let mut b = Bucket::new(now);
        let ok = b.take(len, now);
        self.map.insert(sender.to_owned(), b);
        ok
    }

    /// Forgets a sender (a local deployment that stopped).
    pub fn forget(&mut self, sender: &str) {
        self.map.remove(sender);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0);
        let sent = (0..1000).filter(|_| b.take(10, t0)).count();
        assert_eq!(sent, MSG_BURST as usize);
        // A tenth of a second later: ten more.
        let t1 = t0 + Duration::from_millis(100);
        let sent = (0..1000).filter(|_| b.take(10, t1)).count();
        assert_eq!(sent, 10);
    }

    #[test]
    fn bytes_cap() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0);
        let sent = (0..100).filter(|_| b.take(64 * 1024, t0)).count();
        assert_eq!(sent, 16);
        let t1 = t0 + Duration::from_secs(1);
        let sent = (0..100).filter(|_| b.take(64 * 1024, t1)).count();
        assert_eq!(sent, 16);
    }

    #[test]
    fn senders_are_separate_and_bounded() {
        let t0 = Instant::now();
        let mut m = Buckets::default();
        assert!((0..100).all(|_| m.take("a", 1, t0)));
        assert!(!m.take("a", 1, t0));
        assert!(m.take("b", 1, t0));
        for i in 0..MAX_BUCKETS {
            m.take(&format!("s{i}"), 1, t0);
        }
        assert!(m.map.len() <= MAX_BUCKETS);
        // Once the others are full again they make room.
        let later = t0 + Duration::from_secs(5);
        assert!(m.take("newcomer", 1, later));
        assert!(m.map.len() <= MAX_BUCKETS);
    }
}
