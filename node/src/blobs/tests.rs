#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio_util::sync::CancellationToken;

use super::fetch::{VerifyError, verify_response};
use super::store::{Dir, groups_of};
use super::*;
use crate::identity::Identity;
use crate::net::{NetParams, NetworkBuilder};

/// Deterministic, incompressible-looking bytes.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = *blake3::hash(&[seed]).as_bytes();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = *blake3::hash(&block).as_bytes();
    }
    out.truncate(len);
    out
}

struct Node {
    blobs: Blobs,
    net: Network,
    metrics: NodeMetrics,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
    inbound: Option<Inbound<BlobProtocol>>,
}

impl Node {
    async fn addr(&self) -> Multiaddr {
        self.net.wait_listening().await.unwrap();
        let addr = self.net.status().await.unwrap().listen_addrs[0].clone();
        addr.with(libp2p::multiaddr::Protocol::P2p(self.net.local_peer_id()))
    }

    fn peer(&self) -> PeerId {
        self.net.local_peer_id()
    }

    /// Starts serving with the real server.
    fn serve(&mut self) {
        let inbound = self.inbound.take().unwrap();
        tokio::spawn(self.blobs.clone().serve(inbound, self.shutdown.clone()));
    }
}

fn start_net(shutdown: &CancellationToken) -> (Network, NodeMetrics, Inbound<BlobProtocol>) {
    let identity = Identity::generate().unwrap();
    let mut builder: NetworkBuilder = Network::builder(
        &identity,
        NetParams {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..Default::default()
        },
    );
    let inbound = builder.serve::<BlobProtocol>().unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = NodeMetrics::register(&mut registry);
    let (net, _task) = builder
        .start(&mut registry, metrics.clone(), shutdown.clone())
        .unwrap();
    (net, metrics, inbound)
}

fn node(limits: BlobLimits) -> Node {
    let shutdown = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let (net, metrics, inbound) = start_net(&shutdown);
    let store = Store::open(dir.path()).unwrap();
    let blobs = Blobs::open(dir.path(), &store, limits, net.clone(), metrics.clone()).unwrap();
    Node {
        blobs,
        net,
        metrics,
        shutdown,
        dir,
        inbound: Some(inbound),
    }
}

fn small_limits() -> BlobLimits {
    BlobLimits {
        max_package: 8 << 20,
        quota: 64 << 20,
        ..Default::default()
    }
}

