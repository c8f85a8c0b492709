//! The blobs on disk and their metadata.
//!
//! Files, in `<data dir>/blobs/`: `<hex>` (the bytes) and `<hex>.obao` (the bao outboard: the
//! pre-order hash pairs of the tree of [`super::CHUNK_GROUP`]-byte chunk groups, without a
//! size prefix; the size is in the metadata). Anything ending in `.part` is a write or a
//! download in progress and is removed at open. A blob is complete once both files are
//! renamed into place (after an fsync of each and of the directory) *and* its metadata is in
//! the sled tree [`crate::store::Domain::Blobs`]; files without metadata are leftovers of a
//! crash and are removed at open, metadata without a file is dropped (with a warning).
//!
//! Everything here is blocking file I/O: the async side calls it through `spawn_blocking`.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};

use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::sync::{CreateOutboard as _, encode_ranges_validated};
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use serde::{Deserialize, Serialize};

use super::{CHUNK_GROUP, Hash, Visibility};

/// 16 KiB chunk groups: 2^4 BLAKE3 chunks of 1 KiB.
pub(super) const BLOCK: BlockSize = BlockSize::from_chunk_log(4);
/// BLAKE3 chunks (1 KiB) per chunk group.
pub(super) const CHUNKS_PER_GROUP: u64 = (CHUNK_GROUP / 1024) as u64;
/// Most holds one blob may have.
pub(super) const MAX_HOLDS: usize = 256;
/// Longest holder name.
pub(super) const MAX_HOLDER_LEN: usize = 128;
/// Most peers a private blob may be shared with.
pub(super) const MAX_PRIVATE_PEERS: usize = 256;

/// What the sled tree holds per blob (key: the 32-byte hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Meta {
    pub size: u64,
    pub visibility: Visibility,
    /// GC roots: while any is present the blob is kept.
    pub holds: Vec<String>,
    pub added_ms: u64,
    /// When the last hold was released (0: never held and released).
    pub released_ms: u64,
}

impl Meta {
    /// Encodes the record.
    pub(super) fn encode(&self) -> Vec<u8> {
        // Plain integers, strings and enums: postcard cannot fail on them.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes a record (trailing bytes refused).
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        crate::signed::decode_exact(bytes).ok()
    }

    /// When this blob became collectable, if nobody holds it.
    pub(super) fn unheld_since(&self) -> Option<u64> {
        self.holds
            .is_empty()
            .then_some(self.added_ms.max(self.released_ms))
    }
}

/// Number of chunk groups of a blob of `size` bytes.
pub(super) fn groups_of(size: u64) -> u64 {
    size.div_ceil(CHUNK_GROUP as u64)
}

/// The chunk ranges of groups `first .. first + groups`.
pub(super) fn group_ranges(first: u64, groups: u64) -> ChunkRanges {
    let start = first.saturating_mul(CHUNKS_PER_GROUP);
    let end = first
        .saturating_add(groups)
        .saturating_mul(CHUNKS_PER_GROUP);
    ChunkRanges::from(ChunkNum(start)..ChunkNum(end))
}

/// The directory and its file names.
#[derive(Debug, Clone)]
pub(super) struct Dir {
    path: PathBuf,
}

impl Dir {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn data(&self, hash: &Hash) -> PathBuf {
        self.path.join(hex::encode(hash))
    }

    pub(super) fn outboard(&self, hash: &Hash) -> PathBuf {
        self.path.join(format!("{}.obao", hex::encode(hash)))
    }

    /// A temporary file of a write or download; `tag` keeps concurrent ones apart.
    pub(super) fn part(&self, hash: &Hash, tag: &str) -> PathBuf {
        self.path.join(format!("{}.{tag}.part", hex::encode(hash)))
    }

