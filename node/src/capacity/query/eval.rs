//! Evaluation, explanation and search.

use serde::{Deserialize, Serialize};

use super::{Clause, Failure, Field, Op, Query, Value};
use crate::capacity::advert::Advert;
use crate::capacity::units::{format_bps, format_duration, format_eur, format_size};
use crate::resources::{Gpu, MICROS_PER_EUR};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn cmp_num(actual: f64, op: Op, want: f64) -> bool {
    match op {
        Op::Eq => actual == want,
        Op::Ne => actual != want,
        Op::Lt => actual < want,
        Op::Le => actual <= want,
        Op::Gt => actual > want,
        Op::Ge => actual >= want,
        Op::Like => false,
    }
}

/// Glob over characters: `*` any run, `?` one character.
fn glob(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

fn text_matches(actual: &str, op: Op, lower: &str, is_glob: bool) -> bool {
    let equal = || {
        if actual.is_ascii() && lower.is_ascii() {
            actual.eq_ignore_ascii_case(lower)
        } else {
            actual.to_lowercase() == lower
        }
    };
    match op {
        Op::Eq => equal(),
        Op::Ne => !equal(),
        Op::Like => {
            let a = actual.to_lowercase();
            if is_glob {
                let p: Vec<char> = lower.chars().collect();
                let t: Vec<char> = a.chars().collect();
                glob(&p, &t)
            } else {
                a.contains(lower)
            }
        }
        _ => false,
    }
}

/// For list fields: `=`/`~` hold when some element matches, `!=` when none equals.
fn any_text<'a>(items: impl Iterator<Item = &'a str>, op: Op, lower: &str, is_glob: bool) -> bool {
    let mut items = items;
    match op {
        Op::Ne => !items.any(|i| text_matches(i, Op::Eq, lower, false)),
        _ => items.any(|i| text_matches(i, op, lower, is_glob)),
    }
}

impl Clause {
    fn holds(&self, a: &Advert, now_ms: u64) -> bool {
        match &self.value {
            Value::Num(want) => {
                let want = *want;
                match self.field {
                    Field::GpuMem => match self.op {
                        Op::Ne => !a.free.gpus.iter().any(|g| g.mem_bytes as f64 == want),
                        op => a
                            .free
                            .gpus
                            .iter()
                            .any(|g| cmp_num(g.mem_bytes as f64, op, want)),
                    },
                    f => cmp_num(number(f, a, now_ms), self.op, want),
                }
            }
            Value::Text { lower, glob } => match self.field {
                Field::Cert => any_text(a.certs.iter().map(String::as_str), self.op, lower, *glob),
                Field::GpuModel => any_text(
                    a.free.gpus.iter().map(|g| g.model.as_str()),
                    self.op,
                    lower,
                    *glob,
                ),
                Field::Country => text_matches(&a.country, self.op, lower, *glob),
                Field::Region => text_matches(&a.region, self.op, lower, *glob),
                _ => text_matches(&a.operator, self.op, lower, *glob),
            },
        }
    }

    fn actual(&self, a: &Advert, now_ms: u64) -> String {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                format!("[{}]", v.join(", "))
            }
        };
        let text = |s: &str| {
            if s.is_empty() {
                "unset".to_owned()
            } else {
                s.to_owned()
            }
        };
        match self.field {
            Field::Cpu => format!("{} cores", a.free.cpu_millis as f64 / 1000.0),
            Field::Mem => format_size(a.free.mem_bytes),
            Field::Disk => format_size(a.free.disk_bytes),
            Field::GpuCount => a.free.gpus.len().to_string(),
            Field::GpuModel => list(a.free.gpus.iter().map(|g| g.model.clone()).collect()),
            Field::GpuMem => list(
                a.free
                    .gpus
                    .iter()
                    .map(|g| format_size(g.mem_bytes))
                    .collect(),
            ),
            Field::Country => text(&a.country),
            Field::Region => text(&a.region),
            Field::Operator => text(&a.operator),
            Field::Cert => list(a.certs.clone()),
            Field::PriceCpu => format!("{} EUR/core-h", format_eur(a.prices.cpu)),
            Field::PriceMem => format!("{} EUR/GiB-h", format_eur(a.prices.mem)),
            Field::PriceDisk => format!("{} EUR/GiB-h", format_eur(a.prices.disk)),
            Field::PriceGpu => format!("{} EUR/GPU-h", format_eur(a.prices.gpu)),
            Field::Bandwidth if a.bandwidth_bps == 0 => "unset".to_owned(),
            Field::Bandwidth => format!("{} bit/s", format_bps(a.bandwidth_bps)),
            Field::Age => format_duration(now_ms.saturating_sub(a.issued_at_ms)),
            Field::Ingress => (number(Field::Ingress, a, now_ms) == 1.0).to_string(),
        }
    }
}

