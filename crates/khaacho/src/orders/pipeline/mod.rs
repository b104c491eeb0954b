//! The order pipeline: what carries an order from `received` to its next waiting state.
//!
//! Each step is an idempotent function over orders locked in the caller's transaction: it
//! checks their state, does its work, and moves them through the transition service (which
//! writes the event and tells the consumers). Steps that need no outside call run back to
//! back in one job and one transaction, for a batch of orders at once — that is what keeps
//! the pipeline's capacity as steps are added. A step that calls out (the parse step's LLM
//! agents) is a job of its own, so the call happens outside any transaction.
//!
//! The one ordered list of steps:
//! 1. [`parse`] (text orders only, its own job `order.parse`): text → lines, or a review hold;
//! 2. [`ProcessOrders`] (job `order.validate`, batched), running in one transaction:
//!    [`validate`] (resolve, convert, price, VAT, totals → `validated` or `rejected`), then
//!    [`credit`] (reserve the total as a hold, or say why not), then [`risk`] (score 0–100,
//!    stored), then the large-order review; what they decide is settled together in
//!    [`settle`]: a rejection voids the hold, holds put the order `on_hold` with the first
//!    reason (all reasons in the event);
//! 3. routing to vendors (`crate::fulfilment::routing`): in the same run and transaction, for
//!    the orders step 2 validated, when the worker runs routing too (it calls out to
//!    nothing); otherwise, and for an order that becomes `validated` later (an operator's
//!    approval), its own batched job ([`RouteOrders`], `order.route`), enqueued by
//!    [`continue_after`].
//!
//! [`continue_after`] is the one place that decides what follows a state; an operator's
//! approval of a hold continues through it too.

pub mod credit;
pub mod heal;
pub mod parse;
pub mod risk;
pub mod validate;

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::model::{Actor, OrderRow, OrderStatus};
use super::repo;
use super::transition::{self, Change, Deferred};
use crate::app::{App, JobContext};
use crate::base::db::Tx;
use crate::base::time::now_ms;
use crate::credit::ledger;
use crate::fulfilment::routing::{self, RouteOrders};
use crate::fulfilment::service;
use crate::queue::{BatchJob, EnqueueOptions, Job, JobError, Priority, RetryPolicy, enqueue_batch};

/// Job: run the in-process steps (validation and what follows it) for one order. Workers
/// claim these in batches ([`BatchJob`]), so one transaction carries up to
/// [`ProcessOrders::MAX_BATCH`] orders. The kind name is kept from when validation was the
/// only step, so jobs already queued keep running.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProcessOrders {
    /// The order.
    pub order_id: Uuid,
}

impl Job for ProcessOrders {
    type Host = App;
    const KIND: &'static str = "order.validate";
    // Its own queue, so workers can claim these in batches.
    const QUEUE: &'static str = "validate";
    const PRIORITY: Priority = Priority::Normal;
    // The credit step locks the batch's retailers' accounts until commit, and batches share
    // retailers: many small batches side by side would queue on those locks one behind the
    // other. A few at a time, with batches that grow under load, keeps the locks few and the
    // work per commit large. Three, not two, since the run routes its orders too (routing's
    // own job ran two batches beside two of these): at 300 orders/s the whole life's p95 fell
    // by ~100 ms, at 150/s it stayed (bench/README.md, "Routing in the validation run").
    const CONCURRENCY: usize = 3;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            timeout: std::time::Duration::from_secs(30),
        }
    }

    #[tracing::instrument(skip_all, fields(order_id = %self.order_id))]
    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        process(&ctx, &[self.order_id]).await
    }

    async fn on_dead(self, ctx: JobContext, error: String) -> anyhow::Result<()> {
        transition::fail(ctx.app.db(), self.order_id, ctx.job_id, error).await
    }
}

impl BatchJob for ProcessOrders {
    // The steps are a handful of statements whatever the batch size, so under load a worker
    // processes up to this many orders per transaction instead of one.
    const MAX_BATCH: usize = 128;

    async fn run_batch(jobs: Vec<Self>, ctx: JobContext) -> Result<(), JobError> {
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.order_id).collect();
        process(&ctx, &ids).await
    }
}

