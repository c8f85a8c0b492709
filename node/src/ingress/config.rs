//! The `[ingress]` table: where the HTTP ingress listens, its client limits, and the request
//! limits the plugin side applies, as written ([`IngressConfig`]) and validated
//! ([`IngressSettings`]).
//!
//! Durations and sizes are strings as people write them (`"10s"`, `"500ms"`, `"10MiB"`),
//! parsed by [`crate::capacity::units`]. The ingress is off unless `listen` is set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capacity::units::{parse_duration, parse_size};

use super::routes::normalise_dns_name;

/// One outgoing-HTTP allow rule: which hosts a tenant's plugins may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutgoingRule {
    /// A tenant's peer id, or `*` for every tenant.
    pub tenant: String,
    /// Host patterns: `api.example.org:443`, `*.example.org` (any port), `127.0.0.1:*`.
    pub hosts: Vec<String>,
}

/// The `[ingress]` table, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngressConfig {
    /// Address to listen on, e.g. `"0.0.0.0:8080"`; unset: no ingress.
    pub listen: Option<String>,
    /// The domain under which every deployment answers as `<deployment-id>.<domain>`.
    pub domain: String,
    /// PEM certificate chain; with `tls_key`, the ingress speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Most header fields in one request (more: 431).
    pub max_header_count: u32,
    /// Most bytes of a request head, start line included, e.g. `"16KiB"` (more: 431).
    pub max_header_bytes: String,
    /// Time a client has to send a complete request head, e.g. `"10s"`.
    pub header_timeout: String,
    /// Time a keep-alive connection may stay without traffic, e.g. `"60s"`.
    pub idle_timeout: String,
    /// Most connections open at once; new ones beyond it are closed at once.
    pub max_connections: u32,
    /// Most connections open at once from one client address (IPv6: its /64).
    pub max_connections_per_ip: u32,
    /// Worker threads of the ingress's own runtime; unset: one per core.
    pub threads: Option<u32>,
    /// Deadline of one request to a plugin, e.g. `"30s"` (the plugin side enforces it).
    pub request_timeout: String,
    /// Largest request body, e.g. `"10MiB"` (a larger `Content-Length` is refused with 413).
    pub max_request_body: String,
    /// Largest response body a plugin may send, e.g. `"64MiB"`.
    pub max_response_body: String,
    /// Requests one core serves at once across the plugin instances.
    pub requests_per_core: u32,
    /// Most plugin instances alive at once on this host.
    pub max_instances: u32,
    /// Requests one plugin instance serves before it is replaced.
    pub instance_reuse: u32,
    /// Outgoing-HTTP allow rules per tenant.
    pub outgoing: Vec<OutgoingRule>,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            listen: None,
            domain: "localhost".into(),
            tls_cert: None,
            tls_key: None,
            max_header_count: 64,
            max_header_bytes: "16KiB".into(),
            header_timeout: "10s".into(),
            idle_timeout: "60s".into(),
            max_connections: 4096,
            max_connections_per_ip: 256,
            threads: None,
            request_timeout: "30s".into(),
            max_request_body: "10MiB".into(),
            max_response_body: "64MiB".into(),
            requests_per_core: 32,
            max_instances: 256,
            instance_reuse: 10_000,
            outgoing: Vec::new(),
        }
    }
}

/// The validated `[ingress]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressSettings {
    /// Where to listen; `None`: the ingress is off.
    pub listen: Option<SocketAddr>,
    /// Lowercased DNS name.
    pub domain: String,
    /// Certificate chain and key files, when TLS is on.
    pub tls: Option<TlsFiles>,
    /// Most header fields of a request (hyper answers 431 beyond).
    pub max_header_count: usize,
    /// Most bytes of a request head (hyper answers 431 beyond).
    pub max_header_bytes: usize,
    /// Time to receive a complete request head (hyper closes the connection after it).
    pub header_timeout: Duration,
    /// Time a connection with nothing in flight may stay without traffic.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address (IPv6: its /64).
    pub max_connections_per_ip: usize,
    /// Worker threads of the ingress runtime.
    pub threads: usize,
    /// Deadline of one request to a plugin (enforced by the endpoint).
    pub request_timeout: Duration,
    /// Largest request body, bytes (a larger `Content-Length`: 413 from the ingress; the
    /// endpoint bounds chunked bodies).
    pub max_request_body: u64,
    /// Largest response body, bytes (enforced by the endpoint).
    pub max_response_body: u64,
    /// Requests served at once per core (enforced by the endpoint side).
    pub requests_per_core: u32,
    /// Most plugin instances alive at once (enforced by the endpoint side).
    pub max_instances: u32,
    /// Requests one instance serves before it is replaced (enforced by the endpoint side).
    pub instance_reuse: u32,
    /// Outgoing-HTTP allow rules, see [`IngressSettings::outgoing_for`].
    pub outgoing: Vec<OutgoingRule>,
}

