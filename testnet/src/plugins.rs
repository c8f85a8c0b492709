//! The example plugins the scenarios deploy (`scheduler`, `counter`), built from
//! `wasm-plugins/` the same way the node's tests build them.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The repository root this binary was built from.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where `cargo build` puts the guest programs.
fn target_dir() -> PathBuf {
    repo_root().join("target").join("wasm-plugins")
}

/// The `.wasm` of example plugin `name`: `explicit` when given, else the one built under
/// `target/wasm-plugins`, building it (`cargo build --release --target wasm32-wasip2`) when
/// it is not there yet.
pub(crate) async fn component(name: &str, explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("{} does not exist", p.display());
        }
        return Ok(p.to_owned());
    }
    let file = target_dir()
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if file.is_file() {
        return Ok(file);
    }
    let manifest = repo_root().join("wasm-plugins").join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "cannot find {} nor the sources to build it; pass --plugin FILE.wasm",
            file.display()
        );
    }
    eprintln!("building the {name} plugin (cargo build --release --target wasm32-wasip2) …");
    let status =
        tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                name,
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir())
            .status()
            .await
            .context("cannot run cargo to build the plugin")?;
    if !status.success() || !file.is_file() {
        bail!(
            "building the {name} plugin failed: it must be a package of wasm-plugins/ (e.g. scheduler, counter), and the wasm32-wasip2 target must be installed (rustup target add wasm32-wasip2)"
        );
    }
    Ok(file)
}
