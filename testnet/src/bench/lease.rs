//! Lease negotiation: one host process and several tenant processes on loopback. Latency is
//! timed from the client's side of `POST /v1/leases` on a tenant (the same path as
//! `degroup lease create`): request, signed offer, countersignature, durable commit on the host,
//! durable store on the tenant. Sequential requests give the latency distribution; concurrent
//! workers spread over the tenants give the host's throughput.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use degroup_node::api::lease::{CheckResponse, CreateBody};
use degroup_node::lease::view::LeaseView;

use super::quantile;
use super::report::Section;
use crate::cluster::{Cluster, fresh_root};

/// Options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Tenant processes
    #[arg(long, default_value_t = 4)]
    tenants: usize,
    /// Sequential leases timed for the latency distribution
    #[arg(long, default_value_t = 500)]
    sequential: usize,
    /// Concurrent requests in flight for the throughput run
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Length of the throughput run, in seconds
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn body(host: &str) -> CreateBody {
    CreateBody {
        host: host.to_owned(),
        cpu_millis: 1,
        mem_bytes: 0,
        disk_bytes: 0,
        gpus: 0,
        duration_ms: 3_600_000,
        max_hourly_micros: None,
        idempotency_key: None,
    }
}

pub(super) async fn run(bin: &Path, args: &Args) -> anyhow::Result<Section> {
    if args.tenants == 0 || args.concurrency == 0 {
        bail!("give at least one tenant and a concurrency of at least 1");
    }
    eprintln!("starting 1 host and {} tenant nodes …", args.tenants);
    let cluster = Arc::new(Cluster::start(bin, args.tenants + 1, fresh_root(), false).await?);
    let host = &cluster.nodes[0];
    host.cli(bin, &["capacity", "set", "--cpu", "100000", "--force"])
        .await
        .context("offering capacity on the host")?;
    // Let the tenants learn the host's advert (its addresses), as a real tenant would.
    cluster.wait_converged(Duration::from_secs(60)).await?;
    let host_id = host.peer_id.clone();

    // Warm-up: connections, caches.
    for t in &cluster.nodes[1..] {
        let _: LeaseView = t.post("/v1/leases", &body(&host_id)).await?;
    }

    let tenant = &cluster.nodes[1];
    let mut lat = Vec::with_capacity(args.sequential);
    for _ in 0..args.sequential {
        let t0 = Instant::now();
        let _: LeaseView = tenant.post("/v1/leases", &body(&host_id)).await?;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let cluster = cluster.clone();
        let host_id = host_id.clone();
        workers.push(tokio::spawn(async move {
            let tenant = &cluster.nodes[1 + w % (cluster.nodes.len() - 1)];
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                match tenant
                    .post::<LeaseView, _>("/v1/leases", &body(&host_id))
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0u64, 0u64);
    for w in workers {
        let (o, f) = w.await?;
        ok += o;
        failed += f;
    }
    let rate = ok as f64 / started.elapsed().as_secs_f64();
    let check: CheckResponse = host.get("/v1/leases-check").await?;

    let (p50, p99) = (quantile(&lat, 0.5), quantile(&lat, 0.99));
    let body = format!(
        "One host and {tenants} tenant `degroup node` processes on 127.0.0.1. Each sample is a \
         `POST /v1/leases` on a tenant (what `degroup lease create` does), timed by the client, \
         until the lease is committed and flushed on both sides. {seq} sequential leases give the \
         latency; {conc} concurrent requests over the tenants for {secs} s give the host's \
         throughput. No anchor runs here (Akash: three chain transactions, ~20 s, per the brief).\n\n\
         | | p50 | p90 | p99 | max |\n|---|---|---|---|---|\n\
         | latency, {seq} sequential leases | **{p50:.2} ms** | {p90:.2} ms | **{p99:.2} ms** | {max:.2} ms |\n\n\
         Throughput: **{rate:.0} leases/s** per host ({ok} committed, {failed} failed). \
         Reservation invariant afterwards: {inv}. Targets: p50 ≤ 2 ms ({r50:.2}×), p99 ≤ 10 ms \
         ({r99:.2}×), ≥ 500 leases/s ({rr:.2}×).\n",
        tenants = args.tenants,
        seq = lat.len(),
        conc = args.concurrency,
        secs = args.seconds,
        p90 = quantile(&lat, 0.9),
        max = lat.last().copied().unwrap_or(f64::NAN),
        inv = if check.ok { "holds" } else { "**BROKEN**" },
        r50 = p50 / 2.0,
        r99 = p99 / 10.0,
        rr = rate / 500.0,
    );
    if let Ok(c) = Arc::try_unwrap(cluster) {
        for problem in c.stop().await {
            eprintln!("warning: {problem}");
        }
    }
    Ok(Section {
        name: "lease",
        title: "Lease negotiation, committed durably on both sides".to_owned(),
        command: format!(
            "./target/release/degroup-testnet bench lease --tenants {} --sequential {} --concurrency {} --seconds {}",
            args.tenants, args.sequential, args.concurrency, args.seconds
        ),
        body,
        plots: Vec::new(),
    })
}
