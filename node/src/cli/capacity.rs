//! `degroup capacity show|set`.

use std::path::Path;

use crate::api::capacity::CapacityUpdate;
use crate::capacity::CapacityView;
use crate::capacity::offer::{OfferSettings, cores_to_millis, parse_bps, parse_gpus};
use crate::capacity::units::{format_bps, format_eur, format_size, parse_price_eur, parse_size};

use super::UsageError;
use super::display::{escape, escape_join};

#[derive(Debug, clap::Subcommand)]
pub(super) enum CapacityCommand {
    /// What this node detects, what the operator set, and what it offers
    Show {
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Change what this node offers; unnamed fields keep their value
    Set(Box<SetArgs>),
}

/// Fields of `capacity set`.
#[derive(Debug, clap::Args)]
pub(super) struct SetArgs {
    /// Cores offered, e.g. 16 or 0.5
    #[arg(long)]
    cpu: Option<f64>,
    /// Memory offered, e.g. 64GiB
    #[arg(long)]
    mem: Option<String>,
    /// Disk offered, e.g. 2TiB
    #[arg(long)]
    disk: Option<String>,
    /// GPU offered as MODEL:MEMORY, `2xL4:24GiB` for two (repeatable; replaces the list)
    #[arg(long = "gpu", value_name = "SPEC")]
    gpus: Vec<String>,
    /// Offer no GPU
    #[arg(long, conflicts_with = "gpus")]
    no_gpu: bool,
    /// Bandwidth in bits per second, e.g. 10G
    #[arg(long)]
    bandwidth: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. FR
    #[arg(long)]
    country: Option<String>,
    /// Region, e.g. Île-de-France
    #[arg(long)]
    region: Option<String>,
    /// Operator's legal name
    #[arg(long)]
    operator: Option<String>,
    /// Certification, e.g. SecNumCloud (repeatable; replaces the list)
    #[arg(long = "cert", value_name = "NAME")]
    certs: Vec<String>,
    /// Remove all certifications
    #[arg(long, conflicts_with = "certs")]
    no_certs: bool,
    /// Price per unit-hour in EUR: cpu=0.02, mem=0.004 (per GiB), disk=0.0001 (per GiB), gpu=2.5 (repeatable)
    #[arg(long = "price", value_name = "RESOURCE=EUR")]
    prices: Vec<String>,
    /// Allow offering more than the detected hardware
    #[arg(long)]
    force: bool,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    UsageError(e.to_string()).into()
}

impl SetArgs {
    fn to_settings(&self) -> anyhow::Result<OfferSettings> {
        let mut s = OfferSettings {
            cpu_millis: self
                .cpu
                .map(|c| cores_to_millis(c).map_err(|e| usage(format!("--cpu: {e}"))))
                .transpose()?,
            mem_bytes: self
                .mem
                .as_deref()
                .map(|m| parse_size(m).map_err(|e| usage(format!("--mem: {e}"))))
                .transpose()?,
            disk_bytes: self
                .disk
                .as_deref()
                .map(|d| parse_size(d).map_err(|e| usage(format!("--disk: {e}"))))
                .transpose()?,
            bandwidth_bps: self
                .bandwidth
                .as_deref()
                .map(|b| parse_bps(b).map_err(|e| usage(format!("--bandwidth: {e}"))))
                .transpose()?,
            country: self.country.clone(),
            region: self.region.clone(),
            operator: self.operator.clone(),
            ..Default::default()
        };
        if self.no_gpu {
            s.gpus = Some(Vec::new());
        } else if !self.gpus.is_empty() {
            s.gpus = Some(parse_gpus(&self.gpus).map_err(|e| usage(format!("--gpu: {e}")))?);
        }
        if self.no_certs {
            s.certs = Some(Vec::new());
        } else if !self.certs.is_empty() {
            s.certs = Some(self.certs.clone());
        }
        for p in &self.prices {
            let (resource, value) = p.split_once('=').ok_or_else(|| {
                usage(format!("--price {p}: expected RESOURCE=EUR, e.g. cpu=0.02"))
            })?;
            let micros = parse_price_eur(value).map_err(|e| usage(format!("--price {p}: {e}")))?;
            let slot = match resource.trim() {
                "cpu" => &mut s.price_cpu,
                "mem" => &mut s.price_mem,
                "disk" => &mut s.price_disk,
                "gpu" => &mut s.price_gpu,
                other => {
                    return Err(usage(format!(
                        "--price: unknown resource `{other}`; use cpu, mem, disk or gpu"
                    )));
                }
            };
            *slot = Some(micros);
        }
        if s == OfferSettings::default() {
            return Err(usage(
                "nothing to set; give at least one of --cpu, --mem, --disk, --gpu, --country, --cert, --price, … (see --help)",
            ));
        }
        s.validate_fields().map_err(usage)?;
        Ok(s)
    }
}

pub(super) async fn run(dir: &Path, command: CapacityCommand) -> anyhow::Result<()> {
    match command {
        CapacityCommand::Show { json } => {
            let client = super::ApiClient::from_data_dir(dir)?;
            let view: CapacityView = client.get("/v1/capacity").await?;
            if json {
                super::print_json(&view)
            } else {
                print_view(&view);
                Ok(())
            }
        }
        CapacityCommand::Set(args) => {
            let settings = args.to_settings()?;
            let client = super::ApiClient::from_data_dir(dir)?;
            let update = CapacityUpdate {
                settings,
                force: args.force,
            };
            let view: CapacityView = client.put("/v1/capacity", &update).await?;
            if args.json {
                super::print_json(&view)
            } else {
                print_view(&view);
                Ok(())
            }
        }
    }
}

fn cores(millis: u64) -> String {
    let c = millis as f64 / 1000.0;
    if c.fract() == 0.0 {
        format!("{c:.0}")
    } else {
        format!("{c}")
    }
}

fn print_view(v: &CapacityView) {
    let o = &v.offered;
    let d = &v.detected;
    let gpus = |g: &[crate::resources::Gpu]| {
        if g.is_empty() {
            "-".to_owned()
        } else {
            g.iter()
                .map(|g| format!("{}:{}", escape(&g.model), format_size(g.mem_bytes)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    println!(
        "offered    cpu {}  mem {}  disk {}  gpus {}",
        cores(o.total.cpu_millis),
        format_size(o.total.mem_bytes),
        format_size(o.total.disk_bytes),
        gpus(&o.total.gpus)
    );
    let dgpus: Vec<_> = d
        .gpus
        .iter()
        .map(|g| crate::resources::Gpu {
            model: g.model.clone(),
            mem_bytes: g.mem_bytes,
        })
        .collect();
    println!(
        "detected   cpu {}  mem {}  disk {} (free {})  gpus {}",
        cores(d.cpu_millis),
        format_size(d.mem_bytes),
        format_size(d.disk_total_bytes),
        format_size(d.disk_free_bytes),
        gpus(&dgpus)
    );
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            escape(s).into_owned()
        }
    };
    println!(
        "country    {}  region {}  operator {}",
        or_dash(&o.country),
        or_dash(&o.region),
        or_dash(&o.operator)
    );
    println!(
        "certs      {}",
        if o.certs.is_empty() {
            "-".to_owned()
        } else {
            escape_join(&o.certs, ", ")
        }
    );
    println!(
        "bandwidth  {}",
        if o.bandwidth_bps == 0 {
            "-".to_owned()
        } else {
            format_bps(o.bandwidth_bps)
        }
    );
    println!(
        "prices     cpu {} EUR/core-h  mem {} EUR/GiB-h  disk {} EUR/GiB-h  gpu {} EUR/GPU-h",
        format_eur(o.prices.cpu),
        format_eur(o.prices.mem),
        format_eur(o.prices.disk),
        format_eur(o.prices.gpu)
    );
    if let Some(model) = &d.cpu_model {
        println!("cpu model  {}", escape(model));
    }
    for note in &d.notes {
        println!("note       {}", escape(note));
    }
    let now = crate::resources::now_ms();
    match &v.advert {
        Some(a) => println!(
            "advert     seq {}  issued {} ago  expires in {}",
            a.seq,
            crate::capacity::units::format_duration(now.saturating_sub(a.issued_at_ms)),
            crate::capacity::units::format_duration(a.expires_at_ms.saturating_sub(now))
        ),
        None => println!("advert     not published yet"),
    }
}
