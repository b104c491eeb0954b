//! The routing step: a validated order is split into vendor parts, each offered to its
//! vendor with a deadline. It runs in the validation run's transaction, right after the
//! credit and risk steps, for the orders that run validates ([`route_locked`], called by
//! `crate::orders::pipeline::process` when its worker runs routing too); and as its own
//! batched job (`order.route`) for the rest: an order approved into `validated` or `routed`
//! by an operator, one healed, one whose in-run routing failed, or every order when the
//! validating worker does not run routing.
//!
//! For a batch of orders, one read of the market (retailers, offers, vendors with their
//! workload, 30-day volumes: [`Market`]), then per order the pure decision
//! ([`khaacho_vendors::route`]), then one write of every part, line, offer and decision and
//! one transition for the batch. An order no vendor may supply goes `on_hold`
//! (`vendor_unavailable`) with an alert. The same job re-offers the unassigned parts of a
//! `routed` order an operator approved after its vendors ran out. A routing job that runs out
//! of attempts holds its order (`routing_failed`) with a critical alert instead of failing it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use super::facts::{Facts, Market};
use super::repo::{self, NewDecision, NewPart, PartLineRow, PartRow, PartStatus, Workloads};
use super::service::{self, alert_no_vendor, new_offer};
use crate::app::{App, JobContext};
use crate::base::alerts::{self, NewAlert};
use crate::base::db::{Reader, Tx};
use crate::orders::model::{Actor, LineRow, OrderRow, OrderStatus};
use crate::orders::repo as orders;
use crate::orders::transition::{self, Change, Deferred};
use crate::queue::{BatchJob, Job, JobError, Priority, RetryPolicy};

/// Job: route one order (batched by the runtime).
#[derive(Debug, Serialize, Deserialize)]
pub struct RouteOrders {
    /// The order.
    pub order_id: Uuid,
}

impl Job for RouteOrders {
    type Host = App;
    const KIND: &'static str = "order.route";
    const QUEUE: &'static str = "route";
    const PRIORITY: Priority = Priority::Normal;
    // Two batches at a time per process (one deciding while the other commits), as two
    // processes already may: when both give a vendor its last free place, the one that
    // commits second finds the vendor over its limit, is rolled back and decided again
    // (`route`). One at a time, the step was busy ~70% of the time at 300 orders/s and
    // each batch waited for the one ahead of it (bench/README.md, "Status polls shed with
    // the writes").
    const CONCURRENCY: usize = 2;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            timeout: std::time::Duration::from_secs(30),
        }
    }

    #[tracing::instrument(skip_all, fields(order_id = %self.order_id))]
    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        route(&ctx, &[self.order_id]).await
    }

    /// Out of attempts, the order is held for an operator (`routing_failed`, with an alert)
    /// rather than failed: its credit stays reserved and nothing is lost. Approving it, or
    /// retrying this job from the dead letters, routes it again.
    async fn on_dead(self, ctx: JobContext, error: String) -> anyhow::Result<()> {
        hold_after_failure(&ctx.app, self.order_id, ctx.job_id, error).await
    }
}

/// Hold reason of an order whose routing job ran out of attempts.
const ROUTING_FAILED: &str = "routing_failed";

