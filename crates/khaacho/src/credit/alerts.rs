//! Risk and credit alerts: rows with a severity that operators list and acknowledge. A kind
//! of alert is raised at most once per 24 hours per retailer (`should_alert`).
//!
//! The alerts DOMAIN says the retailer hears of — the overdue warning, the block of credit
//! orders, the late-payment limit cut — also write a message to the retailer in the same
//! transaction (`channels::credit_notices`, once per overdue debit for the first two, once
//! per cut for the last). It is recorded without a send job: the outbox sweep sends it.

use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use crate::base::db::{Db, Tx};
use crate::channels::credit_notices::Notice;
use crate::{with_replica, with_tx};

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Worth a look.
    Info,
    /// Act soon.
    Warning,
    /// Act now.
    Critical,
}

impl Severity {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Raises an alert of `kind` for `retailer` unless one was raised in the last 24 hours.
/// Returns whether a row was written.
pub async fn raise(
    tx: &mut Tx,
    retailer: Uuid,
    kind: &str,
    severity: Severity,
    detail: serde_json::Value,
    now: i64,
    rules: &khaacho_credit::CreditSettings,
) -> Result<bool, sqlx::Error> {
    let last: Option<i64> = with_tx!(tx, c => sqlx::query_scalar(
        "SELECT MAX(created_at_ms) FROM risk_alerts WHERE retailer_id = $1 AND kind = $2")
        .bind(retailer).bind(kind).fetch_one(c).await)?;
    if !khaacho_credit::should_alert(last, now, rules) {
        return Ok(false);
    }
    let id = Uuid::now_v7();
    let notice = retailer_notice(retailer, kind, &detail, id, rules);
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO risk_alerts (id, retailer_id, kind, severity, detail, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(id).bind(retailer).bind(kind).bind(severity.as_str()).bind(Json(detail)).bind(now)
        .execute(c).await.map(|r| r.rows_affected()))?;
    if let Some(notice) = notice {
        crate::channels::credit_notices::queue(tx, &[notice], now, false, false).await?;
    }
    metrics::counter!("khaacho_risk_alerts_total", "kind" => kind.to_string()).increment(1);
    Ok(true)
}

/// The message an alert means to the retailer, if it hears of it (see the module docs).
fn retailer_notice(
    retailer: Uuid,
    kind: &str,
    detail: &serde_json::Value,
    alert: Uuid,
    rules: &khaacho_credit::CreditSettings,
) -> Option<Notice> {
    let due = detail["oldest_due_at_ms"].as_i64().unwrap_or_default();
    let days = detail["days_overdue"].as_i64().unwrap_or_default();
    let (template, vars, key) = match kind {
        "overdue_warning" => (
            "credit_overdue_warning",
            json!({ "days": days, "block_days": rules.overdue_block_days }),
            format!("{retailer}:credit_overdue_warning:{due}"),
        ),
        "overdue_block" => (
            "credit_blocked",
            json!({ "days": days }),
            format!("{retailer}:credit_blocked:{due}"),
        ),
        "late_payment_cut" => (
            "credit_limit_cut",
            json!({
                "from": khaacho_credit::npr(detail["from_paisa"].as_i64().unwrap_or_default()),
                "limit": khaacho_credit::npr(detail["to_paisa"].as_i64().unwrap_or_default()),
                "late": detail["late_payments"].as_i64().unwrap_or_default(),
            }),
            format!("{alert}:retailer:credit_limit_cut"),
        ),
        _ => return None,
    };
    Some(Notice {
        retailer_id: retailer,
        template,
        vars,
        key,
    })
}

/// An alert row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AlertRow {
    /// Id (the cursor).
    pub id: Uuid,
    /// The retailer.
    pub retailer_id: Uuid,
    /// `overdue_warning`, `overdue_block`, `late_payment_cut`, `high_risk`, `order_spike`.
    pub kind: String,
    /// `info`, `warning`, `critical`.
    pub severity: String,
    /// What triggered it.
    pub detail: Json<serde_json::Value>,
    /// Raised.
    pub created_at_ms: i64,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When.
    pub acknowledged_at_ms: Option<i64>,
}

/// Alerts newest first, optionally only unacknowledged ones or one retailer's.
pub async fn list(
    db: &Db,
    open_only: bool,
    retailer: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AlertRow>, sqlx::Error> {
    with_replica!(db, c => sqlx::query_as::<_, AlertRow>(
        "SELECT id, retailer_id, kind, severity, detail, created_at_ms, acknowledged_by, acknowledged_at_ms FROM risk_alerts \
         WHERE ($1 = FALSE OR acknowledged_at_ms IS NULL) AND ($2 IS NULL OR retailer_id = $2) AND ($3 IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4")
        .bind(open_only).bind(retailer).bind(before).bind(limit).fetch_all(c).await)
}

/// Acknowledges an alert in `tx` (where the caller also writes its audit entry); `false`
/// when there is no such alert. Acknowledging twice keeps the first acknowledgement.
pub async fn acknowledge(tx: &mut Tx, id: Uuid, by: &str, now: i64) -> Result<bool, sqlx::Error> {
    let found: Option<(Uuid,)> = with_tx!(tx, c => sqlx::query_as(
        "UPDATE risk_alerts SET acknowledged_by = COALESCE(acknowledged_by, $1), \
         acknowledged_at_ms = COALESCE(acknowledged_at_ms, $2) WHERE id = $3 RETURNING id")
        .bind(by).bind(now).bind(id).fetch_optional(&mut *c).await)?;
    Ok(found.is_some())
}
