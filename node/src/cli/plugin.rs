//! `degroup plugin new|build|pack|run`: the plugin developer's loop. None of them needs a
//! running node. (`publish`, `search`, `info`, `fetch` and `yank` do: see [`super::packages`].)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::UsageError;
use crate::capacity::units::{format_size, parse_duration, parse_size};
use crate::identity::{Identity, KEY_FILE};
use crate::plugin::local::{self, RunOptions};
use crate::plugin::logs::LogLine;
use crate::plugin::package::{self, MAGIC, MAX_COMPONENT, MAX_PACKAGE, Package};
use crate::resources::now_ms;

const TEMPLATE_CARGO: &str = include_str!("../plugin/template/Cargo.toml.tmpl");
const TEMPLATE_LIB: &str = include_str!("../plugin/template/lib.rs.tmpl");

#[derive(Debug, clap::Subcommand)]
pub(super) enum PluginCommand {
    /// Scaffold a plugin crate that builds as is
    New {
        /// Crate name (lowercase letters, digits, `-`, `_`); also the directory
        name: String,
        /// Where to create it [default: ./NAME]
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
        /// Path of the degroup-sdk crate [env: DEGROUP_SDK; default: the one this degroup was
        /// built from]
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate for wasm32-wasip2 (release) and report the component
    Build {
        /// The crate's directory [default: .]
        dir: Option<PathBuf>,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Sign a component into a package (.dgp): component + manifest (name, version, hash,
    /// size, publisher key, capabilities)
    #[command(disable_version_flag = true)]
    Pack {
        /// The component (.wasm), e.g. from `degroup plugin build`
        wasm: PathBuf,
        /// Package name, e.g. my-manager
        #[arg(long)]
        name: String,
        /// Package version (semver), e.g. 0.1.0
        #[arg(long)]
        version: String,
        /// Publisher key [default: <data-dir>/publisher.key, else the node's identity.key]
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Output file [default: NAME-VERSION.dgp]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// A capability the plugin requests (kv, log, lease, clocks, random, http); repeat
        #[arg(long = "capability", value_name = "NAME")]
        capabilities: Vec<String>,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Run a component or package locally in the host's sandbox, with a throwaway store
    Run {
        /// A component (.wasm) or a package (.dgp)
        file: PathBuf,
        /// key=value handed to init; repeat
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// How many ticks to run after init
        #[arg(long, default_value_t = 3)]
        ticks: u32,
        /// Time between ticks, e.g. 1s
        #[arg(long, default_value = "0s", value_name = "DURATION")]
        interval: String,
        /// Memory of the pretend lease
        #[arg(long, default_value = "64MiB")]
        mem: String,
        /// Disk of the pretend lease (the key-value quota)
        #[arg(long, default_value = "16MiB")]
        disk: String,
        /// Deliver a message (text) after init; repeat
        #[arg(long = "message", value_name = "TEXT")]
        messages: Vec<String>,
        /// Serve the plugin's HTTP handler (wasi:http/incoming-handler) on this address, for
        /// every host name, until Ctrl-C; ticks then run every --interval (none if 0s)
        #[arg(long, value_name = "IP:PORT")]
        http: Option<String>,
        /// Print one JSON document (the log lines and a report) instead of lines
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Packages(super::packages::PackageCommand),
}

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    UsageError(e.to_string()).into()
}

/// Parses repeated `--config key=value` flags.
pub(crate) fn parse_config(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let pairs = items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => Err(usage(format!(
                "--config {item:?}: write it as key=value, e.g. --config zone=fr-par"
            ))),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::plugin::wire::check_config(&pairs).map_err(|e| usage(format!("--config: {e}")))?;
    Ok(pairs)
}

/// Reads a package file, with a size cap before reading it whole.
pub(crate) fn read_package(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_capped(path, MAX_PACKAGE as u64, "package")
}

fn read_capped(path: &Path, max: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    if meta.len() > max {
        bail!(
            "{} is {}, more than the {} a {what} may be; make it smaller (release build, opt-level = \"s\", strip = true)",
            path.display(),
            format_size(meta.len()),
            format_size(max)
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

pub(super) fn run(dir: &Path, command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::New { name, path, sdk } => new(&name, path, sdk),
        PluginCommand::Build {
            dir: crate_dir,
            json,
        } => build(crate_dir, json),
        PluginCommand::Pack {
            wasm,
            name,
            version,
            key,
            out,
            capabilities,
            json,
        } => pack(dir, &wasm, &name, &version, key, out, capabilities, json),
        PluginCommand::Run {
            file,
            config,
            ticks,
            interval,
            mem,
            disk,
            messages,
            http,
            json,
        } => {
            let http = http
                .map(|a| {
                    a.trim().parse::<std::net::SocketAddr>().map_err(|e| {
                        usage(format!(
                            "--http {a:?}: {e}; expected IP:PORT such as 127.0.0.1:8080"
                        ))
                    })
                })
                .transpose()?;
            let opts = RunOptions {
                http,
                config: parse_config(&config)?,
                ticks,
                interval: Duration::from_millis(
                    parse_duration(&interval).map_err(|e| usage(format!("--interval: {e}")))?,
                ),
                mem_bytes: parse_size(&mem).map_err(|e| usage(format!("--mem: {e}")))?,
                disk_bytes: parse_size(&disk).map_err(|e| usage(format!("--disk: {e}")))?,
                messages: messages.into_iter().map(String::into_bytes).collect(),
                name: String::new(),
                version: String::new(),
            };
            run_local(dir, &file, opts, json)
        }
        PluginCommand::Packages(c) => super::runtime()?.block_on(super::packages::run(dir, c)),
    }
}

fn valid_crate_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn sdk_path(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let candidate = flag
        .or_else(|| std::env::var_os("DEGROUP_SDK").map(PathBuf::from))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"));
    let manifest = candidate.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "no degroup-sdk crate at {}; pass --sdk with the path of degroup's sdk/ directory",
            candidate.display()
        );
    }
    Ok(std::fs::canonicalize(&candidate).unwrap_or(candidate))
}

fn new(name: &str, path: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    if !valid_crate_name(name) {
        return Err(usage(format!(
            "{name:?} is not a crate name: use lowercase letters, digits, `-` and `_`, starting with a letter"
        )));
    }
    let sdk = sdk_path(sdk)?;
    let root = path.unwrap_or_else(|| PathBuf::from(name));
    if root.exists() {
        bail!(
            "{} already exists; pick another name or --path",
            root.display()
        );
    }
    let sdk_toml = format!("{{ path = {} }}", toml_string(&sdk.display().to_string()));
    let cargo = TEMPLATE_CARGO
        .replace("{{name}}", name)
        .replace("{{sdk}}", &sdk_toml);
    let lib = TEMPLATE_LIB.replace("{{name}}", name);
    std::fs::create_dir_all(root.join("src"))
        .with_context(|| format!("cannot create {}", root.display()))?;
    std::fs::write(root.join("Cargo.toml"), cargo)?;
    std::fs::write(root.join("src/lib.rs"), lib)?;
    std::fs::write(root.join(".gitignore"), "/target\n*.dgp\n")?;
    println!("created plugin crate {} in {}", name, root.display());
    println!("next:");
    println!("  cd {}", root.display());
    println!("  degroup plugin build");
    println!(
        "  degroup plugin run target/wasm32-wasip2/release/{}.wasm --ticks 5",
        name.replace('-', "_")
    );
    Ok(())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn build(dir: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    if !dir.join("Cargo.toml").is_file() {
        return Err(usage(format!(
            "no Cargo.toml in {}; give the plugin crate's directory (`degroup plugin new` makes one)",
            dir.display()
        )));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo; install Rust from https://rustup.rs")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "cargo build failed ({}); if it says the target is missing, run `rustup target add wasm32-wasip2`",
            output.status
        );
    }
    let mut artifacts = Vec::new();
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(files) = msg["filenames"].as_array() {
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(".wasm") {
                    artifacts.push(PathBuf::from(f));
                }
            }
        }
    }
    let Some(wasm) = artifacts.pop() else {
        bail!("cargo built no .wasm; a plugin crate needs `crate-type = [\"cdylib\"]` in [lib]");
    };
    let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    if json {
        return super::print_json(&serde_json::json!({ "wasm": wasm, "size": size }));
    }
    println!("built {} ({})", wasm.display(), format_size(size));
    if size > MAX_COMPONENT as u64 {
        println!(
            "warning: larger than the {} a package may hold",
            format_size(MAX_COMPONENT as u64)
        );
    }
    Ok(())
}

/// The publisher's key: `--key`, else `<data-dir>/publisher.key`, else the node's identity.
pub(super) fn publisher_key(data_dir: &Path, key: Option<PathBuf>) -> anyhow::Result<Identity> {
    let key_path = key.unwrap_or_else(|| {
        let publisher = data_dir.join("publisher.key");
        if publisher.exists() {
            publisher
        } else {
            data_dir.join(KEY_FILE)
        }
    });
    Identity::load(&key_path).with_context(|| {
        format!(
            "cannot load the publisher key {}; make one with `degroup key generate` or pass --key",
            key_path.display()
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn pack(
    data_dir: &Path,
    wasm: &Path,
    name: &str,
    version: &str,
    key: Option<PathBuf>,
    out: Option<PathBuf>,
    capabilities: Vec<String>,
    json: bool,
) -> anyhow::Result<()> {
    package::check_name(name).map_err(|e| usage(format!("--name: {e}")))?;
    package::check_version(version).map_err(|e| usage(format!("--version: {e}")))?;
    let identity = publisher_key(data_dir, key)?;
    let component = read_capped(wasm, MAX_COMPONENT as u64, "component")?;
    let capabilities = if capabilities.is_empty() {
        ["kv", "log", "lease", "clocks", "random"]
            .map(String::from)
            .to_vec()
    } else {
        capabilities
    };
    let pkg = Package::pack(
        identity.signing_key(),
        component,
        name,
        version,
        capabilities,
        now_ms(),
    )
    .map_err(|e| anyhow::anyhow!("cannot pack {}: {e}", wasm.display()))?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}-{version}.dgp")));
    let bytes = pkg.to_bytes();
    write_atomic(&out, &bytes)?;
    if json {
        return super::print_json(&serde_json::json!({
            "file": out,
            "name": pkg.manifest.name,
            "version": pkg.manifest.version,
            "hash": pkg.hash_hex(),
            "package_hash": blake3::hash(&bytes).to_hex().to_string(),
            "size": pkg.manifest.size,
            "package_size": bytes.len(),
            "publisher": pkg.publisher_hex(),
            "capabilities": pkg.manifest.capabilities,
        }));
    }
    println!("packed {} {} into {}", name, version, out.display());
    println!(
        "package     blake3:{}  (what `deploy blake3:…` names)",
        blake3::hash(&bytes).to_hex()
    );
    println!("component   blake3:{}", pkg.hash_hex());
    println!(
        "size        {} component, {} package",
        format_size(pkg.manifest.size),
        format_size(bytes.len() as u64)
    );
    println!("publisher   {}", pkg.publisher_hex());
    println!("capabilities {}", pkg.manifest.capabilities.join(", "));
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("dgp.tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn print_line(l: &LogLine) {
    println!("{}", super::display::log_line(l, false));
}

fn run_local(data_dir: &Path, file: &Path, mut opts: RunOptions, json: bool) -> anyhow::Result<()> {
    let bytes = read_capped(file, MAX_PACKAGE as u64, "plugin file")?;
    let component = if bytes.starts_with(MAGIC) {
        let pkg = Package::open(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not a valid package: {e}", file.display()))?;
        opts.name = pkg.manifest.name.clone();
        opts.version = pkg.manifest.version.clone();
        pkg.component
    } else {
        opts.name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        opts.version = "0.0.0-local".into();
        bytes
    };
    let cache = data_dir.is_dir().then(|| data_dir.join("cache"));
    let opts_http = opts.http.is_some();
    let mut lines = Vec::new();
    let report = super::runtime()?
        .block_on(local::run(&component, &opts, cache, |l| {
            if json {
                lines.push(l.clone());
            } else {
                print_line(l);
            }
        }))
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if json {
        super::print_json(&serde_json::json!({
            "logs": lines,
            "init_error": report.init_error,
            "ticks_ok": report.ticks_ok,
            "faults": report.faults,
            "fuel": report.fuel,
            "peak_mem_bytes": report.peak_mem_bytes,
            "kv_bytes": report.kv_bytes,
            "compile_ms": report.compile.as_secs_f64() * 1000.0,
            "cached": report.cached,
            "http_requests": report.http_requests,
        }))?;
    } else {
        if opts_http {
            eprintln!("-- {} HTTP requests served", report.http_requests);
        }
        eprintln!(
            "-- {} ticks, fuel {}, peak memory {}, kv {}, compiled in {:.1} ms{}",
            report.ticks_ok,
            report.fuel,
            format_size(report.peak_mem_bytes),
            format_size(report.kv_bytes),
            report.compile.as_secs_f64() * 1000.0,
            if report.cached { " (cache)" } else { "" }
        );
    }
    if let Some(e) = &report.init_error {
        bail!("init failed: {e}");
    }
    if let Some(f) = report.faults.first() {
        bail!("the plugin faulted: {f}");
    }
    Ok(())
}
