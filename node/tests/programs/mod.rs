//! Guest programs for the tests, built from source (the wasmtime `test-programs` pattern): the
//! first test that needs one runs `cargo build --release --target wasm32-wasip2` on the
//! `wasm-plugins/` workspace into `target/wasm-plugins`; later calls (and other test processes,
//! which wait on cargo's lock) find it built. No `.wasm` file is committed.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ has a parent")
        .to_owned()
}

/// Builds the guest programs once per test process; returns the directory of the `.wasm`s.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace();
        let target = root.join("target/wasm-plugins");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(root.join("wasm-plugins/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            // Flags meant for the host build (coverage, sanitizers) do not apply to guests.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .expect("run cargo to build wasm-plugins");
        assert!(
            out.status.success(),
            "building wasm-plugins failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("wasm32-wasip2/release")
    })
}

/// Path of a built guest, by crate name (`loop-forever`).
pub fn path(name: &str) -> PathBuf {
    if workspace()
        .join(format!("wasm-plugins/hostile/{name}.wat"))
        .is_file()
    {
        return wat_path(name);
    }
    dir().join(format!("{}.wasm", name.replace('-', "_")))
}

/// Bytes of a built guest.
pub fn wasm(name: &str) -> Vec<u8> {
    let p = path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// `hostile/NAME.wat`, a component in text form (for what Rust cannot emit: `table.grow`, a
/// thousand core instances), in binary.
fn wat_path(name: &str) -> PathBuf {
    let wat = workspace().join(format!("wasm-plugins/hostile/{name}.wat"));
    let bytes = wat::parse_file(&wat).unwrap_or_else(|e| panic!("{}: {e}", wat.display()));
    let file = name.replace('-', "_");
    let out = dir().join(format!("{file}.wasm"));
    let tmp = dir().join(format!("{file}.wasm.{}", std::process::id()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &out).unwrap();
    out
}
