//! `degroup-testnet chaos`: a small federation under tenant load while faults are injected,
//! with the invariants checked after every fault.
//!
//! Hosts of the `mixed` profile (each offering a small slice so that requests contend) and
//! tenant nodes start as real processes — each in its own network namespace when run as root,
//! so that partitions are real ([`crate::cluster::netns`]). Every cycle the tenants lease slices
//! and deploy the `counter` plugin on them and release some, then one fault chosen from the seed
//! ([`fault::Fault`]) is injected while more load runs, and then recovered from. After every
//! fault the `verify_*` checks of [`verify`] must pass:
//!
//! - `verify_no_lease_lost`: every lease a tenant's node acknowledged is on both sides, in the
//!   expected state, still verifying;
//! - `verify_no_overbooking`: no host has leased more than it offers;
//! - `verify_deployments_running`: deployments of active leases run again (within 30 s);
//! - `verify_adverts_converged`: every node holds every host's latest advert within 30 s after a
//!   heal or restart.
//!
//! The run is bounded (`--max-minutes`), stops by itself, and on Ctrl-C, SIGTERM, a failure or
//! the time limit kills its nodes and removes its namespaces (namespaces left by a testnet that
//! was itself `kill -9`ed are removed by the next run). The seed is printed; the same seed gives
//! the same faults in the same order.

mod fault;
mod load;
mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

use crate::cluster::{Cluster, DataArgs, Options, netns, profile};
use fault::Fault;
use load::{Action, Ledger};

/// Options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Fault cycles (each: load, one fault, recovery, every check)
    #[arg(long, default_value_t = 10)]
    cycles: usize,
    /// Seed of the fault schedule [default: from the clock; printed]
    #[arg(long)]
    seed: Option<u64>,
    /// Host nodes
    #[arg(long, default_value_t = 3)]
    hosts: usize,
    /// Tenant nodes
    #[arg(long, default_value_t = 2)]
    tenants: usize,
    /// No network namespaces (and so no partitions), even as root
    #[arg(long)]
    no_netns: bool,
    /// Stop the run, failed, after this many minutes
    #[arg(long, default_value_t = 20)]
    max_minutes: u64,
    /// The counter component [default: built from wasm-plugins/counter]
    #[arg(long, value_name = "FILE.wasm")]
    plugin: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
}

/// How long deployments and adverts may take to recover after a fault.
const RECOVERY: Duration = Duration::from_secs(30);

