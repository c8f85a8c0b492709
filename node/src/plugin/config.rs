//! The `[plugin]` table: sandbox limits and supervision timing, as written and validated.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capacity::units::{format_size, parse_duration, parse_size};
pub use crate::plugin::http::HttpLimits;

/// The `[plugin]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginConfig {
    /// Time between two `tick` calls of a deployment, e.g. "1s".
    pub tick_interval: String,
    /// Deadline of one `tick` or `message` call, e.g. "100ms".
    pub call_timeout: String,
    /// Deadline of `init`, e.g. "1s".
    pub init_timeout: String,
    /// Granularity of deadlines (the epoch timer), e.g. "5ms".
    pub epoch_tick: String,
    /// Most fuel (roughly: wasm instructions) one call may burn.
    pub fuel_per_call: u64,
    /// Largest wasm stack, in bytes.
    pub max_stack: u64,
    /// Most table elements one instance may grow to.
    pub max_table_elements: u32,
    /// Log lines per second each deployment may write (bursts of twice this).
    pub log_rate: u32,
    /// Log lines kept per deployment for `degroup logs`.
    pub log_lines: u32,
    /// Most deployments running at once on this host (sizes the instance pool).
    pub max_deployments: u32,
    /// Publishers (hex ed25519 keys) whose packages may run here; empty: everyone.
    pub publishers: Vec<String>,
    /// Failures (traps, deadlines) within `failure_window` before a deployment is marked
    /// failed.
    pub max_failures: u32,
    /// The window over which failures are counted, e.g. "60s".
    pub failure_window: String,
    /// First restart delay after a failure, doubled each time up to `max_backoff`.
    pub backoff: String,
    /// Longest restart delay.
    pub max_backoff: String,
    /// CPU time one compilation of a tenant's component may take (whole seconds, rounded up),
    /// e.g. "10s". Compiling runs in a child process (`degroup __compile`); past this bound
    /// the kernel kills it (RLIMIT_CPU) and the deploy is refused. The CPU it used is charged
    /// to the lease.
    pub compile_cpu: String,
    /// Address space of that child process, e.g. "1GiB" (RLIMIT_AS): past it, allocations fail
    /// and the deploy is refused.
    pub compile_memory: String,
    /// Wall-clock time one compilation may take before its child is killed, e.g. "30s" (the
    /// child runs at a lower priority, so it may wait for the CPU on a busy host).
    pub compile_timeout: String,
    /// Bytes of compiled code kept in the on-disk cache (`<data dir>/cache`), e.g. "1GiB";
    /// least recently used entries go first.
    pub compile_cache_bytes: String,
    /// Bytes of compiled code kept in memory, e.g. "256MiB"; least recently used go first.
    pub compile_memory_cache_bytes: String,
    /// Fuel per second that one thousandth of a leased core is worth: a lease's CPU is
    /// `cpu_millis * fuel_per_cpu_milli` fuel per second, what its children's
    /// `fuel-per-second` limits come out of.
    pub fuel_per_cpu_milli: u64,
    /// Most child workloads one deployment may have at once.
    pub max_children: u32,
}

impl Default for PluginConfig {
    /// [`Limits::default`], written as a user would.
    fn default() -> Self {
        let l = Limits::default();
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        Self {
            tick_interval: ms(l.tick_interval),
            call_timeout: ms(l.call_timeout),
            init_timeout: ms(l.init_timeout),
            epoch_tick: ms(l.epoch_tick),
            fuel_per_call: l.fuel_per_call,
            max_stack: l.max_stack as u64,
            max_table_elements: u32::try_from(l.max_table_elements).unwrap_or(u32::MAX),
            log_rate: l.log_rate,
            log_lines: u32::try_from(l.log_lines).unwrap_or(u32::MAX),
            max_deployments: l.max_deployments,
            publishers: Vec::new(),
            max_failures: l.max_failures,
            failure_window: ms(l.failure_window),
            backoff: ms(l.backoff),
            max_backoff: ms(l.max_backoff),
            compile_cpu: format!("{}s", l.compile_cpu.as_secs()),
            compile_memory: format_size(l.compile_memory),
            compile_timeout: format!("{}s", l.compile_timeout.as_secs()),
            compile_cache_bytes: format_size(l.compile_cache_bytes),
            compile_memory_cache_bytes: format_size(l.compile_memory_cache_bytes),
            fuel_per_cpu_milli: l.fuel_per_cpu_milli,
            max_children: l.max_children,
        }
    }
}

