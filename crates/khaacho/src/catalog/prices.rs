//! Price intelligence of one product (DOMAIN.md "Price intelligence"), computed when asked
//! from the current offers and their price history with the rules of `khaacho-vendors`.
//!
//! The 30-day change compares the current prices with what the same offers asked 30 days ago
//! — or, for an offer first priced since, its first price — so a week-old offer that doubled
//! its price shows up too. Volatility counts the price changes of the last 30 days and their
//! average size.

use std::collections::HashMap;

use khaacho_vendors::{
    Competitiveness, PriceChange, PriceInsight, competitiveness, insight, mean_paisa,
};
use uuid::Uuid;

use crate::base::db::Db;
use crate::with_replica;

/// The window of the change and volatility.
pub const WINDOW_MS: i64 = 30 * khaacho_credit::DAY_MS;

/// One vendor's current price and how it compares.
#[derive(Debug)]
pub struct VendorPrice {
    /// The vendor.
    pub vendor_id: Uuid,
    /// Its name.
    pub vendor_name: String,
    /// Base price per base unit.
    pub price_paisa: i64,
    /// Against the average.
    pub competitiveness: Competitiveness,
}

/// A product's price intelligence.
#[derive(Debug)]
pub struct ProductPrices {
    /// The statistics; `None` when no active vendor has a valid offer.
    pub insight: Option<PriceInsight>,
    /// What the current offers asked at the start of the window (or when first priced),
    /// averaged like the current prices: the base of `change_30d_pct`.
    pub baseline_paisa: Option<i64>,
    /// Price changes in the window, oldest first.
    pub changes: Vec<(Uuid, PriceChange, i64)>,
    /// Each current offer, cheapest first.
    pub vendors: Vec<VendorPrice>,
}

/// Computes the price intelligence of `product_id` at `now_ms` (asked for by
/// `GET /products/{sku}/prices`, and snapshotted every 4 hours by [`super::intelligence`]).
pub async fn of_product(
    db: &Db,
    product_id: Uuid,
    now_ms: i64,
) -> Result<ProductPrices, sqlx::Error> {
    let cut = now_ms - WINDOW_MS;
    let current: Vec<(Uuid, Uuid, String, i64)> = with_replica!(db, c => sqlx::query_as(
        "SELECT o.id, o.vendor_id, v.name, o.price_paisa FROM offers o JOIN vendors v ON v.id = o.vendor_id \
         WHERE o.product_id = $1 AND v.active = $2 AND o.valid_from_ms <= $3 \
         AND (o.valid_to_ms IS NULL OR o.valid_to_ms > $3) ORDER BY o.price_paisa, v.name")
        .bind(product_id).bind(true).bind(now_ms).fetch_all(c).await)?;
    // Every history row of the window, and the last one before it, per offer of the product.
    let history: Vec<(Uuid, i64, i64)> = with_replica!(db, c => sqlx::query_as(
        "SELECT h.offer_id, h.price_paisa, h.changed_at_ms FROM price_history h JOIN offers o ON o.id = h.offer_id \
         WHERE o.product_id = $1 AND (h.changed_at_ms > $2 OR h.changed_at_ms = (SELECT MAX(h2.changed_at_ms) \
         FROM price_history h2 WHERE h2.offer_id = h.offer_id AND h2.changed_at_ms <= $2)) \
         ORDER BY h.changed_at_ms, h.id")
        .bind(product_id).bind(cut).fetch_all(c).await)?;
    let mut by_offer: HashMap<Uuid, Vec<(i64, i64)>> = HashMap::new();
    for (offer, price, at) in history {
        by_offer.entry(offer).or_default().push((price, at));
    }
    let mut changes = Vec::new();
    for (offer, rows) in &by_offer {
        for pair in rows.windows(2) {
            let ((old, _), (new, at)) = (pair[0], pair[1]);
            if at > cut && old != new {
                changes.push((
                    *offer,
                    PriceChange {
                        old_paisa: old,
                        new_paisa: new,
                    },
                    at,
                ));
            }
        }
    }
    changes.sort_by_key(|c| (c.2, c.0));
    // What the current offers asked at the start of the window (or when first priced).
    let baselines: Vec<i64> = current
        .iter()
        .filter_map(|(offer, ..)| {
            by_offer
                .get(offer)
                .and_then(|rows| rows.first())
                .map(|r| r.0)
        })
        .collect();
    // Averaged like the current prices, so unchanged prices show no change.
    let baseline = mean_paisa(&baselines);
    let prices: Vec<i64> = current.iter().map(|c| c.3).collect();
    let only_changes: Vec<PriceChange> = changes.iter().map(|c| c.1).collect();
    let insight = insight(&prices, baseline, &only_changes);
    let vendors = current
        .into_iter()
        .map(|(_, vendor_id, vendor_name, price_paisa)| VendorPrice {
            vendor_id,
            vendor_name,
            price_paisa,
            competitiveness: competitiveness(
                price_paisa,
                insight.as_ref().map_or(price_paisa, |i| i.average_paisa),
            ),
        })
        .collect();
    Ok(ProductPrices {
        insight,
        baseline_paisa: baseline,
        changes,
        vendors,
    })
}
