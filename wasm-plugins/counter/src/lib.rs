//! `counter`: a durable tick counter, the restart and upgrade test plugin.
//!
//! - `init` reads `count` from the key-value store (JSON `u64`, 0 when absent) and logs
//!   `counter starts at N`.
//! - every `tick` adds `step` (config, default 1), stores the count and logs `count = N`.
//! - a `message` with payload `reset` sets the count to 0 (logs `count = 0`).
//!
//! The host's tests parse the `count = N` lines to check that nothing is lost or repeated
//! across restarts, node restarts and upgrades.

use degroup_sdk::{Config, Plugin, error, export_plugin, info, kv, warn};

const KEY: &str = "count";

struct Counter {
    count: u64,
    step: u64,
}

impl Counter {
    /// Stores `value` then makes it the count: the log line only says what is durable.
    fn store(&mut self, value: u64) {
        match kv::set_json(KEY, &value) {
            Ok(()) => {
                self.count = value;
                info!("count = {value}");
            }
            Err(e) => error!("could not store count {value}: {e}"),
        }
    }
}

impl Plugin for Counter {
    fn init(config: Config) -> Result<Self, String> {
        let step = config.parse_or("step", 1u64)?;
        let count = kv::get_json::<u64>(KEY)?.unwrap_or(0);
        info!("counter starts at {count}");
        Ok(Counter { count, step })
    }

    fn tick(&mut self, _now_ms: u64) {
        let next = self.count.wrapping_add(self.step);
        self.store(next);
    }

    fn message(&mut self, from: String, payload: Vec<u8>) {
        if payload.trim_ascii() == b"reset" {
            info!("reset asked by {from}");
            self.store(0);
        } else {
            warn!(
                "unknown message from {from}: {}",
                String::from_utf8_lossy(&payload)
            );
        }
    }
}

export_plugin!(Counter);
