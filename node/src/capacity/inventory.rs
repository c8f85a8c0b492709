//! What hardware this host has: the figures a node may offer and cannot exceed.
//!
//! # Design
//!
//! Every source is read by a small *parser* that takes text ([`parse_meminfo_total`],
//! [`parse_cgroup_cpu_max`], [`parse_nvidia_smi_csv`], …), so the parsers are tested on real
//! outputs captured from a GPU host (`node/tests/fixtures/inventory/h100/`) and on garbage.
//! [`detect`] wires them to the live files and commands of this host.
//!
//! Detection **never fails**. A source that cannot be read contributes its fallback (no GPUs, no
//! cgroup limit, 0 bytes of memory or disk, no CPU model) and, when that is unexpected, a sentence
//! in [`Detected::notes`] that the `capacity show` command prints. Normal absences (no
//! `nvidia-smi` on a CPU-only host, no cgroup limit) are not noted.
//!
//! # Sources
//!
//! - **CPU**: [`std::thread::available_parallelism`] (which honours the affinity mask) × 1000,
//!   lowered to the tightest cgroup CPU quota that applies to this process: cgroup v2 `cpu.max`
//!   in the process's own cgroup (from `/proc/self/cgroup`) and every ancestor up to
//!   `/sys/fs/cgroup`, or on a cgroup v1 host `cpu.cfs_quota_us`/`cpu.cfs_period_us` likewise.
//!   The ancestors matter when the node runs as a systemd service with `CPUQuota=` on a slice,
//!   and in containers the process's cgroup is simply the namespace root, `/sys/fs/cgroup`.
//! - **CPU model**: `model name` in `/proc/cpuinfo`; where that line does not exist (arm64),
//!   the `Model name` of `lscpu` (run with `LC_ALL=C`, same timeout as `nvidia-smi`).
//! - **Memory**: `MemTotal` of `/proc/meminfo`, lowered to the tightest cgroup `memory.max`
//!   (v2) or `memory.limit_in_bytes` (v1) found the same way as the CPU quota.
//! - **Disk**: `statvfs` of the filesystem holding the data directory, or of its nearest
//!   existing ancestor when it does not exist yet: total is `f_blocks × f_frsize`, free is
//!   `f_bavail × f_frsize` (what an unprivileged user may still write).
//! - **GPUs**: `nvidia-smi --query-gpu=index,name,memory.total,uuid,pci.bus_id,driver_version
//!   --format=csv,noheader,nounits`, run only when an executable `nvidia-smi` is found in an
//!   absolute `PATH` directory, or when the environment variable [`NVIDIA_SMI_ENV`]
//!   (`DEGROUP_NVIDIA_SMI`) names the program to run instead (tests point it at a script that
//!   prints a fixture). It is killed after [`COMMAND_TIMEOUT`]; its output is capped at
//!   [`MAX_OUTPUT_BYTES`] and [`MAX_GPUS`] GPUs.
//!
//! [`detect`] blocks for as long as the commands take (at most [`COMMAND_TIMEOUT`] each, and
//! `lscpu` only runs where `/proc/cpuinfo` has no model); call it from a blocking context.
//! [`detect_disk`] is the cheap part alone, for callers that only need fresh disk figures.

mod cgroup;
mod parse;
mod run;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use parse::{
    MAX_OUTPUT_BYTES, parse_cpuinfo_model, parse_lscpu_model, parse_meminfo_total,
    parse_nvidia_smi_csv,
};

/// Environment variable naming the `nvidia-smi` program to run instead of searching `PATH`.
pub(crate) const NVIDIA_SMI_ENV: &str = "DEGROUP_NVIDIA_SMI";

/// How long `nvidia-smi` (and `lscpu`) may take before it is killed and ignored.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// The arguments given to `nvidia-smi`: one CSV line per GPU, memory in MiB without unit.
pub(crate) const NVIDIA_SMI_ARGS: [&str; 2] = [
    "--query-gpu=index,name,memory.total,uuid,pci.bus_id,driver_version",
    "--format=csv,noheader,nounits",
];

/// A GPU found on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectedGpu {
    /// The product name, as `nvidia-smi` reports it (e.g. `NVIDIA H100 80GB HBM3`).
    pub model: String,
    /// Total memory of the GPU, in bytes.
    pub mem_bytes: u64,
}

