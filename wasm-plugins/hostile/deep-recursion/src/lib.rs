//! Hostile: `tick` recurses without bound. The host's wasm stack limit (512 KiB by default)
//! must stop it with a stack-overflow trap before it hurts the host.
//!
//! Each frame keeps a small buffer and eight values alive across the recursive call, so the
//! call is not a tail call (nor an accumulator LLVM could turn into a loop) and the frames fill
//! wasmtime's native stack quickly. The buffer is kept small on purpose: Rust keeps address-taken
//! locals on its own shadow stack in linear memory (1 MiB), and a big buffer would overflow that
//! one first (an out-of-bounds trap) instead of the host's limit.

use core::hint::black_box;

use degroup_sdk::{Config, Plugin, export_plugin, info};

struct DeepRecursion;

/// Never returns: that is the point.
#[inline(never)]
#[allow(unconditional_recursion)]
fn dive(depth: u64, a: u64, b: u64, c: u64, d: u64) -> u64 {
    let mut buf = [depth as u8; 8];
    black_box(&mut buf);
    let (e, f, g, h) = (
        a.wrapping_mul(3),
        b ^ depth,
        c.rotate_left(5),
        d.wrapping_add(a),
    );
    let below = dive(depth + 1, e, f, g, h);
    below.rotate_left((depth & 31) as u32).wrapping_mul(a | 1)
        ^ b
        ^ c
        ^ d
        ^ e
        ^ f
        ^ g
        ^ h
        ^ u64::from(buf[(depth % 8) as usize])
}

impl Plugin for DeepRecursion {
    fn init(_config: Config) -> Result<Self, String> {
        info!("deep-recursion: init ok");
        Ok(DeepRecursion)
    }

    fn tick(&mut self, now_ms: u64) {
        info!("deep-recursion: diving");
        black_box(dive(0, black_box(now_ms), 2, 3, 4));
    }
}

export_plugin!(DeepRecursion);
