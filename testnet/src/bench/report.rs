//! Writing results: each benchmark yields a [`Section`] (markdown with its command and the
//! machine it ran on), printed and written into `docs/benchmarks.md` between markers of its own,
//! so that re-running one benchmark replaces only its section; plots go next to the file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// One benchmark's result.
#[derive(Debug)]
pub(super) struct Section {
    /// Marker name, e.g. `propagation`.
    pub name: &'static str,
    pub title: String,
    /// The command that produced it.
    pub command: String,
    /// Markdown: what was measured, the table, the ratios.
    pub body: String,
    /// SVG plots: file name (next to the markdown file) and content.
    pub plots: Vec<(String, String)>,
}

/// Where the results go.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Output {
    /// The markdown file the results are written into (between markers per benchmark)
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub out: PathBuf,
    /// Print the results only; write nothing
    #[arg(long)]
    pub no_write: bool,
}

/// The machine, for the record: CPU model, cores, memory, date, commit.
pub(super) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    let changes = if dirty {
        " with uncommitted changes"
    } else {
        ""
    };
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB, {date}, commit {commit}{changes}")
}

impl Section {
    /// The section as markdown, between its markers.
    pub(super) fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "<!-- degroup-testnet bench {} -->", self.name);
        let _ = writeln!(s, "## {}\n", self.title);
        let _ = writeln!(s, "```sh\n{}\n```\n", self.command);
        let _ = writeln!(s, "Machine: {}.\n", machine());
        s.push_str(self.body.trim_end());
        s.push('\n');
        for (file, _) in &self.plots {
            let _ = write!(s, "\n![{file}]({file})\n");
        }
        let _ = writeln!(s, "<!-- /degroup-testnet bench {} -->", self.name);
        s
    }

    /// Writes the section into `out` (replacing its previous run) and the plots beside it.
    pub(super) fn write(&self, out: &Path) -> anyhow::Result<()> {
        let old = match std::fs::read_to_string(out) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_owned(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", out.display())),
        };
        let begin = format!("<!-- degroup-testnet bench {} -->", self.name);
        let end = format!("<!-- /degroup-testnet bench {} -->", self.name);
        let new = match (old.find(&begin), old.find(&end)) {
            (Some(b), Some(e)) if e > b => {
                let after = e + end.len();
                let rest = old[after..].strip_prefix('\n').unwrap_or(&old[after..]);
                format!("{}{}{}", &old[..b], self.markdown(), rest)
            }
            _ => format!(
                "{}\n{}",
                old.trim_end_matches('\n').to_owned() + "\n",
                self.markdown()
            ),
        };
        std::fs::write(out, new).with_context(|| format!("cannot write {}", out.display()))?;
        let dir = out.parent().unwrap_or_else(|| Path::new("."));
        for (file, svg) in &self.plots {
            let path = dir.join(file);
            std::fs::write(&path, svg)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_replaces_only_its_own_previous_run() {
        let dir = std::env::temp_dir().join(format!("dgt-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let out = dir.join("b.md");
        std::fs::write(&out, "# Benchmarks\n\nhand-written\n").ok();
        let mut s = Section {
            name: "x",
            title: "X".into(),
            command: "run x".into(),
            body: "first".into(),
            plots: vec![],
        };
        assert!(s.write(&out).is_ok());
        s.body = "second".into();
        assert!(s.write(&out).is_ok());
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        assert!(text.contains("hand-written"));
        assert!(text.contains("second"));
        assert!(!text.contains("first"));
        assert_eq!(text.matches("<!-- degroup-testnet bench x -->").count(), 1);
        std::fs::remove_dir_all(&dir).ok();
    }
}
