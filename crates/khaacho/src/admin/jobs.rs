//! Admin API of the job queue: list jobs, retry or discard dead ones.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::App;
use crate::base::principal::{Principal, STAFF};
use crate::base::wire::error::{ApiError, Problem};
use crate::base::wire::extract::{Path, Query};
use crate::base::wire::{Page, page_limit};
use crate::queue::admin::{self, JobFilter, JobView};

/// Routes of this module.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(get_job, discard_job))
        .routes(routes!(retry_job))
}

/// Filters of the job list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobParams {
    /// `queued`, `running` or `dead`.
    pub status: Option<String>,
    /// Job kind, e.g. `order.validate`.
    pub kind: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/admin/jobs", tag = "admin", params(JobParams),
    responses((status = 200, body = Page<JobView>), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn list_jobs(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<JobParams>,
) -> Result<axum::Json<Page<JobView>>, ApiError> {
    principal.require(STAFF)?;
    if let Some(s) = p.status.as_deref()
        && !matches!(s, "queued" | "running" | "dead")
    {
        return Err(ApiError::param(
            "status",
            "status must be queued, running or dead",
        ));
    }
    let limit = page_limit(p.limit)?;
    let filter = JobFilter {
        status: p.status,
        kind: p.kind,
        before: p.cursor,
        limit: limit + 1,
    };
    let jobs = admin::list(app.db(), &filter).await?;
    let (jobs, next) = crate::base::wire::split_page(jobs, limit, |j| j.id.to_string());
    Ok(axum::Json(Page {
        items: jobs,
        next_cursor: next,
    }))
}

/// One job with its error history.
#[utoipa::path(get, path = "/admin/jobs/{id}", tag = "admin", params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_job(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<JobView>, ApiError> {
    principal.require(STAFF)?;
    admin::get(app.db(), id)
        .await?
        .map(axum::Json)
        .ok_or(ApiError::NotFound("job"))
}

/// Put a dead job back in its queue.
#[utoipa::path(post, path = "/admin/jobs/{id}/retry", tag = "admin", params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, description = "No dead job has this id", body = Problem, content_type = "application/problem+json")))]
async fn retry_job(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<JobView>, ApiError> {
    principal.require(STAFF)?;
    let mut tx = app.db().begin().await?;
    let Some(queue) = admin::retry_dead(&mut tx, id).await? else {
        return Err(ApiError::NotFound("dead job"));
    };
    crate::base::audit::record_tx(&mut tx, &principal.audit("job.retry").on("job", id)).await?;
    tx.commit().await?;
    admin::wake_queue(app.db(), &queue).await?;
    admin::get(app.db(), id)
        .await?
        .map(axum::Json)
        .ok_or(ApiError::NotFound("job"))
}

/// Delete a dead job.
#[utoipa::path(delete, path = "/admin/jobs/{id}", tag = "admin", params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 204, description = "Discarded"), (status = 404, description = "No dead job has this id", body = Problem, content_type = "application/problem+json")))]
async fn discard_job(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    principal.require(STAFF)?;
    let mut tx = app.db().begin().await?;
    if !admin::discard_dead(&mut tx, id).await? {
        return Err(ApiError::NotFound("dead job"));
    }
    crate::base::audit::record_tx(&mut tx, &principal.audit("job.discard").on("job", id)).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
