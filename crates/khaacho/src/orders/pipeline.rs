//! The order pipeline: one idempotent step per job, each a transaction that records its
//! event and enqueues the next step.
//!
//! Steps today: `order.validate` (resolve, convert, price, VAT, totals, review hold). Later
//! steps (credit, risk, routing) plug in at [`continue_after`], the one place that decides
//! what follows a state; an operator's approval of a hold continues through it too.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::model::{Actor, LineRow, OrderRow, OrderStatus};
use super::repo::{self, Change, LineResolution, TransitionResult};
use crate::app::{App, JobContext};
use crate::base::db::Tx;
use crate::base::domain::{UnitRules, canonical_unit, line_amount, vat};
use crate::base::time::now_ms;
use crate::catalog::pricing::best_quote;
use crate::catalog::repo::{OfferRow, ProductRow, find_by_skus_tx, valid_offers_tx};
use crate::queue::{BatchJob, EnqueueOptions, Job, JobError, Priority, RetryPolicy, enqueue};

/// VAT percentage added per line.
pub const VAT_PERCENT: i64 = 13;

/// Job: validate and price one order.
#[derive(Debug, Serialize, Deserialize)]
pub struct ValidateOrder {
    /// The order.
    pub order_id: Uuid,
}

impl Job for ValidateOrder {
    type Host = App;
    const KIND: &'static str = "order.validate";
    // Its own queue, so workers can claim validations in batches.
    const QUEUE: &'static str = "validate";
    const PRIORITY: Priority = Priority::Normal;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            timeout: std::time::Duration::from_secs(30),
        }
    }

    #[tracing::instrument(skip_all, fields(order_id = %self.order_id))]
    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        validate_orders(&ctx, &[self.order_id]).await
    }

    async fn on_dead(self, ctx: JobContext, error: String) -> anyhow::Result<()> {
        fail_order(&ctx, self.order_id, error).await
    }
}

impl BatchJob for ValidateOrder {
    // Validation is a handful of statements whatever the batch size, so under load a worker
    // validates up to this many orders per transaction instead of one.
    const MAX_BATCH: usize = 32;

    async fn run_batch(jobs: Vec<Self>, ctx: JobContext) -> Result<(), JobError> {
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.order_id).collect();
        validate_orders(&ctx, &ids).await
    }
}

