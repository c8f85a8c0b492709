//! Deployment routes (the tenant's node and the host's both answer them).
//!
//! - `GET /v1/deployments` — every deployment this node knows: the ones it hosts (with live
//!   counters) and the ones it deployed as a tenant (asked of their hosts).
//! - `POST /v1/deployments` — deploy a package onto a lease this node rents ([`DeployBody`]):
//!   a `.dgp` file, or a reference the catalogue resolves; with `?group=NAME`, the deployment then
//!   joins that group of this tenant's (see [`super::group`]).
//! - `GET /v1/deployments/{id}` — one deployment (id or unique prefix).
//! - `GET /v1/deployments/{id}/logs?after=SEQ&limit=N` — a page of its logs; `after` is the
//!   last sequence number already seen (`--follow` polls with it).
//! - `POST /v1/deployments/{id}/upgrade` ([`UpgradeBody`]) — new code, same key-value state.
//! - `POST /v1/deployments/{id}/message` ([`MessageBody`]) — calls the plugin's `message`.
//! - `POST /v1/deployments/{id}/stop`.
//!
//! Packages travel as base64 in JSON; the body limit is sized for the largest package.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::routes::{fail, respond};
use crate::group::Member;
use crate::group::doc::MAX_ROLE;
use crate::plugin::PluginError;
use crate::plugin::deployment::{Side, View};
use crate::plugin::package::MAX_PACKAGE;
use crate::plugin::supervisor::{DeployParams, Source};
use crate::resources::parse_id;

/// Most log lines one `logs` page returns.
const MAX_PAGE: u32 = 1000;

/// Body of `POST /v1/deployments`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    /// Lease id or unique prefix.
    pub lease: String,
    /// The `.dgp` package, base64 (or give `reference`).
    #[serde(default)]
    pub package: Option<String>,
    /// A package reference the catalogue resolves: `greeter`, `greeter@0.1.0`,
    /// `5a1f…/greeter@^0.1`, `blake3:HEX`.
    #[serde(default)]
    pub reference: Option<String>,
    /// `key=value` pairs handed to the plugin's `init`.
    #[serde(default)]
    pub config: Vec<(String, String)>,
    /// Host names to claim on the host's HTTP ingress (`api.example.fr`); the deployment
    /// must serve HTTP (export `wasi:http/incoming-handler`).
    #[serde(default)]
    pub routes: Vec<String>,
}

/// Query of `POST /v1/deployments`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployQuery {
    /// A group of this tenant's (`degroup group create`) that the deployment joins once its
    /// host has confirmed it.
    #[serde(default)]
    pub group: Option<String>,
}

/// Body of `POST /v1/deployments/{id}/upgrade`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeBody {
    /// The new `.dgp` package, base64 (or give `reference`).
    #[serde(default)]
    pub package: Option<String>,
    /// A package reference (see [`DeployBody::reference`]).
    #[serde(default)]
    pub reference: Option<String>,
    /// New configuration; absent keeps the current one.
    #[serde(default)]
    pub config: Option<Vec<(String, String)>>,
    /// More host names to claim (the ones held stay).
    #[serde(default)]
    pub routes: Vec<String>,
}

/// Body of `POST /v1/deployments/{id}/message`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// The payload, base64.
    pub payload: String,
}

/// Query of the logs route.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    #[serde(default)]
    pub after: u64,
    #[serde(default)]
    pub limit: Option<u32>,
}

pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/deployments", get(list).post(deploy))
        .route("/v1/deployments/{id}", get(show))
        .route("/v1/deployments/{id}/logs", get(logs))
        .route("/v1/deployments/{id}/upgrade", post(upgrade))
        .route("/v1/deployments/{id}/message", post(message))
        .route("/v1/deployments/{id}/stop", post(stop))
        // base64 grows a package by 4/3; leave room for the JSON around it.
        .layer(DefaultBodyLimit::max(MAX_PACKAGE / 3 * 4 + 64 * 1024))
}

pub(super) fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, PluginError> {
    b.map(|Json(v)| v)
        .map_err(|e| PluginError::BadInput(e.body_text()))
}

