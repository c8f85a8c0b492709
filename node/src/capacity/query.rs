//! The discovery query language: `cpu>=8 mem>=32GiB country=FR cert=SecNumCloud`.
//!
//! A query is a conjunction of comparisons `FIELD OP VALUE` separated by whitespace (a value may
//! be double-quoted to hold spaces). [`parse`] turns text into a [`Query`] — values are parsed
//! with their units and text is lower-cased once, so evaluation allocates nothing — and reports
//! errors with the byte position of the offending token. [`Query::first_failure`] is the
//! explanation: the first clause, in written order, that a host fails, with the host's actual
//! value. [`find`] runs a query over many adverts, sorts the matches by the price of the smallest
//! slice the query asks for, then by freshness.

mod eval;
mod parse;
#[cfg(test)]
mod tests;

pub use eval::{AdvertSummary, FindResult, HostMatch, HostMiss, PriceEur, find};
pub use parse::parse;

/// Longest query accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 4096;
/// Most clauses in one query.
pub const MAX_CLAUSES: usize = 64;

/// The fields a query can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Cpu,
    Mem,
    Disk,
    GpuCount,
    GpuModel,
    GpuMem,
    Country,
    Region,
    Operator,
    Cert,
    PriceCpu,
    PriceMem,
    PriceDisk,
    PriceGpu,
    Bandwidth,
    Age,
    /// Whether the host runs an HTTP ingress (`true`/`false`): its advert lists
    /// [`HTTP_API`] among its plugin APIs.
    Ingress,
}

/// The plugin API a host with an HTTP ingress announces.
pub const HTTP_API: &str = "wasi:http/incoming-handler@0.2.12";

/// Every field with its name, for parsing and for error messages.
pub const FIELDS: [(&str, Field); 17] = [
    ("cpu", Field::Cpu),
    ("mem", Field::Mem),
    ("disk", Field::Disk),
    ("gpu.count", Field::GpuCount),
    ("gpu.model", Field::GpuModel),
    ("gpu.mem", Field::GpuMem),
    ("country", Field::Country),
    ("region", Field::Region),
    ("operator", Field::Operator),
    ("cert", Field::Cert),
    ("price.cpu", Field::PriceCpu),
    ("price.mem", Field::PriceMem),
    ("price.disk", Field::PriceDisk),
    ("price.gpu", Field::PriceGpu),
    ("bandwidth", Field::Bandwidth),
    ("age", Field::Age),
    ("ingress", Field::Ingress),
];

impl Field {
    /// Whether the field holds text (compared with `=`, `!=`, `~`) rather than a number.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            Field::GpuModel | Field::Country | Field::Region | Field::Operator | Field::Cert
        )
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Substring, or glob when the value has `*` or `?`; case-insensitive.
    Like,
}

/// A parsed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Numbers in the field's base unit: cores, bytes, count, micro-euros, bits/s, ms.
    Num(f64),
    /// Lower-cased text; `glob` when it holds `*` or `?`.
    Text { lower: String, glob: bool },
}

/// One comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub field: Field,
    pub op: Op,
    pub value: Value,
    /// As written, for explanations.
    pub text: String,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    clauses: Vec<Clause>,
}

/// Why a host does not match: the first clause it fails and its actual value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub clause: String,
    pub actual: String,
}

/// A query that does not parse, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub message: String,
    /// Byte offset of the offending token in `input`.
    pub position: usize,
    /// Its length in bytes (at least 1).
    pub len: usize,
    pub input: String,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.message)?;
        writeln!(f, "  {}", self.input)?;
        let pad = self
            .input
            .get(..self.position)
            .map_or(self.position, |p| p.chars().count());
        let width = self
            .input
            .get(self.position..self.position + self.len)
            .map_or(self.len, |t| t.chars().count())
            .max(1);
        write!(f, "  {}{}", " ".repeat(pad), "^".repeat(width))
    }
}

impl std::error::Error for QueryError {}
