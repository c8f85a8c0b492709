//! The demo's second chapter: the tenant's control plane.
//!
//! Three hosts and a tenant start as real `degroup node` processes (the hosts trust the
//! tenant as a publisher). The tenant publishes `hello@0.1.0`, creates the group `shop`, and
//! deploys the `scheduler` into it: agents on hosts 2 and 3 (`--config role=agent`), then the
//! leader on host 1 with six workloads of `hello@0.1.0`. The leader heartbeats the agents and
//! places the six, first-fit decreasing; each agent runs its share as child workloads of its
//! own deployment, which `ps --tree` shows under it. Then host 3 is killed with SIGKILL: the
//! chapter waits (at most 30 s) until `ps --tree` shows all six running on the other two, and
//! prints the leader's log line saying why and how long it took.
//!
//! Like the first chapter, every step is checked and a failure names the step and the logs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::story::{Story, command_line};
use crate::cluster::{Cluster, DataArgs, Node, Options};

const STEPS: usize = 7;
const HOSTS: usize = 3;
/// Six workloads of 100 millicores and 32 MiB, each a child running `hello`.
const WORKLOADS: usize = 6;

struct Chapter<'a> {
    bin: &'a Path,
    cluster: &'a Cluster,
}

impl Chapter<'_> {
    fn tenant(&self) -> &Node {
        &self.cluster.nodes[HOSTS]
    }

    fn hosts(&self) -> Vec<&Node> {
        self.cluster.nodes[..HOSTS].iter().collect()
    }

    fn name_of(&self, peer: &str) -> String {
        self.cluster
            .nodes
            .iter()
            .find(|n| n.peer_id == peer)
            .map_or_else(|| peer.to_owned(), |n| n.name.clone())
    }

    async fn show(&self, story: &Story, node: &Node, args: &[&str]) -> anyhow::Result<String> {
        let out = node.cli(self.bin, args).await?;
        story.shell(&command_line(&node.dir, args), &out);
        Ok(out)
    }

    async fn json(&self, node: &Node, args: &[&str]) -> anyhow::Result<Value> {
        node.cli_json::<Value>(self.bin, args).await
    }
}