/// Runs the in-process steps, in order, for `ids` in one transaction, with the routing of
/// the orders they validate when this worker runs routing too ([`JobContext::runs`]); then
/// enqueues what follows each order and completes the jobs in that same transaction.
///
/// Routing in the same run saves each order a second claim, transaction and wait in the
/// `route` queue (bench/README.md, "Routing in the validation run"). When a vendor it chose
/// filled up under a concurrent transaction, the whole run is rolled back and done again on
/// the new counts; when routing fails otherwise, or vendors keep filling up, the run is done
/// again without it and the orders' routing jobs carry on from `validated` (with their own
/// retries and, out of attempts, the `routing_failed` hold), so a routing fault never fails an
/// order.
///
/// With routing, the credit step takes its accounts' locks last ([`Credit::Last`]): the
/// accounts are the rows concurrent runs, deliveries and payments of the same shops wait
/// on, and held from the credit step they were held through routing too. When the locked
/// accounts decide otherwise than their unlocked reading did, the run is rolled back and done
/// again with the locks taken first.
#[tracing::instrument(skip_all, fields(orders = ids.len()))]
pub async fn process(ctx: &JobContext, ids: &[Uuid]) -> Result<(), JobError> {
    if ctx.runs::<RouteOrders>() {
        let mut credit = Credit::Last;
        for _ in 0..service::REDECIDE {
            match process_once(ctx, ids, true, credit).await? {
                Routing::Done => return Ok(()),
                Routing::Over(vendors) => service::overbooked(&vendors, "routing"),
                Routing::Stale => {
                    metrics::counter!("khaacho_credit_redecided_total").increment(1);
                    credit = Credit::First;
                }
                Routing::Failed(e) => {
                    tracing::warn!(error = %e, "routing in the validation run failed; left to the routing job");
                    break;
                }
            }
        }
    }
    // Without routing, a try commits or fails.
    process_once(ctx, ids, false, Credit::First)
        .await
        .map(|_| ())
}

/// How routing went in one try of [`process`].
enum Routing {
    /// Committed (routed, or left to the routing jobs).
    Done,
    /// Rolled back: these vendors filled up meanwhile.
    Over(Vec<Uuid>),
    /// Rolled back: the accounts, locked last, decided otherwise than as first read.
    Stale,
    /// Rolled back: routing failed.
    Failed(JobError),
}

/// When a run locks its retailers' accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credit {
    /// At the credit step, held to the commit: the reservations judged on the locked rows.
    First,
    /// Judged on the unlocked reading, settled and routed on it; locked at the end of the
    /// run, judged again and written only if nothing differs.
    Last,
}

