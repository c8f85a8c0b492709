//! The group document and the leave notice: what a tenant signs, what a host signs.
//!
//! A [`GroupDoc`] travels as a signed envelope with tag [`GROUP_TAG`], signed by the tenant
//! (its `tenant` field must be the signer). Its version only grows; a host keeps the newest.
//! Members are sorted by id, unique, and bounded ([`MAX_MEMBERS`]); every string is bounded.
//!
//! A [`Left`] notice ([`LEFT_TAG`]) is signed by the host of a deployment that stopped: "the
//! deployment X of tenant T in group G, listed on me, has stopped". A receiver accepts it only
//! when its own newest doc of (T, G) lists X on the signer, so a host can only speak for its
//! own deployments.

use serde::{Deserialize, Serialize};

use crate::signed::{Envelope, EnvelopeError, Kind, Opened};

/// Domain tag of group documents.
pub const GROUP_TAG: &str = "degroup/group/v1";
/// Domain tag of leave notices.
pub const LEFT_TAG: &str = "degroup/group-left/v1";
/// Most members of one group.
pub const MAX_MEMBERS: usize = 256;
/// Longest group name.
pub const MAX_NAME: usize = 64;
/// Longest `name@version` of a member's package.
pub const MAX_PACKAGE: usize = 160;
/// Longest role label.
pub const MAX_ROLE: usize = 64;
/// Longest host peer id text (an ed25519 peer id is 52 characters).
pub const MAX_HOST: usize = 64;
/// Largest group envelope accepted, in bytes.
pub const MAX_GROUP_SIZE: usize = 128 * 1024;

/// A member: one deployment of the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Deployment id, 32 lower-case hex digits.
    pub id: String,
    /// Its host's peer id.
    pub host: String,
    /// `name@version`.
    pub package: String,
    /// The `role` of its configuration; empty when it has none.
    pub role: String,
}

/// A tenant's group of deployments, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDoc {
    /// `[a-z0-9-]`, 1 to [`MAX_NAME`] characters.
    pub name: String,
    /// The tenant's ed25519 key; must be the envelope's signer.
    pub tenant: [u8; 32],
    /// Grows with every change; a host keeps the newest.
    pub version: u64,
    /// Unix milliseconds, informative.
    pub issued_ms: u64,
    /// Sorted by id, unique.
    pub members: Vec<Member>,
}

impl Kind for GroupDoc {
    const TAG: &'static str = GROUP_TAG;
    const MAX_SIZE: usize = MAX_GROUP_SIZE;
}

impl GroupDoc {
    /// The member with this id.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.members.get(i))
    }
}

/// A host's notice that one of its deployments stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    pub deployment: String,
    pub tenant: [u8; 32],
    pub group: String,
    pub at_ms: u64,
}

impl Kind for Left {
    const TAG: &'static str = LEFT_TAG;
    const MAX_SIZE: usize = 1024;
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("the signer is not the group's tenant")]
    WrongSigner,
    #[error("{0}")]
    Invalid(String),
}

impl DocError {
    /// Short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            DocError::Envelope(EnvelopeError::BadSignature | EnvelopeError::BadKey) => {
                "bad_signature"
            }
            DocError::Envelope(_) => "malformed",
            DocError::WrongSigner => "wrong_signer",
            DocError::Invalid(_) => "invalid",
        }
    }
}

/// Checks a group name: 1 to [`MAX_NAME`] characters of `[a-z0-9-]`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!(
            "group name {:?} must be 1 to {MAX_NAME} characters",
            name.chars().take(MAX_NAME + 1).collect::<String>()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "group name {:?} may use only a-z, 0-9 and '-'",
            name.chars().take(MAX_NAME).collect::<String>()
        ));
    }
    Ok(())
}

/// Whether `id` is a deployment id as groups write it (32 lower-case hex digits).
pub fn is_deployment_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks everything of a document but its signature.
pub fn check_doc(doc: &GroupDoc) -> Result<(), String> {
    check_name(&doc.name)?;
    if doc.members.len() > MAX_MEMBERS {
        return Err(format!("more than {MAX_MEMBERS} members"));
    }
    for w in doc.members.windows(2) {
        if let [a, b] = w
            && a.id >= b.id
        {
            return Err("members are not sorted by id, or repeat".into());
        }
    }
    for m in &doc.members {
        if !is_deployment_id(&m.id) {
            return Err("a member id is not 32 hex digits".into());
        }
        if m.host.is_empty() || m.host.len() > MAX_HOST || m.host.parse::<libp2p::PeerId>().is_err()
        {
            return Err("a member's host is not a peer id".into());
        }
        if m.package.len() > MAX_PACKAGE || m.role.len() > MAX_ROLE {
            return Err("a member's package or role is too long".into());
        }
    }
    Ok(())
}

