//! The operators' alert inbox over HTTP: list (open ones by default) and acknowledge.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::App;
use crate::base::alerts::{self, AlertRow};
use crate::base::audit;
use crate::base::principal::{Principal, STAFF};
use crate::base::time::{fmt_time, now_ms};
use crate::base::wire::error::{ApiError, Problem};
use crate::base::wire::extract::{Path, Query};
use crate::base::wire::{Page, page_limit, split_page};

/// Routes of the alert inbox.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(acknowledge_alert))
}

/// Filters of the alert list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    /// Also acknowledged alerts (default: open ones only).
    pub all: Option<bool>,
    /// Only this kind (`vendor_unavailable`, …).
    pub kind: Option<String>,
    /// Only alerts about this order, vendor or product.
    pub subject_id: Option<Uuid>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

/// An alert for operators.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    /// Id.
    pub id: Uuid,
    /// `vendor_unavailable`, …
    pub kind: String,
    /// `info`, `warning`, `critical`.
    pub severity: String,
    /// `order`, `vendor`, `product`.
    pub subject: String,
    /// Its id.
    pub subject_id: Uuid,
    /// For a person.
    pub message: String,
    /// What raised it.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// Raised (Nepal time).
    pub created_at: String,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When (Nepal time).
    pub acknowledged_at: Option<String>,
}

impl From<AlertRow> for AlertView {
    fn from(a: AlertRow) -> Self {
        AlertView {
            id: a.id,
            kind: a.kind,
            severity: a.severity,
            subject: a.subject,
            subject_id: a.subject_id,
            message: a.message,
            detail: a.detail.0,
            created_at: fmt_time(a.created_at_ms),
            acknowledged_by: a.acknowledged_by,
            acknowledged_at: a.acknowledged_at_ms.map(fmt_time),
        }
    }
}

/// Alerts for operators, newest first: open ones unless `all=true` (staff).
#[utoipa::path(get, path = "/alerts", tag = "admin", params(AlertParams),
    responses((status = 200, body = Page<AlertView>),
        (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn list_alerts(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<AlertParams>,
) -> Result<axum::Json<Page<AlertView>>, ApiError> {
    principal.require(STAFF)?;
    let limit = page_limit(p.limit)?;
    let rows = alerts::list(
        app.db(),
        !p.all.unwrap_or(false),
        p.kind.as_deref(),
        p.subject_id,
        p.cursor,
        limit + 1,
    )
    .await?;
    let (rows, next) = split_page(rows, limit, |a| a.id.to_string());
    Ok(axum::Json(Page {
        items: rows.into_iter().map(AlertView::from).collect(),
        next_cursor: next,
    }))
}

/// Acknowledge an alert (staff; audited). Acknowledging twice keeps the first.
#[utoipa::path(post, path = "/alerts/{id}/acknowledge", tag = "admin",
    params(("id" = Uuid, Path, description = "Alert id")),
    responses((status = 204, description = "Acknowledged"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn acknowledge_alert(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    principal.require(STAFF)?;
    let mut tx = app.db().begin().await?;
    if !alerts::acknowledge(&mut tx, id, &principal.actor(), now_ms()).await? {
        return Err(ApiError::NotFound("alert"));
    }
    let entry = principal.audit("alert.acknowledge").on("alert", id);
    audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
