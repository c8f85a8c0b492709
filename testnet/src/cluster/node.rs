//! One `degroup node` process and its admin API.
//!
//! A node is described by a [`Spec`] (name, data directory, listen address, bootstrap peers,
//! environment, and optionally a network namespace) so that it can be killed and started again
//! on the same data directory and the same p2p port, the way an operator restarts a crashed
//! daemon. A node inside a namespace is reached through a port forward
//! ([`super::netns::Forward`]) and its CLI runs under `ip netns exec`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use degroup_node::api::StatusResponse;
pub(super) use degroup_node::capacity::book::AdvertMeta;
use nix::sys::signal::Signal;
use serde::de::DeserializeOwned;
use tokio::process::{Child, Command};

use super::netns::{Connector, Forward};

/// How to start a node.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub name: String,
    pub dir: PathBuf,
    /// The p2p listen multiaddr; after the first start it is pinned to the port the node got.
    pub listen: String,
    pub bootstrap: Vec<String>,
    /// Extra environment, e.g. `DEGROUP_PLUGIN__TICK_INTERVAL`.
    pub env: Vec<(String, String)>,
    /// Network namespace to run in (chaos partitions).
    pub netns: Option<String>,
    /// Extra `degroup node` arguments, e.g. `--ingress 127.0.0.1:8080`.
    pub args: Vec<String>,
}

impl Spec {
    /// A node on 127.0.0.1 with an ephemeral port.
    pub(crate) fn local(name: &str, root: &Path) -> Self {
        Self {
            name: name.to_owned(),
            dir: root.join(name),
            listen: "/ip4/127.0.0.1/tcp/0".to_owned(),
            bootstrap: Vec::new(),
            env: Vec::new(),
            netns: None,
            args: Vec::new(),
        }
    }
}

/// A node, running or not.
#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub peer_id: String,
    /// Where the admin API answers from this process (a forward for a namespaced node).
    pub api_addr: String,
    /// First listen address with `/p2p/<peer id>`.
    pub dial_addr: String,
    spec: Spec,
    token: String,
    child: Option<Child>,
    forward: Option<Forward>,
    connector: Option<Connector>,
    http: reqwest::Client,
}

impl Node {
    /// Starts a node and waits until its API answers.
    pub(crate) async fn start(
        bin: &Path,
        spec: Spec,
        connector: Option<Connector>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut node = Self {
            name: spec.name.clone(),
            dir: spec.dir.clone(),
            peer_id: String::new(),
            api_addr: String::new(),
            dial_addr: String::new(),
            spec,
            token: String::new(),
            child: None,
            forward: None,
            connector,
            http,
        };
        node.launch(bin).await?;
        Ok(node)
    }