/// One try of [`process`]; `route`: route the orders it validates in its transaction.
async fn process_once(
    ctx: &JobContext,
    ids: &[Uuid],
    route: bool,
    credit: Credit,
) -> Result<Routing, JobError> {
    let mut tx = ctx.app.db().begin_indexed().await?;
    // The run's status changes, written together once routing made its own: each order's
    // row once, however many steps it moved (`Deferred`).
    let mut transitions = Deferred::default();
    let mut orders = lock_orders(&mut tx, ids, &mut transitions).await?;
    let mut todo: Vec<&mut OrderRow> = orders
        .iter_mut()
        .filter(|o| o.status() == OrderStatus::Received)
        .collect();
    let requested = validate::requested_lines(&mut tx, &todo).await?;
    // With routing, what follows until routing is done touches no partitioned table (the
    // orders' and lines' writes are deferred to after it): its statements are planned once
    // per connection (`Tx::plan_generic`).
    if route {
        tx.plan_generic(true).await?;
    }
    // Completed first (in this same transaction, so a rollback leaves the jobs to run again):
    // whatever follows the credit step's account locks is held up by them until the commit.
    ctx.complete_in(&mut tx).await?;
    // With routing, pricing reads routing's market (one read of the offers for both), and the
    // lines are written once, after routing has addressed them to their vendors.
    let prices = if route {
        validate::Prices::Market(ctx.app.volumes())
    } else {
        validate::Prices::Offers
    };
    let now = ctx.app.clock().now_ms();
    let run = validate::run(&mut tx, &mut todo, requested, prices, now, &mut transitions);
    let mut validated = match run.await {
        Ok(v) => v,
        Err(e) if validate::MarketUnread::is(&e) => return Ok(Routing::Failed(e)),
        Err(e) => return Err(e),
    };
    let mut priced: Vec<&mut OrderRow> = todo
        .iter_mut()
        .zip(&validated.ok)
        .filter(|(_, ok)| **ok)
        .map(|(o, _)| &mut **o)
        .collect();
    let pending = match decide(&mut tx, &ctx.app, &mut priced, credit, &mut transitions).await? {
        Decided::Written => None,
        Decided::Pending(p) => Some(p),
        Decided::Redo => return Ok(Routing::Stale),
    };
    // What routing here takes on needs no routing job.
    let mut routed_here = Vec::new();
    let mut load = None;
    if route {
        let mut ready: Vec<&mut OrderRow> = todo
            .iter_mut()
            .filter(|o| o.status() == OrderStatus::Validated)
            .map(|o| &mut **o)
            .collect();
        routed_here = ready.iter().map(|o| o.id).collect();
        let known = routing::Known {
            lines: &validated.lines,
            market: validated.market.take(),
        };
        let routed = match routing::route_locked(
            &mut tx,
            &ctx.app,
            &mut ready,
            Some(known),
            &mut transitions,
        )
        .await
        {
            Ok(routed) => routed,
            Err(e) => return Ok(Routing::Failed(e)),
        };
        // The partitioned tables' writes from here: planned per call again.
        tx.plan_generic(false).await?;
        validated.write_lines(&mut tx, &routed.addressed).await?;
        load = Some(routed.load);
    }
    transitions.write(&mut tx).await?.or_retry()?;
    // The hot rows last, in the order every transaction takes them: the accounts, then the
    // vendors' counters.
    if let Some(p) = pending
        && !credit::confirm(&mut tx, &ctx.app.settings().credit, &p.0, &p.1).await?
    {
        return Ok(Routing::Stale);
    }
    if let Some(load) = load {
        let over = load.write(&mut tx).await?;
        if !over.is_empty() {
            return Ok(Routing::Over(over));
        }
    }
    let done: Vec<&OrderRow> = todo
        .iter()
        .map(|o| &**o)
        .filter(|o| !routed_here.contains(&o.id))
        .collect();
    continue_after_many(&mut tx, &done).await?;
    tx.commit().await?;
    Ok(Routing::Done)
}

