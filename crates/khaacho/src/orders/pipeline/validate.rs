//! The validate step: resolve every line to a product, convert packs to base units, price
//! each with the best offer, add VAT and totals, and move each order to `validated` (priced)
//! or to `rejected` with a reason code per refused line.
//!
//! It runs inside [`super::process`]'s transaction for a batch of orders: one query for the
//! lines, one for the products, one for the offers and one update of the lines, whatever the
//! batch size; its transitions are written with the run's others ([`Deferred`]), the totals
//! of the orders it prices with them (they are in memory meanwhile).

use std::collections::{HashMap, HashSet};

use serde_json::json;
use uuid::Uuid;

use super::super::model::{Actor, LineRow, OrderRow, OrderStatus};
use super::super::repo::{self, LineResolution};
use super::super::transition::{Change, Deferred};
use crate::base::db::Tx;
use crate::base::domain::{UnitRules, canonical_unit, line_amount, vat};
use crate::base::time::now_ms;
use crate::catalog::pricing::best_quote;
use crate::catalog::repo::{OfferRow, ProductRow, find_by_skus_tx, valid_offers_tx};
use crate::queue::JobError;

pub use crate::base::domain::VAT_PERCENT;

/// What validation decided for one order.
enum Verdict {
    /// Some lines were refused (or there were none): rejected with this detail.
    Reject(serde_json::Value),
    /// Priced.
    Accept,
}

/// One order's outcome: its lines resolved, the verdict and the totals.
struct Outcome {
    resolved: Vec<LineResolution>,
    verdict: Verdict,
    /// `(subtotal, vat, total)` when priced.
    totals: Option<(i64, i64, i64)>,
}

/// The catalogue rows the batch needs, read once.
struct Catalogue {
    products: Vec<ProductRow>,
    offers: Vec<OfferRow>,
}

/// What [`run`] did.
#[derive(Debug, Default)]
pub struct Validated {
    /// Per order, whether it was validated.
    pub ok: Vec<bool>,
    /// The lines of each validated order as written (by order and line number): what a read
    /// of its lines now returns, for the steps after this one in the same transaction.
    pub lines: Vec<(Uuid, LineRow)>,
}

/// Validates `orders` (all `received`, locked by the caller): each is moved to `validated`
/// (priced) or `rejected`.
pub async fn run(
    tx: &mut Tx,
    orders: &mut [&mut OrderRow],
    transitions: &mut Deferred,
) -> Result<Validated, JobError> {
    if orders.is_empty() {
        return Ok(Validated::default());
    }
    let by_order = requested_lines(tx, orders).await?;
    let catalogue = load_catalogue(tx, &by_order).await?;
    let none = Vec::new();
    let outcomes: Vec<Outcome> = orders
        .iter()
        .map(|o| judge(by_order.get(&o.id).unwrap_or(&none), &catalogue))
        .collect();
    save(tx, orders, &by_order, &outcomes).await?;
    // The steps after this one read the totals from the orders in memory.
    for (o, out) in orders.iter_mut().zip(&outcomes) {
        if let Some((subtotal, vat, total)) = out.totals {
            o.subtotal_paisa = Some(subtotal);
            o.vat_paisa = Some(vat);
            o.total_paisa = Some(total);
        }
    }
    decide(orders, &outcomes, transitions)?;
    let none = Vec::new();
    let mut lines = Vec::new();
    for (o, out) in orders.iter().zip(&outcomes) {
        if matches!(out.verdict, Verdict::Accept) {
            let requested = by_order.get(&o.id).unwrap_or(&none);
            lines.extend(
                requested
                    .iter()
                    .zip(&out.resolved)
                    .map(|(req, l)| (o.id, repo::resolved_line(req, l))),
            );
        }
    }
    Ok(Validated {
        ok: outcomes
            .iter()
            .map(|o| matches!(o.verdict, Verdict::Accept))
            .collect(),
        lines,
    })
}

