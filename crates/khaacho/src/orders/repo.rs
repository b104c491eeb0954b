//! SQL of orders, lines and events. Every finder that can be reached by a retailer takes the
//! retailer scope first, so another tenant's row cannot be fetched by accident.

use sqlx::types::Json;
use uuid::Uuid;

use super::model::{Actor, EventRow, LineRow, OrderRow, OrderStatus, created_at_of};
use crate::db::{Db, Tx, now_ms};
use crate::{with_read, with_tx};

/// Which orders a caller may see.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    /// Operators and admins: every order.
    All,
    /// A retailer: only its own.
    Retailer(Uuid),
    /// A vendor: only orders with a line addressed (priced or routed) to it.
    Vendor(Uuid),
}

impl Scope {
    fn retailer(self) -> Option<Uuid> {
        match self {
            Scope::Retailer(id) => Some(id),
            Scope::All | Scope::Vendor(_) => None,
        }
    }

    fn vendor(self) -> Option<Uuid> {
        match self {
            Scope::Vendor(id) => Some(id),
            Scope::All | Scope::Retailer(_) => None,
        }
    }
}

/// The vendor filter of the scoped finders (`$n` is the vendor id or NULL).
fn vendor_clause(n: u8) -> String {
    format!(
        "(${n} IS NULL OR EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = orders.id \
         AND l.order_created_at_ms = orders.created_at_ms AND l.vendor_id = ${n}))"
    )
}

/// A new order as the intake writes it.
#[derive(Clone, Debug)]
pub struct NewOrder<'a> {
    /// Id (UUIDv7; its timestamp is `created_at_ms`).
    pub id: Uuid,
    /// Buyer.
    pub retailer_id: Uuid,
    /// Priority name.
    pub priority: &'a str,
    /// Channel name.
    pub channel: &'a str,
    /// Retailer's note.
    pub note: Option<&'a str>,
    /// Request id.
    pub correlation_id: Option<&'a str>,
    /// `(sku, qty_milli, unit)` per line.
    pub lines: &'a [(String, i64, String)],
}

const ORDER_COLS: &str = "id, created_at_ms, retailer_id, status, priority, channel, note, subtotal_paisa, \
     vat_paisa, total_paisa, hold_reason, held_from, reject_reason, correlation_id, updated_at_ms";

/// Inserts `received` orders with their lines and intake events, a few statements for the
/// whole batch (the intake's group commit writes many orders per transaction).
pub async fn insert_many(tx: &mut Tx, orders: &[NewOrder<'_>]) -> Result<(), sqlx::Error> {
    // Rows per statement, well under both backends' bound-parameter limits.
    const CHUNK: usize = 2000;
    let created = |o: &NewOrder<'_>| created_at_of(o.id).unwrap_or_else(now_ms);
    for chunk in orders.chunks(CHUNK / 4) {
        with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO orders (id, created_at_ms, retailer_id, status, priority, channel, note, correlation_id, updated_at_ms) ");
            qb.push_values(chunk, |mut b, o| {
                let at = created(o);
                b.push_bind(o.id).push_bind(at).push_bind(o.retailer_id).push_bind("received").push_bind(o.priority)
                    .push_bind(o.channel).push_bind(o.note).push_bind(o.correlation_id).push_bind(at);
            });
            qb.build().execute(&mut *c).await?;
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO order_events (id, order_id, order_created_at_ms, from_status, to_status, actor, role, at_ms) ");
            qb.push_values(chunk, |mut b, o| {
                let at = created(o);
                b.push_bind(Uuid::now_v7()).push_bind(o.id).push_bind(at).push_bind(None::<&str>).push_bind("received")
                    .push_bind(o.channel).push_bind("retailer").push_bind(at);
            });
            qb.build().execute(&mut *c).await?;
        });
    }
    let lines: Vec<_> = orders
        .iter()
        .flat_map(|o| o.lines.iter().enumerate().map(move |(i, l)| (o.id, created(o), i as i32 + 1, l)))
        .collect();
    for chunk in lines.chunks(CHUNK) {
        with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO order_lines (order_id, order_created_at_ms, line_no, sku, qty_milli, unit) ");
            qb.push_values(chunk, |mut b, (id, at, no, (sku, qty, unit))| {
                b.push_bind(*id).push_bind(*at).push_bind(*no).push_bind(sku).push_bind(*qty).push_bind(unit);
            });
            qb.build().execute(&mut *c).await?;
        });
    }
    Ok(())
}

/// One order, within `scope`.
pub async fn find(db: &Db, scope: Scope, id: Uuid) -> Result<Option<OrderRow>, sqlx::Error> {
    let Some(created) = created_at_of(id) else { return Ok(None) };
    let sql = format!(
        "SELECT {ORDER_COLS} FROM orders WHERE id = $1 AND created_at_ms = $2 AND ($3 IS NULL OR retailer_id = $3) AND {}",
        vendor_clause(4)
    );
    with_read!(db, c => sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(created)
        .bind(scope.retailer())
        .bind(scope.vendor())
        .fetch_optional(c)
        .await)
}

