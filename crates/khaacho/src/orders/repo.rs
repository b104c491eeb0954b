//! SQL of orders, lines and events. Every finder that can be reached by a retailer takes the
//! retailer scope first, so another tenant's row cannot be fetched by accident.

use uuid::Uuid;

use super::model::{EventRow, LineRow, OrderRow, OrderStatus, created_at_of};
use crate::base::db::{BuildBatch, Db, Tx, TxInner, push_created_in, push_rows_at};
use crate::base::scope::Scope;
use crate::{with_keyed, with_latest, with_replica, with_tx};

/// The vendor filter of the scoped finders (`$n` is the vendor id or NULL).
fn vendor_clause(n: u8) -> String {
    format!(
        "(${n} IS NULL OR EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = orders.id \
         AND l.order_created_at_ms = orders.created_at_ms AND l.vendor_id = ${n}))"
    )
}

const ORDER_COLS: &str = "id, created_at_ms, retailer_id, status, priority, channel, note, source_text, subtotal_paisa, \
     vat_paisa, total_paisa, hold_reason, held_from, reject_reason, correlation_id, updated_at_ms, payment_mode";

/// Rows per multi-row statement, well under both backends' bound-parameter limits.
const CHUNK: usize = 2000;

/// The requested lines of one new order: `(order id, its creation time, (sku, qty_milli,
/// unit) per line)`.
pub type NewLines<'a> = (Uuid, i64, &'a [(String, i64, String)]);

/// Inserts the requested lines of new orders.
pub async fn insert_lines(tx: &mut Tx, orders: &[NewLines<'_>]) -> Result<(), sqlx::Error> {
    insert_line_rows(tx, &line_inserts(orders)).await
}

/// The rows of `orders`' lines, numbered from 1 in each order.
pub fn line_inserts<'a>(orders: &[NewLines<'a>]) -> Vec<LineInsert<'a>> {
    orders
        .iter()
        .flat_map(|(id, at, lines)| {
            lines
                .iter()
                .enumerate()
                .map(move |(i, l)| (*id, *at, i as i32 + 1, l))
        })
        .collect()
}

/// Replaces the requested lines of an order (a parse step's result, or an operator's
/// correction of it).
pub async fn replace_lines(
    tx: &mut Tx,
    order: &OrderRow,
    lines: &[(String, i64, String)],
) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query("DELETE FROM order_lines WHERE order_id = $1 AND order_created_at_ms = $2")
        .bind(order.id)
        .bind(order.created_at_ms)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    let rows: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (order.id, order.created_at_ms, i as i32 + 1, l))
        .collect();
    insert_line_rows(tx, &rows).await
}

/// `(order, its creation time, line number, (sku, quantity, unit))`.
pub type LineInsert<'a> = (Uuid, i64, i32, &'a (String, i64, String));

async fn insert_line_rows(tx: &mut Tx, lines: &[LineInsert<'_>]) -> Result<(), sqlx::Error> {
    for chunk in lines.chunks(CHUNK) {
        with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO order_lines (order_id, order_created_at_ms, line_no, sku, qty_milli, unit) ");
            qb.push_values(chunk, |mut b, (id, at, no, (sku, qty, unit))| {
                b.push_bind(*id).push_bind(*at).push_bind(*no).push_bind(sku).push_bind(*qty).push_bind(unit);
            });
            qb.build_batch().execute(&mut *c).await?;
        });
    }
    Ok(())
}