/// The hardware of this host, within the limits imposed on this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detected {
    /// Usable CPU in thousandths of a core: threads this process may run on × 1000, lowered
    /// to the cgroup CPU quota when that is tighter.
    pub cpu_millis: u64,
    /// The CPU model name, when it could be read.
    pub cpu_model: Option<String>,
    /// Memory in bytes: `MemTotal`, lowered to the cgroup memory limit when that is tighter
    /// (0 when neither could be read).
    pub mem_bytes: u64,
    /// Size in bytes of the filesystem holding the data directory (0 when unknown).
    pub disk_total_bytes: u64,
    /// Bytes of that filesystem still available to unprivileged users (`f_bavail`).
    pub disk_free_bytes: u64,
    /// The GPUs `nvidia-smi` reported (empty without `nvidia-smi`, or when it failed).
    pub gpus: Vec<DetectedGpu>,
    /// Sources that could not be read or made no sense, in words, one per problem.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Why an inventory source gave nothing usable. [`detect`] turns these into
/// [`Detected::notes`]; [`parse_nvidia_smi_csv`] and [`detect_disk`] return them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InventoryError {
    /// The text to parse, or a command's output, is larger than the cap.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The cap, in bytes.
        limit: u64,
    },
    /// A line of `nvidia-smi` output is not `index, name, memory.total, uuid, pci.bus_id,
    /// driver_version`.
    #[error("nvidia-smi output line {line}: {reason}: `{text}`")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
        /// The line, shortened.
        text: String,
    },
    /// A command could not be started.
    #[error("cannot run `{program}`: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A command exited unsuccessfully.
    #[error("`{program}` failed ({status})")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status, in words.
        status: String,
    },
    /// A command did not finish (or did not close its output) in time and was killed.
    #[error("`{program}` did not finish within {timeout:?}")]
    Timeout {
        /// The program.
        program: String,
        /// The time it was given.
        timeout: Duration,
    },
    /// A command's output could not be read.
    #[error("cannot read the output of `{program}`: {reason}")]
    Read {
        /// The program.
        program: String,
        /// The operating system's reason.
        reason: String,
    },
    /// `statvfs` failed on the data directory and on each of its ancestors.
    #[error("cannot stat the filesystem of {path}: {reason}")]
    Statvfs {
        /// The path last tried.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
}

/// Detects the hardware of this host; `data_dir` is where the node keeps its data (it need not
/// exist yet). Never fails: see the [module documentation](self) for the sources and fallbacks.
pub(crate) fn detect(data_dir: &Path) -> Detected {
    detect_from(data_dir, &Sources::system())
}

/// Total and free (for unprivileged users) bytes of the filesystem holding `data_dir`, or of
/// its nearest existing ancestor.
///
/// # Errors
///
/// [`InventoryError::Statvfs`] when no ancestor can be examined.
pub(crate) fn detect_disk(data_dir: &Path) -> Result<(u64, u64), InventoryError> {
    let mut dir = data_dir;
    loop {
        // `Path::new("a").parent()` is `""`: the current directory.
        let probe = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        match nix::sys::statvfs::statvfs(probe) {
            Ok(st) => {
                let frag = widen(st.fragment_size());
                let total = widen(st.blocks()).saturating_mul(frag);
                let free = widen(st.blocks_available()).saturating_mul(frag);
                return Ok((total, free.min(total)));
            }
            Err(e @ (nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR)) => {
                match dir.parent() {
                    Some(parent) if !dir.as_os_str().is_empty() => dir = parent,
                    _ => {
                        return Err(InventoryError::Statvfs {
                            path: probe.to_owned(),
                            reason: e.desc().to_owned(),
                        });
                    }
                }
            }
            Err(e) => {
                return Err(InventoryError::Statvfs {
                    path: probe.to_owned(),
                    reason: e.desc().to_owned(),
                });
            }
        }
    }
}

/// The `statvfs` counts are `u64` on 64-bit Linux but narrower on some 32-bit targets.
fn widen(n: impl Into<u64>) -> u64 {
    n.into()
}

