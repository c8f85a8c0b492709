//! Hostile: `init` panics (a trap). The host retries with backoff and marks the deployment
//! failed after the 5th consecutive failure.

use degroup_sdk::{Config, Plugin, export_plugin};

struct InitTrap;

impl Plugin for InitTrap {
    fn init(_config: Config) -> Result<Self, String> {
        panic!("init-trap: panicking in init");
    }
}

export_plugin!(InitTrap);
