//! Signed envelopes: everything that crosses the network and carries meaning.
//!
//! An envelope is a domain tag (`degroup/advert/v1`, `degroup/lease/v1`, …), the exact payload
//! bytes (postcard), the signer's ed25519 public key and a signature over `tag || 0x00 ||
//! payload`, checked with `verify_strict`. The bytes that were signed are the bytes that travel
//! and are stored: a receiver verifies the payload bytes it got, then decodes them, and never
//! re-encodes before verifying.
//!
//! Decoding is bounded: every kind of message has a size cap ([`Kind::MAX_SIZE`]) checked before
//! any parsing, and trailing bytes after the envelope or after the payload are rejected.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The longest domain tag accepted.
pub const MAX_TAG_LEN: usize = 64;

/// A kind of signed message: its domain tag and the largest envelope accepted for it.
pub trait Kind: Serialize + DeserializeOwned {
    /// Domain tag, e.g. `degroup/advert/v1`.
    const TAG: &'static str;
    /// Largest encoded envelope accepted for this kind, in bytes.
    const MAX_SIZE: usize;
}

/// Why an envelope was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error("wrong message kind: expected {expected}, got {got}")]
    WrongTag { expected: &'static str, got: String },
    #[error("signer key is not a valid ed25519 public key")]
    BadKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("malformed payload: {0}")]
    Payload(String),
}

/// An envelope as it travels: tag, payload bytes, signer and signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    tag: String,
    payload: Vec<u8>,
    signer: [u8; 32],
    signature: Vec<u8>,
}

fn signed_message(tag: &str, payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(tag.len() + 1 + payload.len());
    msg.extend_from_slice(tag.as_bytes());
    msg.push(0);
    msg.extend_from_slice(payload);
    msg
}

impl Envelope {
    /// Signs `payload` under `tag`.
    pub fn seal(key: &SigningKey, tag: &str, payload: Vec<u8>) -> Self {
        let signature = key.sign(&signed_message(tag, &payload));
        Self {
            tag: tag.to_owned(),
            payload,
            signer: key.verifying_key().to_bytes(),
            signature: signature.to_bytes().to_vec(),
        }
    }

    /// Encodes `value` with postcard and signs it as a message of kind `K`.
    pub fn seal_kind<K: Kind>(key: &SigningKey, value: &K) -> Result<Self, EnvelopeError> {
        let payload =
            postcard::to_stdvec(value).map_err(|e| EnvelopeError::Payload(e.to_string()))?;
        let env = Self::seal(key, K::TAG, payload);
        let size = env.encoded_len();
        if size > K::MAX_SIZE {
            return Err(EnvelopeError::TooLarge {
                size,
                max: K::MAX_SIZE,
            });
        }
        Ok(env)
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain strings, byte vectors and arrays into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    fn encoded_len(&self) -> usize {
        postcard::experimental::serialized_size(self).unwrap_or(usize::MAX)
    }

    /// Parses the wire form without verifying it: size cap first, then structure, then no
    /// trailing bytes.
    pub fn decode(bytes: &[u8], max_size: usize) -> Result<Self, EnvelopeError> {
        if bytes.len() > max_size {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                max: max_size,
            });
        }
        let (env, rest): (Envelope, _) = postcard::take_from_bytes(bytes)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(EnvelopeError::Trailing(rest.len()));
        }
        if env.tag.is_empty() || env.tag.len() > MAX_TAG_LEN || env.tag.contains('\0') {
            return Err(EnvelopeError::Malformed("bad tag".into()));
        }
        if env.signature.len() != Signature::BYTE_SIZE {
            return Err(EnvelopeError::Malformed("signature is not 64 bytes".into()));
        }
        Ok(env)
    }

    /// Checks the tag and the signature; returns the signer.
    pub fn verify(&self, expected_tag: &'static str) -> Result<VerifyingKey, EnvelopeError> {
        if self.tag != expected_tag {
            return Err(EnvelopeError::WrongTag {
                expected: expected_tag,
                got: self.tag.chars().take(MAX_TAG_LEN).collect(),
            });
        }
        let key = VerifyingKey::from_bytes(&self.signer).map_err(|_| EnvelopeError::BadKey)?;
        let sig =
            Signature::from_slice(&self.signature).map_err(|_| EnvelopeError::BadSignature)?;
        key.verify_strict(&signed_message(&self.tag, &self.payload), &sig)
            .map_err(|_| EnvelopeError::BadSignature)?;
        Ok(key)
    }

    /// Decodes, verifies and decodes the payload of a message of kind `K`.
    pub fn open<K: Kind>(bytes: &[u8]) -> Result<Opened<K>, EnvelopeError> {
        let envelope = Self::decode(bytes, K::MAX_SIZE)?;
        let signer = envelope.verify(K::TAG)?;
        let value = decode_exact(&envelope.payload)?;
        Ok(Opened {
            value,
            signer,
            envelope,
        })
    }

    /// The domain tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The exact payload bytes that were signed.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The signature bytes (64 once [`Envelope::decode`] accepted the envelope).
    pub fn signature_bytes(&self) -> &[u8] {
        &self.signature
    }

    /// The exact bytes the signature covers: `tag || 0x00 || payload`.
    pub fn signed_message(&self) -> Vec<u8> {
        signed_message(&self.tag, &self.payload)
    }

    /// The signer's public key bytes (not yet checked unless [`Envelope::verify`] succeeded).
    pub fn signer_bytes(&self) -> &[u8; 32] {
        &self.signer
    }
}

/// A verified message: the decoded value, who signed it, and the envelope as received.
#[derive(Debug, Clone)]
pub struct Opened<K> {
    pub value: K,
    pub signer: VerifyingKey,
    pub envelope: Envelope,
}

/// Decodes a postcard value and rejects trailing bytes.
pub fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EnvelopeError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| EnvelopeError::Payload(e.to_string()))?;
    if !rest.is_empty() {
        return Err(EnvelopeError::Trailing(rest.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
