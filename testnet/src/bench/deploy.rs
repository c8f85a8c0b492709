//! Deploy, end to end: a tenant process deploys a signed package onto its lease on a host
//! process, timed from the client's side of `POST /v1/deployments` on the tenant (what
//! `degroup deploy` does): the tenant stores the package privately in its blob store → signed
//! request over `/degroup/deploy/3` → the host checks the lease and the signature, finds the
//! package in its own blob store (no bytes move) → compiled code from its cache → record written
//! durably → worker started → the plugin's `init` ran → answer → the tenant stores its
//! record. The first deploy includes the host's compile; the others find the component cached.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use base64::Engine as _;
use degroup_node::api::deploy::DeployBody;
use degroup_node::api::lease::CreateBody;
use degroup_node::lease::view::LeaseView;
use degroup_node::plugin::deployment::{State, View};

use super::quantile;
use super::report::Section;
use crate::cluster::{Cluster, fresh_root};

/// Options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Deploys timed after the first (each on its own lease, stopped after)
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// The example plugin deployed
    #[arg(long, default_value = "counter")]
    plugin: String,
}

pub(super) async fn run(bin: &Path, args: &Args) -> anyhow::Result<Section> {
    if args.rounds == 0 {
        bail!("give at least one round (--rounds 1 or more)");
    }
    let wasm = crate::plugins::component(&args.plugin, None).await?;
    eprintln!("starting a host and a tenant node …");
    let cluster = Cluster::start(bin, 2, fresh_root(), false).await?;
    let (host, tenant) = (&cluster.nodes[0], &cluster.nodes[1]);
    host.cli(
        bin,
        &[
            "capacity", "set", "--cpu", "64", "--mem", "64GiB", "--disk", "64GiB", "--force",
        ],
    )
    .await?;
    cluster.wait_converged(Duration::from_secs(60)).await?;
    let package = cluster.root.join("bench.dgp");
    let (w, p) = (wasm.display().to_string(), package.display().to_string());
    tenant
        .cli(
            bin,
            &[
                "plugin",
                "pack",
                &w,
                "--name",
                &args.plugin,
                "--version",
                "0.1.0",
                "--out",
                &p,
            ],
        )
        .await?;
    let bytes = std::fs::read(&package)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);

    let lease_body = CreateBody {
        host: host.peer_id.clone(),
        cpu_millis: 100,
        mem_bytes: 64 << 20,
        disk_bytes: 16 << 20,
        gpus: 0,
        duration_ms: 3_600_000,
        max_hourly_micros: None,
        idempotency_key: None,
    };
    let mut first = None;
    let mut lat = Vec::with_capacity(args.rounds);
    for i in 0..=args.rounds {
        let l: LeaseView = tenant.post("/v1/leases", &lease_body).await?;
        let lease = l.id;
        let body = DeployBody {
            lease: lease.clone(),
            package: Some(encoded.clone()),
            reference: None,
            config: Vec::new(),
            routes: Vec::new(),
        };
        let t0 = Instant::now();
        let d: View = tenant.post("/v1/deployments", &body).await?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if d.state != State::Running {
            bail!(
                "deploy answered in state {} ({})",
                d.state,
                d.reason.as_deref().unwrap_or("no reason given")
            );
        }
        if i == 0 {
            first = Some(ms);
        } else {
            lat.push(ms);
        }
        let id = d.id;
        let _: View = tenant
            .post(&format!("/v1/deployments/{id}/stop"), &())
            .await?;
        let _: LeaseView = tenant
            .post(&format!("/v1/leases/{lease}/release"), &())
            .await?;
    }
    for problem in cluster.stop().await {
        eprintln!("warning: {problem}");
    }
    lat.sort_by(f64::total_cmp);
    let p50 = quantile(&lat, 0.5);
    let body = format!(
        "A host and a tenant `degroup node` process on 127.0.0.1; the `{plugin}` example \
         ({size} KB package). Each sample is a `POST /v1/deployments` on the tenant (what \
         `degroup deploy` does), timed by the client until the host has verified the package, \
         written it durably, run the plugin's `init` and answered, and the tenant has stored \
         its record. Each deploy gets its own lease; the deployment is stopped and the lease \
         released after.\n\n\
         | | p50 | p90 | p99 | max |\n|---|---|---|---|---|\n\
         | first deploy (the host compiles the component) | {first:.1} ms | | | |\n\
         | deploy of the cached package, {n} deploys | **{p50:.2} ms** | {p90:.2} ms | {p99:.2} ms | {max:.2} ms |\n\n\
         Target: deploy of a cached package to running p50 ≤ 5 ms ({ratio:.2}×); Spin's \
         claimed ≤ 2 ms cold start is the brief's anchor, not run here (the in-process part, \
         without network and flushes, is in the plugin sandbox section).\n",
        plugin = args.plugin,
        size = bytes.len() / 1000,
        first = first.unwrap_or(f64::NAN),
        n = lat.len(),
        p90 = quantile(&lat, 0.9),
        p99 = quantile(&lat, 0.99),
        max = quantile(&lat, 1.0),
        ratio = p50 / 5.0,
    );
    Ok(Section {
        name: "deploy",
        title: "Deploy to running, end to end".to_owned(),
        command: format!(
            "./target/release/degroup-testnet bench deploy --rounds {} --plugin {}",
            args.rounds, args.plugin
        ),
        body,
        plots: Vec::new(),
    })
}
