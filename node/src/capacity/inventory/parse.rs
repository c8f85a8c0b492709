//! Parsers of the inventory sources.

use super::{DetectedGpu, InventoryError};

/// Largest `nvidia-smi` output accepted.
pub const MAX_NVIDIA_SMI: u64 = 1024 * 1024;
/// Most GPUs accepted from one host.
pub const MAX_GPUS: usize = 64;
const MIB: u64 = 1024 * 1024;

/// cgroup v2 `cpu.max` (`QUOTA PERIOD` or `max PERIOD`) → millicores, `None` when unlimited.
pub fn parse_cgroup_cpu_max(text: &str) -> Option<u64> {
    let mut parts = text.split_whitespace();
    let quota: u64 = parts.next()?.parse().ok()?;
    let period: u64 = parts.next()?.parse().ok()?;
    if period == 0 || parts.next().is_some() {
        return None;
    }
    Some(quota.saturating_mul(1000) / period)
}

/// cgroup v2 `memory.max` (bytes or `max`) → bytes, `None` when unlimited.
pub fn parse_cgroup_memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `MemTotal:  131981020 kB` → bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | Some("KB") => value.checked_mul(1024),
        None => Some(value),
        _ => None,
    }
}

fn field_after(text: &str, key: &str, sep: char) -> Option<String> {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(sep)?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
        .filter(|v| !v.is_empty())
}

/// `Model name:  …` from `lscpu`.
pub fn parse_lscpu_model(text: &str) -> Option<String> {
    field_after(text, "Model name", ':')
}

/// `model name : …` from `/proc/cpuinfo`.
pub fn parse_cpuinfo_model(text: &str) -> Option<String> {
    field_after(text, "model name", ':')
}

/// `nvidia-smi --query-gpu=index,name,memory.total,… --format=csv[,noheader][,nounits]`.
pub fn parse_nvidia_smi_csv(text: &str) -> Result<Vec<DetectedGpu>, InventoryError> {
    if text.len() as u64 > MAX_NVIDIA_SMI {
        return Err(InventoryError::TooLarge);
    }
    let mut gpus = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("index") {
            continue;
        }
        let bad = || InventoryError::BadLine {
            line: i + 1,
            text: line.chars().take(120).collect(),
        };
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() < 3 || cols[1].is_empty() {
            return Err(bad());
        }
        let mem = cols[2].trim_end_matches("MiB").trim();
        let mib: u64 = mem.parse().map_err(|_| bad())?;
        if gpus.len() == MAX_GPUS {
            break;
        }
        gpus.push(DetectedGpu {
            model: cols[1].to_owned(),
            mem_bytes: mib.saturating_mul(MIB),
        });
    }
    Ok(gpus)
}