/// A numeric field's value on an advert, in the unit its clauses use.
fn number(field: Field, a: &Advert, now_ms: u64) -> f64 {
    match field {
        Field::Cpu => a.free.cpu_millis as f64 / 1000.0,
        Field::Mem => a.free.mem_bytes as f64,
        Field::Disk => a.free.disk_bytes as f64,
        Field::GpuCount => a.free.gpus.len() as f64,
        Field::PriceCpu => a.prices.cpu as f64,
        Field::PriceMem => a.prices.mem as f64,
        Field::PriceDisk => a.prices.disk as f64,
        Field::PriceGpu => a.prices.gpu as f64,
        Field::Bandwidth => a.bandwidth_bps as f64,
        Field::Age => now_ms.saturating_sub(a.issued_at_ms) as f64,
        Field::Ingress => {
            if a.plugin_apis.iter().any(|p| p == super::HTTP_API) {
                1.0
            } else {
                0.0
            }
        }
        _ => f64::NAN,
    }
}

impl Query {
    /// Number of clauses.
    pub fn clauses(&self) -> usize {
        self.clauses.len()
    }

    /// The first clause (in written order) the advert fails, with its actual value; `None`
    /// when it matches.
    pub fn first_failure(&self, advert: &Advert, now_ms: u64) -> Option<Failure> {
        self.clauses
            .iter()
            .find(|c| !c.holds(advert, now_ms))
            .map(|c| Failure {
                clause: c.text.clone(),
                actual: c.actual(advert, now_ms),
            })
    }

    /// Whether the advert satisfies every clause.
    pub fn matches(&self, advert: &Advert, now_ms: u64) -> bool {
        self.clauses.iter().all(|c| c.holds(advert, now_ms))
    }

    /// Price of the smallest slice the query asks for, in micro-euros per hour: Σ price ×
    /// the largest lower bound the query puts on cpu (cores), mem and disk (GiB) and gpu.count;
    /// 1 core + 1 GiB of memory when it bounds none of them.
    pub fn slice_price_micros(&self, advert: &Advert) -> f64 {
        let mut want = [0.0f64; 4];
        for c in &self.clauses {
            let (Value::Num(v), Op::Eq | Op::Ge | Op::Gt) = (&c.value, c.op) else {
                continue;
            };
            let slot = match c.field {
                Field::Cpu => 0,
                Field::Mem => 1,
                Field::Disk => 2,
                Field::GpuCount => 3,
                _ => continue,
            };
            let v = if slot == 1 || slot == 2 { v / GIB } else { *v };
            want[slot] = want[slot].max(v);
        }
        if want.iter().all(|w| *w == 0.0) {
            want[0] = 1.0;
            want[1] = 1.0;
        }
        let p = &advert.prices;
        p.cpu as f64 * want[0]
            + p.mem as f64 * want[1]
            + p.disk as f64 * want[2]
            + p.gpu as f64 * want[3]
    }
}

/// Result of a search (`GET /v1/find`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindResult {
    pub query: String,
    pub hosts_considered: usize,
    pub matches: Vec<HostMatch>,
    /// Every host that does not match, with the first clause it fails (only with explain).
    pub not_matching: Vec<HostMiss>,
}

/// A matching host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostMatch {
    pub host: String,
    /// EUR per hour for the smallest slice the query asks for.
    pub slice_price_eur: f64,
    pub advert: AdvertSummary,
}