/// What a step decided for one order.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Nothing against it.
    Pass,
    /// A person must look at it: the reason code and its detail.
    Hold(&'static str, serde_json::Value),
    /// Refused: the reason code and its detail.
    Reject(&'static str, serde_json::Value),
}

/// What [`decide`] left to do.
enum Decided {
    /// The credit step's reservations are written.
    Written,
    /// Settled on the unlocked reading of the accounts; `credit::confirm` locks them and
    /// writes the reservations at the end of the run.
    Pending(Box<(credit::Unlocked, credit::Judged)>),
    /// An order that reserves credit is rejected by another step: not something to settle on
    /// an unlocked reading (its hold would have to be voided); the run is done again with the
    /// accounts locked first.
    Redo,
}

/// Runs the steps after validation — credit, risk, large-order review — for the priced
/// orders, then settles what they decided.
async fn decide(
    tx: &mut Tx,
    app: &App,
    orders: &mut [&mut OrderRow],
    lock: Credit,
    transitions: &mut Deferred,
) -> Result<Decided, JobError> {
    if orders.is_empty() {
        return Ok(Decided::Written);
    }
    let cfg = &app.settings().credit;
    let now = now_ms();
    let refs: Vec<&OrderRow> = orders.iter().map(|o| &**o).collect();
    let facts = credit::Facts::load(tx, cfg, &refs, now).await?;
    // Risk first, on the unlocked snapshot; credit last, so the accounts' row locks are held
    // only from the reservations to the commit. An order the risk step rejects reserves
    // nothing (there would only be a hold to void).
    let risk = risk::run(tx, cfg, &refs, &facts, now).await?;
    let rejected: Vec<bool> = risk
        .iter()
        .map(|v| matches!(v, Verdict::Reject(..)))
        .collect();
    let (judged, unlocked) = match lock {
        Credit::First => (credit::run(tx, cfg, &refs, &facts, &rejected).await?, None),
        Credit::Last => {
            let (j, u) = credit::judge_unlocked(cfg, &refs, facts, &rejected)?;
            (j, Some(u))
        }
    };
    let review_above = app.settings().pipeline.review_above_npr.saturating_mul(100);
    let verdicts: Vec<Vec<Verdict>> = refs
        .iter()
        .zip(judged.verdicts.iter().cloned().zip(risk))
        .map(|(o, (c, r))| {
            let total = o.total_paisa.unwrap_or(0);
            let large = (total > review_above).then(|| {
                let detail = json!({ "total_paisa": total, "review_above_paisa": review_above });
                Verdict::Hold("large_order_review", detail)
            });
            [Some(c), Some(r), large].into_iter().flatten().collect()
        })
        .collect();
    let Some(unlocked) = unlocked else {
        settle(tx, orders, &verdicts, &judged.held, transitions).await?;
        return Ok(Decided::Written);
    };
    let reserves_and_rejected = verdicts
        .iter()
        .zip(judged.held.iter().zip(&judged.held_before))
        .any(|(vs, (held, before))| {
            *held && !*before && vs.iter().any(|v| matches!(v, Verdict::Reject(..)))
        });
    if reserves_and_rejected {
        return Ok(Decided::Redo);
    }
    // Only holds placed before this run exist yet, and only they can need voiding.
    settle(tx, orders, &verdicts, &judged.held_before, transitions).await?;
    Ok(Decided::Pending(Box::new((unlocked, judged))))
}

/// Applies the verdicts of the steps after validation: any rejection rejects the order (and
/// voids its hold, where `held` says it has one); otherwise any hold puts it `on_hold` with
/// the first reason, every reason in the event's detail.
async fn settle(
    tx: &mut Tx,
    orders: &mut [&mut OrderRow],
    verdicts: &[Vec<Verdict>],
    held: &[bool],
    transitions: &mut Deferred,
) -> Result<(), JobError> {
    let mut changes: Vec<(&mut OrderRow, Change<'_>)> = Vec::new();
    for ((o, vs), held) in orders.iter_mut().zip(verdicts).zip(held) {
        let reject = vs.iter().find_map(|v| match v {
            Verdict::Reject(reason, detail) => Some((*reason, detail.clone())),
            _ => None,
        });
        if let Some((reason, detail)) = reject {
            if *held {
                ledger::void(tx, o.id)
                    .await
                    .map_err(|e| JobError::Retryable(e.into()))?;
            }
            let change = Change {
                to: OrderStatus::Rejected,
                reason: Some(reason),
                detail: Some(detail),
            };
            changes.push((&mut **o, change));
            continue;
        }
        let holds: Vec<_> = vs
            .iter()
            .filter_map(|v| match v {
                Verdict::Hold(reason, detail) => Some((*reason, detail)),
                _ => None,
            })
            .collect();
        if let Some((first, _)) = holds.first() {
            let all: Vec<_> = holds
                .iter()
                .map(|(r, d)| json!({ "reason": r, "detail": d }))
                .collect();
            let change = Change {
                to: OrderStatus::OnHold,
                reason: Some(first),
                detail: Some(json!({ "holds": all })),
            };
            changes.push((&mut **o, change));
        }
    }
    transitions
        .apply_many(&mut changes, &Actor::system())
        .or_retry()
}

/// Locks `ids` for the steps. A `failed` order whose job an operator retried from the
/// dead-letter view is put back to `received` so the steps run again; orders in any other
/// state are left alone by the steps (an earlier run did the work).
async fn lock_orders(
    tx: &mut Tx,
    ids: &[Uuid],
    transitions: &mut Deferred,
) -> Result<Vec<OrderRow>, JobError> {
    let mut orders = repo::find_many_for_update(tx, ids).await?;
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
            let change = Change {
                to: OrderStatus::Received,
                reason: Some("retried"),
                detail: None,
            };
            (o, change)
        })
        .collect();
    transitions
        .apply_many(&mut retried, &Actor::system())
        .or_retry()?;
    Ok(orders)
}

