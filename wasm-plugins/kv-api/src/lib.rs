//! `kv-api`: a small REST service over the deployment's key-value store, the example of the
//! world `http-plugin` that does real work.
//!
//! ```sh
//! degroup deploy --lease ID kv-api.dgp --route kv.example.fr
//! curl -X PUT --data-binary @photo.jpg -H 'Host: kv.example.fr' http://HOST:8080/kv/photo
//! curl -H 'Host: kv.example.fr' http://HOST:8080/kv/photo > photo.jpg
//! curl -H 'Host: kv.example.fr' 'http://HOST:8080/kv?prefix=ph&limit=10'   # {"keys":["photo"]}
//! curl -X DELETE -H 'Host: kv.example.fr' http://HOST:8080/kv/photo
//! ```
//!
//! The API and its status codes are in [`api`], which is plain Rust over the SDK's [`kv`]
//! module and is tested off-wasm; this file is the `wasi:http/incoming-handler` glue: it reads
//! the method, target and `content-length`, reads a `PUT`'s body in chunks (stopping as soon
//! as it passes the per-value limit, so a huge upload costs at most that much memory), and
//! writes the [`api::Reply`] back.
//!
//! The data lives in the same store as any `tick`/`message` instance of the deployment: it
//! survives restarts, node restarts and upgrades. Nothing is kept in memory between requests.
//!
//! The bindings are generated for `http-plugin` here, reusing the SDK's for the degroup and
//! shared WASI interfaces (as `http-hello` does), so the SDK's `kv` and `log` keep working.
//!
//! [`kv`]: degroup_sdk::kv

pub mod api;
pub mod text;

#[allow(warnings)]
mod bindings {
    wit_bindgen::generate!({
        world: "http-plugin",
        path: "../../sdk/wit",
        with: {
            "degroup:plugin/lease@0.1.1": degroup_sdk::bindings::degroup::plugin::lease,
            "degroup:plugin/kv@0.1.1": degroup_sdk::bindings::degroup::plugin::kv,
            "degroup:plugin/log@0.1.1": degroup_sdk::bindings::degroup::plugin::log,
            "degroup:plugin/mesh@0.1.1": degroup_sdk::bindings::degroup::plugin::mesh,
            "degroup:plugin/workload@0.1.1": degroup_sdk::bindings::degroup::plugin::workload,
            "wasi:clocks/wall-clock@0.2.12": degroup_sdk::bindings::wasi::clocks::wall_clock,
            "wasi:clocks/monotonic-clock@0.2.12": degroup_sdk::bindings::wasi::clocks::monotonic_clock,
            "wasi:random/random@0.2.12": degroup_sdk::bindings::wasi::random::random,
            "wasi:io/poll@0.2.12": degroup_sdk::bindings::wasi::io::poll,
        },
        generate_all,
    });
}

use api::{BodyError, Method, Reply};
use bindings::exports::wasi::http::incoming_handler::Guest as IncomingHandler;
use bindings::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method as HttpMethod, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};
use bindings::wasi::io::streams::StreamError;
use degroup_sdk::{info, kv};

/// Bytes asked of the body stream per read.
const READ_CHUNK: u64 = 64 * 1024;
/// Most bytes `blocking-write-and-flush` accepts per call.
const WRITE_CHUNK: usize = 4096;

struct KvApi;

impl bindings::Guest for KvApi {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        let usage = kv::usage();
        info!(
            "kv-api ready: {} of {} bytes of the store used",
            usage.used, usage.quota
        );
        Ok(())
    }

    fn tick(_now: u64) {}

    fn message(_from: String, _payload: Vec<u8>) {}
}

impl IncomingHandler for KvApi {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let method = match request.method() {
            HttpMethod::Get => Method::Get,
            HttpMethod::Put => Method::Put,
            HttpMethod::Delete => Method::Delete,
            _ => Method::Other,
        };
        let target = request.path_with_query().unwrap_or_else(|| "/".to_owned());
        let content_length = request
            .headers()
            .get("content-length")
            .first()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let reply = api::handle(method, &target, content_length, |limit| {
            read_body(&request, limit)
        });
        respond(response_out, &reply);
    }
}

/// Reads the request's body, failing once it passes `limit` bytes.
fn read_body(request: &IncomingRequest, limit: usize) -> Result<Vec<u8>, BodyError> {
    let body = request
        .consume()
        .map_err(|()| BodyError::Read("body already taken".into()))?;
    let result = read_stream(&body, limit);
    IncomingBody::finish(body);
    result
}

fn read_stream(body: &IncomingBody, limit: usize) -> Result<Vec<u8>, BodyError> {
    let stream = body
        .stream()
        .map_err(|()| BodyError::Read("body stream already taken".into()))?;
    let mut value = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                if value.len() + chunk.len() > limit {
                    return Err(BodyError::TooLarge);
                }
                value.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(value),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(BodyError::Read(e.to_debug_string()));
            }
        }
    }
}

/// Sends `reply`: status, `content-type`, `content-length` (and `allow`), then the body in
/// chunks the stream accepts.
fn respond(out: ResponseOutparam, reply: &Reply) {
    let mut headers = Vec::new();
    // A 204 has neither (RFC 9110 §8.6).
    if reply.status != 204 {
        headers.push((
            "content-type".to_owned(),
            reply.content_type.as_bytes().to_vec(),
        ));
        headers.push((
            "content-length".to_owned(),
            reply.body.len().to_string().into_bytes(),
        ));
    }
    if let Some(allow) = reply.allow {
        headers.push(("allow".to_owned(), allow.as_bytes().to_vec()));
    }
    let fields = Fields::from_list(&headers).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(reply.status);
    let Ok(body) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = body.write() {
        for chunk in reply.body.chunks(WRITE_CHUNK) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        // The stream must be gone before the body is finished.
        drop(stream);
    }
    let _ = OutgoingBody::finish(body, None);
}

bindings::export!(KvApi with_types_in bindings);