async fn hold_after_failure(
    app: &App,
    order_id: Uuid,
    job_id: Uuid,
    error: String,
) -> anyhow::Result<()> {
    let now = app.clock().now_ms();
    let mut tx = app.db().begin().await?;
    if let Some(mut order) = orders::find_for_update(&mut tx, order_id).await?
        && matches!(order.status(), OrderStatus::Validated | OrderStatus::Routed)
    {
        let detail = json!({ "error": error, "job_id": job_id });
        transition::apply(
            &mut tx,
            &mut order,
            OrderStatus::OnHold,
            &Actor::system(),
            Some(ROUTING_FAILED),
            Some(detail.clone()),
        )
        .await?;
        alerts::raise(
            &mut tx,
            &NewAlert {
                kind: ROUTING_FAILED,
                severity: "critical",
                subject: "order",
                subject_id: order.id,
                message: format!("routing order {} kept failing: {error}", order.id),
                detail,
                at_ms: now,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Orders held because their routing job died, whose job an operator retried from the dead
/// letters, go back to where they were held from so this run routes them.
async fn resume_retried(tx: &mut Tx, locked: &mut [OrderRow]) -> Result<(), JobError> {
    let mut resumed: Vec<(&mut OrderRow, Change<'_>)> = locked
        .iter_mut()
        .filter(|o| {
            o.status() == OrderStatus::OnHold && o.hold_reason.as_deref() == Some(ROUTING_FAILED)
        })
        .filter_map(|o| {
            let to = match o.held_from.as_deref() {
                Some("routed") => OrderStatus::Routed,
                Some("validated") => OrderStatus::Validated,
                _ => return None,
            };
            let change = Change {
                to,
                reason: Some("retried"),
                detail: None,
            };
            Some((o, change))
        })
        .collect();
    transition::apply_many(tx, &mut resumed, &Actor::system())
        .await?
        .or_retry()
}

impl BatchJob for RouteOrders {
    const MAX_BATCH: usize = 128;
    // Its jobs are enqueued together, by the validation batch that priced their orders:
    // lingering would add `queue.linger_ms` to every order's way to `routed` for no bigger
    // batches (bench/README.md, "Status polls shed with the writes").
    const LINGER: bool = false;

    async fn run_batch(jobs: Vec<Self>, ctx: JobContext) -> Result<(), JobError> {
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.order_id).collect();
        route(&ctx, &ids).await
    }
}

/// Routes the validated orders of `ids` and re-offers the unassigned parts of the routed
/// ones, in one transaction with the jobs' completion. When a vendor it chose filled up under
/// a concurrent transaction (another process's routing, a rejection's or an expiry's
/// reassignment), the transaction is rolled back and the batch decided again on the new
/// counts.
#[tracing::instrument(skip_all, fields(orders = ids.len()))]
pub async fn route(ctx: &JobContext, ids: &[Uuid]) -> Result<(), JobError> {
    for _ in 0..service::REDECIDE {
        let over = route_once(ctx, ids).await?;
        if over.is_empty() {
            return Ok(());
        }
        service::overbooked(&over, "routing");
    }
    Err(JobError::Retryable(anyhow::anyhow!(
        "vendors kept filling up under concurrent routing"
    )))
}

/// One try of [`route`]: the vendors it found over a limit at its end (rolled back), or none
/// (committed).
async fn route_once(ctx: &JobContext, ids: &[Uuid]) -> Result<Vec<Uuid>, JobError> {
    let app = &ctx.app;
    let mut tx = app.db().begin_indexed().await?;
    let mut rows = orders::find_many_for_update(&mut tx, ids).await?;
    ctx.complete_in(&mut tx).await?;
    resume_retried(&mut tx, &mut rows).await?;
    let mut locked: Vec<&mut OrderRow> = rows.iter_mut().collect();
    let mut transitions = Deferred::default();
    let load = route_locked(&mut tx, app, &mut locked, None, &mut transitions)
        .await?
        .load;
    transitions.write(&mut tx).await?.or_retry()?;
    let over = load.write(&mut tx).await?;
    if over.is_empty() {
        tx.commit().await?;
    }
    Ok(over)
}

/// What the validation run hands to [`route_locked`] for the orders it just validated. It
/// writes their lines itself, after routing: routing returns the lines it addresses to
/// vendors ([`Routed::addressed`]) instead of writing them.
pub(crate) struct Known<'a> {
    /// The orders' lines as the run resolved them, by order.
    pub lines: &'a [(Uuid, LineRow)],
    /// The market the run priced from, read in this transaction for the orders' shops and
    /// products: routing reads it again only when it lacks (`None`).
    pub market: Option<Market>,
}

/// What [`route_locked`] leaves to its caller.
#[derive(Default)]
pub(crate) struct Routed {
    /// The vendors' counters the parts moved, unwritten (see [`route_locked`]).
    pub load: Workloads,
    /// The lines addressed to vendors, when the caller writes the lines (it passed [`Known`]).
    pub addressed: Vec<orders::Addressed>,
}

/// Routes the `validated` orders among `orders` (locked in `tx`) and offers the unassigned
/// parts of the `routed` ones anew; leaves the others alone. Returns the vendors' counters
/// the parts moved, unwritten: the caller writes them ([`Workloads::write`]) once it has
/// taken every other hot row its transaction needs (they are the hottest rows, taken last),
/// and on vendors found over a limit must roll back and decide again instead of committing.
/// The orders' status changes are made in `transitions`, which the caller writes.
/// `known`: what the caller has for the orders in this transaction (read otherwise).
/// The validation step calls it in its own transaction for the orders it just validated
/// (`crate::orders::pipeline::process`).
#[tracing::instrument(name = "route", skip_all, fields(orders = orders.len()))]
pub(crate) async fn route_locked(
    tx: &mut Tx,
    app: &App,
    orders: &mut [&mut OrderRow],
    known: Option<Known<'_>>,
    transitions: &mut Deferred,
) -> Result<Routed, JobError> {
    let now = app.clock().now_ms();
    let mut locked: Vec<&mut OrderRow> = orders
        .iter_mut()
        .filter(|o| matches!(o.status(), OrderStatus::Validated | OrderStatus::Routed))
        .map(|o| &mut **o)
        .collect();
    if locked.is_empty() {
        return Ok(Routed::default());
    }
    let refs: Vec<&OrderRow> = locked.iter().map(|o| &**o).collect();
    // With what the caller knows, it writes the lines.
    let writes_lines = known.is_some();
    let (known_lines, known_market) = match known {
        Some(k) => (Some(k.lines), k.market),
        None => (None, None),
    };
    // The lines the caller resolved, when it has them for every order here (the validation
    // run's); else as stored.
    let all_lines = match known_lines {
        Some(known)
            if refs.iter().all(|o| {
                o.status() == OrderStatus::Validated && known.iter().any(|(id, _)| *id == o.id)
            }) =>
        {
            Cow::Borrowed(known)
        }
        // The caller's lines are not written yet: there is nothing else to read.
        _ if writes_lines => {
            return Err(JobError::Retryable(anyhow::anyhow!(
                "routing was handed unwritten lines that do not cover its orders"
            )));
        }
        _ => Cow::Owned(orders::lines_many_tx(tx, &refs).await?),
    };
    let lines_of = |id: Uuid| -> Vec<LineRow> {
        all_lines
            .iter()
            .filter(|(o, _)| *o == id)
            .map(|(_, l)| l.clone())
            .collect()
    };
    let per_order: Vec<(&OrderRow, Vec<LineRow>)> =
        locked.iter().map(|o| (&**o, lines_of(o.id))).collect();
    let pairs: Vec<(&OrderRow, &[LineRow])> =
        per_order.iter().map(|(o, l)| (*o, l.as_slice())).collect();
    let mut market = match known_market {
        Some(m) => m,
        // Through the transaction: a connection of its own per read would be a second one
        // held while this one waits (see `Reader`).
        None => Market::load(&mut Reader::Tx(tx), app.volumes(), &pairs, now)
            .await
            .map_err(|e| JobError::Retryable(e.into()))?,
    };
    let mut plan = Written::default();
    let routed: Vec<Uuid> = locked
        .iter()
        .filter(|o| o.status() == OrderStatus::Routed)
        .map(|o| o.id)
        .collect();
    for (order, lines) in &per_order {
        if order.status() == OrderStatus::Validated {
            decide(app, &mut market, order, lines, now, &mut plan);
        }
    }
    let addressed = if writes_lines {
        std::mem::take(&mut plan.addressed)
    } else {
        Vec::new()
    };
    repo::write_routed(tx, &plan.parts, &plan.addressed, &plan.decisions).await?;
    let mut load = Workloads::default();
    for n in &plan.parts {
        load.entered(&n.part, &n.lines);
    }
    for (order_id, reason, detail) in &plan.alerts {
        if let Some(order) = locked.iter().find(|o| o.id == *order_id) {
            alert_no_vendor(tx, order, reason, detail.clone(), now).await?;
        }
    }
    let mut changes: Vec<(&mut OrderRow, Change<'_>)> = Vec::new();
    let mut rest: Vec<&mut OrderRow> = Vec::new();
    for o in locked.iter_mut() {
        match plan.outcome.iter().find(|(id, ..)| *id == o.id) {
            Some((_, to, reason, detail)) => changes.push((
                o,
                Change {
                    to: *to,
                    reason: Some(reason),
                    detail: Some(detail.clone()),
                },
            )),
            None => rest.push(o),
        }
    }
    transitions
        .apply_many(&mut changes, &Actor::system())
        .or_retry()?;
    for order in rest {
        if routed.contains(&order.id) {
            reoffer(tx, app, order, &lines_of(order.id), now, &mut load).await?;
        }
    }
    Ok(Routed { load, addressed })
}

/// What routing a batch writes.
#[derive(Default)]
struct Written {
    parts: Vec<NewPart>,
    /// The lines each part addresses to its vendor.
    addressed: Vec<orders::Addressed>,
    decisions: Vec<NewDecision>,
    /// `(order, reason, detail)`.
    alerts: Vec<(Uuid, String, serde_json::Value)>,
    /// `(order, to, reason, detail)`.
    outcome: Vec<(Uuid, OrderStatus, &'static str, serde_json::Value)>,
}

/// Decides one validated order: parts and offers, or a hold.
fn decide(
    app: &App,
    market: &mut Market,
    order: &OrderRow,
    lines: &[LineRow],
    now: i64,
    out: &mut Written,
) {
    let Some(facts) = market.facts(order, lines) else {
        let reason = "the retailer no longer exists".to_string();
        out.outcome.push((
            order.id,
            OrderStatus::OnHold,
            "vendor_unavailable",
            json!({ "detail": reason }),
        ));
        out.alerts.push((order.id, reason, json!({})));
        return;
    };
    let settings = app.settings();
    let d = khaacho_vendors::route(
        &facts.retailer,
        &facts.lines,
        &facts.vendors,
        &settings.routing,
    );
    let view = super::routes::RoutingView::new(order.id, d.clone(), &facts);
    let shown = repo::decision_json(&view);
    let Some(plan) = d.plan else {
        out.decisions.push(NewDecision {
            order_id: order.id,
            fulfilment_id: None,
            outcome: "no_vendor",
            reason: d.reason.clone(),
            decision: shown,
            at_ms: now,
        });
        let detail = json!({ "uncovered_lines": d.uncovered, "detail": d.reason });
        out.outcome.push((
            order.id,
            OrderStatus::OnHold,
            "vendor_unavailable",
            detail.clone(),
        ));
        out.alerts.push((order.id, d.reason, detail));
        return;
    };
    let minutes = settings.fulfilment.offer_timeout_minutes;
    let mut summary = Vec::new();
    for p in &plan.parts {
        let id = Uuid::now_v7();
        let part_lines: Vec<PartLineRow> = lines
            .iter()
            .filter(|l| u32::try_from(l.line_no).is_ok_and(|n| p.lines.contains(&n)))
            .filter_map(|l| {
                Some(PartLineRow {
                    fulfilment_id: id,
                    line_no: l.line_no,
                    product_id: l.product_id?,
                    qty_milli: l.base_qty_milli?,
                    unit: l.base_unit.clone().unwrap_or_default(),
                    unit_price_paisa: l.unit_price_paisa?,
                    reserved_milli: 0,
                    delivered_milli: None,
                })
            })
            .collect();
        let total: i64 = lines
            .iter()
            .filter(|l| part_lines.iter().any(|pl| pl.line_no == l.line_no))
            .filter_map(|l| l.total_paisa)
            .sum();
        let mut part = PartRow {
            id,
            order_id: order.id,
            order_created_at_ms: order.created_at_ms,
            retailer_id: order.retailer_id,
            vendor_id: Some(p.vendor_id),
            status: PartStatus::Offered.as_str().into(),
            offer_id: None,
            deadline_ms: None,
            reassignments: 0,
            tried: Json(vec![p.vendor_id]),
            total_paisa: total,
            delivered_paisa: None,
            accepted_at_ms: None,
            dispatched_at_ms: None,
            delivered_at_ms: None,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let offer = new_offer(&part, p.vendor_id, now, minutes);
        part.offer_id = Some(offer.id);
        part.deadline_ms = Some(offer.deadline_ms);
        market.took(p.vendor_id);
        let line_nos: Vec<i32> = part_lines.iter().map(|l| l.line_no).collect();
        summary.push(
            json!({ "fulfilment_id": id, "vendor_id": p.vendor_id, "lines": line_nos,
            "deadline_ms": offer.deadline_ms }),
        );
        out.addressed.push(orders::Addressed {
            order: (order.id, order.created_at_ms),
            line_nos,
            vendor: Some(p.vendor_id),
        });
        out.parts.push(NewPart {
            part,
            lines: part_lines,
            offer,
        });
    }
    out.decisions.push(NewDecision {
        order_id: order.id,
        fulfilment_id: None,
        outcome: "routed",
        reason: d.reason.clone(),
        decision: shown,
        at_ms: now,
    });
    out.outcome.push((
        order.id,
        OrderStatus::Routed,
        "routed",
        json!({ "parts": summary, "reason": d.reason }),
    ));
}

/// Offers the unassigned parts of a routed order again (an operator approved its
/// `vendor_unavailable` hold): every vendor may be asked again, with a fresh count of
/// reassignments. The parts' moves are added to `load`.
async fn reoffer(
    tx: &mut Tx,
    app: &App,
    order: &mut OrderRow,
    lines: &[LineRow],
    now: i64,
    load: &mut Workloads,
) -> Result<(), JobError> {
    let mut parts = repo::parts_for_update(tx, &[order.id]).await?;
    let unassigned: Vec<Uuid> = parts
        .iter()
        .filter(|p| p.status() == PartStatus::Unassigned)
        .map(|p| p.id)
        .collect();
    let part_lines = repo::lines_tx(tx, &unassigned).await?;
    for p in parts
        .iter_mut()
        .filter(|p| p.status() == PartStatus::Unassigned)
    {
        p.reassignments = 0;
        p.tried.0.clear();
        load.left(p, &part_lines);
        service::reassign(
            tx,
            app,
            order,
            lines,
            &part_lines,
            p,
            now,
            "approved by an operator",
        )
        .await
        .map_err(|e| JobError::Retryable(anyhow::anyhow!(e)))?;
        load.entered(p, &part_lines);
    }
    service::sync_order(
        tx,
        order,
        &parts,
        &Actor::system(),
        "reoffered",
        json!({}),
        now,
    )
    .await
    .map_err(|e| JobError::Retryable(anyhow::anyhow!(e)))
}

/// For [`super::routes::RoutingView::new`]: vendor names.
pub(super) fn vendor_name(facts: &Facts, id: Uuid) -> String {
    facts
        .rows
        .get(&id)
        .map(|v| v.name.clone())
        .unwrap_or_default()
}
