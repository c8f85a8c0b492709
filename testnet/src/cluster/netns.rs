//! Real network partitions between local nodes: one network namespace per node, wired to a
//! "switch" namespace by veth pairs.
//!
//! ```text
//!   dgt-<run>-n0 (eth0 10.213.0.1) ──veth── p0 ┐
//!   dgt-<run>-n1 (eth0 10.213.0.2) ──veth── p1 ┼─ br0 / br1   in dgt-<run>-sw
//!   …                                          ┘
//! ```
//!
//! Every port sits on bridge `br0`, so all nodes reach each other. A partition moves one side's
//! ports to bridge `br1`: frames no longer cross between the sides (a real L2 split, TCP
//! connections hang as they would across a cut link) until [`Fabric::heal`] moves them back.
//! Addresses exist only inside the namespaces this run creates; the root namespace gets no
//! interface and no route, so nothing can leave the machine. Deleting the namespaces removes
//! everything ([`Fabric`]'s `Drop`); namespaces of earlier runs whose process is gone are removed
//! by [`cleanup_stale`].
//!
//! The testnet itself stays in the root namespace. It reaches a node's admin API (bound to
//! 127.0.0.1 inside the node's namespace) through a [`Forward`]: a listener on the root
//! namespace's loopback whose connections are opened by a thread that joined the node's
//! namespace ([`Connector`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::sync::oneshot;

const PREFIX: &str = "dgt-";

/// Whether partitions can be made here: root, and `ip netns` works.
pub(crate) fn available() -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("not running as root (network namespaces need it)".to_owned());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `ip` (install iproute2): {e}")),
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes the namespaces (and kills their processes) of earlier runs whose testnet process
/// no longer exists, e.g. after a `kill -9` of the testnet.
pub(crate) fn cleanup_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if alive(pid) {
            continue;
        }
        kill_inside(name);
        let _ = ip(&["netns", "del", name]);
    }
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the parenthesised command name.
            let after = stat.rsplit_once(')')?.1;
            after
                .split_whitespace()
                .next()
                .map(|s| s != "Z" && s != "X")
        })
        .unwrap_or(false)
}

fn kill_inside(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(p) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The namespaces and links of one run.
#[derive(Debug)]
pub(crate) struct Fabric {
    tag: String,
    nodes: usize,
    created: Vec<String>,
    partitioned: Vec<usize>,
}

impl Fabric {
    /// Creates the switch namespace and `nodes` node namespaces.
    pub(crate) fn create(nodes: usize) -> anyhow::Result<Self> {
        if nodes > 250 {
            bail!("at most 250 namespaced nodes");
        }
        cleanup_stale();
        let mut fabric = Self {
            tag: format!("{PREFIX}{}", std::process::id()),
            nodes,
            created: Vec::new(),
            partitioned: Vec::new(),
        };
        let sw = fabric.switch();
        ip(&["netns", "add", &sw])?;
        fabric.created.push(sw.clone());
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        for br in ["br0", "br1"] {
            ip(&["-n", &sw, "link", "add", br, "type", "bridge"])?;
            ip(&["-n", &sw, "link", "set", br, "up"])?;
        }
        for i in 0..nodes {
            let ns = fabric.ns(i);
            ip(&["netns", "add", &ns])?;
            fabric.created.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &sw,
            ])?;
            let addr = format!("{}/24", fabric.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &port, "up"])?;
        }
        Ok(fabric)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.tag)
    }

    /// Node `i`'s namespace.
    pub(crate) fn ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.tag)
    }

    /// Node `i`'s address (inside its namespace only).
    pub(crate) fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, 0, u8::try_from(i + 1).unwrap_or(u8::MAX))
    }

    /// Cuts `side` off from the other nodes (both sides keep talking among themselves).
    pub(crate) fn partition(&mut self, side: &[usize]) -> anyhow::Result<()> {
        self.heal()?;
        let sw = self.switch();
        for &i in side.iter().filter(|&&i| i < self.nodes) {
            ip(&["-n", &sw, "link", "set", &format!("p{i}"), "master", "br1"])?;
            self.partitioned.push(i);
        }
        Ok(())
    }

    /// Puts every node back on one bridge.
    pub(crate) fn heal(&mut self) -> anyhow::Result<()> {
        let sw = self.switch();
        while let Some(&i) = self.partitioned.last() {
            // A port that could not be moved stays listed, so a later heal retries it.
            ip(&["-n", &sw, "link", "set", &format!("p{i}"), "master", "br0"])?;
            self.partitioned.pop();
        }
        Ok(())
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            kill_inside(ns);
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

type ConnectRequest = (
    SocketAddr,
    oneshot::Sender<std::io::Result<std::net::TcpStream>>,
);

/// Opens TCP connections from inside a namespace: a thread that joined it.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    tx: std::sync::mpsc::Sender<ConnectRequest>,
}

impl Connector {
    /// A thread in namespace `ns`.
    pub(crate) fn spawn(ns: &str) -> anyhow::Result<Self> {
        let file = std::fs::File::open(format!("/run/netns/{ns}"))
            .with_context(|| format!("namespace {ns} does not exist"))?;
        let (tx, rx) = std::sync::mpsc::channel::<ConnectRequest>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("netns-{ns}"))
            .spawn(move || {
                let joined = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET);
                let _ = ready_tx.send(joined.map_err(|e| e.to_string()));
                if joined.is_err() {
                    return;
                }
                for (addr, reply) in rx {
                    let r = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5));
                    let _ = reply.send(r);
                }
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { tx }),
            Ok(Err(e)) => bail!("cannot join namespace {ns}: {e}"),
            Err(_) => bail!("the thread for namespace {ns} died"),
        }
    }

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((addr, tx))
            .map_err(|_| std::io::Error::other("namespace thread gone"))?;
        let stream = rx
            .await
            .map_err(|_| std::io::Error::other("namespace thread gone"))??;
        stream.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(stream)
    }
}

/// A TCP forward from the root namespace's loopback to an address inside a namespace. Stops
/// accepting when dropped.
#[derive(Debug)]
pub(crate) struct Forward {
    pub local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Forward {
    pub(crate) async fn start(connector: Connector, target: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let connector = connector.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = connector.connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Self { local, task })
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}
