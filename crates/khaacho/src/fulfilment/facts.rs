//! The facts of one routing decision, read from the database.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::Timelike;
use khaacho_vendors::{GeoPoint, Line, Offer, Retailer, Vendor};
use uuid::Uuid;

use super::repo::{self, Load};
use crate::base::db::{Db, Reader};
use crate::base::time::nepal;
use crate::catalog::pricing::price_for;
use crate::catalog::repo::{OfferRow, valid_offers_any_vendor};
use crate::orders::model::{LineRow, OrderRow};
use crate::parties::repo::{self as parties, Retailer as RetailerRow, Vendor as VendorRow};

/// 30 days in milliseconds: the window of the volume-share rule. Volumes are kept per UTC
/// day, so the window starts at the beginning of the day 30 days ago.
pub const VOLUME_WINDOW_MS: i64 = 30 * khaacho_credit::DAY_MS;

/// How long a process reuses the 30-day volumes it read (the share rule looks at a month;
/// a minute-old figure decides the same, and the sum is not read for every batch).
const VOLUME_TTL_MS: i64 = 60_000;

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

/// What routing reads once for a batch of orders: their retailers, every valid offer for
/// their products, the vendors behind those offers with their open workload, and the 30-day
/// volumes. [`Market::facts`] cuts one order's [`Facts`] out of it; [`Market::took`] counts
/// a part given to a vendor, so the next order of the batch sees its workload.
#[derive(Debug, Default)]
pub struct Market {
    retailers: HashMap<Uuid, RetailerRow>,
    offers: Vec<OfferRow>,
    vendors: HashMap<Uuid, VendorRow>,
    workload: HashMap<Uuid, Load>,
    volumes: HashMap<(Uuid, Uuid), i64>,
    now_ms: i64,
}

impl Market {
    /// Reads the market for `orders` (each with its lines) at `now_ms`, through `r` (the
    /// caller's transaction when it holds one).
    pub async fn load(
        r: &mut Reader<'_>,
        volumes: &VolumeCache,
        orders: &[(&OrderRow, &[LineRow])],
        now_ms: i64,
    ) -> Result<Self, sqlx::Error> {
        let retailer_ids: Vec<Uuid> = orders.iter().map(|(o, _)| o.retailer_id).collect();
        let mut products: Vec<Uuid> = orders
            .iter()
            .flat_map(|(_, lines)| lines.iter().filter_map(|l| l.product_id))
            .collect();
        products.sort_unstable();
        products.dedup();
        let retailers = parties::find_retailers(r, &retailer_ids)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let offers = valid_offers_any_vendor(r, &products, now_ms).await?;
        let mut vendor_ids: Vec<Uuid> = offers.iter().map(|o| o.vendor_id).collect();
        vendor_ids.sort_unstable();
        vendor_ids.dedup();
        let (vendors, workload) = repo::vendors_with_loads(r, &vendor_ids).await?;
        let vendors = vendors.into_iter().map(|v| (v.id, v)).collect();
        let volumes = volumes.get(r, &products, now_ms).await?;
        Ok(Self {
            retailers,
            offers,
            vendors,
            workload,
            volumes,
            now_ms,
        })
    }

    /// A part was offered to `vendor` (new, or reassigned to it) since the market was read.
    pub fn took(&mut self, vendor: Uuid) {
        let load = self.workload.entry(vendor).or_default();
        load.open += 1;
        load.awaiting += 1;
    }

