//! The transition service: the one way an order comes to exist and changes its status.
//!
//! Every change — an intake, a pipeline step, an operator's action, a vendor's reply — goes
//! through [`create`] or [`apply_many`] (or [`Deferred`], which makes a run's changes in
//! memory and writes them the same way at its end), which, in the caller's transaction,
//! 1. checks the state machine (`OrderStatus::can_become`) and that the row is still in the
//!    state it was read in (optimistic check in the UPDATE itself),
//! 2. writes the order's status and the event (actor, role, reason, detail),
//! 3. enqueues one [`OrderChanged`] job carrying every change of that transaction.
//!
//! `OrderChanged` is where whatever must hear of a change hangs off (today: the maintained
//! per-status counts behind `khaacho_orders{state}`, and the retailer's and vendors' messages
//! (`channels::notify`), the signed webhooks to vendor systems (`webhooks::events`), the
//! live-updates feed (`live::feed`); next: events out). Because it is enqueued with the change, a committed change is never
//! missed by its consumers, and a rolled-back one is never seen. A test fails if any other
//! source file writes an order's status.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use uuid::Uuid;

use super::model::{Actor, OrderRow, OrderStatus, created_at_of};
use crate::app::{App, JobContext};
use crate::base::db::{BuildBatch, Tx, TxInner, push_created_in};
use crate::base::time::now_ms;
use crate::channels::notify::{self, OrderChange};
use crate::live;
use crate::queue::{BatchJob, EnqueueOptions, Job, JobError, Priority, RetryPolicy, enqueue};
use crate::webhooks::events::OrderEvent;
use crate::with_tx;

/// Outcome of a transition.
#[derive(Debug, PartialEq, Eq)]
pub enum TransitionResult {
    /// Changed, event written, consumers will hear of it.
    Done,
    /// The state machine forbids it.
    Illegal,
    /// Someone else changed the order first (the row no longer has the expected status);
    /// the caller must roll back.
    Stale,
}

impl TransitionResult {
    /// A transition that did not happen as a retry of the job making it: the order changed
    /// under the step (a job's run decides again on the order as it now is).
    pub fn or_retry(self) -> Result<(), JobError> {
        match self {
            TransitionResult::Done => Ok(()),
            other => Err(JobError::Retryable(anyhow::anyhow!(
                "order changed concurrently ({other:?})"
            ))),
        }
    }
}

/// One requested state change.
pub struct Change<'a> {
    /// Target state.
    pub to: OrderStatus,
    /// Why (reason code or a person's words).
    pub reason: Option<&'a str>,
    /// Structured detail for the event.
    pub detail: Option<serde_json::Value>,
}

/// A new order as the intake writes it (its lines are written by the repository).
#[derive(Clone, Debug)]
pub struct NewOrder<'a> {
    /// Id (UUIDv7; its timestamp is the creation time and partition key).
    pub id: Uuid,
    /// Buyer.
    pub retailer_id: Uuid,
    /// Priority name.
    pub priority: &'a str,
    /// Channel name (`api`, `whatsapp`, `sms`, `console`).
    pub channel: &'a str,
    /// Retailer's note.
    pub note: Option<&'a str>,
    /// Request id.
    pub correlation_id: Option<&'a str>,
    /// Free text of a text order (its lines come from the parse step).
    pub source_text: Option<&'a str>,
    /// Who placed it.
    pub actor: &'a Actor,
    /// `credit` or `cash`.
    pub payment_mode: &'a str,
}

/// One change as its consumers see it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChangeRecord {
    /// The order.
    pub order_id: Uuid,
    /// The event written for the change.
    pub event_id: Uuid,
    /// Previous status (`None` for a new order).
    pub from: Option<OrderStatus>,
    /// New status.
    pub to: OrderStatus,
}

/// Rows per multi-row statement, well under both backends' bound-parameter limits.
const CHUNK: usize = 500;