    /// The node's log file.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    /// Starts the process again on the same data directory and p2p address (after
    /// [`Node::kill9`] or [`Node::stop`]).
    pub(crate) async fn restart(&mut self, bin: &Path) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{} is still running", self.name);
        }
        self.launch(bin).await
    }

    async fn launch(&mut self, bin: &Path) -> anyhow::Result<()> {
        let dir = self.spec.dir.clone();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let _ = std::fs::remove_file(dir.join("api.addr"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = self.command(bin);
        cmd.arg("--data-dir")
            .arg(&dir)
            .args(["node", "--listen", &self.spec.listen])
            .args(&self.spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in &self.spec.env {
            cmd.env(k, v);
        }
        for b in &self.spec.bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.join("api.addr").exists() {
            if !self.is_running() {
                bail!(
                    "{} exited at start; see {}",
                    self.name,
                    self.log_path().display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not start within 30 s; see {}",
                    self.name,
                    self.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let api = std::fs::read_to_string(dir.join("api.addr"))?
            .trim()
            .to_owned();
        self.token = std::fs::read_to_string(dir.join("api.token"))?
            .trim()
            .to_owned();
        self.api_addr = match &self.connector {
            Some(c) => {
                let target = api
                    .parse()
                    .with_context(|| format!("{}: api.addr {api:?}", self.name))?;
                let forward = Forward::start(c.clone(), target).await?;
                let local = forward.local.to_string();
                self.forward = Some(forward);
                local
            }
            None => api,
        };
        let status: StatusResponse = self.get("/v1/status").await?;
        self.peer_id = status.peer_id;
        let first = status.listen_addrs.into_iter().next().unwrap_or_default();
        if first.is_empty() {
            bail!("{} reports no listen address", self.name);
        }
        self.dial_addr = format!("{first}/p2p/{}", self.peer_id);
        self.spec.listen = first;
        Ok(())
    }

    /// `degroup …` or `ip netns exec NS degroup …`.
    fn command(&self, bin: &Path) -> Command {
        match &self.spec.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        }
    }

    /// GET an admin route as JSON.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let r = self
            .http
            .get(format!("http://{}{path}", self.api_addr))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("{}: GET {path}", self.name))?;
        if !r.status().is_success() {
            bail!(
                "{}: GET {path}: {}",
                self.name,
                r.text().await.unwrap_or_default()
            );
        }
        Ok(r.json().await?)
    }

    /// POST a JSON body to an admin route; `Err` carries the node's error message.
    pub(crate) async fn post<T: DeserializeOwned, B: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let r = self
            .http
            .post(format!("http://{}{path}", self.api_addr))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("{}: POST {path}", self.name))?;
        if !r.status().is_success() {
            bail!(
                "{}: POST {path}: {}",
                self.name,
                r.text().await.unwrap_or_default()
            );
        }
        Ok(r.json().await?)
    }

    /// The adverts this node holds.
    pub(crate) async fn adverts(&self) -> anyhow::Result<Vec<AdvertMeta>> {
        self.get("/v1/adverts").await
    }

    /// The sequence number of `host`'s advert as this node holds it (`None`: it holds none).
    pub(crate) async fn advert_seq(&self, host: &str) -> anyhow::Result<Option<u64>> {
        Ok(self
            .adverts()
            .await?
            .into_iter()
            .find(|a| a.host == host)
            .map(|a| a.seq))
    }

    /// Runs `degroup --data-dir DIR ARGS…` against this node and checks it succeeded.
    pub(crate) async fn cli(&self, bin: &Path, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(bin)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "{}: degroup {}: {}",
                self.name,
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Like [`Node::cli`] with `--json` appended, parsed as the type the command prints.
    pub(crate) async fn cli_json<T: DeserializeOwned>(
        &self,
        bin: &Path,
        args: &[&str],
    ) -> anyhow::Result<T> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(bin, &all).await?;
        serde_json::from_str(&out).with_context(|| {
            format!(
                "{}: degroup {}: not the expected JSON",
                self.name,
                args.join(" ")
            )
        })
    }

    /// Whether the process is alive (a stopped process counts as alive).
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id while running.
    pub(crate) fn pid(&self) -> Option<nix::unistd::Pid> {
        self.child
            .as_ref()
            .and_then(Child::id)
            .and_then(|p| i32::try_from(p).ok())
            .map(nix::unistd::Pid::from_raw)
    }

    /// Sends a signal to the process.
    pub(crate) fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// SIGKILL, then reaps the process.
    pub(crate) async fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        if let Some(c) = self.child.as_mut() {
            let _ = c.wait().await;
        }
        self.child = None;
        self.forward = None;
    }

    /// SIGTERM and waits; SIGKILL after `limit`. `Ok` only for a clean exit (status 0).
    pub(crate) async fn stop(&mut self, limit: Duration) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        self.forward = None;
        // A stopped process cannot handle SIGTERM: continue it first.
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGCONT);
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => bail!(
                "{} exited with {status} on SIGTERM; see {}",
                self.name,
                self.log_path().display()
            ),
            Ok(Err(e)) => bail!("{}: cannot wait for the process: {e}", self.name),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                bail!(
                    "{} did not stop within {limit:?} of SIGTERM and was killed; see {}",
                    self.name,
                    self.log_path().display()
                )
            }
        }
    }

    /// SIGKILL without waiting (for `Drop`).
    pub(crate) fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}
