//! Parsers of the inventory sources: text in, figures out. None of them panics, whatever the
//! input (a property test feeds them arbitrary strings); they answer `None` (or an error) for
//! anything they do not recognise rather than guessing.

use super::{DetectedGpu, InventoryError};

/// Largest text accepted from a command or a kernel file (1 MiB).
pub(crate) const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// Most GPUs taken from one host; further lines of `nvidia-smi` output are ignored.
pub(crate) const MAX_GPUS: usize = 64;

/// Longest model name kept (CPU or GPU), in characters; longer names are cut.
pub(super) const MAX_MODEL_CHARS: usize = 128;

const MIB: u64 = 1024 * 1024;

/// cgroup v1 `memory.limit_in_bytes` values from here up mean "unlimited" (the kernel writes
/// `PAGE_COUNTER_MAX` × page size, just under 2^63).
const V1_UNLIMITED_MEMORY: u64 = 1 << 62;

/// `quota` µs of CPU time per `period` µs → thousandths of a core, rounded down but at least 1.
fn quota_millis(quota: u64, period: u64) -> Option<u64> {
    if quota == 0 || period == 0 {
        return None;
    }
    let millis = u128::from(quota) * 1000 / u128::from(period);
    Some(u64::try_from(millis).unwrap_or(u64::MAX).max(1))
}

/// cgroup v2 `cpu.max` (`"$QUOTA $PERIOD"`, quota `max` when unlimited) → thousandths of a
/// core.
///
/// `"max 100000"` → `None` (no limit), `"200000 100000"` → `Some(2000)`, `"150000 100000"` →
/// `Some(1500)`. Malformed text (one field, three fields, non-numbers, a zero) → `None`.
pub(crate) fn parse_cgroup_cpu_max(text: &str) -> Option<u64> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?;
    let period: u64 = fields.next()?.parse().ok()?;
    if fields.next().is_some() || quota == "max" {
        return None;
    }
    quota_millis(quota.parse().ok()?, period)
}

/// cgroup v2 `memory.max` (bytes, or `max` when unlimited) → bytes.
///
/// `"max"` → `None`, `"1073741824"` → `Some(1073741824)`; malformed → `None`.
pub(crate) fn parse_cgroup_memory_max(text: &str) -> Option<u64> {
    let value = text.trim();
    if value == "max" {
        return None;
    }
    value.parse().ok()
}

/// cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` → thousandths of a core.
///
/// A quota of `-1` means no limit (`None`); malformed → `None`.
pub(crate) fn parse_cgroup_v1_cpu(quota: &str, period: &str) -> Option<u64> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: u64 = period.trim().parse().ok()?;
    quota_millis(u64::try_from(quota).ok()?, period)
}

/// cgroup v1 `memory.limit_in_bytes` → bytes; the kernel's "unlimited" value (≥ 2^62) and
/// malformed text → `None`.
pub(crate) fn parse_cgroup_v1_memory_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse()
        .ok()
        .filter(|&bytes| bytes < V1_UNLIMITED_MEMORY)
}

/// `/proc/meminfo` → `MemTotal` in bytes (`"MemTotal:  131072000 kB"` → `134217728000`).
///
/// The kernel always writes the value in `kB` (KiB); any other unit, or none, → `None`.
pub(crate) fn parse_meminfo_total(text: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let mut fields = rest.split_whitespace();
    let kib: u64 = fields.next()?.parse().ok()?;
    match (fields.next(), fields.next()) {
        (Some("kB"), None) => kib.checked_mul(1024),
        _ => None,
    }
}

/// `Model name:  Intel(R) Xeon(R) …` in `lscpu` output → the model (first one when the host
/// has several kinds of core). `-` (what `lscpu` prints for an unknown model) → `None`.
///
/// Expects the C locale (`LC_ALL=C`); keys may be indented (newer `lscpu` nests them).
pub(crate) fn parse_lscpu_model(text: &str) -> Option<String> {
    value_of(text, "Model name").filter(|m| m != "-")
}

/// `model name\t: …` in `/proc/cpuinfo` → the model (of the first processor).
///
/// Only x86 kernels write that line; arm64 has none (the caller then asks `lscpu`).
pub(crate) fn parse_cpuinfo_model(text: &str) -> Option<String> {
    value_of(text, "model name")
}

