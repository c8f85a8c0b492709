//! Fuzzes the decoders of the late-joiner sync protocol's request and response.
#![no_main]

use degroup_node::capacity::sync::{SyncRequest, SyncResponse};
use degroup_node::signed::decode_exact;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_exact::<SyncRequest>(data);
    let _ = decode_exact::<SyncResponse>(data);
});
