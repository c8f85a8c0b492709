//! The deployment's durable key-value store.
//!
//! Private to the deployment, kept on the host's disk, surviving restarts, node restarts and
//! upgrades, and deleted when the deployment is stopped or its lease ends. Every write is
//! durable before it returns `Ok`.
//!
//! Limits: keys are UTF-8 strings of 1 to [`MAX_KEY_BYTES`] bytes, values at most
//! [`MAX_VALUE_BYTES`], and the total of key and value bytes is capped by the lease's disk
//! (see [`usage`]). A refused write is a [`KvError`], never a trap.
//!
//! ```no_run
//! use degroup_sdk::kv::{self, KvError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Placement {
//!     node: u32,
//!     cpu_millis: u32,
//! }
//!
//! fn place(name: &str, p: &Placement) -> Result<(), KvError> {
//!     kv::set_json(&format!("placement/{name}"), p)
//! }
//!
//! fn placed() -> Vec<String> {
//!     kv::list("placement/", kv::MAX_LIST)
//! }
//!
//! fn load(name: &str) -> Result<Option<Placement>, KvError> {
//!     kv::get_json(&format!("placement/{name}"))
//! }
//! # let _ = (place, placed, load);
//! ```

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::host;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value the host accepts by default, in bytes (1 MiB). The host's
/// [`KvError::ValueTooLarge`] carries the limit actually applied.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most keys one [`list`] call returns.
pub const MAX_LIST: u32 = 1000;

/// Why a store operation failed. Converts into `String`, so `?` works in
/// [`Plugin::init`](crate::Plugin::init).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvError {
    /// The write would take the store past the lease's disk.
    QuotaExceeded {
        /// The quota, in bytes (keys + values).
        quota: u64,
    },
    /// The value is larger than the per-value limit.
    ValueTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The key is empty or longer than [`MAX_KEY_BYTES`]. Checked before calling the host.
    InvalidKey,
    /// The host's store failed; retrying later may succeed.
    Storage(String),
    /// [`set_json`] could not serialize the value.
    Encode(String),
    /// [`get_json`] found a value under the key that is not the JSON of the type asked for.
    Decode {
        /// The key.
        key: String,
        /// What `serde_json` said.
        reason: String,
    },
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QuotaExceeded { quota } => write!(f, "quota exceeded (quota {quota} bytes)"),
            Self::ValueTooLarge { limit } => write!(f, "value too large (limit {limit} bytes)"),
            Self::InvalidKey => write!(f, "invalid key (must be 1 to {MAX_KEY_BYTES} bytes)"),
            Self::Storage(reason) => write!(f, "storage error: {reason}"),
            Self::Encode(reason) => write!(f, "cannot encode value as JSON: {reason}"),
            Self::Decode { key, reason } => write!(f, "value under `{key}` is not valid: {reason}"),
        }
    }
}

impl std::error::Error for KvError {}

impl From<KvError> for String {
    fn from(e: KvError) -> Self {
        format!("kv: {e}")
    }
}

/// Bytes used by the store and its quota, as returned by [`usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Usage {
    /// Bytes used now (keys + values).
    pub used: u64,
    /// The quota: the lease's disk, in bytes.
    pub quota: u64,
}

impl Usage {
    /// Bytes still free.
    pub fn remaining(&self) -> u64 {
        self.quota.saturating_sub(self.used)
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        Err(KvError::InvalidKey)
    } else {
        Ok(())
    }
}

/// The value stored under `key`, if any.
///
/// # Errors
///
/// [`KvError::InvalidKey`] for an empty or over-long key.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    check_key(key)?;
    Ok(host::kv_get(key))
}

/// Stores `value` under `key`, replacing any previous value; durable when it returns `Ok`.
///
/// # Errors
///
/// [`KvError::InvalidKey`], [`KvError::ValueTooLarge`], [`KvError::QuotaExceeded`] (the
/// store is unchanged) or [`KvError::Storage`].
pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
    check_key(key)?;
    host::kv_set(key, value)
}

/// Removes `key`; returns whether it existed.
///
/// # Errors
///
/// [`KvError::InvalidKey`] or [`KvError::Storage`].
pub fn delete(key: &str) -> Result<bool, KvError> {
    check_key(key)?;
    host::kv_delete(key)
}

/// Keys starting with `prefix` (`""` for all), in byte order, at most `limit` of them (the
/// host caps `limit` at [`MAX_LIST`]).
pub fn list(prefix: &str, limit: u32) -> Vec<String> {
    host::kv_list(prefix, limit.min(MAX_LIST))
}

/// Bytes used now and the quota.
pub fn usage() -> Usage {
    let (used, quota) = host::kv_usage();
    Usage { used, quota }
}

/// The value under `key` as UTF-8 text (invalid sequences replaced), if any.
///
/// # Errors
///
/// As [`get`].
pub fn get_string(key: &str) -> Result<Option<String>, KvError> {
    Ok(get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// The value under `key` decoded from JSON as `T`, if any.
///
/// # Errors
///
/// As [`get`], plus [`KvError::Decode`] when the stored bytes are not the JSON of a `T`.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, KvError> {
    match get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| KvError::Decode {
                key: key.to_string(),
                reason: e.to_string(),
            }),
    }
}

/// Stores `value` under `key` as JSON.
///
/// # Errors
///
/// As [`set`], plus [`KvError::Encode`] when `value` cannot be serialized.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), KvError> {
    let bytes = serde_json::to_vec(value).map_err(|e| KvError::Encode(e.to_string()))?;
    set(key, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn round_trips_and_accounts_bytes() {
        testing::reset();
        assert_eq!(get("a"), Ok(None));
        set("a", b"xyz").ok();
        assert_eq!(get("a"), Ok(Some(b"xyz".to_vec())));
        assert_eq!(usage().used, 4);
        set_json("n", &41u64).ok();
        assert_eq!(get_json::<u64>("n"), Ok(Some(41)));
        assert_eq!(get_string("n"), Ok(Some("41".to_string())));
        assert!(matches!(get_json::<u64>("a"), Err(KvError::Decode { .. })));
        assert_eq!(list("", 10), ["a", "n"]);
        assert_eq!(delete("a"), Ok(true));
        assert_eq!(delete("a"), Ok(false));
        assert_eq!(usage().used, 3);
    }

    #[test]
    fn refusals_are_values() {
        testing::reset();
        assert_eq!(set("", b"x"), Err(KvError::InvalidKey));
        assert_eq!(get(&"k".repeat(513)), Err(KvError::InvalidKey));
        assert!(set(&"k".repeat(512), b"x").is_ok());
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert_eq!(
            set("big", &big),
            Err(KvError::ValueTooLarge {
                limit: MAX_VALUE_BYTES as u64
            })
        );
        let mut lease = crate::lease::info();
        lease.slice.disk_bytes = 100;
        testing::set_lease(lease);
        assert_eq!(
            set("q", &[0u8; 200]),
            Err(KvError::QuotaExceeded { quota: 100 })
        );
        assert_eq!(usage().remaining(), 0);
        assert_eq!(
            KvError::ValueTooLarge { limit: 1 }.to_string(),
            "value too large (limit 1 bytes)"
        );
        assert_eq!(
            String::from(KvError::InvalidKey),
            "kv: invalid key (must be 1 to 512 bytes)"
        );
    }
}
