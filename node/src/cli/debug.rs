//! Hidden developer commands used by the test suite.

use std::io::Write as _;
use std::path::Path;

use crate::store::{Domain, Store};

#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub(super) enum DebugCommand {
    /// Write keys 0..COUNT to the store, printing `ack N` after each is durable.
    /// The crash-safety test kills this process at random points.
    StoreWriter {
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
    },
}

/// The value written under key `i`: its size varies so that writes cross page boundaries.
pub fn store_writer_value(i: u64) -> Vec<u8> {
    let len = 16 + (i.wrapping_mul(2_654_435_761) % 4000) as usize;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

pub(super) fn run(dir: &Path, command: DebugCommand) -> anyhow::Result<()> {
    match command {
        DebugCommand::StoreWriter { count } => {
            std::fs::create_dir_all(dir)?;
            let store = Store::open(dir)?;
            let tree = store.tree(Domain::Scratch)?;
            let mut out = std::io::stdout().lock();
            for i in 0..count {
                tree.insert_durable(&i.to_be_bytes(), &store_writer_value(i))?;
                writeln!(out, "ack {i}")?;
                out.flush()?;
            }
            Ok(())
        }
    }
}
