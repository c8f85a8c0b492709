//! Hostile: `init` returns an error of 16 MiB. The host must keep only a capped prefix of it (in
//! its records, `ps --json` and the deploy reply) and mark the deployment failed.

use degroup_sdk::{Config, Plugin, export_plugin};

struct InitErrorHuge;

impl Plugin for InitErrorHuge {
    fn init(_config: Config) -> Result<Self, String> {
        Err(format!("init-error-huge: {}", "E".repeat(16 << 20)))
    }
}

export_plugin!(InitErrorHuge);