/// Writes new `received` orders and their first events, and tells the consumers. The first
/// event records who placed the order (user or API key, role) and the channel.
pub async fn create(tx: &mut Tx, orders: &[NewOrder<'_>]) -> Result<(), sqlx::Error> {
    let created = |o: &NewOrder<'_>| created_at_of(o.id).unwrap_or_else(now_ms);
    let event_ids: Vec<Uuid> = orders.iter().map(|_| Uuid::now_v7()).collect();
    for (chunk, ids) in orders.chunks(CHUNK).zip(event_ids.chunks(CHUNK)) {
        with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO orders (id, created_at_ms, retailer_id, status, priority, channel, note, correlation_id, source_text, updated_at_ms, payment_mode) ");
            qb.push_values(chunk, |mut b, o| {
                let at = created(o);
                b.push_bind(o.id).push_bind(at).push_bind(o.retailer_id).push_bind(OrderStatus::Received.as_str())
                    .push_bind(o.priority).push_bind(o.channel).push_bind(o.note).push_bind(o.correlation_id)
                    .push_bind(o.source_text).push_bind(at).push_bind(o.payment_mode);
            });
            qb.build_batch().execute(&mut *c).await?;
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO order_events (id, order_id, order_created_at_ms, from_status, to_status, actor, role, detail, at_ms) ");
            qb.push_values(chunk.iter().zip(ids), |mut b, (o, event_id)| {
                let at = created(o);
                b.push_bind(*event_id).push_bind(o.id).push_bind(at).push_bind(None::<&str>)
                    .push_bind(OrderStatus::Received.as_str()).push_bind(&o.actor.id).push_bind(o.actor.role)
                    .push_bind(Json(serde_json::json!({ "channel": o.channel }))).push_bind(at);
            });
            qb.build_batch().execute(&mut *c).await?;
        });
    }
    let created_by: Vec<(Uuid, i64)> = orders.iter().map(|o| (o.retailer_id, created(o))).collect();
    super::counts::add_created(tx, &created_by).await?;
    let records: Vec<ChangeRecord> = orders
        .iter()
        .zip(event_ids)
        .map(|(o, event_id)| ChangeRecord {
            order_id: o.id,
            event_id,
            from: None,
            to: OrderStatus::Received,
        })
        .collect();
    announce(tx, records, None).await
}

