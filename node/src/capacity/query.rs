//! PLACEHOLDER (replaced by the query-language work).
use super::advert::{Advert, Gpu};
use serde::{Deserialize, Serialize};
#[derive(Debug, Clone)]
pub struct QueryError {
    pub message: String,
    pub position: usize,
    pub len: usize,
    pub input: String,
}
impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}
impl std::error::Error for QueryError {}
#[derive(Debug, Clone)]
pub struct Query;
pub fn parse(_input: &str) -> Result<Query, QueryError> {
    Ok(Query)
}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindResult {
    pub query: String,
    pub hosts_considered: usize,
    pub matches: Vec<HostMatch>,
    pub not_matching: Vec<HostMiss>,
}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostMatch {
    pub host: String,
    pub slice_price_eur: f64,
    pub advert: AdvertSummary,
}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostMiss {
    pub host: String,
    pub clause: String,
    pub actual: String,
    pub country: String,
    pub operator: String,
}
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriceEur {
    pub cpu: f64,
    pub mem: f64,
    pub disk: f64,
    pub gpu: f64,
}
impl AdvertSummary {
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
            total_cpu: 0.0,
            total_mem_bytes: 0,
            total_disk_bytes: 0,
            bandwidth_bps: 0,
            price_eur: PriceEur {
                cpu: 0.0,
                mem: 0.0,
                disk: 0.0,
                gpu: 0.0,
            },
        }
    }
}
pub fn find<'a>(
    _query: &Query,
    text: &str,
    adverts: impl IntoIterator<Item = &'a Advert>,
    _now_ms: u64,
    _limit: Option<usize>,
    _explain: bool,
) -> FindResult {
    let matches: Vec<HostMatch> = adverts
        .into_iter()
        .map(|a| HostMatch {
            host: hex::encode(a.host),
            slice_price_eur: 0.0,
            advert: AdvertSummary::of(a),
        })
        .collect();
    FindResult {
        query: text.into(),
        hosts_considered: matches.len(),
        matches,
        not_matching: vec![],
    }
}