/// Marks an order `failed` after its processing job went dead (an operator may retry the job).
pub async fn fail_order(ctx: &JobContext, order_id: Uuid, error: String) -> anyhow::Result<()> {
    let mut tx = ctx.app.db().begin().await?;
    if let Some(mut order) = repo::find_for_update(&mut tx, order_id).await? {
        let detail = json!({ "error": error, "job_id": ctx.job_id });
        repo::transition(
            &mut tx,
            &mut order,
            OrderStatus::Failed,
            &Actor::system(),
            Some("processing_failed"),
            Some(detail),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// What validation decided for one order.
enum Verdict {
    /// Some lines were refused: the order is rejected with this detail.
    Reject(serde_json::Value),
    /// Priced; held for review when the total is over the threshold.
    Accept { hold: bool },
}

/// Validates `ids` in one transaction: resolves every line, converts packs to base units,
/// prices each with the best offer, adds VAT and totals, and moves each `received` order to
/// `validated` (then `on_hold` for a large order) or to `rejected` with a reason code per
/// refused line. Orders no longer `received` are left alone (an earlier run did the work),
/// and `failed` ones whose job an operator retried are processed again.
#[tracing::instrument(skip_all, fields(orders = ids.len()))]
pub async fn validate_orders(ctx: &JobContext, ids: &[Uuid]) -> Result<(), JobError> {
    let review_above = ctx
        .app
        .settings()
        .pipeline
        .review_above_npr
        .saturating_mul(100);
    let system = Actor::system();
    let mut tx = ctx.app.db().begin().await?;
    let mut orders = repo::find_many_for_update(&mut tx, ids).await?;
    if orders.len() < ids.len() {
        let err = anyhow::anyhow!(
            "{} of {} orders do not exist",
            ids.len() - orders.len(),
            ids.len()
        );
        // Alone, a missing order is final; in a batch, the runtime retries each job alone.
        return Err(if ids.len() == 1 {
            JobError::Permanent(err)
        } else {
            JobError::Retryable(err)
        });
    }
    let mut retried: Vec<_> = orders
        .iter_mut()
        .filter(|o| o.status() == OrderStatus::Failed)
        .map(|o| {
            (
                o,
                Change {
                    to: OrderStatus::Received,
                    reason: Some("retried"),
                    detail: None,
                },
            )
        })
        .collect();
    ensure(repo::transition_many(&mut tx, &mut retried, &system).await?)?;
    let mut todo: Vec<&mut OrderRow> = orders
        .iter_mut()
        .filter(|o| o.status() == OrderStatus::Received)
        .collect();
    let lines = {
        let refs: Vec<&OrderRow> = todo.iter().map(|o| &**o).collect();
        repo::lines_many_tx(&mut tx, &refs).await?
    };
    let skus: Vec<String> = lines
        .iter()
        .map(|(_, l)| l.sku.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let products = find_by_skus_tx(&mut tx, &skus).await?;
    let product_ids: Vec<Uuid> = products.iter().map(|p| p.id).collect();
    let offers = valid_offers_tx(&mut tx, &product_ids, now_ms()).await?;
    let mut by_order: HashMap<Uuid, Vec<LineRow>> = HashMap::new();
    for (order_id, line) in lines {
        by_order.entry(order_id).or_default().push(line);
    }
    let no_lines = Vec::new();
    let mut resolved: Vec<Vec<LineResolution>> = Vec::with_capacity(todo.len());
    let mut verdicts = Vec::with_capacity(todo.len());
    let mut totals = Vec::with_capacity(todo.len());
    for order in &todo {
        let requested = by_order.get(&order.id).unwrap_or(&no_lines);
        let res: Vec<LineResolution> = requested
            .iter()
            .map(|line| {
                let product = products.iter().find(|p| p.sku == line.sku);
                resolve_line(line.line_no, &line.unit, line.qty_milli, product, &offers)
            })
            .collect();
        let refused: Vec<_> = res
            .iter()
            .filter_map(|r| {
                r.reject_code
                    .as_ref()
                    .map(|c| json!({ "line_no": r.line_no, "code": c, "detail": r.reject_detail }))
            })
            .collect();
        let sum = |f: fn(&LineResolution) -> Option<i64>| res.iter().filter_map(f).sum::<i64>();
        let t = (
            sum(|r| r.subtotal_paisa),
            sum(|r| r.vat_paisa),
            sum(|r| r.total_paisa),
        );
        if refused.is_empty() && !requested.is_empty() {
            verdicts.push(Verdict::Accept {
                hold: t.2 > review_above,
            });
            totals.push(Some(t));
        } else {
            let detail = if requested.is_empty() {
                json!({ "lines": [], "error": "the order has no lines" })
            } else {
                json!({ "lines": refused })
            };
            verdicts.push(Verdict::Reject(detail));
            totals.push(None);
        }
        resolved.push(res);
    }
    let results: Vec<repo::Resolution<'_>> = todo
        .iter()
        .zip(&resolved)
        .zip(&totals)
        .map(|((o, res), t)| repo::Resolution {
            order: o,
            requested: by_order.get(&o.id).map_or(&no_lines[..], |v| &v[..]),
            resolved: res,
            totals: *t,
        })
        .collect();
    repo::save_resolutions(&mut tx, &results).await?;
    let mut first: Vec<(&mut OrderRow, Change<'_>)> = todo
        .iter_mut()
        .zip(&verdicts)
        .map(|(o, v)| {
            let change = match v {
                Verdict::Reject(detail) => Change {
                    to: OrderStatus::Rejected,
                    reason: Some("lines_rejected"),
                    detail: Some(detail.clone()),
                },
                Verdict::Accept { .. } => Change {
                    to: OrderStatus::Validated,
                    reason: None,
                    detail: None,
                },
            };
            (&mut **o, change)
        })
        .collect();
    ensure(repo::transition_many(&mut tx, &mut first, &system).await?)?;
    let mut holds: Vec<(&mut OrderRow, Change<'_>)> = todo
        .iter_mut()
        .zip(&verdicts)
        .zip(&totals)
        .filter(|((_, v), _)| matches!(v, Verdict::Accept { hold: true }))
        .map(|((o, _), t)| {
            let total = t.map_or(0, |t| t.2);
            let detail = json!({ "total_paisa": total, "review_above_paisa": review_above });
            (
                &mut **o,
                Change {
                    to: OrderStatus::OnHold,
                    reason: Some("large_order_review"),
                    detail: Some(detail),
                },
            )
        })
        .collect();
    ensure(repo::transition_many(&mut tx, &mut holds, &system).await?)?;
    for o in &todo {
        continue_after(&mut tx, o).await?;
    }
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Enqueues whatever follows `order`'s current state: a `received` order (parsed, or
/// approved after review) is validated next. Validated orders wait here for the routing
/// step, which a later issue adds.
pub async fn continue_after(tx: &mut Tx, order: &OrderRow) -> Result<(), JobError> {
    if order.status() == OrderStatus::Received {
        let priority = match order.priority.as_str() {
            "high" => Priority::High,
            "low" => Priority::Low,
            _ => Priority::Normal,
        };
        let opts = EnqueueOptions {
            priority: Some(priority),
            correlation_id: order.correlation_id.clone(),
            ..Default::default()
        };
        enqueue(tx, &ValidateOrder { order_id: order.id }, opts).await?;
    }
    Ok(())
}

fn ensure(r: TransitionResult) -> Result<(), JobError> {
    match r {
        TransitionResult::Done => Ok(()),
        other => Err(JobError::Retryable(anyhow::anyhow!(
            "order changed concurrently ({other:?})"
        ))),
    }
}

fn resolve_line(
    line_no: i32,
    unit: &str,
    qty_milli: i64,
    product: Option<&ProductRow>,
    all_offers: &[OfferRow],
) -> LineResolution {
    let refuse = |code: &str, detail: String| LineResolution {
        line_no,
        reject_code: Some(code.to_string()),
        reject_detail: Some(detail),
        ..Default::default()
    };
    let Some(p) = product.filter(|p| p.active) else {
        return refuse("unknown_sku", "no active product has this SKU".into());
    };
    let (Some(base), Some(unit)) = (canonical_unit(&p.unit), canonical_unit(unit)) else {
        return refuse("unit_incompatible", format!("unit {unit} is not known"));
    };
    let base_qty = match unit.to_base(qty_milli, base, p.pack_size_milli) {
        Ok(q) => q,
        Err(e) => {
            return refuse(
                "unit_incompatible",
                format!("{e}; {} is sold by {base}", p.sku),
            );
        }
    };
    if let Some(min) = p.min_order_milli.filter(|m| base_qty < *m) {
        return refuse(
            "below_min_quantity",
            format!("at least {} {base}", crate::base::domain::milli_to_qty(min)),
        );
    }
    if let Some(max) = p.max_order_milli.filter(|m| base_qty > *m) {
        return refuse(
            "above_max_quantity",
            format!("at most {} {base}", crate::base::domain::milli_to_qty(max)),
        );
    }
    let offers = all_offers.iter().filter(|o| o.product_id == p.id);
    let quote = match best_quote(offers, base_qty) {
        Ok(q) => q,
        Err(e) => return refuse(e.code(), e.to_string()),
    };
    let subtotal = line_amount(quote.unit_price_paisa, base_qty);
    let tax = vat(subtotal, VAT_PERCENT);
    LineResolution {
        line_no,
        product_id: Some(p.id),
        product_name: Some(p.name.clone()),
        base_qty_milli: Some(base_qty),
        base_unit: Some(base.as_str().to_string()),
        unit_price_paisa: Some(quote.unit_price_paisa),
        subtotal_paisa: Some(subtotal),
        vat_paisa: Some(tax),
        total_paisa: Some(subtotal + tax),
        offer_id: Some(quote.offer_id),
        vendor_id: Some(quote.vendor_id),
        price_reason: Some(quote.reason),
        reject_code: None,
        reject_detail: None,
    }
}
