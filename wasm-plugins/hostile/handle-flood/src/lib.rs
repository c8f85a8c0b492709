//! Hostile: every `tick` opens timer handles (pollables) and keeps them all, 100,000 of them.
//! Each is an entry in the host's resource table: the host caps the table, so the plugin traps
//! long before the host's memory notices.

use degroup_sdk::bindings::wasi::clocks::monotonic_clock;
use degroup_sdk::{Config, Plugin, error, export_plugin, info};

struct HandleFlood;

impl Plugin for HandleFlood {
    fn init(_config: Config) -> Result<Self, String> {
        info!("handle-flood: init ok");
        Ok(HandleFlood)
    }

    fn tick(&mut self, _now_ms: u64) {
        let mut kept = Vec::new();
        for _ in 0..100_000 {
            kept.push(monotonic_clock::subscribe_duration(1_000_000_000_000));
        }
        error!("ESCAPED: {} handles held", kept.len());
    }
}

export_plugin!(HandleFlood);
