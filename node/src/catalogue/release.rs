//! Releases and yanks: the two signed statements of the catalogue, and their stateless checks.
//!
//! A [`Release`] (`degroup/release/v1`) says "publisher P published version V of package N,
//! whose `.dgp` file has BLAKE3 hash H and size S". A [`Yank`] (`degroup/yank/v1`) says "P no
//! longer recommends version V of N (hash H)". Both are signed by the publisher they name and
//! travel as [`crate::signed::Envelope`]s of at most [`MAX_ENVELOPE_SIZE`] bytes.
//!
//! [`decode`] is the one decoding path for both, from gossip, sync and the store: size cap
//! first, then structure, tag, signature, signer == publisher and the field rules. [`check_item`]
//! adds the clock check (at most [`MAX_CLOCK_SKEW_MS`] ahead of `now`). What depends on what
//! the node already holds (duplicates, republished versions, caps) is the book's business.
//!
//! The package name rule ([`check_name`]) and version rules ([`check_version_syntax`],
//! [`check_version`]) live here and `plugin::package` calls them, so a package that can be packed
//! can be published under the same name.

use serde::{Deserialize, Serialize};

use crate::signed::{Envelope, EnvelopeError, Kind, Opened, decode_exact};

/// A content hash: BLAKE3 of a `.dgp` package file.
pub type Hash = [u8; 32];

/// Domain tag of releases.
pub const RELEASE_TAG: &str = "degroup/release/v1";
/// Domain tag of yanks.
pub const YANK_TAG: &str = "degroup/yank/v1";
/// Largest release or yank envelope accepted, in bytes.
pub const MAX_ENVELOPE_SIZE: usize = 4096;
/// Hard ceiling on a release's declared package size, in bytes.
pub const MAX_RELEASE_SIZE: u64 = 1 << 30;
/// How far ahead of this node's clock a release or yank may be dated, in ms.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Longest package name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest version, in bytes.
pub const MAX_VERSION_LEN: usize = 32;
/// Longest description or yank reason, in bytes.
pub const MAX_TEXT_LEN: usize = 200;
/// Most capabilities a release may list.
pub const MAX_CAPABILITIES: usize = 16;
/// Longest capability name, in bytes.
pub const MAX_CAPABILITY_LEN: usize = 32;

/// A published version of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The publisher's ed25519 key; must be the envelope's signer.
    pub publisher: [u8; 32],
    /// Package name ([`check_name`]).
    pub name: String,
    /// A semver version ([`check_version`]).
    pub version: String,
    /// BLAKE3 of the `.dgp` package file.
    pub hash: Hash,
    /// Size of the package file in bytes, 1 to [`MAX_RELEASE_SIZE`].
    pub size: u64,
    /// Unix milliseconds.
    pub published_ms: u64,
    /// One line, at most [`MAX_TEXT_LEN`] bytes, no control characters.
    pub description: String,
    /// Host features the package asks for; at most [`MAX_CAPABILITIES`], each at most
    /// [`MAX_CAPABILITY_LEN`] bytes.
    pub capabilities: Vec<String>,
}

impl Kind for Release {
    const TAG: &'static str = RELEASE_TAG;
    const MAX_SIZE: usize = MAX_ENVELOPE_SIZE;
}

/// The withdrawal of a release by its publisher. The release stays known (and deployable by
/// exact hash); name resolution skips it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Yank {
    /// Must be the envelope's signer and the release's publisher.
    pub publisher: [u8; 32],
    pub name: String,
    pub version: String,
    /// The hash of the release yanked; a yank naming another hash is refused.
    pub hash: Hash,
    /// Unix milliseconds.
    pub yanked_ms: u64,
    /// At most [`MAX_TEXT_LEN`] bytes, no control characters; may be empty.
    pub reason: String,
}

impl Kind for Yank {
    const TAG: &'static str = YANK_TAG;
    const MAX_SIZE: usize = MAX_ENVELOPE_SIZE;
}

