//! Hostile: makes an outgoing GET to the URL in its query (`?url=http://host:port/path`) or
//! its `x-url` header, and answers 200 with the upstream's body, or 502 with the error
//! code's debug text (`HttpRequestDenied` where the host's policy refuses it).

#[allow(warnings)]
mod bindings {
    wit_bindgen::generate!({
        world: "http-plugin",
        path: "../../../sdk/wit",
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

use bindings::exports::wasi::http::incoming_handler::Guest as IncomingHandler;
use bindings::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct P;

impl bindings::Guest for P {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }
    fn tick(_now: u64) {}
    fn message(_from: String, _payload: Vec<u8>) {}
}

/// Answers `status` with `body`.
fn answer(out: ResponseOutparam, status: u16, body: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.chunks(4096) {
            let _ = stream.blocking_write_and_flush(chunk);
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

use bindings::wasi::http::outgoing_handler;
use bindings::wasi::http::types::{ErrorCode, OutgoingRequest, Scheme};

fn target(request: &IncomingRequest) -> Option<String> {
    let pq = request.path_with_query().unwrap_or_default();
    if let Some((_, q)) = pq.split_once('?') {
        for pair in q.split('&') {
            if let Some(v) = pair.strip_prefix("url=") {
                return Some(v.to_owned());
            }
        }
    }
    let headers = request.headers();
    let v = headers.get(&"x-url".to_string()).into_iter().next()?;
    String::from_utf8(v).ok()
}

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", r)) => (Scheme::Https, r),
        Some(("http", r)) => (Scheme::Http, r),
        _ => return Err(format!("not an http(s) URL: {url}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&scheme)).map_err(|()| "scheme".to_string())?;
    req.set_authority(Some(authority)).map_err(|()| "authority".to_string())?;
    req.set_path_with_query(Some(path)).map_err(|()| "path".to_string())?;
    let future = outgoing_handler::handle(req, None).map_err(|e: ErrorCode| format!("{e:?}"))?;
    let resp = loop {
        match future.get() {
            Some(r) => break r,
            None => future.subscribe().block(),
        }
    };
    let resp = resp
        .map_err(|()| "response taken twice".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let body = resp.consume().map_err(|()| "body".to_string())?;
    let stream = body.stream().map_err(|()| "stream".to_string())?;
    let mut out = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

impl IncomingHandler for P {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let Some(url) = target(&request) else {
            answer(out, 400, b"give ?url= or x-url");
            return;
        };
        match fetch(&url) {
            Ok(body) => answer(out, 200, &body),
            Err(e) => answer(out, 502, e.as_bytes()),
        }
    }
}

bindings::export!(P with_types_in bindings);