/// The intake's write on PostgreSQL ([`IntakeWriter`](super::intake::IntakeWriter)): a
/// batch's orders, first events, daily counts, lines, idempotency records `(scope, key,
/// request hash, answer)` and jobs (first steps and `order.changed`) in one statement (a
/// data-modifying CTE per table over `unnest` of one array per column; one text whatever the
/// batch, so one prepared statement) that PostgreSQL runs as a transaction of its own.
/// Written as a transaction it was nine round trips for a batch (`BEGIN`, six statements,
/// the jobs before `COMMIT`, `COMMIT`): at 500 orders/s on two cores the batches held three
/// orders, and the intake's round trips were half of every statement the database ran. The
/// rows are the ones [`create`], [`insert_lines`](super::repo::insert_lines),
/// [`pipeline::start`](super::pipeline::start) and the intake's `store_key` write in a
/// transaction (SQLite). Returns the queues that got jobs.
pub async fn create_at_once<K: Serialize + Sync>(
    pool: &sqlx::PgPool,
    rows: &[NewOrder<'_>],
    lines: &[super::repo::NewLines<'_>],
    first: &[(Uuid, &str, Option<&str>, bool)],
    keys: &[(&str, &str, &str, &K)],
) -> Result<Vec<&'static str>, sqlx::Error> {
    let now = now_ms();
    let created = |id: Uuid| created_at_of(id).unwrap_or(now);
    let event_ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
    let counts: Vec<(Uuid, i64)> = rows
        .iter()
        .map(|o| (o.retailer_id, created(o.id)))
        .collect();
    let delta = super::counts::created_delta(&counts);
    let line_rows = super::repo::line_inserts(lines);
    let (mut jobs, mut queues) = super::pipeline::first_job_rows(first, now)?;
    let changed = OrderChanged {
        changes: rows
            .iter()
            .zip(&event_ids)
            .map(|(o, event_id)| ChangeRecord {
                order_id: o.id,
                event_id: *event_id,
                from: None,
                to: OrderStatus::Received,
            })
            .collect(),
    };
    jobs.push(crate::queue::job_row(&changed, &Default::default(), now)?);
    queues.push(OrderChanged::QUEUE);
    use crate::base::db::column as col;
    sqlx::query(sqlx::AssertSqlSafe(&**INTAKE_SQL))
        // orders, and their first events
        .bind(col(rows, |o| o.id))
        .bind(col(rows, |o| created(o.id)))
        .bind(col(rows, |o| o.retailer_id))
        .bind(col(rows, |o| o.priority))
        .bind(col(rows, |o| o.channel))
        .bind(col(rows, |o| o.note))
        .bind(col(rows, |o| o.correlation_id))
        .bind(col(rows, |o| o.source_text))
        .bind(col(rows, |o| o.payment_mode))
        .bind(&event_ids)
        .bind(col(rows, |o| o.actor.id.as_str()))
        .bind(col(rows, |o| o.actor.role))
        // retailer_order_days
        .bind(col(&delta, |d| d.0.0))
        .bind(col(&delta, |d| d.0.1 as i32))
        .bind(col(&delta, |d| d.1))
        // order_lines
        .bind(col(&line_rows, |l| l.0))
        .bind(col(&line_rows, |l| l.1))
        .bind(col(&line_rows, |l| l.2))
        .bind(col(&line_rows, |l| l.3.0.as_str()))
        .bind(col(&line_rows, |l| l.3.1))
        .bind(col(&line_rows, |l| l.3.2.as_str()))
        // idempotency_keys
        .bind(col(keys, |k| k.0))
        .bind(col(keys, |k| k.1))
        .bind(col(keys, |k| k.2))
        .bind(col(keys, |k| Json(k.3)))
        // jobs
        .bind(col(&jobs, |j| j.id))
        .bind(col(&jobs, |j| j.queue))
        .bind(col(&jobs, |j| j.kind))
        .bind(col(&jobs, |j| Json(&j.payload)))
        .bind(col(&jobs, |j| j.priority))
        .bind(col(&jobs, |j| j.run_at_ms))
        .bind(col(&jobs, |j| j.max_attempts))
        .bind(col(&jobs, |j| j.dedupe_key.as_deref()))
        .bind(col(&jobs, |j| j.correlation_id.as_deref()))
        .bind(col(&jobs, |j| j.trace_parent.as_deref()))
        .bind(col(&jobs, |j| j.at_ms))
        .bind(now)
        .execute(pool)
        .await?;
    let mut kinds: std::collections::BTreeMap<&'static str, u64> = Default::default();
    for j in &jobs {
        *kinds.entry(j.kind).or_default() += 1;
    }
    for (kind, n) in kinds {
        crate::queue::count_enqueued(kind, n);
    }
    Ok(queues)
}

/// [`create_at_once`]'s statement. Every CTE writes a different table and none reads another's
/// rows; the order's status, the event's and the detail are the same as [`create`]'s.
static INTAKE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let received = OrderStatus::Received.as_str();
    format!(
        "WITH n(id, created_at_ms, retailer_id, priority, channel, note, correlation_id, source_text, \
         payment_mode, event_id, actor, role) AS (SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], \
         $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[], $11::text[], \
         $12::text[])), \
         o AS (INSERT INTO orders (id, created_at_ms, retailer_id, status, priority, channel, note, \
         correlation_id, source_text, updated_at_ms, payment_mode) SELECT id, created_at_ms, retailer_id, \
         '{received}', priority, channel, note, correlation_id, source_text, created_at_ms, payment_mode FROM n), \
         e AS (INSERT INTO order_events (id, order_id, order_created_at_ms, from_status, to_status, actor, \
         role, detail, at_ms) SELECT event_id, id, created_at_ms, NULL, '{received}', actor, role, \
         jsonb_build_object('channel', channel), created_at_ms FROM n), \
         d AS (INSERT INTO retailer_order_days (retailer_id, day, n) SELECT * FROM unnest($13::uuid[], \
         $14::integer[], $15::bigint[]) ON CONFLICT (retailer_id, day) DO UPDATE SET \
         n = retailer_order_days.n + excluded.n), \
         l AS (INSERT INTO order_lines (order_id, order_created_at_ms, line_no, sku, qty_milli, unit) \
         SELECT * FROM unnest($16::uuid[], $17::bigint[], $18::integer[], $19::text[], $20::bigint[], \
         $21::text[])), \
         k AS (INSERT INTO idempotency_keys (scope, key, request_hash, response_status, response_body, \
         created_at_ms) SELECT s, k, h, 202, b, $37 FROM unnest($22::text[], $23::text[], $24::text[], \
         $25::jsonb[]) AS k(s, k, h, b)), \
         j AS (INSERT INTO jobs (id, queue, kind, payload, priority, run_at_ms, max_attempts, dedupe_key, \
         correlation_id, trace_parent, created_at_ms, updated_at_ms) SELECT id, queue, kind, payload, \
         priority, run_at_ms, max_attempts, dedupe_key, correlation_id, trace_parent, at, at FROM \
         unnest($26::uuid[], $27::text[], $28::text[], $29::jsonb[], $30::integer[], $31::bigint[], \
         $32::integer[], $33::text[], $34::text[], $35::text[], $36::bigint[]) AS j(id, queue, kind, \
         payload, priority, run_at_ms, max_attempts, dedupe_key, correlation_id, trace_parent, at) \
         ON CONFLICT DO NOTHING) \
         SELECT 1"
    )
});

