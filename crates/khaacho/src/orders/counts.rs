//! Orders per status, maintained from order changes instead of counted on every metrics
//! scrape (a `COUNT(*) GROUP BY status` over every order grows with the table).

use super::model::OrderStatus;
use super::transition::ChangeRecord;
use crate::base::db::{Db, Tx};
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
        qb.build().execute(&mut *c).await?;
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
