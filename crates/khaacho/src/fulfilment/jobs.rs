//! The fulfilment tick (every minute, once across all nodes): offers past their deadline
//! move to the next vendor, and delivered orders nobody confirmed complete themselves after
//! `fulfilment.auto_complete_hours`. Both are functions of an explicit `now`, so tests drive
//! them with the app's clock instead of waiting.

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::service;
use crate::app::{App, JobContext};
use crate::orders::model::{Actor, OrderStatus};
use crate::orders::repo as orders;
use crate::orders::transition::{self, Change, TransitionResult};
use crate::queue::{Job, JobError, Priority, RetryPolicy};
use crate::with_latest;

/// Orders handled per pass of each sweep; the next tick takes the rest.
const SWEEP: i64 = 500;

/// The recurring job.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FulfilmentTick {}

impl Job for FulfilmentTick {
    type Host = App;
    const KIND: &'static str = "fulfilment.tick";
    const QUEUE: &'static str = "maintenance";
    const PRIORITY: Priority = Priority::High;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            timeout: std::time::Duration::from_secs(55),
        }
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        let now = ctx.app.clock().now_ms();
        tick(&ctx.app, now).await?;
        Ok(())
    }
}

/// What one tick did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ticked {
    /// Parts whose offer expired (moved on, or left unassigned).
    pub expired: usize,
    /// Orders completed automatically.
    pub completed: usize,
}

/// One tick at `now`.
pub async fn tick(app: &App, now: i64) -> anyhow::Result<Ticked> {
    let expired = service::expire_offers(app, now, SWEEP).await?;
    let cutoff = now - app.settings().fulfilment.auto_complete_hours * 3_600_000;
    let completed = complete_delivered(app, cutoff).await?;
    if expired + completed > 0 {
        tracing::info!(expired, completed, "fulfilment tick");
    }
    Ok(Ticked { expired, completed })
}

/// Completes the orders delivered at or before `cutoff` (at most [`SWEEP`]).
async fn complete_delivered(app: &App, cutoff: i64) -> anyhow::Result<usize> {
    let ids: Vec<(Uuid,)> = with_latest!(app.db(), c => sqlx::query_as(
        "SELECT id FROM orders WHERE status = 'delivered' AND updated_at_ms <= $1 ORDER BY updated_at_ms LIMIT $2")
        .bind(cutoff).bind(SWEEP).fetch_all(c).await)?;
    if ids.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = ids.into_iter().map(|r| r.0).collect();
    let mut tx = app.db().begin().await?;
    let mut locked = orders::find_many_for_update(&mut tx, &ids).await?;
    let mut changes: Vec<_> = locked
        .iter_mut()
        .filter(|o| o.status() == OrderStatus::Delivered && o.updated_at_ms <= cutoff)
        .map(|o| {
            let change = Change {
                to: OrderStatus::Completed,
                reason: Some("auto_completed"),
                detail: Some(
                    json!({ "detail": "no issue reported within the confirmation window" }),
                ),
            };
            (o, change)
        })
        .collect();
    let n = changes.len();
    match transition::apply_many(&mut tx, &mut changes, &Actor::system()).await? {
        TransitionResult::Done => {}
        other => anyhow::bail!("orders changed while completing them ({other:?})"),
    }
    tx.commit().await?;
    Ok(n)
}
