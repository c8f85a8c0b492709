//! Compiling in a child process, under a CPU-time and a memory bound.
//!
//! Cranelift's time and memory grow with what it is given, and a tenant chooses what it is
//! given: a small package can take seconds of CPU and hundreds of MiB to compile. So the node
//! does not compile a tenant's component in its own process. It runs its own binary as
//! `degroup __compile` ([`serve`]): the component's bytes on stdin, the serialized artifact
//! on stdout, an error on stderr. Before the exec, the child gets RLIMIT_CPU
//! (`plugin.compile_cpu`: SIGXCPU at the bound, SIGKILL a second later), RLIMIT_AS
//! (`plugin.compile_memory`: allocations past it fail), no core dumps, a nice of +10 (running
//! plugins come first) and death with its parent; past `plugin.compile_timeout` of wall-clock
//! time the parent kills it. The parent reaps it with `wait4`, whose resource usage is the CPU
//! charged to the lease, also when the child was killed.
//!
//! The child's engine has the node's compilation settings ([`super::engine_config`]) but
//! allocates on demand: the pooling allocator reserves far more address space than RLIMIT_AS
//! allows, and it does not change compiled code. The parent loads the artifact with
//! `Component::deserialize`, whose compatibility check (wasmtime version, target, compilation
//! settings) refuses anything compiled differently.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::super::config::Limits;
use super::{SandboxError, engine_config, werr};
use crate::capacity::units::{format_duration, format_size};

/// The hidden subcommand of the `degroup` binary that compiles.
pub(crate) const SUBCOMMAND: &str = "__compile";
/// Largest component the child reads (packages are capped well below).
const MAX_INPUT: u64 = 64 << 20;
/// Largest artifact the parent reads back.
const MAX_ARTIFACT: u64 = 512 << 20;
/// Exit code of a child that found the component invalid (the message is on stderr).
const EXIT_INVALID: u8 = 3;
/// Most stderr kept from a child.
const MAX_STDERR: u64 = 16 * 1024;
/// How the child reports its peak memory on stderr.
const STATS_PREFIX: &str = "degroup-compile:";

/// What one compilation in a child gave, and what it cost.
#[derive(Debug)]
pub(super) struct Outcome {
    /// The serialized artifact, or why there is none.
    pub result: Result<Vec<u8>, SandboxError>,
    /// CPU time (user + system) the child used.
    pub cpu: Duration,
    /// Its peak address space and resident set, in bytes, as it reported them (none when it
    /// was killed).
    pub peak_vm: Option<u64>,
    pub peak_rss: Option<u64>,
}

/// The bounds of one compilation, from the `[plugin]` limits.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    cpu_s: u64,
    memory: u64,
    timeout: Duration,
}

impl Bounds {
    fn of(limits: &Limits) -> Self {
        Self {
            cpu_s: limits.compile_cpu.as_secs().max(1),
            memory: limits.compile_memory,
            timeout: limits.compile_timeout,
        }
    }

    fn cpu_exceeded(&self) -> SandboxError {
        SandboxError::Compile(format!(
            "compilation exceeded its CPU bound of {} s (plugin.compile_cpu) and was stopped; the component is too costly to compile on this host",
            self.cpu_s
        ))
    }

    fn memory_exceeded(&self) -> SandboxError {
        SandboxError::Compile(format!(
            "compilation exceeded its memory bound of {} (plugin.compile_memory) and was stopped; the component is too costly to compile on this host",
            format_size(self.memory)
        ))
    }

    fn timed_out(&self) -> SandboxError {
        SandboxError::Compile(format!(
            "compilation exceeded its time bound of {} (plugin.compile_timeout) and was killed",
            format_duration(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX))
        ))
    }
}

