//! Hostile: `tick` never returns. The host must interrupt it at the call deadline (epoch) or
//! when its fuel runs out, and restart the instance.

use core::hint::black_box;

use degroup_sdk::{Config, Plugin, export_plugin, info};

struct LoopForever;

impl Plugin for LoopForever {
    fn init(_config: Config) -> Result<Self, String> {
        info!("loop-forever: init ok");
        Ok(LoopForever)
    }

    fn tick(&mut self, now_ms: u64) {
        info!("loop-forever: spinning");
        let mut x = now_ms;
        loop {
            x = black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }
}

export_plugin!(LoopForever);
