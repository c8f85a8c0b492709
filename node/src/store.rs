//! The node's durable state: one embedded sled database in `<data-dir>/store`.
//!
//! Only this module names sled types; the rest of the node sees [`Store`] and [`Tree`], which
//! speak plain bytes. Each domain keeps its own named tree (`meta`, and later `adverts`,
//! `leases`, …). The `meta` tree holds the schema version, checked at open: a store written by a
//! newer degroup refuses to open with a clear error and is never rewritten.
//!
//! Durability rule: anything acknowledged to a user or a peer is flushed first
//! ([`Tree::insert_durable`], [`Store::flush`]). sled holds a lock on the database, so a second
//! node on the same data directory fails to open it, with a message saying so.

use std::path::{Path, PathBuf};

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &[u8] = b"schema_version";
/// Directory of the database inside a data directory.
pub const STORE_DIR: &str = "store";

/// Domains with a tree of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Schema version and node-level facts.
    Meta,
    /// A plain key-value space for tools and tests (`degroup debug store-writer`).
    Scratch,
    /// The newest advert of every known host.
    Adverts,
    /// This node's offer settings and advert sequence number.
    Capacity,
    /// Every lease this node is party to (host or tenant), by lease id.
    Leases,
    /// Signed usage receipts, by lease id and period start.
    Receipts,
    /// Plugin deployments this node hosts or made as a tenant, by deployment id.
    Deployments,
    /// Plugin packages of hosted deployments, by content hash.
    Packages,
    /// The catalogue's release and yank envelopes, by publisher, name and version.
    Releases,
    /// Metadata of the content-addressed blobs (size, visibility, holds), by BLAKE3 hash.
    Blobs,
    /// Host names claimed by hosted deployments on this host's HTTP ingress, by name.
    Routes,
    /// The groups this node made as a tenant, by name (see [`crate::group`]).
    Groups,
    /// The newest group documents this node holds as a host, by tenant and name.
    GroupDocs,
}

