//! `degroup plugin run`: a plugin in the same sandbox as on a host, with a throwaway store and
//! a made-up lease, its logs printed as they come.
//!
//! With `--http ADDR`, the component's `wasi:http/incoming-handler` is served on `ADDR` by the
//! same ingress and [`HttpService`] a host runs (same limits, instance reuse, access log), for
//! every `Host`, until Ctrl-C; the plugin's `init` runs first and `tick` every `--interval`
//! when one is given.

use super::control::Control;
use std::time::{Duration, Instant};

use super::config::{HttpLimits, Limits};
use super::http::{HttpEnv, HttpService};
use super::kv::Kv;
use super::logs::{LogLine, Logs};
use super::runtime::{Compiler, Env, Fault, LeaseInfo, Runtime};
use super::supervisor::PluginError;
use crate::ingress::{Ingress, IngressSettings, RouteTable};
use crate::lease::Meter;
use crate::resources::{Resources, now_ms};
use crate::store::Store;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    pub config: Vec<(String, String)>,
    pub ticks: u32,
    /// Time between ticks (0: back to back).
    pub interval: Duration,
    pub mem_bytes: u64,
    pub disk_bytes: u64,
    pub messages: Vec<Vec<u8>>,
    pub name: String,
    pub version: String,
    /// Serve the component's HTTP handler here until Ctrl-C.
    pub http: Option<std::net::SocketAddr>,
}

/// How it went.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunReport {
    /// `None` when init succeeded.
    pub init_error: Option<String>,
    pub ticks_ok: u32,
    pub faults: Vec<String>,
    pub fuel: u64,
    pub peak_mem_bytes: u64,
    pub kv_bytes: u64,
    pub compile: Duration,
    pub cached: bool,
    /// With `--http`: requests answered.
    pub http_requests: u64,
}

