//! Demo data: a Nepali wholesaler's catalogue, Kathmandu-valley vendors with offers, tiers and
//! stock, and kirana retailers ([`demo`]), and the retailers' credit histories
//! ([`credit::seed_credit_histories`]); [`demo_with_credit`] loads both. Idempotent: products
//! are upserted by SKU, vendors and retailers created only when their phone is new, offers
//! only for newly created vendors, credit histories only for retailers without an account.

pub mod credit;

pub use credit::seed_credit_histories;

use serde::Deserialize;
use sqlx::types::Json;
use uuid::Uuid;

use crate::app::App;
use crate::base::time::now_ms;
use crate::catalog::csv_io;
use crate::catalog::repo::{self, OfferInput, ProductInput, Tier};
use crate::parties::repo::{self as parties, Retailer, Vendor};
use crate::parties::routes::{parse_closing, parse_hhmm};

const CATALOG: &str = include_str!("../../data/demo/catalog.csv");
const VENDORS: &str = include_str!("../../data/demo/vendors.csv");
const RETAILERS: &str = include_str!("../../data/demo/retailers.csv");

/// What a seed run created.
#[derive(Debug, Default)]
pub struct SeedReport {
    /// Products created or updated.
    pub products: usize,
    /// Vendors created.
    pub vendors: usize,
    /// Retailers created.
    pub retailers: usize,
    /// Offers created.
    pub offers: usize,
    /// Credit accounts opened with a demo history (by [`demo_with_credit`]).
    pub credit_accounts: usize,
}

#[derive(Deserialize)]
struct VendorRow {
    name: String,
    phone: String,
    districts: String,
    lat: Option<f64>,
    lng: Option<f64>,
    opens: String,
    closes: String,
    max_active: i32,
    max_awaiting: i32,
    specialty: String,
}

#[derive(Deserialize)]
struct RetailerRow {
    name: String,
    phone: String,
    district: String,
    address: Option<String>,
    lat: Option<f64>,
    lng: Option<f64>,
}

/// Loads the demo data set and the demo retailers' credit histories: what `khaacho seed
/// --demo` and `khaacho serve --demo` load.
pub async fn demo_with_credit(app: &App) -> anyhow::Result<SeedReport> {
    let mut report = demo(app).await?;
    report.credit_accounts = seed_credit_histories(app).await?;
    if report.credit_accounts > 0 {
        // Score the new histories now rather than at the next 02:00, so the demo shows every
        // band (and the bands' rules) from the start.
        let now = crate::base::time::now_ms();
        for retailer in crate::credit::repo::all_retailers_with_accounts(app.db()).await? {
            crate::credit::scoring::score_one(app.db(), &app.settings().credit, retailer, now)
                .await
                .map_err(|e| anyhow::anyhow!("scoring the demo accounts: {e}"))?;
        }
    }
    Ok(report)
}

