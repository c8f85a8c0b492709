//! What `lease list`, `lease show` and `lease export` print (JSON and text).

use serde::{Deserialize, Serialize};

use super::book::{Lease, Role, Totals};
use super::contract::{EndReason, LeaseDoc, VerifiedDoc};
use crate::identity::peer_id_of_bytes;
use crate::resources::{MICROS_PER_EUR, id_hex};

/// Where a lease is in its life, as `lease show` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    Active,
    /// Tenant side: countersigned, the host's commit not yet confirmed.
    Pending,
    Released,
    Terminated,
    Expired,
}

impl LeaseState {
    /// The state of an end reason.
    pub fn ended(r: &EndReason) -> Self {
        match r {
            EndReason::Released => LeaseState::Released,
            EndReason::Terminated(_) => LeaseState::Terminated,
            EndReason::Expired => LeaseState::Expired,
        }
    }
}

impl std::fmt::Display for LeaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LeaseState::Active => "active",
            LeaseState::Pending => "pending",
            LeaseState::Released => "released",
            LeaseState::Terminated => "terminated",
            LeaseState::Expired => "expired",
        })
    }
}

/// One lease, as `lease show --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseView {
    pub id: String,
    /// This node's side.
    pub role: Role,
    pub host: String,
    pub tenant: String,
    pub state: LeaseState,
    pub cpu_millis: u64,
    pub mem_bytes: u64,
    pub disk_bytes: u64,
    pub gpus: u32,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    pub version: u32,
    pub hourly_price_eur: f64,
    pub total_price_eur: f64,
    /// Both signatures check out on the stored bytes: recomputed by `lease show`; in lists, as
    /// checked when stored or loaded (`null` for an ended lease not checked since loading).
    pub verified: Option<bool>,
    pub ended_at_ms: Option<u64>,
    pub end_reason: Option<String>,
}

fn peer(key: &[u8; 32]) -> String {
    peer_id_of_bytes(key).map_or_else(|| hex::encode(key), |p| p.to_string())
}

/// Text of an end reason.
pub fn reason_text(r: &EndReason) -> (&'static str, Option<String>) {
    match r {
        EndReason::Released => ("released", None),
        EndReason::Terminated(why) => ("terminated", Some(why.clone())),
        EndReason::Expired => ("expired", None),
    }
}

impl LeaseView {
    /// The view of a lease; `verified` is recomputed from the stored bytes.
    pub fn of(lease: &Lease) -> Self {
        Self::with(
            lease,
            Some(super::contract::verify_doc(&lease.stored.doc).is_ok()),
        )
    }

    /// The view of a lease with `verified` as checked when it was loaded or stored (lists of
    /// thousands of leases do not re-check every signature).
    pub fn listed(lease: &Lease) -> Self {
        Self::with(lease, lease.verified)
    }

    fn with(lease: &Lease, verified: Option<bool>) -> Self {
        let c = &lease.contract;
        let (state, ended_at_ms, end_reason) = match &lease.stored.ended {
            None if lease.stored.pending => (LeaseState::Pending, None, None),
            None => (LeaseState::Active, None, None),
            Some((at, r)) => (LeaseState::ended(r), Some(*at), reason_text(r).1),
        };
        Self {
            id: id_hex(&c.lease_id),
            role: lease.stored.role,
            host: peer(&c.host),
            tenant: peer(&c.tenant),
            state,
            cpu_millis: c.slice.cpu_millis,
            mem_bytes: c.slice.mem_bytes,
            disk_bytes: c.slice.disk_bytes,
            gpus: c.slice.gpus,
            starts_at_ms: c.starts_at_ms,
            ends_at_ms: c.ends_at_ms,
            version: c.version,
            hourly_price_eur: c.hourly_micros as f64 / MICROS_PER_EUR,
            total_price_eur: c.total_micros() as f64 / MICROS_PER_EUR,
            verified,
            ended_at_ms,
            end_reason,
        }
    }
}

/// `GET /v1/leases`: every lease, and the host's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseList {
    pub leases: Vec<LeaseView>,
    /// As a host: what is offered, leased, held in offers, and free.
    pub host: Totals,
    pub offers_held: usize,
}

/// The file `lease export` writes and `lease verify` reads: the exact signed bytes (hex) and,
/// for people, the terms (ignored by `verify`, which recomputes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseExport {
    pub format: String,
    pub contract: String,
    pub acceptance: String,
    /// The host's signed end notice, if the lease ended with one.
    #[serde(default)]
    pub end_notice: Option<String>,
    #[serde(default)]
    pub terms: Option<LeaseView>,
}

/// Format tag of export files.
pub const EXPORT_FORMAT: &str = "degroup-lease/v1";
/// Largest export file `lease verify` reads.
pub const MAX_EXPORT_FILE: u64 = 64 * 1024;

impl LeaseExport {
    /// Export of a lease.
    pub fn of(lease: &Lease) -> Self {
        Self {
            format: EXPORT_FORMAT.into(),
            contract: hex::encode(&lease.stored.doc.contract),
            acceptance: hex::encode(&lease.stored.doc.acceptance),
            end_notice: lease.stored.end_notice.as_ref().map(hex::encode),
            terms: Some(LeaseView::of(lease)),
        }
    }

    /// The signed bytes.
    pub fn doc(&self) -> Result<LeaseDoc, String> {
        if self.format != EXPORT_FORMAT {
            return Err(format!(
                "unknown format {:?}; expected {EXPORT_FORMAT} (a file from `degroup lease export`)",
                self.format
            ));
        }
        let contract = hex::decode(&self.contract).map_err(|_| "`contract` is not hex")?;
        let acceptance = hex::decode(&self.acceptance).map_err(|_| "`acceptance` is not hex")?;
        Ok(LeaseDoc {
            contract,
            acceptance,
        })
    }
}

/// `lease verify --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    pub verified: bool,
    pub id: String,
    pub host: String,
    pub tenant: String,
    pub version: u32,
    pub cpu_millis: u64,
    pub mem_bytes: u64,
    pub disk_bytes: u64,
    pub gpus: u32,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    pub hourly_price_eur: f64,
    pub total_price_eur: f64,
    /// `ended` when a valid end notice is included.
    pub ended: Option<String>,
}

impl VerifyReport {
    /// The report of a verified document.
    pub fn of(v: &VerifiedDoc, ended: Option<String>) -> Self {
        let c = &v.contract;
        Self {
            verified: true,
            id: id_hex(&c.lease_id),
            host: peer(&c.host),
            tenant: peer(&c.tenant),
            version: c.version,
            cpu_millis: c.slice.cpu_millis,
            mem_bytes: c.slice.mem_bytes,
            disk_bytes: c.slice.disk_bytes,
            gpus: c.slice.gpus,
            starts_at_ms: c.starts_at_ms,
            ends_at_ms: c.ends_at_ms,
            hourly_price_eur: c.hourly_micros as f64 / MICROS_PER_EUR,
            total_price_eur: c.total_micros() as f64 / MICROS_PER_EUR,
            ended,
        }
    }
}
