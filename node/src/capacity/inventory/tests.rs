use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::parse::{
    CgroupPaths, MAX_GPUS, MAX_MODEL_CHARS, parse_cgroup_cpu_max, parse_cgroup_memory_max,
    parse_cgroup_v1_cpu, parse_cgroup_v1_memory_limit, parse_proc_self_cgroup,
};
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const LSCPU: &str = include_str!("../../../tests/fixtures/inventory/h100/lscpu.txt");
const MEMINFO: &str = include_str!("../../../tests/fixtures/inventory/h100/meminfo.txt");
const SMI: &str = include_str!("../../../tests/fixtures/inventory/h100/nvidia-smi-query.csv");
const SMI_HEADER: &str =
    include_str!("../../../tests/fixtures/inventory/h100/nvidia-smi-query-header.csv");

const GIB: u64 = 1024 * 1024 * 1024;
const H100_MIB: u64 = 81_559;

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// A script printing `text` (kept in a file beside it, so no shell quoting is involved).
fn printing_script(dir: &Path, name: &str, text: &str) -> std::io::Result<PathBuf> {
    let data = dir.join(format!("{name}.out"));
    std::fs::write(&data, text)?;
    script(dir, name, &format!("cat '{}'", data.display()))
}

/// Writes `text` at `root/rel`, creating the directories.
fn put(root: &Path, rel: &str, text: &str) -> std::io::Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

/// Sources reading a fake `/proc` and `/sys/fs/cgroup` under `root`, with no commands.
fn fake_sources(root: &Path) -> Sources {
    Sources {
        proc_dir: root.join("proc"),
        cgroup_dir: root.join("cgroup"),
        nvidia_smi: None,
        lscpu: None,
        timeout: Duration::from_secs(5),
    }
}

// ---- the H100 host's real outputs -------------------------------------------------------------

#[test]
fn meminfo_fixture() {
    assert_eq!(parse_meminfo_total(MEMINFO), Some(131_981_020 * 1024));
}

#[test]
fn lscpu_fixture() {
    assert_eq!(
        parse_lscpu_model(LSCPU).as_deref(),
        Some("Intel(R) Xeon(R) Processor")
    );
    // Keys are matched exactly: lscpu's `Model name` is not cpuinfo's `model name`, and
    // `BIOS Model name` or `Model` are not `Model name`.
    assert_eq!(parse_cpuinfo_model(LSCPU), None);
}

#[test]
fn nvidia_smi_fixtures_without_and_with_header() -> TestResult {
    for text in [SMI, SMI_HEADER] {
        let gpus = parse_nvidia_smi_csv(text)?;
        assert_eq!(gpus.len(), 1, "{text}");
        assert_eq!(gpus[0].model, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpus[0].mem_bytes, H100_MIB * 1024 * 1024);
        // "80GB" is 79.6 GiB as nvidia-smi counts it.
        assert!((79 * GIB..=80 * GIB).contains(&gpus[0].mem_bytes));
    }
    Ok(())
}

// ---- cgroup knobs -----------------------------------------------------------------------------

#[test]
fn cgroup_v2_cpu_max() {
    assert_eq!(parse_cgroup_cpu_max("max 100000"), None);
    assert_eq!(parse_cgroup_cpu_max("max 100000\n"), None);
    assert_eq!(parse_cgroup_cpu_max("200000 100000"), Some(2000));
    assert_eq!(parse_cgroup_cpu_max("150000 100000\n"), Some(1500));
    assert_eq!(parse_cgroup_cpu_max("50000 100000"), Some(500));
    assert_eq!(
        parse_cgroup_cpu_max("33333 100000"),
        Some(333),
        "rounded down"
    );
    assert_eq!(parse_cgroup_cpu_max("1000 1000000"), Some(1));
    assert_eq!(parse_cgroup_cpu_max("1 1000000"), Some(1), "at least 1");
    assert_eq!(
        parse_cgroup_cpu_max(&format!("{} 1", u64::MAX)),
        Some(u64::MAX),
        "saturates"
    );
    for bad in [
        "",
        "max",
        "100000",
        "garbage",
        "100000 0",
        "0 100000",
        "-1 100000",
        "1.5 100000",
        "100000 100000 1",
        "100000 max",
        "max max",
    ] {
        assert_eq!(parse_cgroup_cpu_max(bad), None, "{bad:?}");
    }
}

