//! The node's identity: one ed25519 key, stored in `identity.key` (mode 0600).
//!
//! The same key signs envelopes (as the node, the tenant and, by default, the publisher) and
//! is the libp2p identity, so the [`PeerId`] other nodes see is derived from it. The file is a
//! small text file — a header line and the 32-byte secret in hex — so that an operator can tell
//! what it is, and so that a truncated or edited file is detected instead of silently read.
//!
//! Like `ssh`, a node refuses to use a key file that group or others can read.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use libp2p::PeerId;

/// Name of the key file inside a data directory.
pub const KEY_FILE: &str = "identity.key";
const HEADER: &str = "degroup-ed25519-secret-v1";

/// What can go wrong with a key file. Every message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "no key file at {}; run `degroup init --data-dir {}` to create one",
        path.display(),
        path.parent().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    Missing { path: PathBuf },
    #[error("cannot read key file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "key file {} is accessible by group or others (mode {mode:03o}); run `chmod 600 {}` and start again",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "key file {} is malformed ({reason}); restore it from a backup, or create a new identity with `degroup init --force` (the peer id will change)",
        path.display()
    )]
    Malformed { path: PathBuf, reason: &'static str },
    #[error("key file {} already exists; pass --force to replace it (the peer id will change)", path.display())]
    Exists { path: PathBuf },
    #[error("cannot write key file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// An ed25519 identity.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Self::from_secret(secret))
    }

    /// The identity with this 32-byte secret.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    /// Reads a key file, refusing one that group or others can access or that is malformed.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IdentityError::Missing {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(IdentityError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        if meta.len() > 1024 {
            return Err(malformed(path, "file is larger than a key file can be"));
        }
        let text = fs::read(path).map_err(|source| IdentityError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = std::str::from_utf8(&text).map_err(|_| malformed(path, "not text"))?;
        Self::parse(text).map_err(|reason| malformed(path, reason))
    }

    fn parse(text: &str) -> Result<Self, &'static str> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some(HEADER) {
            return Err("first line is not the degroup key header");
        }
        let hex_secret = lines.next().ok_or("the secret line is missing")?;
        if lines.next().is_some() {
            return Err("unexpected extra lines");
        }
        let mut secret = [0u8; 32];
        hex::decode_to_slice(hex_secret, &mut secret)
            .map_err(|_| "the secret is not 64 hexadecimal digits")?;
        Ok(Self::from_secret(secret))
    }

    /// Writes the key to `path` with mode 0600. Without `force`, an existing file is an error;
    /// with it, the old file is kept next to the new one as `<name>.bak`.
    pub fn save(&self, path: &Path, force: bool) -> Result<(), IdentityError> {
        if path.exists() {
            if !force {
                return Err(IdentityError::Exists {
                    path: path.to_owned(),
                });
            }
            let backup = path.with_extension("key.bak");
            fs::rename(path, &backup).map_err(|source| IdentityError::Write {
                path: path.to_owned(),
                source,
            })?;
        }
        let text = format!("{HEADER}\n{}\n", hex::encode(self.signing.to_bytes()));
        write_private(path, text.as_bytes()).map_err(|source| IdentityError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// The libp2p peer id of this identity.
    pub fn peer_id(&self) -> PeerId {
        peer_id_of(&self.signing.verifying_key())
    }

    /// The same key as a libp2p keypair, for the swarm.
    pub fn libp2p_keypair(&self) -> libp2p::identity::Keypair {
        let secret = libp2p::identity::ed25519::SecretKey::try_from_bytes(self.signing.to_bytes())
            .map(libp2p::identity::ed25519::Keypair::from);
        match secret {
            Ok(kp) => kp.into(),
            // A 32-byte array is always a valid ed25519 secret.
            Err(_) => unreachable!("32 bytes are a valid ed25519 secret"),
        }
    }

    /// The key that signs envelopes.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }
}

/// The libp2p peer id that belongs to an ed25519 public key.
pub fn peer_id_of(key: &VerifyingKey) -> PeerId {
    match libp2p::identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()) {
        Ok(pk) => libp2p::identity::PublicKey::from(pk).to_peer_id(),
        // A VerifyingKey is always a valid compressed point, which is all libp2p checks.
        Err(_) => unreachable!("a verifying key is a valid ed25519 public key"),
    }
}

/// The libp2p peer id of an ed25519 public key given as bytes, without decompressing the point:
/// an ed25519 peer id is the identity multihash of the protobuf-encoded key
/// (`08 01 12 20` ‖ key). `None` only if libp2p refuses the multihash, which it does not for 36
/// bytes.
pub fn peer_id_of_bytes(key: &[u8; 32]) -> Option<PeerId> {
    let mut encoded = [0u8; 36];
    encoded[..4].copy_from_slice(&[0x08, 0x01, 0x12, 0x20]);
    encoded[4..].copy_from_slice(key);
    let mh = libp2p::multihash::Multihash::<64>::wrap(0x00, &encoded).ok()?;
    PeerId::from_multihash(mh).ok()
}

/// The ed25519 public key inside a peer id (ed25519 peer ids embed their key), if it is one.
pub fn key_of_peer(peer: &PeerId) -> Option<[u8; 32]> {
    let mh: libp2p::multihash::Multihash<64> = (*peer).into();
    if mh.code() != 0x00 {
        return None;
    }
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(pk.try_into_ed25519().ok()?.to_bytes())
}

fn malformed(path: &Path, reason: &'static str) -> IdentityError {
    IdentityError::Malformed {
        path: path.to_owned(),
        reason,
    }
}

/// Writes a file readable only by its owner: created with mode 0600 under a temporary name,
/// synced, then renamed into place, so a reader never sees a partial file.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    if let Some(d) = path.parent().and_then(|dir| fs::File::open(dir).ok()) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_peer_id() -> Result<(), IdentityError> {
        let dir = tempfile::tempdir().map_err(|e| IdentityError::Random(e.to_string()))?;
        let path = dir.path().join(KEY_FILE);
        let id = Identity::generate()?;
        id.save(&path, false)?;
        let mode = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        let back = Identity::load(&path)?;
        assert_eq!(back.peer_id(), id.peer_id());
        assert_eq!(
            id.libp2p_keypair().public().to_peer_id(),
            id.peer_id(),
            "libp2p and envelope identities must agree"
        );
        assert!(matches!(
            id.save(&path, false),
            Err(IdentityError::Exists { .. })
        ));
        Ok(())
    }

    #[test]
    fn refuses_open_permissions_and_garbage() -> Result<(), IdentityError> {
        let dir = tempfile::tempdir().map_err(|e| IdentityError::Random(e.to_string()))?;
        let path = dir.path().join(KEY_FILE);
        Identity::generate()?.save(&path, false)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).ok();
        assert!(matches!(
            Identity::load(&path),
            Err(IdentityError::Permissions { mode: 0o644, .. })
        ));
        for garbage in [
            "",
            "hello",
            "degroup-ed25519-secret-v1\nzz",
            "degroup-ed25519-secret-v1\n00",
        ] {
            fs::remove_file(&path).ok();
            write_private(&path, garbage.as_bytes()).map_err(|source| IdentityError::Write {
                path: path.clone(),
                source,
            })?;
            assert!(
                matches!(Identity::load(&path), Err(IdentityError::Malformed { .. })),
                "{garbage:?}"
            );
        }
        Ok(())
    }
}
