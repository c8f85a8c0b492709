//! `degroup __compile` (hidden): the node's compile child. Reads a component on stdin, writes
//! the compiled artifact on stdout; the node runs it under CPU and memory bounds
//! (`crate::plugin::runtime`'s `child` module). Not for people.

use std::process::ExitCode;

/// The compile child's settings, passed by the node.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The node's `plugin.max_stack`.
    #[arg(long)]
    max_wasm_stack: usize,
    /// Without fuel metering and epoch deadlines (benchmarks only).
    #[arg(long)]
    unguarded: bool,
}

pub(crate) fn run(a: &Args) -> ExitCode {
    crate::plugin::runtime::serve_compile(a.max_wasm_stack, !a.unguarded)
}