async fn connect(from: &Node, to: &Node) {
    from.net.dial(to.addr().await).await.unwrap();
    for _ in 0..200 {
        if from
            .net
            .status()
            .await
            .unwrap()
            .connected_peers
            .contains(&to.peer())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no connection");
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(BLOBS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn private(peers: &[&str]) -> Visibility {
    Visibility::Private {
        peers: peers.iter().map(|p| (*p).to_owned()).collect(),
    }
}

#[tokio::test]
async fn add_read_round_trip_and_a_second_add_writes_nothing() {
    let n = node(small_limits());
    let data = bytes(100_000, 1);
    let hash = n.blobs.add(data.clone(), private(&["a"])).await.unwrap();
    assert_eq!(hash, *blake3::hash(&data).as_bytes());
    assert_eq!(n.blobs.read(&hash).await.unwrap(), data);
    let hex = hex::encode(hash);
    assert_eq!(
        files(n.dir.path()),
        vec![hex.clone(), format!("{hex}.obao")]
    );
    let data_file = n.dir.path().join(BLOBS_DIR).join(&hex);
    let modified = std::fs::metadata(&data_file).unwrap().modified().unwrap();

    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        n.blobs.add(data.clone(), private(&["b"])).await.unwrap(),
        hash
    );
    assert_eq!(
        std::fs::metadata(&data_file).unwrap().modified().unwrap(),
        modified,
        "nothing rewritten"
    );
    assert_eq!(
        n.blobs.info(&hash).unwrap().visibility,
        private(&["a", "b"])
    );
    n.blobs.add(data.clone(), Visibility::Public).await.unwrap();
    assert_eq!(n.blobs.info(&hash).unwrap().visibility, Visibility::Public);
    n.blobs.add(data, private(&["c"])).await.unwrap();
    assert_eq!(
        n.blobs.info(&hash).unwrap().visibility,
        Visibility::Public,
        "public wins"
    );
    assert_eq!(n.blobs.list().len(), 1);
    assert!(matches!(
        n.blobs.read(&[9; 32]).await,
        Err(BlobError::NotFound { .. })
    ));
}

#[tokio::test]
async fn reopen_finds_blobs_keeps_holds_and_removes_part_files() {
    let shutdown = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let (net, metrics, _inbound) = start_net(&shutdown);
    let data = bytes(40_000, 2);
    let hash = {
        let store = Store::open(dir.path()).unwrap();
        let blobs = Blobs::open(
            dir.path(),
            &store,
            small_limits(),
            net.clone(),
            metrics.clone(),
        )
        .unwrap();
        let hash = blobs.add(data.clone(), Visibility::Public).await.unwrap();
        blobs.hold(&hash, "pin").unwrap();
        blobs.hold(&hash, "pin").unwrap();
        blobs.hold(&hash, "dep:1").unwrap();
        blobs.release(&hash, "dep:1").unwrap();
        hash
    };
    let blob_dir = dir.path().join(BLOBS_DIR);
    std::fs::write(
        blob_dir.join(format!("{}.7.part", hex::encode([1u8; 32]))),
        b"x",
    )
    .unwrap();
    // A file without metadata (a crash between the rename and the metadata) goes too.
    std::fs::write(blob_dir.join(hex::encode([2u8; 32])), b"y").unwrap();
    let store = Store::open(dir.path()).unwrap();
    let blobs = Blobs::open(dir.path(), &store, small_limits(), net, metrics).unwrap();
    assert!(blobs.has(&hash));
    assert_eq!(blobs.info(&hash).unwrap().holds, vec!["pin".to_owned()]);
    assert_eq!(blobs.read(&hash).await.unwrap(), data);
    let hex = hex::encode(hash);
    assert_eq!(files(dir.path()), vec![hex.clone(), format!("{hex}.obao")]);
}

#[tokio::test]
async fn size_and_quota_are_refused_clearly() {
    let n = node(BlobLimits {
        max_package: 200_000,
        quota: 300_000,
        ..Default::default()
    });
    let err = n
        .blobs
        .add(bytes(200_001, 3), Visibility::Public)
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::TooLarge { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::BadInput);
    let a = n
        .blobs
        .add(bytes(200_000, 4), Visibility::Public)
        .await
        .unwrap();
    let err = n
        .blobs
        .add(bytes(200_000, 5), Visibility::Public)
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::Quota { .. }), "{err}");
    assert!(err.to_string().contains("blobs.quota"), "{err}");
    // Past its grace, the unheld blob is collected to make room.
    let n2 = node(BlobLimits {
        max_package: 200_000,
        quota: 300_000,
        gc_grace: Duration::ZERO,
        ..Default::default()
    });
    n2.blobs
        .add(bytes(200_000, 4), Visibility::Public)
        .await
        .unwrap();
    n2.blobs
        .add(bytes(200_000, 5), Visibility::Public)
        .await
        .unwrap();
    assert!(!n2.blobs.has(&a));
}

#[tokio::test]
async fn gc_deletes_only_unheld_blobs_past_their_grace() {
    let n = node(small_limits());
    let a = n
        .blobs
        .add(bytes(1000, 6), Visibility::Public)
        .await
        .unwrap();
    let b = n
        .blobs
        .add(bytes(1000, 7), Visibility::Public)
        .await
        .unwrap();
    n.blobs.hold(&a, "pin").unwrap();
    let now = now_ms();
    assert_eq!(n.blobs.gc_now(now).unwrap(), 0, "within the grace");
    let later = now + 2 * 3600 * 1000;
    assert_eq!(n.blobs.gc_now(later).unwrap(), 1);
    assert!(n.blobs.has(&a) && !n.blobs.has(&b));
    assert_eq!(files(n.dir.path()).len(), 2);
    n.blobs.release(&a, "pin").unwrap();
    assert_eq!(
        n.blobs.gc_now(now_ms()).unwrap(),
        0,
        "the grace restarts at release"
    );
    assert_eq!(n.blobs.gc_now(later + 3600 * 1000).unwrap(), 1);
    assert!(files(n.dir.path()).is_empty());
    assert!(n.blobs.hold(&a, "pin").is_err(), "gone");
}

