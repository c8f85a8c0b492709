//! The report of `bench http`: a row per round (degroup and `wasmtime serve` side by side,
//! with the req/s and p99 ratios), the medians, the targets of the issue (≥ 1.5× the req/s,
//! p99 ≤ wasmtime's), `kv-api`'s GET throughput, and every run that had failed requests, whose
//! numbers are then suspect (a server answering 503s fast is not fast).

use std::fmt::Write as _;

use super::super::quantile;
use super::super::report::Section;
use super::super::wrk::WrkResult;
use super::{Args, BENCH_ROUTE, KV_KEY, KV_ROUTE, anchor};

/// The side-by-side runs: (degroup, wasmtime) per round.
pub(super) struct Runs {
    pub rounds: Vec<(WrkResult, Option<WrkResult>)>,
    pub kv: WrkResult,
}

/// Nearest-rank median.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

fn cells(r: &WrkResult) -> String {
    format!("{:.0} | {:.2} ms | {:.2} ms", r.rps, r.p50_ms, r.p99_ms)
}

/// The markdown: a row per round, the medians, the targets, and any run with errors.
pub(super) fn section(args: &Args, runs: &Runs, skipped: Option<&str>) -> Section {
    let mut t = String::from(
        "| round | degroup req/s | p50 | p99 | wasmtime serve req/s | p50 | p99 | req/s ratio | p99 ratio |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut ratios = Vec::new();
    let mut p99_ratios = Vec::new();
    let mut suspect = Vec::new();
    for (i, (d, w)) in runs.rounds.iter().enumerate() {
        let anchor = match w {
            Some(w) => {
                ratios.push(d.rps / w.rps);
                p99_ratios.push(d.p99_ms / w.p99_ms);
                format!(
                    "{} | {:.2}× | {:.2}×",
                    cells(w),
                    d.rps / w.rps,
                    d.p99_ms / w.p99_ms
                )
            }
            None => "– | – | – | – | –".to_owned(),
        };
        let _ = writeln!(t, "| {} | {} | {anchor} |", i + 1, cells(d));
        for (side, r) in [("degroup", Some(d)), ("wasmtime", w.as_ref())] {
            if let Some(r) = r.filter(|r| r.non_2xx > 0 || r.errors > 0) {
                suspect.push(format!(
                    "round {} {side}: {} non-2xx answers, {} socket errors",
                    i + 1,
                    r.non_2xx,
                    r.errors
                ));
            }
        }
    }
    let med = |f: fn(&WrkResult) -> f64, anchor: bool| {
        median(
            runs.rounds
                .iter()
                .filter_map(|(d, w)| if anchor { w.as_ref() } else { Some(d) })
                .map(f)
                .collect(),
        )
    };
    let (rps_ratio, p99_ratio) = (median(ratios.clone()), median(p99_ratios));
    let anchor_med = if ratios.is_empty() {
        "– | – | – | – | –".to_owned()
    } else {
        format!(
            "**{:.0}** | {:.2} ms | **{:.2} ms** | **{rps_ratio:.2}×** | **{p99_ratio:.2}×**",
            med(|r| r.rps, true),
            med(|r| r.p50_ms, true),
            med(|r| r.p99_ms, true)
        )
    };
    let _ = writeln!(
        t,
        "| median | **{:.0}** | {:.2} ms | **{:.2} ms** | {anchor_med} |",
        med(|r| r.rps, false),
        med(|r| r.p50_ms, false),
        med(|r| r.p99_ms, false)
    );
    let kv = &runs.kv;
    let targets = match skipped {
        Some(why) => format!("The wasmtime side was skipped: {why}.\n"),
        None => format!(
            "Targets: ≥ 1.5× `wasmtime serve`'s requests/s ({rps_ratio:.2}×: {}), p99 ≤ \
             `wasmtime serve`'s ({p99_ratio:.2}×: {}).\n",
            if rps_ratio >= 1.5 { "met" } else { "not met" },
            if p99_ratio <= 1.0 { "met" } else { "not met" }
        ),
    };
    let mut body = format!(
        "A host `degroup node --ingress` and a tenant process on 127.0.0.1. The tenant deploys \
         the anchor `http-hello` component (`wasi:http/proxy`) onto a lease of {cpu} millicores \
         with `--route {BENCH_ROUTE}`; `wasmtime serve -O pooling-allocator` \
         (wasmtime {wv}, the node's version) serves the same `.wasm` file. `wrk -t{th} -c{c} \
         -d{s}s --latency`, alternating degroup and wasmtime in each round, after a 1 s warm-up \
         of each.\n\n{t}\n{targets}\n\
         `kv-api` (`GET /kv/{KV_KEY}`, a 256-byte value, `--route {KV_ROUTE}`): **{kv_rps:.0} \
         req/s**, p50 {kv50:.2} ms, p99 {kv99:.2} ms.\n",
        cpu = args.cpu_millis,
        wv = anchor::node_wasmtime_version(),
        th = args.threads,
        c = args.connections,
        s = args.seconds,
        kv_rps = kv.rps,
        kv50 = kv.p50_ms,
        kv99 = kv.p99_ms,
    );
    if kv.non_2xx > 0 || kv.errors > 0 {
        suspect.push(format!(
            "kv-api: {} non-2xx answers, {} socket errors",
            kv.non_2xx, kv.errors
        ));
    }
    if !suspect.is_empty() {
        let _ = write!(
            body,
            "\nRuns with failed requests (their numbers are suspect): {}.\n",
            suspect.join("; ")
        );
    }
    Section {
        name: "http",
        title: "HTTP ingress vs `wasmtime serve`".to_owned(),
        command: format!(
            "./target/release/degroup-testnet bench http --rounds {} --seconds {} --threads {} \
             --connections {} --cpu-millis {}",
            args.rounds, args.seconds, args.threads, args.connections, args.cpu_millis
        ),
        body,
        plots: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rps: f64, p99_ms: f64) -> WrkResult {
        WrkResult {
            rps,
            p50_ms: p99_ms / 4.0,
            p99_ms,
            requests: 1000,
            non_2xx: 0,
            errors: 0,
        }
    }

    fn args() -> Args {
        Args {
            seconds: 10,
            rounds: 2,
            threads: 2,
            connections: 32,
            cpu_millis: 2000,
            anchor: None,
        }
    }

    #[test]
    fn the_table_has_ratios_per_round_and_their_median() {
        let runs = Runs {
            rounds: vec![
                (result(30_000.0, 2.0), Some(result(20_000.0, 4.0))),
                (result(40_000.0, 1.0), Some(result(20_000.0, 4.0))),
            ],
            kv: WrkResult {
                non_2xx: 3,
                ..result(10_000.0, 3.0)
            },
        };
        let s = section(&args(), &runs, None);
        assert!(s.body.contains(
            "| 1 | 30000 | 0.50 ms | 2.00 ms | 20000 | 1.00 ms | 4.00 ms | 1.50× | 0.50× |"
        ));
        assert!(s.body.contains("**1.50×** | **0.25×**"), "{}", s.body);
        assert!(s.body.contains("(1.50×: met)"));
        assert!(s.body.contains("kv-api: 3 non-2xx answers"));
        assert!(s.command.contains("bench http --rounds 2"));
    }

    #[test]
    fn a_skipped_anchor_says_why() {
        let runs = Runs {
            rounds: vec![(result(30_000.0, 2.0), None)],
            kv: result(10_000.0, 3.0),
        };
        let s = section(&args(), &runs, Some("wasmtime is not installed"));
        assert!(
            s.body
                .contains("| 1 | 30000 | 0.50 ms | 2.00 ms | – | – | – | – | – |")
        );
        assert!(s.body.contains("skipped: wasmtime is not installed"));
        assert!(!s.body.contains("Targets"));
    }
}
