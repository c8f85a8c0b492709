//! Messages between the deployments of the tenant's group, across hosts.
//!
//! A group is a document the tenant signs (`degroup group create NAME`, then `degroup deploy
//! --group NAME`): its member deployments and their hosts. A deployment reaches the others with
//! [`send`] (one member, with an answer) and [`broadcast`] (every other member, best effort);
//! what it sends arrives at the receiver's [`Plugin::message`](crate::Plugin::message) with
//! `from` set to the sender's deployment id. [`members`] lists the group as the host knows it
//! now, the caller included, each with the `role` of its configuration (`--config role=…`), so
//! a plugin can find its leader or its agents without any address.
//!
//! Limits: payloads are at most [`MAX_PAYLOAD`] bytes; each deployment has a send rate (100
//! messages per second by default, with bursts) and a bounded inbox. Past either the message
//! is refused ([`SendError::RateLimited`], [`SendError::InboxFull`]), never queued without
//! bound: a refusal is a value, never a trap, and the plugin decides whether to retry on a
//! later tick.
//!
//! ```no_run
//! use degroup_sdk::{info, mesh, warn};
//!
//! // Ping every agent of the group.
//! for m in mesh::members().iter().filter(|m| m.role == "agent") {
//!     match mesh::send_json(&m.id, &serde_json::json!({"op": "ping"})) {
//!         Ok(()) => info!("pinged {} on {}", m.id, m.host),
//!         Err(e) => warn!("ping {}: {e}", m.id),
//!     }
//! }
//! ```
//!
//! Off-wasm (unit tests), the members are whatever [`testing::set_members`] set and every send
//! is recorded for [`testing::sent`]; see [`crate::testing`].
//!
//! [`testing::set_members`]: crate::testing::set_members
//! [`testing::sent`]: crate::testing::sent

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::host;

/// Largest payload, in bytes (64 KiB).
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// A deployment of the caller's group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Member {
    /// Deployment id (32 hex characters).
    pub id: String,
    /// Its host's peer id.
    pub host: String,
    /// What it runs: `name@version`.
    pub package: String,
    /// The `role` of its configuration (`--config role=…`); empty when it has none.
    pub role: String,
}

/// Why a message was not delivered. Refusals are values, never traps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendError {
    /// No deployment with this id is known to the host.
    Unknown,
    /// The sender, or the receiver, is not in the newest version of the group.
    NotInGroup,
    /// The receiver's host did not answer in time, or the receiver is not running.
    Unreachable,
    /// The receiver's inbox is full; retry later.
    InboxFull,
    /// The payload is over [`MAX_PAYLOAD`]. Checked before calling the host.
    TooLarge,
    /// The sender is over its send rate; retry later.
    RateLimited,
    /// [`send_json`] could not serialize the value.
    Encode(String),
}

impl SendError {
    /// A short, stable name for logs and counters: `unknown`, `not-in-group`, `unreachable`,
    /// `inbox-full`, `too-large`, `rate-limited` (the WIT names), or `encode`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::NotInGroup => "not-in-group",
            Self::Unreachable => "unreachable",
            Self::InboxFull => "inbox-full",
            Self::TooLarge => "too-large",
            Self::RateLimited => "rate-limited",
            Self::Encode(_) => "encode",
        }
    }

    /// Whether trying again later may succeed (unreachable, inbox full, rate limited).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable | Self::InboxFull | Self::RateLimited
        )
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            Self::Unknown => write!(f, "{name}: no such deployment is known"),
            Self::NotInGroup => write!(f, "{name}: sender or receiver is not in the group"),
            Self::Unreachable => write!(f, "{name}: the receiver did not answer in time"),
            Self::InboxFull => write!(f, "{name}: the receiver's inbox is full"),
            Self::TooLarge => write!(f, "{name}: the payload is over {MAX_PAYLOAD} bytes"),
            Self::RateLimited => write!(f, "{name}: over the send rate"),
            Self::Encode(reason) => write!(f, "cannot encode the message as JSON: {reason}"),
        }
    }
}

impl std::error::Error for SendError {}

impl From<SendError> for String {
    fn from(e: SendError) -> Self {
        format!("mesh: {e}")
    }
}

/// The members of the caller's group, the caller included, ordered by id; empty when it is in
/// no group (or its group has not reached this host yet).
pub fn members() -> Vec<Member> {
    host::mesh_members()
}

/// The member with deployment id `id`, if it is in the group now.
pub fn member(id: &str) -> Option<Member> {
    members().into_iter().find(|m| m.id == id)
}

/// Sends `payload` to the member `to`; returns once the receiver's host has queued it (or
/// refused it).
///
/// # Errors
///
/// A [`SendError`] saying why it was not delivered.
pub fn send(to: &str, payload: &[u8]) -> Result<(), SendError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(SendError::TooLarge);
    }
    host::mesh_send(to, payload)
}

/// Sends `value` as JSON to the member `to`.
///
/// # Errors
///
/// As [`send`], plus [`SendError::Encode`] when `value` cannot be serialized.
pub fn send_json<T: Serialize + ?Sized>(to: &str, value: &T) -> Result<(), SendError> {
    let bytes = serde_json::to_vec(value).map_err(|e| SendError::Encode(e.to_string()))?;
    send(to, &bytes)
}

/// Sends `payload` to every other member, best effort: refusals are not reported. A payload
/// over [`MAX_PAYLOAD`] is not sent at all.
pub fn broadcast(payload: &[u8]) {
    if payload.len() <= MAX_PAYLOAD {
        host::mesh_broadcast(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn m(id: &str, role: &str) -> Member {
        Member {
            id: id.into(),
            host: format!("host-{id}"),
            package: "scheduler@0.1.0".into(),
            role: role.into(),
        }
    }

    #[test]
    fn sends_are_recorded_and_refusals_are_values() {
        testing::reset();
        assert!(members().is_empty());
        assert_eq!(send("b", b"x"), Err(SendError::NotInGroup));
        testing::set_members(vec![m("a", "leader"), m("b", "agent"), m("c", "agent")]);
        assert_eq!(member("b").map(|m| m.role), Some("agent".to_string()));
        assert_eq!(send("b", b"hi"), Ok(()));
        assert_eq!(send_json("c", &[1, 2]), Ok(()));
        assert_eq!(send("zz", b"x"), Err(SendError::NotInGroup));
        assert_eq!(
            send("b", &vec![0; MAX_PAYLOAD + 1]),
            Err(SendError::TooLarge)
        );
        testing::set_send_error("c", Some(SendError::RateLimited));
        assert_eq!(send("c", b"x"), Err(SendError::RateLimited));
        broadcast(b"all");
        let sent = testing::take_sent();
        let got: Vec<(&str, &[u8])> = sent
            .iter()
            .map(|s| (s.to.as_str(), s.payload.as_slice()))
            .collect();
        // The caller is the default lease's deployment id ("000…"), not a member: a broadcast
        // goes to everyone but the caller, and refusals are not reported.
        assert_eq!(
            got,
            [
                ("b", b"hi".as_slice()),
                ("c", b"[1,2]".as_slice()),
                ("a", b"all".as_slice()),
                ("b", b"all".as_slice()),
            ]
        );
        assert_eq!(
            SendError::RateLimited.to_string(),
            "rate-limited: over the send rate"
        );
        assert!(SendError::InboxFull.is_transient());
        assert!(!SendError::NotInGroup.is_transient());
    }
}
