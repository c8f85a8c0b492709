//! `degroup-testnet bench …`: benchmarks on real node processes, side by side with anchors.
//!
//! Each benchmark yields a [`report::Section`]: printed, and written into `docs/benchmarks.md`
//! between markers of its own (with the command and the machine), SVG plots beside it.

mod control;
mod deploy;
mod fetch;
mod http;
mod lease;
mod plot;
mod propagation;
mod report;
mod wrk;

use std::path::Path;

use report::{Output, Section};

/// Which benchmark.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Time for a capacity change to reach every node (and Serf's, when installed)
    Propagation {
        #[command(flatten)]
        args: propagation::Args,
        #[command(flatten)]
        output: Output,
    },
    /// Lease negotiation latency and throughput, committed durably on both sides
    Lease {
        #[command(flatten)]
        args: lease::Args,
        #[command(flatten)]
        output: Output,
    },
    /// Deploy of a signed package to running, end to end between two processes
    Deploy {
        #[command(flatten)]
        args: deploy::Args,
        #[command(flatten)]
        output: Output,
    },
    /// Verified package fetch from 1, 2 and 3 providers (and a plain TCP copy, and sendme
    /// when installed), and deploy by name of an uncached package on a 10-node testnet
    Fetch {
        #[command(flatten)]
        args: fetch::Args,
        #[command(flatten)]
        output: Output,
    },
    /// Requests/s and p50/p99 of the HTTP ingress against `wasmtime serve` on the same
    /// component (wrk, alternating), and the kv-api example's GET throughput
    Http {
        #[command(flatten)]
        args: http::Args,
        #[command(flatten)]
        output: Output,
    },
    /// The control plane: mesh round trips between two hosts (and a TCP ping-pong), child
    /// workload starts, and the scheduler's re-placement after a host's kill -9
    Control {
        #[command(flatten)]
        args: control::Args,
        #[command(flatten)]
        output: Output,
    },
    /// All of the above but http, with their defaults (propagation with -n 20)
    All {
        #[command(flatten)]
        output: Output,
    },
}

pub(crate) async fn run(bin: &Path, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Propagation { args, output } => {
            emit(&output, &propagation::run(bin, &args).await?)
        }
        BenchCommand::Lease { args, output } => emit(&output, &lease::run(bin, &args).await?),
        BenchCommand::Deploy { args, output } => emit(&output, &deploy::run(bin, &args).await?),
        BenchCommand::Fetch { args, output } => emit(&output, &fetch::run(bin, &args).await?),
        BenchCommand::Http { args, output } => emit(&output, &http::run(bin, &args).await?),
        BenchCommand::Control { args, output } => emit(&output, &control::run(bin, &args).await?),
        BenchCommand::All { output } => {
            let p: propagation::Args = defaults()?;
            emit(&output, &propagation::run(bin, &p).await?)?;
            let l: lease::Args = defaults()?;
            emit(&output, &lease::run(bin, &l).await?)?;
            let d: deploy::Args = defaults()?;
            emit(&output, &deploy::run(bin, &d).await?)?;
            let f: fetch::Args = defaults()?;
            emit(&output, &fetch::run(bin, &f).await?)
        }
    }
}

/// A benchmark's options as its subcommand parses them with no flags.
fn defaults<A: clap::Args + clap::FromArgMatches>() -> anyhow::Result<A> {
    let matches =
        A::augment_args(clap::Command::new("defaults")).try_get_matches_from(["defaults"])?;
    Ok(A::from_arg_matches(&matches)?)
}

/// Prints a section and writes it unless `--no-write`.
fn emit(output: &Output, section: &Section) -> anyhow::Result<()> {
    println!("{}", section.markdown());
    if !output.no_write {
        section.write(&output.out)?;
        eprintln!("written to {}", output.out.display());
    }
    Ok(())
}

/// The q-quantile (0..=1) of sorted samples, nearest rank.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}
