//! `degroup node`.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::config::{FlagOverrides, parse_multiaddr};

/// Run the node in the foreground.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// libp2p address to listen on (repeatable) [default: /ip4/0.0.0.0/tcp/0 and /ip4/0.0.0.0/udp/0/quic-v1]
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Peer to join through, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW… (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Admin API address [default: 127.0.0.1:0]
    #[arg(long, value_name = "IP:PORT")]
    api: Option<String>,
    /// Also serve /metrics without a token on this address
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<String>,
    /// Serve the HTTP plugins of this host's leases on this address (`[ingress] listen`;
    /// off unless set), e.g. 0.0.0.0:8080
    #[arg(long, value_name = "IP:PORT")]
    ingress: Option<String>,
}

pub(super) fn run(dir: &Path, args: Args) -> anyhow::Result<()> {
    for a in &args.listen {
        parse_multiaddr("--listen", a).map_err(|e| super::UsageError(e.to_string()))?;
    }
    for a in &args.bootstrap {
        parse_multiaddr("--bootstrap", a).map_err(|e| super::UsageError(e.to_string()))?;
    }
    let flags = FlagOverrides {
        listen: args.listen,
        bootstrap: args.bootstrap,
        api: args.api,
        metrics: args.metrics,
        ingress: args
            .ingress
            .map(|listen| crate::config::IngressFlags { listen }),
    };
    let (config, identity) = crate::node::prepare(dir, &flags)?;
    let runtime = super::runtime()?;
    let result = runtime.block_on(crate::node::run(
        config,
        identity,
        CancellationToken::new(),
        true,
    ));
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    Ok(result?)
}
