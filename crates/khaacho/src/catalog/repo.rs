//! SQL of products, offers and price history.

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::base::db::{Db, KeyFilter, Reader, Tx, TxInner, push_rows_by};
use crate::base::time::now_ms;
use crate::{with_latest, with_reader, with_replica, with_tx};

/// A product row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ProductRow {
    /// Id.
    pub id: Uuid,
    /// Stock-keeping unit, unique.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Names retailers use.
    pub aliases: Json<Vec<String>>,
    /// Base unit.
    pub unit: String,
    /// Base milli-units per outer pack.
    pub pack_size_milli: Option<i64>,
    /// Reference price per base unit.
    pub list_price_paisa: Option<i64>,
    /// Category.
    pub category: String,
    /// Smallest order in base milli-units.
    pub min_order_milli: Option<i64>,
    /// Largest order in base milli-units.
    pub max_order_milli: Option<i64>,
    /// Whether it can be ordered.
    pub active: bool,
}

const PRODUCT_COLS: &str = "id, sku, name, aliases, unit, pack_size_milli, list_price_paisa, category, \
     min_order_milli, max_order_milli, active";

/// A product to create or update (keyed by SKU).
#[derive(Clone, Debug)]
pub struct ProductInput {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Aliases.
    pub aliases: Vec<String>,
    /// Base unit name.
    pub unit: String,
    /// Pack size in base milli-units.
    pub pack_size_milli: Option<i64>,
    /// Reference price.
    pub list_price_paisa: Option<i64>,
    /// Category.
    pub category: String,
}

/// Creates a product or updates the one with the same SKU; returns its id.
pub async fn upsert_product(tx: &mut Tx, p: &ProductInput) -> Result<Uuid, sqlx::Error> {
    let now = now_ms();
    with_tx!(tx, c => sqlx::query_scalar(
        "INSERT INTO products (id, sku, name, aliases, unit, pack_size_milli, list_price_paisa, category, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (sku) DO UPDATE SET name = excluded.name, aliases = excluded.aliases, unit = excluded.unit, \
         pack_size_milli = excluded.pack_size_milli, list_price_paisa = excluded.list_price_paisa, \
         category = excluded.category, updated_at_ms = excluded.updated_at_ms RETURNING id")
        .bind(Uuid::now_v7())
        .bind(&p.sku)
        .bind(&p.name)
        .bind(Json(&p.aliases))
        .bind(&p.unit)
        .bind(p.pack_size_milli)
        .bind(p.list_price_paisa)
        .bind(&p.category)
        .bind(now)
        .fetch_one(c)
        .await)
}

/// Products ordered by SKU, after `after_sku`.
pub async fn list_products(
    db: &Db,
    after_sku: Option<&str>,
    limit: i64,
) -> Result<Vec<ProductRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {PRODUCT_COLS} FROM products WHERE ($1 IS NULL OR sku > $1) ORDER BY sku LIMIT $2"
    );
    with_replica!(db, c => sqlx::query_as::<_, ProductRow>(sqlx::AssertSqlSafe(sql))
        .bind(after_sku)
        .bind(limit)
        .fetch_all(c)
        .await)
}

/// One product by SKU.
pub async fn find_by_sku(db: &Db, sku: &str) -> Result<Option<ProductRow>, sqlx::Error> {
    let sql = format!("SELECT {PRODUCT_COLS} FROM products WHERE sku = $1");
    with_latest!(db, c => sqlx::query_as::<_, ProductRow>(sqlx::AssertSqlSafe(sql)).bind(sku).fetch_optional(c).await)
}

/// Products by SKU inside a transaction (one query).
pub async fn find_by_skus_tx(tx: &mut Tx, skus: &[String]) -> Result<Vec<ProductRow>, sqlx::Error> {
    if skus.is_empty() {
        return Ok(Vec::new());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(format!("SELECT {PRODUCT_COLS} FROM products WHERE sku IN ("));
        let mut list = qb.separated(", ");
        for sku in skus {
            list.push_bind(sku);
        }
        qb.push(")");
        qb.build_query_as::<ProductRow>().fetch_all(c).await
    })
}

/// A quantity tier: from `min_qty_milli` base milli-units on, the price is `price_paisa`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Tier {
    /// Threshold in base milli-units.
    pub min_qty_milli: i64,
    /// Price per base unit from that threshold.
    pub price_paisa: i64,
}

/// The columns of [`OfferRow`], on `offers o`.
const OFFER_COLS: &str = "o.id, o.vendor_id, o.product_id, o.price_paisa, o.tiers, o.promotional, o.stock_milli, \
     o.valid_from_ms, o.valid_to_ms";

