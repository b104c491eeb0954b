//! The append-only audit log: who did what to which entity, when, with a summary of the change.
//! Rows are written in the same transaction as the change when the change is transactional
//! ([`record_tx`]); authentication events and denials are written on their own ([`record`]).

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::base::db::{BuildBatch, Db, Tx};
use crate::base::time::now_ms;
use crate::{with_replica, with_tx, with_write};

/// One audit event to write. Never put a secret (password, token, key) in `summary`.
#[derive(Clone, Debug)]
pub struct Entry {
    /// `user:<id>`, `apikey:<id>`, `anonymous` or `cli`.
    pub actor: String,
    /// The actor's role, when known.
    pub role: Option<String>,
    /// What happened, e.g. `auth.login`, `order.approve`, `authz.denied`.
    pub action: String,
    /// The kind of entity acted on.
    pub entity: Option<String>,
    /// Its id.
    pub entity_id: Option<String>,
    /// What changed.
    pub summary: serde_json::Value,
    /// The request it came from.
    pub request_id: Option<String>,
}

impl Entry {
    /// A new entry with an empty summary.
    pub fn new(actor: impl Into<String>, role: Option<&str>, action: &str) -> Self {
        Self {
            actor: actor.into(),
            role: role.map(str::to_string),
            action: action.to_string(),
            entity: None,
            entity_id: None,
            summary: serde_json::json!({}),
            request_id: None,
        }
    }

    /// Sets the entity.
    #[must_use]
    pub fn on(mut self, entity: &str, id: impl ToString) -> Self {
        self.entity = Some(entity.to_string());
        self.entity_id = Some(id.to_string());
        self
    }

    /// Sets the summary.
    #[must_use]
    pub fn summary(mut self, summary: serde_json::Value) -> Self {
        self.summary = summary;
        self
    }

    /// Renames the action (same actor and request).
    #[must_use]
    pub fn action(mut self, action: &str) -> Self {
        self.action = action.to_string();
        self
    }
}

const INSERT: &str = "INSERT INTO audit_log (id, at_ms, actor, role, action, entity, entity_id, summary, request_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Writes `e` inside the transaction of the change it describes.
pub async fn record_tx(tx: &mut Tx, e: &Entry) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(INSERT)
        .bind(Uuid::now_v7()).bind(now_ms()).bind(&e.actor).bind(e.role.as_deref()).bind(&e.action)
        .bind(e.entity.as_deref()).bind(e.entity_id.as_deref()).bind(Json(&e.summary)).bind(e.request_id.as_deref())
        .execute(c).await.map(|_| ()))
}

/// Writes `entries` inside the transaction of the changes they describe, with one statement
/// (a batch of changes, e.g. the retailers' confirmations written together).
pub async fn record_many_tx(tx: &mut Tx, entries: &[Entry]) -> Result<(), sqlx::Error> {
    if let [one] = entries {
        return record_tx(tx, one).await;
    }
    if entries.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO audit_log (id, at_ms, actor, role, action, entity, entity_id, summary, request_id) ");
        qb.push_values(entries, |mut b, e| {
            b.push_bind(Uuid::now_v7()).push_bind(now).push_bind(&e.actor).push_bind(e.role.as_deref())
                .push_bind(&e.action).push_bind(e.entity.as_deref()).push_bind(e.entity_id.as_deref())
                .push_bind(Json(&e.summary)).push_bind(e.request_id.as_deref());
        });
        qb.build_batch().execute(&mut *c).await.map(|_| ())
    })
}

/// Writes `e` on its own (events that change nothing else).
pub async fn record(db: &Db, e: &Entry) -> Result<(), sqlx::Error> {
    with_write!(db, c => sqlx::query(INSERT)
        .bind(Uuid::now_v7()).bind(now_ms()).bind(&e.actor).bind(e.role.as_deref()).bind(&e.action)
        .bind(e.entity.as_deref()).bind(e.entity_id.as_deref()).bind(Json(&e.summary)).bind(e.request_id.as_deref())
        .execute(c).await.map(|_| ()))
}

