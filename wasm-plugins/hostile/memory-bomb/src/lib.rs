//! Hostile: `tick` allocates and touches 1 MiB chunks forever, never freeing them. The host's
//! memory limit (the lease's mem-bytes) must refuse `memory.grow`; the allocator then aborts,
//! which is a trap.

use core::hint::black_box;

use degroup_sdk::{Config, Plugin, export_plugin, info};

const CHUNK: usize = 1 << 20;

struct MemoryBomb;

impl Plugin for MemoryBomb {
    fn init(_config: Config) -> Result<Self, String> {
        info!("memory-bomb: init ok");
        Ok(MemoryBomb)
    }

    fn tick(&mut self, _now_ms: u64) {
        let mut mib = 0u64;
        loop {
            // Touch every page so the memory is really committed, then leak it.
            let chunk: &'static mut [u8] = Vec::leak(vec![0xa5u8; CHUNK]);
            black_box(&mut *chunk);
            mib += 1;
            if mib.is_multiple_of(64) {
                info!("memory-bomb: {mib} MiB held");
            }
        }
    }
}

export_plugin!(MemoryBomb);
