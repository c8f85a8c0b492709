//! The host's own answers (errors), in the admin API's error shape:
//! `{"error": "…", "code": "…", "retryable": bool}`.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, Full};

use crate::ingress::Response;

/// Why the host answered instead of the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 503: no capacity for the request now (the deployment's in-flight bound, the host's
    /// instances); retry after a second.
    Unavailable,
    /// 504: the plugin did not answer within the deadline.
    Deadline,
    /// 500: the plugin trapped, answered with an error, or returned without answering.
    PluginFault,
    /// 413: the request body is over the cap.
    TooLarge,
    /// 400: the request cannot be handed to a plugin (no authority).
    BadRequest,
}

impl Refusal {
    fn parts(self) -> (StatusCode, &'static str, bool) {
        match self {
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", true),
            Self::Deadline => (StatusCode::GATEWAY_TIMEOUT, "deadline", false),
            Self::PluginFault => (StatusCode::INTERNAL_SERVER_ERROR, "plugin_fault", false),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", false),
            Self::BadRequest => (StatusCode::BAD_REQUEST, "bad_request", false),
        }
    }
}

/// A JSON error response.
pub(crate) fn refuse(why: Refusal, message: impl Into<String>) -> Response {
    let (status, code, retryable) = why.parts();
    let body = serde_json::json!({
        "error": message.into(),
        "code": code,
        "retryable": retryable,
    });
    let bytes = Bytes::from(body.to_string());
    let mut resp = Response::new(Full::new(bytes).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if why == Refusal::Unavailable {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}
