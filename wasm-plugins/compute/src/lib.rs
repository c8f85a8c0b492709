//! `compute`: the benchmark plugin. A `message` whose payload is an 8-byte little-endian
//! iteration count runs a deterministic compute loop (xorshift64 + multiply-add) of that many
//! iterations; `init` succeeds, `tick` does nothing. Any other payload is ignored.
//!
//! The loop does no allocation and no host calls, so what it measures is the sandbox's
//! compiled-code speed plus fuel metering and deadline checks.

use core::hint::black_box;

use degroup_sdk::{Config, Plugin, export_plugin};

struct Compute;

/// `iterations` rounds of xorshift64 feeding a multiply-add accumulator.
fn run(iterations: u64) -> u64 {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut acc: u64 = 1;
    for _ in 0..iterations {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(x);
    }
    acc
}

impl Plugin for Compute {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Compute)
    }

    fn message(&mut self, _from: String, payload: Vec<u8>) {
        if let Ok(bytes) = <[u8; 8]>::try_from(payload.as_slice()) {
            black_box(run(black_box(u64::from_le_bytes(bytes))));
        }
    }
}

export_plugin!(Compute);
