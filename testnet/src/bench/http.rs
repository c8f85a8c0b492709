//! HTTP ingress: requests/s and latency of a host's ingress (`degroup node --ingress`) serving
//! a tenant's deployment, side by side with `wasmtime serve` of the node's wasmtime version on
//! the same component file, loaded by `wrk` in alternating runs of one process each (degroup,
//! wasmtime, degroup, …) so that both see the same machine state; then the `kv-api` example's
//! `GET /kv/{key}` throughput through the same ingress.
//!
//! Both sides serve the very same `.wasm`: the anchor crate (`../shared/anchors/http-hello`, a
//! plain `wasi:http/proxy` component) built once. The tenant packs it and deploys it onto a
//! lease of 2 cores by default (in-flight limit N = cpu_millis × 32 / 1000 = 64, above wrk's 32
//! connections, so no request is shed) with `--route bench.test`; wrk sends
//! `Host: bench.test`. `wasmtime serve` runs with its pooling allocator (`-O
//! pooling-allocator`). When wasmtime is absent or of another version, the bench says how to
//! install it and runs degroup's side alone. A warm-up run per side precedes the rounds.

mod anchor;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use degroup_node::api::lease::CreateBody;
use degroup_node::lease::view::LeaseView;
use degroup_node::plugin::deployment::{State, View};

use super::quantile;
use super::report::Section;
use super::wrk::{self, Load, WrkResult};
use crate::cluster::{Cluster, Node, Options, fresh_root};

/// The route the anchor is deployed under.
const BENCH_ROUTE: &str = "bench.test";
/// The route `kv-api` is deployed under, and the key its run reads.
const KV_ROUTE: &str = "kv.test";
const KV_KEY: &str = "bench";

/// Options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds per wrk run
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds; each is one degroup run then one wasmtime run
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// wrk threads (-t)
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// wrk connections (-c)
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// CPU of each lease, thousandths of a core
    #[arg(long, default_value_t = 2000)]
    cpu_millis: u64,
    /// The anchor component's crate [default: ../shared/anchors/http-hello]
    #[arg(long, value_name = "DIR")]
    anchor: Option<PathBuf>,
}

