//! The signed documents of the lease protocol and their offline verification.
//!
//! - [`LeaseRequest`] (`degroup/lease-request/v1`), signed by the tenant: a new slice, or the
//!   renewal of a lease, with a nonce, an idempotency key and the tenant's price ceiling.
//! - [`Contract`] (`degroup/lease/v1`), signed by the host: the terms it offers. It names the
//!   request it answers by hash, so the tenant's intent is bound to the terms.
//! - [`Acceptance`] (`degroup/lease-accept/v1`), signed by the tenant: the countersignature, over
//!   the hash of the exact contract envelope bytes.
//! - [`LeaseEnd`] (`degroup/lease-end/v1`), signed by the host: the lease ended (released by the
//!   tenant, terminated by the host with a reason, or expired).
//! - [`UsageReceipt`] (`degroup/usage/v2`), signed by the host: what a lease used in a period,
//!   compile CPU included. Receipts signed before it are [`UsageReceiptV1`] (`degroup/usage/v1`,
//!   no compile CPU) and still read.
//!
//! A fully signed lease is a [`LeaseDoc`]: contract + acceptance envelope bytes, exactly as
//! signed. [`verify_doc`] checks both signatures and that they bind to each other, with no
//! node and no network.

use serde::{Deserialize, Serialize};

use crate::resources::{LeaseId, Prices, Resources};
use crate::signed::{Envelope, EnvelopeError, Kind, Opened};

/// Largest signed lease message accepted (request, contract, acceptance, end, receipt).
pub const MAX_LEASE_MSG: usize = 4 * 1024;
/// Longest reason text of a termination.
pub const MAX_REASON: usize = 256;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ask {
    /// A new lease of this slice.
    New(Resources),
    /// Extend an active lease by the request's duration.
    Renew(LeaseId),
}

/// A tenant's request, signed by the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// The host asked (its ed25519 key); a request sent to another host is refused.
    pub host: [u8; 32],
    pub ask: Ask,
    /// Length of the lease (or of the extension), in milliseconds.
    pub duration_ms: u64,
    /// Highest price per hour of the slice the tenant accepts, in micro-euros.
    pub max_hourly_micros: Option<u64>,
    /// Fresh random bytes: a host refuses a nonce it has seen with another idempotency key.
    pub nonce: [u8; 16],
    /// Retries with the same key get the same answer, never a second lease.
    pub idempotency_key: [u8; 16],
    /// Unix ms; requests far from the host's clock are refused as stale.
    pub created_at_ms: u64,
}

impl Kind for LeaseRequest {
    const TAG: &'static str = "degroup/lease-request/v1";
    const MAX_SIZE: usize = MAX_LEASE_MSG;
}

/// The terms, signed by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    pub lease_id: LeaseId,
    /// 1 when created, +1 with every renewal.
    pub version: u32,
    pub host: [u8; 32],
    pub tenant: [u8; 32],
    pub slice: Resources,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    /// Unit prices applied (micro-euros per core-hour, GiB-hour, GPU-hour).
    pub prices: Prices,
    /// Price of the slice per hour, in micro-euros.
    pub hourly_micros: u64,
    /// blake3 of the tenant's request envelope this contract answers.
    pub request_hash: [u8; 32],
    /// The offer lapses if not countersigned by then (Unix ms).
    pub offer_expires_at_ms: u64,
}

impl Kind for Contract {
    const TAG: &'static str = "degroup/lease/v1";
    const MAX_SIZE: usize = MAX_LEASE_MSG;
}

impl Contract {
    /// Price of the whole term in micro-euros (hourly × hours, rounded up).
    pub fn total_micros(&self) -> u64 {
        let ms = u128::from(self.ends_at_ms.saturating_sub(self.starts_at_ms));
        let t = (u128::from(self.hourly_micros) * ms).div_ceil(3_600_000);
        u64::try_from(t).unwrap_or(u64::MAX)
    }
}

/// The tenant's countersignature of a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    pub lease_id: LeaseId,
    pub version: u32,
    /// blake3 of the exact contract envelope bytes accepted.
    pub contract_hash: [u8; 32],
}

impl Kind for Acceptance {
    const TAG: &'static str = "degroup/lease-accept/v1";
    const MAX_SIZE: usize = MAX_LEASE_MSG;
}

/// How a lease ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    Released,
    Terminated(String),
    Expired,
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Released => f.write_str("released by the tenant"),
            Self::Terminated(why) => write!(f, "terminated by the host: {why}"),
            Self::Expired => f.write_str("expired"),
        }
    }
}

/// The tenant's signed wish to end a lease early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub lease_id: LeaseId,
    pub at_ms: u64,
}

impl Kind for ReleaseRequest {
    const TAG: &'static str = "degroup/lease-release/v1";
    const MAX_SIZE: usize = MAX_LEASE_MSG;
}

/// The host's signed statement that a lease ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEnd {
    pub lease_id: LeaseId,
    pub host: [u8; 32],
    pub tenant: [u8; 32],
    pub at_ms: u64,
    pub reason: EndReason,
}

impl Kind for LeaseEnd {
    const TAG: &'static str = "degroup/lease-end/v1";
    const MAX_SIZE: usize = MAX_LEASE_MSG;
}

