//! The REST API, as plain functions of a method, a request target and a body reader, so that it
//! runs (and is tested) off-wasm against the SDK's in-memory store. `lib.rs` only moves bytes
//! between `wasi:http` and these functions.
//!
//! | request | answer |
//! |---|---|
//! | `GET /kv/{key}` | 200 and the raw value (`application/octet-stream`), or 404 |
//! | `PUT /kv/{key}` (body = value) | 201 when new, 204 when replaced; 413 over the per-value limit, 507 past the lease's disk quota |
//! | `DELETE /kv/{key}` | 204, or 404 when absent |
//! | `GET /kv?prefix=P&limit=N` | 200 `{"keys": [...]}`, byte order, `limit` default 100, at most 1000 |
//! | other methods on those paths | 405 with `allow` |
//! | any other path | 404 |
//!
//! `{key}` is everything after `/kv/`, percent-decoded (`%2F` and a plain `/` both give `/`),
//! and must be UTF-8 of 1 to 512 bytes (else 400). Every error body is JSON
//! `{"error": "...", ...}`.

use degroup_sdk::kv::{self, KvError};

use crate::text::{json_string, percent_decode, query_param};

/// Keys returned by a list when the query gives no `limit`.
pub const DEFAULT_LIST: u32 = 100;

/// The request methods the API tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Delete,
    Other,
}

/// What answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// The `allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Reply {
    fn json(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.into_bytes(),
            allow: None,
        }
    }

    fn error(status: u16, message: &str) -> Self {
        Self::json(status, format!("{{\"error\":{}}}", json_string(message)))
    }

    fn key_error(status: u16, message: &str, key: &str) -> Self {
        Self::json(
            status,
            format!(
                "{{\"error\":{},\"key\":{}}}",
                json_string(message),
                json_string(key)
            ),
        )
    }

    fn empty(status: u16) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: Vec::new(),
            allow: None,
        }
    }

    fn not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::error(405, "method not allowed")
        }
    }
}

/// Why the body could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// More than the limit the reader was given: it stopped reading there.
    TooLarge,
    /// The stream failed (the client went away, the host cut it).
    Read(String),
}

/// Answers one request. `target` is the path with its query; `content_length` the header's
/// value when the client sent one; `read_body(limit)` reads the body, failing with
/// [`BodyError::TooLarge`] as soon as it passes `limit` bytes. It is called only for a `PUT`
/// whose key is valid and whose announced length fits.
pub fn handle(
    method: Method,
    target: &str,
    content_length: Option<u64>,
    read_body: impl FnOnce(usize) -> Result<Vec<u8>, BodyError>,
) -> Reply {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/kv" {
        return match method {
            Method::Get => list(query),
            _ => Reply::not_allowed("GET"),
        };
    }
    let Some(raw) = path.strip_prefix("/kv/") else {
        return Reply::error(
            404,
            "not found: the API is GET|PUT|DELETE /kv/{key} and GET /kv?prefix=",
        );
    };
    let key = match percent_decode(raw, false) {
        Ok(k) if !k.is_empty() && k.len() <= kv::MAX_KEY_BYTES => k,
        Ok(_) => {
            return Reply::error(
                400,
                &format!("invalid key: 1 to {} bytes of UTF-8", kv::MAX_KEY_BYTES),
            );
        }
        Err(_) => return Reply::error(400, "invalid key: bad percent-encoding or not UTF-8"),
    };
    match method {
        Method::Get => get(&key),
        Method::Put => put(&key, content_length, read_body),
        Method::Delete => delete(&key),
        Method::Other => Reply::not_allowed("GET, PUT, DELETE"),
    }
}

fn list(query: &str) -> Reply {
    let prefix = match query_param(query, "prefix").map(|p| percent_decode(p, true)) {
        None => String::new(),
        Some(Ok(p)) if p.len() <= kv::MAX_KEY_BYTES => p,
        Some(_) => return Reply::error(400, "invalid prefix"),
    };
    let limit = match query_param(query, "limit").map(str::parse::<u32>) {
        None => DEFAULT_LIST,
        Some(Ok(n)) => n.min(kv::MAX_LIST),
        Some(Err(_)) => return Reply::error(400, "limit must be a number from 0 to 1000"),
    };
    let keys = kv::list(&prefix, limit);
    let items: Vec<String> = keys.iter().map(|k| json_string(k)).collect();
    Reply::json(200, format!("{{\"keys\":[{}]}}", items.join(",")))
}

fn get(key: &str) -> Reply {
    match kv::get(key) {
        Ok(Some(value)) => Reply {
            status: 200,
            content_type: "application/octet-stream",
            body: value,
            allow: None,
        },
        Ok(None) => Reply::key_error(404, "no such key", key),
        Err(e) => store_error(&e, key),
    }
}

fn put(
    key: &str,
    content_length: Option<u64>,
    read_body: impl FnOnce(usize) -> Result<Vec<u8>, BodyError>,
) -> Reply {
    let limit = kv::MAX_VALUE_BYTES;
    if content_length.is_some_and(|n| n > limit as u64) {
        return too_large(limit as u64);
    }
    let value = match read_body(limit) {
        Ok(v) => v,
        Err(BodyError::TooLarge) => return too_large(limit as u64),
        Err(BodyError::Read(why)) => {
            return Reply::error(400, &format!("cannot read the body: {why}"));
        }
    };
    // The smallest key with a given prefix is the prefix itself: a one-key list says whether
    // the key exists without reading its value.
    let existed = kv::list(key, 1).first().is_some_and(|k| k == key);
    match kv::set(key, &value) {
        Ok(()) if existed => Reply::empty(204),
        Ok(()) => Reply::empty(201),
        Err(e) => store_error(&e, key),
    }
}

