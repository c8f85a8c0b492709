//! Package references — what a user types to name a package — and their resolution.
//!
//! ```text
//! blake3:<64 hex>            exactly that package file
//! greeter                    the latest release of greeter by a trusted publisher
//! greeter@0.1.0              exactly version 0.1.0 (not cargo's caret: no 0.1.3)
//! greeter@^0.1  @~1.2  @>=1, <2  @*   the highest release matching the range
//! 3f2a9c01/greeter@1.0.0     any form above, from the publisher whose key starts with 3f2a9c01
//! ```
//!
//! [`resolve`] turns a reference into one catalogue [`Entry`]:
//!
//! - without a key prefix, only publishers in `[trust] publishers` are considered: a name known
//!   only from others is [`ResolveError::Untrusted`] (the message says how to trust one or how
//!   to name it with a prefix), a name several trusted publishers use is
//!   [`ResolveError::Ambiguous`];
//! - with a prefix (4 to 64 hex digits), any publisher whose key starts with it; several are
//!   ambiguous;
//! - latest is the highest version neither yanked nor a pre-release (pre-releases only when
//!   there is nothing else); a range takes the highest non-yanked match; an exact version that
//!   is yanked is [`ResolveError::Yanked`], whose message gives the hash that still deploys it;
//! - `blake3:` resolves to any release of that file; a yanked one resolves with a warning.
//!   A hash the catalogue does not know is [`ResolveError::Unknown`]: callers may still fetch
//!   and deploy a package by a hash the catalogue does not list (the package verifies itself).

use std::fmt;
use std::str::FromStr;

use semver::{Version, VersionReq};

use super::book::{Catalogue, Entry};
use super::release::{Hash, check_name};
use super::trust::TrustedPublisher;
use crate::error::{Coded, ErrorCode};

/// Longest reference accepted, in bytes.
pub const MAX_REFERENCE_LEN: usize = 256;
/// Shortest key prefix accepted, in hex digits.
pub const MIN_PREFIX_LEN: usize = 4;
/// Hex digits of a publisher key shown in messages.
pub const SHOWN_PREFIX_LEN: usize = 16;

/// Which version of a package a reference asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSpec {
    /// No `@`: the highest non-yanked, non-pre-release version.
    Latest,
    /// `@1.2.0`: exactly that version.
    Exact(Version),
    /// `@^1.2`, `@~1.2`, `@>=1, <2`, `@*`: the highest non-yanked version matching.
    Range(VersionReq),
}

/// A package reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `blake3:<64 hex>`.
    Hash(Hash),
    /// `[PREFIX/]NAME[@SPEC]`.
    Named {
        /// Lowercase hex prefix of the publisher's key, 4 to 64 digits.
        publisher: Option<String>,
        name: String,
        version: VersionSpec,
    },
}

/// Why a reference does not parse. Each message is a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error(
        "empty package reference; write NAME, NAME@VERSION, PREFIX/NAME or blake3:HASH (64 hex digits)"
    )]
    Empty,
    #[error("package reference of {len} bytes is too long (at most {MAX_REFERENCE_LEN})")]
    TooLong { len: usize },
    #[error("bad hash in {reference:?}: after `blake3:` write the package's 64 hex digits")]
    BadHash { reference: String },
    #[error(
        "bad publisher prefix {prefix:?}: write {MIN_PREFIX_LEN} to 64 hex digits of the publisher's key, then `/NAME`"
    )]
    BadPrefix { prefix: String },
    #[error("{0}")]
    BadName(String),
    #[error(
        "bad version {spec:?}: write an exact version (1.2.0), a range (^1.2, ~1.2, >=1, <2) or nothing for the latest ({reason})"
    )]
    BadVersion { spec: String, reason: String },
}

impl RefError {
    /// Always [`ErrorCode::BadInput`].
    pub fn code(&self) -> ErrorCode {
        ErrorCode::BadInput
    }
}

impl Coded for RefError {
    fn code(&self) -> ErrorCode {
        ErrorCode::BadInput
    }
}

fn shown(s: &str) -> String {
    s.chars().take(80).collect()
}

impl FromStr for Reference {
    type Err = RefError;

