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
mod table;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use degroup_node::api::lease::CreateBody;
use degroup_node::lease::view::LeaseView;
use degroup_node::plugin::deployment::{State, View};

use super::report::Section;
use super::wrk::{self, Load};
use crate::cluster::{Cluster, Node, Options, fresh_root};
use table::{Runs, section};

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

/// A host with its ingress on 127.0.0.1:`port` and a tenant, converged; the host offers
/// plenty, so that every lease of the bench fits.
async fn start_nodes(bin: &Path, port: u16) -> anyhow::Result<Cluster> {
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
    Ok(cluster)
}

/// Deploys `kv-api` with `--route kv.test`, stores one key and loads `GET /kv/KEY`.
async fn kv_throughput(
    bin: &Path,
    cluster: &Cluster,
    args: &Args,
    kv_wasm: &Path,
    port: u16,
    wrk_bin: &Path,
    load: &Load,
) -> anyhow::Result<wrk::WrkResult> {
    eprintln!("kv-api: deploying and loading GET /kv/{KV_KEY} …");
    deploy(bin, cluster, args.cpu_millis, kv_wasm, "kv-api", KV_ROUTE).await?;
    let ingress = format!("http://127.0.0.1:{port}/");
    wait_ok(
        &format!("{ingress}kv"),
        Some(KV_ROUTE),
        Duration::from_secs(60),
    )
    .await?;
    put_key(port).await?;
    wrk::run(
        wrk_bin,
        load,
        &format!("{ingress}kv/{KV_KEY}"),
        Some(KV_ROUTE),
    )
    .await
}

/// A 1 s warm-up of each side, then `rounds` × (degroup, wasmtime when it runs).
async fn alternate(
    wrk_bin: &Path,
    load: &Load,
    rounds: usize,
    ingress: &str,
    anchor: Option<&str>,
) -> anyhow::Result<Vec<(wrk::WrkResult, Option<wrk::WrkResult>)>> {
    let warm = Load {
        duration: Duration::from_secs(1),
        ..load.clone()
    };
    wrk::run(wrk_bin, &warm, ingress, Some(BENCH_ROUTE)).await?;
    if let Some(url) = anchor {
        wrk::run(wrk_bin, &warm, url, None).await?;
    }
    let mut out = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}: degroup …");
        let d = wrk::run(wrk_bin, load, ingress, Some(BENCH_ROUTE)).await?;
        let w = match anchor {
            Some(url) => {
                eprintln!("round {round}/{rounds}: wasmtime serve …");
                Some(wrk::run(wrk_bin, load, url, None).await?)
            }
            None => None,
        };
        out.push((d, w));
    }
    Ok(out)
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
    let cluster = start_nodes(bin, port).await?;
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
    let anchor = serve.as_ref().map(|_| anchor_url.as_str());
    let rounds = alternate(&wrk_bin, &load, args.rounds, &ingress, anchor).await?;
    if let Some(child) = serve.as_mut() {
        let _ = child.kill().await;
    }
    let kv = kv_throughput(bin, &cluster, args, &kv_wasm, port, &wrk_bin, &load).await?;
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
