//! Operational endpoints: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;

/// Routes of this module (outside `/api/v1`).
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics_text))
}

/// Liveness answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    pub status: &'static str,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health", tag = "ops", security(()), responses((status = 200, body = Health)))]
async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Readiness answer.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `ok` or the failure, per dependency.
    pub checks: std::collections::BTreeMap<&'static str, String>,
    /// Database backend in use.
    pub database: &'static str,
}

/// Readiness: the database answers and the job queue can be read.
#[utoipa::path(get, path = "/ready", tag = "ops", security(()),
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
async fn ready(State(app): State<App>) -> Response {
    let mut checks = std::collections::BTreeMap::new();
    let db = match app.db().ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("unavailable: {e}"),
    };
    let queue = match crate::queue::admin::stats(app.db()).await {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("unavailable: {e}"),
    };
    let ok = db == "ok" && queue == "ok";
    checks.insert("database", db);
    checks.insert("queue", queue);
    let body = Ready {
        status: if ok { "ready" } else { "not_ready" },
        checks,
        database: app.db().kind(),
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()), responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics_text(State(app): State<App>) -> Response {
    crate::telemetry::refresh_gauges(&app).await;
    let body = crate::telemetry::metrics_handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
