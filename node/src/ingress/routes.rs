//! The route table: which deployment answers to which `Host`.
//!
//! Two kinds of names lead to a deployment: the names it claimed (durable, in
//! [`Domain::Routes`], key: the host name, value: the deployment id in hex), and its own
//! `<deployment-id>.<domain>` under the ingress domain, which nothing can claim. What answers
//! is the deployment's live [`Endpoint`], attached and detached by the plugin supervisor as the
//! deployment starts and stops; a known deployment with no live endpoint is
//! [`Resolved::NotServing`] (503, retry), an unknown name [`Resolved::Unknown`] (404).
//!
//! A deployment is *known* while it has claimed names or has been attached since its last
//! [`RouteTable::release`]: detaching keeps it known (it is stopped, or restarting), releasing
//! forgets it (it is gone).
//!
//! Reads ([`RouteTable::resolve`]) take a read lock on an in-memory map and never touch the
//! store. Claims and releases are serialised by a mutex of their own, written durably first and
//! then applied in memory, so a request never sees a claim that a crash could undo.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::error::{Coded, ErrorCode};
use crate::store::{Domain, Op, Store, StoreError};

use super::Endpoint;
use super::metrics::IngressMetrics;

/// Most names one deployment may claim.
pub const MAX_NAMES: usize = 8;
/// Longest DNS name.
const MAX_NAME_LEN: usize = 253;

/// Why a claim was refused.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("`{name}` is not a host name: {reason}; use a name such as shop.example.org")]
    Invalid { name: String, reason: &'static str },
    #[error(
        "`{name}` is under the ingress domain {domain}, whose names are reserved for <deployment-id>.{domain}; claim a name of your own domain instead"
    )]
    Reserved { name: String, domain: String },
    #[error(
        "`{name}` is claimed by another deployment on this host; choose another name, or remove that deployment first"
    )]
    Taken {
        name: String,
        /// The deployment holding it (for the host's own logs; never in the message).
        by: String,
    },
    #[error("a deployment may claim at most {max} names (this would make {wanted}); claim fewer")]
    TooMany { max: usize, wanted: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for RouteError {
    fn code(&self) -> ErrorCode {
        match self {
            RouteError::Invalid { .. }
            | RouteError::Reserved { .. }
            | RouteError::TooMany { .. } => ErrorCode::BadInput,
            RouteError::Taken { .. } => ErrorCode::Conflict,
            RouteError::Store(_) => ErrorCode::Internal,
        }
    }
}

/// What a `Host` leads to.
#[derive(Clone)]
pub enum Resolved {
    /// A live endpoint.
    Endpoint { id: String, ep: Arc<dyn Endpoint> },
    /// A known deployment with no live endpoint now.
    NotServing { id: String },
    /// No deployment answers to this name.
    Unknown,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resolved::Endpoint { id, .. } => f.debug_struct("Endpoint").field("id", id).finish(),
            Resolved::NotServing { id } => f.debug_struct("NotServing").field("id", id).finish(),
            Resolved::Unknown => f.write_str("Unknown"),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Claimed name → deployment id.
    names: HashMap<String, String>,
    /// Deployment id → live endpoint.
    endpoints: HashMap<String, Arc<dyn Endpoint>>,
    /// Deployments attached since their last release.
    known: HashSet<String>,
    /// What answers every name no deployment answers to (`degroup plugin run --http`).
    fallback: Option<(String, Arc<dyn Endpoint>)>,
    /// Claimed name → the child workload its holder routed it to (in memory only: a parent
    /// routes again after a restart).
    delegated: HashMap<String, String>,
}

/// The durable claimed names plus the live endpoints.
pub struct RouteTable {
    store: Store,
    domain: String,
    inner: RwLock<Inner>,
    /// Serialises claims and releases (the store write and the map update together).
    writes: Mutex<()>,
    metrics: IngressMetrics,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("RouteTable")
            .field("domain", &self.domain)
            .field("names", &inner.names.len())
            .field("endpoints", &inner.endpoints.len())
            .finish_non_exhaustive()
    }
}