/// Marks an order `failed` after the job carrying it went dead (an operator may retry the
/// job from the dead-letter view, which puts the order back to `received`).
pub async fn fail(
    db: &crate::base::db::Db,
    order_id: Uuid,
    job_id: Uuid,
    error: String,
) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    if let Some(mut order) = super::repo::find_for_update(&mut tx, order_id).await? {
        let detail = serde_json::json!({ "error": error, "job_id": job_id });
        apply(
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

/// Moves `order` to `to`; see [`apply_many`].
pub async fn apply(
    tx: &mut Tx,
    order: &mut OrderRow,
    to: OrderStatus,
    actor: &Actor,
    reason: Option<&str>,
    detail: Option<serde_json::Value>,
) -> Result<TransitionResult, sqlx::Error> {
    apply_many(tx, &mut [(order, Change { to, reason, detail })], actor).await
}

/// Applies several state changes with one UPDATE and one event INSERT, and enqueues one
/// [`OrderChanged`] for them. All or nothing: if the state machine refuses one, nothing is
/// written (`Illegal`); if any row changed underneath (`Stale`), the caller must roll back.
/// The orders in memory are updated to match.
pub async fn apply_many(
    tx: &mut Tx,
    changes: &mut [(&mut OrderRow, Change<'_>)],
    actor: &Actor,
) -> Result<TransitionResult, sqlx::Error> {
    let actors = vec![actor; changes.len()];
    apply_each(tx, changes, &actors).await
}

/// [`apply_many`] with each change's own actor (`actors[i]` made `changes[i]`): the vendors'
/// actions that one transaction carries for many vendors.
pub async fn apply_each(
    tx: &mut Tx,
    changes: &mut [(&mut OrderRow, Change<'_>)],
    actors: &[&Actor],
) -> Result<TransitionResult, sqlx::Error> {
    assert_eq!(changes.len(), actors.len(), "one actor per change");
    if changes.iter().any(|(o, c)| !o.status().can_become(c.to)) {
        return Ok(TransitionResult::Illegal);
    }
    if changes.is_empty() {
        return Ok(TransitionResult::Done);
    }
    let now = now_ms();
    let rows: Vec<Row<'_>> = changes.iter().map(|(o, c)| Row::new(o, c, now)).collect();
    if update_statuses(tx, &rows).await? != rows.len() as u64 {
        return Ok(TransitionResult::Stale);
    }
    let events: Vec<EventRow<'_>> = rows
        .iter()
        .zip(changes.iter())
        .zip(actors)
        .map(|((row, (_, ch)), actor)| EventRow {
            row,
            actor,
            reason: ch.reason,
            detail: ch.detail.as_ref(),
        })
        .collect();
    insert_events(tx, &events).await?;
    let correlation = changes.iter().find_map(|(o, _)| o.correlation_id.clone());
    let records = rows.iter().map(Row::record).collect();
    for ((order, change), r) in changes.iter_mut().zip(&rows) {
        remember(order, change.to, r);
        counted(change.to);
    }
    announce(tx, records, correlation).await?;
    Ok(TransitionResult::Done)
}

/// Counts a written change.
fn counted(to: OrderStatus) {
    metrics::counter!("khaacho_order_transitions_total", "to" => to.as_str()).increment(1);
}

/// Takes a change, written or made in memory, into the order in memory.
fn remember(order: &mut OrderRow, to: OrderStatus, r: &Row<'_>) {
    order.status = to.as_str().to_string();
    order.updated_at_ms = r.at;
    order.hold_reason = r.hold_reason.as_deref().map(str::to_string);
    order.held_from = r.held_from.map(str::to_string);
    if let Some(reason) = &r.reject_reason {
        order.reject_reason = Some(reason.to_string());
    }
}

/// Changes made in memory and written together at the end of the transaction that makes
/// them ([`Deferred::write`]). A run that moves orders through several states — the
/// validation run takes an order `received` → `validated` → `routed` (or `on_hold`) — then
/// writes each order's row once, every event in one INSERT and one [`OrderChanged`] for them
/// all, instead of an UPDATE, an INSERT and a job per step: fewer statements in the run
/// that decides how soon an order is routed, and one row version of the order instead of
/// one per step.
///
/// For orders the transaction has locked (`FOR UPDATE`): nothing else can change them
/// before the write, and nothing in the transaction may read their status from the database
/// meanwhile (it is in memory). The state machine is checked as each change is made; the
/// write's UPDATE is still conditional on each row's status as first read (`Stale`
/// otherwise, and the caller rolls back). The events keep every step, in order.
#[derive(Debug, Default)]
pub struct Deferred {
    made: Vec<Made>,
}

/// One change made in memory.
#[derive(Debug)]
struct Made {
    row: Row<'static>,
    actor: Actor,
    reason: Option<String>,
    detail: Option<serde_json::Value>,
    correlation_id: Option<String>,
}

impl Deferred {
    /// [`apply_many`], in memory: `Illegal` (and nothing made) if the state machine refuses
    /// one of the changes; else the orders in memory move, and the changes wait for
    /// [`Deferred::write`].
    pub fn apply_many(
        &mut self,
        changes: &mut [(&mut OrderRow, Change<'_>)],
        actor: &Actor,
    ) -> TransitionResult {
        if changes.iter().any(|(o, c)| !o.status().can_become(c.to)) {
            return TransitionResult::Illegal;
        }
        let now = now_ms();
        for (order, change) in changes.iter_mut() {
            let row = Row::new(order, change, now).into_owned();
            remember(order, change.to, &row);
            self.made.push(Made {
                row,
                actor: actor.clone(),
                reason: change.reason.map(str::to_string),
                detail: change.detail.clone(),
                correlation_id: order.correlation_id.clone(),
            });
        }
        TransitionResult::Done
    }

    /// Writes the changes made: each order's row from its status before the first change
    /// to its state after the last (one UPDATE for them all), every change's event, and one
    /// [`OrderChanged`] carrying every change in the order they were made.
    pub async fn write(self, tx: &mut Tx) -> Result<TransitionResult, sqlx::Error> {
        if self.made.is_empty() {
            return Ok(TransitionResult::Done);
        }
        // Per order, in the order first changed: from the first change's state, as the last
        // change left it (a reason to reject, once given, stays: as `COALESCE` keeps it).
        let mut rows: Vec<Row<'_>> = Vec::new();
        for m in &self.made {
            match rows.iter_mut().find(|r| r.id == m.row.id) {
                Some(r) => {
                    let reject = m.row.reject_reason.clone().or(r.reject_reason.take());
                    *r = Row {
                        from: r.from,
                        reject_reason: reject,
                        priced: m.row.priced.or(r.priced),
                        ..m.row.clone()
                    };
                }
                None => rows.push(m.row.clone()),
            }
        }
        if update_statuses(tx, &rows).await? != rows.len() as u64 {
            return Ok(TransitionResult::Stale);
        }
        let events: Vec<EventRow<'_>> = self
            .made
            .iter()
            .map(|m| EventRow {
                row: &m.row,
                actor: &m.actor,
                reason: m.reason.as_deref(),
                detail: m.detail.as_ref(),
            })
            .collect();
        insert_events(tx, &events).await?;
        for m in &self.made {
            counted(m.row.to);
        }
        let correlation = self.made.iter().find_map(|m| m.correlation_id.clone());
        let records = self.made.iter().map(|m| m.row.record()).collect();
        announce(tx, records, correlation).await?;
        Ok(TransitionResult::Done)
    }
}

/// Records something that happened to `order` without changing its status (an offer moved
/// to another vendor): an event from and to its current status, announced like a change, so
/// whatever follows orders hears of it (the new vendor's message, live screens).
pub async fn note(
    tx: &mut Tx,
    order: &OrderRow,
    actor: &Actor,
    reason: &str,
    detail: Option<serde_json::Value>,
) -> Result<(), sqlx::Error> {
    let status = order.status();
    let event_id = Uuid::now_v7();
    let at = now_ms().max(order.updated_at_ms);
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO order_events (id, order_id, order_created_at_ms, from_status, to_status, actor, role, reason, detail, at_ms) \
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9)")
        .bind(event_id).bind(order.id).bind(order.created_at_ms).bind(status.as_str()).bind(&actor.id)
        .bind(actor.role).bind(reason).bind(detail.map(Json)).bind(at)
        .execute(&mut *c).await.map(|_| ()))?;
    let record = ChangeRecord {
        order_id: order.id,
        event_id,
        from: Some(status),
        to: status,
    };
    announce(tx, vec![record], order.correlation_id.clone()).await
}

/// The stored form of one change.
#[derive(Clone, Debug)]
struct Row<'r> {
    id: Uuid,
    event_id: Uuid,
    created: i64,
    from: OrderStatus,
    to: OrderStatus,
    at: i64,
    hold_reason: Option<Cow<'r, str>>,
    reject_reason: Option<Cow<'r, str>>,
    held_from: Option<&'static str>,
    /// The totals of an order becoming `validated` — priced, as the validate step left it in
    /// memory — written with its status (`None` leaves the stored totals).
    priced: Option<Totals>,
}

/// An order's `(subtotal, VAT, total)` in paisa.
type Totals = (i64, i64, i64);

impl<'r> Row<'r> {
    fn record(&self) -> ChangeRecord {
        ChangeRecord {
            order_id: self.id,
            event_id: self.event_id,
            from: Some(self.from),
            to: self.to,
        }
    }

    /// The same, owning its reasons (kept past the change that lent them).
    fn into_owned(self) -> Row<'static> {
        Row {
            hold_reason: self.hold_reason.map(|r| Cow::Owned(r.into_owned())),
            reject_reason: self.reject_reason.map(|r| Cow::Owned(r.into_owned())),
            ..self
        }
    }

    fn new(o: &OrderRow, c: &Change<'r>, now: i64) -> Self {
        let from = o.status();
        let held = c.to == OrderStatus::OnHold;
        let ends = matches!(
            c.to,
            OrderStatus::Rejected | OrderStatus::Cancelled | OrderStatus::Failed
        );
        Row {
            id: o.id,
            event_id: Uuid::now_v7(),
            created: o.created_at_ms,
            from,
            to: c.to,
            // Never before the last change, so the history stays in order on clock skew.
            at: now.max(o.updated_at_ms),
            hold_reason: held.then_some(c.reason).flatten().map(Cow::Borrowed),
            reject_reason: ends.then_some(c.reason).flatten().map(Cow::Borrowed),
            held_from: held.then_some(from.as_str()),
            // `validated` means priced: the step that validates sets the totals in memory
            // first (any other way to `validated` carries the stored ones, unchanged).
            priced: match (c.to, o.subtotal_paisa, o.vat_paisa, o.total_paisa) {
                (OrderStatus::Validated, Some(s), Some(v), Some(t)) => Some((s, v, t)),
                _ => None,
            },
        }
    }
}

/// The status UPDATE, conditional on each row still being in the state it was read in.
///
/// The batch's creation times let PostgreSQL plan the UPDATE for the partitions holding them
/// only (nearly always the current month's) instead of every partition of `orders`; its
/// rows come as one array per column (`unnest`), so the statement's text and its parsing do
/// not grow with the batch. SQLite takes them as a VALUES list named by a CTE.
async fn update_statuses(tx: &mut Tx, rows: &[Row<'_>]) -> Result<u64, sqlx::Error> {
    const SET: &str = " UPDATE orders SET status = v.to_status, updated_at_ms = v.at_ms, \
        hold_reason = v.hold_reason, reject_reason = COALESCE(v.reject_reason, orders.reject_reason), \
        held_from = v.held_from, subtotal_paisa = COALESCE(v.subtotal_paisa, orders.subtotal_paisa), \
        vat_paisa = COALESCE(v.vat_paisa, orders.vat_paisa), total_paisa = COALESCE(v.total_paisa, orders.total_paisa) \
        FROM v WHERE orders.id = v.id AND orders.created_at_ms = v.created_at_ms \
        AND orders.status = v.from_status AND";
    if let [r] = rows {
        // One order (an action, a single job): a plain UPDATE, planned in a fraction of the
        // batch form's time.
        let affected = with_tx!(tx, c => sqlx::query(
            "UPDATE orders SET status = $1, updated_at_ms = $2, hold_reason = $3, \
             reject_reason = COALESCE($4, reject_reason), held_from = $5, subtotal_paisa = COALESCE($9, subtotal_paisa), \
             vat_paisa = COALESCE($10, vat_paisa), total_paisa = COALESCE($11, total_paisa) \
             WHERE id = $6 AND created_at_ms = $7 AND status = $8")
            .bind(r.to.as_str()).bind(r.at).bind(r.hold_reason.as_deref()).bind(r.reject_reason.as_deref()).bind(r.held_from)
            .bind(r.id).bind(r.created).bind(r.from.as_str())
            .bind(r.priced.map(|p| p.0)).bind(r.priced.map(|p| p.1)).bind(r.priced.map(|p| p.2))
            .execute(&mut *c).await?.rows_affected());
        return Ok(affected);
    }
    let created = rows.iter().map(|r| r.created);
    let affected = match tx.inner_mut() {
        TxInner::Pg(c) => {
            let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "WITH v(id, created_at_ms, from_status, to_status, at_ms, hold_reason, reject_reason, held_from, \
                 subtotal_paisa, vat_paisa, total_paisa) AS (SELECT * FROM unnest(",
            );
            let from: Vec<&str> = rows.iter().map(|r| r.from.as_str()).collect();
            let to: Vec<&str> = rows.iter().map(|r| r.to.as_str()).collect();
            let hold: Vec<Option<&str>> = rows.iter().map(|r| r.hold_reason.as_deref()).collect();
            let reject: Vec<Option<&str>> =
                rows.iter().map(|r| r.reject_reason.as_deref()).collect();
            let held_from: Vec<Option<&str>> = rows.iter().map(|r| r.held_from).collect();
            qb.push_bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
                .push("::uuid[], ")
                .push_bind(rows.iter().map(|r| r.created).collect::<Vec<_>>())
                .push("::bigint[], ")
                .push_bind(from)
                .push("::text[], ")
                .push_bind(to)
                .push("::text[], ")
                .push_bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
                .push("::bigint[], ")
                .push_bind(hold)
                .push("::text[], ")
                .push_bind(reject)
                .push("::text[], ")
                .push_bind(held_from)
                .push("::text[]");
            let parts: [fn(Totals) -> i64; 3] = [|p| p.0, |p| p.1, |p| p.2];
            for part in parts {
                let column: Vec<Option<i64>> = rows.iter().map(|r| r.priced.map(part)).collect();
                qb.push(", ").push_bind(column).push("::bigint[]");
            }
            qb.push("))").push(SET);
            push_created_in(&mut qb, "orders.created_at_ms", created);
            qb.build().execute(&mut **c).await?.rows_affected()
        }
        TxInner::Sqlite(c) => {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "WITH v(id, created_at_ms, from_status, to_status, at_ms, hold_reason, reject_reason, held_from, \
                 subtotal_paisa, vat_paisa, total_paisa) AS (",
            );
            qb.push_values(rows, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(r.created)
                    .push_bind(r.from.as_str())
                    .push_bind(r.to.as_str())
                    .push_bind(r.at)
                    .push_bind(r.hold_reason.as_deref())
                    .push_bind(r.reject_reason.as_deref())
                    .push_bind(r.held_from)
                    .push_bind(r.priced.map(|p| p.0))
                    .push_bind(r.priced.map(|p| p.1))
                    .push_bind(r.priced.map(|p| p.2));
            });
            qb.push(")").push(SET);
            push_created_in(&mut qb, "orders.created_at_ms", created);
            qb.build_batch().execute(&mut **c).await?.rows_affected()
        }
    };
    Ok(affected)
}

/// One event as written: a change's row, who made it, why.
struct EventRow<'r> {
    row: &'r Row<'r>,
    actor: &'r Actor,
    reason: Option<&'r str>,
    detail: Option<&'r serde_json::Value>,
}

/// On PostgreSQL one statement over an array per column, one text whatever the number of
/// events (a `VALUES` list was a text per size, parsed and planned each time); on SQLite a
/// multi-row `VALUES`.
async fn insert_events(tx: &mut Tx, events: &[EventRow<'_>]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    if let TxInner::Pg(c) = tx.inner_mut() {
        use crate::base::db::column as col;
        sqlx::query(
            "INSERT INTO order_events (id, order_id, order_created_at_ms, from_status, to_status, actor, role, \
             reason, detail, at_ms) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::jsonb[], $10::bigint[])",
        )
        .bind(col(events, |e| e.row.event_id))
        .bind(col(events, |e| e.row.id))
        .bind(col(events, |e| e.row.created))
        .bind(col(events, |e| e.row.from.as_str()))
        .bind(col(events, |e| e.row.to.as_str()))
        .bind(col(events, |e| e.actor.id.as_str()))
        .bind(col(events, |e| e.actor.role))
        .bind(col(events, |e| e.reason))
        .bind(col(events, |e| e.detail.map(Json)))
        .bind(col(events, |e| e.row.at))
        .execute(&mut **c)
        .await?;
        return Ok(());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO order_events (id, order_id, order_created_at_ms, from_status, to_status, actor, role, reason, detail, at_ms) ");
        qb.push_values(events, |mut b, e| {
            let r = e.row;
            b.push_bind(r.event_id).push_bind(r.id).push_bind(r.created).push_bind(r.from.as_str())
                .push_bind(r.to.as_str()).push_bind(&e.actor.id).push_bind(e.actor.role).push_bind(e.reason)
                .push_bind(e.detail.map(Json)).push_bind(r.at);
        });
        qb.build_batch().execute(&mut *c).await?;
    });
    Ok(())
}