/// The PEM files of the ingress's TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for IngressSettings {
    /// The defaults of the table, ingress off.
    fn default() -> Self {
        Self {
            listen: None,
            domain: "localhost".into(),
            tls: None,
            max_header_count: 64,
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_connections_per_ip: 256,
            threads: default_threads(),
            request_timeout: Duration::from_secs(30),
            max_request_body: 10 << 20,
            max_response_body: 64 << 20,
            requests_per_core: 32,
            max_instances: 256,
            instance_reuse: 10_000,
            outgoing: Vec::new(),
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

impl IngressConfig {
    /// Validates the table, naming the key of any bad value.
    pub fn to_settings(&self) -> Result<IngressSettings, String> {
        let dur = |key: &str, v: &str, min_ms: u64| {
            let ms = parse_duration(v).map_err(|e| format!("ingress.{key}: {e}"))?;
            if ms < min_ms {
                return Err(format!("ingress.{key} must be at least {min_ms}ms"));
            }
            Ok(Duration::from_millis(ms))
        };
        let size = |key: &str, v: &str, min: u64, max: u64| {
            let n = parse_size(v).map_err(|e| format!("ingress.{key}: {e}"))?;
            if !(min..=max).contains(&n) {
                return Err(format!(
                    "ingress.{key} must be between {min} and {max} bytes, not {n}"
                ));
            }
            Ok(n)
        };
        let listen = match &self.listen {
            None => None,
            Some(s) => Some(s.trim().parse::<SocketAddr>().map_err(|_| {
                format!("ingress.listen: `{s}` is not an address such as 0.0.0.0:8080 or [::]:443")
            })?),
        };
        let domain = normalise_dns_name(&self.domain).map_err(|why| {
            format!(
                "ingress.domain: `{}` is not a DNS name ({why}); use a name such as apps.example.org",
                self.domain
            )
        })?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (Some(_), None) => {
                return Err(
                    "ingress.tls_key: missing; set both tls_cert and tls_key, or neither".into(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "ingress.tls_cert: missing; set both tls_cert and tls_key, or neither".into(),
                );
            }
        };
        let range = |key: &str, v: u32, min: u32, max: u32| {
            if (min..=max).contains(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "ingress.{key} must be between {min} and {max}, not {v}"
                ))
            }
        };
        let threads = match self.threads {
            None => default_threads(),
            Some(n) => range("threads", n, 1, 1024)? as usize,
        };
        for (i, rule) in self.outgoing.iter().enumerate() {
            check_rule(rule).map_err(|e| format!("ingress.outgoing[{i}].{e}"))?;
        }
        // Above 256 KiB hyper's read buffer (~400 KiB) would bound the head before this does.
        let max_header_bytes = size("max_header_bytes", &self.max_header_bytes, 1024, 256 << 10)?;
        Ok(IngressSettings {
            listen,
            domain,
            tls,
            max_header_count: range("max_header_count", self.max_header_count, 1, 1024)? as usize,
            max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
            header_timeout: dur("header_timeout", &self.header_timeout, 100)?,
            idle_timeout: dur("idle_timeout", &self.idle_timeout, 100)?,
            max_connections: range("max_connections", self.max_connections, 1, 1_000_000)? as usize,
            max_connections_per_ip: range(
                "max_connections_per_ip",
                self.max_connections_per_ip,
                1,
                1_000_000,
            )? as usize,
            threads,
            request_timeout: dur("request_timeout", &self.request_timeout, 1)?,
            max_request_body: size("max_request_body", &self.max_request_body, 0, u64::MAX)?,
            max_response_body: size("max_response_body", &self.max_response_body, 0, u64::MAX)?,
            requests_per_core: range("requests_per_core", self.requests_per_core, 1, 100_000)?,
            max_instances: range("max_instances", self.max_instances, 1, 1_000_000)?,
            instance_reuse: range("instance_reuse", self.instance_reuse, 1, u32::MAX)?,
            outgoing: self.outgoing.clone(),
        })
    }
}

