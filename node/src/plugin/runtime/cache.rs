//! The caches of compiled components: on disk and in memory, both bounded in bytes, least
//! recently used first out.
//!
//! A disk cache file is `<dir>/<key>.cwasm`, where the key is blake3 of the component's hash
//! and the engine's compatibility hash (wasmtime version, target and settings): a new wasmtime
//! or a changed setting simply misses. The file holds blake3 of the artifact followed by the
//! artifact; it is written to a temporary name and renamed, and the checksum is verified before
//! the artifact is handed to wasmtime, so a torn or corrupted file is recompiled, not loaded.
//! A hit sets the file's modification time to now; when the files add up to more than
//! `plugin.compile_cache_bytes`, the oldest go. The total is counted by scanning the directory
//! when the node starts (leftover temporary files are removed then).
//!
//! The memory cache holds linked components ([`super::Compiled`]) up to
//! `plugin.compile_memory_cache_bytes`, each counted as the length of its compiled image (what
//! `serialize` would write).

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::{SandboxError, werr};

/// Largest cache file read back.
const MAX_ARTIFACT: u64 = 512 * 1024 * 1024;
/// The checksum before the artifact.
const SUM: u64 = 32;

struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let bytes = self.0.finalize();
        u64::from_le_bytes(bytes.as_bytes()[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The cache key of a component for this engine.
pub(super) fn key(engine: &Engine, wasm_hash: &[u8; 32]) -> String {
    let mut h = Blake3Hasher(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.update(wasm_hash);
    h.0.finalize().to_hex().to_string()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The on-disk cache of compiled components.
#[derive(Debug)]
pub(super) struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes of the cache files, as counted at start and kept since.
    used: Mutex<u64>,
}

impl DiskCache {
    /// Opens (creates) the cache directory, counts what it holds and evicts past `max_bytes`.
    pub(super) fn open(dir: PathBuf, max_bytes: u64) -> Result<Self, SandboxError> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            SandboxError::Engine(format!("cannot create cache dir {}: {e}", dir.display()))
        })?;
        let cache = Self {
            dir,
            max_bytes,
            used: Mutex::new(0),
        };
        for entry in std::fs::read_dir(&cache.dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            let stray = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.starts_with("tmp"));
            if stray {
                let _ = std::fs::remove_file(&path);
            }
        }
        cache.evict(true);
        Ok(cache)
    }

    /// Bytes the cache files hold now.
    pub(super) fn used(&self) -> u64 {
        *lock(&self.used)
    }

    fn path(&self, engine: &Engine, wasm_hash: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.cwasm", key(engine, wasm_hash)))
    }

    /// The compiled component from the cache (marked as just used), with its artifact's
    /// length.
    pub(super) fn load(&self, engine: &Engine, wasm_hash: &[u8; 32]) -> Option<(Component, u64)> {
        let path = self.path(engine, wasm_hash);
        let meta = std::fs::metadata(&path).ok()?;
        if meta.len() > MAX_ARTIFACT + SUM || meta.len() < SUM {
            self.remove(&path);
            return None;
        }
        let bytes = std::fs::read(&path).ok()?;
        let (sum, artifact) = bytes.split_at(SUM as usize);
        if blake3::hash(artifact).as_bytes() != sum {
            tracing::warn!(path = %path.display(), "compile cache entry is corrupt; recompiling");
            self.remove(&path);
            return None;
        }
        // SAFETY: wasmtime requires that deserialized bytes come from `Component::serialize` of
        // a compatible engine. This file was written by this node (in its own 0700 data
        // directory) from `serialize` (in this process, or in its compile child, which runs
        // this same binary), its name includes the engine's compatibility hash, and its
        // checksum was just verified, so these are exactly the bytes that were written.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, artifact) };
        match loaded {
            Ok(c) => {
                touch(&path);
                Some((c, artifact.len() as u64))
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %werr(&e), "compile cache entry unusable; recompiling");
                self.remove(&path);
                None
            }
        }
    }

    /// Writes an artifact to the cache, then evicts the least recently used entries past the
    /// bound. An artifact larger than the whole bound is not written.
    pub(super) fn store(&self, engine: &Engine, wasm_hash: &[u8; 32], artifact: &[u8]) {
        let size = artifact.len() as u64 + SUM;
        if size > self.max_bytes {
            tracing::debug!(
                size,
                max = self.max_bytes,
                "artifact larger than the compile cache"
            );
            return;
        }
        let path = self.path(engine, wasm_hash);
        let old = std::fs::metadata(&path).map_or(0, |m| m.len());
        match write(&path, artifact) {
            Ok(()) => {
                {
                    let mut used = lock(&self.used);
                    *used = used.saturating_sub(old).saturating_add(size);
                }
                self.evict(false);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache");
            }
        }
    }

    fn remove(&self, path: &Path) {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if std::fs::remove_file(path).is_ok() {
            let mut used = lock(&self.used);
            *used = used.saturating_sub(len);
        }
    }

    /// When the files do not fit in the bound (or with `scan`): counts them and removes the
    /// least recently used until they do.
    fn evict(&self, scan: bool) {
        let budget = self.max_bytes;
        let mut used = lock(&self.used);
        if !scan && *used <= budget {
            return;
        }
        let mut files: Vec<(SystemTime, PathBuf, u64)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                if path.extension().and_then(|x| x.to_str()) != Some("cwasm") {
                    return None;
                }
                let meta = e.metadata().ok()?;
                let at = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                Some((at, path, meta.len()))
            })
            .collect();
        files.sort();
        let mut total: u64 = files.iter().map(|f| f.2).sum();
        for (_, path, len) in files {
            if total <= budget {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    total = total.saturating_sub(len);
                    tracing::debug!(path = %path.display(), len, "compile cache entry evicted");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot evict a compile cache entry");
                }
            }
        }
        *used = total;
    }
}

