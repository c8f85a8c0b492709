//! `degroup-testnet demo`: the whole story of degroup on one machine, step by step.
//!
//! Five hosts of the `mixed` profile (Paris, Frankfurt, Toulouse, Lyon, Amsterdam) and one
//! tenant start as real `degroup node` processes. The operators offer their capacity; the tenant
//! finds capacity in France with SecNumCloud (and sees why the others do not match), leases a
//! slice on both matching hosts, packs and deploys the `scheduler` plugin onto both, shows their
//! logs, talks to one, verifies a lease offline (and sees a tampered copy fail), releases
//! everything, reads the hosts' signed usage receipts, and stops every node with SIGTERM.
//!
//! A second chapter ([`control`]) tells the tenant's control plane on three more hosts: the
//! scheduler as a group (a leader and two agents) running six workloads as child workloads,
//! one host killed with SIGKILL, and its workloads back on the other two within 30 s.
//!
//! Every step is checked, not only shown: the demo exits non-zero at the first step that does
//! not do what it says, naming the step and the node logs to read, and keeps the data
//! directories for that.

mod control;

pub(crate) use control::replacement_time;
mod story;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use degroup_node::capacity::query::FindResult;
use degroup_node::lease::service::ReceiptList;
use degroup_node::lease::view::{LeaseExport, LeaseState, LeaseView};
use degroup_node::plugin::deployment::{State, View};
use degroup_node::plugin::logs::LogPage;

use crate::cluster::{Cluster, DataArgs, Node, Options, profile};
use story::{Story, command_line};

/// Options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The scheduler component [default: built from wasm-plugins/scheduler]
    #[arg(long, value_name = "FILE.wasm")]
    plugin: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
}

const HOSTS: usize = 5;
const STEPS: usize = 14;
const QUERY: &str = "country=FR cert=SecNumCloud cpu>=8";
const WORKLOADS: &str = "web:300:256,api:400:256,db:600:512,cache:200:128";

/// What the steps share.
struct Demo<'a> {
    bin: &'a Path,
    cluster: &'a Cluster,
    wasm: PathBuf,
}

impl Demo<'_> {
    fn tenant(&self) -> &Node {
        &self.cluster.nodes[HOSTS]
    }

    fn host(&self, peer: &str) -> Option<&Node> {
        self.cluster.nodes[..HOSTS]
            .iter()
            .find(|n| n.peer_id == peer)
    }

    /// Runs a command on `node`, prints it and its output.
    async fn show(&self, story: &Story, node: &Node, args: &[&str]) -> anyhow::Result<String> {
        let out = node.cli(self.bin, args).await?;
        story.shell(&command_line(&node.dir, args), &out);
        Ok(out)
    }
}

pub(crate) async fn run(bin: &Path, args: &Args) -> anyhow::Result<()> {
    let mut story = Story::new(STEPS);
    story.step("Build the scheduler plugin");
    let wasm = crate::plugins::component("scheduler", args.plugin.as_deref())
        .await
        .map_err(|e| story.failed(&e, &[]))?;
    story.say(&format!("component: {}", wasm.display()));

    story.step("Start five hosts and a tenant, each a `degroup node` process on 127.0.0.1");
    let root = args.data.root();
    let mut names = profile::mixed_names(HOSTS);
    names.push("tenant".to_owned());
    let options = Options {
        names,
        // Plugins tick four times a second, so that their logs move while you watch.
        env: vec![("DEGROUP_PLUGIN__TICK_INTERVAL".into(), "250ms".into())],
        netns: false,
        keep: args.data.keep,
        ..Options::default()
    };
    let cluster = Cluster::start_with(bin, root.clone(), &options)
        .await
        .map_err(|e| {
            story.failed(
                &e,
                &[], // the error names the node that did not start
            )
        })?;
    for n in &cluster.nodes {
        story.say(&format!(
            "{:<10} {}  data: {}",
            n.name,
            n.peer_id,
            n.dir.display()
        ));
    }
    let demo = Demo {
        bin,
        cluster: &cluster,
        wasm,
    };
    // On failure, dropping the cluster kills the nodes and keeps their logs.
    steps(&demo, &mut story).await?;

    story.step("Stop every node with SIGTERM; each must exit cleanly");
    let unclean = cluster.stop().await;
    if !unclean.is_empty() {
        let e = anyhow::anyhow!(unclean.join("; "));
        return Err(story.failed(&e, &[]));
    }
    story.say("all six nodes exited with status 0");
    if args.data.keep {
        story.say(&format!("data kept in {}", root.display()));
    }
    control::run(bin, &args.data).await?;
    println!("\nThe demo ran to the end: every step did what it said.");
    Ok(())
}