/// Loads the demo data set: catalogue, vendors with offers, retailers (no credit accounts).
pub async fn demo(app: &App) -> anyhow::Result<SeedReport> {
    let products = csv_io::read_catalog(CATALOG.as_bytes())
        .map_err(|e| anyhow::anyhow!("embedded demo catalogue is invalid: {e:?}"))?;
    let mut report = SeedReport::default();
    let mut tx = app.db().begin().await?;
    let mut ids = Vec::with_capacity(products.len());
    for p in &products {
        ids.push(repo::upsert_product(&mut tx, p).await?);
    }
    report.products = products.len();
    for row in csv::Reader::from_reader(VENDORS.as_bytes()).deserialize::<VendorRow>() {
        let row = row?;
        if parties::find_vendor_by_phone(app.db(), &row.phone)
            .await?
            .is_some()
        {
            continue;
        }
        let vendor = Vendor {
            id: Uuid::now_v7(),
            name: row.name.clone(),
            phone: row.phone.clone(),
            districts: Json(row.districts.split('|').map(str::to_string).collect()),
            lat: row.lat,
            lng: row.lng,
            opens_at_min: parse_hhmm(&row.opens).unwrap_or(540),
            closes_at_min: parse_closing(&row.closes).unwrap_or(1080),
            max_active: row.max_active,
            max_awaiting: row.max_awaiting,
            score: 50,
            active: true,
            language: None,
            email: None,
        };
        parties::insert_vendor(&mut tx, &vendor).await?;
        report.vendors += 1;
        let specialty: Vec<&str> = row.specialty.split('|').collect();
        for (p, id) in products.iter().zip(&ids) {
            if let Some(offer) = demo_offer(&vendor, &specialty, p, *id) {
                repo::upsert_offer(&mut tx, &offer).await?;
                report.offers += 1;
            }
        }
    }
    for row in csv::Reader::from_reader(RETAILERS.as_bytes()).deserialize::<RetailerRow>() {
        let row = row?;
        if parties::find_retailer_by_phone(app.db(), &row.phone)
            .await?
            .is_some()
        {
            continue;
        }
        let r = Retailer {
            id: Uuid::now_v7(),
            name: row.name,
            phone: row.phone,
            district: row.district,
            address: row.address.filter(|a| !a.is_empty()),
            lat: row.lat,
            lng: row.lng,
            active: true,
            language: None,
            email: None,
        };
        parties::insert_retailer(&mut tx, &r).await?;
        report.retailers += 1;
    }
    tx.commit().await?;
    app.catalog().refresh(app.db()).await?;
    Ok(report)
}

/// A deterministic pseudo-random number in `0..1000` for a (vendor, product) pair, so the
/// demo data is the same on every machine.
fn spread(a: &str, b: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([0]).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % 1000
}

fn demo_offer(
    vendor: &Vendor,
    specialty: &[&str],
    p: &ProductInput,
    product_id: Uuid,
) -> Option<OfferInput> {
    let general = specialty.contains(&"all");
    if !general && !specialty.contains(&p.category.as_str()) {
        return None;
    }
    let roll = spread(&vendor.phone, &p.sku);
    // General wholesalers carry about 70% of the range, specialists nearly all of theirs.
    if roll >= if general { 700 } else { 950 } {
        return None;
    }
    let list = p.list_price_paisa?;
    // Price between 92% and 108% of the list price.
    let price = list * (920 + (roll * 7 % 161) as i64) / 1000;
    let step = p.pack_size_milli.unwrap_or(10_000).max(1_000);
    let tiers = vec![
        Tier {
            min_qty_milli: step,
            price_paisa: price * 97 / 100,
        },
        Tier {
            min_qty_milli: step * 5,
            price_paisa: price * 94 / 100,
        },
    ];
    let stock_units = 200 + (roll * 13 % 4800) as i64;
    Some(OfferInput {
        vendor_id: vendor.id,
        product_id,
        price_paisa: price.max(1),
        tiers,
        valid_from_ms: now_ms() - 24 * 3600 * 1000,
        valid_to_ms: None,
        promotional: roll.is_multiple_of(20),
        stock_milli: stock_units * 1000,
        lead_time_hours: 24,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_demo_data_is_valid_and_large_enough() {
        let products = csv_io::read_catalog(CATALOG.as_bytes()).unwrap();
        assert!(products.len() >= 150);
        let vendors: Vec<VendorRow> = csv::Reader::from_reader(VENDORS.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(vendors.len() >= 8);
        assert!(
            vendors
                .iter()
                .all(|v| parse_hhmm(&v.opens).is_some() && parse_closing(&v.closes).is_some())
        );
        let retailers: Vec<RetailerRow> = csv::Reader::from_reader(RETAILERS.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(retailers.len() >= 50);
        assert!(products.iter().any(|p| {
            p.aliases
                .iter()
                .any(|a| a.chars().any(|c| ('\u{0900}'..='\u{097F}').contains(&c)))
        }));
    }
}