/// One order, within `scope`.
pub async fn find(db: &Db, scope: Scope, id: Uuid) -> Result<Option<OrderRow>, sqlx::Error> {
    let Some(created) = created_at_of(id) else {
        return Ok(None);
    };
    if scope.vendor().is_none() {
        // By the whole key (the tenant checked on the one row found): planned once, on the
        // keyed-read pool. A vendor's read also asks the order's lines, so it stays below.
        let order: Option<OrderRow> = with_keyed!(db, c => sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {ORDER_COLS} FROM orders WHERE id = $1 AND created_at_ms = $2")))
            .bind(id)
            .bind(created)
            .fetch_optional(c)
            .await)?;
        return Ok(order.filter(|o| scope.retailer().is_none_or(|r| o.retailer_id == r)));
    }
    let sql = format!(
        "SELECT {ORDER_COLS} FROM orders WHERE id = $1 AND created_at_ms = $2 AND ($3 IS NULL OR retailer_id = $3) AND {}",
        vendor_clause(4)
    );
    with_latest!(db, c => sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
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
    let Some(created) = created_at_of(id) else {
        return Ok(None);
    };
    let lock = if tx.is_postgres() { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {ORDER_COLS} FROM orders WHERE id = $1 AND created_at_ms = $2{lock}");
    with_tx!(tx, c => sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(created)
        .fetch_optional(c)
        .await)
}

/// Several orders inside a transaction, locked in id order (so concurrent batches cannot
/// deadlock) on PostgreSQL.
pub async fn find_many_for_update(tx: &mut Tx, ids: &[Uuid]) -> Result<Vec<OrderRow>, sqlx::Error> {
    lock_many(tx, ids, "FOR UPDATE").await
}

/// Like [`find_many_for_update`], but the orders another transaction holds are left out
/// (PostgreSQL's `SKIP LOCKED`) rather than waited for, so a batch can work on the rest and
/// leave those for after. On SQLite the transaction holds the whole database: none is left
/// out.
pub async fn find_many_for_update_skip_locked(
    tx: &mut Tx,
    ids: &[Uuid],
) -> Result<Vec<OrderRow>, sqlx::Error> {
    lock_many(tx, ids, "FOR UPDATE SKIP LOCKED").await
}

async fn lock_many(
    tx: &mut Tx,
    ids: &[Uuid],
    lock: &'static str,
) -> Result<Vec<OrderRow>, sqlx::Error> {
    // `push_rows_at` takes each key once, in key order (the order the rows are locked in).
    let keys: Vec<(Uuid, i64)> = ids
        .iter()
        .filter_map(|id| Some((*id, created_at_of(*id)?)))
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(format!("SELECT {ORDER_COLS} FROM"));
        push_rows_at(&mut qb, "orders", "o", ("id", "created_at_ms"), &keys, Some(lock));
        qb.push(" ORDER BY id");
        qb.build_query_as::<OrderRow>().fetch_all(c).await
    })
}

/// Lines of several orders, by order and line number.
pub async fn lines_many_tx(
    tx: &mut Tx,
    orders: &[&OrderRow],
) -> Result<Vec<(Uuid, LineRow)>, sqlx::Error> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(sqlx::FromRow)]
    struct Row {
        order_id: Uuid,
        #[sqlx(flatten)]
        line: LineRow,
    }
    let keys: Vec<(Uuid, i64)> = orders.iter().map(|o| (o.id, o.created_at_ms)).collect();
    let rows = with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(format!("SELECT order_id, {LINE_COLS} FROM"));
        push_rows_at(&mut qb, "order_lines", "l", ("order_id", "order_created_at_ms"), &keys, None);
        qb.push(" ORDER BY order_id, line_no");
        qb.build_query_as::<Row>().fetch_all(c).await
    })?;
    Ok(rows.into_iter().map(|r| (r.order_id, r.line)).collect())
}

/// Lines of an order, by line number (by the order's key: planned once).
pub async fn lines(db: &Db, order: &OrderRow) -> Result<Vec<LineRow>, sqlx::Error> {
    with_keyed!(db, c => sqlx::query_as::<_, LineRow>(sqlx::AssertSqlSafe(&**LINES_SQL))
        .bind(order.id)
        .bind(order.created_at_ms)
        .fetch_all(c)
        .await)
}

/// Lines of an order inside a transaction.
pub async fn lines_tx(tx: &mut Tx, order: &OrderRow) -> Result<Vec<LineRow>, sqlx::Error> {
    with_tx!(tx, c => sqlx::query_as::<_, LineRow>(sqlx::AssertSqlSafe(&**LINES_SQL))
        .bind(order.id)
        .bind(order.created_at_ms)
        .fetch_all(c)
        .await)
}

/// The columns of a [`LineRow`].
pub(crate) const LINE_COLS: &str = "line_no, sku, qty_milli, unit, product_id, product_name, base_qty_milli, base_unit, \
     unit_price_paisa, subtotal_paisa, vat_paisa, total_paisa, offer_id, vendor_id, price_reason, reject_code, \
     reject_detail";

/// The columns of an [`EventRow`].
pub(crate) const EVENT_COLS: &str =
    "id, from_status, to_status, actor, role, reason, detail, at_ms";

/// An order's lines by its key, formatted once.
static LINES_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {LINE_COLS} FROM order_lines WHERE order_id = $1 AND order_created_at_ms = $2 ORDER BY line_no"
    )
});

/// An order's events by its key, formatted once.
static EVENTS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLS} FROM order_events WHERE order_id = $1 AND order_created_at_ms = $2 ORDER BY at_ms, id"
    )
});