fn delete(key: &str) -> Reply {
    match kv::delete(key) {
        Ok(true) => Reply::empty(204),
        Ok(false) => Reply::key_error(404, "no such key", key),
        Err(e) => store_error(&e, key),
    }
}

fn too_large(limit: u64) -> Reply {
    Reply::json(
        413,
        format!("{{\"error\":\"value too large\",\"limit\":{limit}}}"),
    )
}

/// A refusal of the store, as its HTTP status.
fn store_error(e: &KvError, key: &str) -> Reply {
    match e {
        KvError::QuotaExceeded { quota } => Reply::json(
            507,
            format!("{{\"error\":\"quota exceeded\",\"quota\":{quota}}}"),
        ),
        KvError::ValueTooLarge { limit } => too_large(*limit),
        KvError::InvalidKey => Reply::key_error(400, "invalid key", key),
        KvError::Storage(_) => Reply::error(503, &e.to_string()),
        _ => Reply::error(500, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use degroup_sdk::testing;

    fn body(bytes: &'static [u8]) -> impl FnOnce(usize) -> Result<Vec<u8>, BodyError> {
        move |limit| {
            if bytes.len() > limit {
                Err(BodyError::TooLarge)
            } else {
                Ok(bytes.to_vec())
            }
        }
    }

    fn no_body(_: usize) -> Result<Vec<u8>, BodyError> {
        Err(BodyError::Read("not expected".into()))
    }

    fn text(r: &Reply) -> String {
        String::from_utf8_lossy(&r.body).into_owned()
    }

    #[test]
    fn put_get_list_delete() {
        testing::reset();
        assert_eq!(
            handle(Method::Put, "/kv/a%2Fb", None, body(b"v1")).status,
            201
        );
        assert_eq!(
            handle(Method::Put, "/kv/a/b", Some(2), body(b"v2")).status,
            204
        );
        let got = handle(Method::Get, "/kv/a/b", None, no_body);
        assert_eq!((got.status, got.body.as_slice()), (200, &b"v2"[..]));
        assert_eq!(got.content_type, "application/octet-stream");
        handle(Method::Put, "/kv/z%22q", None, body(b""));
        let all = handle(Method::Get, "/kv", None, no_body);
        assert_eq!(text(&all), r#"{"keys":["a/b","z\"q"]}"#);
        let some = handle(Method::Get, "/kv?prefix=a%2F&limit=5", None, no_body);
        assert_eq!(text(&some), r#"{"keys":["a/b"]}"#);
        let one = handle(Method::Get, "/kv?limit=1", None, no_body);
        assert_eq!(text(&one), r#"{"keys":["a/b"]}"#);
        assert_eq!(handle(Method::Delete, "/kv/a/b", None, no_body).status, 204);
        let gone = handle(Method::Delete, "/kv/a/b", None, no_body);
        assert_eq!(
            (gone.status, text(&gone)),
            (404, r#"{"error":"no such key","key":"a/b"}"#.into())
        );
        assert_eq!(handle(Method::Get, "/kv/a/b", None, no_body).status, 404);
    }

    #[test]
    fn refusals_have_their_status() {
        testing::reset();
        assert_eq!(handle(Method::Put, "/kv/", None, body(b"x")).status, 400);
        assert_eq!(handle(Method::Get, "/kv/%FF", None, no_body).status, 400);
        assert_eq!(handle(Method::Get, "/kv/%4", None, no_body).status, 400);
        let long = format!("/kv/{}", "k".repeat(513));
        assert_eq!(handle(Method::Put, &long, None, body(b"x")).status, 400);
        assert_eq!(
            handle(Method::Get, "/kv?limit=x", None, no_body).status,
            400
        );
        let announced = handle(Method::Put, "/kv/big", Some(2 << 20), no_body);
        assert_eq!(announced.status, 413);
        let streamed = handle(Method::Put, "/kv/big", None, |_| Err(BodyError::TooLarge));
        assert_eq!(streamed.status, 413);
        let post = handle(Method::Other, "/kv/k", None, no_body);
        assert_eq!((post.status, post.allow), (405, Some("GET, PUT, DELETE")));
        assert_eq!(handle(Method::Put, "/kv", None, no_body).status, 405);
        assert_eq!(handle(Method::Get, "/", None, no_body).status, 404);
        assert_eq!(handle(Method::Get, "/kvx", None, no_body).status, 404);
    }

    #[test]
    fn quota_is_507() {
        testing::reset();
        let mut lease = degroup_sdk::lease::info();
        lease.slice.disk_bytes = 100;
        testing::set_lease(lease);
        let r = handle(Method::Put, "/kv/q", None, |_| Ok(vec![0u8; 200]));
        assert_eq!(
            (r.status, text(&r)),
            (507, r#"{"error":"quota exceeded","quota":100}"#.into())
        );
    }
}
