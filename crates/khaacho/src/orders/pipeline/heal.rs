//! Stuck-order healing (DOMAIN "Recurring work": every 5 minutes, once across all nodes).
//! An order that sits in a step's state longer than the step ever takes lost its job (a dead
//! letter discarded, a bug): the first time it is found, the step is retried; found stuck
//! again in the same state, operators get an alert, once.
//!
//! | stuck in | for longer than | retry |
//! | --- | --- | --- |
//! | `received` | 5 min | the parse step (text not yet parsed) or the in-process steps |
//! | `validated` | 15 min | the routing step |
//! | `routed` | an open offer 5 min past its deadline | the offer-expiry sweep |
//! | `accepted` | 24 h without dispatch | none: the vendor must act; an alert at once |
//!
//! A queue that is merely behind is not healed: when the step's oldest queued job is older
//! than the threshold, its orders are waiting, not lost, and enqueueing them again would only
//! deepen the backlog (the queue-age metrics and alerts cover that case).

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{continue_after, start};
use crate::app::{App, JobContext};
use crate::base::alerts::{self, NewAlert};
use crate::base::db::Tx;
use crate::orders::model::OrderStatus;
use crate::orders::repo;
use crate::queue::{Job, JobError, Priority, RetryPolicy};
use crate::{with_latest, with_tx};

const MINUTE: i64 = 60_000;
/// Orders looked at per state per run; the next run takes the rest.
const SWEEP: i64 = 500;

/// The recurring job.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HealOrders {}

impl Job for HealOrders {
    type Host = App;
    const KIND: &'static str = "order.heal";
    const QUEUE: &'static str = "maintenance";
    const PRIORITY: Priority = Priority::Normal;

    fn policy() -> RetryPolicy {
        RetryPolicy::sweep()
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        let now = ctx.app.clock().now_ms();
        heal(&ctx.app, now).await?;
        Ok(())
    }
}

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Healed {
    /// Orders whose step was enqueued again (or whose offers were expired).
    pub retried: usize,
    /// Orders reported to operators.
    pub alerted: usize,
}

/// A state orders get stuck in, and how long is too long there.
struct Rule {
    status: OrderStatus,
    after_ms: i64,
    /// Job kinds of the step: when one of them is queued for longer than `after_ms`, the
    /// queue is behind and the state is skipped this run.
    kinds: &'static [&'static str],
}

const RULES: [Rule; 4] = [
    Rule {
        status: OrderStatus::Received,
        after_ms: 5 * MINUTE,
        kinds: &["order.parse", "order.validate"],
    },
    Rule {
        status: OrderStatus::Validated,
        after_ms: 15 * MINUTE,
        kinds: &["order.route"],
    },
    Rule {
        status: OrderStatus::Routed,
        after_ms: 5 * MINUTE,
        // A tick that is behind is exactly what this retry makes up for.
        kinds: &[],
    },
    Rule {
        status: OrderStatus::Accepted,
        after_ms: 24 * 60 * MINUTE,
        kinds: &[],
    },
];

/// One run at `now`.
pub async fn heal(app: &App, now: i64) -> anyhow::Result<Healed> {
    let mut healed = Healed::default();
    if app.mode().safe_mode() {
        // The pipeline waits on purpose: nothing is stuck.
        return Ok(healed);
    }
    forget_moved_on(app).await?;
    for rule in &RULES {
        let cutoff = now - rule.after_ms;
        if queue_behind(app, rule.kinds, cutoff).await? {
            continue;
        }
        let stuck = stuck(app, rule, cutoff).await?;
        if stuck.is_empty() {
            continue;
        }
        if rule.status == OrderStatus::Routed {
            // The offers' own sweep, run now instead of waiting for the next tick.
            crate::fulfilment::service::expire_offers(app, now, SWEEP).await?;
        }
        for id in stuck {
            match heal_one(app, rule, id, cutoff, now).await? {
                Some(Outcome::Retried) => healed.retried += 1,
                Some(Outcome::Alerted) => healed.alerted += 1,
                None => {}
            }
        }
    }
    if healed != Healed::default() {
        tracing::warn!(
            retried = healed.retried,
            alerted = healed.alerted,
            "stuck orders healed"
        );
        metrics::counter!("khaacho_orders_healed_total", "outcome" => "retried")
            .increment(healed.retried as u64);
        metrics::counter!("khaacho_orders_healed_total", "outcome" => "alerted")
            .increment(healed.alerted as u64);
    }
    Ok(healed)
}

enum Outcome {
    Retried,
    Alerted,
}

