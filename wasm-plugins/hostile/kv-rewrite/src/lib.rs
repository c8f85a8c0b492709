//! Hostile: every `tick` rewrites 1 MiB values under a few keys as fast as the host lets it,
//! deleting and re-adding some. Whatever the pattern, the host's disk use for the deployment
//! must stay within its quota plus a small overhead, and be reclaimed when it stops.

use degroup_sdk::{Config, Plugin, export_plugin, info, kv};

const VALUE: usize = 1 << 20;

struct KvRewrite {
    round: u64,
    value: Vec<u8>,
}

impl Plugin for KvRewrite {
    fn init(_config: Config) -> Result<Self, String> {
        info!("kv-rewrite: init ok");
        Ok(KvRewrite {
            round: 0,
            value: vec![0xa5; VALUE],
        })
    }

    fn tick(&mut self, _now_ms: u64) {
        let (mut stored, mut refused) = (0u32, 0u32);
        for i in 0..4u64 {
            self.round += 1;
            self.value[(self.round as usize) % VALUE] ^= 0xff;
            let key = format!("v{}", (self.round + i) % 3);
            if self.round % 5 == 0 {
                let _ = kv::delete(&key);
            }
            match kv::set(&key, &self.value) {
                Ok(()) => stored += 1,
                Err(_) => refused += 1,
            }
        }
        info!("kv-rewrite: {stored} stored, {refused} refused");
    }
}

export_plugin!(KvRewrite);
