//! SQL of retailers and vendors.

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::base::db::{Db, KeyFilter, Reader, Tx, push_ids};
use crate::base::time::now_ms;
use crate::{with_keyed, with_latest, with_reader, with_replica, with_tx};

/// A retailer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Retailer {
    /// Id.
    pub id: Uuid,
    /// Shop name.
    pub name: String,
    /// E.164 phone (WhatsApp identity).
    pub phone: String,
    /// District.
    pub district: String,
    /// Street address.
    pub address: Option<String>,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lng: Option<f64>,
    /// Whether it may order.
    pub active: bool,
    /// Language of its messages, `en` or `ne` (unset: the language it writes in, else English).
    pub language: Option<String>,
    /// E-mail address: its messages are also e-mailed (unset: none).
    #[serde(default)]
    pub email: Option<String>,
}

/// A vendor.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Vendor {
    /// Id.
    pub id: Uuid,
    /// Business name.
    pub name: String,
    /// E.164 phone.
    pub phone: String,
    /// Districts served.
    #[schema(value_type = Vec<String>)]
    pub districts: Json<Vec<String>>,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lng: Option<f64>,
    /// Opening time, minutes after midnight (Nepal time).
    pub opens_at_min: i32,
    /// Closing time, minutes after midnight (Nepal time).
    pub closes_at_min: i32,
    /// Most active orders at once.
    pub max_active: i32,
    /// Most offers awaiting a response at once.
    pub max_awaiting: i32,
    /// Vendor score 0–100.
    pub score: i32,
    /// Whether it receives orders.
    pub active: bool,
    /// Language of its messages, `en` or `ne` (unset: the language it writes in, else English).
    pub language: Option<String>,
    /// E-mail address: its messages are also e-mailed (unset: none).
    #[serde(default)]
    pub email: Option<String>,
}

/// Inserts a retailer (the id is generated).
pub async fn insert_retailer(tx: &mut Tx, r: &Retailer) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO retailers (id, name, phone, district, address, lat, lng, active, created_at_ms, language, email) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
        .bind(r.id)
        .bind(&r.name)
        .bind(&r.phone)
        .bind(&r.district)
        .bind(r.address.as_deref())
        .bind(r.lat)
        .bind(r.lng)
        .bind(r.active)
        .bind(now_ms())
        .bind(r.language.as_deref())
        .bind(r.email.as_deref())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Inserts a vendor.
pub async fn insert_vendor(tx: &mut Tx, v: &Vendor) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO vendors (id, name, phone, districts, lat, lng, opens_at_min, closes_at_min, max_active, \
         max_awaiting, score, active, created_at_ms, language, email) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)")
        .bind(v.id)
        .bind(&v.name)
        .bind(&v.phone)
        .bind(&v.districts)
        .bind(v.lat)
        .bind(v.lng)
        .bind(v.opens_at_min)
        .bind(v.closes_at_min)
        .bind(v.max_active)
        .bind(v.max_awaiting)
        .bind(v.score)
        .bind(v.active)
        .bind(now_ms())
        .bind(v.language.as_deref())
        .bind(v.email.as_deref())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Writes a vendor's changeable fields (not its phone or score); returns the rows changed.
pub async fn update_vendor(tx: &mut Tx, v: &Vendor) -> Result<u64, sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "UPDATE vendors SET name = $1, districts = $2, lat = $3, lng = $4, opens_at_min = $5, closes_at_min = $6, \
         max_active = $7, max_awaiting = $8, active = $9, language = $11, email = $12 WHERE id = $10")
        .bind(&v.name)
        .bind(&v.districts)
        .bind(v.lat)
        .bind(v.lng)
        .bind(v.opens_at_min)
        .bind(v.closes_at_min)
        .bind(v.max_active)
        .bind(v.max_awaiting)
        .bind(v.active)
        .bind(v.id)
        .bind(v.language.as_deref())
        .bind(v.email.as_deref())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
}

