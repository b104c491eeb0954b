//! The facts order risk is assessed on, read for a batch of retailers with a few grouped
//! queries (the risk step runs inside the pipeline's batch transaction), and the stored
//! assessments.

use std::collections::HashMap;

use khaacho_credit::{OrderRiskInputs, RetailerRiskInputs, RiskAssessment, RiskInputs};
use sqlx::types::Json;
use uuid::Uuid;

use super::repo::{AccountRow, HoldRow};
use crate::base::db::{BuildBatch, Db, KeyFilter, Tx, TxInner, push_rows_by, push_rows_where};
use crate::base::time::nepal_day;
use crate::{with_keyed, with_tx};

const DAY_MS: i64 = 86_400_000;
/// History an account needs before its order rate is a baseline for spikes.
const BASELINE_DAYS: i64 = 28;
/// How far back payment behaviour counts.
const HISTORY_DAYS: i64 = 180;

/// One retailer's recent behaviour.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Orders placed in the 7 Nepal days ending today (this one included).
    pub orders_7d: u32,
    /// Days late of debits paid or due in the history window (open and past due: so far).
    pub days_late: Vec<i64>,
    /// Days the oldest open debit is past due (0: none).
    pub oldest_overdue_days: i64,
}

/// The behaviour of `retailers` as of `now` (the pipeline reads the same rows with its other
/// facts: `orders::pipeline::credit::Facts::load`).
pub async fn behaviour(
    tx: &mut Tx,
    retailers: &[Uuid],
    now: i64,
) -> Result<HashMap<Uuid, Behaviour>, sqlx::Error> {
    let (counts, debits) = history(tx, retailers, now).await?;
    Ok(behaviour_of(retailers, counts, debits, now))
}

/// What [`behaviour_of`] reads of `retailers` as of `now`: their orders of the week and their
/// debits of the history window (two statements).
pub async fn history(
    tx: &mut Tx,
    retailers: &[Uuid],
    now: i64,
) -> Result<(Vec<OrderDays>, Vec<Debit>), sqlx::Error> {
    if retailers.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let counts: Vec<OrderDays> = with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new("");
        push_order_days(&mut qb, retailers, now);
        qb.build_query_as().fetch_all(c).await
    })?;
    let debits: Vec<Debit> = with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new("");
        push_debits(&mut qb, retailers, now);
        qb.build_query_as().fetch_all(c).await
    })?;
    Ok((counts, debits))
}

/// A retailer's orders in the 7 Nepal days ending today: `(retailer, orders)`.
pub type OrderDays = (Uuid, i64);

/// A debit of the history window: `(retailer, due, paid, open amount)`.
pub type Debit = (Uuid, i64, Option<i64>, i64);

/// The query of [`OrderDays`] for `retailers` at `now`: orders placed in the 7 Nepal days
/// ending today, from the daily counts the transition service keeps (`retailer_order_days`),
/// a few rows per retailer however busy it is.
pub fn push_order_days<DB: KeyFilter>(qb: &mut sqlx::QueryBuilder<DB>, retailers: &[Uuid], now: i64)
where
    i32: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let today = nepal_day(now);
    qb.push("SELECT retailer_id, CAST(SUM(n) AS BIGINT) AS n FROM");
    push_rows_by(
        qb,
        "retailer_order_days",
        "d",
        "retailer_id",
        retailers,
        None,
    );
    qb.push(" WHERE day > ").push_bind((today - 7) as i32);
    qb.push(" GROUP BY retailer_id");
}

/// The query of the [`Debit`]s of `retailers` due in the history window before `now`.
pub fn push_debits<DB: KeyFilter>(qb: &mut sqlx::QueryBuilder<DB>, retailers: &[Uuid], now: i64)
where
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    qb.push("SELECT retailer_id, due_at_ms, paid_at_ms, open_paisa FROM");
    // Inside the probe, the kind lets the debits' partial index serve each retailer.
    push_rows_where(
        qb,
        "ledger_entries",
        "e",
        "retailer_id",
        retailers,
        "kind = 'order_debit'",
    );
    qb.push(" WHERE due_at_ms >= ")
        .push_bind(now - HISTORY_DAYS * DAY_MS);
}

/// The behaviour of `retailers` as of `now`, from their orders of the week and their debits
/// of the history window as read.
pub fn behaviour_of(
    retailers: &[Uuid],
    counts: Vec<OrderDays>,
    debits: Vec<Debit>,
    now: i64,
) -> HashMap<Uuid, Behaviour> {
    let mut out: HashMap<Uuid, Behaviour> = retailers
        .iter()
        .map(|r| (*r, Behaviour::default()))
        .collect();
    for (r, n) in counts {
        if let Some(b) = out.get_mut(&r) {
            b.orders_7d = u32::try_from(n).unwrap_or(u32::MAX);
        }
    }
    for (r, due, paid, open) in debits {
        let Some(b) = out.get_mut(&r) else { continue };
        match paid {
            Some(at) => b.days_late.push(((at - due) / DAY_MS).max(0)),
            None if open > 0 && now > due => {
                let late = (now - due) / DAY_MS;
                b.days_late.push(late);
                b.oldest_overdue_days = b.oldest_overdue_days.max(late);
            }
            None => {}
        }
    }
    out
}

