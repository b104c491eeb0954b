//! Best price for a quantity among a product's valid offers (DOMAIN.md "Catalogue and offers").

use uuid::Uuid;

use super::repo::OfferRow;
use crate::base::domain::milli_to_qty;

/// The price chosen for one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// Offer that gives the price.
    pub offer_id: Uuid,
    /// Its vendor.
    pub vendor_id: Uuid,
    /// Price per base unit.
    pub unit_price_paisa: i64,
    /// Why this price, for people ("bulk tier from 10").
    pub reason: String,
}

/// Why no price could be found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoQuote {
    /// No vendor offers the product right now.
    #[error("no vendor offers this product right now")]
    NoOffer,
    /// Offers exist but none holds enough stock.
    #[error("no vendor holds enough stock for this quantity")]
    InsufficientStock,
}

impl NoQuote {
    /// Reason code stored on the line.
    pub fn code(self) -> &'static str {
        match self {
            NoQuote::NoOffer => "no_offer",
            NoQuote::InsufficientStock => "insufficient_stock",
        }
    }
}

/// The price of `offer` for `qty_milli` base milli-units, with the tier that applies.
pub fn price_for(offer: &OfferRow, qty_milli: i64) -> (i64, Option<i64>) {
    offer
        .tiers
        .0
        .iter()
        .filter(|t| t.min_qty_milli <= qty_milli)
        .max_by_key(|t| t.min_qty_milli)
        .map_or((offer.price_paisa, None), |t| {
            (t.price_paisa.min(offer.price_paisa), Some(t.min_qty_milli))
        })
}

/// Among offers with enough stock, the lowest price for the quantity; ties prefer
/// promotional offers, then the larger stock, then the smaller offer id (deterministic).
pub fn best_quote<'a>(
    offers: impl IntoIterator<Item = &'a OfferRow>,
    qty_milli: i64,
) -> Result<Quote, NoQuote> {
    let mut offers = offers.into_iter().peekable();
    if offers.peek().is_none() {
        return Err(NoQuote::NoOffer);
    }
    let best = offers
        .filter(|o| o.stock_milli >= qty_milli)
        .map(|o| (o, price_for(o, qty_milli)))
        .min_by(|(a, (pa, _)), (b, (pb, _))| {
            pa.cmp(pb)
                .then(b.promotional.cmp(&a.promotional))
                .then(b.stock_milli.cmp(&a.stock_milli))
                .then(a.id.cmp(&b.id))
        })
        .ok_or(NoQuote::InsufficientStock)?;
    let (offer, (price, tier)) = best;
    let mut reason = match tier {
        Some(min) => format!("bulk tier from {}", milli_to_qty(min)),
        None => "base price".to_string(),
    };
    if offer.promotional {
        reason.push_str(", promotional");
    }
    Ok(Quote {
        offer_id: offer.id,
        vendor_id: offer.vendor_id,
        unit_price_paisa: price,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::repo::Tier;
    use sqlx::types::Json;

    fn offer(price: i64, tiers: &[(i64, i64)], promo: bool, stock: i64) -> OfferRow {
        OfferRow {
            id: Uuid::now_v7(),
            vendor_id: Uuid::now_v7(),
            product_id: Uuid::nil(),
            price_paisa: price,
            tiers: Json(
                tiers
                    .iter()
                    .map(|&(m, p)| Tier {
                        min_qty_milli: m,
                        price_paisa: p,
                    })
                    .collect(),
            ),
            promotional: promo,
            stock_milli: stock,
            valid_from_ms: 0,
            valid_to_ms: None,
        }
    }

    #[test]
    fn picks_lowest_tier_price_for_quantity() {
        let a = offer(10_000, &[(10_000, 9_000)], false, 1_000_000);
        let b = offer(9_500, &[], false, 1_000_000);
        let small = best_quote(&[a.clone(), b.clone()], 5_000).unwrap();
        assert_eq!((small.offer_id, small.unit_price_paisa), (b.id, 9_500));
        assert_eq!(small.reason, "base price");
        let bulk = best_quote(&[a.clone(), b], 10_000).unwrap();
        assert_eq!((bulk.offer_id, bulk.unit_price_paisa), (a.id, 9_000));
        assert_eq!(bulk.reason, "bulk tier from 10");
    }

    #[test]
    fn ties_prefer_promotional_and_stock_matters() {
        let a = offer(9_000, &[], false, 1_000_000);
        let b = offer(9_000, &[], true, 1_000_000);
        let q = best_quote(&[a, b.clone()], 1_000).unwrap();
        assert_eq!(q.offer_id, b.id);
        assert!(q.reason.contains("promotional"));
        let low = offer(1, &[], false, 500);
        assert_eq!(best_quote(&[low], 1_000), Err(NoQuote::InsufficientStock));
        assert_eq!(best_quote(&[], 1_000), Err(NoQuote::NoOffer));
    }
}