/// One order inside a transaction, locked for update on PostgreSQL (SQLite's transaction
/// already holds the write lock).
pub async fn find_for_update(tx: &mut Tx, id: Uuid) -> Result<Option<OrderRow>, sqlx::Error> {
    let Some(created) = created_at_of(id) else { return Ok(None) };
    let lock = if tx.is_postgres() { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {ORDER_COLS} FROM orders WHERE id = $1 AND created_at_ms = $2{lock}");
    with_tx!(tx, c => sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(created)
        .fetch_optional(c)
        .await)
}

/// Lines of an order, by line number.
pub async fn lines(db: &Db, order: &OrderRow) -> Result<Vec<LineRow>, sqlx::Error> {
    with_read!(db, c => sqlx::query_as::<_, LineRow>(LINES_SQL)
        .bind(order.id)
        .bind(order.created_at_ms)
        .fetch_all(c)
        .await)
}

/// Lines of an order inside a transaction.
pub async fn lines_tx(tx: &mut Tx, order: &OrderRow) -> Result<Vec<LineRow>, sqlx::Error> {
    with_tx!(tx, c => sqlx::query_as::<_, LineRow>(LINES_SQL)
        .bind(order.id)
        .bind(order.created_at_ms)
        .fetch_all(c)
        .await)
}

const LINES_SQL: &str = "SELECT line_no, sku, qty_milli, unit, product_id, product_name, base_qty_milli, base_unit, \
     unit_price_paisa, subtotal_paisa, vat_paisa, total_paisa, offer_id, vendor_id, price_reason, reject_code, \
     reject_detail FROM order_lines WHERE order_id = $1 AND order_created_at_ms = $2 ORDER BY line_no";

/// Event history of an order, oldest first.
pub async fn events(db: &Db, order: &OrderRow) -> Result<Vec<EventRow>, sqlx::Error> {
    with_read!(db, c => sqlx::query_as::<_, EventRow>(
        "SELECT id, from_status, to_status, actor, role, reason, at_ms FROM order_events \
         WHERE order_id = $1 AND order_created_at_ms = $2 ORDER BY at_ms, id")
        .bind(order.id)
        .bind(order.created_at_ms)
        .fetch_all(c)
        .await)
}

/// Filters of [`list`].
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Only this status.
    pub status: Option<OrderStatus>,
    /// Only this retailer (operators' filter; a retailer scope always applies too).
    pub retailer_id: Option<Uuid>,
    /// Created at or after (epoch ms).
    pub from_ms: Option<i64>,
    /// Created before (epoch ms).
    pub to_ms: Option<i64>,
    /// Keyset cursor: `(created_at_ms, id)` of the last row of the previous page.
    pub after: Option<(i64, Uuid)>,
    /// Page size.
    pub limit: i64,
}

/// Orders newest first, keyset-paginated.
pub async fn list(db: &Db, scope: Scope, f: &ListFilter) -> Result<Vec<OrderRow>, sqlx::Error> {
    let (cursor_ms, cursor_id) = f.after.map_or((None, None), |(ms, id)| (Some(ms), Some(id)));
    let sql = format!(
        "SELECT {ORDER_COLS} FROM orders WHERE ($1 IS NULL OR retailer_id = $1) AND ($2 IS NULL OR retailer_id = $2) \
         AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR created_at_ms >= $4) AND ($5 IS NULL OR created_at_ms < $5) \
         AND ($6 IS NULL OR created_at_ms < $6 OR (created_at_ms = $6 AND id < $7)) \
         AND {} ORDER BY created_at_ms DESC, id DESC LIMIT $8",
        vendor_clause(9)
    );
    with_read!(db, c => sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
        .bind(scope.retailer())
        .bind(f.retailer_id)
        .bind(f.status.map(OrderStatus::as_str))
        .bind(f.from_ms)
        .bind(f.to_ms)
        .bind(cursor_ms)
        .bind(cursor_id)
        .bind(f.limit)
        .bind(scope.vendor())
        .fetch_all(c)
        .await)
}

/// Outcome of [`transition`].
#[derive(Debug, PartialEq, Eq)]
pub enum TransitionResult {
    /// Changed, event written.
    Done,
    /// The state machine forbids it.
    Illegal,
    /// Someone else changed the order first (the row no longer has the expected status).
    Stale,
}

