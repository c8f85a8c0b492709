//! Discovery over 10,000 adverts, with and without `--explain`.
//!
//! `cargo bench -p degroup-node --bench query`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use degroup_node::capacity::advert::Advert;
use degroup_node::capacity::query::{find, parse};
use degroup_node::resources::{Gpu, Inventory, Prices};

const COUNTRIES: [&str; 8] = ["FR", "DE", "NL", "BE", "ES", "IT", "PL", "SE"];
const CERTS: [&str; 5] = ["SecNumCloud", "ISO27001", "C5", "HDS", "ENS"];

fn adverts(n: usize) -> Vec<Advert> {
    let now = 1_800_000_000_000u64;
    (0..n)
        .map(|i| {
            let mut host = [0u8; 32];
            host[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let gpus = if i % 7 == 0 {
                vec![Gpu {
                    model: if i % 2 == 0 {
                        "NVIDIA H100 80GB HBM3".into()
                    } else {
                        "NVIDIA L4".into()
                    },
                    mem_bytes: 80 << 30,
                }]
            } else {
                vec![]
            };
            Advert {
                host,
                seq: 1,
                issued_at_ms: now - (i as u64 % 600) * 1000,
                expires_at_ms: now + 600_000,
                addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
                total: Inventory::default(),
                free: Inventory {
                    cpu_millis: ((i % 64) as u64 + 1) * 1000,
                    mem_bytes: (((i % 32) as u64) + 1) * (8 << 30),
                    disk_bytes: ((i % 10) as u64 + 1) << 40,
                    gpus,
                },
                bandwidth_bps: 10_000_000_000,
                country: COUNTRIES[i % COUNTRIES.len()].into(),
                region: format!("region-{}", i % 13),
                operator: format!("Operator {} SAS", i % 97),
                certs: vec![
                    CERTS[i % CERTS.len()].into(),
                    CERTS[(i / 5) % CERTS.len()].into(),
                ],
                prices: Prices {
                    cpu: 10_000 + (i as u64 % 50) * 1000,
                    mem: 4_000,
                    disk: 100,
                    gpu: 2_000_000,
                },
                plugin_apis: vec![],
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let all = adverts(10_000);
    let now = 1_800_000_000_000u64;
    let text = "cpu>=8 mem>=32GiB country=FR cert=SecNumCloud";
    let query = match parse(text) {
        Ok(q) => q,
        Err(e) => panic!("{e}"),
    };
    let labels: Vec<String> = all.iter().map(|a| hex::encode(a.host)).collect();
    let items = || all.iter().zip(labels.iter().map(String::as_str));
    // Tail latency, which criterion's mean does not show: 300 runs, nearest-rank quantiles.
    let mut samples: Vec<f64> = (0..300)
        .map(|_| {
            let t = std::time::Instant::now();
            black_box(find(&query, text, items(), now, None, true));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let q =
        |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    eprintln!(
        "find over 10,000 adverts with explain: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        q(0.5),
        q(0.99),
        q(1.0)
    );
    let mut group = c.benchmark_group("find_10k_adverts");
    group.bench_function("explain", |b| {
        b.iter(|| black_box(find(&query, text, items(), now, None, true)))
    });
    group.bench_function("no_explain", |b| {
        b.iter(|| black_box(find(&query, text, items(), now, None, false)))
    });
    group.bench_function("parse_only", |b| b.iter(|| black_box(parse(text))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