/// Marks a cache file as just used.
fn touch(path: &Path) {
    let now = SystemTime::now();
    let done = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(now));
    if let Err(e) = done {
        tracing::debug!(path = %path.display(), error = %e, "cannot touch a compile cache entry");
    }
}

fn write(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(blake3::hash(artifact).as_bytes())?;
    f.write_all(artifact)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Compiled components in memory, bounded in bytes, least recently used first out.
#[derive(Debug)]
pub(super) struct MemoryCache<V> {
    max_bytes: u64,
    used: u64,
    clock: u64,
    slots: HashMap<[u8; 32], Slot<V>>,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    bytes: u64,
    used_at: u64,
}

impl<V: Clone> MemoryCache<V> {
    pub(super) fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            used: 0,
            clock: 0,
            slots: HashMap::new(),
        }
    }

    /// The value under `key`, marked as just used.
    pub(super) fn get(&mut self, key: &[u8; 32]) -> Option<V> {
        self.clock += 1;
        let slot = self.slots.get_mut(key)?;
        slot.used_at = self.clock;
        Some(slot.value.clone())
    }

    /// Keeps `value` (of `bytes`), evicting the least recently used past the bound. A value
    /// larger than the whole bound is not kept.
    pub(super) fn insert(&mut self, key: [u8; 32], value: V, bytes: u64) {
        if let Some(old) = self.slots.remove(&key) {
            self.used -= old.bytes;
        }
        if bytes > self.max_bytes {
            return;
        }
        while self.used + bytes > self.max_bytes {
            let Some(oldest) = self
                .slots
                .iter()
                .min_by_key(|(_, s)| s.used_at)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(s) = self.slots.remove(&oldest) {
                self.used -= s.bytes;
            }
        }
        self.clock += 1;
        self.used += bytes;
        self.slots.insert(
            key,
            Slot {
                value,
                bytes,
                used_at: self.clock,
            },
        );
    }

    /// Bytes held.
    pub(super) fn used(&self) -> u64 {
        self.used
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cache_evicts_least_recently_used_by_bytes() {
        let mut c = MemoryCache::new(100);
        c.insert([1; 32], "a", 40);
        c.insert([2; 32], "b", 40);
        assert_eq!(c.get(&[1; 32]), Some("a"));
        // 40 + 40 + 30 > 100: "b", the least recently used, goes.
        c.insert([3; 32], "c", 30);
        assert_eq!(c.get(&[2; 32]), None);
        assert_eq!(c.get(&[1; 32]), Some("a"));
        assert_eq!(c.get(&[3; 32]), Some("c"));
        assert_eq!(c.used(), 70);
        // One big entry pushes out both.
        c.insert([4; 32], "d", 90);
        assert_eq!((c.len(), c.used()), (1, 90));
        // Larger than the whole cache: not kept, nothing else lost.
        c.insert([5; 32], "e", 101);
        assert_eq!(c.get(&[5; 32]), None);
        assert_eq!(c.get(&[4; 32]), Some("d"));
        // The same key again replaces, not adds.
        c.insert([4; 32], "d2", 50);
        assert_eq!((c.len(), c.used()), (1, 50));
    }

    type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

    fn component(engine: &Engine, n: u32) -> Result<(Vec<u8>, [u8; 32])> {
        let wat = format!(
            "(component (core module (func (export \"f{n}\") (result i32) i32.const {n})))"
        );
        let wasm = wat::parse_str(&wat)?;
        let artifact = Component::new(engine, &wasm)?.serialize()?;
        Ok((artifact, *blake3::hash(&wasm).as_bytes()))
    }

    #[test]
    fn disk_cache_evicts_least_recently_used_by_bytes_and_counts_at_start() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("cache");
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let parts = (0..3)
            .map(|n| component(&engine, n))
            .collect::<Result<Vec<_>>>()?;
        let size = parts[0].0.len() as u64 + SUM;
        // Room for two and a half entries.
        let cache = DiskCache::open(dir.clone(), size * 5 / 2)?;
        let pause = || std::thread::sleep(std::time::Duration::from_millis(20));
        cache.store(&engine, &parts[0].1, &parts[0].0);
        pause();
        cache.store(&engine, &parts[1].1, &parts[1].0);
        pause();
        assert_eq!(cache.used(), 2 * size);
        // A hit makes entry 0 the most recently used; storing entry 2 evicts entry 1.
        assert!(cache.load(&engine, &parts[0].1).is_some());
        pause();
        cache.store(&engine, &parts[2].1, &parts[2].0);
        assert!(cache.load(&engine, &parts[1].1).is_none(), "1 was evicted");
        assert!(cache.load(&engine, &parts[0].1).is_some());
        assert!(cache.load(&engine, &parts[2].1).is_some());
        assert_eq!(cache.used(), 2 * size);
        // A leftover temporary file is removed at start; a smaller bound evicts down to it,
        // keeping the most recently used.
        std::fs::write(dir.join("x.tmp123"), b"torn")?;
        pause();
        assert!(cache.load(&engine, &parts[2].1).is_some());
        drop(cache);
        let cache = DiskCache::open(dir.clone(), size)?;
        assert_eq!(cache.used(), size);
        assert!(!dir.join("x.tmp123").exists());
        assert!(cache.load(&engine, &parts[2].1).is_some());
        assert!(cache.load(&engine, &parts[0].1).is_none());
        // Reopened with room, it counts what is there.
        drop(cache);
        assert_eq!(DiskCache::open(dir, 10 * size)?.used(), size);
        Ok(())
    }
}
