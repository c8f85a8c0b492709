//! `degroup find EXPR`.

use std::path::Path;

use crate::capacity::query::{self, FindResult};
use crate::capacity::units::format_size;

use super::UsageError;
use super::display::{escape, escape_join};

/// Federated discovery.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Conjunction of comparisons, e.g. 'cpu>=8 mem>=32GiB country=FR cert=SecNumCloud'
    /// (fields: cpu mem disk gpu.count gpu.model gpu.mem country region operator cert
    /// price.cpu price.mem price.disk price.gpu bandwidth age; see docs/operator-guide.md)
    #[arg(default_value = "")]
    expr: String,
    /// For every host that does not match, show the first clause it fails
    #[arg(long)]
    explain: bool,
    /// Show at most N matches
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(dir: &Path, args: &Args) -> anyhow::Result<()> {
    // Parse here first, so a typo is pointed at without a round trip (exit code 2).
    query::parse(&args.expr).map_err(|e| UsageError(format!("invalid query: {e}")))?;
    let client = super::ApiClient::from_data_dir(dir)?;
    let mut params = vec![
        ("q", args.expr.clone()),
        ("explain", args.explain.to_string()),
    ];
    if let Some(l) = args.limit {
        params.push(("limit", l.to_string()));
    }
    let result: FindResult = client.get_query("/v1/find", &params).await?;
    if args.json {
        return super::print_json(&result);
    }
    print_result(&result, args.explain);
    Ok(())
}

/// Everything but the numbers is what a peer advertised, so it is printed through [`escape`].
fn print_result(r: &FindResult, explain: bool) {
    if r.matches.is_empty() {
        println!("no host matches ({} known)", r.hosts_considered);
    } else {
        println!(
            "{:<54} {:<3} {:>7} {:>9} {:>9} {:>4} {:>10}  CERTS / OPERATOR",
            "HOST", "CC", "CPU", "MEM", "DISK", "GPU", "EUR/h"
        );
        for m in &r.matches {
            let a = &m.advert;
            println!(
                "{:<54} {:<3} {:>7} {:>9} {:>9} {:>4} {:>10.4}  {} / {}",
                escape(&m.host),
                if a.country.is_empty() {
                    "-".into()
                } else {
                    escape(&a.country)
                },
                format!("{}", a.cpu),
                format_size(a.mem_bytes),
                format_size(a.disk_bytes),
                a.gpus.len(),
                m.slice_price_eur,
                if a.certs.is_empty() {
                    "-".to_owned()
                } else {
                    escape_join(&a.certs, ",")
                },
                if a.operator.is_empty() {
                    "-".into()
                } else {
                    escape(&a.operator)
                },
            );
        }
    }
    if explain && !r.not_matching.is_empty() {
        println!();
        println!("not matching:");
        for m in &r.not_matching {
            println!(
                "  {}  fails `{}`: has {}",
                escape(&m.host),
                escape(&m.clause),
                escape(&m.actual)
            );
        }
    }
}
