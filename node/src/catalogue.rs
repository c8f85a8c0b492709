//! The catalogue: the federation's list of published plugin packages.
//!
//! A publisher announces a version of a package with a signed [`Release`]
//! (`degroup/release/v1`: name, semver version, BLAKE3 hash and size of the `.dgp` file,
//! description, capabilities) and withdraws it with a signed [`Yank`] (`degroup/yank/v1`).
//! Nothing else is ever said about a package: versions are immutable, the first release seen
//! for a (publisher, name, version) wins, and a yanked release stays deployable by exact hash.
//!
//! - [`release`]: the two kinds, their field rules and stateless checks (also the package name
//!   and version rules `plugin::package` uses).
//! - [`book`]: the [`Catalogue`] itself (memory + the `releases` sled tree), which decides
//!   accept / ignore / reject for every envelope, like the advert book.
//! - [`gossip`]: the [`CATALOGUE_TOPIC`] topic, with the catalogue as its validator.
//! - [`sync`]: `/degroup/catalogue/sync/1`, the late-joiner and anti-entropy pull.
//! - [`reference`]: what a user types to name a package (`greeter@^0.1`, `ab12/greeter`,
//!   `blake3:…`), and its [`resolve`]-ution against the catalogue and the trusted publishers.
//! - [`trust`]: the `[trust]` table of the configuration (publishers whose names resolve
//!   without a key prefix).
//!
//! The dependency runs one way: `plugin` uses the catalogue's rules, the catalogue knows
//! nothing of plugins.

pub mod book;
pub mod gossip;
pub mod reference;
pub mod release;
pub mod sync;
pub mod trust;

pub use book::{Catalogue, Entry, MAX_PER_PUBLISHER, MAX_TOTAL, Verdict};
pub use gossip::{CATALOGUE_TOPIC, topic};
pub use reference::{RefError, Reference, ResolveError, Resolved, VersionSpec, resolve};
pub use release::{
    Hash, Item, MAX_RELEASE_SIZE, RELEASE_TAG, Rejection, Release, YANK_TAG, Yank, check_name,
    check_version, check_version_syntax,
};
pub use sync::{CatalogueSyncProtocol, sync};
pub use trust::{TrustConfig, TrustedPublisher};

use crate::error::{Coded, ErrorCode};
use crate::store::StoreError;

/// Why the catalogue refused an operation of this node's own.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid release or yank: {0}")]
    Invalid(#[from] Rejection),
    #[error(
        "version {version} of {name} is already published with other content (blake3:{hash_hex}); versions are immutable: publish a new version"
    )]
    Republished {
        name: String,
        version: String,
        hash_hex: String,
    },
    #[error("you have published no version {version} of {name}")]
    NotFound { name: String, version: String },
    #[error(
        "the catalogue refuses more entries ({0}); at most {MAX_PER_PUBLISHER} releases per publisher and {MAX_TOTAL} in all"
    )]
    Full(&'static str),
}

impl CatalogueError {
    /// The stable code of the error.
    pub fn code(&self) -> ErrorCode {
        match self {
            CatalogueError::Store(_) => ErrorCode::Unavailable,
            CatalogueError::Invalid(_) => ErrorCode::BadInput,
            CatalogueError::Republished { .. } | CatalogueError::Full(_) => ErrorCode::Conflict,
            CatalogueError::NotFound { .. } => ErrorCode::NotFound,
        }
    }
}

impl Coded for CatalogueError {
    fn code(&self) -> ErrorCode {
        CatalogueError::code(self)
    }
}

/// Decodes and verifies one gossip message or sync item (a release or a yank) and checks its
/// fields, without the clock or the catalogue: capped at 4096 bytes before parsing, trailing
/// bytes refused. The entry point of the fuzz targets.
pub fn decode_item(bytes: &[u8]) -> Result<Item, CatalogueError> {
    Ok(release::decode(bytes)?)
}

#[cfg(test)]
mod tests;
