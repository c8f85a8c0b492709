//! One `degroup node` process and its admin API.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use tokio::process::{Child, Command};

/// An advert as `GET /v1/adverts` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct AdvertMeta {
    pub host: String,
    pub seq: u64,
    pub first_seen_ns: u64,
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub peer_id: String,
    pub api_addr: String,
    /// First listen address with `/p2p/<peer id>`.
    pub dial_addr: String,
    token: String,
    child: Child,
    http: reqwest::Client,
}

impl Node {
    /// Starts a node and waits until its API answers.
    pub async fn start(
        bin: &Path,
        name: String,
        dir: &Path,
        bootstrap: &[String],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("node.log"))?;
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(dir)
            .args(["node", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        for b in bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.join("api.addr").exists() {
            if Instant::now() > deadline {
                bail!(
                    "{name} did not start within 30 s; see {}",
                    dir.join("node.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let api_addr = std::fs::read_to_string(dir.join("api.addr"))?
            .trim()
            .to_owned();
        let token = std::fs::read_to_string(dir.join("api.token"))?
            .trim()
            .to_owned();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut node = Self {
            name,
            dir: dir.to_owned(),
            peer_id: String::new(),
            api_addr,
            dial_addr: String::new(),
            token,
            child,
            http,
        };
        let status: serde_json::Value = node.get("/v1/status").await?;
        node.peer_id = status["peer_id"].as_str().unwrap_or_default().to_owned();
        let first = status["listen_addrs"][0].as_str().unwrap_or_default();
        node.dial_addr = format!("{first}/p2p/{}", node.peer_id);
        Ok(node)
    }

    /// GET an admin route as JSON.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
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
    pub async fn post<T: serde::de::DeserializeOwned, B: serde::Serialize + ?Sized>(
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
    pub async fn adverts(&self) -> anyhow::Result<Vec<AdvertMeta>> {
        self.get("/v1/adverts").await
    }

    /// Runs `degroup --data-dir DIR ARGS…` against this node and checks it succeeded.
    pub async fn cli(&self, bin: &Path, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(bin)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "{}: degroup {}: {}",
                self.name,
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sends SIGTERM.
    pub fn terminate(&mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// Waits for exit; kills after `limit`.
    pub async fn wait_or_kill(&mut self, limit: Duration) {
        if tokio::time::timeout(limit, self.child.wait())
            .await
            .is_err()
        {
            self.kill();
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }
}