/// The requested lines of `orders`, by order.
async fn requested_lines(
    tx: &mut Tx,
    orders: &[&mut OrderRow],
) -> Result<HashMap<Uuid, Vec<LineRow>>, sqlx::Error> {
    let refs: Vec<&OrderRow> = orders.iter().map(|o| &**o).collect();
    let mut by_order: HashMap<Uuid, Vec<LineRow>> = HashMap::new();
    for (order_id, line) in repo::lines_many_tx(tx, &refs).await? {
        by_order.entry(order_id).or_default().push(line);
    }
    Ok(by_order)
}

/// The products the lines name and their offers valid now.
async fn load_catalogue(
    tx: &mut Tx,
    by_order: &HashMap<Uuid, Vec<LineRow>>,
) -> Result<Catalogue, sqlx::Error> {
    let skus: Vec<String> = by_order
        .values()
        .flatten()
        .map(|l| l.sku.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let products = find_by_skus_tx(tx, &skus).await?;
    let product_ids: Vec<Uuid> = products.iter().map(|p| p.id).collect();
    let offers = valid_offers_tx(tx, &product_ids, now_ms()).await?;
    Ok(Catalogue { products, offers })
}

/// Resolves and prices one order's lines and decides its fate (pure).
fn judge(requested: &[LineRow], catalogue: &Catalogue) -> Outcome {
    let resolved: Vec<LineResolution> = requested
        .iter()
        .map(|line| {
            let product = catalogue.products.iter().find(|p| p.sku == line.sku);
            resolve_line(
                line.line_no,
                &line.unit,
                line.qty_milli,
                product,
                &catalogue.offers,
            )
        })
        .collect();
    let refused: Vec<_> = resolved
        .iter()
        .filter_map(|r| {
            r.reject_code
                .as_ref()
                .map(|c| json!({ "line_no": r.line_no, "code": c, "detail": r.reject_detail }))
        })
        .collect();
    if requested.is_empty() {
        let detail = json!({ "lines": [], "error": "the order has no lines" });
        return Outcome {
            resolved,
            verdict: Verdict::Reject(detail),
            totals: None,
        };
    }
    if !refused.is_empty() {
        let detail = json!({ "lines": refused });
        return Outcome {
            resolved,
            verdict: Verdict::Reject(detail),
            totals: None,
        };
    }
    let sum = |f: fn(&LineResolution) -> Option<i64>| resolved.iter().filter_map(f).sum::<i64>();
    let totals = (
        sum(|r| r.subtotal_paisa),
        sum(|r| r.vat_paisa),
        sum(|r| r.total_paisa),
    );
    Outcome {
        verdict: Verdict::Accept,
        totals: Some(totals),
        resolved,
    }
}

/// Writes each line's resolution (the totals go with the orders' move to `validated`).
async fn save(
    tx: &mut Tx,
    orders: &[&mut OrderRow],
    by_order: &HashMap<Uuid, Vec<LineRow>>,
    outcomes: &[Outcome],
) -> Result<(), sqlx::Error> {
    let none = Vec::new();
    let results: Vec<repo::Resolution<'_>> = orders
        .iter()
        .zip(outcomes)
        .map(|(o, out)| repo::Resolution {
            order: o,
            requested: by_order.get(&o.id).unwrap_or(&none),
            resolved: &out.resolved,
        })
        .collect();
    repo::save_resolutions(tx, &results).await
}

/// Moves every order to `validated` or `rejected` (written with the run's other changes).
fn decide(
    orders: &mut [&mut OrderRow],
    outcomes: &[Outcome],
    transitions: &mut Deferred,
) -> Result<(), JobError> {
    let mut changes: Vec<(&mut OrderRow, Change<'_>)> = orders
        .iter_mut()
        .zip(outcomes)
        .map(|(o, out)| {
            let change = match &out.verdict {
                Verdict::Reject(detail) => Change {
                    to: OrderStatus::Rejected,
                    reason: Some("lines_rejected"),
                    detail: Some(detail.clone()),
                },
                Verdict::Accept => Change {
                    to: OrderStatus::Validated,
                    reason: None,
                    detail: None,
                },
            };
            (&mut **o, change)
        })
        .collect();
    transitions
        .apply_many(&mut changes, &Actor::system())
        .or_retry()
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
