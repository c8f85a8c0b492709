//! The anchor side of `bench http`: the `wasi:http/proxy` component both sides serve, built
//! from its crate, and `wasmtime serve` of the node's own wasmtime version.
//!
//! The versions are read at build time from the repository: wasmtime's from the workspace
//! `Cargo.toml` (the node's dependency), the Rust toolchain from `rust-toolchain.toml` (the
//! anchor crate lives outside the repository, where that file does not apply, and the pinned
//! toolchain is the one with `wasm32-wasip2` installed).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, bail};

const WORKSPACE_MANIFEST: &str = include_str!("../../../../Cargo.toml");
const TOOLCHAIN_FILE: &str = include_str!("../../../../rust-toolchain.toml");
/// Used only if the workspace manifest's `wasmtime = { version = "…" }` line cannot be read.
const WASMTIME_FALLBACK: &str = "48.0.8";

/// The value of `key = "…"` on `line`, if it has one.
fn quoted_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)?;
    let rest = line[at + key.len()..].trim_start().strip_prefix('=')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    rest.split('"').next()
}

/// The wasmtime version the node links (`48.0.8`).
pub(super) fn node_wasmtime_version() -> &'static str {
    WORKSPACE_MANIFEST
        .lines()
        .find(|l| l.trim_start().starts_with("wasmtime ="))
        .and_then(|l| quoted_value(l, "version"))
        .map_or(WASMTIME_FALLBACK, |v| v.trim_start_matches('='))
}

/// The repository's pinned toolchain (`1.95.0`).
fn toolchain() -> Option<&'static str> {
    TOOLCHAIN_FILE
        .lines()
        .find(|l| l.trim_start().starts_with("channel"))
        .and_then(|l| quoted_value(l, "channel"))
}

/// Builds the component crate in `dir` for `wasm32-wasip2` (release) into `target_dir`.
pub(super) async fn build(dir: &Path, target_dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read the anchor crate {}", manifest.display()))?;
    let Some(name) = text
        .lines()
        .find(|l| l.trim_start().starts_with("name"))
        .and_then(|l| quoted_value(l, "name"))
    else {
        bail!("{} names no package", manifest.display());
    };
    eprintln!(
        "building the anchor {} (wasm32-wasip2, release) …",
        dir.display()
    );
    let mut cmd =
        tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(dir)
        .kill_on_drop(true);
    if let Some(t) = toolchain() {
        cmd.env("RUSTUP_TOOLCHAIN", t);
    }
    let status = cmd.status().await.context("cannot run cargo")?;
    let wasm = target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !status.success() || !wasm.is_file() {
        bail!(
            "building the anchor in {} failed (is the wasm32-wasip2 target installed? rustup target add wasm32-wasip2)",
            dir.display()
        );
    }
    Ok(wasm)
}

/// `wasmtime` of the node's version: on PATH, else `~/.cargo/bin/wasmtime` (where a
/// background `cargo install` puts it). `Err` says why not and how to install it.
pub(super) async fn find_wasmtime() -> Result<PathBuf, String> {
    let want = node_wasmtime_version();
    let install = format!("cargo install wasmtime-cli --version ={want} --locked");
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("wasmtime"))
            .find(|p| p.is_file())
    });
    let in_cargo = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo").join("bin").join("wasmtime"))
        .filter(|p| p.is_file());
    let mut seen = Vec::new();
    for candidate in on_path.into_iter().chain(in_cargo) {
        let out = tokio::process::Command::new(&candidate)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .await;
        let version = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            _ => continue,
        };
        // `wasmtime 48.0.8 (a1b2c3 2025-…)`
        if version.split_whitespace().nth(1) == Some(want) {
            return Ok(candidate);
        }
        seen.push(format!("{} is `{version}`", candidate.display()));
    }
    if seen.is_empty() {
        Err(format!("wasmtime is not installed ({install})"))
    } else {
        Err(format!(
            "{}, not {want} (the node's version; {install})",
            seen.join("; ")
        ))
    }
}

/// `wasmtime serve`'s arguments for `wasm` on `addr`, with the pooling allocator. A component
/// built by Rust's `wasm32-wasip2` std imports `wasi:cli` (environment, exit) besides the proxy
/// world; `wasmtime serve` links those only with `-S cli`, so it is added when they are there.
pub(super) fn serve_args(wasm_bytes: &[u8], wasm: &Path, addr: &str) -> Vec<String> {
    let mut args = vec![
        "serve".to_owned(),
        "-O".to_owned(),
        "pooling-allocator".to_owned(),
    ];
    let needle = b"wasi:cli/environment";
    if wasm_bytes.windows(needle.len()).any(|w| w == needle) {
        args.extend(["-S".to_owned(), "cli".to_owned()]);
    }
    args.extend(["--addr".to_owned(), addr.to_owned()]);
    args.push(wasm.display().to_string());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_repository() {
        assert_eq!(
            quoted_value(r#"wasmtime = { version = "48.0.8", x = 1 }"#, "version"),
            Some("48.0.8")
        );
        assert!(node_wasmtime_version().split('.').count() == 3);
        assert!(toolchain().is_some());
    }

    #[test]
    fn serve_adds_cli_only_when_imported() {
        let plain = serve_args(
            b"\0asm wasi:http/incoming-handler",
            Path::new("a.wasm"),
            "x",
        );
        assert_eq!(
            plain,
            ["serve", "-O", "pooling-allocator", "--addr", "x", "a.wasm"]
        );
        let cli = serve_args(b"wasi:cli/environment@0.2.0", Path::new("a.wasm"), "x");
        assert!(cli.windows(2).any(|w| w == ["-S", "cli"]));
    }
}
