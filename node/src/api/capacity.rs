//! Capacity routes: this node's offer, the federation's adverts, and discovery.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query as QueryParams, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::routes::error;
use crate::capacity::CapacityError;
use crate::capacity::advert::now_ms;
use crate::capacity::offer::OfferSettings;
use crate::capacity::query::{self, QueryError};

/// Body of `PUT /v1/capacity`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityUpdate {
    #[serde(default)]
    pub settings: OfferSettings,
    /// Allow offering more than the detected hardware.
    #[serde(default)]
    pub force: bool,
}

/// Query string of `GET /v1/find`.
#[derive(Debug, Deserialize)]
pub struct FindParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    explain: bool,
    limit: Option<usize>,
}

/// Body of a query error: the message, and where in the query it is.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueryErrorBody {
    pub error: String,
    pub position: usize,
    pub len: usize,
}

fn capacity_error(e: &CapacityError) -> Response {
    let status = match e {
        CapacityError::Invalid(_) => StatusCode::BAD_REQUEST,
        CapacityError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        CapacityError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &e.to_string()).into_response()
}

pub(super) async fn show(State(state): State<Arc<ApiState>>) -> Response {
    match state.capacity.show().await {
        Ok(view) => Json(view).into_response(),
        Err(e) => capacity_error(&e),
    }
}

pub(super) async fn set(
    State(state): State<Arc<ApiState>>,
    body: Result<Json<CapacityUpdate>, JsonRejection>,
) -> Response {
    let Json(update) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()).into_response(),
    };
    match state.capacity.set(update.settings, update.force).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => capacity_error(&e),
    }
}

pub(super) async fn find(
    State(state): State<Arc<ApiState>>,
    params: Result<QueryParams<FindParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let QueryParams(params) = match params {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()).into_response(),
    };
    let parsed = match query::parse(&params.q) {
        Ok(q) => q,
        Err(QueryError {
            message,
            position,
            len,
            ..
        }) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(QueryErrorBody {
                    error: message,
                    position,
                    len,
                }),
            )
                .into_response();
        }
    };
    let book = state.capacity.book().clone();
    let text = params.q.clone();
    let result = tokio::task::spawn_blocking(move || {
        book.find(&parsed, &text, now_ms(), params.limit, params.explain)
    })
    .await;
    match result {
        Ok(r) => Json(r).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()).into_response(),
    }
}

pub(super) async fn adverts(State(state): State<Arc<ApiState>>) -> Response {
    Json(state.capacity.book().list()).into_response()
}
