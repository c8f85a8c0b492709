//! What this node offers: detected hardware, overridden by the `[capacity]` config table, then
//! by `degroup capacity set` (stored in sled). Each layer only sets what it names.
//!
//! Resources may be restricted below what was detected; offering more than the hardware has
//! (overcommit) needs `--force`. Everything is validated here, with errors that say what a good
//! value looks like.

use serde::{Deserialize, Serialize};

use super::country::normalize_country;
use super::inventory::Detected;
use super::units::{parse_count, parse_price_eur, parse_size};
use crate::resources::{Gpu, Inventory, Prices};

/// Longest free-text field (region, operator, certification), in bytes.
pub(crate) const MAX_TEXT: usize = 128;
/// Most certifications per host.
pub(crate) const MAX_CERTS: usize = 32;
/// Most GPUs per host.
pub(crate) const MAX_GPUS: usize = 64;

/// Operator settings, in numbers. `None` means "not set at this layer".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfferSettings {
    pub cpu_millis: Option<u64>,
    pub mem_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
    pub gpus: Option<Vec<Gpu>>,
    pub bandwidth_bps: Option<u64>,
    pub country: Option<String>,
    pub region: Option<String>,
    pub operator: Option<String>,
    pub certs: Option<Vec<String>>,
    pub price_cpu: Option<u64>,
    pub price_mem: Option<u64>,
    pub price_disk: Option<u64>,
    pub price_gpu: Option<u64>,
}

/// The `[capacity]` table of `config.toml`, as a user writes it (units in strings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacityConfig {
    /// Cores offered.
    pub cpu: Option<f64>,
    /// e.g. "32GiB".
    pub mem: Option<String>,
    /// e.g. "1TiB".
    pub disk: Option<String>,
    /// e.g. ["H100:80GiB", "2xL4:24GiB"].
    pub gpus: Option<Vec<String>>,
    /// Bits per second, e.g. "10G".
    pub bandwidth: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
    pub operator: Option<String>,
    pub certs: Option<Vec<String>>,
    /// EUR per unit-hour.
    pub prices: PriceConfig,
    /// Lifetime of an advert, in seconds; it is refreshed at a third of that.
    pub advert_ttl_s: u64,
    /// Changes within this window are published as one advert, in milliseconds.
    pub publish_debounce_ms: u64,
}

/// `[capacity.prices]`: EUR per core-hour, GiB-hour of memory and disk, GPU-hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceConfig {
    pub cpu: Option<f64>,
    pub mem: Option<f64>,
    pub disk: Option<f64>,
    pub gpu: Option<f64>,
}

/// Default advert lifetime (10 minutes).
pub(crate) const DEFAULT_TTL_S: u64 = 600;
/// Default publish debounce.
pub(crate) const DEFAULT_DEBOUNCE_MS: u64 = 10;

impl CapacityConfig {
    /// Converts the table into settings, naming the key of any bad value.
    pub fn to_settings(&self) -> Result<OfferSettings, String> {
        let key = |k: &str, e: &dyn std::fmt::Display| format!("capacity.{k}: {e}");
        let eur = |k: &str, v: Option<f64>| -> Result<Option<u64>, String> {
            v.map(|p| parse_price_eur(&format!("{p}")).map_err(|e| key(k, &e)))
                .transpose()
        };
        let settings = OfferSettings {
            cpu_millis: self
                .cpu
                .map(|c| cores_to_millis(c).map_err(|e| key("cpu", &e)))
                .transpose()?,
            mem_bytes: self
                .mem
                .as_deref()
                .map(|m| parse_size(m).map_err(|e| key("mem", &e)))
                .transpose()?,
            disk_bytes: self
                .disk
                .as_deref()
                .map(|d| parse_size(d).map_err(|e| key("disk", &e)))
                .transpose()?,
            gpus: self
                .gpus
                .as_ref()
                .map(|g| parse_gpus(g).map_err(|e| key("gpus", &e)))
                .transpose()?,
            bandwidth_bps: self
                .bandwidth
                .as_deref()
                .map(|b| parse_bps(b).map_err(|e| key("bandwidth", &e)))
                .transpose()?,
            country: self.country.clone(),
            region: self.region.clone(),
            operator: self.operator.clone(),
            certs: self.certs.clone(),
            price_cpu: eur("prices.cpu", self.prices.cpu)?,
            price_mem: eur("prices.mem", self.prices.mem)?,
            price_disk: eur("prices.disk", self.prices.disk)?,
            price_gpu: eur("prices.gpu", self.prices.gpu)?,
        };
        settings.validate_fields()?;
        Ok(settings)
    }

