//! HTTP routes of retailers and vendors.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use sqlx::types::Json as SqlJson;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::repo::{self, Retailer, Vendor};
use crate::app::App;
use crate::base::db::is_unique_violation;
use crate::base::principal::{Principal, Role, STAFF};
use crate::base::wire::error::{ApiError, FieldError, Problem};
use crate::base::wire::extract::{Json, Path, Query};
use crate::base::wire::{IdPage, Page, page_limit};
use khaacho_auth::mask::{mask_name, mask_phone};

/// Routes of this feature.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list_retailers, create_retailer))
        .routes(routes!(get_retailer, update_retailer))
        .routes(routes!(list_vendors, create_vendor))
        .routes(routes!(get_vendor, update_vendor))
}

fn paginate<T>(rows: Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> Page<T> {
    let (items, next_cursor) = crate::base::wire::split_page(rows, limit, |r| id(r).to_string());
    Page { items, next_cursor }
}

/// Retailers in creation order.
#[utoipa::path(get, path = "/retailers", tag = "parties", params(IdPage),
    responses((status = 200, body = Page<Retailer>), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn list_retailers(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<IdPage>,
) -> Result<axum::Json<Page<Retailer>>, ApiError> {
    principal.require(STAFF)?;
    let limit = page_limit(p.limit)?;
    let rows = repo::list_retailers(app.db(), p.cursor, limit + 1).await?;
    Ok(axum::Json(paginate(rows, limit, |r| r.id)))
}

/// One retailer.
#[utoipa::path(get, path = "/retailers/{id}", tag = "parties", params(("id" = Uuid, Path, description = "Retailer id")),
    responses((status = 200, body = Retailer), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_retailer(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Retailer>, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Retailer])?;
    // A retailer reads only its own record; any other id is simply not found.
    if principal.retailer().is_some_and(|own| own != id) {
        return Err(ApiError::NotFound("retailer"));
    }
    repo::find_retailer(app.db(), id)
        .await?
        .map(axum::Json)
        .ok_or(ApiError::NotFound("retailer"))
}

/// Changes to a retailer; absent fields stay as they are. The phone is its identity and does
/// not change here.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetailerChanges {
    /// Shop name.
    #[serde(default)]
    pub name: Option<String>,
    /// District.
    #[serde(default)]
    pub district: Option<String>,
    /// Street address.
    #[serde(default)]
    pub address: Option<String>,
    /// Latitude.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub lng: Option<f64>,
    /// Whether it may order.
    #[serde(default)]
    pub active: Option<bool>,
    /// Language of its messages: `en` or `ne`.
    #[serde(default)]
    pub language: Option<String>,
    /// E-mail address (its messages are also e-mailed); `""` removes it.
    #[serde(default)]
    pub email: Option<String>,
}

/// Update a retailer: staff change any field but the phone; a retailer changes its own
/// language only. Audited with the fields that changed.
#[utoipa::path(patch, path = "/retailers/{id}", tag = "parties", request_body = RetailerChanges,
    params(("id" = Uuid, Path, description = "Retailer id")),
    responses((status = 200, body = Retailer), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn update_retailer(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<RetailerChanges>, ApiError>,
) -> Result<axum::Json<Retailer>, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Retailer])?;
    if principal.retailer().is_some_and(|own| own != id) {
        return Err(ApiError::NotFound("retailer"));
    }
    let Json(c) = body?;
    if principal.retailer().is_some()
        && (c.name.is_some()
            || c.district.is_some()
            || c.address.is_some()
            || c.lat.is_some()
            || c.lng.is_some()
            || c.active.is_some())
    {
        return Err(ApiError::Forbidden(
            "a retailer may change only its own language and e-mail address".into(),
        ));
    }
    let before = repo::find_retailer(app.db(), id)
        .await?
        .ok_or(ApiError::NotFound("retailer"))?;
    let raw_name = c.name.as_deref().unwrap_or(&before.name).to_string();
    let r = Retailer {
        name: raw_name.trim().to_string(),
        district: c
            .district
            .as_deref()
            .map_or_else(|| before.district.clone(), |d| d.trim().to_string()),
        address: c.address.or(before.address.clone()),
        lat: c.lat.or(before.lat),
        lng: c.lng.or(before.lng),
        active: c.active.unwrap_or(before.active),
        language: c.language.or(before.language.clone()),
        email: email_change(c.email, &before.email),
        ..before.clone()
    };
    let mut errors = check_common(&raw_name, &r.phone, r.lat, r.lng);
    errors.extend(email_errors(r.email.as_deref()));
    if r.district.is_empty() {
        errors.push(FieldError::new("district", "district is required"));
    }
    errors.extend(language_errors(r.language.as_deref()));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let changed = changed_fields(&before, &r, &r.name, &["address", "lat", "lng", "email"]);
    let mut tx = app.db().begin().await?;
    if repo::update_retailer(&mut tx, &r).await? == 0 {
        return Err(ApiError::NotFound("retailer"));
    }
    let entry = principal
        .audit("retailer.update")
        .on("retailer", r.id)
        .summary(changed);
    crate::base::audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(axum::Json(r))
}

