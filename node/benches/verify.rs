//! Advert signature checks: one by one (`verify_strict`, what gossip does per message) against
//! batch verification (what the late-joiner sync does per page), through the same code the node
//! runs (`AdvertBook::offer` / `offer_batch`) and on the bare signatures.
//!
//! `cargo bench -p degroup-node --bench verify`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use degroup_node::capacity::AdvertBook;
use degroup_node::capacity::advert::Advert;
use degroup_node::resources::{Inventory, Prices, now_ms};
use degroup_node::signed::Envelope;
use degroup_node::store::Store;
use ed25519_dalek::SigningKey;

const N: usize = 256;

fn adverts(seq: u64) -> Vec<Vec<u8>> {
    let now = now_ms();
    (0..N)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            let key = SigningKey::from_bytes(&seed);
            let a = Advert {
                host: key.verifying_key().to_bytes(),
                seq,
                issued_at_ms: now,
                expires_at_ms: now + 600_000,
                addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
                total: Inventory {
                    cpu_millis: 64_000,
                    mem_bytes: 256 << 30,
                    disk_bytes: 4 << 40,
                    gpus: vec![],
                },
                free: Inventory {
                    cpu_millis: 32_000,
                    mem_bytes: 128 << 30,
                    disk_bytes: 2 << 40,
                    gpus: vec![],
                },
                bandwidth_bps: 10_000_000_000,
                country: "FR".into(),
                region: "Île-de-France".into(),
                operator: "Bench Hosting SAS".into(),
                certs: vec!["SecNumCloud".into(), "ISO27001".into()],
                prices: Prices {
                    cpu: 20_000,
                    mem: 4_000,
                    disk: 100,
                    gpu: 0,
                },
                plugin_apis: vec!["degroup:plugin@0.1.0".into()],
            };
            Envelope::seal_kind(&key, &a)
                .map(|e| e.to_bytes())
                .unwrap_or_default()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("advert_verify");
    group.throughput(Throughput::Elements(N as u64));
    let dir = std::env::temp_dir().join(format!("degroup-bench-verify-{}", std::process::id()));
    let store = match Store::open(&dir) {
        Ok(s) => s,
        Err(e) => panic!("store: {e}"),
    };
    let now = now_ms();
    let book = AdvertBook::open(&store, now).unwrap_or_else(|e| panic!("{e}"));
    // Every iteration offers newer adverts, so each one is verified, checked and stored.
    let mut seq = 0;
    group.bench_function(BenchmarkId::new("book_offer_one_by_one", N), |b| {
        b.iter_batched(
            || {
                seq += 1;
                adverts(seq)
            },
            |items| {
                for i in &items {
                    black_box(book.offer(i, now));
                }
            },
            criterion::BatchSize::LargeInput,
        );
    });
    group.bench_function(BenchmarkId::new("book_offer_batch", N), |b| {
        b.iter_batched(
            || {
                seq += 1;
                adverts(seq)
            },
            |items| {
                for page in items.chunks(64) {
                    black_box(book.offer_batch(page, now));
                }
            },
            criterion::BatchSize::LargeInput,
        );
    });
    let items = adverts(1);
    let opened: Vec<Envelope> = items
        .iter()
        .filter_map(|b| Envelope::decode(b, 1 << 16).ok())
        .collect();
    group.bench_function(BenchmarkId::new("verify_strict", N), |b| {
        b.iter(|| {
            for e in &opened {
                black_box(e.verify("degroup/advert/v1").is_ok());
            }
        });
    });
    let unverified: Vec<_> = items
        .iter()
        .map(|b| degroup_node::capacity::book::decode_unverified(b))
        .collect();
    group.bench_function(BenchmarkId::new("batch_of_64_one_core", N), |b| {
        b.iter(|| {
            for page in unverified.chunks(64) {
                black_box(degroup_node::capacity::book::batch_verify(
                    page.iter().flatten(),
                ));
            }
        });
    });
    group.bench_function(BenchmarkId::new("batch_of_64_all_cores", N), |b| {
        b.iter(|| {
            for page in unverified.chunks(64) {
                black_box(degroup_node::capacity::book::parallel_batch_verify(page));
            }
        });
    });
    group.bench_function(BenchmarkId::new("verify_strict_all_cores", N), |b| {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        b.iter(|| {
            std::thread::scope(|scope| {
                for part in opened.chunks(opened.len().div_ceil(threads)) {
                    scope.spawn(move || {
                        for e in part {
                            black_box(e.verify("degroup/advert/v1").is_ok());
                        }
                    });
                }
            });
        });
    });
    group.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
