//! Everything the order view shows besides the order row: its lines and history, the credit
//! hold and risk assessment, the vendor parts with their lines, offers and shop, and the
//! routing decisions.
//!
//! On PostgreSQL one statement reads it all (each table's rows aggregated as JSON in a scalar
//! subquery, on the keyed-read pool): the view was seven or eight keyed statements, each a
//! round trip, and under the whole life (`khaacho simulate`) those reads were about a third
//! of every statement the database ran. One statement is also one snapshot, where the reads
//! one after another could see a part that was written after the lines were read. On SQLite
//! a statement is a function call, so the reads stay one per table.

use serde::Deserialize;
use sqlx::types::Json;
use uuid::Uuid;

use super::model::{EventRow, LineRow, OrderRow};
use super::repo::{self, EVENT_COLS, LINE_COLS};
use crate::base::db::{Db, Reader};
use crate::credit::repo::HoldRow;
use crate::credit::risk::{self, AssessmentRow};
use crate::fulfilment::repo::{
    self as parts, DecisionRow, OFFER_COLS, PART_COLS, PartLineRow, PartOfferRow, PartRow,
};
use crate::parties::repo::{self as parties, RETAILER_COLS, Retailer};

/// What to read besides what every reader sees.
#[derive(Clone, Copy, Debug)]
pub struct Wants {
    /// The credit hold and the risk assessment (readers who see money).
    pub credit: bool,
    /// The routing decisions (staff).
    pub decisions: bool,
}

/// The rows behind an order view, each list in the order the view shows it.
#[derive(Debug, Deserialize)]
pub struct Detail {
    /// Lines by line number.
    pub lines: Vec<LineRow>,
    /// Events oldest first.
    pub events: Vec<EventRow>,
    /// The credit hold (when [`Wants::credit`]).
    pub hold: Option<HoldRow>,
    /// The risk assessment (when [`Wants::credit`]).
    pub assessment: Option<AssessmentRow>,
    /// Vendor parts, oldest first (by creation, then id).
    pub parts: Vec<PartRow>,
    /// Lines of those parts.
    pub part_lines: Vec<PartLineRow>,
    /// Offers of those parts, by part, oldest first.
    pub offers: Vec<PartOfferRow>,
    /// The shops the parts go to.
    pub shops: Vec<Retailer>,
    /// Routing decisions oldest first (when [`Wants::decisions`]).
    pub decisions: Vec<DecisionRow>,
}

/// The rows behind the view of `order` (already read and checked visible).
pub async fn read(db: &Db, order: &OrderRow, wants: Wants) -> Result<Detail, sqlx::Error> {
    let mut detail = match db.keyed_pool() {
        Some(pool) => {
            let Json(detail): Json<Detail> = sqlx::query_scalar(sqlx::AssertSqlSafe(pg_sql()))
                .bind(order.id)
                .bind(order.created_at_ms)
                .bind(wants.credit)
                .bind(wants.decisions)
                .fetch_one(pool)
                .await?;
            detail
        }
        None => read_each(db, order, wants).await?,
    };
    detail.parts.sort_by_key(|p| (p.created_at_ms, p.id));
    Ok(detail)
}

/// One statement, one JSON object: each field a table's rows (`$1`, `$2`: the order's key;
/// `$3`: [`Wants::credit`]; `$4`: [`Wants::decisions`]).
fn pg_sql() -> String {
    let list = |name: &str, cols: &str, from: &str, order: &str| {
        let order = if order.is_empty() {
            String::new()
        } else {
            format!(" ORDER BY {order}")
        };
        format!(
            "'{name}', (SELECT COALESCE(json_agg(x{order}), '[]') FROM (SELECT {cols} FROM {from}) x)"
        )
    };
    let one = |name: &str, cols: &str, from: &str| {
        format!("'{name}', (SELECT row_to_json(x) FROM (SELECT {cols} FROM {from}) x)")
    };
    let of_parts = "fulfilment_id IN (SELECT id FROM fulfilments WHERE order_id = $1)";
    let fields = [
        list(
            "lines",
            LINE_COLS,
            "order_lines WHERE order_id = $1 AND order_created_at_ms = $2",
            "x.line_no",
        ),
        list(
            "events",
            EVENT_COLS,
            "order_events WHERE order_id = $1 AND order_created_at_ms = $2",
            "x.at_ms, x.id",
        ),
        one(
            "hold",
            "order_id, retailer_id, amount_paisa, status, override_by, posted_paisa",
            "credit_holds WHERE $3 AND order_id = $1",
        ),
        one(
            "assessment",
            "score, decision, components, reasons",
            "risk_assessments WHERE $3 AND order_id = $1",
        ),
        // Sorted in Rust ([`read`]): an ORDER BY here could pick another index to walk.
        list("parts", PART_COLS, "fulfilments WHERE order_id = $1", ""),
        list(
            "part_lines",
            "fulfilment_id, line_no, product_id, qty_milli, unit, unit_price_paisa, reserved_milli, delivered_milli",
            &format!("fulfilment_lines WHERE {of_parts}"),
            "x.fulfilment_id, x.line_no",
        ),
        list(
            "offers",
            OFFER_COLS,
            &format!("fulfilment_offers WHERE {of_parts}"),
            "x.fulfilment_id, x.offered_at_ms, x.id",
        ),
        list(
            "shops",
            RETAILER_COLS,
            "retailers WHERE id = ANY(ARRAY(SELECT retailer_id FROM fulfilments WHERE order_id = $1))",
            "x.id",
        ),
        list(
            "decisions",
            "fulfilment_id, outcome, reason, decision, at_ms, id",
            "routing_decisions WHERE $4 AND order_id = $1",
            "x.at_ms, x.id",
        ),
    ];
    format!("SELECT json_build_object({})", fields.join(", "))
}

/// A read per table (SQLite, where each is a call into the library).
async fn read_each(db: &Db, order: &OrderRow, wants: Wants) -> Result<Detail, sqlx::Error> {
    let (hold, assessment) = if wants.credit {
        risk::hold_and_assessment(db, order.id).await?
    } else {
        (None, None)
    };
    let (parts, part_lines) = parts::of_order_with_lines(db, order.id).await?;
    let ids: Vec<Uuid> = parts.iter().map(|p| p.id).collect();
    let shops: Vec<Uuid> = parts.iter().map(|p| p.retailer_id).collect();
    Ok(Detail {
        lines: repo::lines(db, order).await?,
        events: repo::events(db, order).await?,
        hold,
        assessment,
        offers: parts::offers(db, &ids).await?,
        shops: parties::find_retailers(&mut Reader::Pool(db), &shops).await?,
        decisions: if wants.decisions {
            parts::decisions(db, order.id).await?
        } else {
            Vec::new()
        },
        parts,
        part_lines,
    })
}
