//! `spawner`: starts child workloads (`degroup:plugin/workload`) and logs every answer of the
//! host, for the node's tests of children. It is of the world `http-plugin` (answering
//! `spawner` to every request), so that it can claim `--route`s and give them to children.
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

use std::cell::RefCell;

use degroup_sdk::bindings::degroup::plugin::{kv, workload};
use degroup_sdk::{Config, info, warn};

#[allow(warnings)]
mod bindings {
    wit_bindgen::generate!({
        world: "http-plugin",
        path: "../../sdk/wit",
        with: {
            "degroup:plugin/lease@0.1.1": degroup_sdk::bindings::degroup::plugin::lease,
            "degroup:plugin/kv@0.1.1": degroup_sdk::bindings::degroup::plugin::kv,
            "degroup:plugin/log@0.1.1": degroup_sdk::bindings::degroup::plugin::log,
            "degroup:plugin/mesh@0.1.1": degroup_sdk::bindings::degroup::plugin::mesh,
            "degroup:plugin/workload@0.1.1": degroup_sdk::bindings::degroup::plugin::workload,
            "wasi:clocks/wall-clock@0.2.12": degroup_sdk::bindings::wasi::clocks::wall_clock,
            "wasi:clocks/monotonic-clock@0.2.12": degroup_sdk::bindings::wasi::clocks::monotonic_clock,
            "wasi:random/random@0.2.12": degroup_sdk::bindings::wasi::random::random,
            "wasi:io/poll@0.2.12": degroup_sdk::bindings::wasi::io::poll,
        },
        generate_all,
    });
}

use bindings::exports::wasi::http::incoming_handler::Guest as IncomingHandler;
use bindings::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Spawner {
    child_config: Vec<(String, String)>,
}

thread_local! {
    static STATE: RefCell<Option<Spawner>> = const { RefCell::new(None) };
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

impl Spawner {
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

struct Export;

impl bindings::Guest for Export {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let me = Spawner::init(Config::from(config))?;
        STATE.with(|s| *s.borrow_mut() = Some(me));
        Ok(())
    }

    fn tick(_now: u64) {}

    fn message(from: String, payload: Vec<u8>) {
        STATE.with(|s| {
            if let Some(me) = s.borrow_mut().as_mut() {
                me.message(from, payload);
            }
        });
    }
}

/// Every request routed to the spawner itself is answered `spawner`.
impl IncomingHandler for Export {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let _ = response.set_status_code(200);
        let Ok(body) = response.body() else {
            return;
        };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(b"spawner");
            drop(stream);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

bindings::export!(Export with_types_in bindings);
