//! Finding and running the external commands of the inventory (`nvidia-smi`, `lscpu`).
//!
//! A command gets a deadline: the child is polled with `try_wait` and killed when the deadline
//! passes. Its standard output is drained by a helper thread (so that a chatty child cannot
//! fill the pipe and stall) and handed over through a channel with the time that is left:
//! should the child leave a grandchild holding the pipe open, the caller still returns on
//! time, and the thread finishes on its own when the pipe closes.

use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::InventoryError;

/// Longest pause between two looks at the child.
const POLL: Duration = Duration::from_millis(10);

/// Tries at starting a program that is busy being written (`ETXTBSY`).
const SPAWN_TRIES: u32 = 5;

/// The `nvidia-smi` to run: `override_program` (the value of `DEGROUP_NVIDIA_SMI`) when set
/// and not empty, else an executable `nvidia-smi` in `path`.
pub(super) fn nvidia_smi_program(
    override_program: Option<OsString>,
    path: Option<&OsStr>,
) -> Option<PathBuf> {
    match override_program {
        Some(program) if !program.is_empty() => Some(PathBuf::from(program)),
        _ => find_in_path("nvidia-smi", path),
    }
}

/// The first executable file called `name` in the directories of `path` (a `PATH` value).
/// Relative and empty entries are skipped: what runs must not depend on the working directory.
pub(super) fn find_in_path(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

/// Whether `path` is (or links to) a regular file that someone may execute.
fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `program` with `args` and extra `env`, without input, and returns its standard output
/// (invalid UTF-8 replaced), standard error being discarded.
///
/// # Errors
///
/// [`InventoryError::Spawn`] when it cannot start, [`InventoryError::Timeout`] when it has not
/// exited and closed its output within `timeout` (it is then killed),
/// [`InventoryError::Failed`] on an unsuccessful exit, [`InventoryError::TooLarge`] when it
/// writes more than `max_bytes`, [`InventoryError::Read`] when its output cannot be read.
pub(super) fn run(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
    max_bytes: u64,
) -> Result<String, InventoryError> {
    let name = program.display().to_string();
    let deadline = Instant::now() + timeout;
    let mut child = spawn(program, args, env, deadline).map_err(|e| InventoryError::Spawn {
        program: name.clone(),
        reason: e.to_string(),
    })?;

    // Drain stdout on a helper thread; one byte past the cap is enough to know it is too much.
    let (tx, rx) = mpsc::channel();
    let reader = child.stdout.take().map(|mut stdout| {
        std::thread::Builder::new()
            .name("inventory-read".to_owned())
            .spawn(move || {
                let mut out = Vec::new();
                let read = stdout
                    .by_ref()
                    .take(max_bytes.saturating_add(1))
                    .read_to_end(&mut out);
                // The receiver may have given up already; nothing more to do then.
                let _ = tx.send(read.map(|_| out));
            })
    });
    if let Some(Err(e)) = reader {
        kill(&mut child);
        return Err(InventoryError::Read {
            program: name,
            reason: e.to_string(),
        });
    }

    let status = wait(&mut child, deadline).ok_or_else(|| InventoryError::Timeout {
        program: name.clone(),
        timeout,
    })?;
    let out = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(out)) => out,
        Ok(Err(_)) | Err(_) if !status.success() => Vec::new(),
        Ok(Err(e)) => {
            return Err(InventoryError::Read {
                program: name,
                reason: e.to_string(),
            });
        }
        // The child exited but something it started still holds the pipe open.
        Err(mpsc::RecvTimeoutError::Timeout) => {
            return Err(InventoryError::Timeout {
                program: name,
                timeout,
            });
        }
        // No stdout was captured at all (cannot happen with `Stdio::piped`).
        Err(mpsc::RecvTimeoutError::Disconnected) => Vec::new(),
    };
    // Too much output first: a child cut off by the cap dies of `SIGPIPE`.
    if u64::try_from(out.len()).unwrap_or(u64::MAX) > max_bytes {
        return Err(InventoryError::TooLarge {
            what: "the output of a command",
            limit: max_bytes,
        });
    }
    if !status.success() {
        return Err(InventoryError::Failed {
            program: name,
            status: status.to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Starts the child, retrying briefly while its file is busy being written (a freshly written
/// script can hit `ETXTBSY` when another thread forks at the same moment).
fn spawn(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    deadline: Instant,
) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        tries += 1;
        let spawned = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && tries < SPAWN_TRIES
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(POLL);
            }
            other => return other,
        }
    }
}

/// Waits for the child until `deadline`; `None` (after killing it) when it is still running.
fn wait(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {
                let now = Instant::now();
                if now >= deadline {
                    kill(child);
                    return None;
                }
                std::thread::sleep(POLL.min(deadline - now));
            }
            Err(_) => {
                kill(child);
                return None;
            }
        }
    }
}

/// Kills and reaps the child (errors mean it is already gone).
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
