//! Text that came from a plugin or a peer, made safe to print on a terminal.
//!
//! A plugin's log lines and error strings, a host's deployment reasons, a peer's advert (operator,
//! region, certifications) are written by someone other than the person at the terminal. Printed
//! raw, an ESC sequence clears the screen, sets the window title or writes the clipboard (OSC 52),
//! a C1 byte does the same on terminals that read 8-bit controls, a bidi override reorders what
//! follows, and an embedded newline starts a line that looks like the host's own. [`escape`]
//! shows every such character as a visible escape instead, so one string is one terminal line
//! that says exactly which characters it holds. `--json` output never goes through it: serde_json
//! escapes control characters itself and keeps the text exact.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::plugin::logs::LogLine;

/// Whether `c` must not reach a terminal as is: C0 controls (newline, carriage return and tab
/// included), DEL, C1 controls (U+0080–U+009F), the bidi embeddings, overrides and isolates
/// (U+202A–U+202E, U+2066–U+2069), the bidi marks (U+200E, U+200F, U+061C) and the line and
/// paragraph separators (U+2028, U+2029).
fn is_unsafe(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(
            c,
            '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{061c}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with every character that could act on a terminal written as a visible escape: `\n`,
/// `\r`, `\t`; `\xNN` for the other C0 controls and DEL (ESC is `\x1b`); `\u{NNNN}` for C1
/// controls and bidi controls (`\u{9b}`, `\u{202e}`). Everything else, backslashes and any
/// printable Unicode included, is kept. The result holds no line break, so a string printed
/// after a prefix is one line that begins with that prefix. Borrows when there is nothing to do.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Escapes each string of a list and joins them with `sep`.
pub(crate) fn escape_join(items: &[String], sep: &str) -> String {
    items
        .iter()
        .map(|s| escape(s))
        .collect::<Vec<_>>()
        .join(sep)
}

/// The tag a log line starts with: `[host]` for the supervisor's own lines, `[plugin]` for every
/// other line (whatever its source says, it is not the host's).
fn source_tag(l: &LogLine) -> &'static str {
    if l.source == "host" {
        "[host]"
    } else {
        "[plugin]"
    }
}

/// One log line as `degroup logs` prints it: the source first, then the time of day (UTC) when
/// `with_time`, the level and the escaped message, e.g.
/// `[plugin] 12:34:56.789 INFO  count = 3` or `[host]   12:34:56.789 WARN  restarting …`.
/// The message cannot hold a line break, so every terminal line of the output starts with the
/// tag of the line it belongs to.
pub(crate) fn log_line(l: &LogLine, with_time: bool) -> String {
    let mut out = format!("{:<8} ", source_tag(l));
    if with_time {
        let secs = l.at_ms / 1000;
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        let _ = write!(out, "{h:02}:{m:02}:{s:02}.{:03} ", l.at_ms % 1000);
    }
    let _ = write!(
        out,
        "{:<5} {}",
        escape(&l.level.to_uppercase()),
        escape(&l.message)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(source: &str, message: &str) -> LogLine {
        LogLine {
            seq: 1,
            at_ms: 45_296_789, // 12:34:56.789
            level: "info".into(),
            source: source.into(),
            message: message.into(),
        }
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "",
            "count = 3",
            "é 日本 ünïcödé 🦀",
            r"C:\path\to and \n literal",
            "a\u{a0}b",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    #[test]
    fn esc_and_csi_sequences_are_escaped() {
        assert_eq!(escape("\x1b[2J\x1b[H"), r"\x1b[2J\x1b[H");
        assert_eq!(escape("\x1b[31mred\x1b[0m"), r"\x1b[31mred\x1b[0m");
        assert_eq!(escape("a\x00b\x07c\x7fd"), r"a\x00b\x07c\x7fd");
    }

    #[test]
    fn osc_title_and_clipboard_writes_are_escaped() {
        assert_eq!(
            escape("\x1b]0;pwned\x07"),
            r"\x1b]0;pwned\x07",
            "OSC 0 title"
        );
        assert_eq!(
            escape("\x1b]52;c;cm0gLXJmIH4=\x07"),
            r"\x1b]52;c;cm0gLXJmIH4=\x07",
            "OSC 52 clipboard"
        );
        assert_eq!(
            escape("\x1b]52;c;cm0=\x1b\\"),
            r"\x1b]52;c;cm0=\x1b\",
            "ST terminator"
        );
    }

    #[test]
    fn c1_controls_are_escaped() {
        assert_eq!(escape("\u{9b}2J"), r"\u{9b}2J", "C1 CSI");
        assert_eq!(
            escape("\u{9d}0;t\u{9c}"),
            r"\u{9d}0;t\u{9c}",
            "C1 OSC and ST"
        );
        assert_eq!(escape("\u{80}\u{85}"), r"\u{80}\u{85}");
        // Just past C1: printable.
        assert_eq!(escape("\u{a0}é"), "\u{a0}é");
    }

    #[test]
    fn bidi_controls_are_escaped() {
        assert_eq!(escape("abc\u{202e}fed"), r"abc\u{202e}fed");
        assert_eq!(
            escape("\u{202a}\u{202b}\u{202c}\u{202d}\u{2066}\u{2067}\u{2068}\u{2069}"),
            r"\u{202a}\u{202b}\u{202c}\u{202d}\u{2066}\u{2067}\u{2068}\u{2069}"
        );
        assert_eq!(escape("\u{200f}\u{2028}"), r"\u{200f}\u{2028}");
    }

    #[test]
    fn newlines_cannot_forge_a_line() {
        let forged = "ok\n12:00:00.000 INFO  [host] host info started\r\tx";
        let e = escape(forged);
        assert_eq!(e, r"ok\n12:00:00.000 INFO  [host] host info started\r\tx");
        assert!(!e.contains(['\n', '\r', '\t']));
        // Through the log format: one line, tagged as the plugin's.
        let shown = log_line(&line("plugin", forged), true);
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(
            shown.starts_with("[plugin] 12:34:56.789 INFO  ok\\n"),
            "{shown}"
        );
    }

    #[test]
    fn no_output_char_is_unsafe() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let e = escape(&all);
        assert!(!e.chars().any(is_unsafe));
        assert!(!e.bytes().any(|b| b == 0x1b || b == 0x07));
    }

    #[test]
    fn log_lines_start_with_their_source() {
        assert_eq!(
            log_line(&line("host", "restarting"), true),
            "[host]   12:34:56.789 INFO  restarting"
        );
        assert_eq!(
            log_line(&line("plugin", "count = 3"), true),
            "[plugin] 12:34:56.789 INFO  count = 3"
        );
        assert_eq!(
            log_line(&line("plugin", "count = 3"), false),
            "[plugin] INFO  count = 3"
        );
        // Only the host's own lines are tagged as the host's.
        assert!(log_line(&line("host ", "x"), true).starts_with("[plugin] "));
        let mut l = line("plugin", "x");
        l.level = "info\x1b[2J".into();
        assert_eq!(log_line(&l, false), r"[plugin] INFO\x1b[2J x");
    }
}