#[tokio::test]
async fn a_stored_range_round_trips_and_a_flipped_byte_is_caught_before_writing() {
    let n = node(small_limits());
    let size = (1 << 20) + 5000;
    let data = bytes(size, 8);
    let hash = n.blobs.add(data.clone(), Visibility::Public).await.unwrap();
    let dir = &n.blobs.inner.dir;
    let (first, count) = (3u64, 7u64);
    let encoded = dir.encode(&hash, size as u64, first, count).unwrap();
    let mut got = Vec::new();
    let v = verify_response(&hash, size as u64, first, count, &encoded, |off, d| {
        got.push((off, d.to_vec()));
        Ok(())
    });
    assert!(v.error.is_none());
    assert_eq!(v.groups, (first..first + count).collect::<Vec<_>>());
    for (off, d) in &got {
        let off = *off as usize;
        assert_eq!(&data[off..off + d.len()], d.as_slice());
    }
    // The last group (shorter) verifies too, and proves the size: not under another size.
    let last = groups_of(size as u64) - 1;
    let tail = dir.encode(&hash, size as u64, last, 1).unwrap();
    assert!(
        verify_response(&hash, size as u64, last, 1, &tail, |_, _| Ok(()))
            .error
            .is_none()
    );
    let wrong = verify_response(&hash, size as u64 + 1, last, 1, &tail, |_, _| Ok(()));
    assert!(matches!(wrong.error, Some(VerifyError::Bad(_))));

    // Flip a byte in the last group's data: the groups before are written, that one never.
    let part_dir = Dir::new(n.dir.path().join("parts"));
    part_dir.open().unwrap();
    let file = part_dir.create_part(&hash, "t", size as u64).unwrap();
    let mut bad = encoded.clone();
    *bad.last_mut().unwrap() ^= 1;
    let v = verify_response(&hash, size as u64, first, count, &bad, |off, d| {
        std::os::unix::fs::FileExt::write_all_at(&file, d, off)
    });
    assert!(matches!(v.error, Some(VerifyError::Bad(_))));
    assert_eq!(v.groups, (first..first + count - 1).collect::<Vec<_>>());
    let written = std::fs::read(part_dir.part(&hash, "t")).unwrap();
    let g = |i: u64| (i as usize * CHUNK_GROUP)..((i as usize + 1) * CHUNK_GROUP);
    assert_eq!(&written[g(first)], &data[g(first)]);
    assert!(
        written[g(first + count - 1)].iter().all(|b| *b == 0),
        "the bad group is not in the part file"
    );
    // A flip in the first group's leaf (right after the parents) stops everything.
    let parents = encoded.len() - count as usize * CHUNK_GROUP;
    let mut bad = encoded.clone();
    bad[parents.min(encoded.len() - 1)] ^= 1;
    let v = verify_response(&hash, size as u64, first, count, &bad, |_, _| Ok(()));
    assert!(v.error.is_some());
    assert!(v.groups.len() < count as usize);
    // Truncated or padded responses are refused.
    let v = verify_response(&hash, size as u64, first, count, &encoded[..100], |_, _| {
        Ok(())
    });
    assert!(v.error.is_some());
    let mut padded = encoded;
    padded.push(0);
    let v = verify_response(&hash, size as u64, first, count, &padded, |_, _| Ok(()));
    assert!(v.error.is_some());
}

#[tokio::test]
async fn a_corrupt_disk_is_an_error_and_never_served() {
    let n = node(small_limits());
    let data = bytes(50_000, 9);
    let hash = n.blobs.add(data, Visibility::Public).await.unwrap();
    let path = n.dir.path().join(BLOBS_DIR).join(hex::encode(hash));
    let mut on_disk = std::fs::read(&path).unwrap();
    on_disk[20_000] ^= 0xff;
    std::fs::write(&path, on_disk).unwrap();
    let err = n.blobs.read(&hash).await.unwrap_err();
    assert!(matches!(err, BlobError::DiskCorrupt { .. }), "{err}");
    assert!(n.blobs.inner.dir.encode(&hash, 50_000, 1, 1).is_err());
    assert!(
        n.blobs.inner.dir.encode(&hash, 50_000, 0, 1).is_ok(),
        "other groups are fine"
    );
}

