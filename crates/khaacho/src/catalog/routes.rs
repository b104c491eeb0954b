//! HTTP routes of the catalogue.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::repo::{self, ProductRow, Tier};
use super::service::{self, CatalogError, OfferRequest};
use crate::app::App;
use crate::base::domain::{milli_to_qty, paisa_to_npr};
use crate::base::principal::{ALL_ROLES, Principal, Role, STAFF};
use crate::base::time::fmt_time;
use crate::base::wire::error::{ApiError, Problem};
use crate::base::wire::extract::{Json, Path, Query};
use crate::base::wire::{Page, decode_cursor, encode_cursor, invalid_cursor, page_limit};

/// Routes of this feature.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list_products))
        .routes(routes!(get_product))
        .routes(routes!(get_prices))
        .routes(routes!(get_price_history))
        .routes(routes!(export_catalog))
        .routes(routes!(import_catalog))
        .routes(routes!(put_offer))
}

/// A product.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProductView {
    /// Id.
    pub id: Uuid,
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Names retailers use (English, romanized Nepali, Devanagari).
    pub aliases: Vec<String>,
    /// Base unit.
    pub unit: String,
    /// Base units per outer pack (carton, sack, crate).
    pub pack_size: Option<f64>,
    /// Reference price per base unit, NPR.
    pub list_price_npr: Option<f64>,
    /// Category.
    pub category: String,
    /// Smallest order in base units.
    pub min_order_qty: Option<f64>,
    /// Largest order in base units.
    pub max_order_qty: Option<f64>,
    /// Whether it can be ordered.
    pub active: bool,
    /// Vendors' offers (only on the single-product view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offers: Option<Vec<OfferView>>,
}

impl From<ProductRow> for ProductView {
    fn from(p: ProductRow) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            aliases: p.aliases.0,
            unit: p.unit,
            pack_size: p.pack_size_milli.map(milli_to_qty),
            list_price_npr: p.list_price_paisa.map(paisa_to_npr),
            category: p.category,
            min_order_qty: p.min_order_milli.map(milli_to_qty),
            max_order_qty: p.max_order_milli.map(milli_to_qty),
            active: p.active,
            offers: None,
        }
    }
}

/// One vendor's terms for a product.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OfferView {
    /// Offer id.
    pub id: Uuid,
    /// Vendor.
    pub vendor_id: Uuid,
    /// Vendor name.
    pub vendor_name: String,
    /// Base price per base unit, NPR.
    pub price_npr: f64,
    /// Quantity tiers.
    pub tiers: Vec<TierView>,
    /// Promotional.
    pub promotional: bool,
    /// Stock in base units.
    pub stock: f64,
    /// Valid from (Nepal time).
    pub valid_from: String,
    /// Valid until (Nepal time), if limited.
    pub valid_to: Option<String>,
}

/// A quantity tier.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TierView {
    /// From this many base units.
    pub min_qty: f64,
    /// Price per base unit, NPR.
    pub price_npr: f64,
}

impl From<Tier> for TierView {
    fn from(t: Tier) -> Self {
        Self {
            min_qty: milli_to_qty(t.min_qty_milli),
            price_npr: paisa_to_npr(t.price_paisa),
        }
    }
}

