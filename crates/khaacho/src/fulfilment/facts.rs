//! The facts of one routing decision, read from the database.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::Timelike;
use khaacho_vendors::{GeoPoint, Line, Offer, Retailer, Vendor};
use sqlx::types::Json;
use uuid::Uuid;

use super::repo::{self, Load};
use crate::base::db::{Db, Reader, TxInner};
use crate::base::time::nepal;
use crate::catalog::pricing::price_for;
use crate::catalog::repo::{OfferRow, Tier, push_valid_offers_any_vendor, valid_offers_any_vendor};
use crate::orders::model::{LineRow, OrderRow};
use crate::parties::repo::{
    self as parties, Retailer as RetailerRow, VENDOR_COLS, Vendor as VendorRow,
};

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
        let products: Vec<Uuid> = orders
            .iter()
            .flat_map(|(_, lines)| lines.iter().filter_map(|l| l.product_id))
            .collect();
        Self::load_for(r, volumes, &retailer_ids, &products, now_ms).await
    }

    /// Reads the market of the shops `retailer_ids` for `products` at `now_ms`: what
    /// [`load`](Self::load) reads for orders with those shops and products (the validation
    /// step reads it before the lines name their products, and prices from it).
    pub async fn load_for(
        r: &mut Reader<'_>,
        volumes: &VolumeCache,
        retailer_ids: &[Uuid],
        products: &[Uuid],
        now_ms: i64,
    ) -> Result<Self, sqlx::Error> {
        let mut products = products.to_vec();
        products.sort_unstable();
        products.dedup();
        if let Reader::Tx(tx) = r
            && let TxInner::Pg(c) = tx.inner_mut()
        {
            return Self::load_pg(c, volumes, retailer_ids, &products, now_ms).await;
        }
        let retailers = parties::find_retailers(r, retailer_ids)
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

    /// [`load`](Self::load) in a PostgreSQL transaction: one statement where there were four
    /// (the shops, the products' valid offers, their vendors with their loads, the volumes
    /// not fresh in the cache). The offers are a CTE the vendors' subquery takes its keys
    /// from; each other subquery is built by the function that builds it as a statement of
    /// its own. The few shops, vendors and volumes come as one JSON object; the offers, a
    /// few hundred rows a batch, as an array per column (binary, decoded without parsing):
    /// as JSON objects they were most of the statement's time, built by PostgreSQL and
    /// parsed again here (`bench/README.md`, "The offers as columns; no JIT").
    async fn load_pg(
        c: &mut sqlx::PgConnection,
        volumes: &VolumeCache,
        retailer_ids: &[Uuid],
        products: &[Uuid],
        now_ms: i64,
    ) -> Result<Self, sqlx::Error> {
        #[derive(serde::Deserialize)]
        struct VendorWithLoad {
            #[serde(flatten)]
            vendor: VendorRow,
            open_parts: Option<i64>,
            awaiting_parts: Option<i64>,
        }
        #[derive(serde::Deserialize)]
        struct Rows {
            retailers: Vec<RetailerRow>,
            vendors: Vec<VendorWithLoad>,
            volumes: Vec<(Uuid, Uuid, i64)>,
        }
        /// The rest, then the offers: an array per column of [`OfferRow`], in its order.
        type Columns = (
            Json<Rows>,
            Vec<Uuid>,
            Vec<Uuid>,
            Vec<Uuid>,
            Vec<i64>,
            Vec<Json<Vec<Tier>>>,
            Vec<bool>,
            Vec<i64>,
            Vec<i64>,
            Vec<Option<i64>>,
        );
        let mut shops = retailer_ids.to_vec();
        shops.sort_unstable();
        shops.dedup();
        let stale = volumes.stale(products, now_ms);
        let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new("WITH offered AS (");
        push_valid_offers_any_vendor(&mut qb, products, now_ms);
        qb.push(
            ") SELECT json_build_object('retailers', (SELECT COALESCE(json_agg(x), '[]') FROM (",
        );
        parties::push_retailers(&mut qb, &shops);
        qb.push(format_args!(
            ") x), 'vendors', (SELECT COALESCE(json_agg(x), '[]') \
             FROM (SELECT {VENDOR_COLS}, w.open_parts, w.awaiting_parts FROM vendors \
             LEFT JOIN vendor_workloads w ON w.vendor_id = vendors.id \
             WHERE vendors.id = ANY(ARRAY(SELECT DISTINCT vendor_id FROM offered))) x), 'volumes', "
        ));
        if stale.is_empty() {
            qb.push("'[]'::json");
        } else {
            qb.push("(SELECT COALESCE(json_agg(json_build_array(x.vendor_id, x.product_id, x.qty_milli)), '[]') FROM (");
            repo::push_volumes(&mut qb, &stale, repo::volume_day(now_ms - VOLUME_WINDOW_MS));
            qb.push(") x)");
        }
        qb.push(
            "), a.* FROM (SELECT COALESCE(array_agg(id), '{}'), COALESCE(array_agg(vendor_id), '{}'), \
             COALESCE(array_agg(product_id), '{}'), COALESCE(array_agg(price_paisa), '{}'), \
             COALESCE(array_agg(tiers), '{}'), COALESCE(array_agg(promotional), '{}'), \
             COALESCE(array_agg(stock_milli), '{}'), COALESCE(array_agg(valid_from_ms), '{}'), \
             COALESCE(array_agg(valid_to_ms), '{}') FROM offered) a",
        );
        let (Json(rows), ids, vendor_ids, product_ids, prices, tiers, promos, stocks, froms, tos): Columns =
            qb.build_query_as().fetch_one(&mut *c).await?;
        // One offer per index; every array aggregates the same rows, so they are of one length.
        let mut cols = (
            vendor_ids.into_iter(),
            product_ids.into_iter(),
            prices.into_iter(),
            tiers.into_iter(),
            promos.into_iter(),
            stocks.into_iter(),
            froms.into_iter(),
            tos.into_iter(),
        );
        let mut offers: Vec<OfferRow> = ids
            .into_iter()
            .map_while(|id| {
                Some(OfferRow {
                    id,
                    vendor_id: cols.0.next()?,
                    product_id: cols.1.next()?,
                    price_paisa: cols.2.next()?,
                    tiers: cols.3.next()?,
                    promotional: cols.4.next()?,
                    stock_milli: cols.5.next()?,
                    valid_from_ms: cols.6.next()?,
                    valid_to_ms: cols.7.next()?,
                })
            })
            .collect();
        // In the order the SQLite path reads them (routing's ties see the same market).
        offers.sort_unstable_by_key(|o| (o.vendor_id, o.product_id));
        volumes.fill(&stale, rows.volumes, now_ms);
        let workload = rows
            .vendors
            .iter()
            .filter_map(|v| {
                let load = Load {
                    open: v.open_parts?,
                    awaiting: v.awaiting_parts?,
                };
                Some((v.vendor.id, load))
            })
            .collect();
        Ok(Self {
            retailers: rows.retailers.into_iter().map(|r| (r.id, r)).collect(),
            offers,
            vendors: rows
                .vendors
                .into_iter()
                .map(|v| (v.vendor.id, v.vendor))
                .collect(),
            workload,
            volumes: volumes.cached(products),
            now_ms,
        })
    }

    /// The offers of active vendors (every offer read is valid at the market's time): what
    /// the validation step prices with.
    pub fn active_offers(&self) -> impl Iterator<Item = &OfferRow> {
        self.offers
            .iter()
            .filter(|o| self.vendors.get(&o.vendor_id).is_some_and(|v| v.active))
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
        let stale = self.stale(products, now_ms);
        if !stale.is_empty() {
            let from_day = repo::volume_day(now_ms - VOLUME_WINDOW_MS);
            let read = repo::volumes(r, &stale, from_day).await?;
            self.fill(&stale, read, now_ms);
        }
        Ok(self.cached(products))
    }

    /// Those of `products` whose volumes are not fresh in the cache at `now_ms`.
    fn stale(&self, products: &[Uuid], now_ms: i64) -> Vec<Uuid> {
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
    }

    /// Caches the volumes `read` of the `stale` products, `(vendor, product, quantity)`, as
    /// of `now_ms` (a product with none read has none).
    fn fill(&self, stale: &[Uuid], read: Vec<(Uuid, Uuid, i64)>, now_ms: i64) {
        let mut cached = self.by_product.lock().unwrap_or_else(|e| e.into_inner());
        for p in stale {
            cached.insert(*p, (now_ms, Vec::new()));
        }
        for (vendor, product, qty) in read {
            if let Some((_, list)) = cached.get_mut(&product) {
                list.push((vendor, qty));
            }
        }
    }

    /// The cached volumes of `products`, by `(vendor, product)`.
    fn cached(&self, products: &[Uuid]) -> HashMap<(Uuid, Uuid), i64> {
        let cached = self.by_product.lock().unwrap_or_else(|e| e.into_inner());
        products
            .iter()
            .filter_map(|p| Some((p, cached.get(p)?)))
            .flat_map(|(p, (_, list))| list.iter().map(move |(v, n)| ((*v, *p), *n)))
            .collect()
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
        assert!(open_at(0, 1440, 1439), "00:00–24:00 at 23:59");
        assert!(!open_at(0, 1439, 1439), "00:00–23:59 closes at 23:59");
    }

    #[test]
    fn nepal_minutes() {
        // 2026-12-02T00:00:00Z is 05:45 in Kathmandu.
        assert_eq!(minute_of_day(1_796_169_600_000), 5 * 60 + 45);
    }
}
