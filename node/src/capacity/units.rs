//! PLACEHOLDER (replaced by the query-language work).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(String);
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    s.parse().map_err(|_| UnitError(s.into()))
}
pub fn parse_count(s: &str) -> Result<f64, UnitError> {
    s.parse().map_err(|_| UnitError(s.into()))
}
pub fn parse_duration(s: &str) -> Result<u64, UnitError> {
    s.parse().map_err(|_| UnitError(s.into()))
}
pub fn parse_price_eur(s: &str) -> Result<u64, UnitError> {
    s.parse::<f64>()
        .map(|v| (v * 1e6) as u64)
        .map_err(|_| UnitError(s.into()))
}
pub fn format_size(b: u64) -> String {
    b.to_string()
}
pub fn format_eur(m: u64) -> String {
    m.to_string()
}
pub fn format_duration(ms: u64) -> String {
    ms.to_string()
}
pub fn format_bps(b: u64) -> String {
    b.to_string()
}
