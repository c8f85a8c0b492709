//! `http-hello`: a plugin of the world `http-plugin`: the usual `init`/`tick`/`message` exports
//! (which do nothing much here) plus `wasi:http/incoming-handler`, answering every request
//! routed to the deployment by the host's ingress with `hello from degroup`.
//!
//! The SDK's [`degroup_sdk::export_plugin!`] exports the world `plugin`; a plugin that also
//! serves HTTP generates bindings for `http-plugin` itself, from the same WIT, reusing the
//! SDK's bindings for the degroup and shared WASI interfaces (so the SDK's `kv`, `log` and
//! `lease` modules keep working).

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
use degroup_sdk::{debug, info};

const BODY: &[u8] = b"hello from degroup\n";

struct HttpHello;

impl bindings::Guest for HttpHello {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        info!("http-hello ready ({} config entries)", config.len());
        Ok(())
    }

    fn tick(_now: u64) {}

    fn message(_from: String, _payload: Vec<u8>) {}
}

impl IncomingHandler for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        debug!(
            "{:?} {}",
            request.method(),
            request.path_with_query().unwrap_or_default()
        );
        let headers = Fields::from_list(&[
            (
                "content-type".to_string(),
                b"text/plain; charset=utf-8".to_vec(),
            ),
            (
                "content-length".to_string(),
                BODY.len().to_string().into_bytes(),
            ),
        ])
        .unwrap_or_else(|_| Fields::new());
        let response = OutgoingResponse::new(headers);
        let _ = response.set_status_code(200);
        let Ok(body) = response.body() else {
            return;
        };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(BODY);
            // The stream must be gone before the body is finished.
            drop(stream);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

bindings::export!(HttpHello with_types_in bindings);
