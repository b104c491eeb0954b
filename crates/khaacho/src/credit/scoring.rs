//! Credit scores and the automated controls, as recurring jobs:
//! - [`ScoreAccounts`] daily at 02:00 Nepal time (and [`RescoreRetailer`] after a payment):
//!   score 300–900 with its factor breakdown (history kept), band, and the automatic limit
//!   change of the band (at most once per 30 days, a decrease never below 1.2 × outstanding,
//!   none for a retailer without history);
//! - [`RunControls`] hourly: late-payment limit cuts (with floor and cap), the 15-day warning
//!   and 30-day block for overdue debits, high-risk and order-spike alerts (each alert at most
//!   once per 24 h per retailer and kind).
//!
//! Each account is handled in its own transaction, so one bad account cannot hold back the
//! others, and a recurring tick fires once across all nodes (the queue's schedule ticks).

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use super::CreditConfig;
use super::alerts::{self, Severity};
use super::repo::{self, AccountRow};
use crate::app::{App, JobContext};
use crate::base::audit::Entry;
use crate::base::db::{Db, Tx};
use crate::base::time::now_ms;
use crate::queue::{Job, JobError, Priority, RetryPolicy};
use crate::{with_replica, with_tx};

const DAY_MS: i64 = 86_400_000;

/// Months of orders the consistency factor looks at.
const MONTHS: usize = 6;

/// Job: score every account (daily).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ScoreAccounts {}

impl Job for ScoreAccounts {
    type Host = App;
    const KIND: &'static str = "credit.score_accounts";
    const QUEUE: &'static str = "maintenance";
    const PRIORITY: Priority = Priority::Low;

    fn policy() -> RetryPolicy {
        RetryPolicy::sweep()
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        each_account(&ctx, score_one).await
    }
}

/// Runs `step` for every account, each in its own transaction, with one clock reading.
async fn each_account(
    ctx: &JobContext,
    step: impl AsyncFn(&Db, &CreditConfig, Uuid, i64) -> Result<(), JobError>,
) -> Result<(), JobError> {
    let now = now_ms();
    for retailer in repo::all_retailers_with_accounts(ctx.app.db()).await? {
        step(ctx.app.db(), &ctx.app.settings().credit, retailer, now).await?;
    }
    Ok(())
}

/// Job: score one retailer again (after a payment).
#[derive(Debug, Serialize, Deserialize)]
pub struct RescoreRetailer {
    /// The retailer.
    pub retailer_id: Uuid,
}

impl Job for RescoreRetailer {
    type Host = App;
    const KIND: &'static str = "credit.rescore";
    const QUEUE: &'static str = "maintenance";
    const PRIORITY: Priority = Priority::Normal;

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        score_one(
            ctx.app.db(),
            &ctx.app.settings().credit,
            self.retailer_id,
            now_ms(),
        )
        .await
    }
}

/// Job: the hourly automated controls.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunControls {}

impl Job for RunControls {
    type Host = App;
    const KIND: &'static str = "credit.controls";
    const QUEUE: &'static str = "maintenance";
    const PRIORITY: Priority = Priority::Low;

    fn policy() -> RetryPolicy {
        RetryPolicy::sweep()
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        each_account(&ctx, controls_one).await
    }
}

/// What the rules need of one retailer's history, read inside its transaction.
async fn score_inputs(
    tx: &mut Tx,
    account: &AccountRow,
    now: i64,
) -> Result<khaacho_credit::ScoreInputs, sqlx::Error> {
    // Delivered credit orders are the debits; their delivery times give the ordering rhythm
    // (an order that never arrived says nothing about how a shop buys and pays).
    let debits: Vec<(i64, i64, Option<i64>, i64)> = with_tx!(tx, c => sqlx::query_as(
        "SELECT at_ms, due_at_ms, paid_at_ms, open_paisa FROM ledger_entries WHERE retailer_id = $1 AND kind = 'order_debit'")
        .bind(account.retailer_id).fetch_all(c).await)?;
    let since = now - (MONTHS as i64) * 30 * DAY_MS;
    let mut per_month = vec![0u32; MONTHS];
    for (at, ..) in &debits {
        let back = ((now - at).max(0) / (30 * DAY_MS)) as usize;
        if back < MONTHS {
            per_month[MONTHS - 1 - back] += 1;
        }
    }
    let delivered = debits.iter().filter(|(at, ..)| *at >= since).count();
    let cancelled: i64 = with_tx!(tx, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders WHERE retailer_id = $1 AND created_at_ms >= $2 AND status = 'cancelled'")
        .bind(account.retailer_id).bind(since).fetch_one(c).await)?;
    let cancelled = usize::try_from(cancelled).unwrap_or(0);
    let debits: Vec<(i64, Option<i64>, i64)> = debits
        .into_iter()
        .map(|(_, due, paid, open)| (due, paid, open))
        .collect();
    Ok(khaacho_credit::ScoreInputs {
        paid_debits_days_late: debits
            .iter()
            .filter_map(|(due, paid, _)| paid.map(|p| khaacho_credit::days_past_due(*due, p)))
            .collect(),
        open_debits_days_overdue: debits
            .iter()
            .filter(|(due, paid, open)| paid.is_none() && *open > 0 && now > *due)
            .map(|(due, ..)| khaacho_credit::days_past_due(*due, now))
            .collect(),
        orders_per_month: per_month,
        utilisation_pct: khaacho_credit::utilisation_pct(
            account.held_paisa + account.outstanding_paisa,
            account.limit_paisa,
        ),
        account_age_months: u32::try_from((now - account.created_at_ms).max(0) / (30 * DAY_MS))
            .unwrap_or(u32::MAX),
        orders_total: u32::try_from(delivered + cancelled).unwrap_or(u32::MAX),
        orders_disputed_or_cancelled: u32::try_from(cancelled).unwrap_or(u32::MAX),
    })
}

