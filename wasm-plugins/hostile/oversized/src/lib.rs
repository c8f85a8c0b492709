//! Hostile: a valid plugin that carries ~9 MiB of non-zero static data (written by
//! `build.rs`), so its package is over a host's 8 MiB `[blobs] max_package` and must be refused
//! by that host before anything is parsed.

use core::hint::black_box;

use degroup_sdk::{Config, Plugin, export_plugin, info};

static BLOB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/blob.bin"));

struct Oversized;

impl Plugin for Oversized {
    fn init(_config: Config) -> Result<Self, String> {
        let blob: &[u8] = black_box(BLOB);
        info!("oversized: carrying {} bytes", blob.len());
        Ok(Oversized)
    }

    fn tick(&mut self, now_ms: u64) {
        let blob: &[u8] = black_box(BLOB);
        let i = (now_ms as usize) % blob.len().max(1);
        info!(
            "oversized: byte {i} is {}",
            blob.get(i).copied().unwrap_or(0)
        );
    }
}

export_plugin!(Oversized);