/// A new retailer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRetailer {
    /// Shop name.
    pub name: String,
    /// E.164 phone, e.g. `+9779841234567`.
    pub phone: String,
    /// District.
    pub district: String,
    /// Street address.
    #[serde(default)]
    pub address: Option<String>,
    /// Latitude.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub lng: Option<f64>,
    /// Language of its messages: `en` or `ne` (default: the language it writes in).
    #[serde(default)]
    pub language: Option<String>,
    /// E-mail address (its messages are also e-mailed).
    #[serde(default)]
    pub email: Option<String>,
}

/// An e-mail address as given: `None` keeps `before`, `""` removes it, else trimmed.
fn email_change(given: Option<String>, before: &Option<String>) -> Option<String> {
    match given {
        None => before.clone(),
        Some(e) if e.trim().is_empty() => None,
        Some(e) => Some(e.trim().to_string()),
    }
}

/// Checks an e-mail address: one `@` with text either side, a dot in the domain, no spaces,
/// at most 254 characters.
fn email_errors(email: Option<&str>) -> Vec<FieldError> {
    let Some(e) = email else {
        return Vec::new();
    };
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if ok {
        Vec::new()
    } else {
        vec![FieldError::new("email", "not an e-mail address")]
    }
}

/// The fields that differ between `before` and `after`, as the audit log shows them: the
/// name masked, the `private` fields as "changed", the rest with their new value.
fn changed_fields<T: serde::Serialize>(
    before: &T,
    after: &T,
    name: &str,
    private: &[&str],
) -> serde_json::Value {
    let (old, new) = (
        serde_json::to_value(before).unwrap_or_default(),
        serde_json::to_value(after).unwrap_or_default(),
    );
    let mut changed = serde_json::Map::new();
    for (field, value) in new.as_object().into_iter().flatten() {
        if old.get(field) != Some(value) {
            let shown = if field == "name" {
                serde_json::json!(mask_name(name))
            } else if private.contains(&field.as_str()) {
                serde_json::json!("changed")
            } else {
                value.clone()
            };
            changed.insert(field.clone(), shown);
        }
    }
    serde_json::Value::Object(changed)
}

/// Checks a language setting: `en` (English) or `ne` (Nepali).
fn language_errors(language: Option<&str>) -> Vec<FieldError> {
    match language {
        None | Some("en") | Some("ne") => Vec::new(),
        Some(_) => vec![FieldError::new(
            "language",
            "language must be en (English) or ne (Nepali)",
        )],
    }
}

/// Checks an E.164 phone number.
pub fn check_phone(phone: &str) -> Result<(), &'static str> {
    let digits = phone.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err("phone must be in E.164 form, e.g. +9779841234567")
    }
}