    /// Advert lifetime in ms (default when unset or zero).
    pub fn ttl_ms(&self) -> u64 {
        let s = if self.advert_ttl_s == 0 {
            DEFAULT_TTL_S
        } else {
            self.advert_ttl_s
        };
        s.min(3600) * 1000
    }

    /// Debounce window in ms (default when unset).
    pub fn debounce_ms(&self) -> u64 {
        if self.publish_debounce_ms == 0 {
            DEFAULT_DEBOUNCE_MS
        } else {
            self.publish_debounce_ms.min(50)
        }
    }
}

/// Cores (possibly fractional) to millicores.
pub(crate) fn cores_to_millis(cores: f64) -> Result<u64, String> {
    if !cores.is_finite() || !(0.0..=1_000_000.0).contains(&cores) {
        return Err(format!(
            "{cores} is not a number of cores between 0 and 1000000"
        ));
    }
    Ok((cores * 1000.0).round() as u64)
}

/// Bandwidth such as `10G` (bits per second).
pub(crate) fn parse_bps(s: &str) -> Result<u64, String> {
    let v = parse_count(s).map_err(|e| e.to_string())?;
    if !v.is_finite() || !(0.0..=1e15).contains(&v) {
        return Err(format!("{s} is not a bandwidth such as 10G"));
    }
    Ok(v.round() as u64)
}

/// GPU specs `MODEL:MEM` with an optional `Nx` count prefix, e.g. `2xH100:80GiB`.
pub(crate) fn parse_gpus(specs: &[String]) -> Result<Vec<Gpu>, String> {
    let mut gpus = Vec::new();
    for spec in specs {
        let (count, rest) = match spec.split_once('x') {
            Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                (n.parse::<usize>().map_err(|e| e.to_string())?, rest)
            }
            _ => (1, spec.as_str()),
        };
        let (model, mem) = rest.rsplit_once(':').ok_or_else(|| {
            format!("GPU `{spec}` must be MODEL:MEMORY, e.g. H100:80GiB or 2xL4:24GiB")
        })?;
        let mem_bytes = parse_size(mem).map_err(|e| format!("GPU `{spec}`: {e}"))?;
        if model.trim().is_empty() {
            return Err(format!("GPU `{spec}` has no model name"));
        }
        if gpus.len() + count > MAX_GPUS {
            return Err(format!("at most {MAX_GPUS} GPUs"));
        }
        for _ in 0..count {
            gpus.push(Gpu {
                model: model.trim().to_owned(),
                mem_bytes,
            });
        }
    }
    Ok(gpus)
}

