//! Starting, watching and stopping a set of local `degroup node` processes.

mod node;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub use node::Node;

/// Finds the `degroup` binary: the flag/env, then next to this executable, then PATH.
pub fn find_degroup(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("degroup")))
        .filter(|p| p.exists())
    {
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

/// A running set of nodes. Dropping it kills them all.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub root: PathBuf,
    keep: bool,
}

impl Cluster {
    /// Starts `n` nodes under `root`. Node 0 starts alone; node i bootstraps from node 0 and
    /// from node (i-1)/2, so that no single node carries every first connection.
    pub async fn start(bin: &Path, n: usize, root: PathBuf, keep: bool) -> anyhow::Result<Self> {
        if n == 0 {
            bail!("a testnet needs at least one node (-n 1 or more)");
        }
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let mut cluster = Self {
            nodes: Vec::with_capacity(n),
            root,
            keep,
        };
        for i in 0..n {
            let mut bootstrap = Vec::new();
            if i > 0 {
                bootstrap.push(cluster.nodes[0].dial_addr.clone());
                let parent = (i - 1) / 2;
                if parent != 0 {
                    bootstrap.push(cluster.nodes[parent].dial_addr.clone());
                }
            }
            let dir = cluster.root.join(format!("node{i:03}"));
            let node = Node::start(bin, format!("node{i:03}"), &dir, &bootstrap).await?;
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    /// Waits until every node holds an advert from every node.
    pub async fn wait_converged(&self, limit: Duration) -> anyhow::Result<Duration> {
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

    /// Stops every node with SIGTERM (SIGKILL after 5 s) and removes the data unless kept.
    pub async fn stop(mut self) {
        for node in &mut self.nodes {
            node.terminate();
        }
        for node in &mut self.nodes {
            node.wait_or_kill(Duration::from_secs(5)).await;
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
        self.nodes.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if !self.keep && !self.nodes.is_empty() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// A fresh directory for a testnet run.
pub fn fresh_root() -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("degroup-testnet-{}-{stamp}", std::process::id()))
}

/// `degroup-testnet up`.
pub async fn up(bin: &Path, n: usize, dir: Option<PathBuf>, keep: bool) -> anyhow::Result<()> {
    let root = dir.unwrap_or_else(fresh_root);
    eprintln!("starting {n} nodes in {} …", root.display());
    let cluster = Cluster::start(bin, n, root, keep).await?;
    println!("{:<8} {:<54} {:<22} DATA DIR", "NAME", "PEER ID", "API");
    for node in &cluster.nodes {
        println!(
            "{:<8} {:<54} {:<22} {}",
            node.name,
            node.peer_id,
            node.api_addr,
            node.dir.display()
        );
    }
    println!();
    println!(
        "try: degroup --data-dir {} status",
        cluster.nodes[0].dir.display()
    );
    println!(
        "     degroup --data-dir {} find --explain",
        cluster.nodes[0].dir.display()
    );
    eprintln!("running; Ctrl-C stops and cleans up");
    wait_for_signal().await;
    eprintln!("stopping …");
    let root = cluster.root.clone();
    cluster.stop().await;
    if keep {
        eprintln!("data kept in {}", root.display());
    }
    Ok(())
}

async fn wait_for_signal() {
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
