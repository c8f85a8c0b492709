//! Fuzzes advert validation as gossip runs it: envelope, signature, payload, field checks.
#![no_main]

use degroup_node::capacity::advert::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = check(data, 1_800_000_000_000);
});
