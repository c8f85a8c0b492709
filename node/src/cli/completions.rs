//! `degroup completions SHELL`.

use clap::CommandFactory as _;

/// Print a completion script.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// bash, zsh, fish, elvish or powershell
    shell: clap_complete::Shell,
}

pub(super) fn run(args: &Args) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "degroup", &mut std::io::stdout());
    Ok(())
}
