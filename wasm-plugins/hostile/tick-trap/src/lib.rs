//! Hostile: `init` succeeds, every `tick` panics (a trap). The host restarts the instance with
//! backoff and marks the deployment failed after 5 consecutive failures.

use degroup_sdk::{Config, Plugin, export_plugin, info};

struct TickTrap;

impl Plugin for TickTrap {
    fn init(_config: Config) -> Result<Self, String> {
        info!("tick-trap: init ok");
        Ok(TickTrap)
    }

    fn tick(&mut self, now_ms: u64) {
        panic!("tick-trap: panicking in tick at {now_ms}");
    }
}

export_plugin!(TickTrap);
