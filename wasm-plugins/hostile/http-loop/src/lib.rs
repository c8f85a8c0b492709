//! Hostile: the HTTP handler spins forever without answering. The host must answer 504 at the
//! request's deadline and drop the instance; other deployments keep answering.

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

impl IncomingHandler for P {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        let mut n = 0u64;
        loop {
            n = core::hint::black_box(n.wrapping_add(1));
        }
    }
}

#[allow(dead_code)]
fn unused(out: ResponseOutparam) {
    answer(out, 200, b"");
}

bindings::export!(P with_types_in bindings);