/// An offer row joined with what pricing needs.
#[derive(Clone, Debug, Deserialize, sqlx::FromRow)]
pub struct OfferRow {
    /// Offer id.
    pub id: Uuid,
    /// Vendor.
    pub vendor_id: Uuid,
    /// Product.
    pub product_id: Uuid,
    /// Base price per base unit.
    pub price_paisa: i64,
    /// Quantity tiers.
    pub tiers: Json<Vec<Tier>>,
    /// Promotional flag (wins ties).
    pub promotional: bool,
    /// Stock in base milli-units.
    pub stock_milli: i64,
    /// Valid from.
    pub valid_from_ms: i64,
    /// Valid until.
    pub valid_to_ms: Option<i64>,
}

/// Offers of active vendors for the given products that are valid at `at_ms` (one query).
pub async fn valid_offers_tx(
    tx: &mut Tx,
    product_ids: &[Uuid],
    at_ms: i64,
) -> Result<Vec<OfferRow>, sqlx::Error> {
    if product_ids.is_empty() {
        return Ok(Vec::new());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(format!(
            "SELECT {OFFER_COLS} FROM offers o JOIN vendors v ON v.id = o.vendor_id WHERE v.active = "));
        qb.push_bind(true).push(" AND o.valid_from_ms <= ").push_bind(at_ms);
        qb.push(" AND (o.valid_to_ms IS NULL OR o.valid_to_ms > ").push_bind(at_ms).push(") AND o.product_id IN (");
        let mut list = qb.separated(", ");
        for id in product_ids {
            list.push_bind(*id);
        }
        qb.push(")");
        qb.build_query_as::<OfferRow>().fetch_all(c).await
    })
}

/// Offers of active vendors for the given products that are valid at `at_ms` — what
/// validation prices with ([`valid_offers_tx`]) — read where a moment-old copy will do (the
/// prices a WhatsApp draft shows before the order exists).
pub async fn valid_offers(
    db: &Db,
    product_ids: &[Uuid],
    at_ms: i64,
) -> Result<Vec<OfferRow>, sqlx::Error> {
    if product_ids.is_empty() {
        return Ok(Vec::new());
    }
    with_replica!(db, c => {
        let mut qb = sqlx::QueryBuilder::new(format!("SELECT {OFFER_COLS} FROM"));
        push_rows_by(&mut qb, "offers", "o", "product_id", product_ids, None);
        qb.push(" JOIN vendors v ON v.id = o.vendor_id WHERE v.active = ");
        qb.push_bind(true).push(" AND o.valid_from_ms <= ").push_bind(at_ms);
        qb.push(" AND (o.valid_to_ms IS NULL OR o.valid_to_ms > ").push_bind(at_ms).push(")");
        qb.build_query_as::<OfferRow>().fetch_all(c).await
    })
}

/// Offers of any vendor (active or not) for the given products that are valid at `at_ms`,
/// read where a moment-old copy will do (routing decisions, previews).
pub async fn valid_offers_any_vendor(
    r: &mut Reader<'_>,
    product_ids: &[Uuid],
    at_ms: i64,
) -> Result<Vec<OfferRow>, sqlx::Error> {
    if product_ids.is_empty() {
        return Ok(Vec::new());
    }
    with_reader!(r, c => {
        let mut qb = sqlx::QueryBuilder::new("");
        push_valid_offers_any_vendor(&mut qb, product_ids, at_ms);
        qb.push(" ORDER BY o.vendor_id, o.product_id");
        qb.build_query_as::<OfferRow>().fetch_all(c).await
    })
}

/// The query of [`valid_offers_any_vendor`], unordered.
pub fn push_valid_offers_any_vendor<DB: KeyFilter>(
    qb: &mut sqlx::QueryBuilder<DB>,
    product_ids: &[Uuid],
    at_ms: i64,
) where
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    qb.push(format_args!("SELECT {OFFER_COLS} FROM"));
    push_rows_by(qb, "offers", "o", "product_id", product_ids, None);
    qb.push(" WHERE o.valid_from_ms <= ").push_bind(at_ms);
    qb.push(" AND (o.valid_to_ms IS NULL OR o.valid_to_ms > ")
        .push_bind(at_ms)
        .push(")");
}