/// Runs `wasm` (a component): init, then `ticks` ticks (messages are delivered after init),
/// printing log lines through `on_line`. Stops at the first fault.
pub(crate) async fn run(
    wasm: &[u8],
    opts: &RunOptions,
    cache_dir: Option<std::path::PathBuf>,
    mut on_line: impl FnMut(&LogLine),
) -> Result<RunReport, PluginError> {
    let limits = Limits {
        max_deployments: 1,
        http: HttpLimits {
            max_instances: 64,
            ..HttpLimits::default()
        },
        ..Limits::default()
    };
    // Compiled as on a host: in a child process, under the same bounds.
    let runtime = Runtime::new(limits, cache_dir, Compiler::this_binary()?)?;
    let t = Instant::now();
    let compiled = runtime.compile(wasm)?;
    if opts.http.is_some() && !compiled.serves_http() {
        return Err(PluginError::BadInput(
            "the component does not export wasi:http/incoming-handler: --http needs a plugin of the world `http-plugin` (or a wasi:http proxy component)".into(),
        ));
    }
    let mut report = RunReport {
        compile: t.elapsed(),
        cached: compiled.cached,
        ..Default::default()
    };
    let mut rnd = [0u8; 8];
    let _ = getrandom::fill(&mut rnd);
    let dir = std::env::temp_dir().join(format!("degroup-run-{}", hex::encode(rnd)));
    let result: Result<RunReport, PluginError> = async {
        let store = Store::open(&dir)?;
        let kv = Kv::open(&store, "local", opts.disk_bytes)
            .map_err(|e| PluginError::internal("opening the key-value store", e))?;
        let logs = Logs::new(10_000, runtime.limits().log_rate);
        let now = now_ms();
        let info = LeaseInfo {
            lease_id: "00".repeat(16),
            deployment_id: "00".repeat(16),
            host: "local".into(),
            tenant: "local".into(),
            slice: Resources {
                cpu_millis: 1000,
                mem_bytes: opts.mem_bytes,
                disk_bytes: opts.disk_bytes,
                gpus: 0,
            },
            starts_at: now,
            ends_at: now + 3_600_000,
            package_name: opts.name.clone(),
            package_version: opts.version.clone(),
        };
        let mut seen = 0u64;
        let mut drain = |logs: &Logs| {
            let page = logs.read(seen, 1000);
            for l in &page.lines {
                on_line(l);
            }
            seen = page.next;
        };
        if let Some(addr) = opts.http {
            let http_kv = kv.share();
            let probe = kv.share();
            let service = HttpService::new(
                runtime.clone(),
                &compiled,
                HttpEnv {
                    id: info.deployment_id.clone(),
                    lease: [0; 16],
                    info: info.clone(),
                    kv: http_kv,
                    logs: logs.clone(),
                    meter: Meter::default(),
                    outgoing: Vec::new(),
                    share: None,
                    control: Control::detached(),
                },
            )
            .ok_or_else(|| PluginError::BadInput("the component serves no HTTP".into()))?;
            let mut inst = if compiled.has_plugin() {
                let mut inst = runtime
                    .instantiate(
                        &compiled,
                        Env {
                            info,
                            kv,
                            logs: logs.clone(),
                            control: Control::detached(),
                        },
                    )
                    .await
                    .map_err(|(e, _)| PluginError::Sandbox(e))?;
                let call = inst.init(&opts.config).await;
                report.fuel += call.fuel;
                drain(&logs);
                match call.result {
                    Ok(Ok(())) => {}
                    Ok(Err(msg)) => {
                        report.init_error = Some(msg);
                        return Ok(report);
                    }
                    Err(fault) => {
                        report.init_error = Some(fault.to_string());
                        report.faults.push(format!("init: {fault}"));
                        return Ok(report);
                    }
                }
                Some(inst)
            } else {
                None
            };
            let routes = RouteTable::open(&store, "localhost")?;
            routes.set_fallback(&service_id(), service.clone());
            let stop = tokio_util::sync::CancellationToken::new();
            let settings = IngressSettings {
                listen: Some(addr),
                ..IngressSettings::default()
            };
            let ingress = Ingress::start(settings, routes, stop.clone())
                .map_err(|e| PluginError::BadInput(e.to_string()))?;
            eprintln!(
                "serving http://{}/ (every host name; Ctrl-C stops)",
                ingress.local_addr()
            );
            let mut every = (!opts.interval.is_zero()).then(|| tokio::time::interval(opts.interval));
            let mut poll = tokio::time::interval(Duration::from_millis(100));
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            loop {
                tokio::select! {
                    _ = &mut ctrl_c => break,
                    _ = poll.tick() => drain(&logs),
                    _ = async { match every.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                        if let Some(i) = inst.as_mut() {
                            let call = i.tick(now_ms()).await;
                            report.fuel += call.fuel;
                            match call.result {
                                Ok(()) => report.ticks_ok += 1,
                                Err(f) => {
                                    report.faults.push(format!("tick: {f}"));
                                    inst = None;
                                }
                            }
                        }
                    }
                }
            }
            stop.cancel();
            drain(&logs);
            let stats = service.stats();
            report.http_requests = stats.requests;
            report.fuel += stats.fuel;
            report.kv_bytes = probe.used();
            report.peak_mem_bytes = inst.as_ref().map_or(0, super::runtime::Instance::peak_memory);
            return Ok(report);
        }
        let mut inst = runtime
            .instantiate(
                &compiled,
                Env {
                    info,
                    kv,
                    logs: logs.clone(),
                    control: Control::detached(),
                },
            )
            .await
            .map_err(|(e, _)| PluginError::Sandbox(e))?;
        let meter = |inst: &super::runtime::Instance, report: &mut RunReport, fuel: u64| {
            report.fuel += fuel;
            report.peak_mem_bytes = report.peak_mem_bytes.max(inst.peak_memory());
            report.kv_bytes = inst.kv_bytes();
        };
        let call = inst.init(&opts.config).await;
        meter(&inst, &mut report, call.fuel);
        drain(&logs);
        match call.result {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => {
                report.init_error = Some(msg);
                return Ok(report);
            }
            Err(fault) => {
                report.init_error = Some(fault.to_string());
                report.faults.push(format!("init: {fault}"));
                return Ok(report);
            }
        }
        let check = |r: Result<(), Fault>, what: &str, report: &mut RunReport| match r {
            Ok(()) => true,
            Err(f) => {
                report.faults.push(format!("{what}: {f}"));
                false
            }
        };
        for m in &opts.messages {
            let call = inst.message("cli", m).await;
            meter(&inst, &mut report, call.fuel);
            drain(&logs);
            if !check(call.result, "message", &mut report) {
                return Ok(report);
            }
        }
        for i in 0..opts.ticks {
            if i > 0 && !opts.interval.is_zero() {
                tokio::time::sleep(opts.interval).await;
            }
            let call = inst.tick(now_ms()).await;
            meter(&inst, &mut report, call.fuel);
            drain(&logs);
            if !check(call.result, "tick", &mut report) {
                return Ok(report);
            }
            report.ticks_ok += 1;
        }
        Ok(report)
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The made-up deployment id of a local run.
fn service_id() -> String {
    "00".repeat(16)
}
