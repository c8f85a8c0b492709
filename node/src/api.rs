//! The admin API: HTTP on loopback, every route behind a bearer token.
//!
//! At start the node binds the configured address (`127.0.0.1:0` by default), then writes
//! `api.token` and `api.addr` into the data directory, both mode 0600 and both atomically, the
//! address last: a CLI that finds `api.addr` also finds the token. The files are removed at a
//! clean shutdown. Routes: `GET /v1/status`, `GET|PUT /v1/capacity`, `GET /v1/find?q=…`,
//! `GET /v1/adverts`, the lease routes under `/v1/leases` (see [`lease`]), the deployment routes under
//! `/v1/deployments` (see [`deploy`]), the package routes under `/v1/packages` (see [`packages`]), the group routes under
//! `/v1/groups` (see [`group`]), and `GET /metrics` (Prometheus text; also served without a token on
//! `--metrics ADDR` when that is set). Errors are JSON `{"error": "…", "code": "…", "retryable":
//! bool}`: a message for people, a stable [`ErrorCode`] for programs, and whether the same
//! request may succeed if sent again (see `docs/operator-guide.md`).

mod auth;
pub(crate) mod capacity;
pub mod deploy;
pub mod group;
pub mod lease;
pub mod packages;
mod routes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::capacity::CapacityHandle;
use crate::error::ErrorCode;
use crate::group::Groups;
use crate::identity::write_private;
use crate::lease::LeaseHandle;
use crate::metrics::NodeMetrics;
use crate::net::Network;
use crate::plugin::PluginHandle;

/// File with the API's address (`IP:PORT`).
pub const ADDR_FILE: &str = "api.addr";
/// File with the API's bearer token.
pub const TOKEN_FILE: &str = "api.token";

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    pub peer_id: String,
    pub version: String,
    pub data_dir: PathBuf,
    pub listen_addrs: Vec<String>,
    pub connected_peers: Vec<String>,
    pub uptime_s: u64,
    pub api_addr: String,
    /// Valid capacity adverts this node holds (its own included).
    pub adverts_known: usize,
    /// Active leases this node hosts.
    pub leases_hosted: usize,
    /// Active leases this node holds as a tenant.
    pub leases_rented: usize,
    /// Deployments running on this node (for tenants of its leases).
    #[serde(default)]
    pub deployments_hosted: usize,
    /// Live deployments this node made as a tenant, on other hosts.
    #[serde(default)]
    pub deployments_rented: usize,
    /// The HTTP ingress's counters, when the node runs one.
    #[serde(default)]
    pub ingress: Option<crate::ingress::IngressStats>,
}

/// An API error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do, for people.
    pub error: String,
    /// The stable code ([`ErrorCode::as_str`]); absent from nodes older than the codes.
    #[serde(default)]
    pub code: Option<String>,
    /// Whether the same request may succeed if sent again.
    #[serde(default)]
    pub retryable: bool,
}

impl ErrorBody {
    /// The body of an error with a code.
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code: Some(code.as_str().to_owned()),
            retryable: code.retryable(),
        }
    }

    /// The code, when it is one this build knows.
    pub fn code(&self) -> Option<ErrorCode> {
        self.code.as_deref().and_then(ErrorCode::parse)
    }
}

/// What the handlers share.
#[derive(Debug)]
pub(crate) struct ApiState {
    pub token: String,
    pub data_dir: PathBuf,
    pub api_addr: SocketAddr,
    pub started: Instant,
    pub net: Network,
    pub capacity: CapacityHandle,
    pub leases: LeaseHandle,
    pub plugins: PluginHandle,
    pub groups: Groups,
    pub registry: Arc<Registry>,
    pub metrics: NodeMetrics,
    pub ingress: Option<Arc<crate::ingress::IngressHandle>>,
}

/// API start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen for the admin API on {addr}: {source}; pick another --api address")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// A running admin API.
#[derive(Debug)]
pub struct Api {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    data_dir: PathBuf,
}

/// Everything the API needs from the node.
#[derive(Debug)]
pub struct ApiConfig {
    pub bind: SocketAddr,
    pub metrics_bind: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub started: Instant,
    /// The HTTP ingress, when the node runs one (its counters are in `status`).
    pub ingress: Option<Arc<crate::ingress::IngressHandle>>,
}

impl Api {
    /// Binds, writes `api.token` and `api.addr`, and serves until `shutdown` is cancelled.
    #[allow(clippy::too_many_arguments)] // the node's services, each a handle
    pub async fn start(
        config: ApiConfig,
        net: Network,
        capacity: CapacityHandle,
        leases: LeaseHandle,
        plugins: PluginHandle,
        groups: Groups,
        registry: Arc<Registry>,
        metrics: NodeMetrics,
        shutdown: CancellationToken,
    ) -> Result<Self, ApiError> {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| ApiError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ApiError::Bind {
            addr: config.bind,
            source,
        })?;
        let metrics_listener = match config.metrics_bind {
            Some(bind) => Some(
                tokio::net::TcpListener::bind(bind)
                    .await
                    .map_err(|source| ApiError::Bind { addr: bind, source })?,
            ),
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());

        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| ApiError::Random(e.to_string()))?;
        let token = hex::encode(raw);
        let state = Arc::new(ApiState {
            token: token.clone(),
            data_dir: config.data_dir.clone(),
            api_addr: addr,
            started: config.started,
            net,
            capacity,
            leases,
            plugins,
            groups,
            registry: registry.clone(),
            metrics,
            ingress: config.ingress.clone(),
        });
        let mut tasks = Vec::new();
        tasks.push(serve(
            listener,
            routes::router(state.clone()),
            shutdown.clone(),
        ));
        if let Some(l) = metrics_listener {
            tasks.push(serve(l, routes::metrics_router(registry), shutdown));
        }
        write_file(&config.data_dir, TOKEN_FILE, token.as_bytes())?;
        write_file(&config.data_dir, ADDR_FILE, format!("{addr}\n").as_bytes())?;
        tracing::info!(%addr, "admin API listening");
        if let Some(m) = metrics_addr {
            tracing::info!(addr = %m, "metrics listening");
        }
        Ok(Self {
            addr,
            metrics_addr,
            tasks,
            data_dir: config.data_dir,
        })
    }

    /// Waits for the servers to stop (after shutdown was cancelled) and removes the files.
    pub async fn stopped(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        for f in [ADDR_FILE, TOKEN_FILE] {
            let _ = std::fs::remove_file(self.data_dir.join(f));
        }
    }
}

fn write_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), ApiError> {
    let path = dir.join(name);
    write_private(&path, contents).map_err(|source| ApiError::File { path, source })
}

fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "admin API server stopped with an error");
        }
    })
}
