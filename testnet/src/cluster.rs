//! Starting, watching and stopping a set of local `degroup node` processes.

pub(crate) mod netns;
mod node;
pub(crate) mod profile;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub(crate) use node::{Node, Spec};

/// Finds the `degroup` binary: the flag/env, then next to this executable, then PATH.
///
/// Under `cargo run` (when `CARGO` is set and the sources are there), the node binary of the same
/// profile is built first, so that `cargo run --release -p degroup-testnet -- demo` works on a
/// fresh clone and never drives a stale node.
pub(crate) fn find_degroup(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    if let (Some(cargo), Some(dir)) = (std::env::var_os("CARGO"), &exe_dir) {
        build_degroup(&cargo, dir)?;
    }
    if let Some(sibling) = exe_dir.map(|d| d.join("degroup")).filter(|p| p.exists()) {
        return Ok(sibling);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("degroup");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "cannot find the `degroup` binary; build it (cargo build --release -p degroup-node) or pass --degroup PATH"
    )
}

/// `cargo build [--release] -p degroup-node --bin degroup`, for the profile `exe_dir` belongs to.
fn build_degroup(cargo: &std::ffi::OsStr, exe_dir: &Path) -> anyhow::Result<()> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|root| root.join("Cargo.toml"))
        .filter(|m| m.is_file());
    let profile = exe_dir.file_name().and_then(|n| n.to_str());
    let (Some(manifest), Some(profile @ ("debug" | "release"))) = (manifest, profile) else {
        return Ok(());
    };
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "-q", "-p", "degroup-node", "--bin", "degroup"])
        .arg("--manifest-path")
        .arg(&manifest);
    if profile == "release" {
        cmd.arg("--release");
    }
    eprintln!("building degroup ({profile}) …");
    let status = cmd.status().context("cannot run cargo to build degroup")?;
    if !status.success() {
        bail!("building the degroup binary failed (cargo build -p degroup-node)");
    }
    Ok(())
}

/// Where a run keeps its nodes' data directories.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DataArgs {
    /// Where the data directories go [default: a new directory under /tmp]
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the data directories after a successful run (a failed one always keeps them)
    #[arg(long)]
    pub keep: bool,
}

impl DataArgs {
    /// `--dir`, or a fresh directory under /tmp.
    pub(crate) fn root(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(fresh_root)
    }
}

/// How to start a set of nodes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Node names (also their data directory names).
    pub names: Vec<String>,
    /// Extra environment for every node.
    pub env: Vec<(String, String)>,
    /// Put every node in its own network namespace ([`netns::Fabric`]), for partitions.
    pub netns: bool,
    /// Keep the data directories after stopping.
    pub keep: bool,
    /// Extra `degroup node` arguments per node, by index (missing: none), e.g. node 0's
    /// `--ingress 127.0.0.1:8080`.
    pub node_args: Vec<Vec<String>>,
}

impl Options {
    /// `n` nodes named `node000`, `node001`, …
    pub(crate) fn numbered(n: usize) -> Self {
        Self {
            names: (0..n).map(|i| format!("node{i:03}")).collect(),
            ..Self::default()
        }
    }
}

/// A running set of nodes. [`Cluster::stop`] stops them cleanly and removes the data unless
/// kept; dropping it kills them all and keeps the data (its namespaces are removed either way).
#[derive(Debug)]
pub(crate) struct Cluster {
    pub nodes: Vec<Node>,
    pub root: PathBuf,
    pub fabric: Option<netns::Fabric>,
    /// Keep the data directory when stopped (a directory that existed before the run is
    /// always kept).
    keep: bool,
}

impl Cluster {
    /// Starts `n` numbered nodes under `root`.
    pub(crate) async fn start(
        bin: &Path,
        n: usize,
        root: PathBuf,
        keep: bool,
    ) -> anyhow::Result<Self> {
        let options = Options {
            keep,
            ..Options::numbered(n)
        };
        Self::start_with(bin, root, &options).await
    }

    /// Starts the nodes of `options` under `root`. Node 0 starts alone; node i bootstraps from
    /// node 0 and from node (i-1)/2, so that no single node carries every first connection.
    pub(crate) async fn start_with(
        bin: &Path,
        root: PathBuf,
        options: &Options,
    ) -> anyhow::Result<Self> {
        let n = options.names.len();
        if n == 0 {
            bail!("a testnet needs at least one node (-n 1 or more)");
        }
        let owns_root = !root.exists();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let fabric = if options.netns {
            Some(netns::Fabric::create(n)?)
        } else {
            None
        };
        let mut cluster = Self {
            nodes: Vec::with_capacity(n),
            root,
            fabric,
            keep: options.keep || !owns_root,
        };
        if let Err(e) = cluster.start_nodes(bin, options).await {
            // Dropping the cluster keeps the data: the error names a node log.
            return Err(e.context(format!("data kept in {}", cluster.root.display())));
        }
        Ok(cluster)
    }

