//! Route handlers.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;

use super::{ApiState, ErrorBody, StatusResponse, auth};
use crate::error::{Coded, ErrorCode};
use crate::metrics::{ApiRequestLabels, encode};

/// An error answer: the code's status and the JSON body.
pub(super) fn error(code: ErrorCode, message: &str) -> Response {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(ErrorBody::new(code, message))).into_response()
}

/// The answer to a domain error.
pub(super) fn fail(e: &impl Coded) -> Response {
    error(e.code(), &e.to_string())
}

/// The answer to a domain result.
pub(super) fn respond<T: serde::Serialize, E: Coded>(r: Result<T, E>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => fail(&e),
    }
}

pub(super) fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route(
            "/v1/capacity",
            get(super::capacity::show).put(super::capacity::set),
        )
        .route("/v1/find", get(super::capacity::find))
        .route("/v1/adverts", get(super::capacity::adverts))
        .merge(super::lease::routes())
        .merge(super::deploy::routes())
        .merge(super::packages::routes())
        .merge(super::group::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

pub(super) fn metrics_router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || async move { prometheus_text(&registry) }),
        )
        .fallback(not_found)
}

async fn count_requests(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "other".into());
    let response = next.run(request).await;
    state
        .metrics
        .api_requests
        .get_or_create(&ApiRequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

async fn not_found() -> Response {
    error(
        ErrorCode::NotFound,
        "no such route; see docs/operator-guide.md for the admin API",
    )
}

async fn status(State(state): State<Arc<ApiState>>) -> Response {
    let (hosted, rented) = state.leases.counts().await.unwrap_or((0, 0));
    let (dep_hosted, dep_rented) = state.plugins.counts().await.unwrap_or((0, 0));
    match state.net.status().await {
        Ok(net) => Json(StatusResponse {
            leases_hosted: hosted,
            leases_rented: rented,
            deployments_hosted: dep_hosted,
            deployments_rented: dep_rented,
            peer_id: state.net.local_peer_id().to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            data_dir: state.data_dir.clone(),
            listen_addrs: net.listen_addrs.iter().map(ToString::to_string).collect(),
            connected_peers: net
                .connected_peers
                .iter()
                .map(ToString::to_string)
                .collect(),
            uptime_s: state.started.elapsed().as_secs(),
            api_addr: state.api_addr.to_string(),
            adverts_known: state.capacity.book().len(),
            ingress: state.ingress.as_ref().map(|i| i.stats()),
        })
        .into_response(),
        Err(e) => error(ErrorCode::Unavailable, &e.to_string()),
    }
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let up = i64::try_from(state.started.elapsed().as_secs()).unwrap_or(i64::MAX);
    state.metrics.uptime_seconds.set(up);
    prometheus_text(&state.registry).into_response()
}

fn prometheus_text(registry: &Registry) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        encode(registry),
    )
        .into_response()
}
