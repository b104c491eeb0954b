//! Operations on job rows for the admin API and CLI: list, retry a dead job, discard it.

use serde::Serialize;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Priority;
use crate::base::db::{Db, Tx};
use crate::base::time::now_ms;
use crate::{with_latest, with_replica, with_tx};

/// A job as the admin API shows it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct JobView {
    /// Job id.
    pub id: Uuid,
    /// Queue it is consumed from.
    pub queue: String,
    /// Job kind.
    pub kind: String,
    /// `queued`, `running` or `dead`.
    pub status: String,
    /// The job's payload.
    #[schema(value_type = Object)]
    pub payload: Json<serde_json::Value>,
    /// 2 high, 1 normal, 0 low.
    pub priority: i32,
    /// Claims so far.
    pub attempts: i32,
    /// Claims allowed.
    pub max_attempts: i32,
    /// Earliest next run (epoch ms).
    pub run_at_ms: i64,
    /// The most recent error.
    pub last_error: Option<String>,
    /// Every error, oldest first: `{attempt, at_ms, error}`.
    #[schema(value_type = Vec<Object>)]
    pub errors: Json<Vec<serde_json::Value>>,
    /// Request id that caused the job.
    pub correlation_id: Option<String>,
    /// W3C `traceparent` of the span that enqueued it (while traces are exported): its
    /// second field is the trace id to look the job's request up by in the trace store.
    pub trace_parent: Option<String>,
    /// Creation time (epoch ms).
    pub created_at_ms: i64,
    /// Last change (epoch ms).
    pub updated_at_ms: i64,
}

/// Filters of [`list`].
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only ids below this one (cursor).
    pub before: Option<Uuid>,
    /// Page size.
    pub limit: i64,
}

/// Lists jobs, newest first.
pub async fn list(db: &Db, f: &JobFilter) -> Result<Vec<JobView>, sqlx::Error> {
    with_replica!(db, c => sqlx::query_as::<_, JobView>(
        "SELECT id, queue, kind, status, payload, priority, attempts, max_attempts, run_at_ms, last_error, \
         errors, correlation_id, trace_parent, created_at_ms, updated_at_ms FROM jobs \
         WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4")
        .bind(f.status.as_deref())
        .bind(f.kind.as_deref())
        .bind(f.before)
        .bind(f.limit)
        .fetch_all(c)
        .await)
}

/// One job by id.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<JobView>, sqlx::Error> {
    with_latest!(db, c => sqlx::query_as::<_, JobView>(
        "SELECT id, queue, kind, status, payload, priority, attempts, max_attempts, run_at_ms, last_error, \
         errors, correlation_id, trace_parent, created_at_ms, updated_at_ms FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(c)
        .await)
}

/// Puts a dead job back in its queue with fresh attempts (its error history is kept), in
/// `tx`; returns its queue, whose consumers the caller wakes with [`wake_queue`] once `tx`
/// has committed, or `None` when no dead job has that id.
pub async fn retry_dead(tx: &mut Tx, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    let now = now_ms();
    with_tx!(tx, c => sqlx::query_scalar(
        "UPDATE jobs SET status = 'queued', attempts = 0, run_at_ms = $1, updated_at_ms = $1 \
         WHERE id = $2 AND status = 'dead' RETURNING queue")
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *c)
        .await)
}

/// Wakes `queue`'s consumers in this process and, on PostgreSQL, in every other one.
pub async fn wake_queue(db: &Db, queue: &str) -> Result<(), sqlx::Error> {
    db.wake().wake(queue);
    if let crate::base::db::Backend::Pg(pool) = db.backend() {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::NOTIFY_CHANNEL)
            .bind(db.wake().payload(&[queue]))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Deletes a dead job for good, in `tx`. Returns false when no dead job has that id.
pub async fn discard_dead(tx: &mut Tx, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = with_tx!(tx, c => sqlx::query("DELETE FROM jobs WHERE id = $1 AND status = 'dead'")
        .bind(id)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(r == 1)
}

/// Depth and age of the ready backlog per queue, and the count of dead jobs per kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueStats {
    /// `(queue, ready jobs, age in ms of the oldest ready job)`.
    pub ready: Vec<(String, i64, i64)>,
    /// `(kind, running jobs)`.
    pub running: Vec<(String, i64)>,
    /// `(kind, dead jobs)`.
    pub dead: Vec<(String, i64)>,
}

/// Current queue statistics (for `/metrics` and readiness).
pub async fn stats(db: &Db) -> Result<QueueStats, sqlx::Error> {
    let now = now_ms();
    let ready: Vec<(String, i64, i64)> = with_replica!(db, c => sqlx::query_as(
        "SELECT queue, COUNT(*), COALESCE($1 - MIN(run_at_ms), 0) FROM jobs \
         WHERE status = 'queued' AND run_at_ms <= $1 GROUP BY queue")
        .bind(now)
        .fetch_all(c)
        .await)?;
    let running: Vec<(String, i64)> = with_replica!(db, c => sqlx::query_as(
        "SELECT kind, COUNT(*) FROM jobs WHERE status = 'running' GROUP BY kind")
        .fetch_all(c)
        .await)?;
    let dead: Vec<(String, i64)> = with_replica!(db, c => sqlx::query_as(
        "SELECT kind, COUNT(*) FROM jobs WHERE status = 'dead' GROUP BY kind")
        .fetch_all(c)
        .await)?;
    Ok(QueueStats {
        ready,
        running,
        dead,
    })
}

/// Age in ms of the oldest ready job of `queues` (0 when none is ready). Cheap whatever the
/// backlog: per queue and priority it reads the first entry of `jobs_ready_idx`, never the
/// whole backlog (`MIN` over the partial index would visit every queued row).
pub async fn oldest_ready_age_ms(db: &Db, queues: &[String]) -> Result<i64, sqlx::Error> {
    if queues.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    // Built inside the macro body: the builder is typed by the backend of each arm.
    let oldest: Option<i64> = with_replica!(db, c => {
        let mut qb = sqlx::QueryBuilder::new("SELECT MIN(t) FROM (");
        let mut first = true;
        for queue in queues {
            for priority in [Priority::High, Priority::Normal, Priority::Low] {
                if !first {
                    qb.push(" UNION ALL ");
                }
                first = false;
                qb.push("SELECT (SELECT run_at_ms FROM jobs WHERE queue = ")
                    .push_bind(queue.as_str())
                    .push(" AND status = 'queued' AND priority = ")
                    .push_bind(priority as i32)
                    .push(" ORDER BY run_at_ms LIMIT 1) AS t");
            }
        }
        qb.push(") AS firsts");
        qb.build_query_scalar().fetch_one(c).await
    })?;
    // The earliest entry of a priority may be a delayed retry (run_at in the future): then
    // nothing of that priority is ready.
    Ok(oldest.map_or(0, |t| (now - t).max(0)))
}
