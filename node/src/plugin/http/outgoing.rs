//! Outgoing HTTP (`wasi:http/outgoing-handler`): denied unless the deployment allows the
//! request's authority.
//!
//! A pattern is `HOST[:PORT]`: `HOST` is a name or address (`api.example.com`, `127.0.0.1`,
//! `[::1]`) or `*.suffix` (any name strictly under `suffix`); `PORT` is a number or `*`; without
//! one, the scheme's default port (80, 443). Names are matched as the guest wrote them, before
//! any resolution: allowing a name allows whatever it resolves to. An allowed request is sent
//! by wasmtime's [`default_send_request`] under the deadline of the request being served; a
//! denied one fails with `error-code::http-request-denied`, which is what the guest sees.

use std::sync::Arc;
use std::time::Instant;

use http::uri::{Authority, Scheme};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks, default_send_request};

/// One allowed authority.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    host: HostPattern,
    /// `None` = any port.
    port: Option<PortPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.suffix`: the suffix with its leading dot.
    Under(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Exact(u16),
    /// The scheme's default port.
    Default,
}

impl Pattern {
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() {
            return None;
        }
        // `[v6]:port`, `[v6]`, `host:port`, `host` (a bare v6 address has no port).
        let (host, port) = if text.starts_with('[') {
            let end = text.find(']')?;
            let rest = &text[end + 1..];
            let port = match rest.strip_prefix(':') {
                Some(p) => Some(p),
                None if rest.is_empty() => None,
                None => return None,
            };
            (text[..=end].to_owned(), port)
        } else if text.matches(':').count() == 1 {
            let (h, p) = text.split_once(':')?;
            (h.to_owned(), Some(p))
        } else {
            (text.clone(), None)
        };
        let port = match port {
            None => Some(PortPattern::Default),
            Some("*") => None,
            Some(p) => Some(PortPattern::Exact(p.parse().ok()?)),
        };
        let host = match host.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() => HostPattern::Under(format!(".{suffix}")),
            Some(_) => return None,
            None if host.is_empty() || host.contains('*') => return None,
            None => HostPattern::Exact(host),
        };
        Some(Self { host, port })
    }

    fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host_ok = match &self.host {
            HostPattern::Exact(h) => h == host,
            HostPattern::Under(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        };
        let port_ok = match self.port {
            None => true,
            Some(PortPattern::Default) => port == default_port,
            Some(PortPattern::Exact(p)) => p == port,
        };
        host_ok && port_ok
    }
}

/// What an instance may reach over HTTP, and until when: the `wasi:http` hooks of its store.
#[derive(Debug, Clone)]
pub(crate) struct Hooks {
    allow: Arc<[Pattern]>,
    /// The deadline of the request being served; outgoing requests end there.
    pub(crate) deadline: Instant,
}

impl Hooks {
    /// Denies every outgoing request (what a plugin's worker instance gets).
    pub(crate) fn deny_all() -> Self {
        Self {
            allow: Arc::from(Vec::new()),
            deadline: Instant::now(),
        }
    }

    /// Allows the authorities `patterns` match; patterns that do not parse are ignored (and
    /// returned, to be reported).
    pub(crate) fn allowing(patterns: &[String]) -> (Self, Vec<String>) {
        let mut allow = Vec::new();
        let mut bad = Vec::new();
        for p in patterns {
            match Pattern::parse(p) {
                Some(p) => allow.push(p),
                None => bad.push(p.clone()),
            }
        }
        let hooks = Self {
            allow: Arc::from(allow),
            deadline: Instant::now(),
        };
        (hooks, bad)
    }

    /// Whether a request to `authority` over `scheme` may go out.
    pub(crate) fn allows(&self, scheme: Option<&Scheme>, authority: &Authority) -> bool {
        let default_port = if scheme == Some(&Scheme::HTTPS) {
            443
        } else {
            80
        };
        let port = authority.port_u16().unwrap_or(default_port);
        let host = authority.host().to_ascii_lowercase();
        self.allow
            .iter()
            .any(|p| p.matches(&host, port, default_port))
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send> {
        drop(fut);
        let allowed = request
            .uri()
            .authority()
            .is_some_and(|a| self.allows(request.uri().scheme(), a));
        if !allowed {
            tracing::debug!(uri = %request.uri(), "outgoing request denied");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let deadline = tokio::time::Instant::from_std(self.deadline);
        Box::new(async move {
            let sent = tokio::time::timeout_at(deadline, default_send_request(request, options));
            let (res, io) = sent.await.map_err(|_| Error::ConnectionTimeout)??;
            let io = async move {
                tokio::time::timeout_at(deadline, io)
                    .await
                    .unwrap_or(Ok(()))
            };
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(patterns: &[&str], scheme: &Scheme, authority: &str) -> bool {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        let (hooks, bad) = Hooks::allowing(&patterns);
        assert!(bad.is_empty(), "{bad:?}");
        let authority: Authority = authority
            .parse()
            .unwrap_or_else(|_| Authority::from_static("x"));
        hooks.allows(Some(scheme), &authority)
    }

    #[test]
    fn patterns_match_hosts_and_ports() {
        assert!(!allows(&[], &Scheme::HTTP, "example.com"));
        assert!(allows(&["example.com"], &Scheme::HTTP, "example.com"));
        assert!(allows(&["example.com"], &Scheme::HTTPS, "EXAMPLE.com"));
        assert!(!allows(&["example.com"], &Scheme::HTTP, "example.com:8080"));
        assert!(allows(
            &["example.com:8080"],
            &Scheme::HTTP,
            "example.com:8080"
        ));
        assert!(allows(&["127.0.0.1:*"], &Scheme::HTTP, "127.0.0.1:4321"));
        assert!(!allows(&["127.0.0.1:*"], &Scheme::HTTP, "127.0.0.2:4321"));
        assert!(allows(
            &["*.example.com"],
            &Scheme::HTTPS,
            "api.example.com"
        ));
        assert!(!allows(&["*.example.com"], &Scheme::HTTPS, "example.com"));
        assert!(!allows(
            &["*.example.com"],
            &Scheme::HTTPS,
            "badexample.com"
        ));
        assert!(allows(&["[::1]:*"], &Scheme::HTTP, "[::1]:99"));
        assert!(allows(&["[::1]"], &Scheme::HTTP, "[::1]"));
    }

    #[test]
    fn bad_patterns_are_reported() {
        let (_, bad) = Hooks::allowing(&["".into(), "*.".into(), "a:b".into(), "x*y".into()]);
        assert_eq!(bad.len(), 4);
    }
}