/// [`record`], logging instead of failing: a lost audit row of an auth event must not turn a
/// refusal into a 500.
pub async fn record_logged(db: &Db, e: &Entry) {
    if let Err(err) = record(db, e).await {
        tracing::error!(action = %e.action, error = %err, "writing an audit row failed");
    }
}

/// A stored audit row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditRow {
    /// Id (UUIDv7).
    pub id: Uuid,
    /// When (epoch ms).
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// In which role.
    pub role: Option<String>,
    /// What.
    pub action: String,
    /// Entity kind.
    pub entity: Option<String>,
    /// Entity id.
    pub entity_id: Option<String>,
    /// Summary of the change.
    pub summary: Json<serde_json::Value>,
    /// Request id.
    pub request_id: Option<String>,
}

/// An audit row as served.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    /// Id.
    pub id: Uuid,
    /// When (Nepal time, RFC 3339).
    pub at: String,
    /// Who: `user:<id>`, `apikey:<id>`, `anonymous` or `cli`.
    pub actor: String,
    /// In which role.
    pub role: Option<String>,
    /// What happened.
    pub action: String,
    /// Entity kind.
    pub entity: Option<String>,
    /// Entity id.
    pub entity_id: Option<String>,
    /// Summary of the change.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    /// Request id.
    pub request_id: Option<String>,
}

impl From<AuditRow> for AuditView {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            at: crate::base::time::fmt_time(r.at_ms),
            actor: r.actor,
            role: r.role,
            action: r.action,
            entity: r.entity,
            entity_id: r.entity_id,
            summary: r.summary.0,
            request_id: r.request_id,
        }
    }
}

/// Filters of [`list`].
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this entity kind.
    pub entity: Option<String>,
    /// Only this entity id.
    pub entity_id: Option<String>,
    /// At or after (epoch ms).
    pub from_ms: Option<i64>,
    /// Before (epoch ms).
    pub to_ms: Option<i64>,
    /// Keyset cursor `(at_ms, id)` of the last row of the previous page.
    pub after: Option<(i64, Uuid)>,
    /// Page size.
    pub limit: i64,
}

/// Audit rows, newest first.
pub async fn list(db: &Db, f: &AuditFilter) -> Result<Vec<AuditRow>, sqlx::Error> {
    let (cursor_ms, cursor_id) = f
        .after
        .map_or((None, None), |(ms, id)| (Some(ms), Some(id)));
    with_replica!(db, c => sqlx::query_as::<_, AuditRow>(
        "SELECT id, at_ms, actor, role, action, entity, entity_id, summary, request_id FROM audit_log \
         WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) AND ($3 IS NULL OR entity = $3) \
         AND ($4 IS NULL OR entity_id = $4) AND ($5 IS NULL OR at_ms >= $5) AND ($6 IS NULL OR at_ms < $6) \
         AND ($7 IS NULL OR at_ms < $7 OR (at_ms = $7 AND id < $8)) \
         ORDER BY at_ms DESC, id DESC LIMIT $9")
        .bind(f.actor.as_deref()).bind(f.action.as_deref()).bind(f.entity.as_deref()).bind(f.entity_id.as_deref())
        .bind(f.from_ms).bind(f.to_ms).bind(cursor_ms).bind(cursor_id).bind(f.limit)
        .fetch_all(c).await)
}

/// Deletes rows older than `retention_days` (0 keeps everything).
pub async fn purge(db: &Db, retention_days: u32) -> Result<u64, sqlx::Error> {
    if retention_days == 0 {
        return Ok(0);
    }
    let before = now_ms() - i64::from(retention_days) * 24 * 3600 * 1000;
    with_write!(db, c => sqlx::query("DELETE FROM audit_log WHERE at_ms < $1").bind(before).execute(c).await.map(|r| r.rows_affected()))
}
