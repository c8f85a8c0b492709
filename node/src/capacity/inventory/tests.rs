use std::time::Duration;

use proptest::prelude::*;

use super::*;

const LSCPU: &str = include_str!("../../../tests/fixtures/inventory/h100/lscpu.txt");
const MEMINFO: &str = include_str!("../../../tests/fixtures/inventory/h100/meminfo.txt");
const SMI: &str = include_str!("../../../tests/fixtures/inventory/h100/nvidia-smi-query.csv");
const SMI_HEADER: &str =
    include_str!("../../../tests/fixtures/inventory/h100/nvidia-smi-query-header.csv");

#[test]
fn parses_the_h100_host() {
    assert_eq!(parse_meminfo_total(MEMINFO), Some(131_981_020 * 1024));
    assert!(parse_lscpu_model(LSCPU).is_some());
    for text in [SMI, SMI_HEADER] {
        let gpus = parse_nvidia_smi_csv(text).unwrap_or_default();
        assert_eq!(gpus.len(), 1, "{text}");
        assert!(gpus[0].model.contains("H100"));
        assert_eq!(gpus[0].mem_bytes, 81_559 * 1024 * 1024);
    }
}

#[test]
fn cgroup_limits() {
    assert_eq!(parse_cgroup_cpu_max("max 100000"), None);
    assert_eq!(parse_cgroup_cpu_max("200000 100000"), Some(2000));
    assert_eq!(parse_cgroup_cpu_max("150000 100000\n"), Some(1500));
    assert_eq!(parse_cgroup_cpu_max("garbage"), None);
    assert_eq!(parse_cgroup_memory_max("max\n"), None);
    assert_eq!(parse_cgroup_memory_max("1073741824\n"), Some(1 << 30));
    assert_eq!(
        parse_cpuinfo_model("processor\t: 0\nmodel name\t: AMD EPYC 9654\n"),
        Some("AMD EPYC 9654".into())
    );
}

#[test]
fn bad_nvidia_smi_output_is_an_error() {
    assert!(parse_nvidia_smi_csv("0, H100, lots\n").is_err());
    assert!(parse_nvidia_smi_csv("0\n").is_err());
    assert_eq!(parse_nvidia_smi_csv(""), Ok(vec![]));
    assert_eq!(
        parse_nvidia_smi_csv(&"x".repeat(2 << 20)),
        Err(InventoryError::TooLarge)
    );
}

#[test]
fn detects_this_machine() {
    let dir = std::env::temp_dir();
    let d = detect(&dir.join("does/not/exist/yet"));
    assert!(d.cpu_millis >= 1000);
    assert!(d.mem_bytes > 0);
    assert!(d.disk_total_bytes > 0 && d.disk_free_bytes <= d.disk_total_bytes);
}

#[test]
fn runs_nvidia_smi_with_a_timeout() -> Result<(), Box<dyn std::error::Error>> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir()?;
    let fixture = dir.path().join("out.csv");
    std::fs::write(&fixture, SMI)?;
    let fake = dir.path().join("nvidia-smi");
    std::fs::write(&fake, format!("#!/bin/sh\ncat {}\n", fixture.display()))?;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
    let out = run_with_timeout(&fake, &NVIDIA_SMI_ARGS, Duration::from_secs(5))?;
    let gpus = parse_nvidia_smi_csv(&out)?;
    assert_eq!(gpus.len(), 1);

    let slow = dir.path().join("slow");
    std::fs::write(&slow, "#!/bin/sh\nsleep 5\n")?;
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755))?;
    let err = run_with_timeout(&slow, &[], Duration::from_millis(200));
    assert!(err.is_err_and(|e| e.contains("did not answer")));
    Ok(())
}

proptest! {
    #[test]
    fn parsers_never_panic(s in ".{0,300}") {
        let _ = parse_cgroup_cpu_max(&s);
        let _ = parse_cgroup_memory_max(&s);
        let _ = parse_meminfo_total(&s);
        let _ = parse_lscpu_model(&s);
        let _ = parse_cpuinfo_model(&s);
        let _ = parse_nvidia_smi_csv(&s);
    }
}
