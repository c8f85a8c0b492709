//! Lease routes.
//!
//! - `GET /v1/leases` — every lease and the host's totals ([`LeaseList`]).
//! - `POST /v1/leases` — negotiate a lease with a host ([`CreateBody`]); answers once it is
//!   committed on both sides.
//! - `GET /v1/leases/{id}` — one lease (id or unique prefix), `verified` recomputed.
//! - `GET /v1/leases/{id}/export` — the signed bytes ([`LeaseExport`]).
//! - `GET /v1/leases/{id}/receipts` — signed usage receipts.
//! - `POST /v1/leases/{id}/renew` ([`RenewBody`]), `/release`, `/terminate` ([`TerminateBody`]).
//! - `GET /v1/leases-check` — the reservation invariant (for tests and the testnet).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::routes::{fail, respond};
use crate::lease::LeaseError;
use crate::lease::tenant::CreateParams;
use crate::lease::view::LeaseView;
use crate::resources::Resources;

/// Body of `POST /v1/leases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// The host's peer id.
    pub host: String,
    #[serde(default)]
    pub cpu_millis: u64,
    #[serde(default)]
    pub mem_bytes: u64,
    #[serde(default)]
    pub disk_bytes: u64,
    #[serde(default)]
    pub gpus: u32,
    pub duration_ms: u64,
    /// Highest acceptable price of the slice per hour, micro-euros.
    #[serde(default)]
    pub max_hourly_micros: Option<u64>,
    /// 32 hex digits; reuse it to retry safely.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Body of `POST /v1/leases/{id}/renew`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    pub duration_ms: u64,
    #[serde(default)]
    pub max_hourly_micros: Option<u64>,
}

/// Body of `POST /v1/leases/{id}/terminate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminateBody {
    pub reason: String,
}

/// `GET /v1/leases-check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResponse {
    pub ok: bool,
    pub problem: Option<String>,
}

pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/leases", get(list).post(create))
        .route("/v1/leases-check", get(check))
        .route("/v1/leases/{id}", get(show))
        .route("/v1/leases/{id}/export", get(export))
        .route("/v1/leases/{id}/receipts", get(receipts))
        .route("/v1/leases/{id}/renew", post(renew))
        .route("/v1/leases/{id}/release", post(release))
        .route("/v1/leases/{id}/terminate", post(terminate))
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, LeaseError> {
    b.map(|Json(v)| v)
        .map_err(|e| LeaseError::BadInput(e.body_text()))
}

async fn list(State(state): State<Arc<ApiState>>) -> Response {
    respond(state.leases.list().await)
}

async fn check(State(state): State<Arc<ApiState>>) -> Response {
    respond(state.leases.check().await.map(|r| CheckResponse {
        ok: r.is_ok(),
        problem: r.err(),
    }))
}

async fn show(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    respond(state.leases.get(&id).await.map(|l| LeaseView::of(&l)))
}

async fn export(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    respond(state.leases.export(&id).await)
}

async fn receipts(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    respond(state.leases.receipts(&id).await)
}

fn create_params(b: &CreateBody) -> Result<CreateParams, LeaseError> {
    let host = b.host.trim().parse().map_err(|_| {
        LeaseError::BadInput(format!(
            "--host {:?} is not a peer id; copy one from `degroup find`",
            b.host
        ))
    })?;
    let idempotency_key = b
        .idempotency_key
        .as_deref()
        .map(|k| {
            let mut out = [0u8; 16];
            hex::decode_to_slice(k.trim(), &mut out)
                .map(|()| out)
                .map_err(|_| {
                    LeaseError::BadInput("the idempotency key must be 32 hex digits".into())
                })
        })
        .transpose()?;
    if b.duration_ms == 0 {
        return Err(LeaseError::BadInput(
            "give the lease a duration with --for, e.g. --for 24h".into(),
        ));
    }
    Ok(CreateParams {
        host,
        slice: Resources {
            cpu_millis: b.cpu_millis,
            mem_bytes: b.mem_bytes,
            disk_bytes: b.disk_bytes,
            gpus: b.gpus,
        },
        duration_ms: b.duration_ms,
        max_hourly_micros: b.max_hourly_micros,
        idempotency_key,
    })
}

async fn create(
    State(state): State<Arc<ApiState>>,
    b: Result<Json<CreateBody>, JsonRejection>,
) -> Response {
    let b = match body(b) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let params = match create_params(&b) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    respond(state.leases.create(&params).await)
}

async fn renew(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    b: Result<Json<RenewBody>, JsonRejection>,
) -> Response {
    let b = match body(b) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    respond(
        state
            .leases
            .renew(&id, b.duration_ms, b.max_hourly_micros)
            .await,
    )
}

async fn release(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    respond(state.leases.release(&id).await)
}

async fn terminate(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    b: Result<Json<TerminateBody>, JsonRejection>,
) -> Response {
    let b = match body(b) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    respond(state.leases.terminate(&id, &b.reason).await)
}