/// The validated `[plugin]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub tick_interval: Duration,
    pub call_timeout: Duration,
    pub init_timeout: Duration,
    pub epoch_tick: Duration,
    pub fuel_per_call: u64,
    pub max_stack: usize,
    pub max_table_elements: usize,
    pub log_rate: u32,
    pub log_lines: usize,
    pub max_deployments: u32,
    pub publishers: Vec<[u8; 32]>,
    pub max_failures: u32,
    pub failure_window: Duration,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// CPU bound of one compilation (whole seconds).
    pub compile_cpu: Duration,
    /// Address-space bound of the compile child, bytes.
    pub compile_memory: u64,
    /// Wall-clock bound of one compilation.
    pub compile_timeout: Duration,
    /// Disk compile cache bound, bytes.
    pub compile_cache_bytes: u64,
    /// Memory compile cache bound, bytes.
    pub compile_memory_cache_bytes: u64,
    /// Fuel per second per thousandth of a leased core.
    pub fuel_per_cpu_milli: u64,
    /// Most children per deployment.
    pub max_children: u32,
    /// Bounds of HTTP requests to plugins: filled from `[ingress]`, not from `[plugin]`.
    pub http: HttpLimits,
}

impl Default for Limits {
    /// The defaults of the `[plugin]` table (a unit test checks that they validate).
    fn default() -> Self {
        Self {
            tick_interval: Duration::from_secs(1),
            call_timeout: Duration::from_millis(100),
            init_timeout: Duration::from_secs(1),
            epoch_tick: Duration::from_millis(5),
            fuel_per_call: 10_000_000_000,
            max_stack: 512 * 1024,
            max_table_elements: 100_000,
            log_rate: 100,
            log_lines: 1000,
            max_deployments: 128,
            publishers: Vec::new(),
            max_failures: 5,
            failure_window: Duration::from_secs(60),
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            compile_cpu: Duration::from_secs(10),
            compile_memory: 1 << 30,
            compile_timeout: Duration::from_secs(30),
            compile_cache_bytes: 1 << 30,
            compile_memory_cache_bytes: 256 << 20,
            fuel_per_cpu_milli: 1_000_000,
            max_children: 16,
            http: HttpLimits::default(),
        }
    }
}

