//! Capacity routes: this node's offer, the federation's adverts, and discovery.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query as QueryParams, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::routes::{error, respond};
use crate::capacity::offer::OfferSettings;
use crate::capacity::query::{self, QueryError};
use crate::error::ErrorCode;
use crate::resources::now_ms;

/// Body of `PUT /v1/capacity`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CapacityUpdate {
    #[serde(default)]
    pub settings: OfferSettings,
    /// Allow offering more than the detected hardware.
    #[serde(default)]
    pub force: bool,
}

/// Query string of `GET /v1/find`.
#[derive(Debug, Deserialize)]
pub(crate) struct FindParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    explain: bool,
    limit: Option<usize>,
}

/// Body of a query error: the message, and where in the query it is.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct QueryErrorBody {
    pub error: String,
    /// Always `bad_input`.
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub retryable: bool,
    pub position: usize,
    pub len: usize,
}

pub(super) async fn show(State(state): State<Arc<ApiState>>) -> Response {
    respond(state.capacity.show().await)
}

pub(super) async fn set(
    State(state): State<Arc<ApiState>>,
    body: Result<Json<CapacityUpdate>, JsonRejection>,
) -> Response {
    let Json(update) = match body {
        Ok(b) => b,
        Err(e) => return error(ErrorCode::BadInput, &e.body_text()),
    };
    respond(state.capacity.set(update.settings, update.force).await)
}

pub(super) async fn find(
    State(state): State<Arc<ApiState>>,
    params: Result<QueryParams<FindParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let QueryParams(params) = match params {
        Ok(p) => p,
        Err(e) => return error(ErrorCode::BadInput, &e.body_text()),
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
                    code: ErrorCode::BadInput.as_str().to_owned(),
                    retryable: false,
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
        Err(e) => error(ErrorCode::Internal, &e.to_string()),
    }
}

pub(super) async fn adverts(State(state): State<Arc<ApiState>>) -> Response {
    Json(state.capacity.book().list()).into_response()
}
