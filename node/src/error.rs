//! Stable error codes: what an error means to a program, apart from what it says to a person.
//!
//! Every error that reaches the admin API carries an [`ErrorCode`]: a stable snake_case name,
//! the HTTP status it is answered with, and whether retrying the same request may succeed
//! ([`ErrorCode::retryable`]). The API body is `{"error": "...", "code": "...", "retryable":
//! bool}`; the CLI decides what to advise from the code, never from the message text.
//! `docs/operator-guide.md` lists the codes; once documented, a code keeps its name and
//! meaning.

use serde::{Deserialize, Serialize};

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or asks for something impossible; fix it and send it again.
    BadInput,
    /// No such lease, deployment, route or advert.
    NotFound,
    /// Not allowed: host policy, not the caller's lease or deployment.
    Forbidden,
    /// The thing exists but is in a state that does not allow this (ended, stopped, taken).
    Conflict,
    /// The host has not enough free capacity for the slice.
    CapacityExhausted,
    /// The host's price is above the tenant's maximum (or below the host's own minimum).
    PriceTooHigh,
    /// A plugin package failed verification or does not compile for the plugin world.
    InvalidPackage,
    /// The peer could not be reached; the request was not delivered.
    HostUnreachable,
    /// The request was sent but no answer came back: it may or may not have taken effect.
    /// Retrying is safe only with the same idempotency key.
    OutcomeUnknown,
    /// The peer answered something the protocol does not allow.
    ProtocolError,
    /// The node or the peer is overloaded, shutting down or briefly unable to store; retry.
    Unavailable,
    /// The admin API token is missing or wrong.
    Unauthorized,
    /// A failure inside this node (randomness, signing, a thread, the store).
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::BadInput,
        ErrorCode::NotFound,
        ErrorCode::Forbidden,
        ErrorCode::Conflict,
        ErrorCode::CapacityExhausted,
        ErrorCode::PriceTooHigh,
        ErrorCode::InvalidPackage,
        ErrorCode::HostUnreachable,
        ErrorCode::OutcomeUnknown,
        ErrorCode::ProtocolError,
        ErrorCode::Unavailable,
        ErrorCode::Unauthorized,
        ErrorCode::Internal,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadInput => "bad_input",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Conflict => "conflict",
            ErrorCode::CapacityExhausted => "capacity_exhausted",
            ErrorCode::PriceTooHigh => "price_too_high",
            ErrorCode::InvalidPackage => "invalid_package",
            ErrorCode::HostUnreachable => "host_unreachable",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::ProtocolError => "protocol_error",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code of a stable name.
    pub fn parse(name: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The HTTP status the admin API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadInput => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::CapacityExhausted | ErrorCode::PriceTooHigh => 409,
            ErrorCode::InvalidPackage => 422,
            ErrorCode::Internal => 500,
            ErrorCode::HostUnreachable | ErrorCode::ProtocolError => 502,
            ErrorCode::Unavailable => 503,
            ErrorCode::OutcomeUnknown => 504,
        }
    }

    /// Whether the same request, sent again unchanged, may succeed. (For
    /// [`ErrorCode::OutcomeUnknown`] that holds only when it carries the same idempotency key.)
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::HostUnreachable | ErrorCode::OutcomeUnknown | ErrorCode::Unavailable
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure inside this node (randomness, signing, a thread): what it was doing, and why.
/// Its code is always [`ErrorCode::Internal`].
#[derive(Debug, thiserror::Error)]
#[error("internal error: {what}: {source}")]
pub struct Internal {
    what: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Internal {
    /// The failure of `what`, caused by `source`.
    pub fn new(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            what,
            source: Box::new(source),
        }
    }
}

/// An error with a stable code.
pub trait Coded: std::error::Error {
    /// What kind of failure it is.
    fn code(&self) -> ErrorCode;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            let json = serde_json::to_string(&c).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }
}
