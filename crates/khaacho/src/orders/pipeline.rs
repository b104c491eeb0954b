//! The order pipeline: one idempotent step per job, each a transaction that records its
//! event and enqueues the next step.
//!
//! Steps today: `order.validate` (resolve, convert, price, VAT, totals, review hold). Later
//! steps (credit, risk, routing) plug in at [`continue_after`], the one place that decides
//! what follows a state; an operator's approval of a hold continues through it too.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;
use uuid::Uuid;

use super::model::{Actor, OrderRow, OrderStatus};
use super::repo::{self, LineResolution, TransitionResult};
use crate::catalog::pricing::best_quote;
use crate::catalog::repo::{OfferRow, ProductRow, find_by_skus_tx, valid_offers_tx};
use crate::db::{Tx, now_ms};
use crate::domain::{UnitRules, canonical_unit, line_amount, vat};
use crate::queue::{EnqueueOptions, Job, JobContext, JobError, Priority, RetryPolicy, enqueue};

/// VAT percentage added per line.
pub const VAT_PERCENT: i64 = 13;

/// Job: validate and price one order.
#[derive(Debug, Serialize, Deserialize)]
pub struct ValidateOrder {
    /// The order.
    pub order_id: Uuid,
}

impl Job for ValidateOrder {
    const KIND: &'static str = "order.validate";
    const QUEUE: &'static str = "orders";
    const PRIORITY: Priority = Priority::Normal;

    fn policy() -> RetryPolicy {
        RetryPolicy { max_attempts: 10, timeout: std::time::Duration::from_secs(30) }
    }

    #[tracing::instrument(skip_all, fields(order_id = %self.order_id))]
    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        let review_above = ctx.app.settings().pipeline.review_above_npr.saturating_mul(100);
        let mut tx = ctx.app.db().begin().await?;
        let Some(mut order) = repo::find_for_update(&mut tx, self.order_id).await? else {
            return Err(JobError::Permanent(anyhow::anyhow!("order {} does not exist", self.order_id)));
        };
        if order.status() == OrderStatus::Failed {
            // The dead job was retried by an operator: process the order again.
            let actor = Actor::system();
            ensure(repo::transition(&mut tx, &mut order, OrderStatus::Received, &actor, Some("retried"), None).await?)?;
        }
        if order.status() != OrderStatus::Received {
            // Already validated by an earlier run of this job: nothing to do.
            return Ok(());
        }
        validate(&mut tx, &mut order, review_above).await?;
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn on_dead(self, ctx: JobContext, error: String) -> anyhow::Result<()> {
        fail_order(&ctx, self.order_id, error).await
    }
}

/// Marks an order `failed` after its processing job went dead (an operator may retry the job).
pub async fn fail_order(ctx: &JobContext, order_id: Uuid, error: String) -> anyhow::Result<()> {
    let mut tx = ctx.app.db().begin().await?;
    if let Some(mut order) = repo::find_for_update(&mut tx, order_id).await? {
        let detail = json!({ "error": error, "job_id": ctx.job_id });
        repo::transition(&mut tx, &mut order, OrderStatus::Failed, &Actor::system(), Some("processing_failed"), Some(detail))
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Resolves, prices and moves a `received` order to `validated` (or `on_hold` for review),
/// or to `rejected` with a reason code per refused line.
pub async fn validate(tx: &mut Tx, order: &mut OrderRow, review_above_paisa: i64) -> Result<(), JobError> {
    let lines = repo::lines_tx(tx, order).await?;
    let skus: Vec<String> = lines.iter().map(|l| l.sku.clone()).collect();
    let products = find_by_skus_tx(tx, &skus).await?;
    let ids: Vec<Uuid> = products.iter().map(|p| p.id).collect();
    let offers = valid_offers_tx(tx, &ids, now_ms()).await?;
    let resolved: Vec<LineResolution> = lines
        .iter()
        .map(|line| {
            let product = products.iter().find(|p| p.sku == line.sku);
            resolve_line(line.line_no, &line.unit, line.qty_milli, product, &offers)
        })
        .collect();
    let refused: Vec<_> = resolved
        .iter()
        .filter_map(|r| r.reject_code.as_ref().map(|c| json!({ "line_no": r.line_no, "code": c, "detail": r.reject_detail })))
        .collect();
    let sum = |f: fn(&LineResolution) -> Option<i64>| resolved.iter().filter_map(f).sum::<i64>();
    let totals = (sum(|r| r.subtotal_paisa), sum(|r| r.vat_paisa), sum(|r| r.total_paisa));
    let system = Actor::system();
    if !refused.is_empty() {
        repo::save_resolution(tx, order, &lines, &resolved, None).await?;
        let detail = json!({ "lines": refused });
        ensure(repo::transition(tx, order, OrderStatus::Rejected, &system, Some("lines_rejected"), Some(detail)).await?)?;
        info!(order_id = %order.id, "order rejected");
        return Ok(());
    }
    repo::save_resolution(tx, order, &lines, &resolved, Some(totals)).await?;
    ensure(repo::transition(tx, order, OrderStatus::Validated, &system, None, None).await?)?;
    if totals.2 > review_above_paisa {
        let detail = json!({ "total_paisa": totals.2, "review_above_paisa": review_above_paisa });
        ensure(repo::transition(tx, order, OrderStatus::OnHold, &system, Some("large_order_review"), Some(detail)).await?)?;
        return Ok(());
    }
    continue_after(tx, order).await
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
        let opts = EnqueueOptions { priority: Some(priority), correlation_id: order.correlation_id.clone(), ..Default::default() };
        enqueue(tx, &ValidateOrder { order_id: order.id }, opts).await?;
    }
    Ok(())
}

fn ensure(r: TransitionResult) -> Result<(), JobError> {
    match r {
        TransitionResult::Done => Ok(()),
        other => Err(JobError::Retryable(anyhow::anyhow!("order changed concurrently ({other:?})"))),
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
        Err(e) => return refuse("unit_incompatible", format!("{e}; {} is sold by {base}", p.sku)),
    };
    if let Some(min) = p.min_order_milli.filter(|m| base_qty < *m) {
        return refuse("below_min_quantity", format!("at least {} {base}", crate::domain::milli_to_qty(min)));
    }
    if let Some(max) = p.max_order_milli.filter(|m| base_qty > *m) {
        return refuse("above_max_quantity", format!("at most {} {base}", crate::domain::milli_to_qty(max)));
    }
    let offers: Vec<OfferRow> = all_offers.iter().filter(|o| o.product_id == p.id).cloned().collect();
    let quote = match best_quote(&offers, base_qty) {
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