fn check_common(name: &str, phone: &str, lat: Option<f64>, lng: Option<f64>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if name.trim().is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new("name", "name must be 1 to 200 characters"));
    }
    if let Err(m) = check_phone(phone) {
        errors.push(FieldError::new("phone", m));
    }
    if lat.is_some_and(|l| !(-90.0..=90.0).contains(&l)) {
        errors.push(FieldError::new(
            "lat",
            "latitude must be between -90 and 90",
        ));
    }
    if lng.is_some_and(|l| !(-180.0..=180.0).contains(&l)) {
        errors.push(FieldError::new(
            "lng",
            "longitude must be between -180 and 180",
        ));
    }
    errors
}

fn phone_taken(e: sqlx::Error) -> ApiError {
    if is_unique_violation(&e) {
        ApiError::field("phone", "this phone number is already registered")
    } else {
        e.into()
    }
}

/// Register a retailer.
#[utoipa::path(post, path = "/retailers", tag = "parties", request_body = NewRetailer,
    responses((status = 201, body = Retailer), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create_retailer(
    State(app): State<App>,
    principal: Principal,
    body: Result<Json<NewRetailer>, ApiError>,
) -> Result<(StatusCode, axum::Json<Retailer>), ApiError> {
    principal.require(STAFF)?;
    let Json(r) = body?;
    let mut errors = check_common(&r.name, &r.phone, r.lat, r.lng);
    if r.district.trim().is_empty() {
        errors.push(FieldError::new("district", "district is required"));
    }
    errors.extend(language_errors(r.language.as_deref()));
    let email = email_change(r.email, &None);
    errors.extend(email_errors(email.as_deref()));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let retailer = Retailer {
        id: Uuid::now_v7(),
        name: r.name.trim().to_string(),
        phone: r.phone,
        district: r.district.trim().to_string(),
        address: r.address,
        lat: r.lat,
        lng: r.lng,
        active: true,
        language: r.language,
        email,
    };
    let mut tx = app.db().begin().await?;
    repo::insert_retailer(&mut tx, &retailer)
        .await
        .map_err(phone_taken)?;
    let entry = principal.audit("retailer.create").on("retailer", retailer.id).summary(serde_json::json!({
        "name": mask_name(&retailer.name), "phone": mask_phone(&retailer.phone), "district": retailer.district }));
    crate::base::audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(retailer)))
}

/// Vendors in creation order.
#[utoipa::path(get, path = "/vendors", tag = "parties", params(IdPage),
    responses((status = 200, body = Page<Vendor>), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn list_vendors(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<IdPage>,
) -> Result<axum::Json<Page<Vendor>>, ApiError> {
    principal.require(STAFF)?;
    let limit = page_limit(p.limit)?;
    let rows = repo::list_vendors(app.db(), p.cursor, limit + 1).await?;
    Ok(axum::Json(paginate(rows, limit, |v| v.id)))
}

/// One vendor.
#[utoipa::path(get, path = "/vendors/{id}", tag = "parties", params(("id" = Uuid, Path, description = "Vendor id")),
    responses((status = 200, body = Vendor), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_vendor(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vendor>, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Vendor])?;
    // A vendor reads only its own record; any other id is simply not found.
    if principal.vendor().is_some_and(|own| own != id) {
        return Err(ApiError::NotFound("vendor"));
    }
    repo::find_vendor(app.db(), id)
        .await?
        .map(axum::Json)
        .ok_or(ApiError::NotFound("vendor"))
}

/// A new vendor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVendor {
    /// Business name.
    pub name: String,
    /// E.164 phone.
    pub phone: String,
    /// Districts served (at least one).
    pub districts: Vec<String>,
    /// Latitude.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub lng: Option<f64>,
    /// Opening time `HH:MM` Nepal time (default 09:00).
    #[serde(default)]
    pub opens: Option<String>,
    /// Closing time `HH:MM` Nepal time (default 18:00); `24:00` is midnight at the end of the
    /// day (`00:00`–`24:00`: open around the clock).
    #[serde(default)]
    pub closes: Option<String>,
    /// Most active orders at once (default 10).
    #[serde(default)]
    pub max_active: Option<i32>,
    /// Most offers awaiting a response (default 5).
    #[serde(default)]
    pub max_awaiting: Option<i32>,
    /// Language of its messages: `en` or `ne` (default: the language it writes in).
    #[serde(default)]
    pub language: Option<String>,
    /// E-mail address (its messages are also e-mailed).
    #[serde(default)]
    pub email: Option<String>,
}

