//! A deployment's key-value store: one sled tree per deployment, capped by the lease's disk.
//!
//! Usage is the sum of key and value bytes; it is computed once when the store is opened and
//! kept up to date on every write. A write that would pass the quota is refused with a result
//! (never a trap) and changes nothing. Every accepted write is flushed before it returns, so a
//! value a plugin has been told is stored survives a crash of the host.

use crate::store::{Store, StoreError, Tree};

/// Longest key, in bytes.
pub const MAX_KEY: usize = 512;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 1024 * 1024;
/// Most keys returned by one `list`.
pub const MAX_LIST: u32 = 1000;

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("the store would exceed its quota of {0} bytes")]
    QuotaExceeded(u64),
    #[error("value larger than {0} bytes")]
    ValueTooLarge(u64),
    #[error("key must be 1 to 512 bytes")]
    InvalidKey,
    #[error("storage: {0}")]
    Storage(String),
}

impl From<StoreError> for KvError {
    fn from(e: StoreError) -> Self {
        KvError::Storage(e.to_string())
    }
}

/// Name of a deployment's tree.
pub fn tree_name(deployment: &str) -> String {
    format!("kv/{deployment}")
}

/// One deployment's store.
#[derive(Debug)]
pub struct Kv {
    tree: Tree,
    quota: u64,
    used: u64,
}

impl Kv {
    /// Opens (creating) the store of a deployment with the given quota.
    pub fn open(store: &Store, deployment: &str, quota: u64) -> Result<Self, KvError> {
        let tree = store.named_tree(&tree_name(deployment))?;
        let mut used = 0u64;
        for entry in tree.scan_prefix(b"") {
            let (k, v) = entry?;
            used = used.saturating_add((k.len() + v.len()) as u64);
        }
        Ok(Self { tree, quota, used })
    }

    /// Bytes used (keys + values).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The quota in bytes.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Changes the quota (a renewed or upgraded lease); existing data is kept even if over.
    pub fn set_quota(&mut self, quota: u64) {
        self.quota = quota;
    }

    fn check_key(key: &str) -> Result<(), KvError> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(KvError::InvalidKey);
        }
        Ok(())
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        if Self::check_key(key).is_err() {
            return Ok(None);
        }
        Ok(self.tree.get(key.as_bytes())?)
    }

    /// Stores `value` under `key`, durably.
    pub fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        Self::check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(KvError::ValueTooLarge(MAX_VALUE as u64));
        }
        let old = self
            .tree
            .get(key.as_bytes())?
            .map_or(0, |v| (key.len() + v.len()) as u64);
        let new = (key.len() + value.len()) as u64;
        let after = self.used.saturating_sub(old).saturating_add(new);
        if new > old && after > self.quota {
            return Err(KvError::QuotaExceeded(self.quota));
        }
        self.tree.insert_durable(key.as_bytes(), value)?;
        self.used = after;
        Ok(())
    }

    /// Removes `key`, durably; whether it existed.
    pub fn delete(&mut self, key: &str) -> Result<bool, KvError> {
        Self::check_key(key)?;
        match self.tree.remove(key.as_bytes())? {
            Some(v) => {
                self.tree.flush()?;
                self.used = self.used.saturating_sub((key.len() + v.len()) as u64);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Keys starting with `prefix`, in byte order, at most `limit` (capped at [`MAX_LIST`]).
    pub fn list(&self, prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
        let limit = limit.min(MAX_LIST) as usize;
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(prefix.as_bytes()) {
            if out.len() >= limit {
                break;
            }
            let (k, _) = entry?;
            // Keys are only ever written from `string`s, so they are UTF-8.
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_counts_keys_and_values_and_refusals_change_nothing()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let mut kv = Kv::open(&store, "d1", 100)?;
        kv.set("a", &[0; 49])?;
        assert_eq!(kv.used(), 50);
        assert_eq!(kv.set("b", &[0; 50]), Err(KvError::QuotaExceeded(100)));
        assert_eq!(kv.get("b")?, None);
        assert_eq!(kv.used(), 50);
        kv.set("b", &[0; 49])?;
        assert_eq!(kv.used(), 100);
        // Replacing with something smaller is always allowed.
        kv.set("a", &[1; 9])?;
        assert_eq!(kv.used(), 60);
        assert_eq!(kv.set("", b"x"), Err(KvError::InvalidKey));
        assert_eq!(kv.set(&"k".repeat(513), b"x"), Err(KvError::InvalidKey));
        assert_eq!(
            kv.set("big", &vec![0; MAX_VALUE + 1]),
            Err(KvError::ValueTooLarge(MAX_VALUE as u64))
        );
        assert!(kv.delete("a")?);
        assert!(!kv.delete("a")?);
        assert_eq!(kv.used(), 50);
        assert_eq!(kv.list("", 10)?, vec!["b".to_string()]);
        drop(kv);
        let kv = Kv::open(&store, "d1", 100)?;
        assert_eq!(kv.used(), 50, "usage is recomputed on open");
        Ok(())
    }

    #[test]
    fn list_is_prefixed_ordered_and_capped() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let mut kv = Kv::open(&store, "d2", 1 << 30)?;
        for i in (0..1500).rev() {
            kv.set(&format!("p/{i:05}"), b"v")?;
        }
        kv.set("q", b"v")?;
        let keys = kv.list("p/", 5000)?;
        assert_eq!(keys.len(), MAX_LIST as usize);
        assert_eq!(keys.first().map(String::as_str), Some("p/00000"));
        assert_eq!(kv.list("q", 10)?, vec!["q".to_string()]);
        Ok(())
    }
}