/// Paging by a text cursor (the product list, a product's price history).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TextPage {
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Products ordered by SKU.
#[utoipa::path(get, path = "/products", tag = "catalog", params(TextPage),
    responses((status = 200, body = Page<ProductView>), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn list_products(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<TextPage>,
) -> Result<axum::Json<Page<ProductView>>, ApiError> {
    principal.require(ALL_ROLES)?;
    let limit = page_limit(p.limit)?;
    // The cursor is the last SKU of the previous page; anything that is no SKU was not
    // handed out by this list.
    if p.cursor
        .as_deref()
        .is_some_and(|c| super::csv_io::validate_sku(c).is_err())
    {
        return Err(invalid_cursor());
    }
    let rows = repo::list_products(app.db(), p.cursor.as_deref(), limit + 1).await?;
    let (rows, next) = crate::base::wire::split_page(rows, limit, |r| r.sku.clone());
    Ok(axum::Json(Page {
        items: rows.into_iter().map(ProductView::from).collect(),
        next_cursor: next,
    }))
}

/// One product with its offers.
#[utoipa::path(get, path = "/products/{sku}", tag = "catalog", params(("sku" = String, Path, description = "Product SKU")),
    responses((status = 200, body = ProductView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_product(
    State(app): State<App>,
    principal: Principal,
    Path(sku): Path<String>,
) -> Result<axum::Json<ProductView>, ApiError> {
    principal.require(ALL_ROLES)?;
    let p = repo::find_by_sku(app.db(), &sku)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    let offers = repo::offers_of_product(app.db(), p.id).await?;
    let mut view = ProductView::from(p);
    view.offers = Some(
        offers
            .into_iter()
            .map(|(o, vendor_name)| OfferView {
                id: o.id,
                vendor_id: o.vendor_id,
                vendor_name,
                price_npr: paisa_to_npr(o.price_paisa),
                tiers: o.tiers.0.into_iter().map(TierView::from).collect(),
                promotional: o.promotional,
                stock: milli_to_qty(o.stock_milli),
                valid_from: fmt_time(o.valid_from_ms),
                valid_to: o.valid_to_ms.map(fmt_time),
            })
            .collect(),
    );
    Ok(axum::Json(view))
}

/// One vendor's current price against the average.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VendorPriceView {
    /// The vendor.
    pub vendor_id: Uuid,
    /// Its name.
    pub vendor_name: String,
    /// Base price per base unit, NPR.
    pub price_npr: f64,
    /// `excellent` (≤ average × 1.05), `good` (≤ 1.10), `fair` (≤ 1.15) or `expensive`.
    pub competitiveness: String,
}

/// One price change of the last 30 days.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PriceChangeView {
    /// The offer.
    pub offer_id: Uuid,
    /// Before, NPR.
    pub old_npr: f64,
    /// After, NPR.
    pub new_npr: f64,
    /// Change in percent of the old price.
    pub change_pct: Option<f64>,
    /// `medium` (|Δ| ≥ 20%), `high` (≥ 35%), `critical` (≥ 50%); absent below 20%.
    pub alert: Option<String>,
    /// When (Nepal time).
    pub at: String,
}

/// A product's price intelligence: statistics of the current prices across vendors, the
/// 30-day change, volatility, trend, each vendor's competitiveness and the recent changes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PricesView {
    /// SKU.
    pub sku: String,
    /// Vendors with a current price.
    pub vendors: usize,
    /// Average of the current prices, NPR (absent without any).
    pub average_npr: Option<f64>,
    /// Lowest, NPR.
    pub min_npr: Option<f64>,
    /// Highest, NPR.
    pub max_npr: Option<f64>,
    /// Median, NPR.
    pub median_npr: Option<f64>,
    /// Change of the average against what the same offers asked 30 days ago (or when first
    /// priced), percent.
    pub change_30d_pct: Option<f64>,
    /// 0–100 from how often and how much prices changed in 30 days.
    pub volatility: Option<u8>,
    /// `stable` (|Δ| < 2%), `rising` or `falling`.
    pub trend: Option<String>,
    /// Each current offer, cheapest first.
    pub by_vendor: Vec<VendorPriceView>,
    /// Price changes of the last 30 days, oldest first.
    pub changes: Vec<PriceChangeView>,
}