async fn steps(d: &Demo<'_>, story: &mut Story) -> anyhow::Result<()> {
    let all: Vec<&Node> = d.cluster.nodes.iter().collect();
    let tenant = d.tenant();

    story.step("Each operator says what it offers (degroup capacity set)");
    offer(d, story).await.map_err(|e| story.failed(&e, &all))?;

    story.step("The tenant hears every host's signed advert over gossip");
    let expected = converge(d, story)
        .await
        .map_err(|e| story.failed(&e, &all))?;

    story.step("The tenant looks for capacity in France with SecNumCloud");
    let hosts = find(d, story, &expected)
        .await
        .map_err(|e| story.failed(&e, &[tenant]))?;
    let host_nodes: Vec<&Node> = hosts.iter().filter_map(|h| d.host(h)).collect();
    let mut involved = host_nodes.clone();
    involved.push(tenant);

    story.step("The tenant leases a slice on both hosts; each lease is signed by both sides");
    let leases = lease(d, story, &host_nodes)
        .await
        .map_err(|e| story.failed(&e, &involved))?;

    story.step("The tenant packs the scheduler plugin into a signed package");
    let package = d.cluster.root.join("scheduler-0.1.0.dgp");
    pack(d, story, &package)
        .await
        .map_err(|e| story.failed(&e, &[tenant]))?;

    story.step("The tenant deploys the scheduler onto both slices");
    let deployments = deploy(d, story, &leases, &package)
        .await
        .map_err(|e| story.failed(&e, &involved))?;

    story.step("Both schedulers run on their hosts: ps and logs, from the tenant's node");
    watch(d, story, &deployments)
        .await
        .map_err(|e| story.failed(&e, &involved))?;

    story.step("The tenant submits one more workload to the first scheduler");
    message(d, story, &deployments[0])
        .await
        .map_err(|e| story.failed(&e, &involved))?;

    story.step("Anyone can verify a lease offline, and a tampered copy fails");
    verify_offline(d, story, &leases[0])
        .await
        .map_err(|e| story.failed(&e, &[tenant]))?;

    story.step("The tenant releases both leases; the hosts stop the deployments");
    release(d, story, &leases, &host_nodes)
        .await
        .map_err(|e| story.failed(&e, &involved))?;

    story.step("The hosts' signed usage receipts: fuel, memory and storage the plugins used");
    receipts(d, story, &leases)
        .await
        .map_err(|e| story.failed(&e, &involved))?;
    Ok(())
}

async fn offer(d: &Demo<'_>, story: &Story) -> anyhow::Result<()> {
    for (i, node) in d.cluster.nodes[..HOSTS].iter().enumerate() {
        let host = profile::mixed(i);
        host.apply(d.bin, node)
            .await
            .with_context(|| format!("setting the capacity of {}", node.name))?;
        if i == 0 {
            story.shell(&host.command_line(&node.dir), "");
        }
        story.say(&format!(
            "{:<10} {}  {:>3} cores {:>7}  GPU {:<14} certs {:<28} {}",
            node.name,
            host.country,
            host.cpu,
            host.mem,
            if host.gpus.is_empty() {
                "-".to_owned()
            } else {
                host.gpus.join(",")
            },
            if host.certs.is_empty() {
                "-".to_owned()
            } else {
                host.certs.join(",")
            },
            host.prices.join(" ")
        ));
    }
    Ok(())
}

