//! `degroup group create|show|list`: the tenant's groups, through its node's admin API.
//! Members join with `degroup deploy --group NAME` and leave when stopped.

use std::path::Path;

use super::display::escape;
use super::{ApiClient, UsageError};
use crate::api::group::CreateBody;
use crate::group::GroupView;
use crate::group::doc::check_name;

/// `degroup group …`.
#[derive(Debug, clap::Subcommand)]
pub(super) enum GroupCommand {
    /// Create an empty group (signed by this node's key, version 1)
    Create(NameArgs),
    /// A group's members: deployment, host, package, role, state
    Show(NameArgs),
    /// Every group this node made
    List(ListArgs),
}

/// A group by name.
#[derive(Debug, clap::Args)]
pub(super) struct NameArgs {
    /// Group name: 1 to 64 characters of a-z, 0-9 and '-'
    name: String,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

/// Arguments of `group list`.
#[derive(Debug, clap::Args)]
pub(super) struct ListArgs {
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn print_group(g: &GroupView) {
    println!("group    {}", escape(&g.name));
    println!("tenant   {}", escape(&g.tenant));
    println!("version  {}", g.version);
    if g.members.is_empty() {
        println!(
            "no members; add one with `degroup deploy --lease LEASE PACKAGE --group {}`",
            escape(&g.name)
        );
        return;
    }
    println!(
        "{:<34} {:<54} {:<24} {:<10} STATE",
        "MEMBER", "HOST", "PACKAGE", "ROLE"
    );
    for m in &g.members {
        println!(
            "{:<34} {:<54} {:<24} {:<10} {}",
            escape(&m.id),
            escape(&m.host),
            escape(&m.package),
            escape(if m.role.is_empty() { "-" } else { &m.role }),
            escape(&m.state)
        );
    }
}

pub(super) async fn run(dir: &Path, c: GroupCommand) -> anyhow::Result<()> {
    match c {
        GroupCommand::Create(a) => {
            check_name(&a.name).map_err(UsageError)?;
            let client = ApiClient::from_data_dir(dir)?;
            let g: GroupView = client
                .post(
                    "/v1/groups",
                    &CreateBody {
                        name: a.name.clone(),
                    },
                )
                .await?;
            if a.json {
                return super::print_json(&g);
            }
            println!(
                "group {} created (version {}); deploy into it with `degroup deploy --lease LEASE PACKAGE --group {}`",
                escape(&g.name),
                g.version,
                escape(&g.name)
            );
            Ok(())
        }
        GroupCommand::Show(a) => {
            check_name(&a.name).map_err(UsageError)?;
            let client = ApiClient::from_data_dir(dir)?;
            let g: GroupView = client.get(&format!("/v1/groups/{}", a.name)).await?;
            if a.json {
                return super::print_json(&g);
            }
            print_group(&g);
            Ok(())
        }
        GroupCommand::List(a) => {
            let client = ApiClient::from_data_dir(dir)?;
            let all: Vec<GroupView> = client.get("/v1/groups").await?;
            if a.json {
                return super::print_json(&all);
            }
            if all.is_empty() {
                println!("no groups; create one with `degroup group create NAME`");
                return Ok(());
            }
            println!("{:<24} {:>8} {:>8} MEMBERS", "GROUP", "VERSION", "COUNT");
            for g in &all {
                let ids: Vec<&str> = g.members.iter().map(|m| short(&m.id)).collect();
                println!(
                    "{:<24} {:>8} {:>8} {}",
                    escape(&g.name),
                    g.version,
                    g.members.len(),
                    escape(&ids.join(" "))
                );
            }
            Ok(())
        }
    }
}
