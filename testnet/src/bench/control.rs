//! The tenant's control plane: mesh round trips between deployments on two hosts, the start
//! of a child workload from a cached package, and (`--replace`) the demo's re-placement story
//! timed from the `kill -9` of a host to all its workloads running elsewhere.
//!
//! - **Mesh.** Two hosts and a tenant; `mesh-ping` deployed on each host into one group; the
//!   first is told `ping <second> N` and does N round trips, each ping sent from the `message`
//!   export that received the previous pong, timed with the guest's monotonic clock. One round
//!   trip is two mesh messages: sender's host → `/degroup/mesh/1` → receiver's host → the
//!   receiver's inbox and `message` call, and back. The anchor, in the same run: a TCP
//!   ping-pong of the same payload between two tasks of this process over loopback (the floor
//!   of any host-to-host message here).
//! - **Child start.** `spawner` on a host starts `hello` by its `blake3:` package hash (already
//!   in the host's blob store and compile cache after the first), and the host logs in the
//!   child's log how long it took from `workload.start` to the child's `init` done.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::quantile;
use super::report::Section;
use crate::cluster::{Cluster, Node, fresh_root};

/// Options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Mesh round trips timed
    #[arg(long, default_value_t = 2000)]
    rounds: u32,
    /// Child starts timed (after a first one that fetches and compiles)
    #[arg(long, default_value_t = 50)]
    children: usize,
    /// Also run the demo's re-placement story this many times (3 hosts, kill -9 one) and time
    /// it; 0 skips it
    #[arg(long, default_value_t = 3)]
    replace: usize,
}

async fn pack(bin: &Path, node: &Node, root: &Path, plugin: &str) -> anyhow::Result<String> {
    let wasm = crate::plugins::component(plugin, None).await?;
    let out = root.join(format!("{plugin}.dgp"));
    let (w, o) = (wasm.display().to_string(), out.display().to_string());
    node.cli(
        bin,
        &[
            "plugin",
            "pack",
            &w,
            "--name",
            plugin,
            "--version",
            "0.1.0",
            "--out",
            &o,
        ],
    )
    .await?;
    Ok(o)
}

async fn lease(bin: &Path, tenant: &Node, host: &Node, cpu: &str) -> anyhow::Result<String> {
    let l: Value = tenant
        .cli_json(
            bin,
            &[
                "lease",
                "create",
                "--host",
                &host.peer_id,
                "--cpu",
                cpu,
                "--mem",
                "512MiB",
                "--disk",
                "64MiB",
                "--for",
                "1h",
            ],
        )
        .await?;
    l["id"]
        .as_str()
        .map(str::to_owned)
        .context("lease create printed no id")
}

async fn deploy(bin: &Path, tenant: &Node, lease: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["deploy", "--lease", lease];
    all.extend_from_slice(args);
    let d: Value = tenant.cli_json(bin, &all).await?;
    if d["state"] != "running" {
        bail!("deploy answered {d}");
    }
    d["id"]
        .as_str()
        .map(str::to_owned)
        .context("deploy printed no id")
}

/// Waits (bounded) for a log line of `id` containing `needle`; returns the lines that do.
async fn wait_log(
    bin: &Path,
    tenant: &Node,
    id: &str,
    needle: &str,
    limit: Duration,
) -> anyhow::Result<Vec<String>> {
    wait_lines(bin, tenant, id, |l| l.contains(needle), 1, limit).await
}

