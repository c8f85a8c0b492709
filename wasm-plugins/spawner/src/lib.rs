//! `spawner`: starts child workloads (`degroup:plugin/workload`) and logs every answer of the
//! host, for the node's tests of children.
//!
//! - `--config children=<ref>|<mem_mib>|<fuel_per_s>|<kv_kib>;…` starts those children in the
//!   first `init` (remembered in the key-value store, so a restart does not start them again:
//!   the host keeps them). `--config child.<key>=<value>` entries are handed to every child.
//! - Messages (`degroup message ID TEXT`): `start <ref>|<mem_mib>|<fuel_per_s>|<kv_kib>`,
//!   `stop <id>`, `list`, `status <id>`, `route <host> <id>`.
//!
//! Log lines: `started <id> <ref>`, `start <ref> refused: <error>`, `stopped <id>`,
//! `stop <id> refused: <error>`, `child <id> <state> restarts=<n> mem=<bytes> fuel=<n>
//! reason=<r>`, `routed <host> <id>`, `route <host> <id> refused: <error>`.

use degroup_sdk::bindings::degroup::plugin::{kv, workload};
use degroup_sdk::{Config, Plugin, export_plugin, info, warn};

struct Spawner {
    child_config: Vec<(String, String)>,
}

fn limits(mem_mib: &str, fuel: &str, kv_kib: &str) -> Option<workload::Limits> {
    Some(workload::Limits {
        mem_bytes: mem_mib.trim().parse::<u64>().ok()? << 20,
        fuel_per_second: fuel.trim().parse().ok()?,
        kv_bytes: kv_kib.trim().parse::<u64>().ok()? << 10,
    })
}

fn state(s: workload::State) -> &'static str {
    match s {
        workload::State::Starting => "starting",
        workload::State::Running => "running",
        workload::State::Backoff => "backoff",
        workload::State::Failed => "failed",
        workload::State::Stopped => "stopped",
    }
}

fn show(s: &workload::ChildStatus) {
    info!(
        "child {} {} restarts={} mem={} fuel={} package={} reason={}",
        s.id,
        state(s.state),
        s.restarts,
        s.mem_bytes,
        s.fuel,
        s.package,
        s.reason.as_deref().unwrap_or("-")
    );
}

impl Spawner {
    /// `<ref>|<mem_mib>|<fuel_per_s>|<kv_kib>`
    fn start(&self, spec: &str) {
        let parts: Vec<&str> = spec.trim().split('|').collect();
        let [reference, mem, fuel, kv_kib] = parts[..] else {
            warn!("bad child spec {spec:?}: want <ref>|<mem_mib>|<fuel_per_s>|<kv_kib>");
            return;
        };
        let Some(l) = limits(mem, fuel, kv_kib) else {
            warn!("bad child limits in {spec:?}");
            return;
        };
        match workload::start(reference, &self.child_config, l) {
            Ok(id) => info!("started {id} {reference}"),
            Err(e) => info!("start {reference} refused: {e:?}"),
        }
    }
}

impl Plugin for Spawner {
    fn init(config: Config) -> Result<Self, String> {
        let child_config = config
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("child.").map(|k| (k.to_string(), v.to_string())))
            .collect();
        let me = Spawner { child_config };
        let children = config.get_or("children", "").to_string();
        if kv::get("started").is_none() {
            for spec in children.split(';').filter(|s| !s.trim().is_empty()) {
                me.start(spec);
            }
            if let Err(e) = kv::set("started", b"1") {
                warn!("cannot remember the children were started: {e:?}");
            }
        }
        info!("spawner ready");
        Ok(me)
    }

    fn message(&mut self, _from: String, payload: Vec<u8>) {
        let text = String::from_utf8_lossy(&payload).to_string();
        let mut words = text.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("start"), Some(spec), None) => self.start(spec),
            (Some("stop"), Some(id), None) => match workload::stop(id) {
                Ok(()) => info!("stopped {id}"),
                Err(e) => info!("stop {id} refused: {e:?}"),
            },
            (Some("list"), None, None) => {
                let all = workload::list();
                info!("{} children", all.len());
                all.iter().for_each(show);
            }
            (Some("status"), Some(id), None) => match workload::status(id) {
                Some(s) => show(&s),
                None => info!("status {id}: unknown"),
            },
            (Some("route"), Some(host), Some(id)) => match workload::route(host, id) {
                Ok(()) => info!("routed {host} {id}"),
                Err(e) => info!("route {host} {id} refused: {e:?}"),
            },
            _ => warn!("unknown command {text:?}"),
        }
    }
}

export_plugin!(Spawner);
