//! The `degroup` command line (clap derive), one file per subcommand.
//!
//! Conventions every subcommand follows: the data directory comes from `--data-dir`, then
//! `DEGROUP_DATA_DIR`, then `$XDG_DATA_HOME/degroup` (`~/.local/share/degroup`); read commands
//! take `--json` and then print exactly one JSON document on stdout; errors go to stderr as one
//! `error: …` line that says what to do, with exit code 1 (2 for usage errors). No backtraces.

mod capacity;
mod client;
mod compile;
mod completions;
mod debug;
mod deploy;
mod display;
mod find;
mod group;
mod init;
mod key;
mod lease;
mod node;
mod packages;
mod plugin;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use client::{ApiClient, ApiFailure};
pub use debug::store_writer_value;

/// degroup: a peer-to-peer federation of sovereign hosting capacity.
#[derive(Debug, Parser)]
#[command(name = "degroup", version, about, propagate_version = true)]
pub struct Cli {
    /// Data directory of the node [env: DEGROUP_DATA_DIR; default: $XDG_DATA_HOME/degroup]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the data directory: identity key (0600) and a commented config.toml
    Init(init::Args),
    /// Run the node daemon in the foreground until SIGINT/SIGTERM
    Node(node::Args),
    /// Show the running node: peer id, addresses, peers
    Status(status::Args),
    /// Show or change the capacity this node offers
    #[command(subcommand)]
    Capacity(capacity::CapacityCommand),
    /// Find capacity across the federation, e.g. 'cpu>=8 mem>=32GiB country=FR'
    Find(find::Args),
    /// Lease capacity from a host, and manage leases (as tenant or host)
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Plugin developer loop: scaffold, build, sign, run locally
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Deploy a signed plugin package onto a leased slice (or --upgrade a deployment)
    Deploy(deploy::DeployArgs),
    /// Deployments: the ones this node hosts and the ones it deployed as a tenant
    Ps(deploy::PsArgs),
    /// A deployment's logs
    Logs(deploy::LogsArgs),
    /// Send a message to a deployment (its plugin's `message` export)
    Message(deploy::MessageArgs),
    /// Stop a deployment (its key-value state is deleted)
    Stop(deploy::StopArgs),
    /// Groups of your deployments, across hosts, that message each other
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Generate or show ed25519 keys (node, tenant, publisher)
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Print a shell completion script
    Completions(completions::Args),
    /// Developer tools used by the test suite
    #[command(subcommand, hide = true)]
    Debug(debug::DebugCommand),
    /// The node's compile child: a component on stdin, its compiled artifact on stdout
    #[command(name = "__compile", hide = true)]
    Compile(compile::Args),
}

/// An error in how the command was called (exit code 2), as opposed to one in carrying it out.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Resolves the data directory: flag, then `DEGROUP_DATA_DIR`, then the XDG data home.
pub fn data_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d);
    }
    if let Some(d) = std::env::var_os("DEGROUP_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    directories::BaseDirs::new()
        .map(|b| b.data_dir().join("degroup"))
        .ok_or_else(|| {
            anyhow::anyhow!("cannot find a home directory; pass --data-dir or set DEGROUP_DATA_DIR")
        })
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Parses the command line, runs it, and turns errors into a message and an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Compile(a) = &cli.command {
        // No logging, no data directory: stdout is the artifact, stderr the error.
        return compile::run(a);
    }
    let is_node = matches!(cli.command, Command::Node(_));
    // Kademlia warns on every periodic bootstrap of a lone node; that is not news.
    init_tracing(if is_node {
        "info,libp2p_kad=error"
    } else {
        "warn,libp2p_kad=error"
    });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An error can carry a plugin's or a peer's text (an init error, a host's refusal).
            eprintln!("error: {}", display::escape(&format!("{e:#}")));
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = data_dir(cli.data_dir)?;
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    match cli.command {
        Command::Init(a) => init::run(&dir, &a),
        Command::Node(a) => node::run(&dir, a),
        Command::Status(a) => runtime()?.block_on(status::run(&dir, &a)),
        Command::Capacity(c) => runtime()?.block_on(capacity::run(&dir, c)),
        Command::Find(a) => runtime()?.block_on(find::run(&dir, &a)),
        Command::Lease(c) => runtime()?.block_on(lease::run(&dir, c)),
        Command::Plugin(c) => plugin::run(&dir, c),
        Command::Deploy(a) => runtime()?.block_on(deploy::deploy(&dir, &a)),
        Command::Ps(a) => runtime()?.block_on(deploy::ps(&dir, &a)),
        Command::Logs(a) => runtime()?.block_on(deploy::logs(&dir, &a)),
        Command::Message(a) => runtime()?.block_on(deploy::message(&dir, &a)),
        Command::Stop(a) => runtime()?.block_on(deploy::stop(&dir, &a)),
        Command::Group(c) => runtime()?.block_on(group::run(&dir, c)),
        Command::Key(k) => key::run(&dir, k),
        Command::Completions(a) => completions::run(&a),
        Command::Debug(d) => debug::run(&dir, d),
        Command::Compile(_) => Ok(()),
    }
}

/// Prints a value as one JSON document on stdout.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