/// Scores one retailer, stores the score with its factors, sets the band and applies the
/// band's automatic limit change.
pub async fn score_one(
    db: &Db,
    cfg: &CreditConfig,
    retailer: Uuid,
    now: i64,
) -> Result<(), JobError> {
    let mut tx = db.begin().await?;
    // The history is read without locking the account: the account row is the one the
    // validation runs, deliveries and payments of this shop lock, so it is held only from
    // the score's UPDATE to the commit (a rescore after every payment held it through the
    // reads, ~20 ms under load). A score is a reading of the history as of now; the limit
    // change below is judged on the account as locked.
    let Some(seen) = repo::account_tx(&mut tx, retailer).await? else {
        return Ok(());
    };
    let inputs = score_inputs(&mut tx, &seen, now).await?;
    let score = khaacho_credit::compute_score(&inputs, &cfg.rules);
    let band = khaacho_credit::Band::from_score(score.score, &cfg.rules);
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO credit_scores (id, retailer_id, score, band, has_history, factors, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(Uuid::now_v7()).bind(retailer).bind(i32::from(score.score)).bind(band.as_str())
        .bind(score.has_history).bind(Json(&score.factors)).bind(now)
        .execute(c).await.map(|r| r.rows_affected()))?;
    // Without history the score is the neutral base, which is no judgement of the retailer:
    // the account stays unrated (no band rules) until it has some.
    let rated = score.has_history.then_some(band.as_str());
    let Some(account) = repo::set_score(&mut tx, retailer, score.score, rated, now).await? else {
        return Ok(());
    };
    // A retailer without history scores the neutral base, which must not move its limit.
    if score.has_history
        && let Some(change) = khaacho_credit::automatic_limit_change(
            band,
            account.limit_paisa,
            account.outstanding_paisa,
            account.limit_changed_at_ms,
            now,
            &cfg.rules,
        )
    {
        // Never below what is already committed (open holds), which the counters need.
        let new = change
            .new_limit_paisa
            .max(account.held_paisa + account.outstanding_paisa);
        if new != account.limit_paisa {
            apply_limit(&mut tx, &account, new, &change.reason, now).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

async fn apply_limit(
    tx: &mut Tx,
    account: &AccountRow,
    new: i64,
    reason: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "UPDATE credit_accounts SET limit_paisa = $1, limit_changed_at_ms = $2, updated_at_ms = $2 WHERE retailer_id = $3")
        .bind(new).bind(now).bind(account.retailer_id)
        .execute(c).await.map(|r| r.rows_affected()))?;
    repo::record_change(
        tx,
        account.retailer_id,
        "limit",
        &account.limit_paisa.to_string(),
        &new.to_string(),
        reason,
        "system",
    )
    .await?;
    let entry = Entry::new("system", Some("system"), "credit.limit_change")
        .on("retailer", account.retailer_id)
        .summary(json!({ "from_paisa": account.limit_paisa, "to_paisa": new, "reason": reason }));
    crate::base::audit::record_tx(tx, &entry).await
}

/// The hourly controls for one retailer.
pub async fn controls_one(
    db: &Db,
    cfg: &CreditConfig,
    retailer: Uuid,
    now: i64,
) -> Result<(), JobError> {
    let mut tx = db.begin().await?;
    let Some(account) = repo::account_for_update_opt(&mut tx, retailer).await? else {
        return Ok(());
    };
    let rules = &cfg.rules;
    // Late payments: a cut per streak, then the streak starts again.
    let streak = u32::try_from(account.late_streak).unwrap_or(0);
    if let Some(cut) = khaacho_credit::late_payment_cut(
        streak,
        account.original_limit_paisa,
        account.limit_paisa,
        rules,
    ) {
        let new = cut
            .new_limit_paisa
            .max(account.held_paisa + account.outstanding_paisa);
        if new < account.limit_paisa {
            apply_limit(&mut tx, &account, new, &cut.reason, now).await?;
            let detail = json!({ "from_paisa": account.limit_paisa, "to_paisa": new, "late_payments": streak });
            alerts::raise(
                &mut tx,
                retailer,
                "late_payment_cut",
                Severity::Warning,
                detail,
                now,
                rules,
            )
            .await?;
        }
        repo::set_late_streak(&mut tx, retailer, 0).await?;
    }
    // Overdue: warn at 15 days, block at 30.
    let oldest_due: Option<i64> = with_tx!(tx, c => sqlx::query_scalar(
        "SELECT MIN(due_at_ms) FROM ledger_entries WHERE retailer_id = $1 AND kind = 'order_debit' AND open_paisa > 0")
        .bind(retailer).fetch_one(c).await)?;
    let days = oldest_due.map_or(0, |due| khaacho_credit::days_past_due(due, now));
    match khaacho_credit::overdue_action(days, rules) {
        khaacho_credit::OverdueAction::Block if account.status != "blocked" => {
            repo::set_status(&mut tx, retailer, "blocked").await?;
            let reason = format!("a debit is {days} days overdue");
            repo::record_change(
                &mut tx,
                retailer,
                "status",
                &account.status,
                "blocked",
                &reason,
                "system",
            )
            .await?;
            let entry = Entry::new("system", Some("system"), "credit.block")
                .on("retailer", retailer)
                .summary(json!({ "reason": reason }));
            crate::base::audit::record_tx(&mut tx, &entry).await?;
            alerts::raise(
                &mut tx,
                retailer,
                "overdue_block",
                Severity::Critical,
                json!({ "days_overdue": days, "oldest_due_at_ms": oldest_due }),
                now,
                rules,
            )
            .await?;
        }
        khaacho_credit::OverdueAction::Warn => {
            alerts::raise(
                &mut tx,
                retailer,
                "overdue_warning",
                Severity::Warning,
                json!({ "days_overdue": days, "oldest_due_at_ms": oldest_due }),
                now,
                rules,
            )
            .await?;
        }
        _ => {}
    }
    // High retailer risk and order spikes.
    let behaviour = super::risk::behaviour(&mut tx, &[retailer], now).await?;
    let b = behaviour.get(&retailer).cloned().unwrap_or_default();
    let inputs = super::risk::inputs(&account, &b, 0, None, now);
    let risk = khaacho_credit::retailer_risk(&inputs.retailer, &cfg.risk);
    if khaacho_credit::high_risk_alert(risk.score, &cfg.risk) {
        let detail = json!({ "score": risk.score, "reasons": risk.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>() });
        alerts::raise(
            &mut tx,
            retailer,
            "high_risk",
            Severity::Warning,
            detail,
            now,
            rules,
        )
        .await?;
    }
    if khaacho_credit::order_spike(b.orders_7d, inputs.retailer.usual_7d_rate, &cfg.risk) {
        let detail = json!({ "orders_7d": b.orders_7d, "usual_7d": inputs.retailer.usual_7d_rate });
        alerts::raise(
            &mut tx,
            retailer,
            "order_spike",
            Severity::Info,
            detail,
            now,
            rules,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One stored score.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ScoreRow {
    /// 300..900.
    pub score: i32,
    /// Band name.
    pub band: String,
    /// Whether the retailer had history.
    pub has_history: bool,
    /// Factor breakdown.
    pub factors: Json<serde_json::Value>,
    /// When.
    pub at_ms: i64,
}

/// `retailer`'s scores, newest first.
pub async fn history(db: &Db, retailer: Uuid, limit: i64) -> Result<Vec<ScoreRow>, sqlx::Error> {
    with_replica!(db, c => sqlx::query_as::<_, ScoreRow>(
        "SELECT score, band, has_history, factors, at_ms FROM credit_scores WHERE retailer_id = $1 ORDER BY at_ms DESC, id DESC LIMIT $2")
        .bind(retailer).bind(limit).fetch_all(c).await)
}