/// Compiles `wasm` by running `exe __compile` under the bounds of `limits`.
pub(super) fn compile(exe: &Path, limits: &Limits, guards: bool, wasm: &[u8]) -> Outcome {
    let bounds = Bounds::of(limits);
    let failed = |e: SandboxError| Outcome {
        result: Err(e),
        cpu: Duration::ZERO,
        peak_vm: None,
        peak_rss: None,
    };
    let mut cmd = Command::new(exe);
    cmd.arg(SUBCOMMAND)
        .arg("--max-wasm-stack")
        .arg(limits.max_stack.to_string());
    if !guards {
        cmd.arg("--unguarded");
    }
    // Few malloc arenas: each reserves 64 MiB of address space, which RLIMIT_AS counts.
    cmd.env_clear()
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    bound(&mut cmd, bounds);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return failed(SandboxError::Engine(format!(
                "cannot start the compiler {}: {e}",
                exe.display()
            )));
        }
    };
    let Ok(raw_pid) = i32::try_from(child.id()) else {
        return failed(SandboxError::Engine("child pid out of range".into()));
    };
    let pid = Pid::from_raw(raw_pid);
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = wait4(pid, false);
        return failed(SandboxError::Engine(
            "the compiler's pipes are missing".into(),
        ));
    };
    // `child` is reaped below with wait4 (for its resource usage), never with `wait`.
    std::thread::scope(|scope| {
        let spawn = |name: &str| std::thread::Builder::new().name(name.to_owned());
        let writer = spawn("degroup-compile-in").spawn_scoped(scope, move || {
            // A child that dies early closes its end: the error shows in its exit status.
            let _ = stdin.write_all(wasm);
        });
        let out = spawn("degroup-compile-out").spawn_scoped(scope, move || {
            let mut buf = Vec::new();
            let read = stdout.take(MAX_ARTIFACT + 1).read_to_end(&mut buf);
            read.map(|_| buf)
        });
        let err = spawn("degroup-compile-err").spawn_scoped(scope, move || {
            let mut buf = Vec::new();
            let mut stderr = stderr;
            let _ = (&mut stderr).take(MAX_STDERR).read_to_end(&mut buf);
            // Drain the rest so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
            String::from_utf8_lossy(&buf).into_owned()
        });
        let (Ok(writer), Ok(out), Ok(err)) = (writer, out, err) else {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = wait4(pid, false);
            return failed(SandboxError::Engine(
                "cannot start threads to talk to the compiler".into(),
            ));
        };
        let waited = wait_until(pid, Instant::now() + bounds.timeout);
        let _ = writer.join();
        let artifact = out.join().ok().and_then(Result::ok);
        let stderr = err.join().unwrap_or_default();
        let (status, cpu, killed) = match waited {
            Ok(w) => w,
            Err(e) => {
                return failed(SandboxError::Engine(format!(
                    "waiting for the compiler: {e}"
                )));
            }
        };
        let (peak_vm, peak_rss) = stats(&stderr);
        let result = classify(bounds, status, cpu, killed, artifact, &stderr);
        Outcome {
            result,
            cpu,
            peak_vm,
            peak_rss,
        }
    })
}

/// Waits for the child until `deadline`, then kills it and waits for it to go. Returns its
/// status, its CPU time and whether it was killed for the deadline.
fn wait_until(pid: Pid, deadline: Instant) -> std::io::Result<(WaitStatus, Duration, bool)> {
    let mut pause = Duration::from_millis(1);
    let mut killed = false;
    loop {
        if let Some((status, cpu)) = wait4(pid, !killed)? {
            return Ok((status, cpu, killed));
        }
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            killed = true;
            continue;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// `wait4(2)`: the status and CPU time (user + system) of the child once it has ended; `None`
/// while it runs (with `nohang`).
#[allow(unsafe_code)]
fn wait4(pid: Pid, nohang: bool) -> std::io::Result<Option<(WaitStatus, Duration)>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `rusage` is plain old data (integers and timevals); all zeroes is a valid
        // value of it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if nohang { libc::WNOHANG } else { 0 };
        // SAFETY: both pointers point to live locals of the right types for the whole call.
        let r = unsafe { libc::wait4(pid.as_raw(), &mut status, flags, &mut usage) };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let status = WaitStatus::from_raw(pid, status).map_err(std::io::Error::from)?;
        let time = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        return Ok(Some((status, time(usage.ru_utime) + time(usage.ru_stime))));
    }
}

