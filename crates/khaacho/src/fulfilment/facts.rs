//! The facts of one routing decision, read from the database.

use std::collections::HashMap;

use chrono::Timelike;
use khaacho_vendors::{GeoPoint, Line, Offer, Retailer, Vendor};
use uuid::Uuid;

use crate::base::db::{Db, push_ids};
use crate::base::time::nepal;
use crate::catalog::pricing::price_for;
use crate::catalog::repo::{OfferRow, valid_offers_any_vendor};
use crate::orders::model::{LineRow, OrderRow};
use crate::parties::repo::{self as parties, Vendor as VendorRow};
use crate::with_replica;

/// 30 days in milliseconds: the window of the volume-share rule.
const VOLUME_WINDOW_MS: i64 = 30 * khaacho_credit::DAY_MS;

/// Everything [`khaacho_vendors::route`] needs for one order, plus the vendor rows (names).
#[derive(Debug)]
pub struct Facts {
    /// Where the order goes.
    pub retailer: Retailer,
    /// Its lines that name a product.
    pub lines: Vec<Line>,
    /// Vendors with a valid offer for any of those products.
    pub vendors: Vec<Vendor>,
    /// Their rows, by id.
    pub rows: HashMap<Uuid, VendorRow>,
}

/// Reads the facts for routing `order` (with its `lines`) at `now_ms`. `None` when the
/// retailer is gone.
pub async fn load(
    db: &Db,
    order: &OrderRow,
    lines: &[LineRow],
    now_ms: i64,
) -> Result<Option<Facts>, sqlx::Error> {
    let Some(r) = parties::find_retailer(db, order.retailer_id).await? else {
        return Ok(None);
    };
    let retailer = Retailer {
        district: r.district,
        location: point(r.lat, r.lng),
    };
    // The lines that resolved to a product, in base units.
    let wanted: Vec<(u32, Uuid, i64)> = lines
        .iter()
        .filter_map(|l| {
            let product = l.product_id?;
            let qty = l.base_qty_milli?;
            Some((u32::try_from(l.line_no).ok()?, product, qty))
        })
        .collect();
    let mut products: Vec<Uuid> = wanted.iter().map(|w| w.1).collect();
    products.sort_unstable();
    products.dedup();
    let offers = valid_offers_any_vendor(db, &products, now_ms).await?;
    let volumes = volumes(db, order, &products, now_ms - VOLUME_WINDOW_MS).await?;
    let mut vendor_ids: Vec<Uuid> = offers.iter().map(|o| o.vendor_id).collect();
    vendor_ids.sort_unstable();
    vendor_ids.dedup();
    let rows: HashMap<Uuid, VendorRow> = parties::find_vendors(db, &vendor_ids)
        .await?
        .into_iter()
        .map(|v| (v.id, v))
        .collect();
    // The quantity each product is wanted in (the first line's, if a product repeats):
    // tiered prices depend on it.
    let qty_of = |product: Uuid| wanted.iter().find(|w| w.1 == product).map_or(0, |w| w.2);
    let lines = wanted
        .iter()
        .map(|&(line_no, product_id, qty_milli)| Line {
            line_no,
            product_id,
            qty_milli,
            market_price_paisa: market_price(&offers, &rows, product_id, qty_milli),
            volume_30d_milli: volumes
                .iter()
                .filter(|((_, p), _)| *p == product_id)
                .map(|(_, n)| *n)
                .sum(),
        })
        .collect();
    let minute = minute_of_day(now_ms);
    let vendors = vendor_ids
        .iter()
        .filter_map(|id| rows.get(id))
        .map(|v| Vendor {
            id: v.id,
            active: v.active,
            districts: v.districts.0.clone(),
            location: point(v.lat, v.lng),
            open_now: open_at(v.opens_at_min, v.closes_at_min, minute),
            active_orders: 0,
            capacity: u32::try_from(v.max_active).unwrap_or(0),
            reliability: u8::try_from(v.score.clamp(0, 100)).ok(),
            offers: offers
                .iter()
                .filter(|o| o.vendor_id == v.id)
                .map(|o| Offer {
                    product_id: o.product_id,
                    price_paisa: price_for(o, qty_of(o.product_id)).0,
                    stock_milli: o.stock_milli,
                    volume_30d_milli: volumes.get(&(v.id, o.product_id)).copied().unwrap_or(0),
                })
                .collect(),
        })
        .collect();
    Ok(Some(Facts {
        retailer,
        lines,
        vendors,
        rows,
    }))
}

