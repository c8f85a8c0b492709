//! Layered configuration: built-in defaults < `<data-dir>/config.toml` < `DEGROUP_*`
//! environment variables < command-line flags.
//!
//! [`RawConfig`] is what the layers merge into (strings, as a user writes them); [`NodeConfig`]
//! is the validated form the node runs with. Every validation error names the key, the bad
//! value, where it came from and what a good value looks like.
//!
//! Environment variables: `DEGROUP_LISTEN`, `DEGROUP_BOOTSTRAP` (a TOML array, or addresses
//! separated by commas),
//! `DEGROUP_API`, `DEGROUP_METRICS`, and `DEGROUP_NET__<KEY>` for the `[net]` table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::blobs::{BlobConfig, BlobLimits};
use crate::capacity::offer::{CapacityConfig, OfferSettings};
use crate::catalogue::TrustConfig;
use crate::ingress::{IngressConfig, IngressSettings};
use crate::lease::{LeaseConfig, Policy};
pub use crate::net::NetConfig;
use crate::plugin::config::{HttpLimits, Limits, PluginConfig};

/// Name of the configuration file inside a data directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Keys read from the environment (`DEGROUP_<KEY>`); anything else with the prefix, such as
/// `DEGROUP_DATA_DIR`, is not a config key.
const ENV_KEYS: &[&str] = &[
    "listen",
    "bootstrap",
    "api",
    "metrics",
    "net",
    "capacity",
    "lease",
    "plugin",
    "blobs",
    "trust",
    "ingress",
];

/// Configuration as written by a user, before validation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    #[serde(deserialize_with = "one_or_many")]
    pub listen: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub bootstrap: Vec<String>,
    pub api: String,
    pub metrics: Option<String>,
    pub net: NetConfig,
    pub capacity: CapacityConfig,
    pub lease: LeaseConfig,
    pub plugin: PluginConfig,
    pub blobs: BlobConfig,
    pub trust: TrustConfig,
    pub ingress: IngressConfig,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".into(),
                "/ip4/0.0.0.0/udp/0/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            api: "127.0.0.1:0".into(),
            metrics: None,
            net: NetConfig::default(),
            capacity: CapacityConfig::default(),
            lease: LeaseConfig::default(),
            plugin: PluginConfig::default(),
            blobs: BlobConfig::default(),
            trust: TrustConfig::default(),
            ingress: IngressConfig::default(),
        }
    }
}

/// Accepts a list, or one string (`DEGROUP_BOOTSTRAP=/ip4/…`), which may hold several
/// addresses separated by commas or whitespace.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(s) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// Values given on the command line; only those present override the other layers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bootstrap: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// `--ingress IP:PORT`: the `[ingress]` table's `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressFlags>,
}

/// The `[ingress]` keys a flag sets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngressFlags {
    pub listen: String,
}

/// The validated configuration the node runs with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub api: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub net: NetConfig,
    /// The `[capacity]` table as settings.
    pub offer: OfferSettings,
    pub capacity: CapacityConfig,
    /// The `[lease]` table: host policy and protocol timing.
    pub lease: Policy,
    /// The `[plugin]` table: sandbox limits and supervision.
    pub plugin: Limits,
    /// The `[blobs]` table: package size cap, blob cache quota, garbage collection, serving
    /// limits.
    pub blobs: BlobLimits,
    /// The `[trust]` table: the publishers names resolve among.
    pub trust: TrustConfig,
    /// The `[ingress]` table: the HTTP ingress (off unless `listen` is set). Its request
    /// limits are also in `plugin.http`.
    pub ingress: IngressSettings,
}

/// A configuration problem, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "cannot read configuration ({}, DEGROUP_* environment, flags): {detail}; fix the value, or move the file away and run `degroup init` to write a fresh one",
        path.display()
    )]
    Load { path: PathBuf, detail: String },
}

/// Merges the layers for a data directory. A missing `config.toml` is not an error.
pub fn load(data_dir: &Path, flags: &FlagOverrides) -> Result<NodeConfig, ConfigError> {
    let path = data_dir.join(CONFIG_FILE);
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if path.exists() {
        figment = figment.merge(Toml::file_exact(&path));
    }
    let raw: RawConfig = figment
        .merge(
            Env::prefixed("DEGROUP_")
                .filter(|k| {
                    let top = k.as_str().split("__").next().unwrap_or_default();
                    ENV_KEYS.contains(&top.to_ascii_lowercase().as_str())
                })
                .split("__"),
        )
        .merge(Serialized::globals(flags))
        .extract()
        .map_err(|e| ConfigError::Load {
            path: path.clone(),
            detail: e.to_string().replace('\n', " "),
        })?;
    validate(data_dir, raw)
}

