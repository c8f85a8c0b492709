//! Driving `wrk` (Debian's package `wrk`) and reading its `--latency` report: requests/s, the
//! p50 and p99 latencies, and the counts that make a run suspect (non-2xx answers, socket
//! errors), so that a run where the server answered 503s fast is not reported as fast.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// One `wrk` run's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct WrkResult {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests completed.
    pub requests: u64,
    /// Answers whose status was not 2xx or 3xx.
    pub non_2xx: u64,
    /// Socket errors of every kind (connect, read, write, timeout).
    pub errors: u64,
}

/// How a run loads the server.
#[derive(Debug, Clone)]
pub(super) struct Load {
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
}

/// `wrk` on PATH.
pub(super) fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("wrk"))
        .find(|p| p.is_file())
}

/// Runs `wrk --latency` against `url`, with a `Host` header when given.
pub(super) async fn run(
    wrk: &Path,
    load: &Load,
    url: &str,
    host: Option<&str>,
) -> anyhow::Result<WrkResult> {
    let mut cmd = tokio::process::Command::new(wrk);
    cmd.arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.duration.as_secs().max(1)))
        .arg("--latency");
    if let Some(h) = host {
        cmd.arg("-H").arg(format!("Host: {h}"));
    }
    let out = cmd
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run {}", wrk.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk {url} failed: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            text.trim()
        );
    }
    parse(&text).with_context(|| format!("wrk {url}: unexpected output:\n{text}"))
}

/// Reads `wrk --latency`'s report.
pub(super) fn parse(text: &str) -> anyhow::Result<WrkResult> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut requests = None;
    let mut non_2xx = 0;
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n, ..] => rps = n.parse::<f64>().ok(),
            ["50%", t, ..] => p50 = Some(millis(t)?),
            ["99%", t, ..] => p99 = Some(millis(t)?),
            [n, "requests", "in", ..] => requests = n.parse::<u64>().ok(),
            ["Non-2xx", "or", "3xx", "responses:", n, ..] => non_2xx = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                // `connect 0, read 0, write 0, timeout 0`
                errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    let (Some(rps), Some(p50_ms), Some(p99_ms)) = (rps, p50, p99) else {
        bail!("no Requests/sec or latency distribution (was --latency given?)");
    };
    Ok(WrkResult {
        rps,
        p50_ms,
        p99_ms,
        requests: requests.unwrap_or(0),
        non_2xx,
        errors,
    })
}

/// A wrk duration (`812.00us`, `1.20ms`, `2.00s`, `1.00m`, `1.00h`) in milliseconds.
fn millis(t: &str) -> anyhow::Result<f64> {
    let split = t
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("latency {t:?} has no unit"))?;
    let (n, unit) = t.split_at(split);
    let n: f64 = n
        .parse()
        .with_context(|| format!("latency {t:?} is not a number"))?;
    Ok(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => bail!("latency {t:?}: unknown unit {unit:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "Running 10s test @ http://127.0.0.1:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   312.55us  201.07us  11.90ms   95.12%
    Req/Sec    51.32k     3.01k   57.40k    71.00%
  Latency Distribution
     50%  287.00us
     75%  331.00us
     90%  398.00us
     99%    1.02ms
  1021345 requests in 10.00s, 98.40MB read
Requests/sec: 102134.12
Transfer/sec:      9.84MB
";

    #[test]
    fn reads_a_clean_run() {
        let r = parse(CLEAN).ok();
        assert_eq!(
            r,
            Some(WrkResult {
                rps: 102_134.12,
                p50_ms: 0.287,
                p99_ms: 1.02,
                requests: 1_021_345,
                non_2xx: 0,
                errors: 0,
            })
        );
    }

    #[test]
    fn reads_errors_and_slow_units() {
        let text = "  Latency Distribution
     50%    1.50s
     75%    2.00s
     90%    1.00m
     99%    0.50h
  2000 requests in 10.00s, 1.00MB read
  Socket errors: connect 0, read 3, write 1, timeout 12
  Non-2xx or 3xx responses: 250
Requests/sec:    200.00
";
        let r = parse(text).ok();
        assert_eq!(r.map(|r| r.p50_ms), Some(1500.0));
        assert_eq!(r.map(|r| r.p99_ms), Some(1_800_000.0));
        assert_eq!(
            r.map(|r| (r.non_2xx, r.errors, r.requests)),
            Some((250, 16, 2000))
        );
    }

    #[test]
    fn refuses_a_report_without_the_distribution() {
        assert!(parse("Requests/sec: 10.0\n").is_err());
        assert!(parse("  50% 12.0xs\n  99% 1ms\nRequests/sec: 1\n").is_err());
        assert!(millis("12").is_err());
        assert_eq!(millis("12.5ms").ok(), Some(12.5));
    }
}