/// Parses `HH:MM` into minutes after midnight.
pub fn parse_hhmm(s: &str) -> Option<i32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m) && s.len() == 5).then_some(h * 60 + m)
}

/// Parses a closing time: `HH:MM`, or `24:00` for midnight at the end of the day (1440), so
/// that `00:00`–`24:00` is open around the clock.
pub fn parse_closing(s: &str) -> Option<i32> {
    if s == "24:00" {
        Some(1440)
    } else {
        parse_hhmm(s)
    }
}

/// `value` as minutes after midnight (`default` when absent); a malformed one is an error.
/// The closing time (`field` `closes`) may also be `24:00`.
fn hhmm_field(errors: &mut Vec<FieldError>, field: &str, value: Option<&str>, default: i32) -> i32 {
    let (parse, expected): (fn(&str) -> Option<i32>, &str) = if field == "closes" {
        (parse_closing, "time must be HH:MM (24:00 for midnight)")
    } else {
        (parse_hhmm, "time must be HH:MM")
    };
    match value.map(parse) {
        None => default,
        Some(Some(m)) => m,
        Some(None) => {
            errors.push(FieldError::new(field, expected));
            default
        }
    }
}

/// Everything wrong with vendor `v` as created or changed: the name as given (`raw_name`,
/// before trimming), phone and coordinates, then the times that did not parse
/// (`time_errors`), then districts, hours and capacities.
fn vendor_errors(raw_name: &str, v: &Vendor, time_errors: Vec<FieldError>) -> Vec<FieldError> {
    let mut errors = check_common(raw_name, &v.phone, v.lat, v.lng);
    errors.extend(time_errors);
    if v.districts.is_empty() || v.districts.iter().any(|d| d.trim().is_empty()) {
        errors.push(FieldError::new(
            "districts",
            "list at least one district, none empty",
        ));
    }
    if v.opens_at_min >= v.closes_at_min {
        errors.push(FieldError::new(
            "closes",
            "closing time must be after opening time",
        ));
    }
    errors.extend(language_errors(v.language.as_deref()));
    errors.extend(email_errors(v.email.as_deref()));
    if v.max_active < 1 || v.max_awaiting < 1 {
        errors.push(FieldError::new(
            "max_active",
            "capacities must be at least 1",
        ));
    }
    errors
}

/// Changes to a vendor; absent fields stay as they are. The phone is its identity and does
/// not change here.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VendorChanges {
    /// Business name.
    #[serde(default)]
    pub name: Option<String>,
    /// Districts served (at least one).
    #[serde(default)]
    pub districts: Option<Vec<String>>,
    /// Latitude.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub lng: Option<f64>,
    /// Opening time `HH:MM` Nepal time.
    #[serde(default)]
    pub opens: Option<String>,
    /// Closing time `HH:MM` Nepal time; `24:00` is midnight at the end of the day.
    #[serde(default)]
    pub closes: Option<String>,
    /// Most active orders at once.
    #[serde(default)]
    pub max_active: Option<i32>,
    /// Most offers awaiting a response.
    #[serde(default)]
    pub max_awaiting: Option<i32>,
    /// Whether it receives orders.
    #[serde(default)]
    pub active: Option<bool>,
    /// Language of its messages: `en` or `ne`.
    #[serde(default)]
    pub language: Option<String>,
    /// E-mail address (its messages are also e-mailed); `""` removes it.
    #[serde(default)]
    pub email: Option<String>,
}