#[test]
fn cgroup_v2_memory_max() {
    assert_eq!(parse_cgroup_memory_max("max"), None);
    assert_eq!(parse_cgroup_memory_max("max\n"), None);
    assert_eq!(parse_cgroup_memory_max("1073741824"), Some(GIB));
    assert_eq!(parse_cgroup_memory_max("1073741824\n"), Some(GIB));
    assert_eq!(parse_cgroup_memory_max("0"), Some(0));
    for bad in ["", "-1", "1G", "1 2", "18446744073709551616"] {
        assert_eq!(parse_cgroup_memory_max(bad), None, "{bad:?}");
    }
}

#[test]
fn cgroup_v1_knobs() {
    assert_eq!(parse_cgroup_v1_cpu("-1\n", "100000\n"), None);
    assert_eq!(parse_cgroup_v1_cpu("250000\n", "100000\n"), Some(2500));
    assert_eq!(parse_cgroup_v1_cpu("x", "100000"), None);
    assert_eq!(parse_cgroup_v1_cpu("100000", "0"), None);
    assert_eq!(parse_cgroup_v1_cpu("-5", "100000"), None);
    // This machine's kind of v1 "unlimited" (PAGE_COUNTER_MAX × 4 KiB), and with 64 KiB pages.
    assert_eq!(parse_cgroup_v1_memory_limit("9223372036854771712\n"), None);
    assert_eq!(parse_cgroup_v1_memory_limit("9223372036854710272"), None);
    assert_eq!(parse_cgroup_v1_memory_limit("4294967296\n"), Some(4 * GIB));
    assert_eq!(parse_cgroup_v1_memory_limit("max"), None);
}

#[test]
fn proc_self_cgroup() {
    assert_eq!(
        parse_proc_self_cgroup("0::/system.slice/degroup.service\n"),
        CgroupPaths {
            v2: Some("/system.slice/degroup.service".into()),
            ..CgroupPaths::default()
        }
    );
    // A hybrid host (this sandbox's kind): v1 controllers plus an empty unified hierarchy.
    let hybrid = "9:name=systemd:/\n4:memory:/process_api/e88f\n2:cpuacct:/\n\
                  1:cpu,cpuacct:/job\n0::/\n";
    assert_eq!(
        parse_proc_self_cgroup(hybrid),
        CgroupPaths {
            v2: Some("/".into()),
            cpu_v1: Some("/job".into()),
            memory_v1: Some("/process_api/e88f".into()),
        }
    );
    // Colons in the path are kept; malformed lines are skipped.
    assert_eq!(
        parse_proc_self_cgroup("garbage\n1:cpu\n2:memory:relative\n0::/a:b\n").v2,
        Some("/a:b".into())
    );
    assert_eq!(parse_proc_self_cgroup(""), CgroupPaths::default());
}

#[test]
fn cgroup_chain_lists_the_cgroup_and_its_ancestors() {
    let root = Path::new("/sys/fs/cgroup");
    assert_eq!(cgroup::chain(root, "/"), vec![root.to_owned()]);
    assert_eq!(
        cgroup::chain(root, "/a/b"),
        vec![root.to_owned(), root.join("a"), root.join("a/b")]
    );
    assert_eq!(
        cgroup::chain(root, "/a/../../etc"),
        vec![root.to_owned(), root.join("a")],
        "stops at `..`"
    );
}

// ---- /proc/meminfo, /proc/cpuinfo, lscpu -------------------------------------------------------

