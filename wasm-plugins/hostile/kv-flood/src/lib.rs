//! Hostile: `tick` writes 64 KiB values under new keys until the store refuses with
//! `quota-exceeded`, then logs `quota reached after N writes` and stops writing (remembered in
//! memory and in the key `done`, so a restart does not start over).

use degroup_sdk::{Config, KvError, Plugin, error, export_plugin, info, kv};

const VALUE: usize = 64 << 10;
/// Writes per tick: enough to fill a small lease quickly, few enough to stay in the deadline.
const PER_TICK: u32 = 64;

struct KvFlood {
    next: u64,
    done: bool,
}

impl Plugin for KvFlood {
    fn init(_config: Config) -> Result<Self, String> {
        let done = kv::get("done")?.is_some();
        let next = kv::list("flood/", kv::MAX_LIST).len() as u64;
        let usage = kv::usage();
        info!(
            "kv-flood: {next} keys stored, {} of {} bytes used{}",
            usage.used,
            usage.quota,
            if done { ", already done" } else { "" }
        );
        Ok(KvFlood { next, done })
    }

    fn tick(&mut self, _now_ms: u64) {
        if self.done {
            return;
        }
        let value = vec![0xc3u8; VALUE];
        for _ in 0..PER_TICK {
            match kv::set(&format!("flood/{:08}", self.next), &value) {
                Ok(()) => self.next += 1,
                Err(KvError::QuotaExceeded { quota }) => {
                    self.done = true;
                    info!(
                        "quota reached after {} writes (quota {quota} bytes)",
                        self.next
                    );
                    // Best effort: the marker may itself not fit; memory still remembers.
                    let _ = kv::set("done", b"1");
                    return;
                }
                Err(e) => {
                    error!("write {} failed: {e}", self.next);
                    return;
                }
            }
        }
    }
}

export_plugin!(KvFlood);
