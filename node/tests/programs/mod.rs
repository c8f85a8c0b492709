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
    if name == "compile-bomb" {
        return write_built(
            "compile_bomb.wasm",
            &compile_bomb(COMPILE_BOMB.0, COMPILE_BOMB.1),
        );
    }
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
    write_built(&format!("{}.wasm", name.replace('-', "_")), &bytes)
}

fn write_built(name: &str, bytes: &[u8]) -> PathBuf {
    let out = dir().join(name);
    let tmp = dir().join(format!("{name}.{}", std::process::id()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// Locals and branch targets of the `compile-bomb` guest.
pub const COMPILE_BOMB: (usize, usize) = (1000, 1000);

/// `hostile/compile-bomb.wat` with its bomb filled in: a component of the plugin world whose
/// `tick` calls one function with `locals` i64 locals, all live across a loop whose body is
/// a `br_table` into `targets` nested blocks, each of which adds to one local. In wasm that is
/// a few bytes per local and per target; in Cranelift's SSA every join point gets a block
/// parameter for every live local (`locals` × `targets`), which register allocation then
/// works through: a small package, seconds of CPU and hundreds of MiB to compile.
pub fn compile_bomb(locals: usize, targets: usize) -> Vec<u8> {
    use std::fmt::Write as _;
    let wat = workspace().join("wasm-plugins/hostile/compile-bomb.wat");
    let template =
        std::fs::read_to_string(&wat).unwrap_or_else(|e| panic!("{}: {e}", wat.display()));
    let mut f = String::new();
    f.push_str("(func $bomb (param $x i32) (result i64)\n");
    for i in 0..locals {
        write!(f, "(local $l{i} i64)").unwrap();
    }
    f.push_str("\n(loop $top\n");
    for i in (0..targets).rev() {
        write!(f, "(block $b{i} ").unwrap();
    }
    f.push_str("(br_table");
    for i in 0..targets {
        write!(f, " $b{i}").unwrap();
    }
    f.push_str(" (local.get $x))\n");
    for i in 0..targets {
        let l = i % locals;
        let m = (i * 7 + 1) % locals;
        write!(
            f,
            ")(local.set $l{l} (i64.add (local.get $l{l}) (local.get $l{m})))"
        )
        .unwrap();
    }
    f.push_str("\n(br_if $top (i32.eqz (local.get $x))))\n(i64.const 0)\n");
    for i in 0..locals {
        write!(f, "(local.get $l{i}) i64.add ").unwrap();
    }
    f.push_str(")\n");
    let text = template.replace(";; @bomb", &f);
    assert_ne!(text, template, "{} has no `;; @bomb` line", wat.display());
    wat::parse_str(&text).unwrap_or_else(|e| panic!("compile bomb: {e}"))
}

/// Runs a future to its end on a fresh single-threaded executor (what a worker thread does).
pub trait Now: std::future::Future + Sized {
    fn now(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self)
    }
}
impl<F: std::future::Future> Now for F {}