/// What a lease used in one period, signed by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReceipt {
    pub lease_id: LeaseId,
    pub host: [u8; 32],
    pub tenant: [u8; 32],
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    /// Time the lease was active in the period.
    pub wall_ms: u64,
    /// Wasm fuel consumed by the lease's deployments.
    pub cpu_fuel: u64,
    /// Highest linear memory of the lease's deployments.
    pub peak_mem_bytes: u64,
    /// Key-value bytes stored at the end of the period.
    pub storage_bytes: u64,
    /// CPU time the host spent compiling the lease's components (a cache hit costs nothing),
    /// in milliseconds.
    pub compile_cpu_ms: u64,
}

impl Kind for UsageReceipt {
    const TAG: &'static str = "degroup/usage/v2";
    const MAX_SIZE: usize = MAX_LEASE_MSG;
}

/// A receipt as hosts signed it before compile CPU was metered: still read (stored receipts,
/// older hosts), as a [`UsageReceipt`] with `compile_cpu_ms` 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReceiptV1 {
    pub lease_id: LeaseId,
    pub host: [u8; 32],
    pub tenant: [u8; 32],
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    pub wall_ms: u64,
    pub cpu_fuel: u64,
    pub peak_mem_bytes: u64,
    pub storage_bytes: u64,
}

impl Kind for UsageReceiptV1 {
    const TAG: &'static str = "degroup/usage/v1";
    const MAX_SIZE: usize = MAX_LEASE_MSG;
}

impl From<UsageReceiptV1> for UsageReceipt {
    fn from(r: UsageReceiptV1) -> Self {
        Self {
            lease_id: r.lease_id,
            host: r.host,
            tenant: r.tenant,
            period_start_ms: r.period_start_ms,
            period_end_ms: r.period_end_ms,
            wall_ms: r.wall_ms,
            cpu_fuel: r.cpu_fuel,
            peak_mem_bytes: r.peak_mem_bytes,
            storage_bytes: r.storage_bytes,
            compile_cpu_ms: 0,
        }
    }
}

/// Opens a signed usage receipt of either version; returns it with its signer.
pub fn open_receipt(
    bytes: &[u8],
) -> Result<(UsageReceipt, ed25519_dalek::VerifyingKey), EnvelopeError> {
    match Envelope::open::<UsageReceipt>(bytes) {
        Ok(o) => Ok((o.value, o.signer)),
        Err(EnvelopeError::WrongTag { got, .. }) if got == UsageReceiptV1::TAG => {
            let o = Envelope::open::<UsageReceiptV1>(bytes)?;
            Ok((o.value.into(), o.signer))
        }
        Err(e) => Err(e),
    }
}

/// blake3 of some bytes.
pub fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// The id of a new lease: derived from host, tenant and idempotency key, so that a retry maps
/// to the same lease.
pub fn new_lease_id(host: &[u8; 32], tenant: &[u8; 32], idempotency_key: &[u8; 16]) -> LeaseId {
    let mut h = blake3::Hasher::new();
    h.update(b"degroup/lease-id/v1");
    h.update(host);
    h.update(tenant);
    h.update(idempotency_key);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

/// Why a lease document does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocError {
    #[error("host contract: {0}")]
    Contract(EnvelopeError),
    #[error("tenant acceptance: {0}")]
    Acceptance(EnvelopeError),
    #[error("end notice: {0}")]
    End(EnvelopeError),
    #[error("the contract is not signed by the host it names")]
    ContractSigner,
    #[error("the acceptance is not signed by the tenant the contract names")]
    AcceptanceSigner,
    #[error("the acceptance is for another contract (lease id, version or hash differ)")]
    Mismatch,
    #[error("the end notice is for another lease or not signed by its host")]
    EndMismatch,
}

/// A lease as both parties signed it: the exact envelope bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseDoc {
    pub contract: Vec<u8>,
    pub acceptance: Vec<u8>,
}

/// A verified lease document.
#[derive(Debug, Clone)]
pub struct VerifiedDoc {
    pub contract: Contract,
    pub acceptance: Acceptance,
}

/// Checks both signatures and that the acceptance countersigns exactly this contract.
pub fn verify_doc(doc: &LeaseDoc) -> Result<VerifiedDoc, DocError> {
    let c: Opened<Contract> = Envelope::open(&doc.contract).map_err(DocError::Contract)?;
    if c.signer.as_bytes() != &c.value.host {
        return Err(DocError::ContractSigner);
    }
    let a: Opened<Acceptance> = Envelope::open(&doc.acceptance).map_err(DocError::Acceptance)?;
    if a.signer.as_bytes() != &c.value.tenant {
        return Err(DocError::AcceptanceSigner);
    }
    if a.value.lease_id != c.value.lease_id
        || a.value.version != c.value.version
        || a.value.contract_hash != hash(&doc.contract)
    {
        return Err(DocError::Mismatch);
    }
    Ok(VerifiedDoc {
        contract: c.value,
        acceptance: a.value,
    })
}

/// Checks a host's end notice against the contract it ends.
pub fn verify_end(bytes: &[u8], contract: &Contract) -> Result<LeaseEnd, DocError> {
    let e: Opened<LeaseEnd> = Envelope::open(bytes).map_err(DocError::End)?;
    if e.signer.as_bytes() != &contract.host
        || e.value.host != contract.host
        || e.value.tenant != contract.tenant
        || e.value.lease_id != contract.lease_id
    {
        return Err(DocError::EndMismatch);
    }
    Ok(e.value)
}

#[cfg(test)]
mod tests;
