//! Hostile: every `tick` asks `wasi:random` for 64 MiB in one call, which takes the host far
//! longer to fill than a call may last. The host caps one call's size: the call traps at once.

use degroup_sdk::{Config, Plugin, error, export_plugin, info, random};

const SIZE: usize = 64 << 20;

struct RandomHuge;

impl Plugin for RandomHuge {
    fn init(_config: Config) -> Result<Self, String> {
        info!("random-huge: init ok");
        Ok(RandomHuge)
    }

    fn tick(&mut self, _now_ms: u64) {
        let bytes = random::bytes(SIZE);
        if bytes.len() == SIZE {
            error!("ESCAPED: {SIZE} random bytes in one call");
        }
    }
}

export_plugin!(RandomHuge);
