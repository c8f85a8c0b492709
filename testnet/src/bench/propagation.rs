//! Propagation: change the capacity of one node (with `degroup capacity set`, as an operator
//! would) and measure, from each node's own acceptance time of the new advert, how long it took
//! to reach every node. Serf's anchor script runs with the same N in the same run when `serf`
//! is installed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::plot::{self, Marker};
use super::quantile;
use super::report::Section;
use crate::cluster::{Cluster, fresh_root};

/// Options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Number of node processes
    #[arg(short = 'n', long, default_value_t = 20)]
    nodes: usize,
    /// Capacity changes to time
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Seconds to let the federation settle after convergence before the first change (the Serf
    /// anchor script waits 3 s the same way)
    #[arg(long, default_value_t = 3)]
    settle_s: u64,
    /// Skip the Serf anchor even when it is installed
    #[arg(long)]
    no_anchor: bool,
    /// The anchor script [default: ../shared/anchors/serf-propagation.sh]
    #[arg(long)]
    anchor: Option<PathBuf>,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(super) async fn run(bin: &Path, args: &Args) -> anyhow::Result<Section> {
    if args.nodes < 2 {
        bail!("propagation needs at least 2 nodes (-n 2 or more)");
    }
    let started = Instant::now();
    eprintln!("starting {} degroup nodes …", args.nodes);
    let cluster = Cluster::start(bin, args.nodes, fresh_root(), false).await?;
    let converged = cluster.wait_converged(Duration::from_secs(120)).await?;
    eprintln!(
        "{} nodes up and converged ({:.1} s to start, {:.1} s to converge)",
        args.nodes,
        started.elapsed().as_secs_f64() - converged.as_secs_f64(),
        converged.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(args.settle_s)).await;
    let mut samples = Vec::new();
    let mut round_max = Vec::new();
    for round in 0..args.rounds {
        let origin = &cluster.nodes[round % cluster.nodes.len()];
        let before = origin.advert_seq(&origin.peer_id).await?.unwrap_or(0);
        let t0 = now_ns();
        origin
            .cli(
                bin,
                &["capacity", "set", "--region", &format!("bench-{round}")],
            )
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut latencies: Vec<Option<f64>> = vec![None; cluster.nodes.len()];
        tokio::time::sleep(Duration::from_millis(300)).await;
        while latencies.iter().any(Option::is_none) {
            for (i, node) in cluster.nodes.iter().enumerate() {
                if latencies[i].is_some() {
                    continue;
                }
                let held = node
                    .adverts()
                    .await?
                    .into_iter()
                    .find(|a| a.host == origin.peer_id);
                if let Some(a) = held.filter(|a| a.seq > before) {
                    latencies[i] = Some(a.first_seen_ns.saturating_sub(t0) as f64 / 1e6);
                }
            }
            if Instant::now() > deadline {
                let missing = latencies.iter().filter(|l| l.is_none()).count();
                bail!("round {round}: {missing} nodes never saw the change within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got: Vec<f64> = latencies.into_iter().flatten().collect();
        if std::env::var_os("DEGROUP_BENCH_VERBOSE").is_some() {
            let mut sorted = got.clone();
            sorted.sort_by(f64::total_cmp);
            eprintln!(
                "  per-node ms: {:?}",
                sorted.iter().map(|v| v.round()).collect::<Vec<_>>()
            );
        }
        let max = got.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "round {round}: reached all {} nodes in {max:.1} ms",
            got.len()
        );
        round_max.push(max);
        samples.extend(got);
    }
    for problem in cluster.stop().await {
        eprintln!("warning: {problem}");
    }
    samples.sort_by(f64::total_cmp);
    round_max.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        quantile(&samples, 0.5),
        quantile(&samples, 0.99),
        quantile(&samples, 1.0),
    );
    let n = args.nodes;
    let mut body = format!(
        "{n} `degroup node` processes on 127.0.0.1, converged, then {settle} s of settling. Each \
         round one node runs `degroup capacity set --region bench-R` (a CLI process, as an \
         operator would); a node's latency is its own first-acceptance time of the new advert \
         (`first_seen_ns`) minus the time just before the CLI started.\n\n\
         | | p50 | p99 | max | time to reach all {n} (median of rounds) |\n|---|---|---|---|---|\n\
         | degroup ({rounds} rounds × {n} nodes) | {p50:.1} ms | **{p99:.1} ms** | {max:.1} ms | {reach:.1} ms |\n",
        settle = args.settle_s,
        rounds = args.rounds,
        reach = quantile(&round_max, 0.5),
    );
    let anchor = if args.no_anchor {
        Err("skipped (--no-anchor)".to_owned())
    } else {
        serf(args).await
    };
    let mut markers = Vec::new();
    match anchor {
        Ok((line, med, smax)) => {
            eprintln!("{line}");
            body.push_str(&format!(
                "| Serf 0.8 (Debian's `serf`), {n} agents | {med:.0} ms (median) | | {smax:.0} ms | |\n\
                 | **ratio degroup / Serf, same run** | {:.3} | **{:.3}** (p99 / Serf median) | {:.3} (max / max) | |\n\n\
                 Target: p99 ≤ 100 ms and ≤ 0.1 × Serf's median in the same run: {}.\n",
                p50 / med,
                p99 / med,
                max / smax,
                if p99 <= 100.0 && p99 / med <= 0.1 { "met" } else { "**not met**" }
            ));
            markers.push(Marker {
                label: format!("Serf median ({med:.0} ms)"),
                x_ms: med,
            });
            markers.push(Marker {
                label: format!("Serf max ({smax:.0} ms)"),
                x_ms: smax,
            });
        }
        Err(why) => body.push_str(&format!(
            "\nSerf anchor: {why}; no ratio in this run. Target: p99 ≤ 100 ms: {}.\n",
            if p99 <= 100.0 { "met" } else { "**not met**" }
        )),
    }
    let title = format!("Capacity change to every node, {n} processes");
    let plots = vec![
        (
            format!("bench-propagation-{n}-cdf.svg"),
            plot::cdf(
                &title,
                &format!("degroup, {} samples", samples.len()),
                &samples,
                &markers,
            )?,
        ),
        (
            format!("bench-propagation-{n}-hist.svg"),
            plot::histogram(
                &format!("degroup: latency to a node, {n} processes"),
                &samples,
                30,
            )?,
        ),
    ];
    Ok(Section {
        name: if n == 100 {
            "propagation-100"
        } else {
            "propagation"
        },
        title,
        command: format!(
            "cargo build --release -p degroup-node -p degroup-testnet\n./target/release/degroup-testnet bench propagation -n {n} --rounds {}",
            args.rounds
        ),
        body,
        plots,
    })
}

/// Runs the Serf anchor with the same N: its line, median and max in ms.
async fn serf(args: &Args) -> Result<(String, f64, f64), String> {
    let script = args
        .anchor
        .clone()
        .unwrap_or_else(|| PathBuf::from("../shared/anchors/serf-propagation.sh"));
    if !has_serf() {
        return Err("not installed (apt-get install serf)".to_owned());
    }
    if !script.exists() {
        return Err(format!(
            "script not found at {}; pass --anchor",
            script.display()
        ));
    }
    eprintln!("running the Serf anchor with N={} …", args.nodes);
    let run = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(args.nodes.to_string())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .map_err(|_| "the script did not finish within 300 s".to_owned())?
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("serf"))
        .ok_or_else(|| format!("no result line from the script: {}", text.trim()))?
        .to_owned();
    match (number_before(&line, " ms, max"), last_ms(&line)) {
        (Some(med), Some(max)) => Ok((line, med, max)),
        _ => Err(format!("cannot read the script's line: {line}")),
    }
}

fn has_serf() -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("serf").exists()))
        .unwrap_or(false)
}

/// The number right before `marker` in `line`.
fn number_before(line: &str, marker: &str) -> Option<f64> {
    let end = line.find(marker)?;
    let start = line[..end].rfind(' ')? + 1;
    line[start..end].parse().ok()
}

fn last_ms(line: &str) -> Option<f64> {
    let trimmed = line.trim_end().strip_suffix(" ms")?;
    let start = trimmed.rfind(' ')? + 1;
    trimmed[start..].parse().ok()
}