/// One gossip message or sync item: a verified release or yank.
#[derive(Debug, Clone)]
pub enum Item {
    Release(Opened<Release>),
    Yank(Opened<Yank>),
}

impl Item {
    /// The envelope's date (`published_ms` or `yanked_ms`).
    pub fn time_ms(&self) -> u64 {
        match self {
            Item::Release(r) => r.value.published_ms,
            Item::Yank(y) => y.value.yanked_ms,
        }
    }
}

/// Why a release or yank was refused. The label is what metrics count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("larger than {MAX_ENVELOPE_SIZE} bytes")]
    Oversize,
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("not a release or a yank (tag {0:?})")]
    WrongKind(String),
    #[error("bad signature")]
    BadSignature,
    #[error("signer is not the publisher named")]
    WrongSigner,
    #[error("{0}")]
    BadName(String),
    #[error("{0}")]
    BadVersion(String),
    #[error("bad description: {0}")]
    BadDescription(&'static str),
    #[error("bad capabilities: {0}")]
    BadCapabilities(&'static str),
    #[error("declared size must be 1 to {MAX_RELEASE_SIZE} bytes")]
    BadSize,
    #[error("bad yank reason: {0}")]
    BadReason(&'static str),
    #[error("dated too far in the future")]
    FromTheFuture,
}

impl Rejection {
    /// Short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Oversize => "oversize",
            Rejection::Malformed(_) => "malformed",
            Rejection::WrongKind(_) => "wrong_kind",
            Rejection::BadSignature => "bad_signature",
            Rejection::WrongSigner => "wrong_signer",
            Rejection::BadName(_) => "bad_name",
            Rejection::BadVersion(_) => "bad_version",
            Rejection::BadDescription(_) => "bad_description",
            Rejection::BadCapabilities(_) => "bad_capabilities",
            Rejection::BadSize => "bad_size",
            Rejection::BadReason(_) => "bad_reason",
            Rejection::FromTheFuture => "future",
        }
    }
}

impl From<EnvelopeError> for Rejection {
    fn from(e: EnvelopeError) -> Self {
        match e {
            EnvelopeError::TooLarge { .. } => Rejection::Oversize,
            EnvelopeError::BadSignature | EnvelopeError::BadKey => Rejection::BadSignature,
            EnvelopeError::WrongTag { got, .. } => Rejection::WrongKind(got),
            other => Rejection::Malformed(other.to_string()),
        }
    }
}

/// Checks a package name: 1–64 of `a-z 0-9 - _`, starting with a letter.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad package name {:?}: use 1 to 64 of a-z, 0-9, - and _, starting with a letter",
            truncate(name)
        ))
    }
}

/// Checks the characters of a package version: 1–32 of `0-9 a-z A-Z . - +`, starting with a
/// digit (e.g. `1.2.0`). Packages need only this; releases need [`check_version`].
pub fn check_version_syntax(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad version {:?}: use something like 1.2.0 (digits, letters, '.', '-', '+'; at most 32)",
            truncate(version)
        ))
    }
}

