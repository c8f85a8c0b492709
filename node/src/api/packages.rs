//! Package routes: the federation's catalogue and this node's blob store.
//!
//! - `GET /v1/packages?q=TEXT` — releases whose name or description contains `TEXT`, with
//!   their providers (for the first results).
//! - `GET /v1/packages/info?ref=REF` — what a reference resolves to, its providers and the
//!   publisher's other versions.
//! - `POST /v1/packages` ([`PublishBody`]) — publish: the package and its release, signed by
//!   the package's publisher.
//! - `POST /v1/packages/fetch` ([`FetchBody`]) — mirror a package: fetch, verify, keep,
//!   provide.
//! - `GET /v1/packages/progress/{hash}` — bytes done and total of a fetch under way.
//! - `POST /v1/packages/yank` ([`YankBody`]) — a yank signed by the release's publisher.
//! - `GET /v1/blobs` — the blobs this node holds, with their visibility and holds.
//!
//! Packages and signed documents travel as base64 in JSON.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::deploy::{body, unbase64};
use super::routes::{fail, respond};
use crate::error::ErrorCode;
use crate::plugin::PluginError;
use crate::plugin::package::MAX_PACKAGE;

/// Query of `GET /v1/packages`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
}

/// Query of `GET /v1/packages/info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoQuery {
    #[serde(rename = "ref")]
    pub reference: String,
}

/// Body of `POST /v1/packages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// The `.dgp` file, base64.
    pub package: String,
    /// The signed `degroup/release/v1` envelope, base64.
    pub release: String,
}

/// Body of `POST /v1/packages/fetch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchBody {
    #[serde(rename = "ref")]
    pub reference: String,
    /// Peer ids to ask first.
    #[serde(default)]
    pub from: Vec<String>,
}

/// Body of `POST /v1/packages/yank`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YankBody {
    /// The signed `degroup/yank/v1` envelope, base64.
    pub yank: String,
}

/// `GET /v1/packages/progress/{hash}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/packages", get(search).post(publish))
        .route("/v1/packages/info", get(info))
        .route("/v1/packages/fetch", post(fetch))
        .route("/v1/packages/yank", post(yank))
        .route("/v1/packages/progress/{hash}", get(progress))
        .route("/v1/blobs", get(blobs))
        .layer(DefaultBodyLimit::max(MAX_PACKAGE / 3 * 4 + 64 * 1024))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, PluginError> {
    q.map(|Query(v)| v)
        .map_err(|e| PluginError::BadInput(e.body_text()))
}

async fn search(
    State(state): State<Arc<ApiState>>,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Response {
    match query(q) {
        Ok(q) => Json(state.plugins.distribution().search(&q.q).await).into_response(),
        Err(e) => fail(&e),
    }
}

async fn info(
    State(state): State<Arc<ApiState>>,
    q: Result<Query<InfoQuery>, QueryRejection>,
) -> Response {
    let r = async {
        let q = query(q)?;
        state.plugins.distribution().info(&q.reference).await
    };
    respond(r.await)
}

async fn publish(
    State(state): State<Arc<ApiState>>,
    b: Result<Json<PublishBody>, JsonRejection>,
) -> Response {
    let r = async {
        let b = body(b)?;
        let package = unbase64("package", &b.package)?;
        let release = unbase64("release", &b.release)?;
        state.plugins.distribution().publish(package, release).await
    };
    respond(r.await)
}

async fn fetch(
    State(state): State<Arc<ApiState>>,
    b: Result<Json<FetchBody>, JsonRejection>,
) -> Response {
    let r = async {
        let b = body(b)?;
        let from = b
            .from
            .iter()
            .take(8)
            .map(|p| {
                p.parse::<libp2p::PeerId>()
                    .map_err(|_| PluginError::BadInput(format!("{p:?} is not a peer id")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        state
            .plugins
            .distribution()
            .fetch(&b.reference, &from)
            .await
    };
    respond(r.await)
}

async fn yank(
    State(state): State<Arc<ApiState>>,
    b: Result<Json<YankBody>, JsonRejection>,
) -> Response {
    let r = async {
        let b = body(b)?;
        let yank = unbase64("yank", &b.yank)?;
        state.plugins.distribution().yank(yank).await
    };
    respond(r.await)
}

async fn progress(State(state): State<Arc<ApiState>>, Path(hash): Path<String>) -> Response {
    let parsed = hex::decode(hash.trim_start_matches("blake3:"))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    let Some(hash) = parsed else {
        return super::routes::error(ErrorCode::BadInput, "give the hash as 64 hex digits");
    };
    match state.plugins.distribution().blobs().progress(&hash) {
        Some((done, total)) => Json(Progress { done, total }).into_response(),
        None => super::routes::error(ErrorCode::NotFound, "no fetch of that hash under way"),
    }
}

async fn blobs(State(state): State<Arc<ApiState>>) -> Response {
    Json(state.plugins.distribution().blobs().list()).into_response()
}