/// Waits (bounded) until `id` has logged at least `min` lines that `pick` picks.
async fn wait_lines(
    bin: &Path,
    tenant: &Node,
    id: &str,
    pick: impl Fn(&str) -> bool,
    min: usize,
    limit: Duration,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    loop {
        let text = tenant.cli(bin, &["logs", id]).await.unwrap_or_default();
        let hits: Vec<String> = text
            .lines()
            .filter(|l| pick(l))
            .map(str::to_owned)
            .collect();
        if hits.len() >= min {
            return Ok(hits);
        }
        if started.elapsed() > limit {
            bail!("{id} logged no line as expected within {limit:?}; its logs:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `key=<number>` in a log line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| {
            v.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
}

/// The anchor: `rounds` TCP round trips of `len` bytes between two tasks over loopback.
async fn tcp_round_trips(rounds: u32, len: usize) -> anyhow::Result<Vec<f64>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; len];
        loop {
            if s.read_exact(&mut buf).await.is_err() {
                return Ok::<(), std::io::Error>(());
            }
            s.write_all(&buf).await?;
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    c.set_nodelay(true)?;
    let mut buf = vec![7u8; len];
    let mut out = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let t = Instant::now();
        c.write_all(&buf).await?;
        c.read_exact(&mut buf).await?;
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(c);
    let _ = echo.await;
    out.sort_by(f64::total_cmp);
    Ok(out)
}

pub(super) async fn run(bin: &Path, args: &Args) -> anyhow::Result<Section> {
    if args.rounds == 0 || args.children == 0 {
        bail!("give at least one round trip and one child start");
    }
    eprintln!("starting two hosts and a tenant …");
    let cluster = Cluster::start(bin, 3, fresh_root(), false).await?;
    let result = measure(bin, &cluster, args).await;
    for problem in cluster.stop().await {
        eprintln!("warning: {problem}");
    }
    let (mesh, child) = result?;
    let tcp = tcp_round_trips(args.rounds, 16).await?;
    let mut replace = Vec::new();
    for i in 0..args.replace {
        eprintln!("re-placement story, run {} of {} …", i + 1, args.replace);
        let data = crate::cluster::DataArgs {
            dir: None,
            keep: false,
        };
        replace.push(
            crate::demo::replacement_time(bin, &data)
                .await?
                .as_secs_f64(),
        );
    }
    Ok(section(args, &mesh, &child, &tcp, &replace))
}

/// Mesh round-trip (p50, p99 in µs, from the guest's line) and child start times (µs).
async fn measure(
    bin: &Path,
    cluster: &Cluster,
    args: &Args,
) -> anyhow::Result<((f64, f64), Vec<f64>)> {
    let (h1, h2, tenant) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    for h in [h1, h2] {
        h.cli(
            bin,
            &[
                "capacity", "set", "--cpu", "4", "--mem", "8GiB", "--disk", "8GiB", "--force",
            ],
        )
        .await?;
    }
    cluster.wait_converged(Duration::from_secs(60)).await?;
    let root = cluster.root.clone();
    let ping = pack(bin, tenant, &root, "mesh-ping").await?;
    tenant.cli(bin, &["group", "create", "bench"]).await?;
    let (l1, l2) = (
        lease(bin, tenant, h1, "1").await?,
        lease(bin, tenant, h2, "1").await?,
    );
    let a = deploy(bin, tenant, &l1, &[&ping, "--group", "bench"]).await?;
    let b = deploy(bin, tenant, &l2, &[&ping, "--group", "bench"]).await?;
    // A few round trips first: connections and caches warm, and the group known on both.
    tenant
        .cli(bin, &["message", &a, &format!("ping {b} 20")])
        .await?;
    wait_log(bin, tenant, &a, "n=20", Duration::from_secs(30)).await?;
    let n = args.rounds;
    tenant
        .cli(bin, &["message", &a, &format!("ping {b} {n}")])
        .await?;
    let needle = format!("n={n}");
    let lines = wait_log(bin, tenant, &a, &needle, Duration::from_secs(300)).await?;
    let line = lines.last().context("no rtt line")?;
    let mesh = (
        field(line, "p50_us").context("no p50_us in the rtt line")?,
        field(line, "p99_us").context("no p99_us in the rtt line")?,
    );

    // Child starts: hello, published by the tenant, started by its package hash.
    let hello = pack(bin, tenant, &root, "hello").await?;
    let published: Value = tenant.cli_json(bin, &["plugin", "publish", &hello]).await?;
    let hash = published["hash"]
        .as_str()
        .context("publish printed no hash")?;
    let reference = if hash.starts_with("blake3:") {
        hash.to_owned()
    } else {
        format!("blake3:{hash}")
    };
    let started = Instant::now();
    while h1
        .cli(bin, &["plugin", "info", &reference, "--json"])
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the host did not hear of {reference} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spawner = pack(bin, tenant, &root, "spawner").await?;
    let l3 = lease(bin, tenant, h1, "2").await?;
    let parent = deploy(bin, tenant, &l3, &[&spawner]).await?;
    let mut child = Vec::with_capacity(args.children);
    for i in 0..=args.children {
        tenant
            .cli(
                bin,
                &[
                    "message",
                    &parent,
                    &format!("start {reference}|16|1000000|64"),
                ],
            )
            .await?;
        let line = wait_lines(
            bin,
            tenant,
            &parent,
            |l| l.starts_with("[plugin]") && l.contains(" started "),
            i + 1,
            Duration::from_secs(30),
        )
        .await?;
        let id = line
            .last()
            .and_then(|l| l.split("started ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .context("spawner logged no child id")?
            .to_owned();
        let ran = wait_log(
            bin,
            tenant,
            &id,
            "after workload.start",
            Duration::from_secs(30),
        )
        .await?;
        let us = ran
            .last()
            .and_then(|l| field(l, "running"))
            .context("no start time in the child's log")?;
        if i > 0 {
            child.push(us);
        }
        tenant
            .cli(bin, &["message", &parent, &format!("stop {id}")])
            .await?;
        wait_log(
            bin,
            tenant,
            &parent,
            &format!("stopped {id}"),
            Duration::from_secs(30),
        )
        .await?;
    }
    child.sort_by(f64::total_cmp);
    Ok((mesh, child))
}

fn section(args: &Args, mesh: &(f64, f64), child: &[f64], tcp: &[f64], replace: &[f64]) -> Section {
    let tcp50 = quantile(tcp, 0.5);
    let tcp99 = quantile(tcp, 0.99);
    let c50 = quantile(child, 0.5);
    let mut sorted = replace.to_vec();
    sorted.sort_by(f64::total_cmp);
    let replace_row = if replace.is_empty() {
        "| re-placement after a host's `kill -9` | not run (`--replace 0`) | | |\n".to_owned()
    } else {
        format!(
            "| re-placement after a host's `kill -9`, {} runs | **{:.1} s** (median; runs: {}) | ≤ 10 s | {:.2}× |\n",
            replace.len(),
            quantile(&sorted, 0.5),
            replace
                .iter()
                .map(|s| format!("{s:.1} s"))
                .collect::<Vec<_>>()
                .join(", "),
            quantile(&sorted, 0.5) / 10.0
        )
    };
    let body = format!(
        "Two host processes and a tenant on 127.0.0.1. `mesh-ping` deployments on the two \
         hosts, in one group, do {rounds} round trips: each ping leaves from the `message` call \
         that received the previous pong (so a round trip is two mesh messages, each through \
         the sending host's rate cap, a signed envelope over `/degroup/mesh/1`, the receiving \
         host's checks and the receiver's inbox and `message` call), timed by the guest's \
         monotonic clock. The anchor is a 16-byte TCP ping-pong between two tasks of the bench \
         over loopback in the same run. A child start is `spawner` calling `workload.start` \
         with `hello`'s `blake3:` hash (in the blob store and compile cache after the first \
         start), timed by the host from the call to the child's `init` done ({children} \
         starts, each stopped after). The re-placement is the demo's chapter 2 (three hosts, \
         the scheduler as a group of 3, six children, `kill -9` of one host), timed from the \
         kill to `ps --json` on the tenant showing all six running on the other two; the \
         heartbeat is 1 s and an agent is dead after 3 s.\n\n\
         | | measured | target | ratio |\n|---|---|---|---|\n\
         | mesh round trip, p50 / p99 | {m50:.0} µs / {m99:.0} µs | | |\n\
         | mesh message one way (half the round trip), p50 | **{one:.0} µs** | ≤ 1 ms | {r1:.2}× |\n\
         | anchor: TCP round trip on loopback, p50 / p99 | {tcp50:.0} µs / {tcp99:.0} µs | | mesh/TCP {rt:.1}× |\n\
         | child workload start, cached package, p50 / p99 | **{c50:.0} µs** / {c99:.0} µs | p50 ≤ 1 ms | {rc:.2}× |\n\
         {replace_row}",
        rounds = args.rounds,
        children = child.len(),
        m50 = mesh.0,
        m99 = mesh.1,
        one = mesh.0 / 2.0,
        r1 = mesh.0 / 2.0 / 1000.0,
        rt = mesh.0 / tcp50.max(1.0),
        c99 = quantile(child, 0.99),
        rc = c50 / 1000.0,
    );
    Section {
        name: "control",
        title: "Control plane: mesh messages, child starts, re-placement".to_owned(),
        command: format!(
            "./target/release/degroup-testnet bench control --rounds {} --children {} --replace {}",
            args.rounds, args.children, args.replace
        ),
        body,
        plots: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_read_from_log_lines() {
        let l = "[plugin] 03:02:53.709 INFO  mesh rtt p50_us=2255 p99_us=5121 n=20 peer=4d3c";
        assert_eq!(field(l, "p50_us"), Some(2255.0));
        assert_eq!(field(l, "n"), Some(20.0));
        assert_eq!(
            field("[host] running=734µs after workload.start", "running"),
            Some(734.0)
        );
        assert_eq!(field(l, "nope"), None);
    }
}