/// Sets the child's limits between fork and exec.
#[allow(unsafe_code)]
fn bound(cmd: &mut Command, bounds: Bounds) {
    use std::os::unix::process::CommandExt as _;
    let cpu = libc::rlimit {
        rlim_cur: bounds.cpu_s,
        rlim_max: bounds.cpu_s.saturating_add(1),
    };
    let memory = libc::rlimit {
        rlim_cur: bounds.memory,
        rlim_max: bounds.memory,
    };
    let core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the closure runs in the forked child before exec. It only makes system calls
    // that are async-signal-safe (setrlimit, nice, prctl) with values computed before the
    // fork, and allocates nothing (an `io::Error` from the OS code does not allocate).
    unsafe {
        cmd.pre_exec(move || {
            for (resource, limit) in [
                (libc::RLIMIT_CPU, &cpu),
                (libc::RLIMIT_AS, &memory),
                (libc::RLIMIT_CORE, &core),
            ] {
                if libc::setrlimit(resource, limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // A lower priority than the plugins that run; failing to lower it is harmless.
            let _ = libc::nice(10);
            // Dies with the thread that waits for it.
            let _ = libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Whether what the child said on its way out means it ran out of memory.
fn out_of_memory(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "memory allocation of",
        "cannot allocate memory",
        "out of memory",
        "os error 12",
        "failed to mmap",
    ]
    .iter()
    .any(|n| s.contains(n))
}

/// What the child's end means.
fn classify(
    bounds: Bounds,
    status: WaitStatus,
    cpu: Duration,
    killed: bool,
    artifact: Option<Vec<u8>>,
    stderr: &str,
) -> Result<Vec<u8>, SandboxError> {
    if killed {
        return Err(bounds.timed_out());
    }
    let message = || {
        stderr
            .lines()
            .filter(|l| !l.starts_with(STATS_PREFIX))
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_owned()
    };
    match status {
        WaitStatus::Exited(_, 0) => match artifact {
            Some(a) if !a.is_empty() && a.len() as u64 <= MAX_ARTIFACT => Ok(a),
            Some(a) if !a.is_empty() => Err(SandboxError::Compile(format!(
                "the compiled component is over {}",
                format_size(MAX_ARTIFACT)
            ))),
            _ => Err(SandboxError::Engine(
                "the compiler ended without an artifact".into(),
            )),
        },
        _ if out_of_memory(stderr) => Err(bounds.memory_exceeded()),
        WaitStatus::Exited(_, code) if code == i32::from(EXIT_INVALID) => Err(
            SandboxError::Compile(format!("not a valid plugin component: {}", message())),
        ),
        WaitStatus::Signaled(_, Signal::SIGXCPU, _) => Err(bounds.cpu_exceeded()),
        // The hard CPU limit, a second past the soft one.
        WaitStatus::Signaled(_, Signal::SIGKILL, _)
            if cpu + Duration::from_millis(500) >= Duration::from_secs(bounds.cpu_s) =>
        {
            Err(bounds.cpu_exceeded())
        }
        // Killed by someone else: the kernel's OOM killer, most likely.
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => Err(bounds.memory_exceeded()),
        other => Err(SandboxError::Compile(format!(
            "the compiler failed ({other:?}): {}",
            message()
        ))),
    }
}

/// The peak address space and resident set the child reported.
fn stats(stderr: &str) -> (Option<u64>, Option<u64>) {
    let Some(line) = stderr.lines().find(|l| l.starts_with(STATS_PREFIX)) else {
        return (None, None);
    };
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse::<u64>().ok())
    };
    (field("vm_peak="), field("rss_peak="))
}

/// A line of `/proc/self/status` in bytes (`VmPeak:  123 kB`).
fn proc_status(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `degroup __compile`: reads a component on stdin, compiles it with the node's compilation
/// settings, writes the serialized artifact on stdout. Exit code 3 with a message on stderr
/// when the component is not valid; its peak memory on stderr when it compiled.
pub fn serve(max_wasm_stack: usize, guards: bool) -> ExitCode {
    let mut wasm = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(MAX_INPUT)
        .read_to_end(&mut wasm)
    {
        eprintln!("cannot read the component: {e}");
        return ExitCode::FAILURE;
    }
    let engine = match Engine::new(&engine_config(max_wasm_stack, guards)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot set up the wasm engine: {}", werr(&e));
            return ExitCode::FAILURE;
        }
    };
    let component = match Component::new(&engine, &wasm) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", werr(&e));
            return ExitCode::from(EXIT_INVALID);
        }
    };
    drop(wasm);
    let artifact = match component.serialize() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cannot serialize the compiled component: {}", werr(&e));
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(&artifact).and_then(|()| out.flush()) {
        eprintln!("cannot write the artifact: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "{STATS_PREFIX} vm_peak={} rss_peak={}",
        proc_status("VmPeak:").unwrap_or(0),
        proc_status("VmHWM:").unwrap_or(0)
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_classified() {
        let b = Bounds {
            cpu_s: 2,
            memory: 64 << 20,
            timeout: Duration::from_secs(5),
        };
        let pid = Pid::from_raw(1);
        let text = |r: Result<Vec<u8>, SandboxError>| match r {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        let cpu = Duration::from_secs(2);
        let sig = |s| WaitStatus::Signaled(pid, s, false);
        assert!(
            text(classify(b, sig(Signal::SIGXCPU), cpu, false, None, ""))
                .contains("CPU bound of 2 s")
        );
        assert!(
            text(classify(b, sig(Signal::SIGKILL), cpu, false, None, ""))
                .contains("CPU bound of 2 s")
        );
        assert!(
            text(classify(
                b,
                sig(Signal::SIGKILL),
                Duration::ZERO,
                true,
                None,
                ""
            ))
            .contains("time bound of 5s")
        );
        let oom = "memory allocation of 1048576 bytes failed";
        assert!(
            text(classify(
                b,
                sig(Signal::SIGABRT),
                Duration::ZERO,
                false,
                None,
                oom
            ))
            .contains("memory bound of 64MiB")
        );
        let invalid = WaitStatus::Exited(pid, i32::from(EXIT_INVALID));
        assert!(
            text(classify(
                b,
                invalid,
                Duration::ZERO,
                false,
                None,
                "bad magic"
            ))
            .contains("not a valid plugin component: bad magic")
        );
        let ok = WaitStatus::Exited(pid, 0);
        assert_eq!(
            text(classify(b, ok, Duration::ZERO, false, Some(vec![1]), "")),
            "ok"
        );
        assert_eq!(
            stats("degroup-compile: vm_peak=10 rss_peak=20\n"),
            (Some(10), Some(20))
        );
    }
}
