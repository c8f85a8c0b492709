//! What hardware this host has.
//!
//! Each source is read by a small parser that takes text (so it is tested on real outputs
//! captured from a GPU host, in `node/tests/fixtures/inventory/`), and [`detect`] wires the
//! parsers to the live files and commands. Detection never fails: a source that cannot be read
//! contributes nothing (no GPUs, no cgroup limit) and is recorded in [`Detected::notes`].
//!
//! - CPU: `available_parallelism` (which honours the affinity mask), capped by the cgroup v2
//!   `cpu.max` quota.
//! - Memory: `MemTotal` from `/proc/meminfo`, capped by the cgroup v2 `memory.max`.
//! - Disk: `statvfs` of the filesystem holding the data directory (or its nearest existing
//!   ancestor).
//! - GPUs: `nvidia-smi --query-gpu=… --format=csv,noheader,nounits` when it is on `PATH` (or
//!   named by `DEGROUP_NVIDIA_SMI`), with a 5-second timeout.

mod parse;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use parse::{
    parse_cgroup_cpu_max, parse_cgroup_memory_max, parse_cpuinfo_model, parse_lscpu_model,
    parse_meminfo_total, parse_nvidia_smi_csv,
};

/// A detected GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectedGpu {
    pub model: String,
    pub mem_bytes: u64,
}

/// The detected hardware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detected {
    /// Usable CPU in thousandths of a core, within cgroup limits.
    pub cpu_millis: u64,
    pub cpu_model: Option<String>,
    /// Memory, within cgroup limits.
    pub mem_bytes: u64,
    /// Size of the data directory's filesystem.
    pub disk_total_bytes: u64,
    /// Space available there to unprivileged users.
    pub disk_free_bytes: u64,
    pub gpus: Vec<DetectedGpu>,
    /// Sources that could not be read, in words.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Inventory failures (only the GPU parser reports them; [`detect`] turns them into notes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("nvidia-smi output larger than 1 MiB")]
    TooLarge,
    #[error("nvidia-smi output line {line} is not `index, name, memory.total, …`: {text}")]
    BadLine { line: usize, text: String },
}

const NVIDIA_SMI_ARGS: [&str; 2] = [
    "--query-gpu=index,name,memory.total,uuid,pci.bus_id,driver_version",
    "--format=csv,noheader,nounits",
];
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(5);

/// Detects the hardware of this host.
pub fn detect(data_dir: &Path) -> Detected {
    let mut notes = Vec::new();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from) as u64 * 1000;
    let cgroup_cpu = std::fs::read_to_string("/sys/fs/cgroup/cpu.max")
        .ok()
        .and_then(|t| parse_cgroup_cpu_max(&t));
    let cpu_millis = cgroup_cpu.map_or(cpus, |c| c.min(cpus));
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| parse_cpuinfo_model(&t));
    let mem_total = match std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo_total(&t))
    {
        Some(m) => m,
        None => {
            notes.push("cannot read MemTotal from /proc/meminfo".to_owned());
            0
        }
    };
    let cgroup_mem = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| parse_cgroup_memory_max(&t));
    let mem_bytes = cgroup_mem.map_or(mem_total, |c| c.min(mem_total));
    let (disk_total_bytes, disk_free_bytes) = disk(data_dir).unwrap_or_else(|e| {
        notes.push(format!("cannot stat the data dir's filesystem: {e}"));
        (0, 0)
    });
    let gpus = match gpus(NVIDIA_SMI_TIMEOUT) {
        Ok(g) => g,
        Err(e) => {
            notes.push(e);
            Vec::new()
        }
    };
    Detected {
        cpu_millis,
        cpu_model,
        mem_bytes,
        disk_total_bytes,
        disk_free_bytes,
        gpus,
        notes,
    }
}

fn disk(data_dir: &Path) -> Result<(u64, u64), String> {
    let mut dir = data_dir;
    while !dir.exists() {
        dir = dir.parent().ok_or("no existing ancestor")?;
    }
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| e.to_string())?;
    let frag = st.fragment_size();
    Ok((
        (st.blocks() as u64).saturating_mul(frag),
        (st.blocks_available() as u64).saturating_mul(frag),
    ))
}

/// The `nvidia-smi` to run: `DEGROUP_NVIDIA_SMI`, else the first on `PATH`.
fn nvidia_smi() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("DEGROUP_NVIDIA_SMI").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nvidia-smi"))
        .find(|p| p.is_file())
}

/// GPUs from `nvidia-smi`; no `nvidia-smi` means no GPUs (not an error).
fn gpus(timeout: Duration) -> Result<Vec<DetectedGpu>, String> {
    let Some(exe) = nvidia_smi() else {
        return Ok(Vec::new());
    };
    let out = run_with_timeout(&exe, &NVIDIA_SMI_ARGS, timeout)?;
    parse_nvidia_smi_csv(&out).map_err(|e| e.to_string())
}

/// Runs a command and returns its stdout, killing it after `timeout`.
fn run_with_timeout(exe: &Path, args: &[&str], timeout: Duration) -> Result<String, String> {
    use std::io::Read as _;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(status)) => return Err(format!("{} exited with {status}", exe.display())),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not answer within {timeout:?}",
                    exe.display()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.by_ref()
            .take(parse::MAX_NVIDIA_SMI + 1)
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
    }
    Ok(text)
}