/// An offer to create or replace (keyed by vendor and product).
#[derive(Clone, Debug)]
pub struct OfferInput {
    /// Vendor.
    pub vendor_id: Uuid,
    /// Product.
    pub product_id: Uuid,
    /// Base price per base unit.
    pub price_paisa: i64,
    /// Tiers, ascending by threshold.
    pub tiers: Vec<Tier>,
    /// Valid from.
    pub valid_from_ms: i64,
    /// Valid until.
    pub valid_to_ms: Option<i64>,
    /// Promotional.
    pub promotional: bool,
    /// Stock.
    pub stock_milli: i64,
    /// Lead time.
    pub lead_time_hours: i32,
}

/// Creates or replaces an offer and records a price-history row when the price changed.
pub async fn upsert_offer(tx: &mut Tx, o: &OfferInput) -> Result<Uuid, sqlx::Error> {
    let now = now_ms();
    let previous: Option<(Uuid, i64, Json<Vec<Tier>>)> = with_tx!(tx, c => sqlx::query_as(
        "SELECT id, price_paisa, tiers FROM offers WHERE vendor_id = $1 AND product_id = $2")
        .bind(o.vendor_id)
        .bind(o.product_id)
        .fetch_optional(c)
        .await)?;
    let id: Uuid = with_tx!(tx, c => sqlx::query_scalar(
        "INSERT INTO offers (id, vendor_id, product_id, price_paisa, tiers, valid_from_ms, valid_to_ms, promotional, \
         stock_milli, lead_time_hours, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (vendor_id, product_id) DO UPDATE SET price_paisa = excluded.price_paisa, tiers = excluded.tiers, \
         valid_from_ms = excluded.valid_from_ms, valid_to_ms = excluded.valid_to_ms, promotional = excluded.promotional, \
         stock_milli = excluded.stock_milli, lead_time_hours = excluded.lead_time_hours, updated_at_ms = excluded.updated_at_ms \
         RETURNING id")
        .bind(Uuid::now_v7())
        .bind(o.vendor_id)
        .bind(o.product_id)
        .bind(o.price_paisa)
        .bind(Json(&o.tiers))
        .bind(o.valid_from_ms)
        .bind(o.valid_to_ms)
        .bind(o.promotional)
        .bind(o.stock_milli)
        .bind(o.lead_time_hours)
        .bind(now)
        .fetch_one(c)
        .await)?;
    let changed =
        previous.is_none_or(|(_, price, tiers)| price != o.price_paisa || tiers.0 != o.tiers);
    if changed {
        with_tx!(tx, c => sqlx::query(
            "INSERT INTO price_history (id, offer_id, price_paisa, tiers, changed_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(Uuid::now_v7())
            .bind(id)
            .bind(o.price_paisa)
            .bind(Json(&o.tiers))
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(id)
}

/// Offers of one product with vendor names, for the catalogue API.
pub async fn offers_of_product(
    db: &Db,
    product_id: Uuid,
) -> Result<Vec<(OfferRow, String)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        offer: OfferRow,
        vendor_name: String,
    }
    let sql = format!(
        "SELECT {OFFER_COLS}, v.name AS vendor_name FROM offers o JOIN vendors v ON v.id = o.vendor_id \
         WHERE o.product_id = $1 ORDER BY o.price_paisa, v.name"
    );
    let rows = with_replica!(db, c => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
        .bind(product_id)
        .fetch_all(c)
        .await)?;
    Ok(rows.into_iter().map(|r| (r.offer, r.vendor_name)).collect())
}

/// Number of products (for readiness of demo data and the seed's idempotency).
pub async fn count_products(db: &Db) -> Result<i64, sqlx::Error> {
    with_replica!(db, c => sqlx::query_scalar("SELECT COUNT(*) FROM products").fetch_one(c).await)
}

/// Takes `qty_milli` from `vendor`'s stock of `product` (its offer row), only if that much is
/// there: one conditional UPDATE, so concurrent takers can never drive stock below zero.
/// Returns whether it was taken.
pub async fn take_stock(
    tx: &mut Tx,
    vendor: Uuid,
    product: Uuid,
    qty_milli: i64,
    at_ms: i64,
) -> Result<bool, sqlx::Error> {
    let n = with_tx!(tx, c => sqlx::query(
        "UPDATE offers SET stock_milli = stock_milli - $1, updated_at_ms = $2 \
         WHERE vendor_id = $3 AND product_id = $4 AND stock_milli >= $1")
        .bind(qty_milli).bind(at_ms).bind(vendor).bind(product)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Takes each `(product, qty_milli)` of `wants` (distinct products, sorted by product) from
/// `vendor`'s stock; see [`take_stocks_of`]. Returns the products it could not take.
pub async fn take_stocks(
    tx: &mut Tx,
    vendor: Uuid,
    wants: &[(Uuid, i64)],
    at_ms: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let wants: Vec<(Uuid, Uuid, i64)> = wants.iter().map(|&(p, q)| (vendor, p, q)).collect();
    Ok(take_stocks_of(tx, &wants, at_ms)
        .await?
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}

/// Takes each `(vendor, product, qty_milli)` of `wants` (distinct pairs, sorted by vendor and
/// product) from the vendor's stock, each only if that much is there; returns the pairs it
/// could not take (when any, the caller rolls the transaction back). On PostgreSQL one
/// statement for the lot: it locks the offer rows in vendor and product order first
/// (`FOR UPDATE` under the sort), as one UPDATE per row in that order would, so concurrent
/// takers of overlapping rows queue instead of deadlocking, and the stock condition is checked
/// on the row as locked. SQLite's transaction already holds the write lock: one UPDATE a row.
pub async fn take_stocks_of(
    tx: &mut Tx,
    wants: &[(Uuid, Uuid, i64)],
    at_ms: i64,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    debug_assert!(
        wants
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)),
        "distinct and sorted"
    );
    if wants.len() > 1
        && let TxInner::Pg(c) = tx.inner_mut()
    {
        let vendors: Vec<Uuid> = wants.iter().map(|w| w.0).collect();
        let products: Vec<Uuid> = wants.iter().map(|w| w.1).collect();
        let qtys: Vec<i64> = wants.iter().map(|w| w.2).collect();
        let taken: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "UPDATE offers o SET stock_milli = o.stock_milli - w.qty, updated_at_ms = $1 \
             FROM (SELECT x.vendor_id, x.product_id, v.qty FROM offers x \
                   JOIN unnest($2::uuid[], $3::uuid[], $4::bigint[]) AS v(vendor_id, product_id, qty) \
                   ON v.vendor_id = x.vendor_id AND v.product_id = x.product_id \
                   ORDER BY x.vendor_id, x.product_id FOR UPDATE OF x) w \
             WHERE o.vendor_id = w.vendor_id AND o.product_id = w.product_id AND o.stock_milli >= w.qty \
             RETURNING o.vendor_id, o.product_id",
        )
        .bind(at_ms)
        .bind(&vendors)
        .bind(&products)
        .bind(&qtys)
        .fetch_all(&mut **c)
        .await?;
        return Ok(wants
            .iter()
            .map(|&(v, p, _)| (v, p))
            .filter(|pair| !taken.contains(pair))
            .collect());
    }
    let mut short = Vec::new();
    for &(vendor, product, qty) in wants {
        if !take_stock(tx, vendor, product, qty, at_ms).await? {
            short.push((vendor, product));
        }
    }
    Ok(short)
}

/// The stock of each `(vendor, product)` of `pairs` that has an offer row, as committed (no
/// lock): what a batch of accepts judges its accepts by before it takes the stock, at its end,
/// with [`take_stocks_of`].
pub async fn stocks(
    tx: &mut Tx,
    pairs: &[(Uuid, Uuid)],
) -> Result<Vec<(Uuid, Uuid, i64)>, sqlx::Error> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    if let TxInner::Pg(c) = tx.inner_mut() {
        let vendors: Vec<Uuid> = pairs.iter().map(|p| p.0).collect();
        let products: Vec<Uuid> = pairs.iter().map(|p| p.1).collect();
        return sqlx::query_as(
            "SELECT o.vendor_id, o.product_id, o.stock_milli FROM offers o \
             JOIN unnest($1::uuid[], $2::uuid[]) AS v(vendor_id, product_id) \
             ON o.vendor_id = v.vendor_id AND o.product_id = v.product_id",
        )
        .bind(vendors)
        .bind(products)
        .fetch_all(&mut **c)
        .await;
    }
    let mut out = Vec::with_capacity(pairs.len());
    for &(vendor, product) in pairs {
        let stock: Option<i64> = with_tx!(tx, c => sqlx::query_scalar(
            "SELECT stock_milli FROM offers WHERE vendor_id = $1 AND product_id = $2")
            .bind(vendor).bind(product).fetch_optional(c).await)?;
        out.extend(stock.map(|s| (vendor, product, s)));
    }
    Ok(out)
}

/// Gives `qty_milli` back to `vendor`'s stock of `product` (a released reservation).
pub async fn return_stock(
    tx: &mut Tx,
    vendor: Uuid,
    product: Uuid,
    qty_milli: i64,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "UPDATE offers SET stock_milli = stock_milli + $1, updated_at_ms = $2 WHERE vendor_id = $3 AND product_id = $4")
        .bind(qty_milli).bind(at_ms).bind(vendor).bind(product)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}
