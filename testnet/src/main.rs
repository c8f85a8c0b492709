//! # degroup-testnet
//!
//! The whole federation on one machine:
//!
//! - `up` starts N real `degroup node` processes on 127.0.0.1, each with its own data directory,
//!   bootstrapped from each other (`--profile mixed`: varied countries, certifications, prices);
//! - `demo` tells the whole story step by step, checking every step ([`demo`]);
//! - `chaos` injects `kill -9`, `SIGSTOP` and real network partitions under tenant load and
//!   checks the invariants after each fault ([`chaos`]);
//! - `bench` measures propagation, leases, deploys, package fetches and the HTTP ingress, side
//!   by side with the anchors installed on the machine (Serf, `wasmtime serve`), and writes `docs/benchmarks.md`'s testnet section and SVG plots.
//!
//! Nodes are separate processes started the way an operator starts them, and everything the
//! testnet learns it learns through the admin API or the CLI — nothing is in-process.

mod bench;
mod chaos;
mod cluster;
mod demo;
mod plugins;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Run many local degroup nodes.
#[derive(Debug, Parser)]
#[command(name = "degroup-testnet", version, about)]
struct Cli {
    /// The `degroup` binary [default: next to this one, else on PATH]
    #[arg(long, global = true, env = "DEGROUP_BIN")]
    degroup: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start N nodes and keep them running until Ctrl-C
    Up {
        /// Number of nodes
        #[arg(short = 'n', long, default_value_t = 5)]
        nodes: usize,
        /// What the nodes offer: `mixed` gives them varied countries, certifications and prices
        #[arg(long, value_enum, default_value_t)]
        profile: cluster::Profile,
        #[command(flatten)]
        data: cluster::DataArgs,
    },
    /// The whole story on one machine: find, lease, deploy, logs, receipts, verify, release
    Demo(demo::Args),
    /// Faults under load (kill -9, SIGSTOP, partitions as root), invariants checked after each
    Chaos(chaos::Args),
    /// Benchmarks, side by side with the anchors installed here
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs `work` until it ends or SIGINT/SIGTERM arrives; then `work` is dropped, which kills the
/// nodes it started (their data is kept).
async fn interruptible(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::select! {
        r = work => r,
        () = cluster::wait_for_signal() => {
            anyhow::bail!("interrupted; the nodes were killed, their data directories kept")
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let bin = cluster::find_degroup(cli.degroup)?;
        match cli.command {
            Command::Up {
                nodes,
                profile,
                data,
            } => cluster::up(&bin, nodes, profile, &data).await,
            Command::Demo(a) => interruptible(demo::run(&bin, &a)).await,
            Command::Chaos(a) => chaos::run(&bin, &a).await,
            Command::Bench(b) => interruptible(bench::run(&bin, b)).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