/// Heals one order in its own transaction, the order locked and checked again.
async fn heal_one(
    app: &App,
    rule: &Rule,
    id: Uuid,
    cutoff: i64,
    now: i64,
) -> anyhow::Result<Option<Outcome>> {
    let mut tx = app.db().begin().await?;
    let Some(order) = repo::find_for_update(&mut tx, id).await? else {
        return Ok(None);
    };
    if order.status() != rule.status || order.updated_at_ms > cutoff {
        return Ok(None);
    }
    let status = rule.status.as_str();
    let attempts: Option<i32> = with_tx!(tx, c => sqlx::query_scalar(
        "SELECT attempts FROM order_heals WHERE order_id = $1 AND status = $2")
        .bind(id).bind(status).fetch_optional(c).await)?;
    let retry = attempts.is_none() && rule.status != OrderStatus::Accepted;
    let outcome = if retry {
        match rule.status {
            OrderStatus::Received => {
                let unparsed = order.source_text.is_some()
                    && repo::lines_tx(&mut tx, &order).await?.is_empty();
                let first = (
                    order.id,
                    order.priority.as_str(),
                    order.correlation_id.as_deref(),
                    unparsed,
                );
                start(&mut tx, &[first]).await?;
            }
            OrderStatus::Validated => continue_after(&mut tx, &order).await?,
            // Routed: the expiry sweep already ran for this pass.
            _ => {}
        }
        Outcome::Retried
    } else if attempts.unwrap_or(0) < 2 {
        let since = order.updated_at_ms;
        let minutes = (now - since) / MINUTE;
        let message = format!(
            "order {id} has been {status} for {minutes} min{}",
            if attempts.is_some() {
                " and retrying its step did not move it"
            } else {
                " without the vendor dispatching it"
            }
        );
        alerts::raise(
            &mut tx,
            &NewAlert {
                kind: "order_stuck",
                severity: "warning",
                subject: "order",
                subject_id: id,
                message,
                detail: json!({ "status": status, "since_ms": since, "retried": attempts.is_some() }),
                at_ms: now,
            },
        )
        .await?;
        Outcome::Alerted
    } else {
        return Ok(None);
    };
    let attempts = match outcome {
        Outcome::Retried => 1,
        Outcome::Alerted => 2,
    };
    record(&mut tx, id, status, attempts, now).await?;
    tx.commit().await?;
    Ok(Some(outcome))
}

async fn record(
    tx: &mut Tx,
    id: Uuid,
    status: &str,
    attempts: i32,
    now: i64,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO order_heals (order_id, status, attempts, last_at_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (order_id, status) DO UPDATE SET attempts = excluded.attempts, last_at_ms = excluded.last_at_ms")
        .bind(id).bind(status).bind(attempts).bind(now).execute(c).await.map(|_| ()))?;
    Ok(())
}

/// Orders of `rule`'s state unchanged since `cutoff`, oldest first.
async fn stuck(app: &App, rule: &Rule, cutoff: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    let rows: Vec<(Uuid,)> = if rule.status == OrderStatus::Routed {
        with_latest!(app.db(), c => sqlx::query_as(
            "SELECT DISTINCT f.order_id FROM fulfilments f JOIN orders o ON o.id = f.order_id \
             WHERE f.status = 'offered' AND f.deadline_ms <= $1 AND o.status = 'routed' LIMIT $2")
            .bind(cutoff).bind(SWEEP).fetch_all(c).await)?
    } else {
        with_latest!(app.db(), c => sqlx::query_as(
            "SELECT id FROM orders WHERE status = $1 AND updated_at_ms <= $2 ORDER BY created_at_ms LIMIT $3")
            .bind(rule.status.as_str()).bind(cutoff).bind(SWEEP).fetch_all(c).await)?
    };
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Whether a job of `kinds` has been waiting in its queue since before `cutoff`.
async fn queue_behind(app: &App, kinds: &[&str], cutoff: i64) -> Result<bool, sqlx::Error> {
    for kind in kinds {
        let behind: Option<i64> = with_latest!(app.db(), c => sqlx::query_scalar(
            "SELECT created_at_ms FROM jobs WHERE kind = $1 AND status = 'queued' AND created_at_ms <= $2 LIMIT 1")
            .bind(*kind).bind(cutoff).fetch_optional(c).await)?;
        if behind.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Drops the rows of orders that have left the state they were stuck in.
async fn forget_moved_on(app: &App) -> Result<(), sqlx::Error> {
    crate::with_write!(app.db(), c => sqlx::query(
        "DELETE FROM order_heals WHERE NOT EXISTS \
         (SELECT 1 FROM orders o WHERE o.id = order_heals.order_id AND o.status = order_heals.status)")
        .execute(c).await.map(|_| ()))?;
    Ok(())
}
