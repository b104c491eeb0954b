//! Vendor scores (DOMAIN.md "Routing to vendors", "Vendor score"), recomputed hourly by
//! [`ScoreVendors`]: each vendor's [`VendorActivity`] over the last 30 days, rated with
//! [`khaacho_vendors::rate_vendor`], stored as a history row in `vendor_scores` and copied to
//! `vendors.score`, which the routing score reads as reliability.
//!
//! What the activity counts, all within `(now − 30 days, now]`:
//! - **offers**: offers sent to the vendor that it answered or let expire (`accepted`,
//!   `rejected`, `expired` by `offered_at_ms`); offers still open, or withdrawn because the
//!   order was cancelled before an answer, say nothing about the vendor;
//! - **response minutes**: `responded_at_ms − offered_at_ms` of the accepted and rejected
//!   ones;
//! - **parts finished**: accepted parts that were delivered (by `delivered_at_ms`) or
//!   cancelled after the accept (by `updated_at_ms`); **delivered** in full when every line's
//!   `delivered_milli` equals its `qty_milli`;
//! - **price ratio**: what the vendor sold (delivered quantities of its delivered parts) at its
//!   current offer prices, against the same quantities at the average of every active
//!   vendor's valid offer for each product; `None` without sales (or without a current price
//!   to compare).
//!
//! A run at a given `now` writes at most one row per vendor (`(vendor_id, at_ms)` is unique),
//! so a retried job does not duplicate history, and setting `vendors.score` again is harmless.

use std::collections::HashMap;

