//! Host policy: who may lease, for how long, at what minimum price; and the protocol's timing.
//!
//! Written by the operator in the `[lease]` table of `config.toml` (see
//! `docs/operator-guide.md`); [`LeaseConfig`] is that table as written, [`Policy`] its validated
//! form. A request that fails a check is refused with the reason and changes nothing.

use serde::{Deserialize, Serialize};

use super::wire::{Refusal, RefusalCode};
use crate::capacity::units::{format_duration, format_eur, parse_duration, parse_price_eur};

/// The `[lease]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    /// Peer ids allowed to lease (empty: everyone not denied).
    pub allow: Vec<String>,
    /// Peer ids never allowed to lease.
    pub deny: Vec<String>,
    /// Longest lease (and longest remaining term after a renewal), e.g. "30d".
    pub max_duration: String,
    /// Shortest lease, e.g. "1s".
    pub min_duration: String,
    /// Lowest price per hour of a leased slice, in EUR (0: no minimum).
    pub min_hourly_price: f64,
    /// How long an offer waits for the tenant's countersignature, e.g. "30s".
    pub offer_hold: String,
    /// Length of a usage-receipt period, e.g. "1h".
    pub receipt_period: String,
    /// A request whose creation time is further than this from the host's clock is stale.
    pub request_window: String,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: Vec::new(),
            max_duration: "30d".into(),
            min_duration: "1s".into(),
            min_hourly_price: 0.0,
            offer_hold: "30s".into(),
            receipt_period: "1h".into(),
            request_window: "2m".into(),
        }
    }
}

/// The validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub allow: Vec<libp2p::PeerId>,
    pub deny: Vec<libp2p::PeerId>,
    pub max_duration_ms: u64,
    pub min_duration_ms: u64,
    pub min_hourly_micros: u64,
    pub offer_hold_ms: u64,
    pub receipt_period_ms: u64,
    pub request_window_ms: u64,
}