/// Where [`detect_from`] reads: the live host ([`Sources::system`]) or, in tests, a fake tree.
#[derive(Debug, Clone)]
struct Sources {
    /// `/proc`.
    proc_dir: PathBuf,
    /// Where the cgroup filesystem(s) are mounted: `/sys/fs/cgroup`.
    cgroup_dir: PathBuf,
    /// The `nvidia-smi` to run, if any.
    nvidia_smi: Option<PathBuf>,
    /// The `lscpu` to run when `/proc/cpuinfo` names no model, if any.
    lscpu: Option<PathBuf>,
    /// Time limit of each command.
    timeout: Duration,
}

impl Sources {
    /// This host's files, and the commands found through `DEGROUP_NVIDIA_SMI` and `PATH`.
    fn system() -> Self {
        let path = std::env::var_os("PATH");
        Self {
            proc_dir: PathBuf::from("/proc"),
            cgroup_dir: PathBuf::from("/sys/fs/cgroup"),
            nvidia_smi: run::nvidia_smi_program(std::env::var_os(NVIDIA_SMI_ENV), path.as_deref()),
            lscpu: run::find_in_path("lscpu", path.as_deref()),
            timeout: COMMAND_TIMEOUT,
        }
    }
}

/// [`detect`] on the given sources.
fn detect_from(data_dir: &Path, sources: &Sources) -> Detected {
    let mut notes = Vec::new();
    let limits = cgroup::limits(&sources.proc_dir, &sources.cgroup_dir, &mut notes);

    let threads = match std::thread::available_parallelism() {
        Ok(n) => u64::try_from(n.get()).unwrap_or(u64::MAX),
        Err(e) => {
            notes.push(format!("cannot count the usable CPUs ({e}); assuming 1"));
            1
        }
    };
    let mut cpu_millis = threads.saturating_mul(1000);
    if let Some(quota) = limits.cpu_millis {
        cpu_millis = cpu_millis.min(quota);
    }

    let cpu_model = cpu_model(sources, &mut notes);

    let mem_total = read_small(&sources.proc_dir.join("meminfo"))
        .ok()
        .and_then(|t| parse_meminfo_total(&t));
    let mem_bytes = match (mem_total, limits.mem_bytes) {
        (Some(total), Some(limit)) => total.min(limit),
        (Some(total), None) => total,
        (None, limit) => {
            notes.push(format!(
                "cannot read MemTotal from {}",
                sources.proc_dir.join("meminfo").display()
            ));
            limit.unwrap_or(0)
        }
    };

    let (disk_total_bytes, disk_free_bytes) = detect_disk(data_dir).unwrap_or_else(|e| {
        notes.push(e.to_string());
        (0, 0)
    });

    let gpus = match &sources.nvidia_smi {
        None => Vec::new(),
        Some(exe) => run::run(
            exe,
            &NVIDIA_SMI_ARGS,
            &[],
            sources.timeout,
            MAX_OUTPUT_BYTES,
        )
        .and_then(|out| parse_nvidia_smi_csv(&out))
        .unwrap_or_else(|e| {
            notes.push(format!("no GPUs detected: {e}"));
            Vec::new()
        }),
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

/// The CPU model from `/proc/cpuinfo`, else from `lscpu`.
fn cpu_model(sources: &Sources, notes: &mut Vec<String>) -> Option<String> {
    if let Some(model) = read_small(&sources.proc_dir.join("cpuinfo"))
        .ok()
        .and_then(|t| parse_cpuinfo_model(&t))
    {
        return Some(model);
    }
    let Some(lscpu) = &sources.lscpu else {
        notes.push("CPU model unknown: no `model name` in /proc/cpuinfo and no lscpu".to_owned());
        return None;
    };
    match run::run(
        lscpu,
        &[],
        &[("LC_ALL", "C")],
        sources.timeout,
        MAX_OUTPUT_BYTES,
    ) {
        Ok(out) => {
            let model = parse_lscpu_model(&out);
            if model.is_none() {
                notes.push("CPU model unknown: lscpu names none".to_owned());
            }
            model
        }
        Err(e) => {
            notes.push(format!("CPU model unknown: {e}"));
            None
        }
    }
}

/// Reads a small text file (kernel pseudo-files: `/proc/*`, cgroup knobs), at most
/// [`MAX_OUTPUT_BYTES`], so that a strange mount cannot make detection read without end.
fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_OUTPUT_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}