fn validate(data_dir: &Path, raw: RawConfig) -> Result<NodeConfig, ConfigError> {
    let listen = raw
        .listen
        .iter()
        .map(|a| parse_multiaddr("listen", a))
        .collect::<Result<Vec<_>, _>>()?;
    if listen.is_empty() {
        return Err(ConfigError::Invalid(
            "`listen` is empty: give at least one address, e.g. /ip4/0.0.0.0/tcp/0".into(),
        ));
    }
    let bootstrap = raw
        .bootstrap
        .iter()
        .map(|a| parse_multiaddr("bootstrap", a))
        .collect::<Result<Vec<_>, _>>()?;
    let api = parse_socket("api", &raw.api)?;
    let metrics = raw
        .metrics
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(|m| parse_socket("metrics", m))
        .transpose()?;
    if raw.net.max_connections == 0 || raw.net.max_connections_per_peer == 0 {
        return Err(ConfigError::Invalid(
            "`net.max_connections` and `net.max_connections_per_peer` must be at least 1".into(),
        ));
    }
    let offer = raw.capacity.to_settings().map_err(ConfigError::Invalid)?;
    let lease = raw.lease.to_policy().map_err(ConfigError::Invalid)?;
    let mut plugin = raw.plugin.to_limits().map_err(ConfigError::Invalid)?;
    let ingress = raw.ingress.to_settings().map_err(ConfigError::Invalid)?;
    plugin.http = HttpLimits {
        deadline: ingress.request_timeout,
        max_request_body: ingress.max_request_body,
        max_response_body: ingress.max_response_body,
        requests_per_core: ingress.requests_per_core,
        max_instances: ingress.max_instances,
        reuse: u64::from(ingress.instance_reuse),
    };
    let blobs = raw.blobs.limits().map_err(ConfigError::Invalid)?;
    raw.trust.validate().map_err(ConfigError::Invalid)?;
    Ok(NodeConfig {
        data_dir: data_dir.to_owned(),
        listen,
        bootstrap,
        api,
        metrics,
        net: raw.net,
        offer,
        capacity: raw.capacity,
        lease,
        plugin,
        blobs,
        trust: raw.trust,
        ingress,
    })
}

/// Parses a multiaddr, with an error that names the key and shows a valid example.
pub fn parse_multiaddr(key: &str, text: &str) -> Result<Multiaddr, ConfigError> {
    text.trim().parse::<Multiaddr>().map_err(|e| {
        ConfigError::Invalid(format!(
            "invalid {key} address {text:?}: {e}; expected a multiaddr such as /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW… (see `degroup status` on that node)"
        ))
    })
}

fn parse_socket(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse::<SocketAddr>().map_err(|e| {
        ConfigError::Invalid(format!(
            "invalid {key} address {text:?}: {e}; expected IP:PORT such as 127.0.0.1:7070 (port 0 picks a free one)"
        ))
    })
}