/// A host that does not match, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostMiss {
    pub host: String,
    pub clause: String,
    pub actual: String,
    pub country: String,
    pub operator: String,
}

/// Prices in EUR per unit-hour.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriceEur {
    pub cpu: f64,
    pub mem: f64,
    pub disk: f64,
    pub gpu: f64,
}

/// An advert as users read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdvertSummary {
    pub seq: u64,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    pub addrs: Vec<String>,
    pub country: String,
    pub region: String,
    pub operator: String,
    pub certs: Vec<String>,
    /// Free cores.
    pub cpu: f64,
    pub mem_bytes: u64,
    pub disk_bytes: u64,
    pub gpus: Vec<Gpu>,
    pub total_cpu: f64,
    pub total_mem_bytes: u64,
    pub total_disk_bytes: u64,
    pub bandwidth_bps: u64,
    pub price_eur: PriceEur,
}

impl AdvertSummary {
    /// The summary of an advert.
    pub fn of(a: &Advert) -> Self {
        Self {
            seq: a.seq,
            issued_at_ms: a.issued_at_ms,
            expires_at_ms: a.expires_at_ms,
            addrs: a.addrs.clone(),
            country: a.country.clone(),
            region: a.region.clone(),
            operator: a.operator.clone(),
            certs: a.certs.clone(),
            cpu: a.free.cpu_millis as f64 / 1000.0,
            mem_bytes: a.free.mem_bytes,
            disk_bytes: a.free.disk_bytes,
            gpus: a.free.gpus.clone(),
            total_cpu: a.total.cpu_millis as f64 / 1000.0,
            total_mem_bytes: a.total.mem_bytes,
            total_disk_bytes: a.total.disk_bytes,
            bandwidth_bps: a.bandwidth_bps,
            price_eur: PriceEur {
                cpu: a.prices.cpu as f64 / MICROS_PER_EUR,
                mem: a.prices.mem as f64 / MICROS_PER_EUR,
                disk: a.prices.disk as f64 / MICROS_PER_EUR,
                gpu: a.prices.gpu as f64 / MICROS_PER_EUR,
            },
        }
    }
}

/// Runs `query` over `adverts`, each with the label that names its host in the result (the
/// book passes peer ids it computed once): matches sorted by slice price, then newest first,
/// then host; `limit` caps the matches; with `explain`, every other host with the clause it
/// fails.
pub fn find<'a>(
    query: &Query,
    text: &str,
    adverts: impl IntoIterator<Item = (&'a Advert, &'a str)>,
    now_ms: u64,
    limit: Option<usize>,
    explain: bool,
) -> FindResult {
    let mut considered = 0;
    let mut hits: Vec<(f64, &Advert, &str)> = Vec::new();
    let mut misses = Vec::new();
    for (a, label) in adverts {
        considered += 1;
        if explain {
            match query.first_failure(a, now_ms) {
                None => hits.push((query.slice_price_micros(a), a, label)),
                Some(f) => misses.push((a, label, f)),
            }
        } else if query.matches(a, now_ms) {
            hits.push((query.slice_price_micros(a), a, label));
        }
    }
    hits.sort_by(|(pa, a, _), (pb, b, _)| {
        pa.total_cmp(pb)
            .then(b.issued_at_ms.cmp(&a.issued_at_ms))
            .then(a.host.cmp(&b.host))
    });
    if let Some(l) = limit {
        hits.truncate(l);
    }
    misses.sort_by_key(|(a, _, _)| a.host);
    FindResult {
        query: text.to_owned(),
        hosts_considered: considered,
        matches: hits
            .into_iter()
            .map(|(p, a, label)| HostMatch {
                host: label.to_owned(),
                slice_price_eur: p / MICROS_PER_EUR,
                advert: AdvertSummary::of(a),
            })
            .collect(),
        not_matching: misses
            .into_iter()
            .map(|(a, label, f)| HostMiss {
                host: label.to_owned(),
                clause: f.clause,
                actual: f.actual,
                country: a.country.clone(),
                operator: a.operator.clone(),
            })
            .collect(),
    }
}