/// Checks one rule; the error starts with the key (`tenant: …`, `hosts: …`).
fn check_rule(rule: &OutgoingRule) -> Result<(), String> {
    let t = rule.tenant.trim();
    if t != "*" && t.parse::<libp2p::PeerId>().is_err() {
        return Err(format!(
            "tenant: `{t}` is neither `*` nor a peer id (printed by `degroup id`)"
        ));
    }
    for h in &rule.hosts {
        check_host_pattern(h).map_err(|why| {
            format!(
                "hosts: `{h}` {why}; write host[:port], *.domain[:port] or host:* (e.g. api.example.org:443)"
            )
        })?;
    }
    Ok(())
}

fn check_host_pattern(p: &str) -> Result<(), &'static str> {
    let (host, port) = match p.rsplit_once(':') {
        // `[::1]:443` and bare IPv6 literals.
        Some((h, port)) if !h.contains(':') || h.ends_with(']') => (h, Some(port)),
        _ => (p, None),
    };
    if let Some(port) = port
        && port != "*"
        && port.parse::<u16>().is_err()
    {
        return Err("has a port that is neither a number nor *");
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    normalise_dns_name(name)
        .map(|_| ())
        .map_err(|_| "is not a host name")
}

impl IngressSettings {
    /// Host patterns a tenant's plugins may call: the rules for `*` and for this tenant.
    pub fn outgoing_for(&self, tenant_peer_id: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for rule in &self.outgoing {
            let t = rule.tenant.trim();
            if t == "*" || t == tenant_peer_id {
                for h in &rule.hosts {
                    let h = h.trim().to_ascii_lowercase();
                    if !out.contains(&h) {
                        out.push(h);
                    }
                }
            }
        }
        out
    }

    /// Whether the ingress speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_off() {
        let s = IngressConfig::default().to_settings();
        assert_eq!(s, Ok(IngressSettings::default()));
    }

    #[test]
    fn parses_a_written_table() -> Result<(), Box<dyn std::error::Error>> {
        let cfg: IngressConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:8080"
            domain = "Apps.Example.ORG."
            max_header_bytes = "32KiB"
            header_timeout = "500ms"
            max_request_body = "1MiB"
            threads = 2
            [[outgoing]]
            tenant = "*"
            hosts = ["127.0.0.1:*", "*.example.org"]
            [[outgoing]]
            tenant = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
            hosts = ["api.example.org:443", "*.EXAMPLE.org"]
            "#,
        )?;
        let s = cfg.to_settings()?;
        assert_eq!(s.listen, Some("127.0.0.1:8080".parse()?));
        assert_eq!(s.domain, "apps.example.org");
        assert_eq!(s.max_header_bytes, 32 * 1024);
        assert_eq!(s.header_timeout, Duration::from_millis(500));
        assert_eq!(s.max_request_body, 1 << 20);
        assert_eq!(s.threads, 2);
        assert_eq!(
            s.outgoing_for("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"),
            ["127.0.0.1:*", "*.example.org", "api.example.org:443"]
        );
        assert_eq!(s.outgoing_for("other"), ["127.0.0.1:*", "*.example.org"]);
        Ok(())
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = [
            (
                IngressConfig {
                    listen: Some("everywhere".into()),
                    ..Default::default()
                },
                "ingress.listen",
            ),
            (
                IngressConfig {
                    domain: "-bad-.example".into(),
                    ..Default::default()
                },
                "ingress.domain",
            ),
            (
                IngressConfig {
                    tls_cert: Some("c.pem".into()),
                    ..Default::default()
                },
                "ingress.tls_key",
            ),
            (
                IngressConfig {
                    header_timeout: "soon".into(),
                    ..Default::default()
                },
                "ingress.header_timeout",
            ),
            (
                IngressConfig {
                    max_header_bytes: "10".into(),
                    ..Default::default()
                },
                "ingress.max_header_bytes",
            ),
            (
                IngressConfig {
                    max_connections: 0,
                    ..Default::default()
                },
                "ingress.max_connections",
            ),
            (
                IngressConfig {
                    outgoing: vec![OutgoingRule {
                        tenant: "someone".into(),
                        hosts: vec![],
                    }],
                    ..Default::default()
                },
                "ingress.outgoing[0].tenant",
            ),
            (
                IngressConfig {
                    outgoing: vec![OutgoingRule {
                        tenant: "*".into(),
                        hosts: vec!["api.example.org:http".into()],
                    }],
                    ..Default::default()
                },
                "ingress.outgoing[0].hosts",
            ),
        ];
        for (cfg, key) in bad {
            let err = cfg.to_settings().err().unwrap_or_default();
            assert!(err.starts_with(key), "{err} (expected {key})");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let r: Result<IngressConfig, _> = toml::from_str("listn = \"127.0.0.1:1\"");
        assert!(r.is_err());
    }
}
