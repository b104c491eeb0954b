//! Order intake: check the request's shape, write the `received` order and its first job in
//! one transaction, and only then answer 202. A repeated `Idempotency-Key` replays the first
//! answer.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::model::OrderPriority;
use super::parse::ParseOrder;
use super::pipeline::ValidateOrder;
use super::repo::{self, NewOrder};
use crate::app::App;
use crate::base::db::{Tx, is_unique_violation};
use crate::base::domain::{Unit, UnitRules, canonical_unit, qty_to_milli};
use crate::base::time::now_ms;
use crate::base::wire::error::{ApiError, FieldError};
use crate::catalog::csv_io::validate_sku;
use crate::queue::{self, EnqueueOptions};
use crate::with_tx;

/// One requested line.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    /// Product SKU.
    pub sku: String,
    /// Quantity in `unit` (up to 3 decimals; whole for counted units).
    #[schema(value_type = f64, example = 5)]
    pub qty: serde_json::Value,
    /// One of `kg g litre ml packet piece bottle carton crate sack dozen`.
    pub unit: String,
}

/// Body of `POST /api/v1/orders`: structured `lines`, or free `text` ("5 kg chini, 2 carton
/// wai wai") that the parse step turns into lines.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// The buying retailer.
    pub retailer_id: Uuid,
    /// Structured lines (give these or `text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LineInput>>,
    /// The order as the retailer wrote it, in English, romanized Nepali or Devanagari (at most
    /// 4,000 characters; give this or `lines`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Free note for the vendor (at most 500 characters).
    #[serde(default)]
    pub note: Option<String>,
    /// Processing priority (default normal).
    #[serde(default)]
    pub priority: Option<OrderPriority>,
}

/// The 202 answer.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct Accepted {
    /// The new order's id.
    pub order_id: Uuid,
    /// Always `received`.
    pub status: String,
    /// Where to poll for progress.
    pub status_url: String,
}

/// A line that passed the shape checks.
pub struct CheckedLine {
    /// SKU.
    pub sku: String,
    /// Quantity in milli-units of `unit`.
    pub qty_milli: i64,
    /// Requested unit.
    pub unit: Unit,
}

impl CheckedLine {
    /// The `(sku, qty_milli, unit)` row the repository stores.
    pub fn into_row(self) -> (String, i64, String) {
        (self.sku, self.qty_milli, self.unit.as_str().to_string())
    }
}

/// Longest text order accepted.
pub const MAX_TEXT_CHARS: usize = 4_000;

/// Result of [`create`]: the answer, and whether it is a replay.
pub struct IntakeResult {
    /// The 202 body.
    pub accepted: Accepted,
    /// True when an earlier request with the same key produced it.
    pub replayed: bool,
}

/// Accepts an order durably. See the module docs.
#[tracing::instrument(skip_all, fields(retailer_id = %req.retailer_id))]
pub async fn create(
    app: &App,
    req: CreateOrder,
    idempotency_key: Option<&str>,
    request_id: Option<&str>,
) -> Result<IntakeResult, ApiError> {
    let lines = check(app, &req).await?;
    let scope = req.retailer_id.to_string();
    let idem = match idempotency_key {
        Some(key) => {
            if key.is_empty() || key.len() > 255 {
                return Err(ApiError::field(
                    "Idempotency-Key",
                    "must be 1 to 255 characters",
                ));
            }
            let hash = request_hash(&req);
            if let Some(replay) = replay(app, &scope, key, &hash).await? {
                return Ok(replay);
            }
            Some((key, hash))
        }
        None => None,
    };
    let id = Uuid::now_v7();
    let accepted = Accepted {
        order_id: id,
        status: "received".into(),
        status_url: format!("/api/v1/orders/{id}/status"),
    };
    let prepared = Prepared {
        id,
        retailer_id: req.retailer_id,
        priority: req.priority.unwrap_or_default(),
        note: req.note,
        correlation_id: request_id.map(str::to_string),
        lines: lines.into_iter().map(CheckedLine::into_row).collect(),
        source_text: req.text,
        idempotency: idem.as_ref().map(|(key, hash)| {
            (
                scope.clone(),
                key.to_string(),
                hash.clone(),
                accepted.clone(),
            )
        }),
    };
    match app.group_commit().write(prepared).await {
        Ok(()) => {}
        Err(e) if is_unique_violation(&e) && idem.is_some() => {
            // A concurrent request with the same key won the race: answer what it answered.
            let (key, hash) = idem
                .as_ref()
                .map(|(k, h)| (*k, h.as_str()))
                .unwrap_or_default();
            return replay(app, &scope, key, hash).await?.ok_or_else(|| {
                ApiError::Conflict("a request with this Idempotency-Key is in progress".into())
            });
        }
        Err(e) => return Err(map_insert_error(e)),
    }
    metrics::counter!("khaacho_orders_received_total", "channel" => "api").increment(1);
    Ok(IntakeResult {
        accepted,
        replayed: false,
    })
}