fn point(lat: Option<f64>, lng: Option<f64>) -> Option<GeoPoint> {
    Some(GeoPoint {
        lat: lat?,
        lng: lng?,
    })
}

/// Average price for the quantity across the active vendors' valid offers.
fn market_price(
    offers: &[OfferRow],
    vendors: &HashMap<Uuid, VendorRow>,
    product: Uuid,
    qty_milli: i64,
) -> Option<i64> {
    let prices: Vec<i64> = offers
        .iter()
        .filter(|o| o.product_id == product && vendors.get(&o.vendor_id).is_some_and(|v| v.active))
        .map(|o| price_for(o, qty_milli).0)
        .collect();
    khaacho_vendors::mean_paisa(&prices)
}

/// What each vendor sold of each product since `from_ms`: priced lines of live orders other
/// than `order` (the vendor whose offer priced the line), base milli-units.
async fn volumes(
    db: &Db,
    order: &OrderRow,
    products: &[Uuid],
    from_ms: i64,
) -> Result<HashMap<(Uuid, Uuid), i64>, sqlx::Error> {
    if products.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, Uuid, i64)> = with_replica!(db, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT l.vendor_id, l.product_id, CAST(SUM(l.base_qty_milli) AS BIGINT) FROM order_lines l \
             JOIN orders o ON o.id = l.order_id AND o.created_at_ms = l.order_created_at_ms \
             WHERE l.order_created_at_ms >= ");
        qb.push_bind(from_ms).push(" AND l.order_id <> ").push_bind(order.id);
        qb.push(" AND l.vendor_id IS NOT NULL AND o.status NOT IN ('received', 'rejected', 'cancelled', 'failed') AND");
        push_ids(&mut qb, "l.product_id", products);
        qb.push(" GROUP BY l.vendor_id, l.product_id");
        qb.build_query_as().fetch_all(c).await
    })?;
    Ok(rows.into_iter().map(|(v, p, n)| ((v, p), n)).collect())
}

/// Minutes after midnight, Nepal time.
fn minute_of_day(ms: i64) -> i32 {
    let t = chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&nepal());
    (t.hour() * 60 + t.minute()) as i32
}

/// Open at `minute` between `opens` and `closes` (closing after midnight when `closes` is
/// earlier than `opens`; open all day when they are equal).
fn open_at(opens: i32, closes: i32, minute: i32) -> bool {
    match opens.cmp(&closes) {
        std::cmp::Ordering::Less => opens <= minute && minute < closes,
        std::cmp::Ordering::Greater => minute >= opens || minute < closes,
        std::cmp::Ordering::Equal => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_hours_cover_overnight_and_all_day() {
        assert!(open_at(540, 1080, 540));
        assert!(!open_at(540, 1080, 1080));
        assert!(!open_at(540, 1080, 539));
        assert!(open_at(1320, 360, 1400), "22:00–06:00 at 23:20");
        assert!(open_at(1320, 360, 100));
        assert!(!open_at(1320, 360, 600));
        assert!(open_at(0, 0, 777));
    }

    #[test]
    fn nepal_minutes() {
        // 2026-12-02T00:00:00Z is 05:45 in Kathmandu.
        assert_eq!(minute_of_day(1_796_169_600_000), 5 * 60 + 45);
    }
}