/// Enqueues one [`OrderChanged`] carrying `records`, in the caller's transaction.
async fn announce(
    tx: &mut Tx,
    records: Vec<ChangeRecord>,
    correlation_id: Option<String>,
) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let opts = EnqueueOptions {
        correlation_id,
        ..Default::default()
    };
    enqueue(tx, &OrderChanged { changes: records }, opts).await?;
    Ok(())
}

/// Job: tell everything that follows orders about the changes one transaction made. Runs in
/// batches, so one consumer transaction handles many changes.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderChanged {
    /// The changes, in the order they were made.
    pub changes: Vec<ChangeRecord>,
}

impl Job for OrderChanged {
    type Host = App;
    const KIND: &'static str = "order.changed";
    // Its own queue: consumers never hold up the pipeline's steps, nor the steps them.
    const QUEUE: &'static str = "events";
    const PRIORITY: Priority = Priority::Normal;
    // Every consumer writes the same few counter rows: batches side by side would only queue
    // on their locks, so one runs at a time and carries whatever has accumulated.
    const CONCURRENCY: usize = 1;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 25,
            timeout: std::time::Duration::from_secs(30),
        }
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        consume(&ctx, &[self]).await
    }
}

impl BatchJob for OrderChanged {
    const MAX_BATCH: usize = 256;

