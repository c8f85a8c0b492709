//! The on-disk cache of compiled components.
//!
//! A cache file is `<dir>/<key>.cwasm`, where the key is blake3 of the component's hash and the
//! engine's compatibility hash (wasmtime version, target and settings): a new wasmtime or a
//! changed setting simply misses. The file holds blake3 of the artifact followed by the
//! artifact; it is written to a temporary name and renamed, and the checksum is verified before
//! the artifact is handed to wasmtime, so a torn or corrupted file is recompiled, not loaded.

use std::hash::{Hash as _, Hasher};
use std::path::Path;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::{SandboxError, werr};

/// Largest cache file read back.
const MAX_ARTIFACT: u64 = 512 * 1024 * 1024;

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

/// The compiled component from the cache, or compiled now (and written to the cache).
/// The flag says whether it came from the cache.
pub(super) fn load_or_compile(
    engine: &Engine,
    dir: &Path,
    wasm_hash: &[u8; 32],
    wasm: &[u8],
) -> Result<(Component, bool), SandboxError> {
    let path = dir.join(format!("{}.cwasm", key(engine, wasm_hash)));
    if let Some(component) = read(engine, &path) {
        return Ok((component, true));
    }
    let component = Component::new(engine, wasm).map_err(|e| SandboxError::Compile(werr(&e)))?;
    match component.serialize() {
        Ok(artifact) => {
            if let Err(e) = write(&path, &artifact) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache");
            }
        }
        Err(e) => tracing::warn!(error = %werr(&e), "cannot serialize a compiled component"),
    }
    Ok((component, false))
}

fn read(engine: &Engine, path: &Path) -> Option<Component> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_ARTIFACT || meta.len() < 32 {
        let _ = std::fs::remove_file(path);
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let (sum, artifact) = bytes.split_at(32);
    if blake3::hash(artifact).as_bytes() != sum {
        tracing::warn!(path = %path.display(), "compile cache entry is corrupt; recompiling");
        let _ = std::fs::remove_file(path);
        return None;
    }
    // SAFETY: wasmtime requires that deserialized bytes come from `Component::serialize` of a
    // compatible engine. This file was written by this node (in its own 0700 data directory)
    // from `serialize`, its name includes the engine's compatibility hash, and its checksum was
    // just verified, so these are exactly the bytes that were written.
    #[allow(unsafe_code)]
    let loaded = unsafe { Component::deserialize(engine, artifact) };
    match loaded {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %werr(&e), "compile cache entry unusable; recompiling");
            let _ = std::fs::remove_file(path);
            None
        }
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