#[test]
fn meminfo_edge_cases() {
    assert_eq!(
        parse_meminfo_total("MemFree: 1 kB\nMemTotal:       131072000 kB\n"),
        Some(131_072_000 * 1024)
    );
    assert_eq!(parse_meminfo_total("MemTotal: 0 kB"), Some(0));
    for bad in [
        "",
        "MemTotal:",
        "MemTotal: 12",
        "MemTotal: 12 MB",
        "MemTotal: 12 kB extra",
        "MemTotal: -12 kB",
        "MemTotal: lots kB",
        "MemFree: 12 kB",
        " MemTotal: 12 kB",
        "MemTotal: 18446744073709551615 kB",
    ] {
        assert_eq!(parse_meminfo_total(bad), None, "{bad:?}");
    }
}

#[test]
fn cpuinfo_model() {
    let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 17\n\
                   model name\t: AMD EPYC 9654 96-Core Processor\n\nprocessor\t: 1\n\
                   model name\t: Something Else\n";
    assert_eq!(
        parse_cpuinfo_model(cpuinfo).as_deref(),
        Some("AMD EPYC 9654 96-Core Processor")
    );
    assert_eq!(
        parse_cpuinfo_model("model name\t:   Intel(R)  Xeon(R)   CPU \t E5-2680 v4 @ 2.40GHz  ")
            .as_deref(),
        Some("Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz"),
        "blanks collapsed"
    );
    // arm64: no `model name` line at all.
    let arm = "processor\t: 0\nBogoMIPS\t: 2000.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd4f\n";
    assert_eq!(parse_cpuinfo_model(arm), None);
    assert_eq!(parse_cpuinfo_model("model name\t: \n"), None);
    assert_eq!(parse_cpuinfo_model("model name\t: \u{7}\u{0}\n"), None);
    let long = format!("model name\t: {}\n", "x".repeat(10_000));
    assert_eq!(
        parse_cpuinfo_model(&long).map(|m| m.chars().count()),
        Some(MAX_MODEL_CHARS)
    );
}

#[test]
fn lscpu_model_variants() {
    // Newer lscpu nests the model under its vendor; hybrid hosts list several.
    let nested = "Architecture: aarch64\nVendor ID: ARM\n  Model name: Neoverse-V2\n    \
                  Model: 0\nVendor ID: ARM\n  Model name: Cortex-A720\n";
    assert_eq!(parse_lscpu_model(nested).as_deref(), Some("Neoverse-V2"));
    assert_eq!(parse_lscpu_model("Model name: -\n"), None);
    assert_eq!(
        parse_lscpu_model("BIOS Model name: pc-q35\nModel name: EPYC\n").as_deref(),
        Some("EPYC")
    );
    assert_eq!(
        parse_lscpu_model("Modellname: Xeon\n"),
        None,
        "C locale only"
    );
    assert_eq!(parse_lscpu_model(""), None);
}

// ---- nvidia-smi -------------------------------------------------------------------------------

#[test]
fn nvidia_smi_several_gpus_and_odd_spacing() -> TestResult {
    let text = "0, NVIDIA A100-SXM4-80GB, 81920, GPU-a, 00000000:07:00.0, 550.54.15\r\n\
                \r\n\
                1,NVIDIA A100-SXM4-40GB,40960,GPU-b,00000000:0F:00.0,550.54.15\r\n";
    let gpus = parse_nvidia_smi_csv(text)?;
    assert_eq!(
        gpus,
        vec![
            DetectedGpu {
                model: "NVIDIA A100-SXM4-80GB".into(),
                mem_bytes: 80 * GIB,
            },
            DetectedGpu {
                model: "NVIDIA A100-SXM4-40GB".into(),
                mem_bytes: 40 * GIB,
            },
        ]
    );
    Ok(())
}

#[test]
fn nvidia_smi_name_with_commas_is_kept_whole() -> TestResult {
    let gpus = parse_nvidia_smi_csv("0, Acme, Model X, 1024 MiB, GPU-1, 0000:01:00.0, 1.0\n")?;
    assert_eq!(gpus.len(), 1);
    assert_eq!(gpus[0].model, "Acme, Model X");
    assert_eq!(gpus[0].mem_bytes, GIB);
    Ok(())
}