    async fn run_batch(jobs: Vec<Self>, ctx: JobContext) -> Result<(), JobError> {
        consume(&ctx, &jobs).await
    }
}

/// Every consumer of order changes, in one transaction with the jobs' completion, so each
/// change takes effect exactly once.
async fn consume(ctx: &JobContext, jobs: &[OrderChanged]) -> Result<(), JobError> {
    let mut changes: Vec<&ChangeRecord> = jobs.iter().flat_map(|j| &j.changes).collect();
    // In the order the events were made (UUIDv7), whatever order the claim returned the jobs
    // in: an order's validation and its routing commit together, and its retailer, the
    // webhooks and the live feed hear of them in that order.
    changes.sort_by_key(|c| c.event_id);
    let mut tx = ctx.app.db().begin_indexed().await?;
    super::counts::apply(&mut tx, &changes).await?;
    let notes: Vec<OrderChange> = changes
        .iter()
        .map(|c| OrderChange {
            order_id: c.order_id,
            event_id: c.event_id,
            from: c.from,
            to: c.to,
        })
        .collect();
    let send_now = crate::channels::outbox::configured(&ctx.app.settings().channels);
    let now = ctx.app.clock().now_ms();
    notify::on_order_changes(&mut tx, &notes, now, send_now).await?;
    let events: Vec<OrderEvent> = changes
        .iter()
        .map(|c| OrderEvent {
            order_id: c.order_id,
            event_id: c.event_id,
            from: c.from,
            to: c.to,
        })
        .collect();
    crate::webhooks::events::on_order_changes(&mut tx, &events, now).await?;
    ctx.complete_in(&mut tx).await?;
    // Last: numbering the changes for live updates locks the feed's one counter row until
    // the commit (that is what makes the numbers commit-ordered; see live/feed.rs).
    let numbered: Vec<live::feed::Committed> = changes
        .iter()
        .map(|c| {
            (
                c.order_id,
                created_at_of(c.order_id).unwrap_or(0),
                c.event_id,
            )
        })
        .collect();
    live::feed::append(&mut tx, &numbered, now).await?;
    tx.commit().await?;
    ctx.app.live().committed();
    Ok(())
}
