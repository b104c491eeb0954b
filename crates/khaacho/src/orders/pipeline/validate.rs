//! The validate step: resolve every line to a product, convert packs to base units, price
//! each with the best offer, add VAT and totals, and move each order to `validated` (priced)
//! or to `rejected` with a reason code per refused line.
//!
//! It runs inside [`super::process`]'s transaction for a batch of orders: one query for the
//! lines, one for the products, one for the offers and one update of the lines, whatever the
//! batch size; its transitions are written with the run's others ([`Deferred`]), the totals
//! of the orders it prices with them (they are in memory meanwhile). When the run routes its
//! orders too ([`Prices::Market`]), the offers come from routing's read of the market, which
//! it hands on, and the lines are written once, after routing has addressed them to their
//! vendors ([`Validated::write_lines`]): one read of the offers and one write of each line
//! where there were two of each.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use uuid::Uuid;

use super::super::model::{Actor, LineRow, OrderRow, OrderStatus};
use super::super::repo::{self, Addressed, LineResolution, ResolvedLine};
use super::super::transition::{Change, Deferred};
use crate::base::db::{Reader, Tx};
use crate::base::domain::{UnitRules, canonical_unit, line_amount, vat};
use crate::catalog::pricing::best_quote;
use crate::catalog::repo::{OfferRow, ProductRow, find_by_skus_tx, valid_offers_tx};
use crate::fulfilment::facts::{Market, VolumeCache};
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
    /// The offers valid now of active vendors.
    offers: Vec<OfferRow>,
}

/// Where [`run`] reads its prices, and who writes the lines.
#[derive(Clone, Copy)]
pub enum Prices<'a> {
    /// The valid offers of active vendors, read for the batch; the lines written by [`run`].
    Offers,
    /// Routing's market for the batch's shops and products (the valid offers of every
    /// vendor, the vendors with their loads, the shops, the 30-day volumes through this
    /// cache), read by [`run`], priced from (the active vendors' offers), and handed on to
    /// routing in the same transaction ([`Validated::market`]). The lines are left to the
    /// caller, who writes them once routing has addressed them ([`Validated::write_lines`]).
    Market(&'a VolumeCache),
}

/// Routing's market could not be read ([`Prices::Market`]): a fault of routing's, which the
/// run leaves to the routing jobs instead of failing the orders with it (`super::process`).
#[derive(Debug, thiserror::Error)]
#[error("routing's market could not be read: {0}")]
pub struct MarketUnread(#[source] sqlx::Error);

impl MarketUnread {
    /// Whether `e` is one.
    pub fn is(e: &JobError) -> bool {
        matches!(e, JobError::Retryable(e) if e.is::<MarketUnread>())
    }
}

/// What [`run`] did.
#[derive(Debug, Default)]
pub struct Validated {
    /// Per order, whether it was validated.
    pub ok: Vec<bool>,
    /// The lines of each validated order as written (by order and line number): what a read
    /// of its lines returns once they are written, for the steps after this one in the same
    /// transaction.
    pub lines: Vec<(Uuid, LineRow)>,
    /// The market read for pricing ([`Prices::Market`]), for routing.
    pub market: Option<Market>,
    /// Every line's resolution, when [`Prices::Market`] left them unwritten.
    unwritten: Vec<ResolvedLine>,
}

impl Validated {
    /// Writes the lines [`run`] left unwritten ([`Prices::Market`]) — every line of the
    /// batch, validated or refused — each line in `addressed` with the vendor routing gave it
    /// (as [`crate::orders::repo::address_lines_many`] would have set it after).
    pub async fn write_lines(
        &mut self,
        tx: &mut Tx,
        addressed: &[Addressed],
    ) -> Result<(), sqlx::Error> {
        let mut rows = std::mem::take(&mut self.unwritten);
        if !addressed.is_empty() {
            let vendor_of: HashMap<(Uuid, i32), Option<Uuid>> = Addressed::rows(addressed)
                .into_iter()
                .map(|(order, _, line_no, vendor)| ((order, line_no), vendor))
                .collect();
            for ((order, _), line) in &mut rows {
                if let Some(vendor) = vendor_of.get(&(*order, line.line_no)) {
                    line.vendor_id = *vendor;
                }
            }
        }
        repo::save_resolutions(tx, &rows).await
    }
}

/// Validates `orders` (all `received`, locked by the caller, their lines as
/// [`requested_lines`] read them) at `now` (epoch ms): each is moved to `validated` (priced)
/// or `rejected`.
pub async fn run(
    tx: &mut Tx,
    orders: &mut [&mut OrderRow],
    by_order: Requested,
    prices: Prices<'_>,
    now: i64,
    transitions: &mut Deferred,
) -> Result<Validated, JobError> {
    if orders.is_empty() {
        return Ok(Validated::default());
    }
    let (catalogue, market) = load_catalogue(tx, orders, &by_order, prices, now).await?;
    let none = Vec::new();
    let outcomes: Vec<Outcome> = orders
        .iter()
        .map(|o| judge(by_order.get(&o.id).unwrap_or(&none), &catalogue))
        .collect();
    let resolutions: Vec<ResolvedLine> = orders
        .iter()
        .zip(&outcomes)
        .flat_map(|(o, out)| {
            out.resolved
                .iter()
                .map(|l| ((o.id, o.created_at_ms), l.clone()))
        })
        .collect();
    let unwritten = match prices {
        Prices::Offers => {
            repo::save_resolutions(tx, &resolutions).await?;
            Vec::new()
        }
        Prices::Market(_) => resolutions,
    };
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
        market,
        unwritten,
    })
}

/// The lines of orders as requested, by order.
pub type Requested = HashMap<Uuid, Vec<LineRow>>;

/// The requested lines of `orders`, by order: what [`run`] validates.
pub async fn requested_lines(
    tx: &mut Tx,
    orders: &[&mut OrderRow],
) -> Result<Requested, sqlx::Error> {
    if orders.is_empty() {
        return Ok(Requested::new());
    }
    let refs: Vec<&OrderRow> = orders.iter().map(|o| &**o).collect();
    let mut by_order = Requested::new();
    for (order_id, line) in repo::lines_many_tx(tx, &refs).await? {
        by_order.entry(order_id).or_default().push(line);
    }
    Ok(by_order)
}

/// The products the lines name and their offers valid at `now`; with [`Prices::Market`], the
/// market they come from.
async fn load_catalogue(
    tx: &mut Tx,
    orders: &[&mut OrderRow],
    by_order: &Requested,
    prices: Prices<'_>,
    now: i64,
) -> Result<(Catalogue, Option<Market>), JobError> {
    let skus: Vec<String> = by_order
        .values()
        .flatten()
        .map(|l| l.sku.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let products = find_by_skus_tx(tx, &skus).await?;
    let product_ids: Vec<Uuid> = products.iter().map(|p| p.id).collect();
    match prices {
        Prices::Offers => {
            let offers = valid_offers_tx(tx, &product_ids, now).await?;
            Ok((Catalogue { products, offers }, None))
        }
        Prices::Market(volumes) => {
            let shops: Vec<Uuid> = orders.iter().map(|o| o.retailer_id).collect();
            let market = Market::load_for(&mut Reader::Tx(tx), volumes, &shops, &product_ids, now)
                .await
                .map_err(|e| JobError::Retryable(MarketUnread(e).into()))?;
            let offers = market.active_offers().cloned().collect();
            Ok((Catalogue { products, offers }, Some(market)))
        }
    }
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
