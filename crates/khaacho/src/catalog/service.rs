//! Catalogue operations shared by the API, the CLI and the seed.

use uuid::Uuid;

use super::csv_io;
use super::repo::{self, OfferInput, Tier};
use crate::app::App;
use crate::base::audit::Entry;
use crate::base::domain::{npr_to_paisa, qty_to_milli};
use crate::base::time::now_ms;
use crate::base::wire::error::FieldError;

/// Why a catalogue change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The input is invalid; every problem is listed by field (or `row N.column`).
    #[error("{} problem(s) in the input", .0.len())]
    Invalid(Vec<FieldError>),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// Imports a catalogue CSV in one transaction: every row is created or updated, or, if any
/// row is invalid, nothing is written and every problem is reported.
pub async fn import_csv(app: &App, csv: &[u8]) -> Result<usize, CatalogError> {
    import_csv_audited(
        app,
        csv,
        Some(Entry::new("cli", Some("admin"), "catalog.import")),
    )
    .await
}

/// [`import_csv`] with the caller's audit entry, written in the import's transaction.
pub async fn import_csv_audited(
    app: &App,
    csv: &[u8],
    audit: Option<Entry>,
) -> Result<usize, CatalogError> {
    let products = csv_io::read_catalog(csv).map_err(CatalogError::Invalid)?;
    let mut tx = app.db().begin().await?;
    for p in &products {
        repo::upsert_product(&mut tx, p).await?;
    }
    if let Some(e) = audit {
        let skus: Vec<&str> = products.iter().take(50).map(|p| p.sku.as_str()).collect();
        let e = e
            .action("catalog.import")
            .summary(serde_json::json!({ "products": products.len(), "first_skus": skus }));
        crate::base::audit::record_tx(&mut tx, &e).await?;
    }
    tx.commit().await?;
    app.catalog().refresh(app.db()).await?;
    Ok(products.len())
}

/// Every product as catalogue CSV.
pub async fn export_csv(app: &App) -> anyhow::Result<Vec<u8>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = repo::list_products(app.db(), after.as_deref(), 1000).await?;
        let done = page.len() < 1000;
        after = page.last().map(|p| p.sku.clone());
        all.extend(page);
        if done {
            break;
        }
    }
    let mut out = Vec::new();
    csv_io::write_catalog(&all, &mut out)?;
    Ok(out)
}

/// A vendor's terms for one product, as the API receives them.
#[derive(Clone, Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferRequest {
    /// Offering vendor.
    pub vendor_id: Uuid,
    /// Product SKU.
    pub sku: String,
    /// Price per base unit, NPR.
    pub price_npr: f64,
    /// Quantity tiers: from `min_qty` base units on, `price_npr`.
    #[serde(default)]
    pub tiers: Vec<TierRequest>,
    /// Stock on hand in base units.
    pub stock: f64,
    /// Promotional offers win price ties.
    #[serde(default)]
    pub promotional: bool,
    /// Valid from (RFC 3339); default now.
    #[serde(default)]
    pub valid_from: Option<String>,
    /// Valid until (RFC 3339); default open-ended.
    #[serde(default)]
    pub valid_to: Option<String>,
    /// Lead time in hours (default 24).
    #[serde(default)]
    pub lead_time_hours: Option<i32>,
}

/// One quantity tier.
#[derive(Clone, Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierRequest {
    /// Threshold in base units.
    pub min_qty: f64,
    /// Price per base unit from the threshold, NPR.
    pub price_npr: f64,
}

/// Creates or replaces an offer; price changes are kept in the price history.
pub async fn put_offer(
    app: &App,
    req: &OfferRequest,
    audit: Option<Entry>,
) -> Result<Uuid, CatalogError> {
    let mut errors = Vec::new();
    let price = npr_to_paisa(req.price_npr).filter(|p| *p > 0);
    if price.is_none() {
        errors.push(FieldError::new(
            "price_npr",
            "must be a positive amount with at most 2 decimals",
        ));
    }
    let stock = qty_to_milli(req.stock).filter(|s| *s >= 0);
    if stock.is_none() {
        errors.push(FieldError::new(
            "stock",
            "must be zero or more, with at most 3 decimals",
        ));
    }
    let mut tiers = Vec::new();
    for (i, t) in req.tiers.iter().enumerate() {
        match (
            qty_to_milli(t.min_qty).filter(|q| *q > 0),
            npr_to_paisa(t.price_npr).filter(|p| *p > 0),
        ) {
            (Some(min_qty_milli), Some(price_paisa)) => tiers.push(Tier {
                min_qty_milli,
                price_paisa,
            }),
            _ => errors.push(FieldError::new(
                format!("tiers[{i}]"),
                "min_qty and price_npr must be positive",
            )),
        }
    }
    tiers.sort_by_key(|t| t.min_qty_milli);
    if tiers
        .windows(2)
        .any(|w| w[0].min_qty_milli == w[1].min_qty_milli)
    {
        errors.push(FieldError::new("tiers", "two tiers have the same min_qty"));
    }
    let time = |field: &str, v: &Option<String>| match v.as_deref() {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| FieldError::new(field, "must be an RFC 3339 time")),
    };
    let valid_from = time("valid_from", &req.valid_from).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let valid_to = time("valid_to", &req.valid_to).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let product = repo::find_by_sku(app.db(), &req.sku).await?;
    if product.is_none() {
        errors.push(FieldError::new("sku", format!("unknown SKU {}", req.sku)));
    }
    let (Some(price), Some(stock), Some(product), true) =
        (price, stock, product, errors.is_empty())
    else {
        return Err(CatalogError::Invalid(errors));
    };
    let input = OfferInput {
        vendor_id: req.vendor_id,
        product_id: product.id,
        price_paisa: price,
        tiers,
        valid_from_ms: valid_from.unwrap_or_else(now_ms),
        valid_to_ms: valid_to,
        promotional: req.promotional,
        stock_milli: stock,
        lead_time_hours: req.lead_time_hours.unwrap_or(24),
    };
    let mut tx = app.db().begin().await?;
    let id = repo::upsert_offer(&mut tx, &input)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                CatalogError::Invalid(vec![FieldError::new("vendor_id", "no vendor has this id")])
            }
            _ => e.into(),
        })?;
    if let Some(e) = audit {
        let e = e.action("offer.put").on("offer", id).summary(serde_json::json!({
            "vendor_id": req.vendor_id, "sku": req.sku, "price_paisa": price, "stock_milli": stock }));
        crate::base::audit::record_tx(&mut tx, &e).await?;
    }
    tx.commit().await?;
    Ok(id)
}
