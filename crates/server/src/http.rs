//! The HTTP surface: liveness, readiness and Prometheus metrics now; the REST API, WebSocket and
//! dashboard add their routes to [`router`] later.
//!
//! `/readyz` answers 503 with a JSON reason whenever the server cannot keep its promise that
//! acknowledged means committed: the database is unreachable or refusing writes, or the MQTT
//! client is disconnected. Handlers here must stay cheap and bounded in time: a load balancer
//! polls them.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use scalesense_store::{AccountId, Store, StoreError};
use serde::Serialize;

use crate::events::EventBus;
use crate::health::Health;
use crate::telemetry;

/// How long the readiness probe waits for the database.
pub const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub health: Health,
    pub events: EventBus,
}

/// The server's router: `GET /healthz`, `GET /readyz`, `GET /metrics`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Debug, Serialize)]
struct Readiness {
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<String>,
}

/// The process is alive (it answers HTTP).
async fn healthz() -> Json<Readiness> {
    Json(Readiness {
        status: "ok",
        reasons: Vec::new(),
    })
}

/// Ready to take traffic: the database answers and takes writes, and the broker is connected.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut reasons = Vec::new();
    if let Some(reason) = probe_database(state.store.as_ref()).await {
        reasons.push(reason);
    } else if let Some(error) = state.health.db_failure() {
        reasons.push(format!("database refuses writes: {error}"));
    }
    if !state.health.broker_connected() {
        reasons.push("MQTT broker not connected".to_owned());
    }
    let (code, status) = if reasons.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    (code, Json(Readiness { status, reasons }))
}

/// A cheap read by primary key of an account that never exists: `NotFound` proves the database
/// answers. Returns why it is unreachable, if it is.
async fn probe_database(store: &dyn Store) -> Option<String> {
    let probe = AccountId::try_from("readyz-probe").ok()?;
    match tokio::time::timeout(DB_PROBE_TIMEOUT, store.account(&probe)).await {
        Ok(Ok(_) | Err(StoreError::NotFound { .. })) => None,
        Ok(Err(e)) => Some(format!("database unreachable: {e}")),
        Err(_) => Some(format!(
            "database did not answer within {DB_PROBE_TIMEOUT:?}"
        )),
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::render(),
    )
}