/// An order that passed the checks, ready to be written.
#[derive(Debug)]
pub struct Prepared {
    id: Uuid,
    retailer_id: Uuid,
    priority: OrderPriority,
    note: Option<String>,
    correlation_id: Option<String>,
    lines: Vec<(String, i64, String)>,
    source_text: Option<String>,
    /// `(scope, key, request hash, answer)` when the request carried an Idempotency-Key.
    idempotency: Option<(String, String, String, Accepted)>,
}

/// Writes orders, their first jobs and idempotency records in one transaction.
pub async fn write_batch(db: &crate::base::db::Db, orders: &[Prepared]) -> Result<(), sqlx::Error> {
    let rows: Vec<NewOrder<'_>> = orders
        .iter()
        .map(|o| NewOrder {
            id: o.id,
            retailer_id: o.retailer_id,
            priority: o.priority.as_str(),
            channel: "api",
            note: o.note.as_deref(),
            correlation_id: o.correlation_id.as_deref(),
            source_text: o.source_text.as_deref(),
            lines: &o.lines,
        })
        .collect();
    let opts = |o: &Prepared| EnqueueOptions {
        priority: Some(o.priority.job_priority()),
        correlation_id: o.correlation_id.clone(),
        ..Default::default()
    };
    // Structured orders go straight to validation; text orders are parsed first.
    let (texts, structured): (Vec<&Prepared>, Vec<&Prepared>) =
        orders.iter().partition(|o| o.source_text.is_some());
    let validate: Vec<(ValidateOrder, EnqueueOptions)> = structured
        .iter()
        .map(|o| (ValidateOrder { order_id: o.id }, opts(o)))
        .collect();
    let parse: Vec<(ParseOrder, EnqueueOptions)> = texts
        .iter()
        .map(|o| (ParseOrder { order_id: o.id }, opts(o)))
        .collect();
    let mut tx = db.begin().await?;
    repo::insert_many(&mut tx, &rows).await?;
    if !validate.is_empty() {
        let refs: Vec<_> = validate.iter().map(|(j, o)| (j, o.clone())).collect();
        queue::enqueue_batch(&mut tx, &refs).await?;
    }
    if !parse.is_empty() {
        let refs: Vec<_> = parse.iter().map(|(j, o)| (j, o.clone())).collect();
        queue::enqueue_batch(&mut tx, &refs).await?;
    }
    for (scope, key, hash, answer) in orders.iter().filter_map(|o| o.idempotency.as_ref()) {
        store_key(&mut tx, scope, key, hash, answer).await?;
    }
    tx.commit().await
}

fn map_insert_error(e: sqlx::Error) -> ApiError {
    if let sqlx::Error::Database(db) = &e
        && db.is_foreign_key_violation()
    {
        return ApiError::field("retailer_id", "no retailer has this id");
    }
    e.into()
}

