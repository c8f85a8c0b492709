//! The `[blobs]` table: how large a blob may be, how much disk all of them may take, how long
//! an unheld blob is kept, and how much one peer may ask of this node at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capacity::units::{format_duration, format_size, parse_duration, parse_size};

/// The `[blobs]` table, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobConfig {
    /// Largest single blob, e.g. "64MiB".
    pub max_package: String,
    /// Disk all blobs together may take, e.g. "4GiB".
    pub quota: String,
    /// How long a blob nobody holds is kept after its last hold was released (or after it
    /// was added), e.g. "1h".
    pub gc_grace: String,
    /// Most requests of one peer answered at once; more are answered "busy".
    pub per_peer_transfers: u32,
    /// Bytes per second one peer may download from this node, e.g. "256MiB".
    pub per_peer_rate: String,
}

/// The validated `[blobs]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobLimits {
    pub max_package: u64,
    pub quota: u64,
    pub gc_grace: Duration,
    pub per_peer_transfers: u32,
    /// Bytes per second.
    pub per_peer_rate: u64,
}

impl Default for BlobLimits {
    fn default() -> Self {
        Self {
            max_package: 64 << 20,
            quota: 4 << 30,
            gc_grace: Duration::from_secs(3600),
            per_peer_transfers: 8,
            per_peer_rate: 256 << 20,
        }
    }
}

impl Default for BlobConfig {
    /// [`BlobLimits::default`], written as a user would.
    fn default() -> Self {
        let l = BlobLimits::default();
        Self {
            max_package: format_size(l.max_package),
            quota: format_size(l.quota),
            gc_grace: format_duration(u64::try_from(l.gc_grace.as_millis()).unwrap_or(u64::MAX)),
            per_peer_transfers: l.per_peer_transfers,
            per_peer_rate: format_size(l.per_peer_rate),
        }
    }
}

impl BlobConfig {
    /// Validates the table, naming the key of any bad value.
    pub fn limits(&self) -> Result<BlobLimits, String> {
        let size = |key: &str, v: &str| parse_size(v).map_err(|e| format!("blobs.{key}: {e}"));
        let gc_grace =
            parse_duration(&self.gc_grace).map_err(|e| format!("blobs.gc_grace: {e}"))?;
        let limits = BlobLimits {
            max_package: size("max_package", &self.max_package)?,
            quota: size("quota", &self.quota)?,
            gc_grace: Duration::from_millis(gc_grace),
            per_peer_transfers: self.per_peer_transfers,
            per_peer_rate: size("per_peer_rate", &self.per_peer_rate)?,
        };
        if limits.max_package == 0 {
            return Err("blobs.max_package must be at least 1 byte".into());
        }
        if limits.quota < limits.max_package {
            return Err("blobs.quota must be at least blobs.max_package".into());
        }
        if limits.per_peer_transfers == 0 || limits.per_peer_transfers > 1024 {
            return Err("blobs.per_peer_transfers must be between 1 and 1024".into());
        }
        if limits.per_peer_rate < 64 * 1024 {
            return Err("blobs.per_peer_rate must be at least 64KiB (per second)".into());
        }
        Ok(limits)
    }

    /// Same as [`BlobConfig::limits`] (the name other tables use).
    pub fn validate(&self) -> Result<(), String> {
        self.limits().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(BlobConfig::default().limits(), Ok(BlobLimits::default()));
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = [
            BlobConfig {
                max_package: "big".into(),
                ..Default::default()
            },
            BlobConfig {
                quota: "1MiB".into(),
                ..Default::default()
            },
            BlobConfig {
                gc_grace: "soon".into(),
                ..Default::default()
            },
            BlobConfig {
                per_peer_transfers: 0,
                ..Default::default()
            },
            BlobConfig {
                per_peer_rate: "1k".into(),
                ..Default::default()
            },
        ];
        for cfg in bad {
            let err = cfg.limits().err().unwrap_or_default();
            assert!(err.starts_with("blobs."), "{err}");
        }
    }

    #[test]
    fn the_table_parses_from_toml() {
        let cfg: Result<BlobConfig, _> =
            toml::from_str("max_package = \"1MiB\"\nquota = \"10MiB\"\ngc_grace = \"10s\"");
        let limits = cfg.map_err(|e| e.to_string()).and_then(|c| c.limits());
        assert_eq!(
            limits.map(|l| (l.max_package, l.gc_grace)),
            Ok((1 << 20, Duration::from_secs(10)))
        );
        assert!(toml::from_str::<BlobConfig>("nope = 1").is_err());
    }
}