#[test]
fn nvidia_smi_empty_or_header_only_means_no_gpus() {
    assert_eq!(parse_nvidia_smi_csv(""), Ok(vec![]));
    assert_eq!(parse_nvidia_smi_csv("\n\n"), Ok(vec![]));
    let header = SMI_HEADER.lines().next().unwrap_or_default();
    assert_eq!(parse_nvidia_smi_csv(header), Ok(vec![]));
}

#[test]
fn nvidia_smi_bad_lines_are_errors() {
    for (text, reason) in [
        ("0, H100, lots, u, b, d\n", "memory.total"),
        ("0, H100, [N/A], u, b, d\n", "memory.total"),
        ("0, H100, -5, u, b, d\n", "memory.total"),
        ("0, H100, 81559 GiB, u, b, d\n", "memory.total"),
        ("0, H100, 99999999999999999, u, b, d\n", "memory.total"),
        ("0, H100, 81559\n", "6 comma-separated"),
        ("0\n", "6 comma-separated"),
        (
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
            "6 comma-separated",
        ),
        ("x, H100, 81559, u, b, d\n", "index"),
        ("0, , 81559, u, b, d\n", "no GPU name"),
    ] {
        match parse_nvidia_smi_csv(text) {
            Err(InventoryError::BadLine {
                line: 1, reason: r, ..
            }) => {
                assert!(r.contains(reason), "{text:?}: {r}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    // The line number is reported, and the quoted line is shortened.
    let text = format!("{SMI}0, {}, x, u, b, d\n", "n".repeat(500));
    match parse_nvidia_smi_csv(&text) {
        Err(e @ InventoryError::BadLine { line: 2, .. }) => assert!(e.to_string().len() < 250),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nvidia_smi_size_and_count_caps() -> TestResult {
    let huge = "x".repeat(2 << 20);
    assert_eq!(
        parse_nvidia_smi_csv(&huge),
        Err(InventoryError::TooLarge {
            what: "nvidia-smi output",
            limit: MAX_OUTPUT_BYTES,
        })
    );
    let many: String = (0..100)
        .map(|i| format!("{i}, NVIDIA H100 80GB HBM3, 81559, GPU-{i}, 0000:{i:02x}:00.0, 580\n"))
        .collect();
    assert_eq!(parse_nvidia_smi_csv(&many)?.len(), MAX_GPUS);
    Ok(())
}

// ---- running commands -------------------------------------------------------------------------

#[test]
fn runs_a_command_and_returns_its_output() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fake = printing_script(dir.path(), "nvidia-smi", SMI)?;
    let out = run::run(
        &fake,
        &NVIDIA_SMI_ARGS,
        &[],
        COMMAND_TIMEOUT,
        MAX_OUTPUT_BYTES,
    )?;
    assert_eq!(out, SMI);
    assert_eq!(parse_nvidia_smi_csv(&out)?.len(), 1);

    let env = script(dir.path(), "env", "printf '%s' \"$LC_ALL\"")?;
    let out = run::run(&env, &[], &[("LC_ALL", "C")], COMMAND_TIMEOUT, 100)?;
    assert_eq!(out, "C");
    Ok(())
}

#[test]
fn a_slow_command_is_killed_at_the_deadline() -> TestResult {
    let dir = tempfile::tempdir()?;
    // `sleep` is a grandchild holding stdout open after the shell is killed: `run` must not
    // wait for it.
    let slow = script(dir.path(), "slow", "echo started\nsleep 5")?;
    let start = Instant::now();
    let err = run::run(&slow, &[], &[], Duration::from_millis(200), 1024);
    assert!(
        matches!(err, Err(InventoryError::Timeout { .. })),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    // Exited, but a background child keeps the output open.
    let lingering = script(dir.path(), "lingering", "echo hi\nsleep 5 &")?;
    let err = run::run(&lingering, &[], &[], Duration::from_millis(300), 1024);
    assert!(
        matches!(err, Err(InventoryError::Timeout { .. })),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    Ok(())
}

#[test]
fn failing_missing_and_chatty_commands_are_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let failing = script(
        dir.path(),
        "failing",
        "echo 'NVIDIA-SMI has failed'\nexit 9",
    )?;
    let err = run::run(&failing, &[], &[], COMMAND_TIMEOUT, 1024);
    assert!(
        matches!(&err, Err(InventoryError::Failed { status, .. }) if status.contains('9')),
        "{err:?}"
    );

    let missing = dir.path().join("missing");
    let err = run::run(&missing, &[], &[], COMMAND_TIMEOUT, 1024);
    assert!(matches!(err, Err(InventoryError::Spawn { .. })), "{err:?}");

    // Far more than the pipe holds: drained, then refused, without stalling.
    let chatty = script(dir.path(), "chatty", "yes nvidia | head -c 300000")?;
    let err = run::run(&chatty, &[], &[], COMMAND_TIMEOUT, 200_000);
    assert!(
        matches!(err, Err(InventoryError::TooLarge { limit: 200_000, .. })),
        "{err:?}"
    );
    let out = run::run(&chatty, &[], &[], COMMAND_TIMEOUT, 300_000)?;
    assert_eq!(out.len(), 300_000);
    Ok(())
}

#[test]
fn path_search() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    for d in [&a, &b, &c] {
        std::fs::create_dir(d)?;
    }
    // `a` holds a non-executable file and `b` a directory of that name: both skipped.
    std::fs::write(a.join("nvidia-smi"), "")?;
    std::fs::create_dir(b.join("nvidia-smi"))?;
    let good = script(&c, "nvidia-smi", "true")?;
    let path = std::env::join_paths([&a, &b, &c])?;
    assert_eq!(
        run::find_in_path("nvidia-smi", Some(&path)),
        Some(good.clone())
    );
    assert_eq!(run::find_in_path("lscpu", Some(&path)), None);
    assert_eq!(run::find_in_path("nvidia-smi", None), None);

    // Relative and empty entries are not searched.
    let relative = std::env::join_paths([Path::new(""), Path::new("c")])?;
    assert_eq!(run::find_in_path("nvidia-smi", Some(&relative)), None);

    // The override wins, unless empty.
    assert_eq!(
        run::nvidia_smi_program(Some("/opt/fake-smi".into()), Some(&path)),
        Some(PathBuf::from("/opt/fake-smi"))
    );
    assert_eq!(
        run::nvidia_smi_program(Some("".into()), Some(&path)),
        Some(good)
    );
    assert_eq!(run::nvidia_smi_program(None, None), None);
    Ok(())
}

// ---- detection ---------------------------------------------------------------------------------

#[test]
fn detects_this_machine() {
    let d = detect(&std::env::temp_dir().join("degroup-does/not/exist/yet"));
    assert!(d.cpu_millis >= 1, "{d:?}");
    assert!(d.mem_bytes > 0, "{d:?}");
    assert!(d.disk_total_bytes > 0, "{d:?}");
    assert!(d.disk_free_bytes <= d.disk_total_bytes, "{d:?}");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(d.cpu_millis <= u64::try_from(threads).unwrap_or(u64::MAX) * 1000);
}

#[test]
fn disk_of_missing_relative_and_file_paths() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (total, free) = detect_disk(dir.path())?;
    assert!(total > 0 && free <= total);
    assert_eq!(
        detect_disk(&dir.path().join("a/b/c"))?.0,
        total,
        "nearest existing ancestor"
    );
    let file = dir.path().join("file");
    std::fs::write(&file, "")?;
    assert_eq!(
        detect_disk(&file.join("sub"))?.0,
        total,
        "ENOTDIR walks up too"
    );
    assert!(detect_disk(Path::new("degroup-no/such/relative/dir"))?.0 > 0);
    assert!(detect_disk(Path::new(""))?.0 > 0);
    Ok(())
}

#[test]
fn cgroup_v2_limits_of_the_cgroup_and_its_ancestors() -> TestResult {
    let root = tempfile::tempdir()?;
    let r = root.path();
    put(r, "proc/self/cgroup", "0::/system.slice/degroup.service\n")?;
    put(r, "proc/meminfo", MEMINFO)?;
    put(r, "proc/cpuinfo", "model name\t: Fake CPU\n")?;
    // The slice is the tighter CPU limit, the service the tighter memory limit.
    put(r, "cgroup/system.slice/cpu.max", "50000 100000\n")?;
    put(r, "cgroup/system.slice/memory.max", "max\n")?;
    put(
        r,
        "cgroup/system.slice/degroup.service/cpu.max",
        "max 100000\n",
    )?;
    put(
        r,
        "cgroup/system.slice/degroup.service/memory.max",
        "1073741824\n",
    )?;
    // Not an ancestor: ignored.
    put(r, "cgroup/user.slice/cpu.max", "1000 100000\n")?;

    let d = detect_from(r, &fake_sources(r));
    assert_eq!(d.cpu_millis, 500);
    assert_eq!(d.mem_bytes, GIB);
    assert_eq!(d.cpu_model.as_deref(), Some("Fake CPU"));
    assert!(d.gpus.is_empty());
    assert!(d.disk_total_bytes > 0);
    assert_eq!(d.notes, Vec::<String>::new());
    Ok(())
}

#[test]
fn container_view_limits_at_the_mount_root() -> TestResult {
    let root = tempfile::tempdir()?;
    let r = root.path();
    put(r, "proc/self/cgroup", "0::/\n")?;
    put(r, "proc/meminfo", "MemTotal: 1048576 kB\n")?;
    put(r, "cgroup/cpu.max", "100000 100000\n")?;
    put(r, "cgroup/memory.max", "4294967296\n")?; // above MemTotal: MemTotal wins
    let d = detect_from(r, &fake_sources(r));
    assert_eq!(d.cpu_millis, 1000);
    assert_eq!(d.mem_bytes, GIB);
    Ok(())
}

#[test]
fn cgroup_v1_limits() -> TestResult {
    let root = tempfile::tempdir()?;
    let r = root.path();
    put(
        r,
        "proc/self/cgroup",
        "4:memory:/job\n1:cpu,cpuacct:/job\n0::/\n",
    )?;
    put(r, "proc/meminfo", MEMINFO)?;
    put(r, "proc/cpuinfo", "model name\t: Fake CPU\n")?;
    put(r, "cgroup/cpu/cpu.cfs_quota_us", "-1\n")?;
    put(r, "cgroup/cpu/cpu.cfs_period_us", "100000\n")?;
    put(r, "cgroup/cpu/job/cpu.cfs_quota_us", "25000\n")?;
    put(r, "cgroup/cpu/job/cpu.cfs_period_us", "100000\n")?;
    put(
        r,
        "cgroup/memory/memory.limit_in_bytes",
        "9223372036854771712\n",
    )?;
    put(r, "cgroup/memory/job/memory.limit_in_bytes", "2147483648\n")?;
    let d = detect_from(r, &fake_sources(r));
    assert_eq!(d.cpu_millis, 250);
    assert_eq!(d.mem_bytes, 2 * GIB);
    assert_eq!(d.notes, Vec::<String>::new());
    Ok(())
}

#[test]
fn unreadable_and_malformed_sources_fall_back_with_notes() -> TestResult {
    let root = tempfile::tempdir()?;
    let r = root.path();
    // No proc/self/cgroup, no meminfo, no cpuinfo; malformed knobs at the root.
    put(r, "cgroup/cpu.max", "lots\n")?;
    put(r, "cgroup/memory.max", "3221225472\n")?;
    put(r, "cgroup/cpu/cpu.cfs_quota_us", "soon\n")?;
    put(r, "cgroup/cpu/cpu.cfs_period_us", "100000\n")?;
    put(r, "cgroup/memory/memory.limit_in_bytes", "huge\n")?;
    let d = detect_from(&r.join("data"), &fake_sources(r));
    assert!(d.cpu_millis >= 1000, "malformed quotas are ignored");
    assert_eq!(
        d.mem_bytes,
        3 * GIB,
        "the cgroup limit when MemTotal is unknown"
    );
    assert_eq!(d.cpu_model, None);
    let notes = d.notes.join("\n");
    for expected in [
        "cpu.max: `lots`",
        "cpu.cfs_quota_us: `soon`",
        "memory.limit_in_bytes: `huge`",
        "MemTotal",
        "CPU model unknown",
    ] {
        assert!(notes.contains(expected), "{expected:?} in {notes}");
    }
    assert_eq!(d.notes.len(), 5, "{notes}");
    Ok(())
}

#[test]
fn gpus_and_lscpu_from_commands() -> TestResult {
    let root = tempfile::tempdir()?;
    let r = root.path();
    put(r, "proc/meminfo", MEMINFO)?;
    put(
        r,
        "proc/cpuinfo",
        "processor\t: 0\nCPU implementer\t: 0x41\n",
    )?;
    let lscpu = script(
        r,
        "lscpu",
        &format!(
            "[ \"$LC_ALL\" = C ] || exit 1\ncat '{}'",
            r.join("lscpu.txt").display()
        ),
    )?;
    std::fs::write(r.join("lscpu.txt"), LSCPU)?;
    let sources = Sources {
        nvidia_smi: Some(printing_script(r, "nvidia-smi", SMI_HEADER)?),
        lscpu: Some(lscpu),
        ..fake_sources(r)
    };
    let d = detect_from(r, &sources);
    assert_eq!(d.cpu_model.as_deref(), Some("Intel(R) Xeon(R) Processor"));
    assert_eq!(d.mem_bytes, 131_981_020 * 1024);
    assert_eq!(
        d.gpus,
        vec![DetectedGpu {
            model: "NVIDIA H100 80GB HBM3".into(),
            mem_bytes: H100_MIB << 20,
        }]
    );
    assert_eq!(d.notes, Vec::<String>::new());
    Ok(())
}

#[test]
fn failing_gpu_and_lscpu_commands_are_noted() -> TestResult {
    let root = tempfile::tempdir()?;
    let r = root.path();
    put(r, "proc/meminfo", MEMINFO)?;
    let sources = Sources {
        nvidia_smi: Some(script(
            r,
            "nvidia-smi",
            "echo 'No devices were found'\nexit 6",
        )?),
        lscpu: Some(script(r, "lscpu", "sleep 5")?),
        timeout: Duration::from_millis(200),
        ..fake_sources(r)
    };
    let d = detect_from(r, &sources);
    assert!(d.gpus.is_empty());
    assert_eq!(d.cpu_model, None);
    let notes = d.notes.join("\n");
    assert!(
        notes.contains("no GPUs detected") && notes.contains("failed"),
        "{notes}"
    );
    assert!(notes.contains("did not finish"), "{notes}");

    let garbled = Sources {
        nvidia_smi: Some(printing_script(r, "garbled", "0, H100, ???, u, b, d\n")?),
        ..fake_sources(r)
    };
    let d = detect_from(r, &garbled);
    assert!(d.gpus.is_empty());
    assert!(
        d.notes.iter().any(|n| n.contains("memory.total")),
        "{:?}",
        d.notes
    );
    Ok(())
}

/// Set in the environment of the child test run by [`detect_runs_the_env_var_program`].
const CHILD_MARKER: &str = "DEGROUP_INVENTORY_TEST_CHILD";

/// Does nothing unless run as the child of [`detect_runs_the_env_var_program`] (with
/// `DEGROUP_NVIDIA_SMI` set: the environment of this process cannot be changed safely).
#[test]
fn env_var_child() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    let d = detect(&std::env::temp_dir());
    assert_eq!(d.gpus.len(), 1, "{d:?}");
    assert!(d.gpus[0].model.contains("H100"), "{d:?}");
    assert_eq!(d.gpus[0].mem_bytes, H100_MIB * 1024 * 1024);
}

#[test]
fn detect_runs_the_env_var_program() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fake = printing_script(dir.path(), "fake-nvidia-smi", SMI)?;
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    let test = format!("{module}::env_var_child");
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([test.as_str(), "--exact", "--test-threads=1"])
        .env(NVIDIA_SMI_ENV, &fake)
        .env(CHILD_MARKER, "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 passed"), "the child test ran: {stdout}");
    Ok(())
}

#[test]
fn serde_round_trip_and_notes_default() -> TestResult {
    let d = Detected {
        cpu_millis: 16_000,
        cpu_model: Some("Intel(R) Xeon(R) Processor".into()),
        mem_bytes: 131_981_020 * 1024,
        disk_total_bytes: 2 << 40,
        disk_free_bytes: 1 << 40,
        gpus: parse_nvidia_smi_csv(SMI)?,
        notes: vec!["a note".into()],
    };
    let json = serde_json::to_string(&d)?;
    assert_eq!(serde_json::from_str::<Detected>(&json)?, d);
    let old = r#"{"cpu_millis":1000,"cpu_model":null,"mem_bytes":1,"disk_total_bytes":2,
                  "disk_free_bytes":1,"gpus":[]}"#;
    assert!(serde_json::from_str::<Detected>(old)?.notes.is_empty());
    Ok(())
}

