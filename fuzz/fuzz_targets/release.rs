//! Fuzzes release validation as gossip and sync run it: envelope, tag, signature, payload,
//! field checks, the clock; and the sync protocol's frames.
#![no_main]

use degroup_node::catalogue::decode_item;
use degroup_node::catalogue::release::open_release;
use degroup_node::catalogue::sync::{CatalogueSyncRequest, CatalogueSyncResponse};
use degroup_node::signed::decode_exact;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_item(data);
    let _ = open_release(data, 1_800_000_000_000);
    let _ = decode_exact::<CatalogueSyncRequest>(data);
    let _ = decode_exact::<CatalogueSyncResponse>(data);
});
