//! Time from the host's clocks (`wasi:clocks`).
//!
//! [`Plugin::tick`](crate::Plugin::tick) already receives the wall-clock time; use these in
//! `init` and `message`, or to measure how long something took.

use crate::host;

/// Wall-clock time, Unix milliseconds.
pub fn now_ms() -> u64 {
    let (secs, nanos) = host::wall_clock();
    secs.saturating_mul(1000)
        .saturating_add(u64::from(nanos / 1_000_000))
}

/// A monotonic clock in nanoseconds, for measuring intervals; its zero is arbitrary.
pub fn monotonic_ns() -> u64 {
    host::monotonic_ns()
}

#[cfg(test)]
mod tests {
    #[test]
    fn clocks_move_forward() {
        let a = super::monotonic_ns();
        let b = super::monotonic_ns();
        assert!(b >= a);
        assert!(super::now_ms() > 1_600_000_000_000);
    }
}
