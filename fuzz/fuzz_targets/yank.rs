//! Fuzzes yank validation (envelope, tag, signature, payload, field checks, the clock) and
//! package reference parsing.
#![no_main]

use degroup_node::catalogue::Reference;
use degroup_node::catalogue::reference::MAX_REFERENCE_LEN;
use degroup_node::catalogue::release::open_yank;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = open_yank(data, 1_800_000_000_000);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(reference) = text.parse::<Reference>()
    {
        // What prints parses back to the same reference (when it still fits: a range prints
        // with a space after each comma).
        let printed = reference.to_string();
        if printed.len() <= MAX_REFERENCE_LEN {
            assert_eq!(printed.parse::<Reference>().ok(), Some(reference));
        }
    }
});