impl Domain {
    fn tree_name(self) -> &'static str {
        match self {
            Domain::Meta => "meta",
            Domain::Scratch => "scratch",
            Domain::Adverts => "adverts",
            Domain::Capacity => "capacity",
            Domain::Leases => "leases",
            Domain::Receipts => "receipts",
            Domain::Deployments => "deployments",
            Domain::Packages => "packages",
            Domain::Releases => "releases",
            Domain::Blobs => "blobs",
            Domain::Routes => "routes",
            Domain::Groups => "groups",
            Domain::GroupDocs => "group_docs",
        }
    }
}

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store in {} is in use by another process (is a degroup node already running on this data dir?); stop it or choose another --data-dir",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error(
        "the store in {} has schema version {found}, newer than this degroup understands ({supported}); run a newer degroup, nothing was changed",
        path.display()
    )]
    Newer {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("the store in {} is damaged: {reason}; restore it from a backup", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("store error: {0}")]
    Db(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store of a data directory and checks its schema version.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(STORE_DIR);
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(8 * 1024 * 1024)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked { path: path.clone() }
                }
                sled::Error::Io(io) if io.to_string().contains("lock") => {
                    StoreError::Locked { path: path.clone() }
                }
                sled::Error::Corruption { .. } => StoreError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                },
                other => StoreError::Db(other.to_string()),
            })?;
        let store = Self { db, path };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let meta = self.db.open_tree(Domain::Meta.tree_name())?;
        match meta.get(SCHEMA_KEY)? {
            None => {
                meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
                self.db.flush()?;
                Ok(())
            }
            Some(v) => {
                let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    path: self.path.clone(),
                    reason: "schema version is not a 4-byte integer".into(),
                })?;
                let found = u32::from_be_bytes(bytes);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::Newer {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Ok(())
            }
        }
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let meta = self.tree(Domain::Meta)?;
        let v = meta.get(SCHEMA_KEY)?.unwrap_or_default();
        Ok(v.try_into().map(u32::from_be_bytes).unwrap_or(0))
    }

    /// The tree of a domain.
    pub fn tree(&self, domain: Domain) -> Result<Tree, StoreError> {
        Ok(Tree {
            tree: self.db.open_tree(domain.tree_name())?,
        })
    }

    /// A tree outside the fixed domains, such as a deployment's key-value store before it
    /// moved to its own file (`kv/<id>`, read once by the migration in `plugin::kv`).
    pub fn named_tree(&self, name: &str) -> Result<Tree, StoreError> {
        Ok(Tree {
            tree: self.db.open_tree(name)?,
        })
    }

    /// Whether a tree made with [`Store::named_tree`] exists (without making it).
    pub fn has_named_tree(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == name.as_bytes()))
    }

    /// Deletes a tree made with [`Store::named_tree`] and everything in it, durably.
    pub fn drop_named_tree(&self, name: &str) -> Result<bool, StoreError> {
        let dropped = self.db.drop_tree(name)?;
        self.db.flush()?;
        Ok(dropped)
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Same as [`Store::flush`], without blocking the async runtime.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Applies writes to several trees as one transaction (all or nothing), then flushes, so
    /// the whole batch is durable once this returns.
    pub fn apply_durable(&self, ops: &[Op]) -> Result<(), StoreError> {
        use sled::Transactional as _;
        let mut domains: Vec<Domain> = Vec::new();
        for op in ops {
            let d = op.domain();
            if !domains.contains(&d) {
                domains.push(d);
            }
        }
        let trees = domains
            .iter()
            .map(|d| self.db.open_tree(d.tree_name()))
            .collect::<Result<Vec<_>, _>>()?;
        let result: sled::transaction::TransactionResult<(), ()> =
            trees.as_slice().transaction(|views| {
                for op in ops {
                    let i = domains.iter().position(|d| *d == op.domain()).unwrap_or(0);
                    match op {
                        Op::Put(_, k, v) => {
                            views[i].insert(k.as_slice(), v.as_slice())?;
                        }
                        Op::Delete(_, k) => {
                            views[i].remove(k.as_slice())?;
                        }
                    }
                }
                Ok(())
            });
        result.map_err(|e| StoreError::Db(format!("{e:?}")))?;
        self.db.flush()?;
        Ok(())
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One write of an atomic batch ([`Store::apply_durable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Domain, Vec<u8>, Vec<u8>),
    Delete(Domain, Vec<u8>),
}

impl Op {
    fn domain(&self) -> Domain {
        match self {
            Op::Put(d, ..) | Op::Delete(d, _) => *d,
        }
    }
}

/// One domain's key space.
#[derive(Debug, Clone)]
pub struct Tree {
    tree: sled::Tree,
}

impl Tree {
    /// The value of a key.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// Writes a key without waiting for durability.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(key, value)?;
        Ok(())
    }

    /// Writes a key and flushes, so it survives a crash once this returns.
    pub fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(key, value)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Removes a key.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.remove(key)?.map(|v| v.to_vec()))
    }

    /// All pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.tree.scan_prefix(prefix).map(|r| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(StoreError::from)
        })
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Makes this tree's writes durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.tree.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_is_written_and_newer_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        {
            let store = Store::open(dir.path())?;
            assert_eq!(store.schema_version()?, SCHEMA_VERSION);
            store.tree(Domain::Scratch)?.insert_durable(b"k", b"v")?;
            store
                .tree(Domain::Meta)?
                .insert_durable(SCHEMA_KEY, &(SCHEMA_VERSION + 1).to_be_bytes())?;
        }
        match Store::open(dir.path()) {
            Err(StoreError::Newer { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
            other => panic!("expected Newer, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn atomic_batches_span_trees() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        store.apply_durable(&[
            Op::Put(Domain::Scratch, b"a".to_vec(), b"1".to_vec()),
            Op::Put(Domain::Capacity, b"b".to_vec(), b"2".to_vec()),
        ])?;
        assert_eq!(store.tree(Domain::Scratch)?.get(b"a")?, Some(b"1".to_vec()));
        assert_eq!(
            store.tree(Domain::Capacity)?.get(b"b")?,
            Some(b"2".to_vec())
        );
        store.apply_durable(&[Op::Delete(Domain::Scratch, b"a".to_vec())])?;
        assert_eq!(store.tree(Domain::Scratch)?.get(b"a")?, None);
        Ok(())
    }

    #[test]
    fn second_open_is_locked() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let first = Store::open(dir.path())?;
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Locked { .. })
        ));
        assert_eq!(first.schema_version()?, SCHEMA_VERSION);
        Ok(())
    }
}