/// A free port on 127.0.0.1 (bound, then released for the server that will take it).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until `GET url` (with `Host: host` when given) answers 200.
async fn wait_ok(url: &str, host: Option<&str>, limit: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let started = Instant::now();
    loop {
        let mut req = client.get(url);
        if let Some(h) = host {
            req = req.header(reqwest::header::HOST, h);
        }
        let last = match req.send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => return Ok(()),
            Ok(r) => format!("status {}", r.status()),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > limit {
            bail!(
                "{url} (Host: {}) did not answer 200 within {limit:?}: {last}",
                host.unwrap_or("-")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Packs `wasm` on the tenant and deploys it onto a fresh lease with `--route route`.
async fn deploy(
    bin: &Path,
    cluster: &Cluster,
    cpu_millis: u64,
    wasm: &Path,
    name: &str,
    route: &str,
) -> anyhow::Result<View> {
    let (host, tenant) = (&cluster.nodes[0], &cluster.nodes[1]);
    let package = cluster.root.join(format!("{name}.dgp"));
    let (w, p) = (wasm.display().to_string(), package.display().to_string());
    let mut pack = vec![
        "plugin",
        "pack",
        &w,
        "--name",
        name,
        "--version",
        "0.1.0",
        "--out",
        &p,
    ];
    for cap in ["kv", "log", "lease", "clocks", "random", "http"] {
        pack.extend(["--capability", cap]);
    }
    tenant.cli(bin, &pack).await?;
    let body = CreateBody {
        host: host.peer_id.clone(),
        cpu_millis,
        mem_bytes: 512 << 20,
        disk_bytes: 64 << 20,
        gpus: 0,
        duration_ms: 3_600_000,
        max_hourly_micros: None,
        idempotency_key: None,
    };
    let lease: LeaseView = tenant.post("/v1/leases", &body).await?;
    let v: View = tenant
        .cli_json(bin, &["deploy", "--lease", &lease.id, &p, "--route", route])
        .await?;
    if v.state != State::Running {
        bail!(
            "{name} deployed in state {} ({})",
            v.state,
            v.reason.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(v)
}

/// `PUT /kv/KEY` through the ingress.
async fn put_key(port: u16) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let r = client
        .put(format!("http://127.0.0.1:{port}/kv/{KV_KEY}"))
        .header(reqwest::header::HOST, KV_ROUTE)
        .body(vec![b'x'; 256])
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("PUT /kv/{KV_KEY} on {KV_ROUTE}: status {}", r.status());
    }
    Ok(())
}

/// `wasmtime serve` on `port`, answering; killed when dropped.
async fn start_wasmtime(
    wasmtime: &Path,
    wasm: &Path,
    port: u16,
    log: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let bytes = std::fs::read(wasm)?;
    let args = anchor::serve_args(&bytes, wasm, &format!("127.0.0.1:{port}"));
    eprintln!("starting wasmtime {} …", args.join(" "));
    let log_file = std::fs::File::create(log)?;
    let child = tokio::process::Command::new(wasmtime)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", wasmtime.display()))?;
    wait_ok(
        &format!("http://127.0.0.1:{port}/"),
        None,
        Duration::from_secs(30),
    )
    .await
    .with_context(|| format!("wasmtime serve; see {}", log.display()))?;
    Ok(child)
}

/// The side-by-side runs: (degroup, wasmtime) per round.
struct Runs {
    rounds: Vec<(WrkResult, Option<WrkResult>)>,
    kv: WrkResult,
}

pub(super) async fn run(bin: &Path, args: &Args) -> anyhow::Result<Section> {
    if args.rounds == 0 || args.seconds == 0 || args.connections == 0 || args.threads == 0 {
        bail!("give at least one round, one second, one thread and one connection");
    }
    let Some(wrk_bin) = wrk::find() else {
        bail!("wrk is not installed: apt-get install wrk");
    };
    let anchor_dir = args
        .anchor
        .clone()
        .unwrap_or_else(|| crate::plugins::repo_root().join("../shared/anchors/http-hello"));
    let anchor_target = std::env::temp_dir().join("degroup-testnet-http-anchor");
    let wasm = anchor::build(&anchor_dir, &anchor_target).await?;
    let kv_wasm = crate::plugins::component("kv-api", None).await?;
    let wasmtime = anchor::find_wasmtime().await;
    if let Err(why) = &wasmtime {
        eprintln!("skipping the wasmtime side: {why}");
    }
    let (port, anchor_port) = (free_port()?, free_port()?);
    let mut options = Options::numbered(2);
    options.node_args = vec![vec!["--ingress".into(), format!("127.0.0.1:{port}")]];
    eprintln!("starting a host (ingress on 127.0.0.1:{port}) and a tenant node …");
    let cluster = Cluster::start_with(bin, fresh_root(), &options).await?;
    let host: &Node = &cluster.nodes[0];
    host.cli(
        bin,
        &[
            "capacity", "set", "--cpu", "64", "--mem", "64GiB", "--disk", "64GiB", "--force",
        ],
    )
    .await?;
    cluster.wait_converged(Duration::from_secs(60)).await?;
    deploy(
        bin,
        &cluster,
        args.cpu_millis,
        &wasm,
        "http-hello-anchor",
        BENCH_ROUTE,
    )
    .await?;
    let ingress = format!("http://127.0.0.1:{port}/");
    wait_ok(&ingress, Some(BENCH_ROUTE), Duration::from_secs(60)).await?;
    let mut serve = match &wasmtime {
        Ok(w) => {
            let log = cluster.root.join("wasmtime-serve.log");
            Some(start_wasmtime(w, &wasm, anchor_port, &log).await?)
        }
        Err(_) => None,
    };
    let anchor_url = format!("http://127.0.0.1:{anchor_port}/");
    let load = Load {
        threads: args.threads,
        connections: args.connections,
        duration: Duration::from_secs(args.seconds),
    };
    let warm = Load {
        duration: Duration::from_secs(1),
        ..load.clone()
    };
    wrk::run(&wrk_bin, &warm, &ingress, Some(BENCH_ROUTE)).await?;
    if serve.is_some() {
        wrk::run(&wrk_bin, &warm, &anchor_url, None).await?;
    }
    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        eprintln!("round {round}/{}: degroup …", args.rounds);
        let d = wrk::run(&wrk_bin, &load, &ingress, Some(BENCH_ROUTE)).await?;
        let w = if serve.is_some() {
            eprintln!("round {round}/{}: wasmtime serve …", args.rounds);
            Some(wrk::run(&wrk_bin, &load, &anchor_url, None).await?)
        } else {
            None
        };
        rounds.push((d, w));
    }
    if let Some(child) = serve.as_mut() {
        let _ = child.kill().await;
    }
    eprintln!("kv-api: deploying and loading GET /kv/{KV_KEY} …");
    deploy(bin, &cluster, args.cpu_millis, &kv_wasm, "kv-api", KV_ROUTE).await?;
    wait_ok(
        &format!("{ingress}kv"),
        Some(KV_ROUTE),
        Duration::from_secs(60),
    )
    .await?;
    put_key(port).await?;
    let kv_url = format!("{ingress}kv/{KV_KEY}");
    let kv = wrk::run(&wrk_bin, &load, &kv_url, Some(KV_ROUTE)).await?;
    for problem in cluster.stop().await {
        eprintln!("warning: {problem}");
    }
    let runs = Runs { rounds, kv };
    Ok(section(
        args,
        &runs,
        wasmtime.as_ref().err().map(String::as_str),
    ))
}

/// Nearest-rank median.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

fn cells(r: &WrkResult) -> String {
    format!("{:.0} | {:.2} ms | {:.2} ms", r.rps, r.p50_ms, r.p99_ms)
}

/// The markdown: a row per round, the medians, the targets, and any run with errors.
fn section(args: &Args, runs: &Runs, skipped: Option<&str>) -> Section {
    use std::fmt::Write as _;
    let mut t = String::from(
        "| round | degroup req/s | p50 | p99 | wasmtime serve req/s | p50 | p99 | req/s ratio | p99 ratio |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut ratios = Vec::new();
    let mut p99_ratios = Vec::new();
    let mut suspect = Vec::new();
    for (i, (d, w)) in runs.rounds.iter().enumerate() {
        let anchor = match w {
            Some(w) => {
                ratios.push(d.rps / w.rps);
                p99_ratios.push(d.p99_ms / w.p99_ms);
                format!(
                    "{} | {:.2}× | {:.2}×",
                    cells(w),
                    d.rps / w.rps,
                    d.p99_ms / w.p99_ms
                )
            }
            None => "– | – | – | – | –".to_owned(),
        };
        let _ = writeln!(t, "| {} | {} | {anchor} |", i + 1, cells(d));
        for (side, r) in [("degroup", Some(d)), ("wasmtime", w.as_ref())] {
            if let Some(r) = r.filter(|r| r.non_2xx > 0 || r.errors > 0) {
                suspect.push(format!(
                    "round {} {side}: {} non-2xx answers, {} socket errors",
                    i + 1,
                    r.non_2xx,
                    r.errors
                ));
            }
        }
    }
    let med = |f: fn(&WrkResult) -> f64, anchor: bool| {
        median(
            runs.rounds
                .iter()
                .filter_map(|(d, w)| if anchor { w.as_ref() } else { Some(d) })
                .map(f)
                .collect(),
        )
    };
    let (rps_ratio, p99_ratio) = (median(ratios.clone()), median(p99_ratios));
    let anchor_med = if ratios.is_empty() {
        "– | – | – | – | –".to_owned()
    } else {
        format!(
            "**{:.0}** | {:.2} ms | **{:.2} ms** | **{rps_ratio:.2}×** | **{p99_ratio:.2}×**",
            med(|r| r.rps, true),
            med(|r| r.p50_ms, true),
            med(|r| r.p99_ms, true)
        )
    };
    let _ = writeln!(
        t,
        "| median | **{:.0}** | {:.2} ms | **{:.2} ms** | {anchor_med} |",
        med(|r| r.rps, false),
        med(|r| r.p50_ms, false),
        med(|r| r.p99_ms, false)
    );
    let kv = &runs.kv;
    let targets = match skipped {
        Some(why) => format!("The wasmtime side was skipped: {why}.\n"),
        None => format!(
            "Targets: ≥ 1.5× `wasmtime serve`'s requests/s ({rps_ratio:.2}×: {}), p99 ≤ \
             `wasmtime serve`'s ({p99_ratio:.2}×: {}).\n",
            if rps_ratio >= 1.5 { "met" } else { "not met" },
            if p99_ratio <= 1.0 { "met" } else { "not met" }
        ),
    };
    let mut body = format!(
        "A host `degroup node --ingress` and a tenant process on 127.0.0.1. The tenant deploys \
         the anchor `http-hello` component (`wasi:http/proxy`) onto a lease of {cpu} millicores \
         with `--route {BENCH_ROUTE}`; `wasmtime serve -O pooling-allocator` \
         (wasmtime {wv}, the node's version) serves the same `.wasm` file. `wrk -t{th} -c{c} \
         -d{s}s --latency`, alternating degroup and wasmtime in each round, after a 1 s warm-up \
         of each.\n\n{t}\n{targets}\n\
         `kv-api` (`GET /kv/{KV_KEY}`, a 256-byte value, `--route {KV_ROUTE}`): **{kv_rps:.0} \
         req/s**, p50 {kv50:.2} ms, p99 {kv99:.2} ms.\n",
        cpu = args.cpu_millis,
        wv = anchor::node_wasmtime_version(),
        th = args.threads,
        c = args.connections,
        s = args.seconds,
        kv_rps = kv.rps,
        kv50 = kv.p50_ms,
        kv99 = kv.p99_ms,
    );
    if kv.non_2xx > 0 || kv.errors > 0 {
        suspect.push(format!(
            "kv-api: {} non-2xx answers, {} socket errors",
            kv.non_2xx, kv.errors
        ));
    }
    if !suspect.is_empty() {
        let _ = write!(
            body,
            "\nRuns with failed requests (their numbers are suspect): {}.\n",
            suspect.join("; ")
        );
    }
    Section {
        name: "http",
        title: "HTTP ingress vs `wasmtime serve`".to_owned(),
        command: format!(
            "./target/release/degroup-testnet bench http --rounds {} --seconds {} --threads {} \
             --connections {} --cpu-millis {}",
            args.rounds, args.seconds, args.threads, args.connections, args.cpu_millis
        ),
        body,
        plots: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rps: f64, p99_ms: f64) -> WrkResult {
        WrkResult {
            rps,
            p50_ms: p99_ms / 4.0,
            p99_ms,
            requests: 1000,
            non_2xx: 0,
            errors: 0,
        }
    }

    fn args() -> Args {
        Args {
            seconds: 10,
            rounds: 2,
            threads: 2,
            connections: 32,
            cpu_millis: 2000,
            anchor: None,
        }
    }

    #[test]
    fn the_table_has_ratios_per_round_and_their_median() {
        let runs = Runs {
            rounds: vec![
                (result(30_000.0, 2.0), Some(result(20_000.0, 4.0))),
                (result(40_000.0, 1.0), Some(result(20_000.0, 4.0))),
            ],
            kv: WrkResult {
                non_2xx: 3,
                ..result(10_000.0, 3.0)
            },
        };
        let s = section(&args(), &runs, None);
        assert!(s.body.contains(
            "| 1 | 30000 | 0.50 ms | 2.00 ms | 20000 | 1.00 ms | 4.00 ms | 1.50× | 0.50× |"
        ));
        assert!(s.body.contains("**1.50×** | **0.25×**"), "{}", s.body);
        assert!(s.body.contains("(1.50×: met)"));
        assert!(s.body.contains("kv-api: 3 non-2xx answers"));
        assert!(s.command.contains("bench http --rounds 2"));
    }

    #[test]
    fn a_skipped_anchor_says_why() {
        let runs = Runs {
            rounds: vec![(result(30_000.0, 2.0), None)],
            kv: result(10_000.0, 3.0),
        };
        let s = section(&args(), &runs, Some("wasmtime is not installed"));
        assert!(
            s.body
                .contains("| 1 | 30000 | 0.50 ms | 2.00 ms | – | – | – | – | – |")
        );
        assert!(s.body.contains("skipped: wasmtime is not installed"));
        assert!(!s.body.contains("Targets"));
    }
}
