//! Counts kept as orders change instead of counted when read (a `COUNT(*)` over the orders
//! grows with the table): orders per status, maintained from order changes, and orders per
//! retailer per Nepal day, maintained as orders are created.

use uuid::Uuid;

use super::model::OrderStatus;
use super::transition::ChangeRecord;
use crate::base::db::{BuildBatch, Db, Tx};
use crate::base::time::nepal_day;
use crate::{with_replica, with_tx};

/// Adds `changes` to the counts: one down for each `from`, one up for each `to`.
pub async fn apply(tx: &mut Tx, changes: &[&ChangeRecord]) -> Result<(), sqlx::Error> {
    let mut delta: std::collections::BTreeMap<&'static str, i64> = Default::default();
    for c in changes {
        if let Some(from) = c.from {
            *delta.entry(from.as_str()).or_default() -= 1;
        }
        *delta.entry(c.to.as_str()).or_default() += 1;
    }
    delta.retain(|_, d| *d != 0);
    if delta.is_empty() {
        return Ok(());
    }
    // Sorted by status (a BTreeMap), so concurrent consumers lock the rows in one order.
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new("INSERT INTO order_status_counts (status, n) ");
        qb.push_values(&delta, |mut b, (status, d)| {
            b.push_bind(*status).push_bind(*d);
        });
        qb.push(" ON CONFLICT (status) DO UPDATE SET n = order_status_counts.n + excluded.n");
        qb.build_batch().execute(&mut *c).await?;
    });
    Ok(())
}

/// Orders per status (every status, zero when none). May lag the latest changes by the
/// time their `order.changed` jobs take, so it reads wherever reads are cheapest.
pub async fn all(db: &Db) -> Result<Vec<(OrderStatus, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = with_replica!(db, c => sqlx::query_as(
        "SELECT status, n FROM order_status_counts").fetch_all(c).await)?;
    Ok(OrderStatus::ALL
        .into_iter()
        .map(|s| {
            let n = rows
                .iter()
                .find(|(name, _)| name == s.as_str())
                .map_or(0, |r| r.1);
            (s, n)
        })
        .collect())
}

/// `((retailer, Nepal day), orders)` for orders `(retailer, created at)`: one row per shop
/// and day (a statement may not change one counter row twice), in key order, so concurrent
/// intakes lock the rows in one order.
pub fn created_delta(orders: &[(Uuid, i64)]) -> Vec<((Uuid, i64), i64)> {
    let mut delta: std::collections::BTreeMap<(Uuid, i64), i64> = Default::default();
    for (retailer, at) in orders {
        *delta.entry((*retailer, nepal_day(*at))).or_default() += 1;
    }
    delta.into_iter().collect()
}

/// Adds new orders, `(retailer, created at)`, to the per-retailer daily counts, in the
/// transaction that creates them ([`created_delta`]).
pub async fn add_created(tx: &mut Tx, orders: &[(Uuid, i64)]) -> Result<(), sqlx::Error> {
    let delta = created_delta(orders);
    for chunk in delta.chunks(500) {
        with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new("INSERT INTO retailer_order_days (retailer_id, day, n) ");
            qb.push_values(chunk, |mut b, ((retailer, day), n)| {
                b.push_bind(*retailer).push_bind(*day as i32).push_bind(*n);
            });
            qb.push(" ON CONFLICT (retailer_id, day) DO UPDATE SET n = retailer_order_days.n + excluded.n");
            qb.build_batch().execute(&mut *c).await?;
        });
    }
    Ok(())
}