    fn from_str(input: &str) -> Result<Self, RefError> {
        if input.len() > MAX_REFERENCE_LEN {
            return Err(RefError::TooLong { len: input.len() });
        }
        let s = input.trim();
        if s.is_empty() {
            return Err(RefError::Empty);
        }
        if let Some(hex_part) = s.strip_prefix("blake3:") {
            let mut hash = [0u8; 32];
            return match hex::decode_to_slice(hex_part, &mut hash) {
                Ok(()) => Ok(Reference::Hash(hash)),
                Err(_) => Err(RefError::BadHash {
                    reference: shown(s),
                }),
            };
        }
        let (path, spec) = match s.split_once('@') {
            Some((path, spec)) => (path, Some(spec.trim())),
            None => (s, None),
        };
        let (publisher, name) = match path.split_once('/') {
            Some((prefix, name)) => {
                let ok = (MIN_PREFIX_LEN..=64).contains(&prefix.len())
                    && prefix.chars().all(|c| c.is_ascii_hexdigit());
                if !ok {
                    return Err(RefError::BadPrefix {
                        prefix: shown(prefix),
                    });
                }
                (Some(prefix.to_ascii_lowercase()), name)
            }
            None => (None, path),
        };
        check_name(name).map_err(RefError::BadName)?;
        let version = match spec {
            None | Some("latest") => VersionSpec::Latest,
            Some(spec) => parse_spec(spec)?,
        };
        Ok(Reference::Named {
            publisher,
            name: name.to_owned(),
            version,
        })
    }
}

fn parse_spec(spec: &str) -> Result<VersionSpec, RefError> {
    if spec.is_empty() {
        return Err(RefError::BadVersion {
            spec: String::new(),
            reason: "nothing after @".into(),
        });
    }
    if let Ok(v) = Version::parse(spec) {
        return Ok(VersionSpec::Exact(v));
    }
    VersionReq::parse(spec)
        .map(VersionSpec::Range)
        .map_err(|e| RefError::BadVersion {
            spec: shown(spec),
            reason: e.to_string(),
        })
}

impl fmt::Display for VersionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSpec::Latest => f.write_str("latest"),
            VersionSpec::Exact(v) => write!(f, "{v}"),
            VersionSpec::Range(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Hash(h) => write!(f, "blake3:{}", hex::encode(h)),
            Reference::Named {
                publisher,
                name,
                version,
            } => {
                if let Some(p) = publisher {
                    write!(f, "{p}/")?;
                }
                f.write_str(name)?;
                match version {
                    VersionSpec::Latest => Ok(()),
                    spec => write!(f, "@{spec}"),
                }
            }
        }
    }
}

/// What a reference resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub entry: Entry,
    /// Something the user should hear, e.g. that the release is yanked.
    pub warning: Option<String>,
}

/// Why a reference resolves to nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "{reference} is not in the catalogue (is the publisher's node connected to the federation? try `degroup search`)"
    )]
    Unknown { reference: String },
    #[error("no release of {reference} matches: {reason}")]
    NoMatch { reference: String, reason: String },
    #[error(
        "{name} is published only by publishers this node does not trust ({}); add one to `[trust] publishers` in config.toml, or write PREFIX/{name} with a prefix of the publisher's key",
        publishers.join(", ")
    )]
    Untrusted {
        name: String,
        publishers: Vec<String>,
    },
    #[error(
        "{name} is published by several publishers ({}); write PREFIX/{name} with a prefix of the one you mean",
        publishers.join(", ")
    )]
    Ambiguous {
        name: String,
        publishers: Vec<String>,
    },
    #[error(
        "version {version} of {name} is yanked by its publisher; deploying it by its exact hash (blake3:{hash_hex}) still works"
    )]
    Yanked {
        name: String,
        version: String,
        hash_hex: String,
    },
}

impl ResolveError {
    /// The stable code: not found, forbidden (untrusted), bad input (ambiguous) or conflict
    /// (yanked).
    pub fn code(&self) -> ErrorCode {
        match self {
            ResolveError::Unknown { .. } | ResolveError::NoMatch { .. } => ErrorCode::NotFound,
            ResolveError::Untrusted { .. } => ErrorCode::Forbidden,
            ResolveError::Ambiguous { .. } => ErrorCode::BadInput,
            ResolveError::Yanked { .. } => ErrorCode::Conflict,
        }
    }
}

impl Coded for ResolveError {
    fn code(&self) -> ErrorCode {
        ResolveError::code(self)
    }
}

fn short(publisher_hex: &str, at_least: usize) -> String {
    let n = SHOWN_PREFIX_LEN.max(at_least.saturating_add(4)).min(64);
    publisher_hex.chars().take(n).collect()
}

fn yank_warning(entry: &Entry) -> Option<String> {
    entry.yanked.as_ref().map(|y| {
        let why = if y.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", y.reason)
        };
        format!(
            "version {} of {} is yanked{why}; deploying by exact hash",
            entry.release.version, entry.release.name
        )
    })
}