impl LeaseConfig {
    /// Validates the table, naming the key of any bad value.
    pub fn to_policy(&self) -> Result<Policy, String> {
        let peers = |key: &str, list: &[String]| {
            list.iter()
                .map(|p| {
                    p.trim().parse::<libp2p::PeerId>().map_err(|_| {
                        format!("lease.{key}: {p:?} is not a peer id (12D3KooW…, see `degroup status` on that node)")
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let dur = |key: &str, v: &str| parse_duration(v).map_err(|e| format!("lease.{key}: {e}"));
        let min_hourly_micros = parse_price_eur(&format!("{}", self.min_hourly_price))
            .map_err(|e| format!("lease.min_hourly_price: {e}"))?;
        let policy = Policy {
            allow: peers("allow", &self.allow)?,
            deny: peers("deny", &self.deny)?,
            max_duration_ms: dur("max_duration", &self.max_duration)?,
            min_duration_ms: dur("min_duration", &self.min_duration)?,
            min_hourly_micros,
            offer_hold_ms: dur("offer_hold", &self.offer_hold)?,
            receipt_period_ms: dur("receipt_period", &self.receipt_period)?,
            request_window_ms: dur("request_window", &self.request_window)?,
        };
        if policy.min_duration_ms > policy.max_duration_ms {
            return Err("lease.min_duration is longer than lease.max_duration".into());
        }
        if policy.offer_hold_ms < 100 {
            return Err("lease.offer_hold must be at least 100ms".into());
        }
        if policy.receipt_period_ms < 1000 {
            return Err("lease.receipt_period must be at least 1s".into());
        }
        Ok(policy)
    }
}

impl Policy {
    /// Whether this tenant may lease at all.
    pub fn check_tenant(&self, tenant: &libp2p::PeerId) -> Result<(), Refusal> {
        if self.deny.contains(tenant) {
            return Err(Refusal::new(
                RefusalCode::Policy,
                "this host does not lease to your peer id (denylist)",
            ));
        }
        if !self.allow.is_empty() && !self.allow.contains(tenant) {
            return Err(Refusal::new(
                RefusalCode::Policy,
                "this host leases only to the peer ids on its allowlist; ask its operator to add yours",
            ));
        }
        Ok(())
    }

    /// Checks a term length: `duration_ms` for a new lease, the remaining term for a renewal.
    pub fn check_duration(&self, duration_ms: u64) -> Result<(), Refusal> {
        if duration_ms > self.max_duration_ms {
            return Err(Refusal::new(
                RefusalCode::Policy,
                format!(
                    "duration {} is above this host's maximum of {}; ask for a shorter lease and renew it",
                    format_duration(duration_ms),
                    format_duration(self.max_duration_ms)
                ),
            ));
        }
        if duration_ms < self.min_duration_ms {
            return Err(Refusal::new(
                RefusalCode::Policy,
                format!(
                    "duration {} is below this host's minimum of {}",
                    format_duration(duration_ms),
                    format_duration(self.min_duration_ms)
                ),
            ));
        }
        Ok(())
    }

    /// Checks the host's minimum price per lease-hour.
    pub fn check_price(&self, hourly_micros: u64) -> Result<(), Refusal> {
        if hourly_micros < self.min_hourly_micros {
            return Err(Refusal::new(
                RefusalCode::Policy,
                format!(
                    "the slice costs {} EUR/h, below this host's minimum of {} EUR/h per lease; ask for a larger slice",
                    format_eur(hourly_micros),
                    format_eur(self.min_hourly_micros)
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> libp2p::PeerId {
        libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
    }

    #[test]
    fn allow_and_deny_lists() -> Result<(), String> {
        let (a, b, c) = (peer(), peer(), peer());
        let policy = LeaseConfig {
            allow: vec![a.to_string(), b.to_string()],
            deny: vec![b.to_string()],
            ..LeaseConfig::default()
        }
        .to_policy()?;
        assert!(policy.check_tenant(&a).is_ok());
        let denied = policy.check_tenant(&b).err().map(|r| (r.code, r.message));
        assert!(
            denied.is_some_and(|(code, m)| code == RefusalCode::Policy && m.contains("denylist"))
        );
        let not_allowed = policy.check_tenant(&c).err().map(|r| r.message);
        assert!(not_allowed.is_some_and(|m| m.contains("allowlist")));
        // No allowlist: everyone not denied.
        let open = LeaseConfig::default().to_policy()?;
        assert!(open.check_tenant(&c).is_ok());
        Ok(())
    }

    #[test]
    fn durations_and_prices() -> Result<(), String> {
        let policy = LeaseConfig {
            max_duration: "1h".into(),
            min_duration: "1m".into(),
            min_hourly_price: 0.05,
            ..LeaseConfig::default()
        }
        .to_policy()?;
        assert!(policy.check_duration(3_600_000).is_ok());
        assert!(
            policy
                .check_duration(3_600_001)
                .is_err_and(|r| r.message.contains("maximum of 1h"))
        );
        assert!(
            policy
                .check_duration(59_999)
                .is_err_and(|r| r.message.contains("minimum"))
        );
        assert!(policy.check_price(50_000).is_ok());
        assert!(
            policy
                .check_price(49_999)
                .is_err_and(|r| r.message.contains("0.05 EUR/h"))
        );
        Ok(())
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |c: LeaseConfig| c.to_policy().err().unwrap_or_default();
        assert!(
            bad(LeaseConfig {
                allow: vec!["bob".into()],
                ..Default::default()
            })
            .contains("lease.allow")
        );
        assert!(
            bad(LeaseConfig {
                max_duration: "forever".into(),
                ..Default::default()
            })
            .contains("lease.max_duration")
        );
        assert!(
            bad(LeaseConfig {
                min_hourly_price: -1.0,
                ..Default::default()
            })
            .contains("lease.min_hourly_price")
        );
        assert!(
            bad(LeaseConfig {
                offer_hold: "10ms".into(),
                ..Default::default()
            })
            .contains("offer_hold")
        );
        assert!(
            bad(LeaseConfig {
                min_duration: "2d".into(),
                max_duration: "1d".into(),
                ..Default::default()
            })
            .contains("longer than")
        );
    }
}