/// Price intelligence of one product, computed from the current offers and their history.
#[utoipa::path(get, path = "/products/{sku}/prices", tag = "catalog", params(("sku" = String, Path, description = "Product SKU")),
    responses((status = 200, body = PricesView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_prices(
    State(app): State<App>,
    principal: Principal,
    Path(sku): Path<String>,
) -> Result<axum::Json<PricesView>, ApiError> {
    principal.require(ALL_ROLES)?;
    let p = repo::find_by_sku(app.db(), &sku)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    let prices = super::prices::of_product(app.db(), p.id, crate::base::time::now_ms()).await?;
    let i = prices.insight.as_ref();
    Ok(axum::Json(PricesView {
        sku: p.sku,
        vendors: prices.vendors.len(),
        average_npr: i.map(|i| paisa_to_npr(i.average_paisa)),
        min_npr: i.map(|i| paisa_to_npr(i.min_paisa)),
        max_npr: i.map(|i| paisa_to_npr(i.max_paisa)),
        median_npr: i.map(|i| paisa_to_npr(i.median_paisa)),
        change_30d_pct: i
            .and_then(|i| i.change_30d_pct)
            .map(|c| (c * 100.0).round() / 100.0),
        volatility: i.map(|i| i.volatility),
        trend: i.map(|i| i.trend.as_str().to_string()),
        by_vendor: prices
            .vendors
            .iter()
            .map(|v| VendorPriceView {
                vendor_id: v.vendor_id,
                vendor_name: v.vendor_name.clone(),
                price_npr: paisa_to_npr(v.price_paisa),
                competitiveness: v.competitiveness.as_str().to_string(),
            })
            .collect(),
        changes: prices
            .changes
            .iter()
            .map(|(offer, c, at)| PriceChangeView {
                offer_id: *offer,
                old_npr: paisa_to_npr(c.old_paisa),
                new_npr: paisa_to_npr(c.new_paisa),
                change_pct: c.percent().map(|p| (p * 100.0).round() / 100.0),
                alert: khaacho_vendors::change_alert(*c).map(|a| a.as_str().to_string()),
                at: fmt_time(*at),
            })
            .collect(),
    }))
}

/// One stored snapshot of a product's price intelligence.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PriceSnapshotView {
    /// Average of the current prices across vendors, NPR.
    pub average_npr: f64,
    /// Lowest, NPR.
    pub min_npr: f64,
    /// Highest, NPR.
    pub max_npr: f64,
    /// Median, NPR.
    pub median_npr: f64,
    /// Change of the average over 30 days, percent (absent without a price 30 days ago).
    pub change_30d_pct: Option<f64>,
    /// 0–100 from how often and how much prices changed in 30 days.
    pub volatility: i32,
    /// `stable` (|Δ| < 2%), `rising` or `falling`.
    pub trend: String,
    /// When it was taken (Nepal time).
    pub at: String,
}

/// A product's price-intelligence snapshots (taken every 4 hours), newest first.
#[utoipa::path(get, path = "/products/{sku}/price-history", tag = "catalog",
    params(("sku" = String, Path, description = "Product SKU"), TextPage),
    responses((status = 200, body = Page<PriceSnapshotView>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_price_history(
    State(app): State<App>,
    principal: Principal,
    Path(sku): Path<String>,
    Query(p): Query<TextPage>,
) -> Result<axum::Json<Page<PriceSnapshotView>>, ApiError> {
    principal.require(ALL_ROLES)?;
    let limit = page_limit(p.limit)?;
    let before = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let product = repo::find_by_sku(app.db(), &sku)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    let rows = super::intelligence::history(app.db(), product.id, before, limit + 1).await?;
    let (rows, next) = crate::base::wire::split_page(rows, limit, |r| encode_cursor(r.at_ms, r.id));
    Ok(axum::Json(Page {
        items: rows
            .into_iter()
            .map(|r| PriceSnapshotView {
                average_npr: paisa_to_npr(r.average_paisa),
                min_npr: paisa_to_npr(r.min_paisa),
                max_npr: paisa_to_npr(r.max_paisa),
                median_npr: paisa_to_npr(r.median_paisa),
                change_30d_pct: r.change_30d_pct.map(|c| (c * 100.0).round() / 100.0),
                volatility: r.volatility,
                trend: r.trend,
                at: fmt_time(r.at_ms),
            })
            .collect(),
        next_cursor: next,
    }))
}

/// The whole catalogue as CSV (`sku,name,aliases,unit,pack_size,price_npr,category`).
#[utoipa::path(get, path = "/catalog/export", tag = "catalog",
    responses((status = 200, description = "Catalogue CSV", content_type = "text/csv")))]
async fn export_catalog(
    State(app): State<App>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(ALL_ROLES)?;
    let csv = service::export_csv(&app).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
}

/// Import result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    /// Products created or updated.
    pub imported: usize,
}

/// Create or update products from a catalogue CSV; all rows or none.
#[utoipa::path(post, path = "/catalog/import", tag = "catalog",
    request_body(content = String, content_type = "text/csv", description = "Catalogue CSV with header `sku,name,aliases,unit,pack_size,price_npr,category`"),
    responses((status = 200, body = ImportResult), (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid rows; every problem listed", body = Problem, content_type = "application/problem+json")))]
async fn import_catalog(
    State(app): State<App>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<axum::Json<ImportResult>, ApiError> {
    principal.require(STAFF)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("text/csv") {
        return Err(ApiError::BadRequest(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected `Content-Type: text/csv`".into(),
        ));
    }
    let imported =
        service::import_csv_audited(&app, &body, Some(principal.audit("catalog.import")))
            .await
            .map_err(catalog_error)?;
    Ok(axum::Json(ImportResult { imported }))
}

/// Offer id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OfferId {
    /// The offer's id.
    pub id: Uuid,
}

/// Create or replace a vendor's offer for a product (price changes are kept in history).
#[utoipa::path(put, path = "/offers", tag = "catalog", request_body = OfferRequest,
    responses((status = 200, body = OfferId), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn put_offer(
    State(app): State<App>,
    principal: Principal,
    body: Result<Json<OfferRequest>, ApiError>,
) -> Result<axum::Json<OfferId>, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Vendor])?;
    let Json(req) = body?;
    if principal.vendor().is_some_and(|own| own != req.vendor_id) {
        return Err(ApiError::Forbidden(
            "a vendor can only set its own offers".into(),
        ));
    }
    let id = service::put_offer(&app, &req, Some(principal.audit("offer.put")))
        .await
        .map_err(catalog_error)?;
    Ok(axum::Json(OfferId { id }))
}

/// Renders a refused catalogue change.
fn catalog_error(e: CatalogError) -> ApiError {
    match e {
        CatalogError::Invalid(errors) => ApiError::Validation(errors),
        CatalogError::Storage(e) => e.into(),
    }
}
