//! Writes the ~9 MiB blob the plugin embeds: pseudo-random, never zero (zero runs would be
//! left out of the data segment), so the `.wasm` really is over the 8 MiB package cap.

use std::path::PathBuf;

const SIZE: usize = 9 << 20;

fn main() {
    let mut blob = Vec::with_capacity(SIZE);
    let mut x: u32 = 0x1234_5678;
    while blob.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        blob.push((x as u8) | 1);
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("blob.bin");
    if let Err(e) = std::fs::write(&out, &blob) {
        panic!("cannot write {}: {e}", out.display());
    }
    println!("cargo::rerun-if-changed=build.rs");
}
