//! Group routes (the tenant's node):
//!
//! - `GET /v1/groups` — every group this node made ([`GroupView`]s).
//! - `POST /v1/groups` ([`CreateBody`]) — a signed, empty group, version 1.
//! - `GET /v1/groups/{name}` — one group: members with their hosts, packages, roles, and the
//!   state their hosts report.
//!
//! Members join with `POST /v1/deployments` and `"group": NAME`, and leave when stopped.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::routes::respond;
use crate::group::{GroupError, GroupView};

/// Body of `POST /v1/groups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// `[a-z0-9-]`, 1 to 64 characters.
    pub name: String,
}

pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/groups", get(list).post(create))
        .route("/v1/groups/{name}", get(show))
}

/// The state of every deployment this node knows, as their hosts report it.
async fn states(state: &ApiState) -> HashMap<String, String> {
    state
        .plugins
        .list()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|v| (v.id, v.state.to_string()))
        .collect()
}

async fn list(State(state): State<Arc<ApiState>>) -> Response {
    let groups = state.groups.list();
    let states = if groups.iter().any(|g| !g.doc.members.is_empty()) {
        states(&state).await
    } else {
        HashMap::new()
    };
    let views: Vec<GroupView> = groups.iter().map(|g| g.view(&states)).collect();
    respond(Ok::<_, GroupError>(views))
}

async fn create(
    State(state): State<Arc<ApiState>>,
    b: Result<Json<CreateBody>, JsonRejection>,
) -> Response {
    let r = b
        .map_err(|e| GroupError::BadInput(e.body_text()))
        .and_then(|Json(b)| state.groups.create(&b.name));
    respond(r)
}

async fn show(State(state): State<Arc<ApiState>>, Path(name): Path<String>) -> Response {
    let g = match state.groups.get(&name) {
        Ok(g) => g,
        Err(e) => return respond(Err::<GroupView, _>(e)),
    };
    let states = states(&state).await;
    respond(Ok::<_, GroupError>(g.view(&states)))
}