/// Waits until the tenant holds every host's advert with the capacity just set; returns the
/// peer ids that must match the query.
async fn converge(d: &Demo<'_>, story: &Story) -> anyhow::Result<Vec<String>> {
    let expected: Vec<String> = d.cluster.nodes[..HOSTS]
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let h = profile::mixed(*i);
            h.country == "FR" && h.certs.contains(&"SecNumCloud")
        })
        .map(|(_, n)| n.peer_id.clone())
        .collect();
    let started = Instant::now();
    loop {
        let r: FindResult = d
            .tenant()
            .get(&format!("/v1/find?q={}", "country%3DFR"))
            .await?;
        let countries = r.matches.len();
        let total = r.hosts_considered as u64;
        let all_fr = (0..HOSTS)
            .filter(|&i| profile::mixed(i).country == "FR")
            .count();
        if countries == all_fr && total >= HOSTS as u64 {
            story.say(&format!(
                "{total} adverts known to the tenant after {:.1} s, every signature checked",
                started.elapsed().as_secs_f64()
            ));
            return Ok(expected);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "after 30 s the tenant knows {total} adverts and {countries} French hosts (expected {all_fr}); gossip or sync is not working"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn find(d: &Demo<'_>, story: &Story, expected: &[String]) -> anyhow::Result<Vec<String>> {
    let tenant = d.tenant();
    d.show(story, tenant, &["find", QUERY, "--explain"]).await?;
    let r: FindResult = tenant
        .cli_json(d.bin, &["find", QUERY, "--explain"])
        .await?;
    // Lease in the order find gave (cheapest first).
    let ordered: Vec<String> = r.matches.iter().map(|m| m.host.clone()).collect();
    let mut found = ordered.clone();
    let misses = r.not_matching.len();
    let mut want = expected.to_vec();
    found.sort();
    want.sort();
    if found != want {
        bail!("`find {QUERY}` matched {found:?}, expected {want:?}");
    }
    if misses < HOSTS - expected.len() {
        bail!(
            "--explain gave reasons for {misses} hosts, expected at least {}",
            HOSTS - expected.len()
        );
    }
    let name = |peer: &str| {
        d.cluster
            .nodes
            .iter()
            .find(|n| n.peer_id == peer)
            .map_or_else(|| peer.to_owned(), |n| n.name.clone())
    };
    let matched: Vec<String> = ordered.iter().map(|p| name(p)).collect();
    story.say(&format!(
        "{} match (cheapest first); --explain says why each other node does not:",
        matched.join(" and ")
    ));
    for miss in &r.not_matching {
        story.say(&format!(
            "  {:<10} fails `{}`: has {}",
            name(&miss.host),
            miss.clause,
            miss.actual
        ));
    }
    Ok(ordered)
}

async fn lease(d: &Demo<'_>, story: &Story, hosts: &[&Node]) -> anyhow::Result<Vec<String>> {
    let tenant = d.tenant();
    let mut ids = Vec::new();
    for host in hosts {
        let args = [
            "lease",
            "create",
            "--host",
            &host.peer_id,
            "--cpu",
            "2",
            "--mem",
            "2GiB",
            "--disk",
            "256MiB",
            "--for",
            "1h",
            "--max-price",
            "1",
        ];
        let out = d.show(story, tenant, &args).await?;
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("lease ").map(|r| r.trim().to_owned()))
            .filter(|s| s.len() == 32);
        let Some(id) = id else {
            bail!("`lease create` printed no lease id");
        };
        let on_host: LeaseView = host.get(&format!("/v1/leases/{id}")).await?;
        if on_host.state != LeaseState::Active || on_host.verified != Some(true) {
            bail!(
                "{} holds lease {id} as {}",
                host.name,
                serde_json::to_string(&on_host)?
            );
        }
        let on_tenant: LeaseView = tenant.get(&format!("/v1/leases/{id}")).await?;
        if on_tenant.state != LeaseState::Active || on_tenant.verified != Some(true) {
            bail!(
                "the tenant holds lease {id} as {}",
                serde_json::to_string(&on_tenant)?
            );
        }
        story.say(&format!(
            "{} holds the same lease, both signatures verified",
            host.name
        ));
        ids.push(id);
    }
    Ok(ids)
}

async fn pack(d: &Demo<'_>, story: &Story, package: &Path) -> anyhow::Result<()> {
    let wasm = d.wasm.display().to_string();
    let out = package.display().to_string();
    let args = [
        "plugin",
        "pack",
        &wasm,
        "--name",
        "scheduler",
        "--version",
        "0.1.0",
        "--out",
        &out,
    ];
    d.show(story, d.tenant(), &args).await?;
    if !package.is_file() {
        bail!("`plugin pack` did not write {out}");
    }
    Ok(())
}

async fn deploy(
    d: &Demo<'_>,
    story: &Story,
    leases: &[String],
    package: &Path,
) -> anyhow::Result<Vec<String>> {
    let tenant = d.tenant();
    let file = package.display().to_string();
    let workloads = format!("workloads={WORKLOADS}");
    let mut ids = Vec::new();
    for lease in leases {
        let args = [
            "deploy",
            "--lease",
            lease,
            &file,
            "--config",
            &workloads,
            "--config",
            "report_every=8",
        ];
        story.shell(&command_line(&tenant.dir, &args), "");
        let mut json_args = args.to_vec();
        json_args.push("--json");
        let out = tenant.cli(d.bin, &json_args).await?;
        let v: View = serde_json::from_str(&out)
            .with_context(|| format!("`deploy --json` printed no deployment: {out}"))?;
        let id = v.id;
        let host = d.host(&v.host).map_or(v.host.as_str(), |n| n.name.as_str());
        story.say(&format!("deployment {id} on {host}: {}", v.state));
        if v.state != State::Running {
            bail!(
                "deployment {id} on {host} is {} after deploy, not running: {}",
                v.state,
                v.reason.as_deref().unwrap_or("no reason given")
            );
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Logs of a deployment as the tenant's node fetches them.
async fn log_lines(tenant: &Node, id: &str) -> anyhow::Result<Vec<String>> {
    let page: LogPage = tenant
        .get(&format!("/v1/deployments/{id}/logs?limit=1000"))
        .await?;
    Ok(page.lines.into_iter().map(|l| l.message).collect())
}

async fn wait_for_log(tenant: &Node, id: &str, needle: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let lines = log_lines(tenant, id).await?;
        if lines.iter().any(|l| l.contains(needle)) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!(
                "deployment {id} logged no line with {needle:?} within 20 s; its last lines: {:?}",
                lines.iter().rev().take(5).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn watch(d: &Demo<'_>, story: &Story, deployments: &[String]) -> anyhow::Result<()> {
    let tenant = d.tenant();
    for id in deployments {
        wait_for_log(tenant, id, "placed cache").await?;
        let v: View = tenant.get(&format!("/v1/deployments/{id}")).await?;
        if v.state != State::Running {
            bail!(
                "deployment {id} is {} ({})",
                v.state,
                v.reason.as_deref().unwrap_or("no reason given")
            );
        }
    }
    d.show(story, tenant, &["ps"]).await?;
    for id in deployments {
        d.show(story, tenant, &["logs", id, "--tail", "7"]).await?;
    }
    Ok(())
}

async fn message(d: &Demo<'_>, story: &Story, deployment: &str) -> anyhow::Result<()> {
    let tenant = d.tenant();
    let body = r#"{"op":"submit","name":"batch","cpu_millis":300,"mem_mib":128}"#;
    d.show(story, tenant, &["message", deployment, body])
        .await?;
    wait_for_log(tenant, deployment, "batch").await?;
    let lines = log_lines(tenant, deployment).await?;
    if let Some(l) = lines.iter().rev().find(|l| l.contains("batch")) {
        story.say(&format!("the scheduler logged: {l}"));
    }
    Ok(())
}

async fn verify_offline(d: &Demo<'_>, story: &Story, lease: &str) -> anyhow::Result<()> {
    let file = d.cluster.root.join("lease.json");
    let path = file.display().to_string();
    d.show(
        story,
        d.tenant(),
        &["lease", "export", lease, "--out", &path],
    )
    .await?;
    let out = tokio::process::Command::new(d.bin)
        .args(["lease", "verify", &path])
        .output()
        .await?;
    story.shell(
        &format!("degroup lease verify {path}"),
        &String::from_utf8_lossy(&out.stdout),
    );
    if !out.status.success() {
        bail!(
            "`lease verify` rejected a genuine lease: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // Change one hex digit of the signed contract.
    let text = std::fs::read_to_string(&file)?;
    let mut export: LeaseExport =
        serde_json::from_str(&text).context("the exported lease is not a lease export")?;
    let mut bytes = std::mem::take(&mut export.contract).into_bytes();
    if bytes.is_empty() {
        bail!("the exported lease's `contract` is empty");
    }
    let pos = bytes.len() / 2;
    bytes[pos] = if bytes[pos] == b'0' { b'1' } else { b'0' };
    export.contract = String::from_utf8_lossy(&bytes).into_owned();
    let tampered = d.cluster.root.join("lease-tampered.json");
    std::fs::write(&tampered, serde_json::to_vec_pretty(&export)?)?;
    let tpath = tampered.display().to_string();
    let out = tokio::process::Command::new(d.bin)
        .args(["lease", "verify", &tpath])
        .output()
        .await?;
    story.shell(
        &format!("degroup lease verify {tpath}   # one hex digit changed"),
        &format!(
            "{}{}(exit code {})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code().unwrap_or(-1)
        ),
    );
    if out.status.success() {
        bail!("`lease verify` accepted a tampered lease");
    }
    Ok(())
}

async fn release(
    d: &Demo<'_>,
    story: &Story,
    leases: &[String],
    hosts: &[&Node],
) -> anyhow::Result<()> {
    let tenant = d.tenant();
    for lease in leases {
        d.show(story, tenant, &["lease", "release", lease]).await?;
    }
    let started = Instant::now();
    loop {
        let mut live = 0;
        for h in hosts {
            let v: Vec<View> = h.get("/v1/deployments").await?;
            live += v.iter().filter(|x| x.state == State::Running).count();
        }
        if live == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(15) {
            bail!(
                "{live} deployments still run on the hosts 15 s after their leases were released"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (lease, host) in leases.iter().zip(hosts) {
        let v: LeaseView = host.get(&format!("/v1/leases/{lease}")).await?;
        if v.state != LeaseState::Released {
            bail!("{} holds lease {lease} as {}", host.name, v.state);
        }
    }
    d.show(story, hosts[0], &["lease", "list"]).await?;
    story.say("both hosts stopped the schedulers and freed the capacity");
    Ok(())
}

async fn receipts(d: &Demo<'_>, story: &Story, leases: &[String]) -> anyhow::Result<()> {
    let tenant = d.tenant();
    for lease in leases {
        d.show(story, tenant, &["lease", "receipts", lease]).await?;
        let v: ReceiptList = tenant
            .cli_json(d.bin, &["lease", "receipts", lease])
            .await?;
        let list = v.receipts;
        if list.is_empty() {
            bail!("lease {lease} has no usage receipt after its release");
        }
        if list.iter().any(|r| !r.verified) {
            bail!("a receipt of lease {lease} does not verify");
        }
        let fuel: u64 = list.iter().map(|r| r.cpu_fuel).sum();
        if fuel == 0 {
            bail!("the receipts of lease {lease} meter no fuel, yet a plugin ran on it");
        }
    }
    story.say("every receipt is signed by its host and meters the fuel the scheduler burnt");
    Ok(())
}
