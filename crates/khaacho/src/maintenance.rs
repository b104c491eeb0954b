//! Housekeeping: monthly partitions ahead (PostgreSQL), retention of bookkeeping rows and of
//! the audit log (`audit.retention_days`), expired refresh tokens and old failed logins, and
//! the live feed's numbers past `live.history_hours`, and the messages finished more than
//! `channels.retention_days` ago; and a recount of the vendors' kept workloads and of their
//! kept volumes of the share rule's month, older days deleted (a correction is a bug
//! somewhere: logged and counted).

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::app::{App, JobContext};
use crate::base::db::{Backend, Db};
use crate::base::time::now_ms;
use crate::queue::{Job, JobError, Priority};
use crate::with_write;

/// The tables partitioned by month (of their orders' creation time).
pub const PARTITIONED: [&str; 3] = ["orders", "order_lines", "order_events"];

/// Months of partitions kept ready beyond the current one.
pub const MONTHS_AHEAD: u32 = 3;

/// How long idempotency keys are remembered.
const IDEMPOTENCY_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long fired schedule ticks are kept.
const TICK_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// `(name suffix, from_ms, to_ms)` of the current month and the next `ahead` months (UTC).
pub fn month_ranges(now_ms: i64, ahead: u32) -> Vec<(String, i64, i64)> {
    let today = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .date_naive();
    let (mut y, mut m) = (today.year(), today.month());
    let mut out = Vec::new();
    for _ in 0..=ahead {
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let start = month_start_ms(y, m);
        let end = month_start_ms(ny, nm);
        out.push((format!("y{y:04}m{m:02}"), start, end));
        (y, m) = (ny, nm);
    }
    out
}

fn month_start_ms(y: i32, m: u32) -> i64 {
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_millis())
        .unwrap_or_default()
}

/// Creates the monthly partitions of the current month and [`MONTHS_AHEAD`] more on
/// PostgreSQL (no-op on SQLite). Idempotent, and safe when several processes run it at once
/// (every process does as it starts: a deploy starts them together): one at a time under a
/// transaction-level advisory lock — `CREATE TABLE IF NOT EXISTS` alone is not, two sessions
/// creating the same table both pass the check and one fails on the catalog's unique index.
pub async fn ensure_partitions(db: &Db) -> anyhow::Result<u32> {
    let Backend::Pg(pool) = db.backend() else {
        return Ok(0);
    };
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext('khaacho.partitions'))")
        .bind(crate::queue::liveness::LOCK_CLASS)
        .execute(&mut *tx)
        .await?;
    let mut made = Vec::new();
    for (suffix, from, to) in month_ranges(now_ms(), MONTHS_AHEAD) {
        for table in PARTITIONED {
            let name = format!("{table}_{suffix}");
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(&name)
                .fetch_one(&mut *tx)
                .await?;
            if exists {
                continue;
            }
            // Identifiers and bounds come from this function, never from input.
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES FROM ({from}) TO ({to})"
            );
            sqlx::query(sqlx::AssertSqlSafe(ddl))
                .execute(&mut *tx)
                .await?;
            made.push(name);
        }
    }
    tx.commit().await?;
    for name in &made {
        info!(partition = %name, "created partition");
    }
    Ok(made.len() as u32)
}

/// Deletes bookkeeping rows past their retention.
pub async fn clean_up(db: &Db) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    let keys = with_write!(db, c => sqlx::query("DELETE FROM idempotency_keys WHERE created_at_ms < $1")
        .bind(now - IDEMPOTENCY_RETENTION_MS)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    let ticks = with_write!(db, c => sqlx::query("DELETE FROM schedule_ticks WHERE fire_at_ms < $1 AND done_at_ms IS NOT NULL")
        .bind(now - TICK_RETENTION_MS)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    // Per-retailer daily order counts: the risk step reads the last 7 days; a month is kept.
    let days = with_write!(db, c => sqlx::query("DELETE FROM retailer_order_days WHERE day < $1")
        .bind((crate::base::time::nepal_day(now) - 31) as i32)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(keys + ticks + days)
}

/// The recurring maintenance job.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MaintenanceJob {}

impl Job for MaintenanceJob {
    type Host = App;
    const KIND: &'static str = "maintenance.partitions";
    const QUEUE: &'static str = "maintenance";
    const PRIORITY: Priority = Priority::Low;

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        let created = ensure_partitions(ctx.app.db()).await?;
        let removed = clean_up(ctx.app.db()).await?;
        let audit_removed =
            crate::base::audit::purge(ctx.app.db(), ctx.app.settings().audit.retention_days)
                .await?;
        let now = now_ms();
        let lookback = ctx.app.auth().lockout.lookback().as_millis() as i64;
        let auth_removed =
            crate::auth::repo::purge_expired(ctx.app.db(), now, now - lookback).await?;
        // The feed's and the messages' times are the app's clock.
        let at = ctx.app.clock().now_ms();
        let history_ms = ctx.app.settings().live.history_hours * 3_600_000;
        let feed_removed = crate::live::feed::prune(ctx.app.db(), at - history_ms).await?;
        let days = i64::from(ctx.app.settings().channels.retention_days);
        let messages_removed = if days > 0 {
            let before = at - days * 24 * 3_600_000;
            crate::channels::repo::purge_messages(ctx.app.db(), before).await?
        } else {
            0
        };
        let corrected = crate::fulfilment::repo::recount_workloads(ctx.app.db()).await?;
        for (vendor, kept, counted) in &corrected {
            tracing::warn!(%vendor, ?kept, ?counted, "a vendor's kept count of open parts was wrong; corrected");
        }
        metrics::counter!("khaacho_vendor_workload_corrections_total")
            .increment(corrected.len() as u64);
        // The month of volumes routing's share rule reads, recounted; older days deleted.
        let from_day =
            crate::fulfilment::repo::volume_day(at - crate::fulfilment::facts::VOLUME_WINDOW_MS);
        let volumes = crate::fulfilment::repo::recount_volumes(ctx.app.db(), from_day).await?;
        for ((product, day, vendor), kept, counted) in &volumes {
            tracing::warn!(%product, day, %vendor, kept, counted, "a vendor's kept volume of a product was wrong; corrected");
        }
        metrics::counter!("khaacho_vendor_volume_corrections_total")
            .increment(volumes.len() as u64);
        info!(
            created,
            removed,
            audit_removed,
            auth_removed,
            feed_removed,
            messages_removed,
            "maintenance done"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_ranges_roll_over_the_year() {
        let nov = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .timestamp_millis();
        let r = month_ranges(nov, 3);
        let names: Vec<_> = r.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, ["y2026m11", "y2026m12", "y2027m01", "y2027m02"]);
        for w in r.windows(2) {
            assert_eq!(w[0].2, w[1].1, "ranges are contiguous");
        }
        assert!(r[0].1 <= nov && nov < r[0].2);
    }
}
