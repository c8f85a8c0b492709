//! The capacity advert: what a host offers, signed by the host, gossiped to the federation.
//!
//! An advert travels as a signed envelope with tag [`ADVERT_TAG`], at most [`MAX_ADVERT_SIZE`]
//! bytes. [`check`] is the one validation path for adverts from gossip, from the late-joiner
//! sync and from the local cache at start-up: it returns the verdict and, for accepted adverts,
//! the decoded value.

use serde::{Deserialize, Serialize};

use crate::resources::{Inventory, Prices};
use crate::signed::{Envelope, EnvelopeError, Kind, Opened};

/// Domain tag of adverts.
pub const ADVERT_TAG: &str = "degroup/advert/v1";
/// Largest advert envelope accepted, in bytes.
pub const MAX_ADVERT_SIZE: usize = 16 * 1024;
/// How far in the future an advert's issue time may be (clock skew allowance), in ms.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;
/// Longest lifetime an advert may claim, in ms.
pub const MAX_TTL_MS: u64 = 60 * 60 * 1000;

/// A host's capacity advert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    /// The host's ed25519 public key; must be the envelope's signer.
    pub host: [u8; 32],
    /// Grows with every advert the host issues, across restarts.
    pub seq: u64,
    /// Unix milliseconds.
    pub issued_at_ms: u64,
    /// Unix milliseconds; after this the advert is dropped.
    pub expires_at_ms: u64,
    /// libp2p multiaddrs of the host.
    pub addrs: Vec<String>,
    pub total: Inventory,
    pub free: Inventory,
    /// Bits per second.
    pub bandwidth_bps: u64,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    pub region: String,
    /// Operator's legal name.
    pub operator: String,
    pub certs: Vec<String>,
    pub prices: Prices,
    /// Plugin API versions the host runs, e.g. `degroup:plugin@0.1.0`.
    pub plugin_apis: Vec<String>,
}

impl Kind for Advert {
    const TAG: &'static str = ADVERT_TAG;
    const MAX_SIZE: usize = MAX_ADVERT_SIZE;
}

impl Advert {
    /// The host's peer id.
    pub fn peer_id(&self) -> Option<libp2p::PeerId> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.host)
            .ok()
            .map(|k| crate::identity::peer_id_of(&k))
    }
}

/// Why an advert was not accepted. The label is what metrics count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("larger than {MAX_ADVERT_SIZE} bytes")]
    Oversize,
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("bad signature")]
    BadSignature,
    #[error("signer is not the advert's host")]
    WrongSigner,
    #[error("issued too far in the future")]
    FromTheFuture,
    #[error("expiry too far out")]
    TooLongLived,
    #[error("expired")]
    Expired,
}

impl Rejection {
    /// Short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Oversize => "oversize",
            Rejection::Malformed(_) => "malformed",
            Rejection::BadSignature => "bad_signature",
            Rejection::WrongSigner => "wrong_signer",
            Rejection::FromTheFuture => "future",
            Rejection::TooLongLived => "expiry_too_far",
            Rejection::Expired => "expired",
        }
    }
}

impl From<EnvelopeError> for Rejection {
    fn from(e: EnvelopeError) -> Self {
        match e {
            EnvelopeError::TooLarge { .. } => Rejection::Oversize,
            EnvelopeError::BadSignature | EnvelopeError::BadKey => Rejection::BadSignature,
            other => Rejection::Malformed(other.to_string()),
        }
    }
}

/// Checks an advert envelope against everything that does not depend on what this node
/// already holds: size, structure, signature, signer, and times relative to `now_ms`.
pub fn check(bytes: &[u8], now_ms: u64) -> Result<Opened<Advert>, Rejection> {
    let opened = Envelope::open::<Advert>(bytes)?;
    check_fields(&opened, now_ms)?;
    Ok(opened)
}

/// The checks after the signature: signer, times, field sanity.
pub fn check_fields(opened: &Opened<Advert>, now_ms: u64) -> Result<(), Rejection> {
    let a = &opened.value;
    if opened.signer.as_bytes() != &a.host {
        return Err(Rejection::WrongSigner);
    }
    if a.issued_at_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(Rejection::FromTheFuture);
    }
    if a.expires_at_ms <= now_ms {
        return Err(Rejection::Expired);
    }
    if a.expires_at_ms < a.issued_at_ms || a.expires_at_ms - a.issued_at_ms > MAX_TTL_MS {
        return Err(Rejection::TooLongLived);
    }
    // An operator that has not said where it is advertises no country; anything else must be
    // an assigned ISO 3166-1 alpha-2 code.
    if !a.country.is_empty() && !super::country::is_iso_alpha2(&a.country) {
        return Err(Rejection::Malformed(
            "country is not an ISO 3166-1 alpha-2 code".into(),
        ));
    }
    Ok(())
}