    /// Creates the directory and removes every `.part` file; returns the hashes whose data
    /// file is present (with its length).
    pub(super) fn open(&self) -> std::io::Result<Vec<(Hash, u64)>> {
        std::fs::create_dir_all(&self.path)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".part") {
                tracing::debug!(file = name, "removing an unfinished blob write");
                std::fs::remove_file(entry.path())?;
                continue;
            }
            if let Some(hash) = parse_hex(name) {
                found.push((hash, entry.metadata()?.len()));
            }
        }
        Ok(found)
    }

    /// Every hash with an outboard file.
    pub(super) fn outboards(&self) -> std::io::Result<Vec<Hash>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(hash) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".obao"))
                .and_then(parse_hex)
            {
                found.push(hash);
            }
        }
        Ok(found)
    }

    /// Removes a blob's files (those present).
    pub(super) fn remove(&self, hash: &Hash) -> std::io::Result<()> {
        for path in [self.data(hash), self.outboard(hash)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn sync_dir(&self) -> std::io::Result<()> {
        File::open(&self.path)?.sync_all()
    }

    /// Writes `bytes` as a blob: data and outboard written to `.part` files, fsynced, checked
    /// against `hash`, renamed into place, directory fsynced.
    pub(super) fn write(&self, hash: &Hash, bytes: &[u8], tag: &str) -> std::io::Result<()> {
        let part = self.part(hash, tag);
        let result = (|| {
            let mut f = File::create(&part)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            self.finish(hash, &part, tag)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }

    /// Turns a complete, fsynced `.part` data file into a blob: computes the outboard from
    /// the file, checks the root against `hash`, writes and fsyncs the outboard, renames both
    /// into place and fsyncs the directory.
    pub(super) fn finish(&self, hash: &Hash, part: &Path, tag: &str) -> std::io::Result<()> {
        let file = File::open(part)?;
        let size = file.metadata()?.len();
        let outboard =
            PreOrderOutboard::<Vec<u8>>::create_sized(BufReader::new(file), size, BLOCK)?;
        if outboard.root.as_bytes() != hash {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the bytes written do not hash to the blob's hash",
            ));
        }
        let ob_part = self
            .path
            .join(format!("{}.obao.{tag}.part", hex::encode(hash)));
        let result = (|| {
            let mut f = File::create(&ob_part)?;
            f.write_all(&outboard.data)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&ob_part, self.outboard(hash))?;
            std::fs::rename(part, self.data(hash))?;
            self.sync_dir()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&ob_part);
        }
        result
    }

    /// Reads a whole blob and checks its hash.
    pub(super) fn read(&self, hash: &Hash) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::open(self.data(hash))?.read_to_end(&mut bytes)?;
        if blake3::hash(&bytes).as_bytes() != hash {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file on disk no longer matches its hash (disk corruption)",
            ));
        }
        Ok(bytes)
    }

    /// The bao encoding of chunk groups `first .. first + groups` of a stored blob, read from
    /// its files and validated against `hash` as it is read: a corrupt disk fails here
    /// instead of reaching a peer.
    pub(super) fn encode(
        &self,
        hash: &Hash,
        size: u64,
        first: u64,
        groups: u64,
    ) -> std::io::Result<Vec<u8>> {
        let data = File::open(self.data(hash))?;
        let outboard = PreOrderOutboard {
            root: blake3::Hash::from_bytes(*hash),
            tree: BaoTree::new(size, BLOCK),
            data: File::open(self.outboard(hash))?,
        };
        let ranges = group_ranges(first, groups);
        let mut out = Vec::with_capacity(
            usize::try_from(groups)
                .unwrap_or(0)
                .saturating_mul(CHUNK_GROUP + 64),
        );
        encode_ranges_validated(&data, &outboard, &ranges, &mut out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(out)
    }

    /// Creates an empty `.part` file of `size` bytes for a download.
    pub(super) fn create_part(&self, hash: &Hash, tag: &str, size: u64) -> std::io::Result<File> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.part(hash, tag))?;
        f.set_len(size)?;
        Ok(f)
    }
}

fn parse_hex(name: &str) -> Option<Hash> {
    if name.len() != 64 {
        return None;
    }
    hex::decode(name).ok()?.try_into().ok()
}
