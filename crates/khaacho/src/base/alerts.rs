//! The operators' alert inbox: what a person must look at (an order no vendor would take,
//! a stuck order, …), written in the transaction of what raised it and listed until someone
//! acknowledges it. Credit and risk alerts about one retailer keep their own table
//! (`risk_alerts`, credit feature); this inbox is for everything else.

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::base::db::{Db, Tx};
use crate::{with_replica, with_tx};

/// An alert to raise.
#[derive(Clone, Debug)]
pub struct NewAlert<'a> {
    /// What happened, e.g. `vendor_unavailable`.
    pub kind: &'a str,
    /// `info`, `warning` or `critical`.
    pub severity: &'a str,
    /// What it is about: `order`, `vendor`, `product`.
    pub subject: &'a str,
    /// Its id.
    pub subject_id: Uuid,
    /// For a person.
    pub message: String,
    /// Structured detail.
    pub detail: serde_json::Value,
    /// When.
    pub at_ms: i64,
}

/// Raises an alert in the caller's transaction.
pub async fn raise(tx: &mut Tx, a: &NewAlert<'_>) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO alerts (id, kind, severity, subject, subject_id, message, detail, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(id).bind(a.kind).bind(a.severity).bind(a.subject).bind(a.subject_id)
        .bind(&a.message).bind(Json(&a.detail)).bind(a.at_ms)
        .execute(c).await.map(|r| r.rows_affected()))?;
    metrics::counter!("khaacho_alerts_total", "kind" => a.kind.to_string()).increment(1);
    Ok(id)
}

/// Whether an unacknowledged alert of `kind` about `subject_id` is open (checks that run
/// again and again raise each condition once until someone acknowledges it).
pub async fn open_exists(tx: &mut Tx, kind: &str, subject_id: Uuid) -> Result<bool, sqlx::Error> {
    let found: Option<(Uuid,)> = with_tx!(tx, c => sqlx::query_as(
        "SELECT id FROM alerts WHERE kind = $1 AND subject_id = $2 AND acknowledged_at_ms IS NULL LIMIT 1")
        .bind(kind).bind(subject_id).fetch_optional(c).await)?;
    Ok(found.is_some())
}

/// A stored alert.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct AlertRow {
    /// Id.
    pub id: Uuid,
    /// What happened.
    pub kind: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `order`, `vendor`, `product`.
    pub subject: String,
    /// Its id.
    pub subject_id: Uuid,
    /// For a person.
    pub message: String,
    /// Structured detail.
    #[schema(value_type = Object)]
    pub detail: Json<serde_json::Value>,
    /// Raised at (epoch ms).
    pub created_at_ms: i64,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When.
    pub acknowledged_at_ms: Option<i64>,
}

const COLS: &str = "id, kind, severity, subject, subject_id, message, detail, created_at_ms, acknowledged_by, acknowledged_at_ms";

/// Alerts newest first: only unacknowledged ones when `open_only`; optionally of one kind or
/// about one subject.
pub async fn list(
    db: &Db,
    open_only: bool,
    kind: Option<&str>,
    subject_id: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AlertRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLS} FROM alerts WHERE ($1 = FALSE OR acknowledged_at_ms IS NULL) AND ($2 IS NULL OR kind = $2) \
         AND ($3 IS NULL OR subject_id = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
    );
    with_replica!(db, c => sqlx::query_as::<_, AlertRow>(sqlx::AssertSqlSafe(sql))
        .bind(open_only).bind(kind).bind(subject_id).bind(before).bind(limit)
        .fetch_all(c).await)
}

/// Acknowledges an alert in `tx` (where the caller also writes its audit entry); `false`
/// when there is no such alert. Acknowledging twice keeps the first acknowledgement.
pub async fn acknowledge(tx: &mut Tx, id: Uuid, by: &str, now: i64) -> Result<bool, sqlx::Error> {
    let found: Option<(Uuid,)> = with_tx!(tx, c => sqlx::query_as(
        "UPDATE alerts SET acknowledged_by = COALESCE(acknowledged_by, $1), \
         acknowledged_at_ms = COALESCE(acknowledged_at_ms, $2) WHERE id = $3 RETURNING id")
        .bind(by).bind(now).bind(id).fetch_optional(&mut *c).await)?;
    Ok(found.is_some())
}
