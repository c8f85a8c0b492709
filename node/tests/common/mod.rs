//! Helpers for tests that run the real `degroup` binary.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_degroup"))
}

/// `degroup --data-dir DIR ARGS…`, waited for.
pub fn degroup(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run degroup")
}

/// `degroup --data-dir DIR ARGS… --json`, which must succeed, parsed.
pub fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let o = degroup(dir, &a);
    assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e})"))
}

/// A TCP port free on 127.0.0.1 right now (for a node that must keep its address across
/// restarts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed command with a one-line, panic-free error that contains `needle`.
pub fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "no panic: {err}"
    );
    let error_lines = err.lines().filter(|l| l.starts_with("error")).count();
    assert_eq!(error_lines, 1, "one error line: {err}");
}

/// A `degroup node` process, killed when dropped.
pub struct NodeProc {
    pub dir: PathBuf,
    pub child: Child,
}

impl NodeProc {
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(dir, extra, &[])
    }

    pub fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let log = std::fs::File::create(dir.with_extension("log")).expect("log file");
        let child = Command::new(bin())
            .envs(env.iter().copied())
            .arg("--data-dir")
            .arg(dir)
            .args(["node", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn node");
        let node = Self {
            dir: dir.to_owned(),
            child,
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.dir.join("api.addr").exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "node in {} did not start; log: {}",
            self.dir.display(),
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    pub fn status(&self) -> serde_json::Value {
        let o = degroup(&self.dir, &["status", "--json"]);
        assert!(o.status.success(), "status failed: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).expect("status is JSON")
    }

    pub fn peer_id(&self) -> String {
        self.status()["peer_id"].as_str().unwrap().to_owned()
    }

    /// First listen address with `/p2p/<peer id>` appended.
    pub fn dial_addr(&self) -> String {
        let s = self.status();
        format!(
            "{}/p2p/{}",
            s["listen_addrs"][0].as_str().unwrap(),
            s["peer_id"].as_str().unwrap()
        )
    }

    pub fn connected_peers(&self) -> Vec<String> {
        self.status()["connected_peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal");
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A raw HTTP GET, returning the status code and body.
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (code, body)
}

/// `degroup plugin pack WASM --name NAME --version VERSION --out OUT` with the data dir's own
/// key, which must succeed.
pub fn pack_as(dir: &Path, wasm: &Path, name: &str, version: &str, out: &Path) {
    let o = degroup(
        dir,
        &[
            "plugin",
            "pack",
            wasm.to_str().unwrap(),
            "--name",
            name,
            "--version",
            version,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "pack: {}", stderr(&o));
}

/// A one-hour lease of `cpu`, `mem`, `disk` on `host_id`, which must succeed; its id.
pub fn lease_on(tenant: &Path, host_id: &str, cpu: &str, mem: &str, disk: &str) -> String {
    let l = json(
        tenant,
        &[
            "lease", "create", "--host", host_id, "--cpu", cpu, "--mem", mem, "--disk", disk,
            "--for", "1h",
        ],
    );
    l["id"].as_str().unwrap().to_owned()
}

/// `capacity set` on a node: 2 cores (`--force`: any machine), 4 GiB, 10 GiB, in France.
pub fn offer_fr(dir: &Path) {
    let o = degroup(
        dir,
        &[
            "capacity",
            "set",
            "--cpu",
            "2",
            "--mem",
            "4GiB",
            "--disk",
            "10GiB",
            "--country",
            "FR",
            "--force",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}