/// Event history of an order, oldest first (by the order's key: planned once).
pub async fn events(db: &Db, order: &OrderRow) -> Result<Vec<EventRow>, sqlx::Error> {
    with_keyed!(db, c => sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(&**EVENTS_SQL))
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
    let (cursor_ms, cursor_id) = f
        .after
        .map_or((None, None), |(ms, id)| (Some(ms), Some(id)));
    let sql = format!(
        "SELECT {ORDER_COLS} FROM orders WHERE ($1 IS NULL OR retailer_id = $1) AND ($2 IS NULL OR retailer_id = $2) \
         AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR created_at_ms >= $4) AND ($5 IS NULL OR created_at_ms < $5) \
         AND ($6 IS NULL OR created_at_ms < $6 OR (created_at_ms = $6 AND id < $7)) \
         AND {} ORDER BY created_at_ms DESC, id DESC LIMIT $8",
        vendor_clause(9)
    );
    with_replica!(db, c => sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
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

/// A line's resolution with its order's key, `((order id, creation time), resolution)`: a
/// row [`save_resolutions`] writes.
pub type ResolvedLine = ((Uuid, i64), LineResolution);

/// A requested line as [`save_resolutions`] writes it with its resolution: the row a read of
/// the order's lines returns after it.
pub fn resolved_line(requested: &LineRow, l: &LineResolution) -> LineRow {
    LineRow {
        line_no: requested.line_no,
        sku: requested.sku.clone(),
        qty_milli: requested.qty_milli,
        unit: requested.unit.clone(),
        product_id: l.product_id,
        product_name: l.product_name.clone(),
        base_qty_milli: l.base_qty_milli,
        base_unit: l.base_unit.clone(),
        unit_price_paisa: l.unit_price_paisa,
        subtotal_paisa: l.subtotal_paisa,
        vat_paisa: l.vat_paisa,
        total_paisa: l.total_paisa,
        offer_id: l.offer_id,
        vendor_id: l.vendor_id,
        price_reason: l.price_reason.clone(),
        reject_code: l.reject_code.clone(),
        reject_detail: l.reject_detail.clone(),
    }
}

/// Writes the validate step's results for many orders: each line is updated with its
/// resolution. On PostgreSQL one statement whatever the batch, its rows an array per column
/// (one text, so one prepared statement: a `VALUES` list of the batch's size was a text per
/// size, parsed and planned afresh each time); on SQLite a multi-row statement per
/// [`CHUNK`]` / 2` lines. The totals are written with the orders' move to `validated`
/// (`transition::Deferred`).
pub async fn save_resolutions(tx: &mut Tx, rows: &[ResolvedLine]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    if let TxInner::Pg(t) = tx.inner_mut() {
        use crate::base::db::column as col;
        sqlx::query(sqlx::AssertSqlSafe(&**RESOLUTIONS_SQL))
            .bind(col(rows, |r| r.0.0))
            .bind(col(rows, |r| r.0.1))
            .bind(col(rows, |r| r.1.line_no))
            .bind(col(rows, |r| r.1.product_id))
            .bind(col(rows, |r| r.1.product_name.as_deref()))
            .bind(col(rows, |r| r.1.base_qty_milli))
            .bind(col(rows, |r| r.1.base_unit.as_deref()))
            .bind(col(rows, |r| r.1.unit_price_paisa))
            .bind(col(rows, |r| r.1.subtotal_paisa))
            .bind(col(rows, |r| r.1.vat_paisa))
            .bind(col(rows, |r| r.1.total_paisa))
            .bind(col(rows, |r| r.1.offer_id))
            .bind(col(rows, |r| r.1.vendor_id))
            .bind(col(rows, |r| r.1.price_reason.as_deref()))
            .bind(col(rows, |r| r.1.reject_code.as_deref()))
            .bind(col(rows, |r| r.1.reject_detail.as_deref()))
            .bind(crate::base::db::distinct_created(
                rows.iter().map(|r| r.0.1),
            ))
            .execute(&mut **t)
            .await?;
        return Ok(());
    }
    for chunk in rows.chunks(CHUNK / 2) {
        with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new(format!("WITH {RESOLUTIONS_V} AS ("));
            qb.push_values(chunk, |mut b, ((order, created), l)| {
                b.push_bind(*order).push_bind(*created).push_bind(l.line_no)
                    .push_bind(l.product_id).push_bind(l.product_name.as_deref())
                    .push_bind(l.base_qty_milli).push_bind(l.base_unit.as_deref()).push_bind(l.unit_price_paisa)
                    .push_bind(l.subtotal_paisa).push_bind(l.vat_paisa).push_bind(l.total_paisa).push_bind(l.offer_id)
                    .push_bind(l.vendor_id).push_bind(l.price_reason.as_deref()).push_bind(l.reject_code.as_deref())
                    .push_bind(l.reject_detail.as_deref());
            });
            qb.push(format_args!(") {RESOLUTIONS_SET} FROM v WHERE {RESOLUTIONS_KEY} AND"));
            push_created_in(&mut qb, "order_lines.order_created_at_ms", chunk.iter().map(|((_, c), _)| *c));
            qb.build_batch().execute(&mut *c).await?;
        });
    }
    Ok(())
}