/// What a body names to deploy: the package or a reference, exactly one.
fn source(package: Option<String>, reference: Option<String>) -> Result<Source, PluginError> {
    match (package, reference) {
        (Some(p), None) => Ok(Source::File(unbase64("package", &p)?)),
        (None, Some(r)) => Ok(Source::Reference(r)),
        _ => Err(PluginError::BadInput(
            "give either `package` (a .dgp file, base64) or `reference` (e.g. greeter@0.1.0)"
                .into(),
        )),
    }
}

pub(super) fn unbase64(what: &str, text: &str) -> Result<Vec<u8>, PluginError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| PluginError::BadInput(format!("{what} is not valid base64: {e}")))
}

async fn list(State(state): State<Arc<ApiState>>) -> Response {
    respond(state.plugins.list().await)
}

async fn show(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    respond(state.plugins.get(&id).await)
}

async fn deploy(
    State(state): State<Arc<ApiState>>,
    q: Result<Query<DeployQuery>, QueryRejection>,
    b: Result<Json<DeployBody>, JsonRejection>,
) -> Response {
    let r = async {
        let Query(q) = q.map_err(|e| PluginError::BadInput(e.body_text()))?;
        let b = body(b)?;
        // Refused before anything is deployed when the group does not exist.
        if let Some(g) = &q.group {
            state.groups.get(g)?;
        }
        let source = source(b.package, b.reference)?;
        let role = b
            .config
            .iter()
            .find(|(k, _)| k == "role")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if q.group.is_some() && role.len() > MAX_ROLE {
            return Err(PluginError::BadInput(format!(
                "the role of a group member is at most {MAX_ROLE} bytes"
            )));
        }
        let view = state
            .plugins
            .deploy(DeployParams {
                lease: b.lease,
                source,
                config: b.config,
                routes: b.routes,
            })
            .await?;
        if let Some(g) = &q.group {
            join_group(&state, g, &view, role)?;
        }
        Ok::<_, PluginError>(view)
    };
    respond(r.await)
}

/// Adds a deployment its host confirmed to a group (signed, stored, pushed to every host).
fn join_group(state: &ApiState, group: &str, v: &View, role: String) -> Result<(), PluginError> {
    let lease = parse_id(&v.lease).ok_or_else(|| {
        PluginError::Protocol("the deployment's lease id is not 16 bytes of hex".into())
    })?;
    let member = Member {
        id: v.id.clone(),
        host: v.host.clone(),
        package: format!("{}@{}", v.name, v.version),
        role,
    };
    state
        .groups
        .add_member(group, member, lease)
        .map(|_| ())
        .map_err(|e| {
            PluginError::Conflict(format!(
                "deployment {} runs, but did not join group {group:?}: {e}",
                v.id
            ))
        })
}

async fn upgrade(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    b: Result<Json<UpgradeBody>, JsonRejection>,
) -> Response {
    let r = async {
        let b = body(b)?;
        let source = source(b.package, b.reference)?;
        state.plugins.upgrade(&id, source, b.config, b.routes).await
    };
    respond(r.await)
}

async fn message(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    b: Result<Json<MessageBody>, JsonRejection>,
) -> Response {
    let r = async {
        let b = body(b)?;
        let payload = unbase64("payload", &b.payload)?;
        state.plugins.message(&id, payload).await
    };
    respond(r.await.map(|()| serde_json::json!({"delivered": true})))
}

async fn logs(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return fail(&PluginError::BadInput(e.body_text())),
    };
    let limit = q.limit.unwrap_or(200).clamp(1, MAX_PAGE);
    respond(state.plugins.logs(&id, q.after, limit).await)
}

async fn stop(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let r = state.plugins.stop(&id).await;
    if let Ok(v) = &r
        && v.side == Side::Tenant
        && let Err(e) = state.groups.remove_deployment(&v.id)
    {
        tracing::error!(deployment = %v.id, error = %e, "stopped, but not removed from its group");
    }
    respond(r)
}