/// Enqueues whatever follows `order`'s current state: a `received` order (parsed, or
/// approved after review) goes through the in-process steps next; a `validated` one to the
/// routing step; a `routed` one (approved after its vendors ran out) to the routing step
/// again, which offers its unassigned parts anew.
pub async fn continue_after(tx: &mut Tx, order: &OrderRow) -> Result<(), sqlx::Error> {
    continue_after_many(tx, &[order]).await
}

/// [`continue_after`] for many orders, with one statement per job kind.
pub async fn continue_after_many(tx: &mut Tx, orders: &[&OrderRow]) -> Result<(), sqlx::Error> {
    let opts = |o: &OrderRow| job_options(&o.priority, o.correlation_id.as_deref());
    let process: Vec<_> = orders
        .iter()
        .filter(|o| o.status() == OrderStatus::Received)
        .map(|o| (ProcessOrders { order_id: o.id }, opts(o)))
        .collect();
    let route: Vec<_> = orders
        .iter()
        .filter(|o| matches!(o.status(), OrderStatus::Validated | OrderStatus::Routed))
        .map(|o| (RouteOrders { order_id: o.id }, opts(o)))
        .collect();
    enqueue_all(tx, &process).await?;
    enqueue_all(tx, &route).await
}

/// Enqueues `jobs` (of one kind) with one statement, if there are any.
async fn enqueue_all<J: Job>(tx: &mut Tx, jobs: &[(J, EnqueueOptions)]) -> Result<(), sqlx::Error> {
    if !jobs.is_empty() {
        let refs: Vec<_> = jobs.iter().map(|(j, o)| (j, o.clone())).collect();
        enqueue_batch(tx, &refs).await?;
    }
    Ok(())
}

/// Enqueues the first step of new orders: the parse step for text orders, the in-process
/// steps for structured ones. `(order id, priority name, request id, is a text order)`.
pub async fn start(
    tx: &mut Tx,
    orders: &[(Uuid, &str, Option<&str>, bool)],
) -> Result<(), sqlx::Error> {
    let (process, parse) = first_jobs(orders);
    enqueue_all(tx, &process).await?;
    enqueue_all(tx, &parse).await
}

/// [`start`]'s jobs as rows at `now`, for a writer that inserts them in a statement of its
/// own (the PostgreSQL intake; it counts them once written), and the queues they go to (to
/// wake after the commit).
pub(crate) fn first_job_rows(
    orders: &[(Uuid, &str, Option<&str>, bool)],
    now: i64,
) -> Result<(Vec<crate::base::db::JobRow>, Vec<&'static str>), sqlx::Error> {
    let (process, parse) = first_jobs(orders);
    let mut rows = Vec::with_capacity(orders.len());
    let mut queues = Vec::new();
    for (job, opts) in &process {
        rows.push(crate::queue::job_row(job, opts, now)?);
    }
    for (job, opts) in &parse {
        rows.push(crate::queue::job_row(job, opts, now)?);
    }
    if !process.is_empty() {
        queues.push(ProcessOrders::QUEUE);
    }
    if !parse.is_empty() {
        queues.push(parse::ParseOrder::QUEUE);
    }
    Ok((rows, queues))
}

type FirstJobs = (
    Vec<(ProcessOrders, EnqueueOptions)>,
    Vec<(parse::ParseOrder, EnqueueOptions)>,
);

/// The first job of each new order: the parse step for a text order, the in-process steps
/// for a structured one.
fn first_jobs(orders: &[(Uuid, &str, Option<&str>, bool)]) -> FirstJobs {
    let process = orders
        .iter()
        .filter(|o| !o.3)
        .map(|(id, p, c, _)| (ProcessOrders { order_id: *id }, job_options(p, *c)))
        .collect();
    let parse = orders
        .iter()
        .filter(|o| o.3)
        .map(|(id, p, c, _)| (parse::ParseOrder { order_id: *id }, job_options(p, *c)))
        .collect();
    (process, parse)
}

/// The options of an order's next job: the order's priority and request id.
fn job_options(priority: &str, correlation: Option<&str>) -> EnqueueOptions {
    EnqueueOptions {
        priority: Some(job_priority(priority)),
        correlation_id: correlation.map(str::to_string),
        ..Default::default()
    }
}

fn job_priority(name: &str) -> Priority {
    match name {
        "high" => Priority::High,
        "low" => Priority::Low,
        _ => Priority::Normal,
    }
}
