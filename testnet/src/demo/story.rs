//! Telling the demo: numbered steps, the commands a user would type, their output, and a loud
//! failure that names the step and the logs to read.

use std::fmt::Write as _;
use std::path::Path;

use crate::cluster::Node;

/// The narrator.
#[derive(Debug)]
pub(super) struct Story {
    step: usize,
    total: usize,
    title: String,
}

impl Story {
    pub(super) fn new(total: usize) -> Self {
        Self {
            step: 0,
            total,
            title: String::new(),
        }
    }

    /// Starts the next step.
    pub(super) fn step(&mut self, title: &str) {
        self.step += 1;
        self.title = title.to_owned();
        println!("\n[{}/{}] {title}", self.step, self.total);
    }

    /// A sentence of explanation.
    pub(super) fn say(&self, text: &str) {
        println!("      {text}");
    }

    /// A command as the user would type it, and what it printed.
    pub(super) fn shell(&self, command: &str, output: &str) {
        println!("  $ {command}");
        for line in output.trim_end().lines() {
            println!("      {line}");
        }
    }

    /// Turns a step's error into the demo's failure: which step, what went wrong, which logs.
    pub(super) fn failed(&self, error: &anyhow::Error, nodes: &[&Node]) -> anyhow::Error {
        let mut text = format!(
            "the demo failed at step {}/{} ({}): {error:#}",
            self.step, self.total, self.title
        );
        for n in nodes {
            let _ = write!(
                text,
                "\n  read the log of {}: {}",
                n.name,
                n.log_path().display()
            );
        }
        anyhow::anyhow!(text)
    }
}

/// `degroup --data-dir DIR ARGS…` as a user would type it.
pub(super) fn command_line(dir: &Path, args: &[&str]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains([' ', '{', '>', '<', '"', '\'']) {
                format!("'{a}'")
            } else {
                (*a).to_owned()
            }
        })
        .collect();
    format!("degroup --data-dir {} {}", dir.display(), quoted.join(" "))
}
