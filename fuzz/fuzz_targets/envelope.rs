//! Fuzzes the signed-envelope decoder: any bytes in, no panic out, and whatever decodes
//! re-encodes to the same bytes (there is exactly one encoding of an envelope).
#![no_main]

use degroup_node::signed::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data, 64 * 1024) {
        assert_eq!(env.to_bytes(), data);
        let _ = env.verify("degroup/advert/v1");
    }
});