/// The value of the first `key: value` line whose key is exactly `key` (surrounding blanks
/// ignored), cleaned by [`clean_model`]; `None` when absent or empty.
fn value_of(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then_some(v)
        })
        .and_then(clean_model)
}

/// Collapses runs of whitespace (and drops control characters) so that the name prints on one
/// line, cuts it at [`MAX_MODEL_CHARS`]; `None` when nothing is left.
fn clean_model(raw: &str) -> Option<String> {
    let words: Vec<&str> = raw.split_whitespace().collect();
    let name: String = words
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MODEL_CHARS)
        .collect();
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Output of `nvidia-smi --query-gpu=index,name,memory.total,uuid,pci.bus_id,driver_version
/// --format=csv,noheader,nounits` → the GPUs.
///
/// One line per GPU: `0, NVIDIA H100 80GB HBM3, 81559, GPU-…, 00000000:00:06.0, 580.159.04`,
/// memory in MiB. Also accepted: the `--format=csv` variant, with its header line (`index,
/// name, …`, skipped) and units (`81559 MiB`), and `\r\n` line ends. A name containing commas
/// is kept whole (the four last fields are fixed). Blank lines are skipped; an empty output
/// means no GPUs. At most [`MAX_GPUS`] GPUs are returned; further lines are not read.
///
/// # Errors
///
/// [`InventoryError::TooLarge`] for input over [`MAX_OUTPUT_BYTES`];
/// [`InventoryError::BadLine`] for a line with fewer than six fields, a non-numeric index, an
/// empty name, or a memory size that is not a whole number of MiB.
pub(crate) fn parse_nvidia_smi_csv(text: &str) -> Result<Vec<DetectedGpu>, InventoryError> {
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_OUTPUT_BYTES {
        return Err(InventoryError::TooLarge {
            what: "nvidia-smi output",
            limit: MAX_OUTPUT_BYTES,
        });
    }
    let mut gpus = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if gpus.len() == MAX_GPUS {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason| InventoryError::BadLine {
            line: i + 1,
            reason,
            text: line.chars().take(120).collect(),
        };
        let fields: Vec<&str> = line.split(',').collect();
        if fields[0].trim().eq_ignore_ascii_case("index") {
            continue; // the header of `--format=csv`
        }
        // index, name (may hold commas), memory.total, uuid, pci.bus_id, driver_version
        let n = fields.len();
        if n < 6 {
            return Err(bad("expected 6 comma-separated fields"));
        }
        if fields[0].trim().parse::<u32>().is_err() {
            return Err(bad("the index is not a number"));
        }
        let model = clean_model(&fields[1..n - 4].join(",")).ok_or_else(|| bad("no GPU name"))?;
        let mem = fields[n - 4].trim();
        let mem = mem.strip_suffix("MiB").map_or(mem, str::trim_end);
        let mem_bytes = mem
            .parse::<u64>()
            .ok()
            .and_then(|mib| mib.checked_mul(MIB))
            .ok_or_else(|| bad("memory.total is not a number of MiB"))?;
        gpus.push(DetectedGpu { model, mem_bytes });
    }
    Ok(gpus)
}

/// The cgroups of this process, from `/proc/self/cgroup`: paths relative to each hierarchy's
/// mount point.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct CgroupPaths {
    /// The cgroup v2 (unified) path: the `0::<path>` line.
    pub(super) v2: Option<String>,
    /// The cgroup v1 hierarchy holding the `cpu` controller.
    pub(super) cpu_v1: Option<String>,
    /// The cgroup v1 hierarchy holding the `memory` controller.
    pub(super) memory_v1: Option<String>,
}

/// `/proc/self/cgroup` (`hierarchy-id:controllers:path` lines) → the paths that matter.
pub(super) fn parse_proc_self_cgroup(text: &str) -> CgroupPaths {
    let mut paths = CgroupPaths::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        if id == "0" && controllers.is_empty() {
            paths.v2.get_or_insert_with(|| path.to_owned());
            continue;
        }
        for controller in controllers.split(',') {
            match controller {
                "cpu" => paths.cpu_v1.get_or_insert_with(|| path.to_owned()),
                "memory" => paths.memory_v1.get_or_insert_with(|| path.to_owned()),
                _ => continue,
            };
        }
    }
    paths
}