/// Writes a retailer's changeable fields (not its phone); returns the rows changed.
pub async fn update_retailer(tx: &mut Tx, r: &Retailer) -> Result<u64, sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "UPDATE retailers SET name = $1, district = $2, address = $3, lat = $4, lng = $5, active = $6, language = $7, \
         email = $9 WHERE id = $8")
        .bind(&r.name)
        .bind(&r.district)
        .bind(r.address.as_deref())
        .bind(r.lat)
        .bind(r.lng)
        .bind(r.active)
        .bind(r.language.as_deref())
        .bind(r.id)
        .bind(r.email.as_deref())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
}

pub(crate) const RETAILER_COLS: &str =
    "id, name, phone, district, address, lat, lng, active, language, email";
/// The columns of [`Vendor`], unqualified.
pub(crate) const VENDOR_COLS: &str = "id, name, phone, districts, lat, lng, opens_at_min, closes_at_min, max_active, max_awaiting, score, active, language, email";

/// Retailers by id (creation order), after a cursor.
pub async fn list_retailers(
    db: &Db,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Retailer>, sqlx::Error> {
    let sql = format!(
        "SELECT {RETAILER_COLS} FROM retailers WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
    );
    with_replica!(db, c => sqlx::query_as::<_, Retailer>(sqlx::AssertSqlSafe(sql)).bind(after).bind(limit).fetch_all(c).await)
}

/// One retailer (by key: planned once).
pub async fn find_retailer(db: &Db, id: Uuid) -> Result<Option<Retailer>, sqlx::Error> {
    let sql = format!("SELECT {RETAILER_COLS} FROM retailers WHERE id = $1");
    with_keyed!(db, c => sqlx::query_as::<_, Retailer>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(c).await)
}

/// Retailers by id (unknown ids are skipped; an id named more than once is read once), for
/// decisions and views that may read a moment-old copy.
pub async fn find_retailers(
    r: &mut Reader<'_>,
    ids: &[Uuid],
) -> Result<Vec<Retailer>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if let (Reader::Pool(db), [id]) = (&*r, ids.as_slice()) {
        // One shop (every part of one order goes to the same): a key lookup.
        return Ok(find_retailer(db, *id).await?.into_iter().collect());
    }
    with_reader!(r, c => {
        let mut qb = sqlx::QueryBuilder::new("");
        push_retailers(&mut qb, &ids);
        qb.build_query_as::<Retailer>().fetch_all(c).await
    })
}

/// The query of the retailers `ids`.
pub fn push_retailers<DB: KeyFilter>(qb: &mut sqlx::QueryBuilder<DB>, ids: &[Uuid]) {
    qb.push(format_args!("SELECT {RETAILER_COLS} FROM retailers WHERE"));
    push_ids(qb, "id", ids);
}

/// One retailer by phone.
pub async fn find_retailer_by_phone(db: &Db, phone: &str) -> Result<Option<Retailer>, sqlx::Error> {
    let sql = format!("SELECT {RETAILER_COLS} FROM retailers WHERE phone = $1");
    with_latest!(db, c => sqlx::query_as::<_, Retailer>(sqlx::AssertSqlSafe(sql)).bind(phone).fetch_optional(c).await)
}

/// Vendors by id, after a cursor.
pub async fn list_vendors(
    db: &Db,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Vendor>, sqlx::Error> {
    let sql = format!(
        "SELECT {VENDOR_COLS} FROM vendors WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
    );
    with_replica!(db, c => sqlx::query_as::<_, Vendor>(sqlx::AssertSqlSafe(sql)).bind(after).bind(limit).fetch_all(c).await)
}

/// One vendor.
pub async fn find_vendor(db: &Db, id: Uuid) -> Result<Option<Vendor>, sqlx::Error> {
    let sql = format!("SELECT {VENDOR_COLS} FROM vendors WHERE id = $1");
    with_latest!(db, c => sqlx::query_as::<_, Vendor>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(c).await)
}

/// One vendor by phone.
pub async fn find_vendor_by_phone(db: &Db, phone: &str) -> Result<Option<Vendor>, sqlx::Error> {
    let sql = format!("SELECT {VENDOR_COLS} FROM vendors WHERE phone = $1");
    with_latest!(db, c => sqlx::query_as::<_, Vendor>(sqlx::AssertSqlSafe(sql)).bind(phone).fetch_optional(c).await)
}
