//! `degroup key generate|show`.

use std::path::{Path, PathBuf};

use crate::identity::{Identity, KEY_FILE};

#[derive(Debug, clap::Subcommand)]
pub(super) enum KeyCommand {
    /// Write a new ed25519 key file (mode 0600), e.g. a publisher key
    Generate {
        /// Where to write it [default: <data-dir>/publisher.key]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace an existing file (kept as *.bak)
        #[arg(long)]
        force: bool,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show the peer id and public key of a key file
    Show {
        /// Key file [default: <data-dir>/identity.key, the node's identity]
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
}

fn describe(path: &Path, id: &Identity, json: bool) -> anyhow::Result<()> {
    let peer_id = id.peer_id().to_string();
    let public_key = hex::encode(id.verifying_key().as_bytes());
    if json {
        return super::print_json(&serde_json::json!({
            "path": path,
            "peer_id": peer_id,
            "public_key": public_key,
        }));
    }
    println!("file        {}", path.display());
    println!("peer id     {peer_id}");
    println!("public key  {public_key}");
    Ok(())
}

pub(super) fn run(dir: &Path, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Generate { out, force, json } => {
            let path = out.unwrap_or_else(|| dir.join("publisher.key"));
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let id = Identity::generate()?;
            id.save(&path, force)?;
            describe(&path, &id, json)
        }
        KeyCommand::Show { key, json } => {
            let path = key.unwrap_or_else(|| dir.join(KEY_FILE));
            let id = Identity::load(&path)?;
            describe(&path, &id, json)
        }
    }
}