/// Update a vendor: staff change districts, coordinates, working hours, capacities, name,
/// active and language; a vendor changes its own language only. The change is audited with
/// the fields that changed.
#[utoipa::path(patch, path = "/vendors/{id}", tag = "parties", request_body = VendorChanges,
    params(("id" = Uuid, Path, description = "Vendor id")),
    responses((status = 200, body = Vendor), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn update_vendor(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<VendorChanges>, ApiError>,
) -> Result<axum::Json<Vendor>, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Vendor])?;
    // A vendor changes only its own record, and only its language.
    if principal.vendor().is_some_and(|own| own != id) {
        return Err(ApiError::NotFound("vendor"));
    }
    let Json(c) = body?;
    if principal.vendor().is_some()
        && (c.name.is_some()
            || c.districts.is_some()
            || c.lat.is_some()
            || c.lng.is_some()
            || c.opens.is_some()
            || c.closes.is_some()
            || c.max_active.is_some()
            || c.max_awaiting.is_some()
            || c.active.is_some())
    {
        return Err(ApiError::Forbidden(
            "a vendor may change only its own language and e-mail address".into(),
        ));
    }
    let before = repo::find_vendor(app.db(), id)
        .await?
        .ok_or(ApiError::NotFound("vendor"))?;
    let raw_name = c.name.as_deref().unwrap_or(&before.name);
    let mut time_errors = Vec::new();
    let v = Vendor {
        name: raw_name.trim().to_string(),
        districts: c.districts.map_or_else(
            || before.districts.clone(),
            |d| SqlJson(d.iter().map(|d| d.trim().to_string()).collect()),
        ),
        lat: c.lat.or(before.lat),
        lng: c.lng.or(before.lng),
        opens_at_min: hhmm_field(
            &mut time_errors,
            "opens",
            c.opens.as_deref(),
            before.opens_at_min,
        ),
        closes_at_min: hhmm_field(
            &mut time_errors,
            "closes",
            c.closes.as_deref(),
            before.closes_at_min,
        ),
        max_active: c.max_active.unwrap_or(before.max_active),
        max_awaiting: c.max_awaiting.unwrap_or(before.max_awaiting),
        active: c.active.unwrap_or(before.active),
        language: c.language.or(before.language.clone()),
        email: email_change(c.email, &before.email),
        ..before.clone()
    };
    let errors = vendor_errors(raw_name, &v, time_errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let changed = changed_fields(&before, &v, &v.name, &["email"]);
    let mut tx = app.db().begin().await?;
    if repo::update_vendor(&mut tx, &v).await? == 0 {
        return Err(ApiError::NotFound("vendor"));
    }
    let entry = principal
        .audit("vendor.update")
        .on("vendor", v.id)
        .summary(changed);
    crate::base::audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(axum::Json(v))
}

/// Register a vendor.
#[utoipa::path(post, path = "/vendors", tag = "parties", request_body = NewVendor,
    responses((status = 201, body = Vendor), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create_vendor(
    State(app): State<App>,
    principal: Principal,
    body: Result<Json<NewVendor>, ApiError>,
) -> Result<(StatusCode, axum::Json<Vendor>), ApiError> {
    principal.require(STAFF)?;
    let Json(v) = body?;
    let mut time_errors = Vec::new();
    let vendor = Vendor {
        id: Uuid::now_v7(),
        name: v.name.trim().to_string(),
        phone: v.phone,
        districts: SqlJson(v.districts.iter().map(|d| d.trim().to_string()).collect()),
        lat: v.lat,
        lng: v.lng,
        opens_at_min: hhmm_field(&mut time_errors, "opens", v.opens.as_deref(), 540),
        closes_at_min: hhmm_field(&mut time_errors, "closes", v.closes.as_deref(), 1080),
        max_active: v.max_active.unwrap_or(10),
        max_awaiting: v.max_awaiting.unwrap_or(5),
        score: 50,
        active: true,
        language: v.language,
        email: email_change(v.email, &None),
    };
    let errors = vendor_errors(&v.name, &vendor, time_errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut tx = app.db().begin().await?;
    repo::insert_vendor(&mut tx, &vendor)
        .await
        .map_err(phone_taken)?;
    let entry = principal.audit("vendor.create").on("vendor", vendor.id).summary(serde_json::json!({
        "name": mask_name(&vendor.name), "phone": mask_phone(&vendor.phone), "districts": vendor.districts.0 }));
    crate::base::audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(vendor)))
}