/// The rows [`save_resolutions`] writes, as its statement names them.
const RESOLUTIONS_V: &str = "v(order_id, created_at_ms, line_no, product_id, product_name, \
     base_qty_milli, base_unit, unit_price_paisa, subtotal_paisa, vat_paisa, total_paisa, offer_id, \
     vendor_id, price_reason, reject_code, reject_detail)";
/// What [`save_resolutions`] sets, from the rows `v`.
const RESOLUTIONS_SET: &str = "UPDATE order_lines SET product_id = v.product_id, \
     product_name = v.product_name, base_qty_milli = v.base_qty_milli, base_unit = v.base_unit, \
     unit_price_paisa = v.unit_price_paisa, subtotal_paisa = v.subtotal_paisa, vat_paisa = v.vat_paisa, \
     total_paisa = v.total_paisa, offer_id = v.offer_id, vendor_id = v.vendor_id, \
     price_reason = v.price_reason, reject_code = v.reject_code, reject_detail = v.reject_detail";
/// The line each row `v` of [`save_resolutions`] updates.
const RESOLUTIONS_KEY: &str = "order_lines.order_id = v.order_id \
     AND order_lines.order_created_at_ms = v.created_at_ms AND order_lines.line_no = v.line_no";
/// [`save_resolutions`]' statement on PostgreSQL.
static RESOLUTIONS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{RESOLUTIONS_SET} FROM unnest($1::uuid[], $2::bigint[], $3::integer[], $4::uuid[], $5::text[], \
         $6::bigint[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::uuid[], \
         $13::uuid[], $14::text[], $15::text[], $16::text[]) AS {RESOLUTIONS_V} \
         WHERE {RESOLUTIONS_KEY} AND order_lines.order_created_at_ms = ANY($17::bigint[])"
    )
});

/// Addresses lines `line_nos` of `order` to `vendor` (routing or a reassignment): the vendor
/// then finds the order through its scope and sees those lines.
pub async fn address_lines(
    tx: &mut Tx,
    order: (Uuid, i64),
    line_nos: &[i32],
    vendor: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    let one = Addressed {
        order,
        line_nos: line_nos.to_vec(),
        vendor,
    };
    address_lines_many(tx, &[one]).await
}

/// Lines of one order addressed to a vendor (or to none), for [`address_lines_many`].
#[derive(Clone, Debug)]
pub struct Addressed {
    /// The order's key: id and creation time.
    pub order: (Uuid, i64),
    /// Its line numbers.
    pub line_nos: Vec<i32>,
    /// The vendor, or none.
    pub vendor: Option<Uuid>,
}

impl Addressed {
    /// `(order id, created, line no, vendor)` of every line of `addressed`.
    pub(crate) fn rows(addressed: &[Addressed]) -> Vec<(Uuid, i64, i32, Option<Uuid>)> {
        addressed
            .iter()
            .flat_map(|a| {
                a.line_nos
                    .iter()
                    .map(move |n| (a.order.0, a.order.1, *n, a.vendor))
            })
            .collect()
    }
}

/// [`address_lines`] for many orders at once, with one statement.
pub async fn address_lines_many(tx: &mut Tx, addressed: &[Addressed]) -> Result<(), sqlx::Error> {
    let rows = Addressed::rows(addressed);
    for chunk in rows.chunks(CHUNK) {
        with_tx!(tx, c => {
            // A VALUES list named by a CTE works the same on PostgreSQL and SQLite (3.33+).
            let mut qb = sqlx::QueryBuilder::new("WITH v(order_id, created_at_ms, line_no, vendor_id) AS (");
            qb.push_values(chunk, |mut b, (id, created, n, vendor)| {
                b.push_bind(*id).push_bind(*created).push_bind(*n).push_bind(*vendor);
            });
            qb.push(") UPDATE order_lines SET vendor_id = v.vendor_id FROM v WHERE order_lines.order_id = v.order_id \
                     AND order_lines.order_created_at_ms = v.created_at_ms AND order_lines.line_no = v.line_no AND");
            push_created_in(&mut qb, "order_lines.order_created_at_ms", chunk.iter().map(|r| r.1));
            qb.build_batch().execute(&mut *c).await?;
        });
    }
    Ok(())
}