proptest! {
    #[test]
    fn parsers_never_panic(s in "\\PC{0,400}") {
        let _ = parse_cgroup_cpu_max(&s);
        let _ = parse_cgroup_memory_max(&s);
        let _ = parse_cgroup_v1_cpu(&s, &s);
        let _ = parse_cgroup_v1_memory_limit(&s);
        let _ = parse_meminfo_total(&s);
        let _ = parse_lscpu_model(&s);
        let _ = parse_cpuinfo_model(&s);
        let _ = parse_nvidia_smi_csv(&s);
        let _ = parse_proc_self_cgroup(&s);
    }

    #[test]
    fn parsers_never_panic_on_near_valid_input(
        fields in proptest::collection::vec("[ 0-9a-zA-Z:,.\\[\\]/\\-\\r]{0,12}", 0..9),
        key in prop_oneof!["MemTotal:", "model name\t:", "Model name:", "0::", "max "],
    ) {
        let line = fields.join(",");
        let text = format!("{key}{line}\n{line}\n");
        let _ = parse_cgroup_cpu_max(&text);
        let _ = parse_cgroup_memory_max(&text);
        let _ = parse_meminfo_total(&text);
        let _ = parse_lscpu_model(&text);
        let _ = parse_cpuinfo_model(&text);
        let _ = parse_proc_self_cgroup(&text);
        if let Ok(gpus) = parse_nvidia_smi_csv(&line) {
            prop_assert!(gpus.len() <= 1);
        }
    }

    #[test]
    fn cpu_max_matches_the_arithmetic(quota in 1u64..10_000_000, period in 1_000u64..1_000_000) {
        let millis = parse_cgroup_cpu_max(&format!("{quota} {period}\n"));
        prop_assert_eq!(millis, Some((quota * 1000 / period).max(1)));
    }

    #[test]
    fn nvidia_smi_lines_round_trip(
        name in "[A-Za-z][A-Za-z0-9 ()-]{0,40}",
        mib in 0u64..10_000_000,
        index in 0u32..64,
    ) {
        let line = format!("{index}, {name}, {mib}, GPU-x, 00000000:00:06.0, 580.159.04\n");
        let gpus = parse_nvidia_smi_csv(&line);
        let expected = name.split_whitespace().collect::<Vec<_>>().join(" ");
        prop_assert_eq!(gpus, Ok(vec![DetectedGpu { model: expected, mem_bytes: mib << 20 }]));
    }
}
