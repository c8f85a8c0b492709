//! `hello`: the smallest useful plugin. Logs a greeting with its configuration and lease in
//! `init`, and one line per tick.
//!
//! ```text
//! degroup plugin run hello.wasm --config name=alice --ticks 3
//! ```

use degroup_sdk::{Config, Plugin, export_plugin, info, lease};

/// Keeps the name to greet and how many ticks it has seen since this start.
struct Hello {
    name: String,
    ticks: u64,
}

impl Plugin for Hello {
    fn init(config: Config) -> Result<Self, String> {
        let name = config.get_or("name", "world").to_string();
        let pairs: Vec<String> = config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let lease = lease::info();
        info!(
            "hello, {name}! config: [{}]; running {} {} on lease {} ({} millicores, {} MiB)",
            pairs.join(", "),
            lease.package_name,
            lease.package_version,
            lease.lease_id,
            lease.slice.cpu_millis,
            lease.slice.mem_bytes >> 20,
        );
        Ok(Hello { name, ticks: 0 })
    }

    fn tick(&mut self, now_ms: u64) {
        self.ticks += 1;
        info!(
            "tick {} at {now_ms}: hello again, {}",
            self.ticks, self.name
        );
    }

    fn message(&mut self, from: String, payload: Vec<u8>) {
        info!("message from {from}: {}", String::from_utf8_lossy(&payload));
    }
}

export_plugin!(Hello);