/// The risk inputs of one order of `value` for `account` (read before its hold was placed).
pub fn inputs(
    account: &AccountRow,
    behaviour: &Behaviour,
    value: i64,
    band_cap: Option<i64>,
    now: i64,
) -> RiskInputs {
    let committed = account.held_paisa + account.outstanding_paisa + value;
    let age_ms = now - account.created_at_ms;
    let weeks = (age_ms as f64 / (7 * DAY_MS) as f64).max(1.0);
    // Without a few weeks of history there is no usual rate to spike above: a new
    // retailer's first busy week is its baseline, not an anomaly.
    let usual = if age_ms < BASELINE_DAYS * DAY_MS {
        f64::from(behaviour.orders_7d)
    } else {
        account.order_count as f64 / weeks
    };
    RiskInputs {
        retailer: RetailerRiskInputs {
            recent_days_late: behaviour.days_late.clone(),
            utilisation_pct: khaacho_credit::utilisation_pct(committed, account.limit_paisa),
            orders_last_7d: behaviour.orders_7d,
            usual_7d_rate: usual,
            oldest_overdue_days: behaviour.oldest_overdue_days,
        },
        order: OrderRiskInputs {
            value_paisa: value,
            is_first_order: account.order_count == 0,
            average_order_value_paisa: (account.order_count > 0)
                .then(|| account.order_value_paisa / account.order_count),
            band_order_cap_paisa: band_cap,
        },
    }
}

/// Stores the assessments of a batch `(order, retailer, assessment)` with one statement (a
/// retried step replaces its own earlier ones).
pub async fn save_many(
    tx: &mut Tx,
    rows: &[(Uuid, Uuid, RiskAssessment)],
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    if let TxInner::Pg(c) = tx.inner_mut() {
        // One text whatever the batch: an array per column.
        use crate::base::db::column as col;
        sqlx::query(
            "INSERT INTO risk_assessments (order_id, retailer_id, score, decision, components, reasons, at_ms) \
             SELECT o, r, s, d, c, re, $7 FROM unnest($1::uuid[], $2::uuid[], $3::integer[], $4::text[], \
             $5::jsonb[], $6::jsonb[]) AS v(o, r, s, d, c, re) \
             ON CONFLICT (order_id) DO UPDATE SET score = excluded.score, decision = excluded.decision, \
             components = excluded.components, reasons = excluded.reasons, at_ms = excluded.at_ms",
        )
        .bind(col(rows, |r| r.0))
        .bind(col(rows, |r| r.1))
        .bind(col(rows, |r| i32::from(r.2.score)))
        .bind(col(rows, |r| decision_name(r.2.decision)))
        .bind(col(rows, |r| Json(&r.2.components)))
        .bind(col(rows, |r| Json(&r.2.reasons)))
        .bind(at_ms)
        .execute(&mut **c)
        .await?;
        return Ok(());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO risk_assessments (order_id, retailer_id, score, decision, components, reasons, at_ms) ");
        qb.push_values(rows, |mut b, (order, retailer, a)| {
            b.push_bind(*order).push_bind(*retailer).push_bind(i32::from(a.score)).push_bind(decision_name(a.decision))
                .push_bind(Json(&a.components)).push_bind(Json(&a.reasons)).push_bind(at_ms);
        });
        qb.push(" ON CONFLICT (order_id) DO UPDATE SET score = excluded.score, decision = excluded.decision, \
                 components = excluded.components, reasons = excluded.reasons, at_ms = excluded.at_ms");
        qb.build_batch().execute(&mut *c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Stable name of a decision.
pub fn decision_name(d: khaacho_credit::Decision) -> &'static str {
    match d {
        khaacho_credit::Decision::Pass => "pass",
        khaacho_credit::Decision::Review => "review",
        khaacho_credit::Decision::Reject => "reject",
    }
}

/// A stored assessment.
#[derive(Clone, Debug, sqlx::FromRow, serde::Deserialize)]
pub struct AssessmentRow {
    /// 0..100.
    pub score: i32,
    /// `pass`, `review`, `reject`.
    pub decision: String,
    /// `[{name, weight, points}]`.
    pub components: Json<serde_json::Value>,
    /// `[{code, text}]`.
    pub reasons: Json<serde_json::Value>,
}

/// An assessment with the hold of its order, if any.
#[derive(sqlx::FromRow)]
struct AssessedRow {
    #[sqlx(flatten)]
    assessment: AssessmentRow,
    hold_retailer_id: Option<Uuid>,
    hold_amount_paisa: Option<i64>,
    hold_status: Option<String>,
    hold_override_by: Option<String>,
    hold_posted_paisa: Option<i64>,
}

/// What the order view shows of `order`'s credit: its hold and its risk assessment, if any.
/// One statement (by key: planned once) for an assessed order — every order past
/// validation is assessed before its credit is reserved — and the hold alone for the rest
/// (never assessed, or assessed under older rules and held by an operator's approval).
pub async fn hold_and_assessment(
    db: &Db,
    order: Uuid,
) -> Result<(Option<HoldRow>, Option<AssessmentRow>), sqlx::Error> {
    let row: Option<AssessedRow> = with_keyed!(db, c => sqlx::query_as(
        "SELECT a.score, a.decision, a.components, a.reasons, h.retailer_id AS hold_retailer_id, \
         h.amount_paisa AS hold_amount_paisa, h.status AS hold_status, h.override_by AS hold_override_by, \
         h.posted_paisa AS hold_posted_paisa \
         FROM risk_assessments a LEFT JOIN credit_holds h ON h.order_id = a.order_id WHERE a.order_id = $1")
        .bind(order).fetch_optional(c).await)?;
    let Some(row) = row else {
        return Ok((super::repo::hold_of(db, order).await?, None));
    };
    let hold = match (row.hold_retailer_id, row.hold_amount_paisa, row.hold_status) {
        (Some(retailer_id), Some(amount_paisa), Some(status)) => Some(HoldRow {
            order_id: order,
            retailer_id,
            amount_paisa,
            status,
            override_by: row.hold_override_by,
            posted_paisa: row.hold_posted_paisa,
        }),
        _ => None,
    };
    Ok((hold, Some(row.assessment)))
}
