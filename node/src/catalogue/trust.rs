//! The `[trust]` table: publishers whose package names resolve without a key prefix.
//!
//! ```toml
//! [trust]
//! publishers = [
//!   { name = "acme", key = "3f2a…64 hex digits…" },
//! ]
//! ```
//!
//! Anyone can publish a release named `greeter`; `degroup deploy greeter` only picks among the
//! publishers listed here. A release of anyone else is reached by `PREFIX/greeter` (a prefix of
//! the publisher's key) or by its exact `blake3:` hash. [`TrustConfig::validate`] checks the
//! table when the configuration loads; the name is a label for messages.

use serde::{Deserialize, Serialize};

/// Most publishers in the table.
pub const MAX_TRUSTED: usize = 1024;
/// Longest label of a trusted publisher, in bytes.
pub const MAX_LABEL_LEN: usize = 64;

/// The `[trust]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    pub publishers: Vec<TrustedPublisher>,
}

/// One trusted publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedPublisher {
    /// A label for messages, e.g. the organisation's name.
    pub name: String,
    /// The publisher's ed25519 public key, 64 hex digits.
    pub key: String,
}

impl TrustedPublisher {
    /// The key's bytes, when it is 64 hex digits of a valid ed25519 public key.
    pub fn key_bytes(&self) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(self.key.trim(), &mut out).ok()?;
        ed25519_dalek::VerifyingKey::from_bytes(&out).ok()?;
        Some(out)
    }
}

impl TrustConfig {
    /// Checks every entry: a label of 1 to 64 printable characters, a valid key, no key or
    /// label listed twice, at most [`MAX_TRUSTED`] entries. The message names the entry.
    pub fn validate(&self) -> Result<(), String> {
        if self.publishers.len() > MAX_TRUSTED {
            return Err(format!(
                "[trust] publishers lists {} publishers; at most {MAX_TRUSTED}",
                self.publishers.len()
            ));
        }
        let mut keys = Vec::new();
        for (i, p) in self.publishers.iter().enumerate() {
            let n = i + 1;
            if p.name.trim().is_empty()
                || p.name.len() > MAX_LABEL_LEN
                || p.name.chars().any(char::is_control)
            {
                return Err(format!(
                    "[trust] publishers entry {n}: name must be 1 to {MAX_LABEL_LEN} printable characters"
                ));
            }
            let Some(key) = p.key_bytes() else {
                return Err(format!(
                    "[trust] publishers entry {n} ({}): key must be the publisher's ed25519 public key as 64 hex digits (see `degroup key show`)",
                    p.name
                ));
            };
            if keys.contains(&key) {
                return Err(format!(
                    "[trust] publishers entry {n} ({}): this key is listed twice",
                    p.name
                ));
            }
            if self.publishers[..i].iter().any(|q| q.name == p.name) {
                return Err(format!(
                    "[trust] publishers entry {n}: the name {:?} is used twice",
                    p.name
                ));
            }
            keys.push(key);
        }
        Ok(())
    }

    /// The keys of the valid entries.
    pub fn keys(&self) -> Vec<[u8; 32]> {
        self.publishers
            .iter()
            .filter_map(TrustedPublisher::key_bytes)
            .collect()
    }
}