/// Moves `order` to `to` if the state machine allows it and the row is still in the state
/// it was read in; writes the event in the same transaction and updates `order` in memory.
pub async fn transition(
    tx: &mut Tx,
    order: &mut OrderRow,
    to: OrderStatus,
    actor: &Actor,
    reason: Option<&str>,
    detail: Option<serde_json::Value>,
) -> Result<TransitionResult, sqlx::Error> {
    let from = order.status();
    if !from.can_become(to) {
        return Ok(TransitionResult::Illegal);
    }
    let now = now_ms().max(order.updated_at_ms);
    let hold_reason = (to == OrderStatus::OnHold).then_some(reason).flatten();
    let reject_reason = matches!(to, OrderStatus::Rejected | OrderStatus::Cancelled | OrderStatus::Failed)
        .then_some(reason)
        .flatten();
    let held_from = (to == OrderStatus::OnHold).then_some(from.as_str());
    let changed = with_tx!(tx, c => sqlx::query(
        "UPDATE orders SET status = $1, updated_at_ms = $2, hold_reason = $3, \
         reject_reason = COALESCE($4, reject_reason), held_from = $5 \
         WHERE id = $6 AND created_at_ms = $7 AND status = $8")
        .bind(to.as_str())
        .bind(now)
        .bind(hold_reason)
        .bind(reject_reason)
        .bind(held_from)
        .bind(order.id)
        .bind(order.created_at_ms)
        .bind(from.as_str())
        .execute(c)
        .await?
        .rows_affected());
    if changed == 0 {
        return Ok(TransitionResult::Stale);
    }
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO order_events (id, order_id, order_created_at_ms, from_status, to_status, actor, role, reason, detail, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
        .bind(Uuid::now_v7())
        .bind(order.id)
        .bind(order.created_at_ms)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(&actor.id)
        .bind(actor.role)
        .bind(reason)
        .bind(detail.map(Json))
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    order.status = to.as_str().to_string();
    order.updated_at_ms = now;
    order.hold_reason = hold_reason.map(str::to_string);
    order.held_from = held_from.map(str::to_string);
    if let Some(r) = reject_reason {
        order.reject_reason = Some(r.to_string());
    }
    metrics::counter!("khaacho_order_transitions_total", "to" => to.as_str()).increment(1);
    Ok(TransitionResult::Done)
}

/// The priced or refused state of one line, written by the validate step.
#[derive(Clone, Debug, Default)]
pub struct LineResolution {
    /// Line number.
    pub line_no: i32,
    /// Resolved product.
    pub product_id: Option<Uuid>,
    /// Name snapshot.
    pub product_name: Option<String>,
    /// Base quantity.
    pub base_qty_milli: Option<i64>,
    /// Base unit snapshot.
    pub base_unit: Option<String>,
    /// Price per base unit.
    pub unit_price_paisa: Option<i64>,
    /// Amount before VAT.
    pub subtotal_paisa: Option<i64>,
    /// VAT.
    pub vat_paisa: Option<i64>,
    /// Amount with VAT.
    pub total_paisa: Option<i64>,
    /// Offer used.
    pub offer_id: Option<Uuid>,
    /// Its vendor.
    pub vendor_id: Option<Uuid>,
    /// Why this price.
    pub price_reason: Option<String>,
    /// Refusal code.
    pub reject_code: Option<String>,
    /// Refusal detail.
    pub reject_detail: Option<String>,
}

/// Writes the validate step's result for every line and the order totals.
pub async fn save_resolution(
    tx: &mut Tx,
    order: &OrderRow,
    lines: &[LineResolution],
    totals: Option<(i64, i64, i64)>,
) -> Result<(), sqlx::Error> {
    for l in lines {
        with_tx!(tx, c => sqlx::query(
            "UPDATE order_lines SET product_id = $1, product_name = $2, base_qty_milli = $3, base_unit = $4, \
             unit_price_paisa = $5, subtotal_paisa = $6, vat_paisa = $7, total_paisa = $8, offer_id = $9, \
             vendor_id = $10, price_reason = $11, reject_code = $12, reject_detail = $13 \
             WHERE order_id = $14 AND order_created_at_ms = $15 AND line_no = $16")
            .bind(l.product_id)
            .bind(l.product_name.as_deref())
            .bind(l.base_qty_milli)
            .bind(l.base_unit.as_deref())
            .bind(l.unit_price_paisa)
            .bind(l.subtotal_paisa)
            .bind(l.vat_paisa)
            .bind(l.total_paisa)
            .bind(l.offer_id)
            .bind(l.vendor_id)
            .bind(l.price_reason.as_deref())
            .bind(l.reject_code.as_deref())
            .bind(l.reject_detail.as_deref())
            .bind(order.id)
            .bind(order.created_at_ms)
            .bind(l.line_no)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
    }
    if let Some((sub, vat, total)) = totals {
        with_tx!(tx, c => sqlx::query(
            "UPDATE orders SET subtotal_paisa = $1, vat_paisa = $2, total_paisa = $3 WHERE id = $4 AND created_at_ms = $5")
            .bind(sub)
            .bind(vat)
            .bind(total)
            .bind(order.id)
            .bind(order.created_at_ms)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Count of orders per status (for metrics).
pub async fn count_by_status(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    with_read!(db, c => sqlx::query_as("SELECT status, COUNT(*) FROM orders GROUP BY status").fetch_all(c).await)
}
