//! `degroup deploy`, `ps`, `logs`, `stop`: deployments, through the running node's admin API.
//! They work on the tenant's node (which asks the host) and on the host's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

use super::display::{escape, log_line};
use super::plugin::{parse_config, read_package};
use super::{ApiClient, ApiFailure, UsageError};
use crate::api::deploy::{DeployBody, LogsQuery, MessageBody, UpgradeBody};
use crate::capacity::units::format_size;
use crate::error::ErrorCode;
use crate::plugin::deployment::{State, View};
use crate::plugin::logs::{LogLine, LogPage};
use crate::plugin::wire::MAX_MESSAGE;

/// How often `logs --follow` asks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// How often `logs --follow` checks whether the deployment has ended.
const FOLLOW_STATE_EVERY: u32 = 4;

/// Arguments of `deploy`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["lease", "upgrade"]))]
pub(super) struct DeployArgs {
    /// The lease to deploy onto (id or its first hex digits)
    #[arg(long, value_name = "LEASE_ID")]
    lease: Option<String>,
    /// Replace the code of this deployment, keeping its key-value state
    #[arg(long, value_name = "DEPLOYMENT_ID")]
    upgrade: Option<String>,
    /// What to run: a package file (.dgp, from `degroup plugin pack`), or a reference the
    /// federation's catalogue resolves: NAME (latest), NAME@VERSION, NAME@RANGE (^0.1),
    /// PUBLISHER_PREFIX/NAME[@…], or blake3:HASH
    #[arg(value_name = "PACKAGE|REF")]
    package: String,
    /// key=value handed to the plugin's init; repeat (on --upgrade, replaces the old config)
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Claim this host name on the host's HTTP ingress (`curl -H 'Host: NAME' http://HOST/`);
    /// repeat for several. The plugin must serve HTTP (export wasi:http/incoming-handler)
    #[arg(long = "route", value_name = "HOST_NAME")]
    routes: Vec<String>,
    /// Join this group of yours (`degroup group create NAME`) once the host confirms the
    /// deployment; its members message each other (`--config role=…` labels it)
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

/// Arguments of `ps`.
#[derive(Debug, clap::Args)]
pub(super) struct PsArgs {
    /// Print one JSON document
    #[arg(long)]
    json: bool,
    /// Show child workloads indented under their parent
    #[arg(long)]
    tree: bool,
}

/// Arguments of `logs`.
#[derive(Debug, clap::Args)]
pub(super) struct LogsArgs {
    /// Deployment id (or its first hex digits)
    id: String,
    /// Keep printing new lines until the deployment stops (or Ctrl-C)
    #[arg(long, short)]
    follow: bool,
    /// Only the last N lines already written
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Print JSON lines (one object per log line)
    #[arg(long)]
    json: bool,
}

/// Arguments of `message`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("body").required(true).args(["text", "file"]))]
pub(super) struct MessageArgs {
    /// Deployment id (or its first hex digits)
    id: String,
    /// The payload, as text (e.g. a JSON request the plugin understands)
    text: Option<String>,
    /// Read the payload from a file instead (`-` for stdin)
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

/// Arguments of `stop`.
#[derive(Debug, clap::Args)]
pub(super) struct StopArgs {
    /// Deployment id (or its first hex digits)
    id: String,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Every string of a [`View`] is printed through [`escape`]: on the tenant's side the whole view
/// is what the host said, and the reason and warning can carry the plugin's own text.
fn print_view(v: &View) {
    println!("deployment  {}", escape(&v.id));
    println!("plugin      {} {}", escape(&v.name), escape(&v.version));
    if !v.reference.is_empty() {
        println!("ref         {}", escape(&v.reference));
    }
    if !v.package.is_empty() {
        println!("package     blake3:{}", escape(&v.package));
    }
    println!("lease       {}", escape(&v.lease));
    println!("host        {}", escape(&v.host));
    println!("tenant      {}", escape(&v.tenant));
    println!("state       {}", state_text(v));
    println!("generation  {}", v.generation);
    if let Some(c) = &v.counters {
        println!(
            "usage       {} ticks, {} starts, {} traps, {} interrupts, fuel {}, peak memory {}, kv {} of {}",
            c.ticks,
            c.starts,
            c.traps,
            c.interrupts,
            c.fuel,
            format_size(c.peak_mem_bytes),
            format_size(c.kv_bytes),
            format_size(c.kv_quota)
        );
    }
    for u in &v.urls {
        println!("url         {}", escape(u));
    }
    if let Some(w) = &v.warning {
        println!("warning     {}", escape(w));
    }
}

fn state_text(v: &View) -> String {
    let s = serde_json::to_value(v.state)
        .ok()
        .and_then(|s| s.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", v.state).to_lowercase());
    match &v.reason {
        Some(r) => format!("{}: {}", escape(&s), escape(r)),
        None => escape(&s).into_owned(),
    }
}

/// A failed deploy, with advice chosen by the error's code.
fn deploy_hint(e: anyhow::Error) -> anyhow::Error {
    let code = ApiFailure::code_of(&e);
    let hint = match code {
        Some(ErrorCode::Conflict) => {
            "if the lease already runs a deployment, `degroup deploy --upgrade DEPLOYMENT_ID FILE` changes its code and `degroup stop DEPLOYMENT_ID` ends it"
        }
        _ => return e,
    };
    ApiFailure {
        code,
        message: format!("{e:#}; {hint}"),
    }
    .into()
}

/// Whether the argument names a file (it exists, or looks like a path) rather than a
/// reference.
fn is_file(arg: &str) -> bool {
    Path::new(arg).is_file()
        || arg.ends_with(".dgp")
        || arg.starts_with('.')
        || arg.starts_with('/')
        || arg.starts_with('~')
}

pub(super) async fn deploy(dir: &Path, a: &DeployArgs) -> anyhow::Result<()> {
    let config = parse_config(&a.config)?;
    if let Some(g) = &a.group {
        if a.upgrade.is_some() {
            return Err(UsageError(
                "--group joins a new deployment; an upgraded one stays in its group".into(),
            )
            .into());
        }
        crate::group::doc::check_name(g).map_err(UsageError)?;
    }
    let (package, reference) = if is_file(&a.package) {
        (Some(b64(&read_package(Path::new(&a.package))?)), None)
    } else {
        super::packages::parse_reference(&a.package)?;
        (None, Some(a.package.clone()))
    };
    let client = ApiClient::from_data_dir(dir)?;
    let view: View = if let Some(id) = &a.upgrade {
        let body = UpgradeBody {
            package,
            reference,
            config: (!config.is_empty()).then_some(config),
            routes: a.routes.clone(),
        };
        client
            .post(&format!("/v1/deployments/{id}/upgrade"), &body)
            .await?
    } else {
        let lease = a.lease.clone().ok_or_else(|| {
            UsageError("give --lease LEASE_ID (or --upgrade DEPLOYMENT_ID)".into())
        })?;
        let body = DeployBody {
            lease,
            package,
            reference,
            config,
            routes: a.routes.clone(),
        };
        let path = match &a.group {
            Some(g) => format!("/v1/deployments?group={g}"),
            None => "/v1/deployments".to_owned(),
        };
        client.post(&path, &body).await.map_err(deploy_hint)?
    };
    if a.json {
        return super::print_json(&view);
    }
    print_view(&view);
    Ok(())
}

pub(super) async fn ps(dir: &Path, a: &PsArgs) -> anyhow::Result<()> {
    let client = ApiClient::from_data_dir(dir)?;
    let views: Vec<View> = client.get("/v1/deployments").await?;
    if a.json {
        return super::print_json(&views);
    }
    if views.is_empty() {
        println!("no deployments; deploy one with `degroup deploy --lease ID PACKAGE`");
        return Ok(());
    }
    println!(
        "{:<14} {:<7} {:<22} {:<24} {:<14} {:<14} {:>8} {:>10} STATE",
        "ID", "SIDE", "PLUGIN", "REF", "PACKAGE", "LEASE", "TICKS", "MEMORY"
    );
    let ordered = if a.tree {
        tree_order(&views)
    } else {
        views.iter().map(|v| (0, v)).collect()
    };
    // A warning is printed once per host: the children of an unreachable host would repeat
    // their parent's.
    let mut warned: Vec<&str> = Vec::new();
    for (depth, v) in ordered {
        let side = serde_json::to_value(v.side)
            .ok()
            .and_then(|s| s.as_str().map(str::to_owned))
            .unwrap_or_default();
        let (ticks, mem) = v.counters.as_ref().map_or(("-".into(), "-".into()), |c| {
            (c.ticks.to_string(), format_size(c.peak_mem_bytes))
        });
        let package = if v.package.is_empty() {
            "-".to_owned()
        } else {
            escape(short(&v.package)).into_owned()
        };
        let id = format!("{}{}", "  ".repeat(depth), escape(short(&v.id)));
        println!(
            "{:<14} {:<7} {:<22} {:<24} {:<14} {:<14} {:>8} {:>10} {}",
            id,
            side,
            format!("{} {}", escape(&v.name), escape(&v.version)),
            escape(&v.reference),
            package,
            escape(short(&v.lease)),
            ticks,
            mem,
            state_text(v)
        );
        for u in &v.urls {
            println!("  url: {}", escape(u));
        }
        if let Some(w) = &v.warning {
            if warned.contains(&w.as_str()) {
                println!("{}  warning: as above", "  ".repeat(depth));
            } else {
                warned.push(w);
                println!("{}  warning: {}", "  ".repeat(depth), escape(w));
            }
        }
    }
    Ok(())
}

/// Deployments with their children right under them (depth 1), in the order given; a child
/// whose parent is not listed comes at the top level.
fn tree_order(views: &[View]) -> Vec<(usize, &View)> {
    let known: std::collections::HashSet<&str> = views.iter().map(|v| v.id.as_str()).collect();
    let mut out = Vec::with_capacity(views.len());
    for v in views {
        let parent = v.parent.as_deref().filter(|p| known.contains(p));
        if parent.is_some() {
            continue;
        }
        out.push((0, v));
        for c in views
            .iter()
            .filter(|c| c.parent.as_deref() == Some(v.id.as_str()))
        {
            out.push((1, c));
        }
    }
    out
}

fn print_log(l: &LogLine, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(l)?);
        return Ok(());
    }
    // `[host]` or `[plugin]` first, the escaped message last: one entry, one line.
    println!("{}", log_line(l, true));
    Ok(())
}

async fn page(client: &ApiClient, id: &str, after: u64) -> anyhow::Result<LogPage> {
    client
        .get_query(
            &format!("/v1/deployments/{id}/logs"),
            &LogsQuery {
                after,
                limit: Some(1000),
            },
        )
        .await
}

pub(super) async fn logs(dir: &Path, a: &LogsArgs) -> anyhow::Result<()> {
    let client = ApiClient::from_data_dir(dir)?;
    // Everything already written (the ring holds a bounded number of lines).
    let mut after = 0;
    let mut backlog = Vec::new();
    let mut missed = 0;
    for _ in 0..64 {
        let p = page(&client, &a.id, after).await?;
        missed = missed.max(p.missed);
        let done = p.lines.is_empty() || p.next == after;
        after = p.next;
        backlog.extend(p.lines);
        if done {
            break;
        }
    }
    if let Some(n) = a.tail {
        let skip = backlog.len().saturating_sub(n);
        backlog.drain(..skip);
    } else if missed > 0 && !a.json {
        println!("... {missed} earlier lines are no longer kept");
    }
    for l in &backlog {
        print_log(l, a.json)?;
    }
    if !a.follow {
        return Ok(());
    }
    let mut polls = 0u32;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        let p = page(&client, &a.id, after).await?;
        if p.missed > 0 && !a.json {
            println!(
                "... {} lines were dropped before they could be shown",
                p.missed
            );
        }
        after = p.next;
        for l in &p.lines {
            print_log(l, a.json)?;
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(FOLLOW_STATE_EVERY) {
            let v: View = client.get(&format!("/v1/deployments/{}", a.id)).await?;
            if matches!(v.state, State::Stopped | State::Failed) {
                // One last page: the lines written while it stopped.
                let p = page(&client, &a.id, after).await?;
                for l in &p.lines {
                    print_log(l, a.json)?;
                }
                if !a.json {
                    eprintln!("-- deployment {}", state_text(&v));
                }
                return Ok(());
            }
        }
    }
}

pub(super) async fn message(dir: &Path, a: &MessageArgs) -> anyhow::Result<()> {
    let payload = match (&a.text, &a.file) {
        (Some(t), _) => t.clone().into_bytes(),
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(std::io::stdin(), MAX_MESSAGE as u64 + 1),
                &mut buf,
            )?;
            buf
        }
        (None, Some(f)) => {
            std::fs::read(f).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?
        }
        (None, None) => return Err(UsageError("give the payload as text or --file".into()).into()),
    };
    if payload.len() > MAX_MESSAGE {
        return Err(UsageError(format!(
            "the payload is {} bytes; a message holds at most {MAX_MESSAGE}",
            payload.len()
        ))
        .into());
    }
    let client = ApiClient::from_data_dir(dir)?;
    let reply: serde_json::Value = client
        .post(
            &format!("/v1/deployments/{}/message", a.id),
            &MessageBody {
                payload: b64(&payload),
            },
        )
        .await?;
    if a.json {
        return super::print_json(&reply);
    }
    println!("delivered {} bytes to {}", payload.len(), a.id);
    Ok(())
}

pub(super) async fn stop(dir: &Path, a: &StopArgs) -> anyhow::Result<()> {
    let client = ApiClient::from_data_dir(dir)?;
    let v: View = client
        .post(
            &format!("/v1/deployments/{}/stop", a.id),
            &serde_json::json!({}),
        )
        .await?;
    if a.json {
        return super::print_json(&v);
    }
    println!("deployment {} {}", escape(&v.id), state_text(&v));
    Ok(())
}
