//! Hostile: every second `tick` of an instance panics. A successful tick in between must not
//! wipe the failure count: failures are counted over a time window, so it ends `failed`
//! instead of restarting forever.

use degroup_sdk::{Config, Plugin, export_plugin, info};

struct FlakyTick {
    ticks: u64,
}

impl Plugin for FlakyTick {
    fn init(_config: Config) -> Result<Self, String> {
        info!("flaky-tick: init ok");
        Ok(FlakyTick { ticks: 0 })
    }

    fn tick(&mut self, now_ms: u64) {
        self.ticks += 1;
        if self.ticks % 2 == 0 {
            panic!("flaky-tick: panicking on tick {} at {now_ms}", self.ticks);
        }
        info!("flaky-tick: tick {} ok", self.ticks);
    }
}

export_plugin!(FlakyTick);
