//! Plugin packages (`.dgp`): one file holding a component and its signed manifest.
//!
//! Layout: the magic `DGP1`, then postcard of [`PackageFile`] (the manifest's signed envelope
//! bytes, then the component bytes). The manifest (`degroup/plugin/v1`) names the package and
//! version, and binds the component by its blake3 hash and size to the publisher's ed25519
//! key, which also signs it. [`Package::open`] checks, in order: the size cap (before reading
//! anything), the magic, the structure (no trailing bytes), the signature, that the signer is
//! the publisher named, the hash and size of the component, and that it is a component.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::signed::{Envelope, EnvelopeError, Kind, decode_exact};

/// First bytes of a package file.
pub const MAGIC: &[u8; 4] = b"DGP1";
/// Largest component accepted by any node (a host lowers it with `[blobs] max_package`).
pub const MAX_COMPONENT: usize = 64 * 1024 * 1024;
/// Largest package file (component + manifest + framing).
pub const MAX_PACKAGE: usize = MAX_COMPONENT + 16 * 1024;
/// The world a package made now targets.
pub const WORLD: &str = "degroup:plugin/plugin@0.1.1";
/// Every world a package may target: 0.1.x are semver-compatible, so this node runs a
/// package made for any of them.
pub const WORLDS: &[&str] = &[WORLD, "degroup:plugin/plugin@0.1.0"];
/// Capabilities a manifest may request.
pub const CAPABILITIES: &[&str] = &["kv", "log", "lease", "clocks", "random", "http"];

/// What a package is, signed by its publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// blake3 of the component.
    pub hash: [u8; 32],
    /// Size of the component in bytes.
    pub size: u64,
    /// The publisher's ed25519 key; the manifest's signer.
    pub publisher: [u8; 32],
    /// Host features the plugin asks for (see [`CAPABILITIES`]).
    pub capabilities: Vec<String>,
    /// The WIT world the component targets.
    pub world: String,
    pub created_ms: u64,
}

impl Kind for Manifest {
    const TAG: &'static str = "degroup/plugin/v1";
    const MAX_SIZE: usize = 4096;
}

/// The file's structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageFile {
    /// The manifest's signed envelope.
    pub manifest: Vec<u8>,
    pub component: Vec<u8>,
}

/// Why a package was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("package of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("not a degroup package (no DGP1 header); make one with `degroup plugin pack`")]
    NotAPackage,
    #[error("malformed package: {0}")]
    Malformed(String),
    #[error("package manifest: {0}")]
    Manifest(EnvelopeError),
    #[error("the manifest is signed by a key other than the publisher it names")]
    WrongSigner,
    #[error("the component does not match the signed manifest (hash or size differs): tampered")]
    Tampered,
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("{0}")]
    Invalid(String),
}

/// A verified package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub manifest: Manifest,
    /// The signed manifest as it travels.
    pub manifest_bytes: Vec<u8>,
    pub component: Vec<u8>,
}

/// Checks that bytes look like a component (not a core module, not anything else).
pub fn check_component(bytes: &[u8]) -> Result<(), PackageError> {
    const COMPONENT: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    const MODULE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    match bytes.get(..8) {
        Some(h) if h == COMPONENT => Ok(()),
        Some(h) if h == MODULE => Err(PackageError::NotAComponent(
            "this is a core module; build for wasm32-wasip2 (`degroup plugin build`), which makes a component".into(),
        )),
        _ => Err(PackageError::NotAComponent("no wasm component header".into())),
    }
}

/// Checks a package name: 1–64 of `a-z 0-9 - _`, starting with a letter. The rule is the
/// catalogue's ([`crate::catalogue::check_name`]), so every package can be published.
pub fn check_name(name: &str) -> Result<(), PackageError> {
    crate::catalogue::check_name(name).map_err(PackageError::Invalid)
}

/// Checks a version: 1–32 of `0-9 a-z A-Z . - +`, starting with a digit (e.g. `1.2.0`). The
/// rule is the catalogue's ([`crate::catalogue::check_version_syntax`]); publishing a release
/// further needs a semantic version ([`crate::catalogue::check_version`]).
pub fn check_version(version: &str) -> Result<(), PackageError> {
    crate::catalogue::check_version_syntax(version).map_err(PackageError::Invalid)
}

impl Package {
    /// Signs a component into a package.
    pub fn pack(
        key: &SigningKey,
        component: Vec<u8>,
        name: &str,
        version: &str,
        capabilities: Vec<String>,
        created_ms: u64,
    ) -> Result<Self, PackageError> {
        check_name(name)?;
        check_version(version)?;
        if component.len() > MAX_COMPONENT {
            return Err(PackageError::TooLarge {
                size: component.len(),
                max: MAX_COMPONENT,
            });
        }
        check_component(&component)?;
        for c in &capabilities {
            if !CAPABILITIES.contains(&c.as_str()) {
                return Err(PackageError::Invalid(format!(
                    "unknown capability {c:?}; known: {}",
                    CAPABILITIES.join(", ")
                )));
            }
        }
        let manifest = Manifest {
            name: name.to_owned(),
            version: version.to_owned(),
            hash: *blake3::hash(&component).as_bytes(),
            size: component.len() as u64,
            publisher: key.verifying_key().to_bytes(),
            capabilities,
            world: WORLD.to_owned(),
            created_ms,
        };
        let manifest_bytes = Envelope::seal_kind(key, &manifest)
            .map_err(PackageError::Manifest)?
            .to_bytes();
        Ok(Self {
            manifest,
            manifest_bytes,
            component,
        })
    }

