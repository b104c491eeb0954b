//! Price intelligence every 4 hours ([`SnapshotPrices`], `schedules.price_intelligence`;
//! DOMAIN.md "Price intelligence"): for every product with a valid offer, the insight
//! `GET /products/{sku}/prices` computes on read ([`super::prices::of_product`]) is stored as
//! a row of `price_snapshots`, and an abnormal 30-day change (|Δ| ≥ 20%, graded by
//! [`khaacho_vendors::change_alert`]) raises an operator alert (`price_change` about the
//! product: medium → `warning`, high and critical → `critical`).
//!
//! An alert is not raised again while an unacknowledged one of the same product and severity
//! from the last 24 hours is open. A run at a given `now` writes at most one snapshot per
//! product (`(product_id, at_ms)` is unique), so a retried job changes nothing twice.

use khaacho_vendors::{ChangeSeverity, PriceChange, change_alert};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::prices;
use crate::app::{App, JobContext};
use crate::base::alerts::{self, NewAlert};
use crate::base::db::{Db, Tx};
use crate::base::domain::paisa_to_npr;
use crate::queue::{Job, JobError, Priority, RetryPolicy};
use crate::{with_latest, with_replica, with_tx};

/// How long an open price alert silences the same product and severity.
const QUIET_MS: i64 = khaacho_credit::DAY_MS;

/// Job: snapshot every product's price intelligence (every 4 hours).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SnapshotPrices {}

impl Job for SnapshotPrices {
    type Host = App;
    const KIND: &'static str = "catalog.price_intelligence";
    const QUEUE: &'static str = "maintenance";
    const PRIORITY: Priority = Priority::Low;

    fn policy() -> RetryPolicy {
        RetryPolicy::sweep()
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        if ctx.app.mode().level() != crate::base::mode::Level::Normal {
            // A degraded platform skips this tick (DOMAIN "Safe mode and degradation").
            tracing::info!("price intelligence skipped: the platform is degraded");
            return Ok(());
        }
        let now = ctx.app.clock().now_ms();
        let n = snapshot_prices(&ctx.app, now).await?;
        tracing::info!(products = n, "price intelligence");
        Ok(())
    }
}

/// The operators' severity of an abnormal change.
fn alert_severity(s: ChangeSeverity) -> &'static str {
    match s {
        ChangeSeverity::Medium => "warning",
        ChangeSeverity::High | ChangeSeverity::Critical => "critical",
    }
}

/// Snapshots the price intelligence of every product with a valid offer of an active vendor
/// at `now`, raising alerts for abnormal changes. Returns how many products were
/// snapshotted.
pub async fn snapshot_prices(app: &App, now: i64) -> anyhow::Result<usize> {
    let db = app.db();
    let products: Vec<(Uuid, String, String)> = with_latest!(db, c => sqlx::query_as(
        "SELECT p.id, p.sku, p.name FROM products p WHERE EXISTS (SELECT 1 FROM offers o \
         JOIN vendors v ON v.id = o.vendor_id WHERE o.product_id = p.id AND v.active = $1 \
         AND o.valid_from_ms <= $2 AND (o.valid_to_ms IS NULL OR o.valid_to_ms > $2)) ORDER BY p.sku")
        .bind(true).bind(now).fetch_all(c).await)?;
    let mut done = 0;
    for (product, sku, name) in products {
        let p = prices::of_product(db, product, now).await?;
        let Some(i) = p.insight else { continue };
        let mut tx = db.begin().await?;
        with_tx!(tx, c => sqlx::query(
            "INSERT INTO price_snapshots (id, product_id, average_paisa, min_paisa, max_paisa, median_paisa, \
             change_30d_pct, volatility, trend, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (product_id, at_ms) DO NOTHING")
            .bind(Uuid::now_v7()).bind(product).bind(i.average_paisa).bind(i.min_paisa)
            .bind(i.max_paisa).bind(i.median_paisa).bind(i.change_30d_pct)
            .bind(i32::from(i.volatility)).bind(i.trend.as_str()).bind(now)
            .execute(c).await.map(|r| r.rows_affected()))?;
        if let Some(old) = p.baseline_paisa {
            let change = PriceChange {
                old_paisa: old,
                new_paisa: i.average_paisa,
            };
            if let Some(sev) = change_alert(change) {
                let severity = alert_severity(sev);
                if !alert_open(&mut tx, product, severity, now).await? {
                    let pct = change.percent().unwrap_or_default();
                    let way = if pct >= 0.0 { "up" } else { "down" };
                    alerts::raise(
                        &mut tx,
                        &NewAlert {
                            kind: "price_change",
                            severity,
                            subject: "product",
                            subject_id: product,
                            message: format!(
                                "{name} ({sku}): average price {way} {:.1}% in 30 days (NPR {:.2} → NPR {:.2})",
                                pct.abs(),
                                paisa_to_npr(old),
                                paisa_to_npr(i.average_paisa)
                            ),
                            detail: json!({
                                "sku": sku,
                                "change_severity": sev.as_str(),
                                "change_30d_pct": (pct * 100.0).round() / 100.0,
                                "baseline_paisa": old,
                                "average_paisa": i.average_paisa,
                                "min_paisa": i.min_paisa,
                                "max_paisa": i.max_paisa,
                                "vendors": i.vendors,
                            }),
                            at_ms: now,
                        },
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        done += 1;
    }
    Ok(done)
}

/// Whether an unacknowledged `price_change` alert of `severity` about `product` was raised in
/// the 24 hours before `now`.
async fn alert_open(
    tx: &mut Tx,
    product: Uuid,
    severity: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let open: i64 = with_tx!(tx, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM alerts WHERE subject_id = $1 AND kind = 'price_change' AND severity = $2 \
         AND acknowledged_at_ms IS NULL AND created_at_ms > $3")
        .bind(product).bind(severity).bind(now - QUIET_MS).fetch_one(c).await)?;
    Ok(open > 0)
}

/// One stored snapshot.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SnapshotRow {
    /// Id (the cursor's tie-break).
    pub id: Uuid,
    /// Average of the current prices.
    pub average_paisa: i64,
    /// Lowest.
    pub min_paisa: i64,
    /// Highest.
    pub max_paisa: i64,
    /// Median.
    pub median_paisa: i64,
    /// 30-day change, percent.
    pub change_30d_pct: Option<f64>,
    /// 0–100.
    pub volatility: i32,
    /// `stable`, `rising`, `falling`.
    pub trend: String,
    /// When.
    pub at_ms: i64,
}

/// `product`'s snapshots newest first, after `before` (`(at_ms, id)` of the previous page's
/// last row).
pub async fn history(
    db: &Db,
    product: Uuid,
    before: Option<(i64, Uuid)>,
    limit: i64,
) -> Result<Vec<SnapshotRow>, sqlx::Error> {
    let (ms, id) = before.map_or((None, None), |(ms, id)| (Some(ms), Some(id)));
    with_replica!(db, c => sqlx::query_as::<_, SnapshotRow>(
        "SELECT id, average_paisa, min_paisa, max_paisa, median_paisa, change_30d_pct, volatility, trend, at_ms \
         FROM price_snapshots WHERE product_id = $1 AND ($2 IS NULL OR at_ms < $2 OR (at_ms = $2 AND id < $3)) \
         ORDER BY at_ms DESC, id DESC LIMIT $4")
        .bind(product).bind(ms).bind(id).bind(limit).fetch_all(c).await)
}