/// Checks a release version: [`check_version_syntax`], and a semantic version
/// (`MAJOR.MINOR.PATCH[-PRE][+BUILD]`), returned parsed.
pub fn check_version(version: &str) -> Result<semver::Version, String> {
    check_version_syntax(version)?;
    semver::Version::parse(version).map_err(|e| {
        format!("bad version {version:?}: a release needs a semantic version such as 1.2.0 ({e})")
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Checks one line of text (a description, a yank reason): at most [`MAX_TEXT_LEN`] bytes, no
/// control characters.
pub fn check_text_field(text: &str) -> Result<(), &'static str> {
    if text.len() > MAX_TEXT_LEN {
        return Err("longer than 200 bytes");
    }
    if text.chars().any(char::is_control) {
        return Err("contains control characters (one line of text only)");
    }
    Ok(())
}

fn check_capabilities(caps: &[String]) -> Result<(), &'static str> {
    if caps.len() > MAX_CAPABILITIES {
        return Err("more than 16");
    }
    for (i, c) in caps.iter().enumerate() {
        if c.is_empty() || c.len() > MAX_CAPABILITY_LEN {
            return Err("each must be 1 to 32 bytes");
        }
        if !c.chars().all(|ch| ch.is_ascii_graphic()) {
            return Err("printable ASCII without spaces only");
        }
        if caps[..i].contains(c) {
            return Err("listed twice");
        }
    }
    Ok(())
}

/// The field rules of a release, after its signature.
pub fn check_release(opened: &Opened<Release>) -> Result<(), Rejection> {
    let r = &opened.value;
    if opened.signer.as_bytes() != &r.publisher {
        return Err(Rejection::WrongSigner);
    }
    check_name(&r.name).map_err(Rejection::BadName)?;
    check_version(&r.version).map_err(Rejection::BadVersion)?;
    check_text_field(&r.description).map_err(Rejection::BadDescription)?;
    check_capabilities(&r.capabilities).map_err(Rejection::BadCapabilities)?;
    if r.size == 0 || r.size > MAX_RELEASE_SIZE {
        return Err(Rejection::BadSize);
    }
    Ok(())
}

/// The field rules of a yank, after its signature.
pub fn check_yank(opened: &Opened<Yank>) -> Result<(), Rejection> {
    let y = &opened.value;
    if opened.signer.as_bytes() != &y.publisher {
        return Err(Rejection::WrongSigner);
    }
    check_name(&y.name).map_err(Rejection::BadName)?;
    check_version(&y.version).map_err(Rejection::BadVersion)?;
    check_text_field(&y.reason).map_err(Rejection::BadReason)?;
    Ok(())
}

/// Decodes and verifies a release or yank envelope, and checks every rule that needs neither
/// the clock nor the catalogue. Capped at [`MAX_ENVELOPE_SIZE`] before anything is parsed;
/// trailing bytes refused.
pub fn decode(bytes: &[u8]) -> Result<Item, Rejection> {
    let envelope = Envelope::decode(bytes, MAX_ENVELOPE_SIZE)?;
    let item = match envelope.tag() {
        RELEASE_TAG => {
            let signer = envelope.verify(RELEASE_TAG)?;
            let value: Release = decode_exact(envelope.payload())?;
            let opened = Opened {
                value,
                signer,
                envelope,
            };
            check_release(&opened)?;
            Item::Release(opened)
        }
        YANK_TAG => {
            let signer = envelope.verify(YANK_TAG)?;
            let value: Yank = decode_exact(envelope.payload())?;
            let opened = Opened {
                value,
                signer,
                envelope,
            };
            check_yank(&opened)?;
            Item::Yank(opened)
        }
        other => return Err(Rejection::WrongKind(truncate(other))),
    };
    Ok(item)
}

/// [`decode`], then the clock: an item dated more than [`MAX_CLOCK_SKEW_MS`] after
/// `now_ms` is refused.
pub fn check_item(bytes: &[u8], now_ms: u64) -> Result<Item, Rejection> {
    let item = decode(bytes)?;
    if item.time_ms() > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(Rejection::FromTheFuture);
    }
    Ok(item)
}

/// [`check_item`], for a release only (a yank is [`Rejection::WrongKind`]).
pub fn open_release(bytes: &[u8], now_ms: u64) -> Result<Opened<Release>, Rejection> {
    match check_item(bytes, now_ms)? {
        Item::Release(r) => Ok(r),
        Item::Yank(_) => Err(Rejection::WrongKind(YANK_TAG.into())),
    }
}

/// [`check_item`], for a yank only (a release is [`Rejection::WrongKind`]).
pub fn open_yank(bytes: &[u8], now_ms: u64) -> Result<Opened<Yank>, Rejection> {
    match check_item(bytes, now_ms)? {
        Item::Yank(y) => Ok(y),
        Item::Release(_) => Err(Rejection::WrongKind(RELEASE_TAG.into())),
    }
}
