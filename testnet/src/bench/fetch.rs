//! Package distribution: the throughput of a verified fetch of a 64 MiB blob from 1, 2 and 3
//! providers, side by side with a plain TCP copy of the same bytes on loopback (no encryption,
//! no verification: the machine's ceiling) and with `sendme` (iroh-blobs' CLI) when it is
//! installed; then deploy-by-name of an uncached 1 MiB package on a 10-node testnet, timed
//! from the CLI call to `running`.
//!
//! Every fetch is of a package its fetcher does not hold: each provider count gets its own
//! package (same size, other bytes), published by node 0 and mirrored by as many nodes as the
//! count needs. The fetcher asks Kademlia for the providers, as a user's `plugin fetch` does.
//! Both the fetch and the TCP copy write the bytes to a file and fsync it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use degroup_node::api::lease::CreateBody;
use degroup_node::api::packages::FetchBody;
use degroup_node::lease::view::LeaseView;
use degroup_node::plugin::deployment::{State, View};
use degroup_node::plugin::distribution::FetchView;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::quantile;
use super::report::Section;
use crate::cluster::{Cluster, Options, fresh_root};

/// Options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Size of the fetched blob, MiB
    #[arg(long, default_value_t = 64)]
    mib: usize,
    /// Rounds per provider count (each with fresh packages)
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Deploys by name of an uncached 1 MiB package on the 10-node testnet
    #[arg(long, default_value_t = 20)]
    deploys: usize,
}

/// A component of about `size` bytes: the header, then filler. Distribution moves it without
/// compiling it.
fn filler_component(size: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    let mut x = seed | 1;
    bytes.extend((0..size).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    bytes
}

/// A real component padded to about `size` bytes with a custom section (still valid).
fn padded(wasm: &[u8], size: usize) -> Vec<u8> {
    let payload = size.saturating_sub(wasm.len());
    let name = b"degroup-bench-padding";
    let mut section = Vec::with_capacity(payload + 32);
    leb128(&mut section, name.len() as u64);
    section.extend_from_slice(name);
    section.resize(section.len() + payload, 0x5a);
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(&mut out, section.len() as u64);
    out.extend(section);
    out
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The plain TCP copy: `size` bytes over loopback into a file, fsynced. MiB/s.
async fn tcp_copy(dir: &Path, size: usize) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let data = filler_component(size, 7);
    let server = tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(&data).await;
        }
    });
    let t0 = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let path = dir.join("tcp-copy.bin");
    let mut file = tokio::fs::File::create(&path).await?;
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    while got < size + 8 {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).await?;
        got += n;
    }
    file.sync_all().await?;
    let secs = t0.elapsed().as_secs_f64();
    let _ = server.await;
    let _ = std::fs::remove_file(&path);
    Ok(got as f64 / (1 << 20) as f64 / secs)
}

/// `sendme` on loopback, when installed: MiB/s, or why not.
async fn sendme(dir: &Path, size: usize) -> Result<f64, String> {
    let which = tokio::process::Command::new("sh")
        .args(["-c", "command -v sendme"])
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if !which.status.success() {
        return Err("not installed (`cargo install sendme --locked`)".into());
    }
    let file = dir.join("sendme.bin");
    std::fs::write(&file, filler_component(size, 11)).map_err(|e| e.to_string())?;
    let mut send = tokio::process::Command::new("sendme")
        .arg("send")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = send.stdout.take().ok_or("no stdout")?;
    let mut text = String::new();
    let ticket = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = out.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(t) = text.split_whitespace().find(|w| w.starts_with("blob")) {
                return Some(t.to_owned());
            }
        }
    })
    .await
    .ok()
    .flatten()
    .ok_or("sendme printed no ticket (it may need the internet for its relay)")?;
    let recv_dir = dir.join("sendme-recv");
    std::fs::create_dir_all(&recv_dir).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let recv = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("sendme")
            .args(["receive", &ticket])
            .current_dir(&recv_dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "sendme receive did not finish in 120 s".to_owned())?
    .map_err(|e| e.to_string())?;
    let secs = t0.elapsed().as_secs_f64();
    let _ = send.kill().await;
    if !recv.status.success() {
        return Err(format!(
            "sendme receive failed: {}",
            String::from_utf8_lossy(&recv.stderr).trim()
        ));
    }
    Ok(size as f64 / (1 << 20) as f64 / secs)
}