/// Normalises a DNS name: lowercase, one trailing dot stripped; labels of 1–63 characters of
/// `[a-z0-9-]` not starting or ending with `-`, at most 253 characters in all.
pub(crate) fn normalise_dns_name(name: &str) -> Result<String, &'static str> {
    let n = name.trim().to_ascii_lowercase();
    let n = n.strip_suffix('.').unwrap_or(&n);
    if n.is_empty() {
        return Err("it is empty");
    }
    if n.len() > MAX_NAME_LEN {
        return Err("it is longer than 253 characters");
    }
    for label in n.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label must have 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("labels may hold only letters, digits and `-`");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label may not start or end with `-`");
        }
    }
    Ok(n.to_owned())
}

/// The name part of a `Host` header: port stripped, lowercased, one trailing dot stripped.
fn host_of(header: &str) -> String {
    let h = header.trim();
    let name = if h.starts_with('[') {
        // An IPv6 literal, with or without a port.
        h.split_once(']')
            .map_or(h, |(v6, _)| v6.trim_start_matches('['))
    } else {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
    };
    let name = name.to_ascii_lowercase();
    match name.strip_suffix('.') {
        Some(n) => n.to_owned(),
        None => name,
    }
}

fn is_deployment_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl RouteTable {
    /// Loads the claimed names of [`Domain::Routes`]. `domain` is the ingress domain (already
    /// validated by [`super::IngressConfig::to_settings`]; lowercased here again).
    pub fn open(store: &Store, domain: &str) -> Result<Arc<Self>, StoreError> {
        let tree = store.tree(Domain::Routes)?;
        let mut inner = Inner::default();
        for pair in tree.scan_prefix(b"") {
            let (k, v) = pair?;
            match (String::from_utf8(k), String::from_utf8(v)) {
                (Ok(name), Ok(id)) if is_deployment_id(&id) => {
                    inner.names.insert(name, id);
                }
                _ => {
                    return Err(StoreError::Corrupt {
                        path: store.path().to_owned(),
                        reason: "a route is not a host name and a deployment id".into(),
                    });
                }
            }
        }
        // A name claimed under another ingress domain that is now under this one would shadow
        // `<deployment-id>.<domain>` names: such claims are dropped (durably).
        let domain = host_of(domain);
        let under: Vec<String> = inner
            .names
            .keys()
            .filter(|n| **n == domain || n.ends_with(&format!(".{domain}")))
            .cloned()
            .collect();
        if !under.is_empty() {
            let ops: Vec<Op> = under
                .iter()
                .map(|n| Op::Delete(Domain::Routes, n.as_bytes().to_vec()))
                .collect();
            store.apply_durable(&ops)?;
            for n in &under {
                tracing::warn!(name = %n, domain = %domain, "route dropped: it is under the ingress domain, reserved for <deployment-id>.{domain}");
                inner.names.remove(n);
            }
        }
        Ok(Arc::new(Self {
            store: store.clone(),
            domain,
            inner: RwLock::new(inner),
            writes: Mutex::new(()),
            metrics: IngressMetrics::default(),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ingress domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The ingress's metrics (register them with [`IngressMetrics::register`]).
    pub fn metrics(&self) -> &IngressMetrics {
        &self.metrics
    }

    /// Checks a name a deployment wants to claim and returns it normalised.
    pub fn check_name(&self, name: &str) -> Result<String, RouteError> {
        let shown: String = name.chars().take(MAX_NAME_LEN + 1).collect();
        let invalid = |reason| RouteError::Invalid {
            name: shown.clone(),
            reason,
        };
        let trimmed = name.trim().trim_start_matches('[').trim_end_matches(']');
        if trimmed.parse::<IpAddr>().is_ok() {
            return Err(invalid("it is an IP address"));
        }
        let n = normalise_dns_name(name).map_err(invalid)?;
        if n == self.domain || n.ends_with(&format!(".{}", self.domain)) {
            return Err(RouteError::Reserved {
                name: n,
                domain: self.domain.clone(),
            });
        }
        Ok(n)
    }

    /// Claims names for a deployment, all or none, durably before returning. Claiming a name
    /// the deployment already holds is a no-op; a deployment holds at most [`MAX_NAMES`].
    pub fn claim(&self, names: &[String], id: &str) -> Result<(), RouteError> {
        let mut wanted: Vec<String> = Vec::new();
        for n in names {
            let n = self.check_name(n)?;
            if !wanted.contains(&n) {
                wanted.push(n);
            }
        }
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let new: Vec<String> = {
            let inner = self.read();
            let mut new = Vec::new();
            for n in wanted {
                match inner.names.get(&n) {
                    Some(by) if by == id => {}
                    Some(by) => {
                        return Err(RouteError::Taken {
                            name: n,
                            by: by.clone(),
                        });
                    }
                    None => new.push(n),
                }
            }
            let held = inner.names.values().filter(|v| *v == id).count();
            if held + new.len() > MAX_NAMES {
                return Err(RouteError::TooMany {
                    max: MAX_NAMES,
                    wanted: held + new.len(),
                });
            }
            new
        };
        if new.is_empty() {
            return Ok(());
        }
        let ops: Vec<Op> = new
            .iter()
            .map(|n| {
                Op::Put(
                    Domain::Routes,
                    n.as_bytes().to_vec(),
                    id.as_bytes().to_vec(),
                )
            })
            .collect();
        self.store.apply_durable(&ops)?;
        let mut inner = self.write();
        for n in new {
            tracing::info!(name = %n, deployment = id, "route claimed");
            inner.names.insert(n, id.to_owned());
        }
        Ok(())
    }

    /// Removes every name of a deployment, durably, and forgets it (its `<id>.<domain>` is
    /// then unknown unless it is attached again). Returns the names it held.
    pub fn release(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names = self.names_of(id);
        if !names.is_empty() {
            let ops: Vec<Op> = names
                .iter()
                .map(|n| Op::Delete(Domain::Routes, n.as_bytes().to_vec()))
                .collect();
            self.store.apply_durable(&ops)?;
        }
        let mut inner = self.write();
        for n in &names {
            inner.names.remove(n);
            inner.delegated.remove(n);
        }
        inner.known.remove(id);
        drop(inner);
        self.metrics.forget(id);
        names.sort();
        if !names.is_empty() {
            tracing::info!(deployment = id, names = ?names, "routes released");
        }
        Ok(names)
    }

    /// The deployment holding a (normalised) name, if any.
    pub fn holder(&self, name: &str) -> Option<String> {
        self.read().names.get(name).cloned()
    }

    /// The names a deployment holds, sorted.
    pub fn names_of(&self, id: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .read()
            .names
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect();
        names.sort();
        names
    }

    /// Makes `ep` serve the deployment's requests (replacing any earlier endpoint).
    pub fn attach(&self, id: &str, ep: Arc<dyn Endpoint>) {
        let old = {
            let mut inner = self.write();
            inner.known.insert(id.to_owned());
            inner.endpoints.insert(id.to_owned(), ep)
        };
        // Dropped outside the lock: an endpoint's teardown (its idle instances) must not hold
        // up every request's resolution.
        drop(old);
    }

    /// Sends the requests for a claimed name to `to` (a child workload of its holder), or
    /// back to its holder with `None`.
    pub fn delegate(&self, name: &str, to: Option<&str>) {
        let mut inner = self.write();
        match to {
            Some(id) => inner.delegated.insert(name.to_owned(), id.to_owned()),
            None => inner.delegated.remove(name),
        };
    }

    /// Gives back to their holders every name routed to `id` (it stopped).
    pub fn undelegate_to(&self, id: &str) {
        self.write().delegated.retain(|_, v| v != id);
    }

    /// Whether the deployment has a live endpoint.
    pub fn is_attached(&self, id: &str) -> bool {
        self.read().endpoints.contains_key(id)
    }

    /// Stops routing to the deployment's endpoint (requests get 503 until it is attached
    /// again) and drops its metric series.
    pub fn detach(&self, id: &str) {
        let old = self.write().endpoints.remove(id);
        drop(old);
        self.metrics.forget(id);
    }

    /// Makes `ep` answer every `Host` that no deployment answers to: a single plugin run
    /// locally (`degroup plugin run --http`), never a host's ingress.
    pub fn set_fallback(&self, id: &str, ep: Arc<dyn Endpoint>) {
        self.write().fallback = Some((id.to_owned(), ep));
    }

    /// What a `Host` header leads to: claimed names first, then `<deployment-id>.<domain>`.
    pub fn resolve(&self, host_header: &str) -> Resolved {
        let resolved = self.resolve_deployment(host_header);
        if let Resolved::Unknown = resolved
            && let Some((id, ep)) = &self.read().fallback
        {
            return Resolved::Endpoint {
                id: id.clone(),
                ep: ep.clone(),
            };
        }
        resolved
    }

    fn resolve_deployment(&self, host_header: &str) -> Resolved {
        let host = host_of(host_header);
        let inner = self.read();
        let id = if let Some(id) = inner.names.get(&host) {
            inner.delegated.get(&host).unwrap_or(id).clone()
        } else {
            let Some(id) = host
                .strip_suffix(self.domain.as_str())
                .and_then(|p| p.strip_suffix('.'))
                .filter(|p| is_deployment_id(p))
            else {
                return Resolved::Unknown;
            };
            if !inner.known.contains(id) && !inner.names.values().any(|v| v == id) {
                return Resolved::Unknown;
            }
            id.to_owned()
        };
        match inner.endpoints.get(&id) {
            Some(ep) => Resolved::Endpoint { id, ep: ep.clone() },
            None => Resolved::NotServing { id },
        }
    }

    /// The URLs a deployment answers on: `<scheme>://<id>.<domain>[:port]/`, then one per
    /// claimed name (the port is left out when it is the scheme's default).
    pub fn urls(&self, id: &str, tls: bool, port: u16) -> Vec<String> {
        let scheme = if tls { "https" } else { "http" };
        let port = match (tls, port) {
            (false, 80) | (true, 443) => String::new(),
            (_, p) => format!(":{p}"),
        };
        std::iter::once(format!("{scheme}://{id}.{}{port}/", self.domain))
            .chain(
                self.names_of(id)
                    .into_iter()
                    .map(|n| format!("{scheme}://{n}{port}/")),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::{Request, Response};
    use futures::future::BoxFuture;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    struct Nothing;
    impl Endpoint for Nothing {
        fn serve(self: Arc<Self>, _req: Request) -> BoxFuture<'static, Response> {
            Box::pin(async { Response::default() })
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn names_are_checked() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let t = RouteTable::open(&Store::open(dir.path())?, "apps.example.org")?;
        assert_eq!(t.check_name("Shop.Example.COM.")?, "shop.example.com");
        assert_eq!(t.check_name("intranet")?, "intranet");
        for bad in [
            "",
            "a..b",
            "-a.example",
            "a-.example",
            "a_b.example",
            "127.0.0.1",
            "::1",
            "[::1]",
            &format!("{}.example", "a".repeat(64)),
            &format!("{}a", "a.".repeat(127)),
        ] {
            assert!(
                matches!(t.check_name(bad), Err(RouteError::Invalid { .. })),
                "{bad}"
            );
        }
        for reserved in [
            "apps.example.org",
            "x.apps.example.org",
            &format!("{A}.APPS.example.org"),
        ] {
            assert!(
                matches!(t.check_name(reserved), Err(RouteError::Reserved { .. })),
                "{reserved}"
            );
        }
        // A name merely ending in the domain's letters is not under it.
        assert!(t.check_name("myapps.example.org").is_ok());
        Ok(())
    }

    #[test]
    fn a_name_delegated_to_a_child_goes_to_it_until_given_back()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let t = RouteTable::open(&Store::open(dir.path())?, "localhost")?;
        t.claim(&names(&["shop.example"]), A)?;
        t.attach(A, Arc::new(Nothing));
        t.attach(B, Arc::new(Nothing));
        t.delegate("shop.example", Some(B));
        assert!(matches!(t.resolve("shop.example"), Resolved::Endpoint { id, .. } if id == B));
        t.delegate("shop.example", None);
        assert!(matches!(t.resolve("shop.example"), Resolved::Endpoint { id, .. } if id == A));
        t.delegate("shop.example", Some(B));
        t.undelegate_to(B);
        assert!(matches!(t.resolve("shop.example"), Resolved::Endpoint { id, .. } if id == A));
        t.delegate("shop.example", Some(B));
        t.release(A)?;
        t.claim(&names(&["shop.example"]), A)?;
        assert!(
            matches!(t.resolve("shop.example"), Resolved::NotServing { id } | Resolved::Endpoint { id, .. } if id == A)
        );
        Ok(())
    }

    #[test]
    fn claims_conflict_persist_and_release() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        {
            let store = Store::open(dir.path())?;
            let t = RouteTable::open(&store, "localhost")?;
            t.claim(&names(&["a.example", "b.example"]), A)?;
            t.claim(&names(&["A.example."]), A)?; // idempotent
            match t.claim(&names(&["c.example", "b.example"]), B) {
                Err(e @ RouteError::Taken { .. }) => {
                    assert!(!e.to_string().contains(A), "{e}");
                    assert_eq!(e.code(), ErrorCode::Conflict);
                }
                other => panic!("expected Taken, got {other:?}"),
            }
            // All or nothing: c.example was not claimed.
            assert!(t.names_of(B).is_empty());
            assert!(matches!(t.resolve("c.example"), Resolved::Unknown));
            let many: Vec<String> = (0..7).map(|i| format!("n{i}.example")).collect();
            assert!(matches!(
                t.claim(&many, A),
                Err(RouteError::TooMany { wanted: 9, .. })
            ));
        }
        // sled lets go of its lock file when its last handle (its flusher thread's too) is
        // gone, which may be a moment after the scope ends.
        let mut tries = 0;
        let store = loop {
            match Store::open(dir.path()) {
                Err(crate::store::StoreError::Locked { .. }) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        let t = RouteTable::open(&store, "localhost")?;
        assert_eq!(t.names_of(A), ["a.example", "b.example"]);
        assert!(matches!(t.resolve("B.EXAMPLE:8080"), Resolved::NotServing { id } if id == A));
        assert_eq!(t.release(A)?, ["a.example", "b.example"]);
        assert!(matches!(t.resolve("a.example"), Resolved::Unknown));
        t.claim(&names(&["b.example"]), B)?;
        drop(t);
        drop(store);
        let t = RouteTable::open(&Store::open(dir.path())?, "localhost")?;
        assert_eq!(t.names_of(B), ["b.example"]);
        assert!(t.names_of(A).is_empty());
        Ok(())
    }

    #[test]
    fn resolution_by_name_and_id() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let t = RouteTable::open(&Store::open(dir.path())?, "LocalHost")?;
        assert!(matches!(
            t.resolve(&format!("{A}.localhost")),
            Resolved::Unknown
        ));
        t.attach(A, Arc::new(Nothing));
        t.claim(&names(&["shop.example"]), A)?;
        for host in [
            format!("{A}.localhost"),
            format!("{}.LOCALHOST:8080", A.to_uppercase()),
            format!("{A}.localhost."),
            "shop.example".to_owned(),
            "Shop.Example:80".to_owned(),
        ] {
            assert!(
                matches!(t.resolve(&host), Resolved::Endpoint { ref id, .. } if id == A),
                "{host}"
            );
        }
        for host in ["localhost", "other.localhost", "[::1]:80", "127.0.0.1", ""] {
            assert!(matches!(t.resolve(host), Resolved::Unknown), "{host}");
        }
        t.detach(A);
        assert!(matches!(
            t.resolve(&format!("{A}.localhost")),
            Resolved::NotServing { .. }
        ));
        assert_eq!(
            t.urls(A, false, 8080),
            [
                format!("http://{A}.localhost:8080/"),
                "http://shop.example:8080/".to_owned()
            ]
        );
        assert_eq!(t.urls(A, true, 443)[1], "https://shop.example/");
        t.release(A)?;
        assert!(matches!(
            t.resolve(&format!("{A}.localhost")),
            Resolved::Unknown
        ));
        Ok(())
    }
}