impl PluginConfig {
    /// Validates the table, naming the key of any bad value.
    pub fn to_limits(&self) -> Result<Limits, String> {
        let dur = |key: &str, v: &str, min_ms: u64| {
            let ms = parse_duration(v).map_err(|e| format!("plugin.{key}: {e}"))?;
            if ms < min_ms {
                return Err(format!("plugin.{key} must be at least {min_ms}ms"));
            }
            Ok(Duration::from_millis(ms))
        };
        let publishers = self
            .publishers
            .iter()
            .map(|p| {
                let bytes = hex::decode(p.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
                bytes.ok_or_else(|| {
                    format!(
                        "plugin.publishers: {p:?} is not a publisher key (64 hex characters, printed by `degroup plugin pack`)"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let size = |key: &str, v: &str| parse_size(v).map_err(|e| format!("plugin.{key}: {e}"));
        let compile_cpu = dur("compile_cpu", &self.compile_cpu, 1000)?;
        let limits = Limits {
            tick_interval: dur("tick_interval", &self.tick_interval, 10)?,
            call_timeout: dur("call_timeout", &self.call_timeout, 1)?,
            init_timeout: dur("init_timeout", &self.init_timeout, 1)?,
            epoch_tick: dur("epoch_tick", &self.epoch_tick, 1)?,
            fuel_per_call: self.fuel_per_call,
            max_stack: usize::try_from(self.max_stack).unwrap_or(usize::MAX),
            max_table_elements: self.max_table_elements as usize,
            log_rate: self.log_rate,
            log_lines: self.log_lines as usize,
            max_deployments: self.max_deployments,
            publishers,
            max_failures: self.max_failures,
            failure_window: dur("failure_window", &self.failure_window, 1000)?,
            backoff: dur("backoff", &self.backoff, 1)?,
            max_backoff: dur("max_backoff", &self.max_backoff, 1)?,
            // RLIMIT_CPU counts whole seconds.
            compile_cpu: Duration::from_secs(compile_cpu.as_secs_f64().ceil() as u64),
            compile_memory: size("compile_memory", &self.compile_memory)?,
            compile_timeout: dur("compile_timeout", &self.compile_timeout, 1000)?,
            compile_cache_bytes: size("compile_cache_bytes", &self.compile_cache_bytes)?,
            compile_memory_cache_bytes: size(
                "compile_memory_cache_bytes",
                &self.compile_memory_cache_bytes,
            )?,
            fuel_per_cpu_milli: self.fuel_per_cpu_milli,
            max_children: self.max_children,
            http: HttpLimits::default(),
        };
        if limits.fuel_per_call < 1_000_000 {
            return Err("plugin.fuel_per_call must be at least 1000000".into());
        }
        if !(64 * 1024..=64 * 1024 * 1024).contains(&limits.max_stack) {
            return Err("plugin.max_stack must be between 65536 and 67108864 bytes".into());
        }
        if limits.max_table_elements == 0 || limits.max_table_elements > 10_000_000 {
            return Err("plugin.max_table_elements must be between 1 and 10000000".into());
        }
        if limits.log_rate == 0 || limits.log_lines == 0 {
            return Err("plugin.log_rate and plugin.log_lines must be at least 1".into());
        }
        if limits.max_deployments == 0 || limits.max_deployments > 10_000 {
            return Err("plugin.max_deployments must be between 1 and 10000".into());
        }
        if limits.max_failures == 0 {
            return Err("plugin.max_failures must be at least 1".into());
        }
        if limits.call_timeout < limits.epoch_tick || limits.init_timeout < limits.epoch_tick {
            return Err(
                "plugin.call_timeout and plugin.init_timeout must be at least plugin.epoch_tick"
                    .into(),
            );
        }
        if limits.fuel_per_cpu_milli == 0 {
            return Err("plugin.fuel_per_cpu_milli must be at least 1".into());
        }
        if limits.max_children > 1000 {
            return Err("plugin.max_children must be at most 1000".into());
        }
        if limits.compile_memory < 64 << 20 {
            return Err("plugin.compile_memory must be at least 64MiB".into());
        }
        if limits.compile_timeout < limits.compile_cpu {
            return Err("plugin.compile_timeout must be at least plugin.compile_cpu".into());
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let limits = PluginConfig::default().to_limits();
        assert_eq!(
            limits.as_ref().map(|l| l.call_timeout),
            Ok(Duration::from_millis(100))
        );
        assert_eq!(limits, Ok(Limits::default()));
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = [
            PluginConfig {
                call_timeout: "soon".into(),
                ..Default::default()
            },
            PluginConfig {
                max_stack: 10,
                ..Default::default()
            },
            PluginConfig {
                publishers: vec!["zz".into()],
                ..Default::default()
            },
            PluginConfig {
                tick_interval: "1ms".into(),
                ..Default::default()
            },
            PluginConfig {
                max_failures: 0,
                ..Default::default()
            },
            PluginConfig {
                compile_memory: "lots".into(),
                ..Default::default()
            },
            PluginConfig {
                compile_cpu: "20s".into(),
                compile_timeout: "5s".into(),
                ..Default::default()
            },
        ];
        for cfg in bad {
            let err = cfg.to_limits().err().unwrap_or_default();
            assert!(err.starts_with("plugin."), "{err}");
        }
    }
}
