//! Fuzzes the lease protocol's decoders: request and reply frames, every signed lease document,
//! and the offline verification of a lease document.
#![no_main]

use degroup_node::lease::contract::{
    Acceptance, Contract, LeaseDoc, LeaseEnd, LeaseRequest, ReleaseRequest, UsageReceipt,
    verify_doc,
};
use degroup_node::lease::wire::{LeaseReply, decode_msg};
use degroup_node::signed::{Envelope, decode_exact};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_msg(data);
    let _ = decode_exact::<LeaseReply>(data);
    let _ = Envelope::open::<LeaseRequest>(data);
    let _ = Envelope::open::<Contract>(data);
    let _ = Envelope::open::<Acceptance>(data);
    let _ = Envelope::open::<ReleaseRequest>(data);
    let _ = Envelope::open::<LeaseEnd>(data);
    let _ = Envelope::open::<UsageReceipt>(data);
    let (a, b) = data.split_at(data.len() / 2);
    let _ = verify_doc(&LeaseDoc {
        contract: a.to_vec(),
        acceptance: b.to_vec(),
    });
});