/// Runs `degroup --data-dir DIR ARGS…` before the node runs (init, key show).
async fn offline(bin: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(bin)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "degroup --data-dir {} {}: {}",
            dir.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates the data directories: the tenant's, then the hosts' trusting the tenant's key.
async fn prepare(bin: &Path, root: &Path, names: &[String]) -> anyhow::Result<String> {
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let tenant = root.join(&names[HOSTS]);
    offline(bin, &tenant, &["init"]).await?;
    let key: Value =
        serde_json::from_str(&offline(bin, &tenant, &["key", "show", "--json"]).await?)?;
    let Some(key) = key["public_key"].as_str().or_else(|| key["key"].as_str()) else {
        bail!("`key show --json` printed no key: {key}");
    };
    for name in &names[..HOSTS] {
        let dir = root.join(name);
        offline(bin, &dir, &["init"]).await?;
        let path = dir.join("config.toml");
        let text = std::fs::read_to_string(&path)?;
        if !text.contains("\n[trust]\n") {
            bail!("{} has no [trust] table", path.display());
        }
        let text = text.replace(
            "\n[trust]\n",
            &format!("\n[trust]\npublishers = [{{ name = \"shop\", key = \"{key}\" }}]\n"),
        );
        std::fs::write(&path, text)?;
    }
    Ok(key.to_owned())
}

pub(super) async fn run(bin: &Path, data: &DataArgs) -> anyhow::Result<()> {
    // Quicker ticks make the story quicker to watch; the heartbeat stays the scheduler's 1 s.
    chapter(bin, data, Some("250ms")).await.map(|_| ())
}

/// The chapter with the node's default tick interval (1 s): how long the six workloads took
/// to run again on the two other hosts after the `kill -9`.
pub(crate) async fn replacement_time(bin: &Path, data: &DataArgs) -> anyhow::Result<Duration> {
    chapter(bin, data, None).await
}

async fn chapter(bin: &Path, data: &DataArgs, tick: Option<&str>) -> anyhow::Result<Duration> {
    println!("\n== Chapter 2: the tenant's control plane ==");
    let mut story = Story::new(STEPS);
    story.step("Build the scheduler and hello plugins");
    let scheduler = crate::plugins::component("scheduler", None)
        .await
        .map_err(|e| story.failed(&e, &[]))?;
    let hello = crate::plugins::component("hello", None)
        .await
        .map_err(|e| story.failed(&e, &[]))?;
    story.say(&format!(
        "{}\n      {}",
        scheduler.display(),
        hello.display()
    ));

    story.step("Start three hosts and a tenant; the hosts trust the tenant as a publisher");
    let root = data.dir.as_ref().map_or_else(
        || {
            let mut r = crate::cluster::fresh_root().into_os_string();
            r.push("-control");
            PathBuf::from(r)
        },
        |d| d.join("control"),
    );
    let mut names: Vec<String> = (1..=HOSTS).map(|i| format!("host{i}")).collect();
    names.push("tenant".to_owned());
    let key = prepare(bin, &root, &names)
        .await
        .map_err(|e| story.failed(&e, &[]))?;
    story.say(&format!("the tenant's publisher key: {key}"));
    let options = Options {
        names,
        env: tick
            .map(|t| ("DEGROUP_PLUGIN__TICK_INTERVAL".into(), t.to_owned()))
            .into_iter()
            .collect(),
        keep: true,
        ..Options::default()
    };
    let mut cluster = Cluster::start_with(bin, root.clone(), &options)
        .await
        .map_err(|e| story.failed(&e, &[]))?;
    for n in &cluster.nodes {
        story.say(&format!("{:<7} {}", n.name, n.peer_id));
    }
    let took = steps(bin, &mut cluster, &mut story).await?;

    story.step("Stop the other nodes with SIGTERM; each must exit cleanly");
    let unclean = cluster.stop().await;
    if !unclean.is_empty() {
        let e = anyhow::anyhow!(unclean.join("; "));
        return Err(story.failed(&e, &[]));
    }
    if data.keep || data.dir.is_some() {
        story.say(&format!("data kept in {}", root.display()));
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(took)
}

/// The chapter's steps; returns the time from the kill to all workloads running again.
async fn steps(bin: &Path, cluster: &mut Cluster, story: &mut Story) -> anyhow::Result<Duration> {
    let (leader, agents) = {
        let c = Chapter { bin, cluster };
        let all: Vec<&Node> = c.cluster.nodes.iter().collect();
        story.step("The hosts offer capacity; the tenant hears them and publishes hello@0.1.0");
        offer_and_publish(&c, story)
            .await
            .map_err(|e| story.failed(&e, &all))?;

        story.step("The tenant creates the group `shop` and deploys the scheduler into it");
        let (leader, agents) = deploy(&c, story)
            .await
            .map_err(|e| story.failed(&e, &all))?;

        story.step("The leader places six workloads; the agents run them as child workloads");
        let mut parents = vec![leader.clone()];
        parents.extend(agents.iter().cloned());
        wait_children(&c, &parents, Duration::from_secs(60))
            .await
            .map_err(|e| story.failed(&e, &all))?;
        c.show(story, c.tenant(), &["ps", "--tree"])
            .await
            .map_err(|e| story.failed(&e, &all))?;
        c.show(story, c.tenant(), &["group", "show", "shop"])
            .await
            .map_err(|e| story.failed(&e, &all))?;
        (leader, agents)
    };

    story.step("kill -9 host3: its agent's workloads come back on the other two within 30 s");
    story.shell(
        &format!(
            "kill -9 {}",
            cluster.nodes[2].pid().map_or(0, |p| p.as_raw())
        ),
        "",
    );
    cluster.nodes[2].kill9().await;
    let killed = Instant::now();
    let c = Chapter { bin, cluster };
    let all: Vec<&Node> = c.cluster.nodes.iter().collect();
    let survivors = vec![leader.clone(), agents[0].clone()];
    wait_children(&c, &survivors, Duration::from_secs(30))
        .await
        .map_err(|e| story.failed(&e, &all))?;
    let took = killed.elapsed();
    let lines = super::log_lines(c.tenant(), &leader)
        .await
        .map_err(|e| story.failed(&e, &all))?;
    let why = lines
        .iter()
        .rev()
        .find(|l| l.contains("missed heartbeats"))
        .cloned();
    let Some(why) = why else {
        let e = anyhow::anyhow!("the leader logged no reason for the re-placement");
        return Err(story.failed(&e, &all));
    };
    story.say(&format!("the leader logged: {why}"));
    story.say(&format!(
        "all {WORKLOADS} workloads ran again on host1 and host2 {:.1} s after the kill",
        took.as_secs_f64()
    ));
    c.show(story, c.tenant(), &["ps", "--tree"])
        .await
        .map_err(|e| story.failed(&e, &all))?;
    Ok(took)
}

async fn offer_and_publish(c: &Chapter<'_>, story: &Story) -> anyhow::Result<()> {
    let tenant = c.tenant();
    for h in c.hosts() {
        h.cli(
            c.bin,
            &[
                "capacity",
                "set",
                "--cpu",
                "2",
                "--mem",
                "4GiB",
                "--disk",
                "10GiB",
                "--country",
                "FR",
            ],
        )
        .await?;
    }
    let started = Instant::now();
    loop {
        let f = c.json(tenant, &["find", "country=FR"]).await?;
        let n = f["matches"].as_array().map_or(0, Vec::len);
        if n >= HOSTS {
            story.say(&format!(
                "the tenant knows the {HOSTS} hosts after {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("after 30 s the tenant knows {n} of the {HOSTS} hosts");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hello = crate::plugins::component("hello", None).await?;
    let pkg = c.cluster.root.join("hello-0.1.0.dgp");
    let (wasm, out) = (hello.display().to_string(), pkg.display().to_string());
    c.show(
        story,
        tenant,
        &[
            "plugin",
            "pack",
            &wasm,
            "--name",
            "hello",
            "--version",
            "0.1.0",
            "--out",
            &out,
        ],
    )
    .await?;
    c.show(story, tenant, &["plugin", "publish", &out]).await?;
    let started = Instant::now();
    for h in c.hosts() {
        while h
            .cli(c.bin, &["plugin", "info", "hello@0.1.0", "--json"])
            .await
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("{} did not hear of hello@0.1.0 within 30 s", h.name);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    story.say("every host resolves hello@0.1.0 to the tenant's package");
    Ok(())
}

async fn deploy(c: &Chapter<'_>, story: &Story) -> anyhow::Result<(String, Vec<String>)> {
    let tenant = c.tenant();
    c.show(story, tenant, &["group", "create", "shop"]).await?;
    let wasm = crate::plugins::component("scheduler", None).await?;
    let pkg = c.cluster.root.join("scheduler-0.1.0.dgp");
    let (w, out) = (wasm.display().to_string(), pkg.display().to_string());
    c.show(
        story,
        tenant,
        &[
            "plugin",
            "pack",
            &w,
            "--name",
            "scheduler",
            "--version",
            "0.1.0",
            "--out",
            &out,
        ],
    )
    .await?;
    let mut leases = Vec::new();
    for h in c.hosts() {
        let l = c
            .json(
                tenant,
                &[
                    "lease", "create", "--host", &h.peer_id, "--cpu", "1", "--mem", "512MiB",
                    "--disk", "64MiB", "--for", "1h",
                ],
            )
            .await?;
        let Some(id) = l["id"].as_str() else {
            bail!("`lease create --json` printed no id: {l}");
        };
        leases.push(id.to_owned());
    }
    let workloads: Vec<String> = (1..=WORKLOADS)
        .map(|i| format!("w{i}:100:32:hello@0.1.0"))
        .collect();
    let workloads = format!("workloads={}", workloads.join(","));
    // Agents first, so that the leader finds them in the group when it starts.
    let mut ids = Vec::new();
    for (i, config) in [(1, "role=agent"), (2, "role=agent"), (0, "role=leader")] {
        let mut args = vec![
            "deploy", "--lease", &leases[i], &out, "--group", "shop", "--config", config,
        ];
        if i == 0 {
            args.extend(["--config", &workloads]);
        }
        story.shell(&command_line(&tenant.dir, &args), "");
        args.push("--json");
        let v: Value = serde_json::from_str(&tenant.cli(c.bin, &args).await?)?;
        let (Some(id), Some(state)) = (v["id"].as_str(), v["state"].as_str()) else {
            bail!("`deploy --json` printed no deployment: {v}");
        };
        story.say(&format!(
            "deployment {id} on {}: {state}",
            c.hosts()[i].name
        ));
        if state != "running" {
            bail!("deployment {id} is {state} after deploy: {}", v["reason"]);
        }
        ids.push(id.to_owned());
    }
    let leader = ids.pop().unwrap_or_default();
    Ok((leader, ids))
}

/// Waits until the tenant's `ps --json` shows all the workloads running as children of
/// `parents`, each on its parent's host.
async fn wait_children(c: &Chapter<'_>, parents: &[String], limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let ps = c.json(c.tenant(), &["ps"]).await?;
        let all = ps.as_array().cloned().unwrap_or_default();
        let host_of = |id: &str| {
            all.iter()
                .find(|v| v["id"] == id)
                .and_then(|v| v["host"].as_str())
                .map(str::to_owned)
        };
        let running: Vec<&Value> = all
            .iter()
            .filter(|v| {
                v["state"] == "running"
                    && v["parent"]
                        .as_str()
                        .is_some_and(|p| parents.iter().any(|x| x == p))
            })
            .collect();
        let misplaced = running
            .iter()
            .filter(|v| {
                let parent = v["parent"].as_str().unwrap_or_default();
                host_of(parent).as_deref() != v["host"].as_str()
            })
            .count();
        if misplaced > 0 {
            bail!("{misplaced} children run on another host than their parent's");
        }
        if running.len() >= WORKLOADS {
            let per: Vec<String> = parents
                .iter()
                .map(|p| {
                    let n = running.iter().filter(|v| v["parent"] == p.as_str()).count();
                    let host = host_of(p).map_or_else(String::new, |h| c.name_of(&h));
                    format!("{n} on {host}")
                })
                .collect();
            println!(
                "      {} children running: {}",
                running.len(),
                per.join(", ")
            );
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!(
                "after {limit:?}, {} of the {WORKLOADS} workloads run as children of {parents:?}",
                running.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