    async fn start_nodes(&mut self, bin: &Path, options: &Options) -> anyhow::Result<()> {
        let cluster = self;
        for (i, name) in options.names.iter().enumerate() {
            let mut spec = Spec::local(name, &cluster.root);
            spec.env.clone_from(&options.env);
            if let Some(args) = options.node_args.get(i) {
                spec.args.clone_from(args);
            }
            if i > 0 {
                spec.bootstrap.push(cluster.nodes[0].dial_addr.clone());
                let parent = (i - 1) / 2;
                if parent != 0 {
                    spec.bootstrap.push(cluster.nodes[parent].dial_addr.clone());
                }
            }
            let mut connector = None;
            if let Some(f) = &cluster.fabric {
                spec.listen = format!("/ip4/{}/tcp/0", f.addr(i));
                spec.netns = Some(f.ns(i));
                connector = Some(netns::Connector::spawn(&f.ns(i))?);
            }
            let node = Node::start(bin, spec, connector).await?;
            cluster.nodes.push(node);
        }
        Ok(())
    }

    /// Waits until every node holds an advert from every node.
    pub(crate) async fn wait_converged(&self, limit: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let n = self.nodes.len();
        loop {
            let mut done = true;
            for node in &self.nodes {
                if node.adverts().await.map(|a| a.len()).unwrap_or(0) < n {
                    done = false;
                    break;
                }
            }
            if done {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                bail!(
                    "the {n} nodes did not all learn each other's adverts within {limit:?}; logs are in {}",
                    self.root.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops every node with SIGTERM (SIGKILL after 10 s) and removes the data unless kept.
    /// Returns the nodes that did not exit cleanly, with why.
    pub(crate) async fn stop(mut self) -> Vec<String> {
        for node in &self.nodes {
            node.terminate();
        }
        let mut unclean = Vec::new();
        for node in &mut self.nodes {
            if let Err(e) = node.stop(Duration::from_secs(10)).await {
                unclean.push(format!("{e:#}"));
            }
        }
        if !self.keep && unclean.is_empty() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
        self.nodes.clear();
        self.keep = true;
        unclean
    }
}

/// Dropped without [`Cluster::stop`] (an error, an interrupt, a time limit): the nodes are
/// killed and the data directories kept, for their logs.
impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// A fresh directory for a testnet run.
pub(crate) fn fresh_root() -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("degroup-testnet-{}-{stamp}", std::process::id()))
}

/// Node profiles for `up`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Profile {
    /// Nodes as they start: detected hardware, no country or certification
    #[default]
    Plain,
    /// A European federation: varied countries, certifications, prices, capacities and GPUs
    Mixed,
}

/// `degroup-testnet up`.
pub(crate) async fn up(
    bin: &Path,
    n: usize,
    profile: Profile,
    data: &DataArgs,
) -> anyhow::Result<()> {
    let keep = data.keep;
    let root = data.root();
    eprintln!("starting {n} nodes in {} …", root.display());
    let options = Options {
        names: match profile {
            Profile::Plain => Options::numbered(n).names,
            Profile::Mixed => profile::mixed_names(n),
        },
        keep,
        ..Options::default()
    };
    let starting = async {
        let cluster = Cluster::start_with(bin, root, &options).await?;
        if profile == Profile::Mixed {
            for (i, node) in cluster.nodes.iter().enumerate() {
                profile::mixed(i)
                    .apply(bin, node)
                    .await
                    .with_context(|| format!("setting the capacity of {}", node.name))?;
            }
        }
        anyhow::Ok(cluster)
    };
    let cluster = tokio::select! {
        c = starting => c?,
        () = wait_for_signal() => bail!("interrupted while starting; the nodes started so far were killed"),
    };
    println!(
        "{:<10} {:<7} {:<54} {:<22} DATA DIR",
        "NAME", "COUNTRY", "PEER ID", "API"
    );
    for (i, node) in cluster.nodes.iter().enumerate() {
        let country = match profile {
            Profile::Plain => "-",
            Profile::Mixed => profile::mixed(i).country,
        };
        println!(
            "{:<10} {:<7} {:<54} {:<22} {}",
            node.name,
            country,
            node.peer_id,
            node.api_addr,
            node.dir.display()
        );
    }
    println!();
    let first = cluster.nodes[0].dir.display();
    println!("try: degroup --data-dir {first} status");
    if profile == Profile::Mixed {
        println!("     degroup --data-dir {first} find 'country=FR cert=SecNumCloud' --explain");
    } else {
        println!("     degroup --data-dir {first} find --explain");
    }
    eprintln!("running; Ctrl-C stops and cleans up");
    wait_for_signal().await;
    eprintln!("stopping …");
    let root = cluster.root.clone();
    for problem in cluster.stop().await {
        eprintln!("warning: {problem}");
    }
    if keep {
        eprintln!("data kept in {}", root.display());
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut i), Ok(mut t)) => {
            tokio::select! {
                _ = i.recv() => {}
                _ = t.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