    /// The facts of routing `order` with its `lines`; `None` when the retailer is gone.
    pub fn facts(&self, order: &OrderRow, lines: &[LineRow]) -> Option<Facts> {
        let r = self.retailers.get(&order.retailer_id)?;
        let retailer = Retailer {
            district: r.district.clone(),
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
        let offers: Vec<&OfferRow> = self
            .offers
            .iter()
            .filter(|o| wanted.iter().any(|w| w.1 == o.product_id))
            .collect();
        let mut vendor_ids: Vec<Uuid> = offers.iter().map(|o| o.vendor_id).collect();
        vendor_ids.sort_unstable();
        vendor_ids.dedup();
        let rows: HashMap<Uuid, VendorRow> = vendor_ids
            .iter()
            .filter_map(|id| Some((*id, self.vendors.get(id)?.clone())))
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
                volume_30d_milli: self
                    .volumes
                    .iter()
                    .filter(|((_, p), _)| *p == product_id)
                    .map(|(_, n)| *n)
                    .sum(),
            })
            .collect();
        let minute = minute_of_day(self.now_ms);
        let load = |vendor: Uuid| self.workload.get(&vendor).copied().unwrap_or_default();
        let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        let vendors = vendor_ids
            .iter()
            .filter_map(|id| rows.get(id))
            .map(|v| Vendor {
                id: v.id,
                active: v.active,
                districts: v.districts.0.clone(),
                location: point(v.lat, v.lng),
                open_now: open_at(v.opens_at_min, v.closes_at_min, minute),
                active_orders: count(load(v.id).open),
                capacity: u32::try_from(v.max_active).unwrap_or(0),
                awaiting_orders: count(load(v.id).awaiting),
                awaiting_capacity: u32::try_from(v.max_awaiting).unwrap_or(0),
                reliability: u8::try_from(v.score.clamp(0, 100)).ok(),
                offers: offers
                    .iter()
                    .filter(|o| o.vendor_id == v.id)
                    .map(|o| Offer {
                        product_id: o.product_id,
                        price_paisa: price_for(o, qty_of(o.product_id)).0,
                        stock_milli: o.stock_milli,
                        volume_30d_milli: self
                            .volumes
                            .get(&(v.id, o.product_id))
                            .copied()
                            .unwrap_or(0),
                    })
                    .collect(),
            })
            .collect();
        Some(Facts {
            retailer,
            lines,
            vendors,
            rows,
        })
    }
}

/// Reads the facts for routing `order` (with its `lines`) at `now_ms`. `None` when the
/// retailer is gone.
pub async fn load(
    db: &Db,
    volumes: &VolumeCache,
    order: &OrderRow,
    lines: &[LineRow],
    now_ms: i64,
) -> Result<Option<Facts>, sqlx::Error> {
    let market = Market::load(&mut Reader::Pool(db), volumes, &[(order, lines)], now_ms).await?;
    Ok(market.facts(order, lines))
}

/// One product's cached volumes: when read (epoch ms) and `(vendor, quantity)` per vendor.
type CachedVolumes = (i64, Vec<(Uuid, i64)>);

/// The 30-day volume per (vendor, product) — what was routed to each vendor and not
/// cancelled — kept per process for [`VOLUME_TTL_MS`].
#[derive(Debug, Default)]
pub struct VolumeCache {
    by_product: Mutex<HashMap<Uuid, CachedVolumes>>,
}

impl VolumeCache {
    /// The volumes of `products` at `now_ms`, reading those not fresh in the cache.
    pub async fn get(
        &self,
        r: &mut Reader<'_>,
        products: &[Uuid],
        now_ms: i64,
    ) -> Result<HashMap<(Uuid, Uuid), i64>, sqlx::Error> {
        let stale: Vec<Uuid> = {
            let cached = self.by_product.lock().unwrap_or_else(|e| e.into_inner());
            products
                .iter()
                .filter(|p| {
                    cached
                        .get(p)
                        .is_none_or(|(at, _)| now_ms - at > VOLUME_TTL_MS)
                })
                .copied()
                .collect()
        };
        if !stale.is_empty() {
            let from_day = repo::volume_day(now_ms - VOLUME_WINDOW_MS);
            let read = repo::volumes(r, &stale, from_day).await?;
            let mut cached = self.by_product.lock().unwrap_or_else(|e| e.into_inner());
            for p in &stale {
                cached.insert(*p, (now_ms, Vec::new()));
            }
            for (vendor, product, qty) in read {
                if let Some((_, list)) = cached.get_mut(&product) {
                    list.push((vendor, qty));
                }
            }
        }
        let cached = self.by_product.lock().unwrap_or_else(|e| e.into_inner());
        Ok(products
            .iter()
            .filter_map(|p| Some((p, cached.get(p)?)))
            .flat_map(|(p, (_, list))| list.iter().map(move |(v, n)| ((*v, *p), *n)))
            .collect())
    }
}

fn point(lat: Option<f64>, lng: Option<f64>) -> Option<GeoPoint> {
    Some(GeoPoint {
        lat: lat?,
        lng: lng?,
    })
}

/// Average price for the quantity across the active vendors' valid offers.
fn market_price(
    offers: &[&OfferRow],
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