impl OfferSettings {
    /// `top` wins wherever it sets a value.
    pub fn overlay(&self, top: &OfferSettings) -> OfferSettings {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            b.clone().or_else(|| a.clone())
        }
        OfferSettings {
            cpu_millis: pick(&self.cpu_millis, &top.cpu_millis),
            mem_bytes: pick(&self.mem_bytes, &top.mem_bytes),
            disk_bytes: pick(&self.disk_bytes, &top.disk_bytes),
            gpus: pick(&self.gpus, &top.gpus),
            bandwidth_bps: pick(&self.bandwidth_bps, &top.bandwidth_bps),
            country: pick(&self.country, &top.country),
            region: pick(&self.region, &top.region),
            operator: pick(&self.operator, &top.operator),
            certs: pick(&self.certs, &top.certs),
            price_cpu: pick(&self.price_cpu, &top.price_cpu),
            price_mem: pick(&self.price_mem, &top.price_mem),
            price_disk: pick(&self.price_disk, &top.price_disk),
            price_gpu: pick(&self.price_gpu, &top.price_gpu),
        }
    }

    /// Checks text fields, counts and the country code (normalising it to upper case).
    pub fn validate_fields(&self) -> Result<(), String> {
        if let Some(c) = self.country.as_deref().filter(|c| !c.is_empty()) {
            normalize_country(c)?;
        }
        for (name, v) in [("region", &self.region), ("operator", &self.operator)] {
            if v.as_ref().is_some_and(|t| t.len() > MAX_TEXT) {
                return Err(format!("{name} is longer than {MAX_TEXT} bytes"));
            }
        }
        if let Some(certs) = &self.certs {
            if certs.len() > MAX_CERTS {
                return Err(format!("at most {MAX_CERTS} certifications"));
            }
            if let Some(c) = certs
                .iter()
                .find(|c| c.trim().is_empty() || c.len() > MAX_TEXT)
            {
                return Err(format!("certification `{c}` must be 1 to {MAX_TEXT} bytes"));
            }
        }
        if self.gpus.as_ref().is_some_and(|g| g.len() > MAX_GPUS) {
            return Err(format!("at most {MAX_GPUS} GPUs"));
        }
        Ok(())
    }

    /// Refuses to offer more than the hardware has, unless `force`.
    pub fn check_against(&self, detected: &Detected, force: bool) -> Result<(), String> {
        if force {
            return Ok(());
        }
        let over = |what: &str, asked: String, have: String| {
            Err(format!(
                "cannot offer {asked} of {what}: this host has {have}; offer less, or pass --force to overcommit"
            ))
        };
        if let Some(c) = self.cpu_millis.filter(|c| *c > detected.cpu_millis) {
            return over(
                "CPU",
                format!("{} cores", c as f64 / 1000.0),
                format!("{} cores", detected.cpu_millis as f64 / 1000.0),
            );
        }
        if let Some(m) = self.mem_bytes.filter(|m| *m > detected.mem_bytes) {
            return over(
                "memory",
                super::units::format_size(m),
                super::units::format_size(detected.mem_bytes),
            );
        }
        if let Some(d) = self.disk_bytes.filter(|d| *d > detected.disk_total_bytes) {
            return over(
                "disk",
                super::units::format_size(d),
                super::units::format_size(detected.disk_total_bytes),
            );
        }
        if let Some(g) = self.gpus.as_ref().filter(|g| g.len() > detected.gpus.len()) {
            return over(
                "GPU",
                format!("{} GPUs", g.len()),
                format!("{}", detected.gpus.len()),
            );
        }
        Ok(())
    }

    /// The offer once applied to the detected hardware.
    pub fn effective(&self, detected: &Detected) -> Offered {
        Offered {
            total: Inventory {
                cpu_millis: self.cpu_millis.unwrap_or(detected.cpu_millis),
                mem_bytes: self.mem_bytes.unwrap_or(detected.mem_bytes),
                disk_bytes: self.disk_bytes.unwrap_or(detected.disk_free_bytes),
                gpus: self.gpus.clone().unwrap_or_else(|| {
                    detected
                        .gpus
                        .iter()
                        .map(|g| Gpu {
                            model: g.model.clone(),
                            mem_bytes: g.mem_bytes,
                        })
                        .collect()
                }),
            },
            bandwidth_bps: self.bandwidth_bps.unwrap_or(0),
            country: self
                .country
                .as_deref()
                .and_then(|c| normalize_country(c).ok())
                .unwrap_or_default(),
            region: self.region.clone().unwrap_or_default(),
            operator: self.operator.clone().unwrap_or_default(),
            certs: self.certs.clone().unwrap_or_default(),
            prices: Prices {
                cpu: self.price_cpu.unwrap_or(0),
                mem: self.price_mem.unwrap_or(0),
                disk: self.price_disk.unwrap_or(0),
                gpu: self.price_gpu.unwrap_or(0),
            },
        }
    }
}

/// The effective offer: what goes into the advert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offered {
    pub total: Inventory,
    pub bandwidth_bps: u64,
    pub country: String,
    pub region: String,
    pub operator: String,
    pub certs: Vec<String>,
    pub prices: Prices,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected() -> Detected {
        Detected {
            cpu_millis: 16_000,
            cpu_model: None,
            mem_bytes: 64 << 30,
            disk_total_bytes: 2 << 40,
            disk_free_bytes: 1 << 40,
            gpus: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn layers_and_limits() {
        let config = OfferSettings {
            cpu_millis: Some(8000),
            country: Some("fr".into()),
            ..Default::default()
        };
        let set = OfferSettings {
            cpu_millis: Some(4000),
            ..Default::default()
        };
        let eff = config.overlay(&set).effective(&detected());
        assert_eq!(eff.total.cpu_millis, 4000);
        assert_eq!(eff.country, "FR");
        assert_eq!(eff.total.mem_bytes, 64 << 30, "unset means detected");
        let greedy = OfferSettings {
            cpu_millis: Some(32_000),
            ..Default::default()
        };
        assert!(greedy.check_against(&detected(), false).is_err());
        assert!(greedy.check_against(&detected(), true).is_ok());
    }

    #[test]
    fn gpu_specs() {
        let g = parse_gpus(&["2xH100:80GiB".into(), "L4:24GiB".into()]);
        assert_eq!(g.as_ref().map(Vec::len), Ok(3));
        assert!(parse_gpus(&["H100".into()]).is_err());
        assert!(parse_gpus(&["1000xH100:80GiB".into()]).is_err());
    }
}
