//! Hostile: every `tick` makes host calls with 8 MiB arguments: `kv.get` and `kv.set` of an
//! 8 MiB key, and `kv.list` with an 8 MiB prefix, many times. The host must refuse them before
//! doing any work with them, so each call costs little and the tick stays within its deadline.
//! It calls the raw bindings: the SDK's own key checks are the guest's, not the host's.

use degroup_sdk::bindings::degroup::plugin::kv;
use degroup_sdk::{Config, Plugin, error, export_plugin, info};

const SIZE: usize = 8 << 20;
const ROUNDS: usize = 3;

struct KvHugeKey {
    key: String,
}

impl Plugin for KvHugeKey {
    fn init(_config: Config) -> Result<Self, String> {
        info!("kv-huge-key: init ok");
        Ok(KvHugeKey {
            key: "k".repeat(SIZE),
        })
    }

    fn tick(&mut self, _now_ms: u64) {
        let mut refused = 0;
        for _ in 0..ROUNDS {
            if kv::get(&self.key).is_some() {
                error!("ESCAPED: a value under an 8 MiB key");
            }
            if kv::set(&self.key, b"v").is_err() {
                refused += 1;
            }
            if !kv::list(&self.key, 1000).is_empty() {
                error!("ESCAPED: keys under an 8 MiB prefix");
            }
        }
        info!("kv-huge-key: {refused} of {ROUNDS} huge keys refused");
    }
}

export_plugin!(KvHugeKey);