pub(super) async fn run(bin: &Path, args: &Args) -> anyhow::Result<Section> {
    if args.rounds == 0 || args.mib == 0 {
        bail!("give at least one round and one MiB");
    }
    let size = args.mib << 20;
    let mut options = Options::numbered(10);
    options.env = vec![
        ("DEGROUP_BLOBS__PER_PEER_RATE".into(), "16GiB".into()),
        ("DEGROUP_BLOBS__QUOTA".into(), "64GiB".into()),
    ];
    eprintln!("starting a 10-node testnet …");
    let cluster = Cluster::start_with(bin, fresh_root(), &options).await?;
    cluster.wait_converged(Duration::from_secs(120)).await?;
    let publisher = &cluster.nodes[0];
    let fetcher = &cluster.nodes[9];
    let mut fetch_rates: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut tcp_rates = Vec::new();
    let mut sendme_rates = Vec::new();
    let mut sendme_note = None;
    let mut seed = 1u64;
    for round in 0..args.rounds {
        for providers in 1..=3usize {
            seed += 1;
            let name = format!("blob-{round}-{providers}");
            let wasm = cluster.root.join(format!("{name}.wasm"));
            // Room for the manifest: the package file is just under `size`.
            std::fs::write(&wasm, filler_component(size - 64 * 1024, seed))?;
            let pkg = cluster.root.join(format!("{name}.dgp"));
            let (w, p) = (wasm.display().to_string(), pkg.display().to_string());
            publisher
                .cli(
                    bin,
                    &[
                        "plugin",
                        "pack",
                        &w,
                        "--name",
                        &name,
                        "--version",
                        "1.0.0",
                        "--out",
                        &p,
                    ],
                )
                .await?;
            publisher.cli(bin, &["plugin", "publish", &p]).await?;
            let reference = format!("{}/{name}@1.0.0", publisher_key(publisher, bin).await?);
            // Mirrors 1 and 2 fetch it too, for two and three providers.
            for mirror in cluster.nodes.iter().skip(1).take(providers - 1) {
                wait_known(mirror, &reference).await?;
                let _: FetchView = mirror
                    .post(
                        "/v1/packages/fetch",
                        &FetchBody {
                            reference: reference.clone(),
                            from: Vec::new(),
                        },
                    )
                    .await?;
            }
            wait_known(fetcher, &reference).await?;
            // Let the provider records settle.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t0 = Instant::now();
            let f: FetchView = fetcher
                .post(
                    "/v1/packages/fetch",
                    &FetchBody {
                        reference: reference.clone(),
                        from: Vec::new(),
                    },
                )
                .await?;
            let secs = t0.elapsed().as_secs_f64();
            let rate = f.bytes_moved as f64 / (1 << 20) as f64 / secs;
            eprintln!(
                "{providers} provider(s): {rate:.0} MiB/s from {} ({} MB in {secs:.2} s)",
                f.providers.len(),
                f.bytes_moved / 1_000_000
            );
            fetch_rates[providers - 1].push(rate);
            let tcp = tcp_copy(&cluster.root, std::fs::metadata(&pkg)?.len() as usize).await?;
            eprintln!("plain TCP copy: {tcp:.0} MiB/s");
            tcp_rates.push(tcp);
        }
        match sendme(&cluster.root, size).await {
            Ok(r) => sendme_rates.push(r),
            Err(e) => sendme_note = Some(e),
        }
    }

    // Deploy by name of an uncached 1 MiB package: node 0 publishes versions of one padded
    // component (their packages differ, so no host holds them; the component is the same,
    // so the host's compile cache is warm after the first).
    let host = &cluster.nodes[1];
    let tenant = &cluster.nodes[8];
    host.cli(
        bin,
        &[
            "capacity", "set", "--cpu", "64", "--mem", "64GiB", "--disk", "64GiB", "--force",
        ],
    )
    .await?;
    let counter = crate::plugins::component("counter", None).await?;
    let component = padded(&std::fs::read(&counter)?, 1 << 20);
    let wasm = cluster.root.join("deploy-1mib.wasm");
    std::fs::write(&wasm, &component)?;
    let key = publisher_key(publisher, bin).await?;
    let mut refs = Vec::new();
    for i in 0..=args.deploys {
        let pkg = cluster.root.join(format!("deploy-{i}.dgp"));
        let (w, p) = (wasm.display().to_string(), pkg.display().to_string());
        let version = format!("1.0.{i}");
        publisher
            .cli(
                bin,
                &[
                    "plugin",
                    "pack",
                    &w,
                    "--name",
                    "bench-app",
                    "--version",
                    &version,
                    "--out",
                    &p,
                ],
            )
            .await?;
        publisher.cli(bin, &["plugin", "publish", &p]).await?;
        refs.push(format!("{key}/bench-app@{version}"));
    }
    for r in &refs {
        wait_known(tenant, r).await?;
    }
    let lease_body = CreateBody {
        host: host.peer_id.clone(),
        cpu_millis: 100,
        mem_bytes: 64 << 20,
        disk_bytes: 16 << 20,
        gpus: 0,
        duration_ms: 3_600_000,
        max_hourly_micros: None,
        idempotency_key: None,
    };
    let mut first = None;
    let mut lat = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let l: LeaseView = tenant.post("/v1/leases", &lease_body).await?;
        let t0 = Instant::now();
        let v: View = tenant
            .cli_json(bin, &["deploy", "--lease", &l.id, r])
            .await?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if v.state != State::Running {
            bail!("deploy of {r} answered {}", v.state);
        }
        if i == 0 {
            first = Some(ms);
        } else {
            lat.push(ms);
        }
        let _: View = tenant
            .post(&format!("/v1/deployments/{}/stop", v.id), &())
            .await?;
        let _: LeaseView = tenant
            .post(&format!("/v1/leases/{}/release", l.id), &())
            .await?;
    }
    for problem in cluster.stop().await {
        eprintln!("warning: {problem}");
    }
    lat.sort_by(f64::total_cmp);
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        quantile(&s, 0.5)
    };
    let tcp = median(&tcp_rates);
    let one = median(&fetch_rates[0]);
    let mut table =
        String::from("| source | MiB/s (median) | vs plain TCP | vs sendme |\n|---|---|---|---|\n");
    let sm = (!sendme_rates.is_empty()).then(|| median(&sendme_rates));
    for (i, rates) in fetch_rates.iter().enumerate() {
        let r = median(rates);
        table.push_str(&format!(
            "| degroup fetch, {} provider{} | **{r:.0}** | {:.2}× | {} |\n",
            i + 1,
            if i == 0 { "" } else { "s" },
            r / tcp,
            sm.map_or_else(|| "–".into(), |s| format!("{:.2}×", r / s)),
        ));
    }
    table.push_str(&format!(
        "| plain TCP copy (anchor) | {tcp:.0} | 1.00× | |\n"
    ));
    match sm {
        Some(s) => table.push_str(&format!(
            "| sendme (anchor) | {s:.0} | {:.2}× | 1.00× |\n",
            s / tcp
        )),
        None => table.push_str(&format!(
            "| sendme (anchor) | not run: {} | | |\n",
            sendme_note.unwrap_or_default()
        )),
    }
    let p50 = quantile(&lat, 0.5);
    let body = format!(
        "A 10-node testnet of `degroup node` processes on 127.0.0.1. Node 0 publishes a \
         {mib} MiB package (filler behind a component header) per provider count; nodes 1 \
         and 2 mirror it as needed; node 9 fetches it with `POST /v1/packages/fetch` (what \
         `degroup plugin fetch` does): providers from Kademlia, 1 MiB ranges of 16 KiB chunk \
         groups pulled in parallel, every group verified (bao-tree) before it is written, the \
         file fsynced. The plain TCP copy moves the same number of bytes over one loopback \
         connection into a file and fsyncs it, in the same run, after each fetch. {rounds} \
         round(s).\n\n{table}\n\
         Targets: one provider ≥ 0.5× the plain TCP copy ({ratio:.2}×), and ≥ 1× sendme.\n\n\
         Deploy by name of an uncached 1 MiB package (the `counter` component padded with a \
         custom section; each deploy a new version, so the host holds no copy and fetches it; \
         the component is the same, so only the first compiles), `degroup deploy --lease ID \
         PUBLISHER/bench-app@1.0.N` timed from the CLI call to `running`:\n\n\
         | | p50 | p90 | max |\n|---|---|---|---|\n\
         | first (compiles) | {first:.1} ms | | |\n\
         | {n} deploys | **{p50:.1} ms** | {p90:.1} ms | {max:.1} ms |\n\n\
         Target p50 ≤ 50 ms ({dratio:.2}×).\n",
        mib = args.mib,
        rounds = args.rounds,
        ratio = one / tcp,
        first = first.unwrap_or(f64::NAN),
        n = lat.len(),
        p90 = quantile(&lat, 0.9),
        max = quantile(&lat, 1.0),
        dratio = p50 / 50.0,
    );
    Ok(Section {
        name: "fetch",
        title: "Package fetch and deploy by name".to_owned(),
        command: format!(
            "./target/release/degroup-testnet bench fetch --mib {} --rounds {} --deploys {}",
            args.mib, args.rounds, args.deploys
        ),
        body,
        plots: Vec::new(),
    })
}

/// The hex public key of a node.
async fn publisher_key(node: &crate::cluster::Node, bin: &Path) -> anyhow::Result<String> {
    let v: serde_json::Value = node.cli_json(bin, &["key", "show"]).await?;
    v["public_key"]
        .as_str()
        .map(str::to_owned)
        .context("`key show` printed no public_key")
}

/// Waits until a node's catalogue resolves `reference`.
async fn wait_known(node: &crate::cluster::Node, reference: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let path = format!("/v1/packages/info?ref={}", urlencode(reference));
    loop {
        if node.get::<serde_json::Value>(&path).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{}: {reference} not in its catalogue after 30 s", node.name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
