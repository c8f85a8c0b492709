//! `degroup init`.

use std::path::Path;

/// Create the data directory.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Replace an existing identity (the old key and config are kept as *.bak)
    #[arg(long)]
    force: bool,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

pub(super) fn run(dir: &Path, args: &Args) -> anyhow::Result<()> {
    let (identity, _) = crate::node::init(dir, args.force)?;
    let peer_id = identity.peer_id().to_string();
    if args.json {
        super::print_json(&serde_json::json!({
            "peer_id": peer_id,
            "data_dir": dir,
        }))
    } else {
        println!("{peer_id}");
        eprintln!(
            "initialised {} (identity.key, config.toml); start the node with `degroup node --data-dir {}`",
            dir.display(),
            dir.display()
        );
        Ok(())
    }
}