use khaacho_vendors::{VendorActivity, VendorRating, rate_vendor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use crate::app::{App, JobContext};
use crate::base::db::Db;
use crate::queue::{Job, JobError, Priority, RetryPolicy};
use crate::{with_latest, with_replica, with_tx};

/// The window the activity is gathered over.
pub const WINDOW_MS: i64 = 30 * khaacho_credit::DAY_MS;
/// Vendors written per transaction.
const CHUNK: usize = 200;

/// Job: score every vendor (hourly, `schedules.vendor_scores`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ScoreVendors {}

impl Job for ScoreVendors {
    type Host = App;
    const KIND: &'static str = "fulfilment.score_vendors";
    const QUEUE: &'static str = "maintenance";
    const PRIORITY: Priority = Priority::Low;

    fn policy() -> RetryPolicy {
        RetryPolicy::sweep()
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        let now = ctx.app.clock().now_ms();
        let n = score_vendors(&ctx.app, now).await?;
        tracing::info!(vendors = n, "vendor scores");
        Ok(())
    }
}

/// Scores every vendor at `now`: one history row each and `vendors.score`. Returns how many
/// vendors were scored.
pub async fn score_vendors(app: &App, now: i64) -> anyhow::Result<usize> {
    let db = app.db();
    let vendors: Vec<(Uuid,)> = with_latest!(db, c => sqlx::query_as("SELECT id FROM vendors ORDER BY id")
        .fetch_all(c).await)?;
    let mut activity = activities(db, now).await?;
    let rated: Vec<(Uuid, VendorActivity, VendorRating)> = vendors
        .into_iter()
        .map(|(id,)| {
            let a = activity.remove(&id).unwrap_or_default();
            let r = rate_vendor(&a);
            (id, a, r)
        })
        .collect();
    for chunk in rated.chunks(CHUNK) {
        let mut tx = db.begin().await?;
        for (vendor, a, r) in chunk {
            let factors = json!({ "factors": r.factors, "activity": a });
            with_tx!(tx, c => sqlx::query(
                "INSERT INTO vendor_scores (id, vendor_id, score, grade, needs_attention, factors, at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (vendor_id, at_ms) DO NOTHING")
                .bind(Uuid::now_v7()).bind(vendor).bind(i32::from(r.score)).bind(r.grade.as_str())
                .bind(r.needs_attention).bind(Json(&factors)).bind(now)
                .execute(c).await.map(|r| r.rows_affected()))?;
            with_tx!(tx, c => sqlx::query("UPDATE vendors SET score = $1 WHERE id = $2")
                .bind(i32::from(r.score)).bind(vendor)
                .execute(c).await.map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
    }
    Ok(rated.len())
}

/// Every vendor's activity in the window ending at `now` (vendors without any are absent).
///
/// An offer the vendor accepted and then gave back (`cancelled_by_vendor`) counts as
/// accepted and as cancelled by the vendor (its cancellation rate). Parts withdrawn with
/// their order after the accept count as finished and not delivered.
async fn activities(db: &Db, now: i64) -> Result<HashMap<Uuid, VendorActivity>, sqlx::Error> {
    let from = now - WINDOW_MS;
    let mut out: HashMap<Uuid, VendorActivity> = HashMap::new();

    let offers: Vec<(Uuid, String, i64, Option<i64>)> = with_latest!(db, c => sqlx::query_as(
        "SELECT vendor_id, status, offered_at_ms, responded_at_ms FROM fulfilment_offers \
         WHERE offered_at_ms > $1 AND offered_at_ms <= $2 \
         AND status IN ('accepted', 'rejected', 'expired', 'cancelled_by_vendor') \
         ORDER BY offered_at_ms, id")
        .bind(from).bind(now).fetch_all(c).await)?;
    for (vendor, status, offered, responded) in offers {
        let a = out.entry(vendor).or_default();
        a.offers += 1;
        if status == "accepted" || status == "cancelled_by_vendor" {
            a.accepted += 1;
        }
        if status == "cancelled_by_vendor" {
            a.cancelled_by_vendor += 1;
        }
        if status != "expired"
            && let Some(at) = responded
        {
            a.response_minutes
                .push((at - offered).max(0) as f64 / 60_000.0);
        }
    }

    let finished: Vec<(Uuid, String, i64)> = with_latest!(db, c => sqlx::query_as(
        "SELECT f.vendor_id, f.status, (SELECT COUNT(*) FROM fulfilment_lines l WHERE l.fulfilment_id = f.id \
         AND (l.delivered_milli IS NULL OR l.delivered_milli <> l.qty_milli)) FROM fulfilments f \
         WHERE f.vendor_id IS NOT NULL AND f.accepted_at_ms IS NOT NULL AND f.status IN ('delivered', 'cancelled') \
         AND COALESCE(f.delivered_at_ms, f.updated_at_ms) > $1 AND COALESCE(f.delivered_at_ms, f.updated_at_ms) <= $2")
        .bind(from).bind(now).fetch_all(c).await)?;
    for (vendor, status, short_lines) in finished {
        let a = out.entry(vendor).or_default();
        a.parts_finished += 1;
        if status == "delivered" && short_lines == 0 {
            a.delivered += 1;
        }
    }

    // What each vendor sold, by product, and the current prices of those products.
    const SOLD: &str = "FROM fulfilment_lines l JOIN fulfilments f ON f.id = l.fulfilment_id \
        WHERE f.status = 'delivered' AND f.vendor_id IS NOT NULL AND f.delivered_at_ms > $1 \
        AND f.delivered_at_ms <= $2 AND l.delivered_milli > 0";
    let sold: Vec<(Uuid, Uuid, i64)> = with_latest!(db, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT f.vendor_id, l.product_id, CAST(SUM(l.delivered_milli) AS BIGINT) {SOLD} \
         GROUP BY f.vendor_id, l.product_id")))
        .bind(from).bind(now).fetch_all(c).await)?;
    if sold.is_empty() {
        return Ok(out);
    }
    let offers: Vec<(Uuid, Uuid, i64, bool)> = with_latest!(db, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT o.vendor_id, o.product_id, o.price_paisa, v.active FROM offers o JOIN vendors v ON v.id = o.vendor_id \
         WHERE o.valid_from_ms <= $2 AND (o.valid_to_ms IS NULL OR o.valid_to_ms > $2) \
         AND o.product_id IN (SELECT DISTINCT l.product_id {SOLD})")))
        .bind(from).bind(now).fetch_all(c).await)?;
    let mut market: HashMap<Uuid, (f64, u32)> = HashMap::new();
    let mut own: HashMap<(Uuid, Uuid), i64> = HashMap::new();
    for (vendor, product, price, active) in offers {
        own.insert((vendor, product), price);
        if active {
            let m = market.entry(product).or_default();
            m.0 += price as f64;
            m.1 += 1;
        }
    }
    // Σ sold × own price / Σ sold × average, over the products with both prices.
    let mut value: HashMap<Uuid, (f64, f64)> = HashMap::new();
    for (vendor, product, milli) in sold {
        let (Some(price), Some((sum, n))) = (own.get(&(vendor, product)), market.get(&product))
        else {
            continue;
        };
        let average = sum / f64::from(*n);
        let v = value.entry(vendor).or_default();
        v.0 += milli as f64 * *price as f64;
        v.1 += milli as f64 * average;
    }
    for (vendor, (at_own, at_market)) in value {
        if at_market > 0.0 {
            out.entry(vendor).or_default().price_ratio = Some(at_own / at_market);
        }
    }
    Ok(out)
}

/// One stored vendor score.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct VendorScoreRow {
    /// 0–100.
    pub score: i32,
    /// `A+` … `F`.
    pub grade: String,
    /// Below 60 with offers in the window.
    pub needs_attention: bool,
    /// `{factors, activity}`.
    pub factors: Json<serde_json::Value>,
    /// When.
    pub at_ms: i64,
}

/// `vendor`'s scores, newest first.
pub async fn history(
    db: &Db,
    vendor: Uuid,
    limit: i64,
) -> Result<Vec<VendorScoreRow>, sqlx::Error> {
    with_replica!(db, c => sqlx::query_as::<_, VendorScoreRow>(
        "SELECT score, grade, needs_attention, factors, at_ms FROM vendor_scores WHERE vendor_id = $1 \
         ORDER BY at_ms DESC, id DESC LIMIT $2")
        .bind(vendor).bind(limit).fetch_all(c).await)
}