    /// The file form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let file = PackageFile {
            manifest: self.manifest_bytes.clone(),
            component: self.component.clone(),
        };
        let mut out = MAGIC.to_vec();
        out.extend(postcard::to_stdvec(&file).unwrap_or_default());
        out
    }

    /// Parses and verifies a package file.
    pub fn open(bytes: &[u8]) -> Result<Self, PackageError> {
        Self::open_capped(bytes, MAX_PACKAGE as u64)
    }

    /// Parses and verifies a package file of at most `max` bytes (and never more than
    /// [`MAX_PACKAGE`]).
    pub fn open_capped(bytes: &[u8], max: u64) -> Result<Self, PackageError> {
        let max = usize::try_from(max).unwrap_or(MAX_PACKAGE).min(MAX_PACKAGE);
        if bytes.len() > max {
            return Err(PackageError::TooLarge {
                size: bytes.len(),
                max,
            });
        }
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(PackageError::NotAPackage)?;
        let file: PackageFile =
            decode_exact(body).map_err(|e| PackageError::Malformed(e.to_string()))?;
        Self::from_parts(file.manifest, file.component)
    }

    /// Verifies a manifest and a component received separately.
    pub fn from_parts(manifest_bytes: Vec<u8>, component: Vec<u8>) -> Result<Self, PackageError> {
        if component.len() > MAX_COMPONENT {
            return Err(PackageError::TooLarge {
                size: component.len(),
                max: MAX_COMPONENT,
            });
        }
        let opened = Envelope::open::<Manifest>(&manifest_bytes).map_err(PackageError::Manifest)?;
        let manifest = opened.value;
        if opened.signer.to_bytes() != manifest.publisher {
            return Err(PackageError::WrongSigner);
        }
        if manifest.size != component.len() as u64
            || blake3::hash(&component).as_bytes() != &manifest.hash
        {
            return Err(PackageError::Tampered);
        }
        check_name(&manifest.name)?;
        check_version(&manifest.version)?;
        if !WORLDS.contains(&manifest.world.as_str()) {
            return Err(PackageError::Invalid(format!(
                "package targets {}, this node runs {WORLD}",
                manifest.world
            )));
        }
        check_component(&component)?;
        Ok(Self {
            manifest,
            manifest_bytes,
            component,
        })
    }

    /// The publisher key, hex.
    pub fn publisher_hex(&self) -> String {
        hex::encode(self.manifest.publisher)
    }

    /// The content hash, hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.manifest.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component() -> Vec<u8> {
        let mut c = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        c.extend([7u8; 100]);
        c
    }

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn round_trip_and_every_tamper_is_caught() -> Result<(), PackageError> {
        let pkg = Package::pack(
            &key(1),
            component(),
            "counter",
            "1.0.0",
            vec!["kv".into()],
            5,
        )?;
        let bytes = pkg.to_bytes();
        assert_eq!(Package::open(&bytes)?, pkg);
        // Flip every byte of the file in turn: each copy is refused.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                Package::open(&bad).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
        // Re-signing the manifest with another key while naming the first publisher.
        let mut m = pkg.manifest.clone();
        m.publisher = key(1).verifying_key().to_bytes();
        let forged = Envelope::seal_kind(&key(2), &m)
            .map_err(PackageError::Manifest)?
            .to_bytes();
        assert_eq!(
            Package::from_parts(forged, component()),
            Err(PackageError::WrongSigner)
        );
        Ok(())
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        assert_eq!(Package::open(b"nope"), Err(PackageError::NotAPackage));
        assert!(matches!(
            Package::open(&vec![0; MAX_PACKAGE + 1]),
            Err(PackageError::TooLarge { .. })
        ));
        let module = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        assert!(matches!(
            Package::pack(&key(1), module, "x", "1", vec![], 0),
            Err(PackageError::NotAComponent(_))
        ));
        assert!(Package::pack(&key(1), component(), "Bad Name", "1", vec![], 0).is_err());
        assert!(Package::pack(&key(1), component(), "ok", "v1", vec![], 0).is_err());
        assert!(Package::pack(&key(1), component(), "ok", "1", vec!["root".into()], 0).is_err());
        let mut big = component();
        big.resize(MAX_COMPONENT + 1, 0);
        assert!(matches!(
            Package::pack(&key(1), big, "ok", "1", vec![], 0),
            Err(PackageError::TooLarge { .. })
        ));
    }
}
