//! `degroup lease create|list|show|renew|release|terminate|export|verify|receipts`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::display::escape;
use super::{ApiFailure, UsageError};
use crate::api::lease::{CreateBody, RenewBody, TerminateBody};
use crate::capacity::offer::cores_to_millis;
use crate::capacity::units::{
    format_duration, format_size, parse_duration, parse_price_eur, parse_size,
};
use crate::error::ErrorCode;
use crate::lease::Role;
use crate::lease::contract::{DocError, verify_doc, verify_end};
use crate::lease::service::ReceiptList;
use crate::lease::view::{
    LeaseExport, LeaseList, LeaseState, LeaseView, MAX_EXPORT_FILE, VerifyReport, reason_text,
};

#[derive(Debug, clap::Subcommand)]
pub(super) enum LeaseCommand {
    /// Lease a slice of a host: negotiates, countersigns and prints the signed lease
    Create(CreateArgs),
    /// Leases of this node, as host and as tenant
    List {
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// One lease (id or its first hex digits); `verified` is checked on the stored bytes
    Show {
        id: String,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Extend a lease past its current end (tenant)
    Renew {
        id: String,
        /// How much longer, e.g. 12h
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Highest price of the slice per hour, in EUR
        #[arg(long, value_name = "EUR")]
        max_price: Option<String>,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// End a lease now (tenant)
    Release {
        id: String,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// End a lease this node hosts, with a reason the tenant is told (host)
    Terminate {
        id: String,
        #[arg(long)]
        reason: String,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Write the signed lease (both signatures) to stdout or a file, for `lease verify`
    Export {
        id: String,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check an exported lease's signatures offline; no node needed
    Verify {
        file: PathBuf,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// The host's signed usage receipts of a lease
    Receipts {
        id: String,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `lease create`.
#[derive(Debug, clap::Args)]
pub(super) struct CreateArgs {
    /// The host's peer id (from `degroup find`)
    #[arg(long)]
    host: String,
    /// Cores, e.g. 4 or 0.5
    #[arg(long)]
    cpu: Option<f64>,
    /// Memory, e.g. 8GiB
    #[arg(long)]
    mem: Option<String>,
    /// Disk, e.g. 20GiB
    #[arg(long)]
    disk: Option<String>,
    /// Number of GPUs
    #[arg(long)]
    gpu: Option<u32>,
    /// Duration, e.g. 24h
    #[arg(long = "for", value_name = "DURATION")]
    duration: String,
    /// Highest price of the slice per hour, in EUR
    #[arg(long, value_name = "EUR")]
    max_price: Option<String>,
    /// 32 hex digits; retrying with the same key never makes a second lease
    #[arg(long, value_name = "HEX")]
    idempotency_key: Option<String>,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    UsageError(e.to_string()).into()
}

fn duration(flag: &str, text: &str) -> anyhow::Result<u64> {
    match parse_duration(text) {
        Ok(0) => Err(usage(format!(
            "{flag}: the duration must be more than zero"
        ))),
        Ok(d) => Ok(d),
        Err(e) => Err(usage(format!("{flag}: {e}"))),
    }
}

fn max_price(text: Option<&str>) -> anyhow::Result<Option<u64>> {
    text.map(|p| parse_price_eur(p).map_err(|e| usage(format!("--max-price: {e}"))))
        .transpose()
}

impl CreateArgs {
    fn body(&self) -> anyhow::Result<CreateBody> {
        let size = |flag: &str, v: &Option<String>| -> anyhow::Result<u64> {
            v.as_deref()
                .map(|m| parse_size(m).map_err(|e| usage(format!("{flag}: {e}"))))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let body = CreateBody {
            host: self.host.clone(),
            cpu_millis: self
                .cpu
                .map(|c| cores_to_millis(c).map_err(|e| usage(format!("--cpu: {e}"))))
                .transpose()?
                .unwrap_or(0),
            mem_bytes: size("--mem", &self.mem)?,
            disk_bytes: size("--disk", &self.disk)?,
            gpus: self.gpu.unwrap_or(0),
            duration_ms: duration("--for", &self.duration)?,
            max_hourly_micros: max_price(self.max_price.as_deref())?,
            idempotency_key: Some(match &self.idempotency_key {
                Some(k) => k.clone(),
                None => {
                    let mut k = [0u8; 16];
                    getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                    hex::encode(k)
                }
            }),
        };
        if body.cpu_millis == 0 && body.mem_bytes == 0 && body.disk_bytes == 0 && body.gpus == 0 {
            return Err(usage(
                "nothing to lease; give at least one of --cpu, --mem, --disk, --gpu",
            ));
        }
        if self.host.parse::<libp2p::PeerId>().is_err() {
            return Err(usage(format!(
                "--host {:?} is not a peer id; copy one from `degroup find`",
                self.host
            )));
        }
        if let Some(k) = &self.idempotency_key
            && (k.len() != 32 || !k.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(usage("--idempotency-key must be 32 hex digits"));
        }
        Ok(body)
    }
}

/// A failed `lease create`, with advice chosen by the error's code: where the outcome is
/// unknown, how to retry without risking a second lease; otherwise what usually helps.
fn create_hint(e: anyhow::Error, key: &str) -> anyhow::Error {
    let hint = match ApiFailure::code_of(&e) {
        // The host may have committed the lease before the failure: the same key gets that
        // lease back instead of a second one.
        Some(ErrorCode::OutcomeUnknown) => {
            format!("to retry without risking a second lease, add --idempotency-key {key}")
        }
        Some(ErrorCode::CapacityExhausted) => {
            "ask for less (--cpu, --mem, --disk, --gpu), or pick another host with `degroup find`"
                .to_owned()
        }
        Some(ErrorCode::PriceTooHigh) => "raise --max-price, or ask for less".to_owned(),
        _ => return e,
    };
    ApiFailure {
        code: ApiFailure::code_of(&e),
        message: format!("{e:#}; {hint}"),
    }
    .into()
}

fn path_id(id: &str) -> anyhow::Result<String> {
    let t = id.trim();
    if t.len() < 4 || t.len() > 32 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(usage(format!(
            "`{id}` is not a lease id; give the id (or its first 4+ hex digits) from `degroup lease list`"
        )));
    }
    Ok(t.to_ascii_lowercase())
}

pub(super) async fn run(dir: &Path, command: LeaseCommand) -> anyhow::Result<()> {
    if let LeaseCommand::Verify { file, json } = &command {
        return verify(file, *json);
    }
    // Validate arguments before looking for a node.
    let create_body = match &command {
        LeaseCommand::Create(a) => Some(a.body()?),
        _ => None,
    };
    let client = super::ApiClient::from_data_dir(dir)?;
    match command {
        LeaseCommand::Create(a) => {
            let body = create_body.context("arguments")?;
            let key = body.idempotency_key.clone().unwrap_or_default();
            let view: LeaseView = client
                .post("/v1/leases", &body)
                .await
                .map_err(|e| create_hint(e, &key))?;
            print_one(&view, a.json)
        }
        LeaseCommand::List { json } => {
            let list: LeaseList = client.get("/v1/leases").await?;
            if json {
                return super::print_json(&list);
            }
            print_list(&list);
            Ok(())
        }
        LeaseCommand::Show { id, json } => {
            let view: LeaseView = client.get(&format!("/v1/leases/{}", path_id(&id)?)).await?;
            print_one(&view, json)
        }
        LeaseCommand::Renew {
            id,
            duration: d,
            max_price: p,
            json,
        } => {
            let body = RenewBody {
                duration_ms: duration("--for", &d)?,
                max_hourly_micros: max_price(p.as_deref())?,
            };
            let view: LeaseView = client
                .post(&format!("/v1/leases/{}/renew", path_id(&id)?), &body)
                .await?;
            print_one(&view, json)
        }
        LeaseCommand::Release { id, json } => {
            let view: LeaseView = client
                .post(&format!("/v1/leases/{}/release", path_id(&id)?), &())
                .await?;
            print_one(&view, json)
        }
        LeaseCommand::Terminate { id, reason, json } => {
            let view: LeaseView = client
                .post(
                    &format!("/v1/leases/{}/terminate", path_id(&id)?),
                    &TerminateBody { reason },
                )
                .await?;
            print_one(&view, json)
        }
        LeaseCommand::Export { id, out } => {
            let export: LeaseExport = client
                .get(&format!("/v1/leases/{}/export", path_id(&id)?))
                .await?;
            let text = serde_json::to_string_pretty(&export)? + "\n";
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display())),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        LeaseCommand::Receipts { id, json } => {
            let list: ReceiptList = client
                .get(&format!("/v1/leases/{}/receipts", path_id(&id)?))
                .await?;
            if json {
                return super::print_json(&list);
            }
            print_receipts(&list);
            Ok(())
        }
        LeaseCommand::Verify { .. } => Ok(()),
    }
}

fn verify(file: &Path, json: bool) -> anyhow::Result<()> {
    use std::io::Read as _;
    let f = std::fs::File::open(file).with_context(|| {
        format!(
            "cannot read {}; give a file written by `degroup lease export`",
            file.display()
        )
    })?;
    let mut text = String::new();
    f.take(MAX_EXPORT_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("{} is not a text file", file.display()))?;
    if text.len() as u64 > MAX_EXPORT_FILE {
        bail!(
            "{} is larger than an exported lease can be ({MAX_EXPORT_FILE} bytes)",
            file.display()
        );
    }
    let export: LeaseExport = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a lease export; write one with `degroup lease export ID --out FILE`",
            file.display()
        )
    })?;
    let doc = export
        .doc()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let verified = verify_doc(&doc).map_err(|e: DocError| {
        anyhow::anyhow!("lease in {} does NOT verify: {e}", file.display())
    })?;
    let ended = match &export.end_notice {
        None => None,
        Some(h) => {
            let bytes = hex::decode(h).map_err(|_| anyhow::anyhow!("`end_notice` is not hex"))?;
            let end = verify_end(&bytes, &verified.contract).map_err(|e| {
                anyhow::anyhow!("the end notice in {} does NOT verify: {e}", file.display())
            })?;
            Some(reason_text(&end.reason).0.to_owned())
        }
    };
    let report = VerifyReport::of(&verified, ended);
    if json {
        return super::print_json(&report);
    }
    println!(
        "verified: lease {} v{} signed by host {} and tenant {}",
        escape(&report.id),
        report.version,
        escape(&report.host),
        escape(&report.tenant)
    );
    println!(
        "slice     cpu {} cores  mem {}  disk {}  gpus {}",
        report.cpu_millis as f64 / 1000.0,
        format_size(report.mem_bytes),
        format_size(report.disk_bytes),
        report.gpus
    );
    println!(
        "term      {} from {} ms  price {} EUR/h, {} EUR in all",
        format_duration(report.ends_at_ms.saturating_sub(report.starts_at_ms)),
        report.starts_at_ms,
        report.hourly_price_eur,
        report.total_price_eur
    );
    if let Some(e) = report.ended {
        println!("ended     {} (signed by the host)", escape(&e));
    }
    Ok(())
}

fn print_one(v: &LeaseView, json: bool) -> anyhow::Result<()> {
    if json {
        return super::print_json(v);
    }
    // The end reason is the peer's text; the rest is checked or the peer's too.
    println!("lease     {}", escape(&v.id));
    println!("role      {} (v{})", v.role, v.version);
    println!("host      {}", escape(&v.host));
    println!("tenant    {}", escape(&v.tenant));
    println!(
        "state     {}{}",
        v.state,
        v.end_reason
            .as_deref()
            .map(|r| format!(": {}", escape(r)))
            .unwrap_or_default()
    );
    println!(
        "slice     cpu {} cores  mem {}  disk {}  gpus {}",
        v.cpu_millis as f64 / 1000.0,
        format_size(v.mem_bytes),
        format_size(v.disk_bytes),
        v.gpus
    );
    let now = crate::resources::now_ms();
    let left = match v.ended_at_ms {
        None => format!("{} left", format_duration(v.ends_at_ms.saturating_sub(now))),
        Some(at) => format!(
            "ended after {}",
            format_duration(at.saturating_sub(v.starts_at_ms))
        ),
    };
    println!(
        "term      {} ({left})",
        format_duration(v.ends_at_ms.saturating_sub(v.starts_at_ms))
    );
    println!(
        "price     {} EUR/h, {} EUR in all",
        v.hourly_price_eur, v.total_price_eur
    );
    println!(
        "verified  {}",
        if v.verified == Some(true) {
            "yes, both signatures"
        } else {
            "NO"
        }
    );
    Ok(())
}

fn print_list(l: &LeaseList) {
    if l.leases.is_empty() {
        println!("no leases");
    } else {
        println!(
            "{:<32} {:<6} {:<10} {:>6} {:>9} {:>9} {:>4} {:>10}  PEER",
            "ID", "ROLE", "STATE", "CPU", "MEM", "DISK", "GPU", "LEFT"
        );
        let now = crate::resources::now_ms();
        for v in &l.leases {
            let peer = if v.role == Role::Host {
                &v.tenant
            } else {
                &v.host
            };
            let left = if v.state == LeaseState::Active {
                format_duration(v.ends_at_ms.saturating_sub(now))
            } else {
                "-".into()
            };
            println!(
                "{:<32} {:<6} {:<10} {:>6} {:>9} {:>9} {:>4} {:>10}  {}",
                escape(&v.id),
                v.role,
                v.state,
                v.cpu_millis as f64 / 1000.0,
                format_size(v.mem_bytes),
                format_size(v.disk_bytes),
                v.gpus,
                left,
                escape(peer)
            );
        }
    }
    let h = &l.host;
    println!();
    println!(
        "as host: leased cpu {} / {} cores, mem {} / {}, disk {} / {}; {} offer(s) held",
        h.leased.cpu_millis as f64 / 1000.0,
        h.offered.cpu_millis as f64 / 1000.0,
        format_size(h.leased.mem_bytes),
        format_size(h.offered.mem_bytes),
        format_size(h.leased.disk_bytes),
        format_size(h.offered.disk_bytes),
        l.offers_held
    );
}

fn print_receipts(l: &ReceiptList) {
    if let Some(w) = &l.warning {
        eprintln!("warning: {}", escape(w));
    }
    if l.receipts.is_empty() {
        println!(
            "no receipts yet for lease {} (one per period, and one when it ends)",
            escape(&l.lease)
        );
        return;
    }
    println!(
        "{:>15} {:>10} {:>12} {:>12} {:>10} {:>10}  VERIFIED",
        "PERIOD START", "WALL", "CPU FUEL", "COMPILE CPU", "PEAK MEM", "STORAGE"
    );
    for r in &l.receipts {
        println!(
            "{:>15} {:>10} {:>12} {:>12} {:>10} {:>10}  {}",
            r.period_start_ms,
            format_duration(r.wall_ms),
            r.cpu_fuel,
            format!("{}ms", r.compile_cpu_ms),
            format_size(r.peak_mem_bytes),
            format_size(r.storage_bytes),
            if r.verified { "yes" } else { "NO" }
        );
    }
}