/// Shape checks that need no transaction: every problem is reported at once.
async fn check(app: &App, req: &CreateOrder) -> Result<Vec<CheckedLine>, ApiError> {
    let mut errors = Vec::new();
    if req.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        errors.push(FieldError::new(
            "note",
            "note must be at most 500 characters",
        ));
    }
    let lines = match (&req.lines, &req.text) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                "text",
                "give either lines or text, not both",
            ));
            Vec::new()
        }
        (None, None) => {
            errors.push(FieldError::new("lines", "an order needs lines or text"));
            Vec::new()
        }
        (None, Some(text)) => {
            if text.trim().is_empty() || text.chars().count() > MAX_TEXT_CHARS {
                errors.push(FieldError::new(
                    "text",
                    format!("text must be 1 to {MAX_TEXT_CHARS} characters"),
                ));
            }
            Vec::new()
        }
        (Some(lines), None) => match check_lines(app, lines).await? {
            Ok(checked) => checked,
            Err(mut line_errors) => {
                errors.append(&mut line_errors);
                Vec::new()
            }
        },
    };
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Checks requested lines against the catalogue: known SKU, canonical unit compatible with
/// the product, a legal quantity, no repeated (SKU, unit). Used by the intake and by an
/// operator's correction of a parsed order.
pub async fn check_lines(
    app: &App,
    lines: &[LineInput],
) -> Result<Result<Vec<CheckedLine>, Vec<FieldError>>, ApiError> {
    let limits = &app.settings().pipeline;
    let mut errors = Vec::new();
    if lines.is_empty() {
        errors.push(FieldError::new("lines", "an order needs at least one line"));
    }
    if lines.len() > limits.max_lines {
        return Ok(Err(vec![FieldError::new(
            "lines",
            format!("an order may have at most {} lines", limits.max_lines),
        )]));
    }
    // Only well-formed SKUs are looked up; malformed ones are reported below.
    let skus: Vec<&str> = lines
        .iter()
        .map(|l| l.sku.as_str())
        .filter(|s| validate_sku(s).is_ok())
        .collect();
    let mut found = app.catalog().lookup(app.db(), &skus).await?.into_iter();
    let known: Vec<_> = lines
        .iter()
        .map(|l| {
            if validate_sku(&l.sku).is_ok() {
                found.next().flatten()
            } else {
                None
            }
        })
        .collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut seen = std::collections::HashSet::new();
    for (i, (line, info)) in lines.iter().zip(known).enumerate() {
        let at = |f: &str| format!("lines[{i}].{f}");
        if let Err(msg) = validate_sku(&line.sku) {
            errors.push(FieldError::new(at("sku"), msg));
            continue;
        }
        let Some(info) = info.filter(|i| i.active) else {
            errors.push(FieldError::new(
                at("sku"),
                format!("unknown SKU {}", line.sku),
            ));
            continue;
        };
        let Some(unit) = canonical_unit(&line.unit) else {
            errors.push(FieldError::new(at("unit"), "unit must be one of kg, g, litre, ml, packet, piece, bottle, carton, crate, sack, dozen"));
            continue;
        };
        let qty_milli = match check_qty(&line.qty, unit, limits.max_line_qty) {
            Ok(q) => q,
            Err(msg) => {
                errors.push(FieldError::new(at("qty"), msg));
                continue;
            }
        };
        if let Err(e) = unit.to_base(qty_milli, info.unit, info.pack_size_milli) {
            errors.push(FieldError::new(
                at("unit"),
                format!("{e} ({} is sold by {})", line.sku, info.unit),
            ));
            continue;
        }
        if !seen.insert((line.sku.clone(), unit)) {
            errors.push(FieldError::new(
                at("sku"),
                "the same SKU and unit appear twice; combine them into one line",
            ));
            continue;
        }
        out.push(CheckedLine {
            sku: line.sku.clone(),
            qty_milli,
            unit,
        });
    }
    Ok(if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    })
}

fn check_qty(qty: &serde_json::Value, unit: Unit, max: i64) -> Result<i64, String> {
    let Some(q) = qty.as_f64() else {
        return Err("qty must be a number".into());
    };
    if q <= 0.0 {
        return Err("qty must be greater than zero".into());
    }
    if q > max as f64 {
        return Err(format!("qty must be at most {max}"));
    }
    let milli = qty_to_milli(q).ok_or("qty may have at most 3 decimals")?;
    if unit.is_count() && milli % 1000 != 0 {
        return Err(format!("qty must be a whole number of {unit}s"));
    }
    Ok(milli)
}

fn request_hash(req: &CreateOrder) -> String {
    let body = serde_json::to_vec(req).unwrap_or_default();
    hex::encode(Sha256::digest(&body))
}

async fn replay(
    app: &App,
    scope: &str,
    key: &str,
    hash: &str,
) -> Result<Option<IntakeResult>, ApiError> {
    let row: Option<(String, Json<Accepted>)> = crate::with_read!(app.db(), c => sqlx::query_as(
        "SELECT request_hash, response_body FROM idempotency_keys WHERE scope = $1 AND key = $2")
        .bind(scope)
        .bind(key)
        .fetch_optional(c)
        .await)?;
    match row {
        None => Ok(None),
        Some((stored, _)) if stored != hash => Err(ApiError::BadRequest(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "this Idempotency-Key was used with a different request body".into(),
        )),
        Some((_, Json(accepted))) => {
            metrics::counter!("khaacho_idempotent_replays_total").increment(1);
            Ok(Some(IntakeResult {
                accepted,
                replayed: true,
            }))
        }
    }
}

async fn store_key(
    tx: &mut Tx,
    scope: &str,
    key: &str,
    hash: &str,
    body: &Accepted,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, response_status, response_body, created_at_ms) \
         VALUES ($1, $2, $3, 202, $4, $5)")
        .bind(scope)
        .bind(key)
        .bind(hash)
        .bind(Json(body))
        .bind(now_ms())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}
