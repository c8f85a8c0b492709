//! Hostile: `tick` tries to store a 2 MiB value. The host must refuse it with
//! `value-too-large` (a result, not a trap); the plugin logs `refused: value too large ...`
//! with `error!` and carries on.

use degroup_sdk::{Config, Plugin, error, export_plugin, info, kv};

const SIZE: usize = 2 << 20;

struct KvHugeValue;

impl Plugin for KvHugeValue {
    fn init(_config: Config) -> Result<Self, String> {
        info!("kv-huge-value: init ok");
        Ok(KvHugeValue)
    }

    fn tick(&mut self, _now_ms: u64) {
        let value = vec![0x5au8; SIZE];
        match kv::set("huge", &value) {
            Ok(()) => error!("ESCAPED: a {SIZE}-byte value was stored"),
            Err(e) => error!("refused: {e}"),
        }
    }
}

export_plugin!(KvHugeValue);
