//! Fuzzes the blob protocol's decoders: request and reply frames of `/degroup/blob/1`.
#![no_main]

use degroup_node::blobs::{decode_reply, decode_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_request(data);
    let _ = decode_reply(data);
});
