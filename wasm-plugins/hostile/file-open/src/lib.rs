//! Hostile: `tick` tries to read `/etc/passwd`, create `escape.txt` and list `/`. The host
//! preopens no directory, so all three must fail: it logs each error with `warn!`, then
//! `file access denied` if all failed or `ESCAPED` if any succeeded.

use std::fs;

use degroup_sdk::{Config, Plugin, error, export_plugin, info, warn};

struct FileOpen;

impl Plugin for FileOpen {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(FileOpen)
    }

    fn tick(&mut self, _now_ms: u64) {
        let mut escaped = Vec::new();
        match fs::File::open("/etc/passwd") {
            Ok(_) => escaped.push("open /etc/passwd"),
            Err(e) => warn!("open /etc/passwd: {e}"),
        }
        match fs::File::create("escape.txt") {
            Ok(_) => escaped.push("create escape.txt"),
            Err(e) => warn!("create escape.txt: {e}"),
        }
        match fs::read_dir("/") {
            Ok(_) => escaped.push("read_dir /"),
            Err(e) => warn!("read_dir /: {e}"),
        }
        if escaped.is_empty() {
            info!("file access denied");
        } else {
            error!("ESCAPED: {}", escaped.join(", "));
        }
    }
}

export_plugin!(FileOpen);
