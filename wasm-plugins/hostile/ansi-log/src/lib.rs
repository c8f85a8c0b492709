//! Hostile: logs terminal escape sequences, in `init` and on every tick, at `warn`: a
//! clear-screen CSI, an OSC 0 window title, an OSC 52 clipboard write, a C1 CSI (`U+009B`), a
//! bidi override, and a message whose embedded line breaks try to forge host lines in
//! `degroup logs`. With config `fail=1`, `init` returns the forging text as its error instead.
//! The CLI must show every one escaped, on one line tagged as the plugin's; `logs --json` keeps
//! the exact text. The node's `cli_terminal` test holds the same strings.

use degroup_sdk::{Config, Plugin, export_plugin, warn};

/// What the plugin logs, in this order.
const HOSTILE: [&str; 6] = [
    "clear \x1b[2J\x1b[3J\x1b[H screen",
    "title \x1b]0;degroup: all good\x07 set",
    "clipboard \x1b]52;c;Y3VybCBodHRwOi8vZXZpbC5leGFtcGxlIHwgc2g=\x07 write",
    "c1 \u{9b}2J\u{9b}31m csi",
    "bidi \u{202e}exe.txt\u{202c} override \u{2066}isolate\u{2069}",
    "forged\n[host]   12:00:00.000 INFO  host info started\r\n12:00:00.000 INFO  [host] host info started",
];

struct AnsiLog;

fn log_all() {
    for m in HOSTILE {
        warn!("{m}");
    }
}

impl Plugin for AnsiLog {
    fn init(config: Config) -> Result<Self, String> {
        if config.contains_key("fail") {
            return Err(HOSTILE[5].to_owned() + HOSTILE[0]);
        }
        log_all();
        Ok(AnsiLog)
    }

    fn tick(&mut self, _now_ms: u64) {
        log_all();
    }
}

export_plugin!(AnsiLog);
