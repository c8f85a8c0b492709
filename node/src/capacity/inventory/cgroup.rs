//! The cgroup limits that apply to this process: its own cgroup and every ancestor, in the
//! cgroup v2 hierarchy and, on hosts that still use them, the v1 `cpu` and `memory` ones.

use std::path::{Component, Path, PathBuf};

use super::parse::{
    parse_cgroup_cpu_max, parse_cgroup_memory_max, parse_cgroup_v1_cpu,
    parse_cgroup_v1_memory_limit, parse_proc_self_cgroup,
};
use super::read_small;

/// Deepest cgroup path followed (the kernel allows far less in practice).
const MAX_DEPTH: usize = 64;

/// The tightest limits found; `None` where nothing limits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// CPU quota in thousandths of a core.
    pub(super) cpu_millis: Option<u64>,
    /// Memory limit in bytes.
    pub(super) mem_bytes: Option<u64>,
}

/// Limits from the cgroup(s) of this process (named in `<proc_dir>/self/cgroup`) and their
/// ancestors, under `cgroup_dir`. Malformed knobs are noted and ignored.
pub(super) fn limits(proc_dir: &Path, cgroup_dir: &Path, notes: &mut Vec<String>) -> Limits {
    // Unreadable: look at the mount roots only, which is what a container sees anyway.
    let paths = read_small(&proc_dir.join("self/cgroup"))
        .map(|t| parse_proc_self_cgroup(&t))
        .unwrap_or_default();
    let mut limits = Limits::default();

    // cgroup v2: the unified hierarchy, mounted at `cgroup_dir` itself on a v2 host.
    let v2 = paths.v2.as_deref().unwrap_or("/");
    for dir in chain(cgroup_dir, v2) {
        if let Some(text) = knob(&dir, "cpu.max") {
            let parsed = parse_cgroup_cpu_max(&text);
            note_malformed(parsed, &text, &dir.join("cpu.max"), notes);
            limits.cpu_millis = tightest(limits.cpu_millis, parsed);
        }
        if let Some(text) = knob(&dir, "memory.max") {
            let parsed = parse_cgroup_memory_max(&text);
            note_malformed(parsed, &text, &dir.join("memory.max"), notes);
            limits.mem_bytes = tightest(limits.mem_bytes, parsed);
        }
    }

    // cgroup v1: one hierarchy per controller (`cpu` is often a link to `cpu,cpuacct`).
    let cpu_v1 = paths.cpu_v1.as_deref().unwrap_or("/");
    for dir in chain(&cgroup_dir.join("cpu"), cpu_v1) {
        if let (Some(quota), Some(period)) = (
            knob(&dir, "cpu.cfs_quota_us"),
            knob(&dir, "cpu.cfs_period_us"),
        ) {
            let parsed = parse_cgroup_v1_cpu(&quota, &period);
            if parsed.is_none() && quota.trim() != "-1" {
                notes.push(format!(
                    "ignoring malformed {}: `{}` / `{}`",
                    dir.join("cpu.cfs_quota_us").display(),
                    shorten(&quota),
                    shorten(&period)
                ));
            }
            limits.cpu_millis = tightest(limits.cpu_millis, parsed);
        }
    }
    let memory_v1 = paths.memory_v1.as_deref().unwrap_or("/");
    for dir in chain(&cgroup_dir.join("memory"), memory_v1) {
        if let Some(text) = knob(&dir, "memory.limit_in_bytes") {
            let parsed = parse_cgroup_v1_memory_limit(&text);
            if parsed.is_none() && text.trim().parse::<u64>().is_err() {
                notes.push(format!(
                    "ignoring malformed {}: `{}`",
                    dir.join("memory.limit_in_bytes").display(),
                    shorten(&text)
                ));
            }
            limits.mem_bytes = tightest(limits.mem_bytes, parsed);
        }
    }
    limits
}

/// `root`, then `root/a`, `root/a/b` … down to `root/<cgroup>`: the cgroup and all its
/// ancestors. Only plain components are followed (no `..`).
pub(super) fn chain(root: &Path, cgroup: &str) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_owned()];
    let mut dir = root.to_owned();
    for component in Path::new(cgroup).components().take(MAX_DEPTH) {
        match component {
            Component::Normal(name) => {
                dir.push(name);
                dirs.push(dir.clone());
            }
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => break,
        }
    }
    dirs
}

/// The content of `dir/name`, or `None` when it cannot be read (usually: does not exist).
fn knob(dir: &Path, name: &str) -> Option<String> {
    read_small(&dir.join(name)).ok()
}

/// The smaller of two optional limits (`None` = unlimited).
fn tightest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Notes a v2 knob that parsed to nothing although it does not say `max`.
fn note_malformed(parsed: Option<u64>, text: &str, path: &Path, notes: &mut Vec<String>) {
    if parsed.is_none() && text.split_whitespace().next() != Some("max") {
        notes.push(format!(
            "ignoring malformed {}: `{}`",
            path.display(),
            shorten(text)
        ));
    }
}

/// The first line of `text`, at most 40 characters.
fn shorten(text: &str) -> String {
    text.lines().next().unwrap_or("").chars().take(40).collect()
}