/// Decodes, verifies and checks a group envelope.
pub fn open_doc(bytes: &[u8]) -> Result<Opened<GroupDoc>, DocError> {
    let opened = Envelope::open::<GroupDoc>(bytes)?;
    if opened.signer.as_bytes() != &opened.value.tenant {
        return Err(DocError::WrongSigner);
    }
    check_doc(&opened.value).map_err(DocError::Invalid)?;
    Ok(opened)
}

/// Decodes and verifies a leave notice (who signed it is for the receiver to judge).
pub fn open_left(bytes: &[u8]) -> Result<Opened<Left>, DocError> {
    let opened = Envelope::open::<Left>(bytes)?;
    let l = &opened.value;
    if !is_deployment_id(&l.deployment) {
        return Err(DocError::Invalid("not a deployment id".into()));
    }
    check_name(&l.group).map_err(DocError::Invalid)?;
    Ok(opened)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::identity::Identity;

    fn member(id: u8, host: &Identity) -> Member {
        Member {
            id: format!("{id:032x}"),
            host: host.peer_id().to_string(),
            package: "echo@0.1.0".into(),
            role: String::new(),
        }
    }

    fn doc(tenant: &Identity, members: Vec<Member>) -> GroupDoc {
        GroupDoc {
            name: "shop".into(),
            tenant: tenant.verifying_key().to_bytes(),
            version: 3,
            issued_ms: 1,
            members,
        }
    }

    #[test]
    fn names() {
        assert!(check_name("shop-1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("Shop").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
        assert!(check_name(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn round_trip_and_signer() {
        let t = Identity::generate().unwrap();
        let h = Identity::generate().unwrap();
        let d = doc(&t, vec![member(1, &h), member(2, &h)]);
        let env = Envelope::seal_kind(t.signing_key(), &d).unwrap().to_bytes();
        let opened = open_doc(&env).unwrap();
        assert_eq!(opened.value, d);
        assert!(opened.value.member(&format!("{:032x}", 2)).is_some());
        assert!(opened.value.member(&format!("{:032x}", 3)).is_none());
        // Signed by someone else than the tenant it names.
        let env = Envelope::seal_kind(h.signing_key(), &d).unwrap().to_bytes();
        assert_eq!(open_doc(&env).unwrap_err(), DocError::WrongSigner);
    }

    #[test]
    fn refuses_unsorted_trailing_and_tampered() {
        let t = Identity::generate().unwrap();
        let h = Identity::generate().unwrap();
        let d = doc(&t, vec![member(2, &h), member(1, &h)]);
        let env = Envelope::seal_kind(t.signing_key(), &d).unwrap().to_bytes();
        assert!(matches!(open_doc(&env), Err(DocError::Invalid(_))));
        let d = doc(&t, vec![member(1, &h)]);
        let mut env = Envelope::seal_kind(t.signing_key(), &d).unwrap().to_bytes();
        env.push(0);
        assert!(open_doc(&env).is_err());
        env.pop();
        let last = env.len() - 70;
        env[last] ^= 1;
        assert!(open_doc(&env).is_err());
    }

    #[test]
    fn bounded_members() {
        let t = Identity::generate().unwrap();
        let h = Identity::generate().unwrap();
        let members: Vec<Member> = (0..=MAX_MEMBERS)
            .map(|i| Member {
                id: format!("{i:032x}"),
                ..member(0, &h)
            })
            .collect();
        let mut d = doc(&t, members);
        assert!(check_doc(&d).is_err());
        d.members.truncate(MAX_MEMBERS);
        assert!(check_doc(&d).is_ok());
        let env = Envelope::seal_kind(t.signing_key(), &d).unwrap().to_bytes();
        assert!(env.len() <= MAX_GROUP_SIZE);
        assert!(open_doc(&env).is_ok());
    }
}