/// Answers `answers` requests with the real server logic, then takes the whole node off the
/// network: a provider that disappears mid-transfer.
fn serve_then_vanish(node: &mut Node, answers: usize) {
    let mut inbound = node.inbound.take().unwrap();
    let blobs = node.blobs.clone();
    let shutdown = node.shutdown.clone();
    tokio::spawn(async move {
        let peers = std::sync::Mutex::new(serve::Peers::new(8, 1 << 30));
        for _ in 0..answers {
            let Some(r) = inbound.recv().await else {
                return;
            };
            lock(&peers).admit(r.peer, tokio::time::Instant::now());
            serve::answer(&blobs, r, &peers).await;
        }
        shutdown.cancel();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_from_honest_corrupt_and_vanishing_providers() {
    let size = 3 * (1 << 20) + 12_345;
    let data = bytes(size, 10);
    let mut honest = node(small_limits());
    let mut corrupt = node(small_limits());
    let mut vanishing = node(small_limits());
    let client = node(small_limits());
    let hash = honest
        .blobs
        .add(data.clone(), Visibility::Public)
        .await
        .unwrap();
    corrupt
        .blobs
        .add(data.clone(), Visibility::Public)
        .await
        .unwrap();
    vanishing
        .blobs
        .add(data.clone(), Visibility::Public)
        .await
        .unwrap();
    corrupt.blobs.set_corrupt_replies(true);
    honest.serve();
    corrupt.serve();
    serve_then_vanish(&mut vanishing, 3);
    for p in [&honest, &corrupt, &vanishing] {
        connect(&client, p).await;
    }
    let (tx, rx) = watch::channel((0, 0));
    let hints = vec![corrupt.peer(), vanishing.peer(), honest.peer()];
    let (first, second) = tokio::join!(
        client.blobs.fetch(
            hash,
            None,
            hints.clone(),
            Visibility::Private { peers: vec![] },
            Some(tx)
        ),
        client
            .blobs
            .fetch(hash, Some(size as u64), hints, Visibility::Public, None),
    );
    let fetched = first.unwrap();
    assert_eq!(second.unwrap(), fetched, "one shared transfer");
    assert_eq!(fetched.size, size as u64);
    assert!(!fetched.cached);
    assert!(fetched.bytes_moved >= size as u64);
    assert_eq!(fetched.bad_providers, vec![corrupt.peer().to_string()]);
    assert!(fetched.providers.contains(&honest.peer().to_string()));
    assert_eq!(*rx.borrow(), (size as u64, size as u64));
    assert_eq!(client.blobs.read(&hash).await.unwrap(), data);
    assert_eq!(
        client.blobs.info(&hash).unwrap().visibility,
        Visibility::Public,
        "both callers' visibilities"
    );
    assert!(client.metrics.blob_bad_chunks.get() >= 1);
    assert!(client.metrics.blob_providers_penalised.get() >= 1);
    assert!(honest.metrics.blob_bytes_served.get() > 0);
    assert!(client.blobs.progress(&hash).is_none());
    assert!(
        files(client.dir.path())
            .iter()
            .all(|f| !f.ends_with(".part"))
    );

    // Again: nothing moves.
    let again = client
        .blobs
        .fetch(hash, None, vec![honest.peer()], Visibility::Public, None)
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(again.bytes_moved, 0);

    // Only corrupt providers: Corrupt, and nothing left behind.
    let other = bytes(100_000, 11);
    let other_hash = corrupt.blobs.add(other, Visibility::Public).await.unwrap();
    let err = client
        .blobs
        .fetch(
            other_hash,
            None,
            vec![corrupt.peer()],
            Visibility::Public,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::Corrupt { .. }), "{err}");
    assert!(!client.blobs.has(&other_hash));
    assert!(
        files(client.dir.path())
            .iter()
            .all(|f| !f.ends_with(".part"))
    );

    // A wrong size from the caller is not blamed on an honest provider.
    let small = honest
        .blobs
        .add(bytes(50_000, 14), Visibility::Public)
        .await
        .unwrap();
    let err = client
        .blobs
        .fetch(
            small,
            Some(40_000),
            vec![honest.peer()],
            Visibility::Public,
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not the 40000 given"), "{err}");
    assert!(!client.blobs.is_penalised(&honest.peer()));

    // Nobody has it: NoProvider, naming who was tried.
    let err = client
        .blobs
        .fetch([7; 32], None, vec![honest.peer()], Visibility::Public, None)
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::NoProvider { .. }), "{err}");
    assert!(
        err.to_string().contains(&honest.peer().to_string()),
        "{err}"
    );
    assert_eq!(err.code(), ErrorCode::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_blobs_are_served_to_allowed_peers_and_public_ones_found_in_the_dht() {
    let mut provider = node(small_limits());
    let client = node(small_limits());
    let stranger = node(small_limits());
    let secret = bytes(70_000, 12);
    let hash = provider
        .blobs
        .add(secret.clone(), Visibility::Private { peers: vec![] })
        .await
        .unwrap();
    let public = provider
        .blobs
        .add(bytes(30_000, 13), Visibility::Public)
        .await
        .unwrap();
    provider.serve();
    connect(&client, &provider).await;
    connect(&stranger, &provider).await;
    let err = client
        .blobs
        .fetch(hash, None, vec![provider.peer()], Visibility::Public, None)
        .await
        .unwrap_err();
    // Refused as if it were not there: a peer not allowed does not learn that it is.
    assert!(err.to_string().contains("NotFound"), "{err}");
    provider.blobs.allow(&hash, &client.peer()).unwrap();
    // Kept private by the client too: not announced, so the stranger finds nobody else.
    let got = client
        .blobs
        .fetch(hash, None, vec![provider.peer()], private(&[]), None)
        .await
        .unwrap();
    assert_eq!(got.size, secret.len() as u64);
    assert!(
        stranger
            .blobs
            .fetch(hash, None, vec![provider.peer()], Visibility::Public, None)
            .await
            .is_err()
    );
    assert!(!stranger.blobs.has(&hash));
    // No hints: the provider is found through its Kademlia provider record.
    let mut found = None;
    for _ in 0..10 {
        match client
            .blobs
            .fetch(public, None, vec![], Visibility::Public, None)
            .await
        {
            Ok(f) => {
                found = Some(f);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let found = found.expect("found through the DHT");
    assert_eq!(found.providers, vec![provider.peer().to_string()]);
}
