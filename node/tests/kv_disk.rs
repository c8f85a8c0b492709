//! What a hostile plugin's key-value writes cost on disk: a 1 MiB value rewritten in a loop
//! under a 4 MiB quota, as fast as the store lets it, for `KV_DISK_SECS` seconds (default 3;
//! the sled store this replaced left ~1 GiB of blob files after 2.4 s, kept after the tree was
//! dropped and after a restart). Prints `du -sb` (apparent bytes) and allocated bytes of the
//! data directory, and checks the store's file stays within its bounds and goes on removal.
//!
//! Longer run: `KV_DISK_SECS=60 cargo nextest run -p degroup-node --test kv_disk --no-capture`.
//! The same loop without the bandwidth limit is the unit test `plugin::kv::tests::
//! rewrite_loop_unpaced` (same variable).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use degroup_node::plugin::kv::{Kv, KvError, MAX_VALUE, disk_bound};
use degroup_node::store::Store;

/// Apparent and allocated bytes under `p`, like `du -sb` and `du -s -B1`.
fn du(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::symlink_metadata(p).unwrap();
    let mut sum = (m.len(), m.blocks() * 512);
    if m.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            let (a, b) = du(&e.unwrap().path());
            sum = (sum.0 + a, sum.1 + b);
        }
    }
    sum
}

#[test]
fn rewriting_one_mib_under_a_four_mib_quota_stays_bounded() {
    let secs: u64 = std::env::var("KV_DISK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let quota = 4u64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kv = Kv::open(&store, "hostile", quota).unwrap();
    let mut value = vec![0x5a; MAX_VALUE];
    let start = Instant::now();
    let (mut ok, mut paced) = (0u64, 0u64);
    while start.elapsed() < Duration::from_secs(secs) {
        value[..8].copy_from_slice(&(ok + paced).to_be_bytes());
        match kv.set("v", &value) {
            Ok(()) => ok += 1,
            Err(KvError::Storage(m)) if m.contains("write bandwidth") => {
                paced += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{e}"),
        }
        let (len, allocated) = kv.disk_usage();
        assert!(allocated <= disk_bound(quota), "{allocated}");
        assert!(len <= 2 * disk_bound(quota), "{len}");
    }
    let (len, allocated) = kv.disk_usage();
    let (dir_b, dir_alloc) = du(dir.path());
    println!(
        "{secs}s: {ok} writes taken, {paced} refused by the bandwidth limit; store file: length \
         {len}, allocated {allocated} (bound {}); data dir: du -sb {dir_b}, allocated {dir_alloc}",
        disk_bound(quota)
    );
    let path = kv.path();
    drop(kv);
    assert!(Kv::remove(&store, "hostile").unwrap());
    assert!(!path.exists());
    let (after_b, after_alloc) = du(dir.path());
    println!("after removal: du -sb {after_b}, allocated {after_alloc}");
    assert!(after_alloc < dir_alloc);
}
