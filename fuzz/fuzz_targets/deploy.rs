//! Fuzzes the deploy protocol's decoders and the package format: request and reply frames, the
//! signed deploy request and plugin manifest, a package file, and a deployment record.
#![no_main]

use degroup_node::plugin::deployment;
use degroup_node::plugin::package::{Manifest, Package};
use degroup_node::plugin::wire::{DeployReply, DeployRequest, decode_msg};
use degroup_node::signed::{Envelope, decode_exact};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_msg(data);
    let _ = decode_exact::<DeployReply>(data);
    let _ = Envelope::open::<DeployRequest>(data);
    let _ = Envelope::open::<Manifest>(data);
    let _ = Package::open(data);
    let _ = deployment::decode(data);
    let (a, b) = data.split_at(data.len() / 2);
    let _ = Package::from_parts(a.to_vec(), b.to_vec());
});
