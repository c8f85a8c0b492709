//! `degroup completions SHELL`.

use clap::CommandFactory as _;

/// Print a completion script.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell
    shell: clap_complete::Shell,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "degroup", &mut std::io::stdout());
    Ok(())
}
