//! Hostile: every `tick` logs 100,000 lines. The host's log rate limit must drop all but a
//! burst and count the rest, without slowing the plugin or growing memory.

use degroup_sdk::{Config, Plugin, export_plugin, info};

const LINES: u32 = 100_000;

struct LogFlood;

impl Plugin for LogFlood {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(LogFlood)
    }

    fn tick(&mut self, now_ms: u64) {
        for i in 0..LINES {
            info!("flood {i} at {now_ms}");
        }
    }
}

export_plugin!(LogFlood);
