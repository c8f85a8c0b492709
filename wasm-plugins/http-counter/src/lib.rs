//! `http-counter`: every HTTP request adds one to the key `hits` of the deployment's store and
//! answers the new count; a message sets it (its payload, a decimal number). What tests use to
//! see that the deployment's worker instance and its HTTP instances share one store. A `POST`
//! echoes its body instead (400 if reading it failed).

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

use bindings::exports::wasi::http::incoming_handler::Guest as IncomingHandler;
use bindings::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct P;


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
use degroup_sdk::kv;

impl bindings::Guest for P {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn tick(_now: u64) {}

    fn message(_from: String, payload: Vec<u8>) {
        let _ = kv::set("hits", &payload);
    }
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, String> {
    use bindings::wasi::io::streams::StreamError;
    let body = request.consume().map_err(|()| "no body".to_string())?;
    let stream = body.stream().map_err(|()| "no stream".to_string())?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(out),
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
}

fn hits() -> u64 {
    kv::get("hits")
        .ok()
        .flatten()
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

impl IncomingHandler for P {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if matches!(request.method(), bindings::wasi::http::types::Method::Post) {
            match read_body(&request) {
                Ok(body) => answer(out, 200, &body),
                Err(e) => answer(out, 400, e.as_bytes()),
            }
            return;
        }
        let n = hits() + 1;
        let text = n.to_string();
        if let Err(e) = kv::set("hits", text.as_bytes()) {
            answer(out, 500, format!("{e:?}").as_bytes());
            return;
        }
        answer(out, 200, text.as_bytes());
    }
}

bindings::export!(P with_types_in bindings);
