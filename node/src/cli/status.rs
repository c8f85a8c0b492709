//! `degroup status`.

use std::path::Path;

use super::display::escape;
use crate::api::StatusResponse;

/// Show the running node.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(dir: &Path, args: &Args) -> anyhow::Result<()> {
    let client = super::ApiClient::from_data_dir(dir)?;
    let s: StatusResponse = client.get("/v1/status").await?;
    if args.json {
        return super::print_json(&s);
    }
    println!("peer id      {}", s.peer_id);
    println!("version      {}", s.version);
    println!("data dir     {}", s.data_dir.display());
    println!("admin api    {}", s.api_addr);
    println!("uptime       {}s", s.uptime_s);
    println!(
        "listening    {}",
        escape(s.listen_addrs.first().map(String::as_str).unwrap_or("-"))
    );
    for a in s.listen_addrs.iter().skip(1) {
        println!("             {}", escape(a));
    }
    println!("adverts      {}", s.adverts_known);
    println!(
        "leases       {} hosted, {} rented",
        s.leases_hosted, s.leases_rented
    );
    println!(
        "deployments  {} running here, {} deployed elsewhere",
        s.deployments_hosted, s.deployments_rented
    );
    if let Some(i) = &s.ingress {
        println!(
            "ingress      {}://{} (*.{}): {} requests, {} in flight, {} 404, {} 5xx, {} connections open",
            if i.tls { "https" } else { "http" },
            escape(&i.listen),
            escape(&i.domain),
            i.requests,
            i.in_flight,
            i.not_found,
            i.responses.c5xx,
            i.connections_open
        );
    }
    println!("peers        {}", s.connected_peers.len());
    for p in &s.connected_peers {
        println!("             {}", escape(p));
    }
    Ok(())
}
