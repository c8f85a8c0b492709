//! Hostile: every `tick` subscribes to a timer an hour away and blocks on it in
//! `wasi:io/poll`, a host call. The deadline must hold inside the host call: the host cancels
//! the wait at the call's deadline, restarts the instance, and in the end marks it failed. A stop
//! while it waits must take effect at once.

use degroup_sdk::bindings::wasi::clocks::monotonic_clock;
use degroup_sdk::{Config, Plugin, error, export_plugin, info};

struct PollBlock;

impl Plugin for PollBlock {
    fn init(_config: Config) -> Result<Self, String> {
        info!("poll-block: init ok");
        Ok(PollBlock)
    }

    fn tick(&mut self, _now_ms: u64) {
        info!("poll-block: waiting an hour in wasi:io/poll");
        monotonic_clock::subscribe_duration(3_600_000_000_000).block();
        error!("ESCAPED: the wait returned");
    }
}

export_plugin!(PollBlock);