/// The commented `config.toml` that `degroup init` writes: every key, with its default.
pub fn default_file() -> String {
    let d = NetConfig::default();
    format!(
        r#"# degroup node configuration.
#
# Precedence, lowest first: built-in defaults < this file < DEGROUP_* environment
# variables (DEGROUP_LISTEN, DEGROUP_BOOTSTRAP, DEGROUP_API, DEGROUP_METRICS,
# DEGROUP_NET__MAX_CONNECTIONS, ...) < command-line flags (--listen, --bootstrap, --api,
# --metrics). A flag given on the command line replaces the whole list it names.
# Every key below is commented out and shows its default.

# libp2p addresses to listen on. Port 0 picks a free port. TCP and QUIC by default.
# listen = ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]

# Peers to join the federation through, as multiaddrs ending in /p2p/<peer id>
# (`degroup status` on that node prints them). Unreachable ones are re-dialled with backoff.
# bootstrap = ["/ip4/192.0.2.10/tcp/4001/p2p/12D3KooW..."]

# Admin API (HTTP, bearer token in <data-dir>/api.token). Keep it on loopback.
# api = "127.0.0.1:0"

# Serve Prometheus metrics without a token on a separate address, e.g. "127.0.0.1:9464".
# Unset: /metrics is served only on the admin API, behind the token.
# metrics = "127.0.0.1:9464"

[net]
# Most established connections in total, and to a single peer.
# max_connections = {}
# max_connections_per_peer = {}
# Most incoming connections still in their handshake.
# max_pending_incoming = {}
# Peers found through the DHT are dialled while fewer than this many are connected.
# target_peers = {}
# Longest wait, in seconds, between two dials of an unreachable bootstrap peer.
# bootstrap_max_backoff_s = {}
# Gossipsub heartbeat (mesh maintenance, lazy gossip), in milliseconds.
# gossip_heartbeat_ms = {}

[capacity]
# What this node offers. Unset keys use the detected hardware (CPU within cgroup limits,
# memory, free disk of the data dir's filesystem, GPUs from nvidia-smi). `degroup capacity set`
# overrides this table and is kept in the store. Offering more than the hardware has needs
# `degroup capacity set --force`.
# cpu = 8                      # cores
# mem = "32GiB"
# disk = "1TiB"
# gpus = ["H100:80GiB"]        # MODEL:MEMORY, "2xL4:24GiB" for two
# bandwidth = "10G"            # bits per second
# country = "FR"               # ISO 3166-1 alpha-2
# region = "Île-de-France"
# operator = "Example Hosting SAS"
# certs = ["SecNumCloud", "ISO27001"]
# advert_ttl_s = 600           # advert lifetime; refreshed at a third of it
# publish_debounce_ms = 10     # changes within this window make one advert (max 50)

[capacity.prices]
# EUR per unit-hour: core, GiB of memory, GiB of disk, GPU.
# cpu = 0.02
# mem = 0.004
# disk = 0.0001
# gpu = 2.5

[lease]
# Host policy for leases of this node's capacity (see docs/operator-guide.md).
# Peer ids allowed to lease (empty: everyone not denied), and never allowed.
# allow = ["12D3KooW..."]
# deny = []
# Longest and shortest lease; a renewal may not leave more than max_duration to run.
# max_duration = "30d"
# min_duration = "1s"
# Lowest price of a leased slice, in EUR per hour (0: none).
# min_hourly_price = 0.0
# How long an offer waits for the tenant's countersignature before its capacity is released.
# offer_hold = "30s"
# Length of the periods of the signed usage receipts.
# receipt_period = "1h"
# Requests created further than this from this node's clock are refused as stale.
# request_window = "2m"

[plugin]
# Sandbox limits of the plugins tenants deploy onto this node's leases (docs/plugin-guide.md).
# Memory, CPU and storage come from each lease; these bound every call.
# tick_interval = "1s"          # time between two ticks of a deployment
# call_timeout = "100ms"        # deadline of one tick or message call
# init_timeout = "1s"           # deadline of init
# epoch_tick = "5ms"            # granularity of the deadlines
# fuel_per_call = 10000000000   # most fuel (about one per wasm instruction) one call may burn
# max_stack = 524288            # largest wasm stack, bytes
# max_table_elements = 100000
# log_rate = 100                # log lines per second per deployment (bursts of twice this)
# log_lines = 1000              # lines kept per deployment for `degroup logs`
# max_deployments = 128         # most deployments running at once
# publishers = []               # allowed publisher keys (hex); empty: everyone
# max_failures = 5              # failures within failure_window before a deployment is `failed`
# failure_window = "60s"
# backoff = "200ms"             # first restart delay, doubled up to max_backoff
# max_backoff = "30s"
# Compiling a tenant's component runs in a child process under these bounds; past them the
# deploy is refused. Its CPU time is charged to the lease (usage receipts).
# compile_cpu = "10s"           # CPU time of one compilation (whole seconds)
# compile_memory = "1GiB"       # address space of the compiling process
# compile_timeout = "30s"       # wall-clock time of one compilation
# compile_cache_bytes = "1GiB"  # compiled code kept on disk (least recently used goes first)
# compile_memory_cache_bytes = "256MiB"  # compiled code kept in memory
# fuel_per_cpu_milli = 1000000  # fuel per second one thousandth of a leased core is worth (children's fuel-per-second comes out of it)
# max_children = 16  # child workloads one deployment may run at once

[blobs]
# Packages, stored by BLAKE3 hash in <data-dir>/blobs and served to other nodes
# (docs/plugin-guide.md, "Publishing").
# max_package = "64MiB"         # largest package this node stores, serves or runs
# quota = "4GiB"                # all blobs together
# gc_grace = "1h"               # an unused blob (no deployment, publication or pin) goes after this
# per_peer_transfers = 8        # requests of one peer answered at once
# per_peer_rate = "256MiB"      # bytes per second served to one peer

[ingress]
# The HTTP ingress: tenants' HTTP plugins (wasi:http/incoming-handler) served to their users,
# routed by Host: names claimed with `degroup deploy --route NAME`, then <deployment-id>.<domain>
# (docs/operator-guide.md, "HTTP ingress"). Off unless `listen` is set (or --ingress).
# listen = "0.0.0.0:8080"
# domain = "localhost"          # <deployment-id>.localhost works with curl on the host itself
# tls_cert = "/etc/degroup/ingress.crt"   # PEM; both or neither (then plain HTTP)
# tls_key = "/etc/degroup/ingress.key"
# Hostile clients: caps on what a request may send, and for how long.
# max_header_count = 64         # more: 431
# max_header_bytes = "16KiB"    # more: 431
# header_timeout = "10s"        # a request head not complete by then closes the connection
# idle_timeout = "60s"          # keep-alive connections idle this long are closed
# max_connections = 4096        # more are closed at once
# max_connections_per_ip = 256  # from one client address (IPv6: its /64)
# max_request_body = "10MiB"    # more: 413
# threads = 0                   # worker threads of the ingress (0: one per core)
# Hostile plugins: what one request may take.
# request_timeout = "30s"       # a handler that has not answered by then: 504
# max_response_body = "64MiB"   # a longer body is cut
# requests_per_core = 32        # requests in flight per leased core (at least 2): more get 503
# max_instances = 256           # HTTP instances alive at once on this host
# instance_reuse = 10000        # requests one instance serves before a fresh one (1: always fresh)
# Outgoing HTTP from plugins is denied unless a rule allows the tenant and the host name:
# outgoing = [{{ tenant = "12D3KooW...", hosts = ["api.example.org", "*.example.net", "127.0.0.1:*"] }}]

[trust]
# Publishers whose packages a bare name (`greeter`, `greeter@^0.1`) resolves to. A name that
# only untrusted publishers use needs their key prefix: `5a1f.../greeter`.
# publishers = [{{ name = "acme", key = "<64 hex: the publisher's public key>" }}]
"#,
        d.max_connections,
        d.max_connections_per_peer,
        d.max_pending_incoming,
        d.target_peers,
        d.bootstrap_max_backoff_s,
        d.gossip_heartbeat_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let raw: RawConfig = toml::from_str(&default_file())?;
        assert_eq!(raw, RawConfig::default());
        Ok(())
    }

    #[test]
    fn layers_apply_in_order() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "api = \"127.0.0.1:7001\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n",
        )?;
        let cfg = load(dir.path(), &FlagOverrides::default())?;
        assert_eq!(cfg.api.port(), 7001);
        assert_eq!(cfg.listen.len(), 1);
        let flags = FlagOverrides {
            api: Some("127.0.0.1:7002".into()),
            ..Default::default()
        };
        assert_eq!(load(dir.path(), &flags)?.api.port(), 7002);
        Ok(())
    }

    #[test]
    fn one_address_or_a_list() -> Result<(), Box<dyn std::error::Error>> {
        let raw: RawConfig =
            toml::from_str("bootstrap = \"/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2\"")?;
        assert_eq!(raw.bootstrap.len(), 2);
        let raw: RawConfig = toml::from_str("bootstrap = [\"/ip4/127.0.0.1/tcp/1\"]")?;
        assert_eq!(raw.bootstrap.len(), 1);
        Ok(())
    }

    #[test]
    fn bad_values_are_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "bootstrap = [\"not-an-addr\"]\n",
        )?;
        let err = load(dir.path(), &FlagOverrides::default())
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("bootstrap") && e.contains("not-an-addr")));
        std::fs::write(dir.path().join(CONFIG_FILE), "lisen = []\n")?;
        let err = load(dir.path(), &FlagOverrides::default())
            .err()
            .map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| e.contains("lisen")),
            "unknown keys are refused"
        );
        std::fs::write(dir.path().join(CONFIG_FILE), "api = [\n")?;
        assert!(load(dir.path(), &FlagOverrides::default()).is_err());
        Ok(())
    }
}
