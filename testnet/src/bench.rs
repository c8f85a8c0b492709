//! `degroup-testnet bench …`: benchmarks on real node processes, side by side with anchors.

mod lease;
mod propagation;

use std::path::Path;

/// Which benchmark.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Time for a capacity change to reach every node (and Serf's, when installed)
    Propagation(propagation::Args),
    /// Lease negotiation latency and throughput, committed durably on both sides
    Lease(lease::Args),
}

pub async fn run(bin: &Path, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Propagation(a) => propagation::run(bin, &a).await,
        BenchCommand::Lease(a) => lease::run(bin, &a).await,
    }
}

/// The q-quantile (0..=1) of sorted samples, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}