/// Resolves a reference against the catalogue; `trusted` is the node's `[trust] publishers`.
pub fn resolve(
    catalogue: &Catalogue,
    reference: &Reference,
    trusted: &[TrustedPublisher],
) -> Result<Resolved, ResolveError> {
    let trusted_keys: Vec<([u8; 32], &str)> = trusted
        .iter()
        .filter_map(|t| t.key_bytes().map(|k| (k, t.name.as_str())))
        .collect();
    match reference {
        Reference::Hash(hash) => {
            let mut entries = catalogue.by_hash(hash);
            // Prefer a trusted publisher's release (anyone may sign a release naming any
            // hash), then a live one.
            entries.sort_by_key(|e| {
                (
                    !trusted_keys.iter().any(|(k, _)| *k == e.release.publisher),
                    e.yanked.is_some(),
                )
            });
            let entry = entries
                .into_iter()
                .next()
                .ok_or_else(|| ResolveError::Unknown {
                    reference: reference.to_string(),
                })?;
            Ok(Resolved {
                warning: yank_warning(&entry),
                entry,
            })
        }
        Reference::Named {
            publisher,
            name,
            version,
        } => {
            let all = catalogue.releases(name);
            if all.is_empty() {
                return Err(ResolveError::Unknown {
                    reference: reference.to_string(),
                });
            }
            let mut publishers: Vec<[u8; 32]> = all.iter().map(|e| e.release.publisher).collect();
            publishers.dedup();
            let chosen = match publisher {
                Some(prefix) => {
                    let matching: Vec<[u8; 32]> = publishers
                        .into_iter()
                        .filter(|p| hex::encode(p).starts_with(prefix.as_str()))
                        .collect();
                    match matching.as_slice() {
                        [] => {
                            return Err(ResolveError::Unknown {
                                reference: reference.to_string(),
                            });
                        }
                        [one] => *one,
                        many => {
                            return Err(ResolveError::Ambiguous {
                                name: name.clone(),
                                publishers: many
                                    .iter()
                                    .map(|p| label(p, prefix.len(), &trusted_keys))
                                    .collect(),
                            });
                        }
                    }
                }
                None => {
                    let matching: Vec<[u8; 32]> = publishers
                        .iter()
                        .copied()
                        .filter(|p| trusted_keys.iter().any(|(k, _)| k == p))
                        .collect();
                    match matching.as_slice() {
                        [] => {
                            return Err(ResolveError::Untrusted {
                                name: name.clone(),
                                publishers: publishers
                                    .iter()
                                    .map(|p| short(&hex::encode(p), 0))
                                    .collect(),
                            });
                        }
                        [one] => *one,
                        many => {
                            return Err(ResolveError::Ambiguous {
                                name: name.clone(),
                                publishers: many
                                    .iter()
                                    .map(|p| label(p, 0, &trusted_keys))
                                    .collect(),
                            });
                        }
                    }
                }
            };
            // Newest first (the catalogue's order within one publisher).
            let versions: Vec<Entry> = all
                .into_iter()
                .filter(|e| e.release.publisher == chosen)
                .collect();
            pick(reference, name, version, &versions)
        }
    }
}

fn label(publisher: &[u8; 32], typed: usize, trusted: &[([u8; 32], &str)]) -> String {
    let hex = short(&hex::encode(publisher), typed);
    match trusted.iter().find(|(k, _)| k == publisher) {
        Some((_, name)) => format!("{hex} ({name})"),
        None => hex,
    }
}

/// Picks the version asked for among one publisher's releases, sorted newest first.
fn pick(
    reference: &Reference,
    name: &str,
    spec: &VersionSpec,
    versions: &[Entry],
) -> Result<Resolved, ResolveError> {
    let parsed = |e: &Entry| Version::parse(&e.release.version).ok();
    let no_match = |reason: String| ResolveError::NoMatch {
        reference: reference.to_string(),
        reason,
    };
    let entry = match spec {
        VersionSpec::Latest => {
            let live = || {
                versions
                    .iter()
                    .filter(|e| e.yanked.is_none())
                    .filter_map(|e| parsed(e).map(|v| (v, e)))
            };
            live()
                .find(|(v, _)| v.pre.is_empty())
                .or_else(|| live().next())
                .map(|(_, e)| e.clone())
                .ok_or_else(|| no_match("every version is yanked".into()))?
        }
        VersionSpec::Exact(want) => {
            let entry = versions
                .iter()
                .find(|e| parsed(e).as_ref() == Some(want))
                .cloned()
                .ok_or_else(|| no_match(format!("there is no version {want}")))?;
            if entry.yanked.is_some() {
                return Err(ResolveError::Yanked {
                    name: name.to_owned(),
                    version: entry.release.version.clone(),
                    hash_hex: entry.hash_hex.clone(),
                });
            }
            entry
        }
        VersionSpec::Range(req) => versions
            .iter()
            .filter(|e| e.yanked.is_none())
            .find(|e| parsed(e).is_some_and(|v| req.matches(&v)))
            .cloned()
            .ok_or_else(|| no_match(format!("no version that is not yanked matches {req}")))?,
    };
    Ok(Resolved {
        entry,
        warning: None,
    })
}