pub(crate) async fn run(bin: &Path, args: &Args) -> anyhow::Result<()> {
    if args.hosts == 0 || args.tenants == 0 {
        bail!("chaos needs at least one host and one tenant (--hosts, --tenants)");
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    println!("chaos: seed {seed} (the same --seed replays the same faults)");
    let limit = Duration::from_secs(args.max_minutes.max(1) * 60);
    let root = args.data.root();
    let shown = root.display().to_string();
    tokio::select! {
        r = tokio::time::timeout(limit, chaos(bin, args, seed, root)) => match r {
            Ok(r) => r,
            Err(_) => bail!(
                "the chaos run did not finish within --max-minutes {} (seed {seed}); nodes killed, namespaces removed, node logs kept in {shown}/*/node.log",
                args.max_minutes
            ),
        },
        () = crate::cluster::wait_for_signal() => {
            bail!("interrupted; nodes killed, namespaces removed, data kept in {shown}")
        }
    }
}

/// Counts for the summary.
#[derive(Debug, Default)]
struct Tally {
    faults: BTreeMap<&'static str, usize>,
    heals: Vec<Duration>,
    checks: usize,
}

async fn chaos(bin: &Path, args: &Args, seed: u64, root: PathBuf) -> anyhow::Result<()> {
    let started = Instant::now();
    let wasm = crate::plugins::component("counter", args.plugin.as_deref()).await?;
    let partitions = if args.no_netns {
        println!("partitions: off (--no-netns)");
        false
    } else {
        match netns::available() {
            Ok(()) => {
                println!("partitions: on (one network namespace per node)");
                true
            }
            Err(why) => {
                println!("partitions: off ({why}); kill -9 and SIGSTOP faults only");
                false
            }
        }
    };
    let mut names = profile::mixed_names(args.hosts);
    names.extend((0..args.tenants).map(|i| format!("tenant{i}")));
    let options = Options {
        names,
        env: vec![("DEGROUP_PLUGIN__TICK_INTERVAL".into(), "200ms".into())],
        netns: partitions,
        keep: args.data.keep,
        ..Options::default()
    };
    let mut cluster = Cluster::start_with(bin, root, &options).await?;
    let result = cycles(bin, args, seed, &wasm, &mut cluster, partitions).await;
    match result {
        Ok(tally) => {
            let unclean = cluster.stop().await;
            if !unclean.is_empty() {
                bail!(
                    "after the run, nodes did not stop cleanly: {}",
                    unclean.join("; ")
                );
            }
            summary(args, seed, &tally, started.elapsed());
            Ok(())
        }
        Err(e) => {
            // Dropping the cluster kills the nodes and keeps their logs.
            Err(e.context(format!(
                "chaos failed (seed {seed}); node logs are in {}/*/node.log",
                cluster.root.display()
            )))
        }
    }
}

async fn cycles(
    bin: &Path,
    args: &Args,
    seed: u64,
    wasm: &Path,
    cluster: &mut Cluster,
    partitions: bool,
) -> anyhow::Result<Tally> {
    let hosts: Vec<usize> = (0..args.hosts).collect();
    let tenants: Vec<usize> = (args.hosts..args.hosts + args.tenants).collect();
    for &h in &hosts {
        // Room for four chaos slices per host, so that requests contend for capacity.
        cluster.nodes[h]
            .cli(
                bin,
                &[
                    "capacity", "set", "--cpu", "2", "--mem", "1GiB", "--disk", "256MiB", "--force",
                ],
            )
            .await?;
    }
    let package = cluster.root.join("counter.dgp");
    let (wasm_s, package_s) = (wasm.display().to_string(), package.display().to_string());
    cluster.nodes[tenants[0]]
        .cli(
            bin,
            &[
                "plugin",
                "pack",
                &wasm_s,
                "--name",
                "counter",
                "--version",
                "0.1.0",
                "--out",
                &package_s,
            ],
        )
        .await
        .context("packing the counter plugin")?;
    cluster.wait_converged(Duration::from_secs(60)).await?;
    verify::verify_adverts_converged(cluster, &hosts, Instant::now(), RECOVERY).await?;
    println!(
        "{} hosts and {} tenants up; {} cycles",
        hosts.len(),
        tenants.len(),
        args.cycles
    );

    // Faults come from their own generator, so that the same seed gives the same faults
    // whatever the load's outcomes (which requests succeed depends on timing).
    let mut faults = StdRng::seed_from_u64(seed);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut ledger = Ledger::default();
    let mut tally = Tally::default();
    for cycle in 0..args.cycles {
        let before = plan(&mut rng, &hosts, tenants.len(), &ledger, 3);
        load::run(bin, cluster, &tenants, &package, &mut ledger, &before).await;

        let fault = Fault::choose(
            &mut faults,
            cycle,
            &hosts,
            &tenants,
            cluster.nodes.len(),
            partitions,
        );
        println!("cycle {}/{}: {fault}", cycle + 1, args.cycles);
        *tally.faults.entry(fault.kind()).or_default() += 1;
        let during = plan(&mut rng, &hosts, tenants.len(), &ledger, 2);
        let price = format!("cpu=0.0{}", faults.random_range(10..99));
        let healed = inject(
            bin,
            cluster,
            &fault,
            &tenants,
            &package,
            &mut ledger,
            &during,
            &price,
        )
        .await
        .with_context(|| format!("cycle {} ({fault})", cycle + 1))?;

        let checked = Instant::now();
        let ctx = || format!("cycle {} ({fault})", cycle + 1);
        // First, so that the time measured since a heal is the convergence's own.
        let since = healed.unwrap_or(checked);
        let converged = verify::verify_adverts_converged(cluster, &hosts, since, RECOVERY)
            .await
            .with_context(ctx)?;
        verify::verify_no_lease_lost(cluster, &ledger)
            .await
            .with_context(ctx)?;
        verify::verify_no_overbooking(cluster, &hosts)
            .await
            .with_context(ctx)?;
        verify::verify_deployments_running(cluster, &ledger, RECOVERY)
            .await
            .with_context(ctx)?;
        tally.checks += 4;
        if healed.is_some() {
            tally.heals.push(converged);
            tally.checks += 1;
        }
        let active = ledger.leases.iter().filter(|l| !l.released).count();
        println!(
            "  ok: {} leases acknowledged ({active} active), every check holds; adverts converged {:.1} s after {}",
            ledger.leases.len(),
            converged.as_secs_f64(),
            if healed.is_some() {
                "the heal"
            } else {
                "recovery"
            }
        );
    }
    println!(
        "load: {} lease requests: {} acknowledged, {} refused for want of capacity, {} failed (fault); {} released; {} deployments ({} deploys failed)",
        ledger.attempts,
        ledger.leases.len(),
        ledger.full,
        ledger.failed,
        ledger.releases,
        ledger
            .leases
            .iter()
            .filter(|l| l.deployment.is_some())
            .count(),
        ledger.deploy_failures
    );
    Ok(tally)
}

/// Some lease requests from random tenants to random hosts, and maybe a release.
fn plan(
    rng: &mut StdRng,
    hosts: &[usize],
    tenants: usize,
    ledger: &Ledger,
    leases: usize,
) -> Vec<Action> {
    let mut actions: Vec<Action> = (0..leases)
        .map(|_| Action::Lease {
            tenant: rng.random_range(0..tenants),
            host: hosts[rng.random_range(0..hosts.len())],
        })
        .collect();
    let active: Vec<usize> = (0..ledger.leases.len())
        .filter(|&i| !ledger.leases[i].released)
        .collect();
    if !active.is_empty() && rng.random_bool(0.6) {
        actions.push(Action::Release {
            record: active[rng.random_range(0..active.len())],
        });
    }
    actions
}

/// Injects `fault`, runs `during` meanwhile, recovers. Returns when a partition was healed.
#[allow(clippy::too_many_arguments)]
async fn inject(
    bin: &Path,
    cluster: &mut Cluster,
    fault: &Fault,
    tenants: &[usize],
    package: &Path,
    ledger: &mut Ledger,
    during: &[Action],
    price: &str,
) -> anyhow::Result<Option<Instant>> {
    match fault {
        Fault::KillHost { host: n, at, down }
        | Fault::KillTenant {
            tenant: n,
            at,
            down,
        } => {
            let victim = &cluster.nodes[*n];
            let (_, ()) = tokio::join!(
                load::run(bin, cluster, tenants, package, ledger, during),
                async {
                    tokio::time::sleep(*at).await;
                    victim.signal(Signal::SIGKILL);
                    tokio::time::sleep(*down).await;
                }
            );
            cluster.nodes[*n].kill9().await;
            cluster.nodes[*n].restart(bin).await?;
            Ok(None)
        }
        Fault::Pause { host, length } => {
            cluster.nodes[*host].signal(Signal::SIGSTOP);
            let (_, ()) = tokio::join!(
                load::run(bin, cluster, tenants, package, ledger, during),
                tokio::time::sleep(*length)
            );
            cluster.nodes[*host].signal(Signal::SIGCONT);
            Ok(None)
        }
        Fault::Partition {
            side,
            changed,
            length,
        } => {
            let Some(fabric) = cluster.fabric.as_mut() else {
                bail!("a partition without namespaces");
            };
            fabric.partition(side)?;
            let changed_node = &cluster.nodes[*changed];
            let change = ["capacity", "set", "--price", price, "--force"];
            let (r, _, ()) = tokio::join!(
                changed_node.cli(bin, &change),
                load::run(bin, cluster, tenants, package, ledger, during),
                tokio::time::sleep(*length)
            );
            r.context("changing an offer during the partition")?;
            verify::verify_partition_holds(cluster, side, *changed).await?;
            if let Some(f) = cluster.fabric.as_mut() {
                f.heal()?;
            }
            Ok(Some(Instant::now()))
        }
    }
}

fn summary(args: &Args, seed: u64, tally: &Tally, elapsed: Duration) {
    let mut heals: Vec<f64> = tally.heals.iter().map(Duration::as_secs_f64).collect();
    heals.sort_by(f64::total_cmp);
    let faults: Vec<String> = tally
        .faults
        .iter()
        .map(|(k, v)| format!("{v}× {k}"))
        .collect();
    println!();
    println!(
        "chaos passed: {} cycles, seed {seed}, {:.0} s; faults: {}",
        args.cycles,
        elapsed.as_secs_f64(),
        faults.join(", ")
    );
    println!(
        "{} invariant checks held (no acknowledged lease lost, no host over-booked, deployments running again, adverts converged)",
        tally.checks
    );
    if !heals.is_empty() {
        println!(
            "adverts converged after {} heals: median {:.1} s, max {:.1} s (limit 30 s)",
            heals.len(),
            crate::bench::quantile(&heals, 0.5),
            crate::bench::quantile(&heals, 1.0)
        );
    }
}
