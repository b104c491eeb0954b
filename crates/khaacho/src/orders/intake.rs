//! Order intake as a service: check an order's shape against the catalogue, then write the
//! `received` order, its first event (who placed it, through which channel) and its first
//! job in one transaction, and only then report it accepted. Used by every channel — the
//! HTTP API, and the WhatsApp/SMS conversations and the console later — with the channel and
//! the actor named by the caller. A repeated idempotency key replays the first answer.
//!
//! Concurrent intakes share one transaction ([`GroupCommit`]); errors are domain errors
//! ([`IntakeError`]) that each channel renders its own way.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::backpressure::{Backpressure, Overloaded};
use super::model::{Actor, OrderPriority, PaymentMode};
use super::transition::{self, NewOrder};
use super::{pipeline, repo};
use crate::base::db::{Db, Tx, is_unique_violation};
use crate::base::domain::{Unit, UnitRules, canonical_unit, qty_to_milli};
use crate::base::group_commit::{BatchWriter, GroupCommit};
use crate::base::time::now_ms;
use crate::base::wire::error::FieldError;
use crate::catalog::cache::CatalogCache;
use crate::catalog::csv_io::validate_sku;
use crate::config::PipelineSettings;
use crate::{with_latest, with_tx};

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
    /// The buying retailer. A retailer's own user or API key may leave it out (its order is
    /// its own); operators and admins name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retailer_id: Option<Uuid>,
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
    /// `credit` (default: reserved on the retailer's credit account) or `cash` on delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_mode: Option<PaymentMode>,
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

/// Longest note accepted.
pub const MAX_NOTE_CHARS: usize = 500;

/// Through what an order arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The HTTP API (retailers' systems, API keys, operators).
    Api,
    /// A WhatsApp conversation.
    Whatsapp,
    /// An SMS conversation.
    Sms,
    /// The operations console.
    Console,
}

impl Channel {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Whatsapp => "whatsapp",
            Channel::Sms => "sms",
            Channel::Console => "console",
        }
    }
}

/// Why an order was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The order is invalid; every problem is listed by field.
    #[error("the order is invalid")]
    Invalid(Vec<FieldError>),
    /// The idempotency key was used before with a different order.
    #[error("this Idempotency-Key was used with a different request body")]
    KeyReused,
    /// A concurrent request with the same idempotency key has not finished.
    #[error("a request with this Idempotency-Key is in progress")]
    KeyInProgress,
    /// The pipeline is too far behind: come back later (nothing was written).
    #[error("the order pipeline is {} ms behind; retry in {} s", .0.oldest_ready_age_ms, .0.retry_after_secs)]
    Overloaded(Overloaded),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

impl IntakeError {
    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        IntakeError::Invalid(vec![FieldError::new(field, message)])
    }
}

/// An order as a channel hands it to the intake.
#[derive(Clone, Debug)]
pub struct OrderRequest {
    /// The buyer (already resolved by the channel: a retailer's own id, or the one an
    /// operator named).
    pub retailer_id: Uuid,
    /// The body as received (lines or text, note, priority).
    pub body: CreateOrder,
    /// Through what it arrived.
    pub channel: Channel,
    /// Who placed it.
    pub actor: Actor,
    /// The caller's idempotency key, if any (replays the first answer).
    pub idempotency_key: Option<String>,
    /// Request id, carried into the order's jobs.
    pub correlation_id: Option<String>,
}

/// Result of [`Intake::accept`]: the answer, and whether it is a replay.
pub struct IntakeResult {
    /// The 202 body.
    pub accepted: Accepted,
    /// True when an earlier request with the same key produced it.
    pub replayed: bool,
}

/// The intake service: what it needs of the application, and nothing more.
pub struct Intake<'a> {
    /// The database (idempotency replays).
    pub db: &'a Db,
    /// The catalogue view the lines are checked against.
    pub catalog: &'a CatalogCache,
    /// Intake limits.
    pub limits: &'a PipelineSettings,
    /// The shared intake writer.
    pub writer: &'a GroupCommit<IntakeWriter>,
    /// Refuses new orders while the pipeline is too far behind.
    pub pressure: &'a Backpressure,
}

impl Intake<'_> {
    /// Accepts an order durably (see the module docs).
    #[tracing::instrument(skip_all, fields(retailer_id = %req.retailer_id, channel = req.channel.as_str()))]
    pub async fn accept(&self, req: OrderRequest) -> Result<IntakeResult, IntakeError> {
        if let Err(o) = self.pressure.check(self.db).await {
            metrics::counter!("khaacho_intake_backpressure_total", "channel" => req.channel.as_str())
                .increment(1);
            return Err(IntakeError::Overloaded(o));
        }
        let lines = self.check(&req.body).await?;
        let scope = req.retailer_id.to_string();
        let idem = match req.idempotency_key.as_deref() {
            Some(key) => {
                if key.is_empty() || key.len() > 255 {
                    return Err(IntakeError::field(
                        "Idempotency-Key",
                        "must be 1 to 255 characters",
                    ));
                }
                let hash = request_hash(&req.body);
                if let Some(replay) = self.replay(&scope, key, &hash).await? {
                    return Ok(replay);
                }
                Some((key.to_string(), hash))
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
            priority: req.body.priority.unwrap_or_default(),
            payment_mode: req.body.payment_mode.unwrap_or_default(),
            channel: req.channel,
            actor: req.actor,
            note: req.body.note,
            correlation_id: req.correlation_id,
            // Accepted in the request's (or inbound message job's) own task: its span is current.
            trace_parent: crate::base::trace::current(),
            lines: lines.into_iter().map(CheckedLine::into_row).collect(),
            source_text: req.body.text,
            idempotency: idem
                .as_ref()
                .map(|(key, hash)| (scope.clone(), key.clone(), hash.clone(), accepted.clone())),
        };
        match self.writer.write(prepared).await {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) && idem.is_some() => {
                // A concurrent request with the same key won the race: answer what it answered.
                let (key, hash) = idem
                    .as_ref()
                    .map(|(k, h)| (k.as_str(), h.as_str()))
                    .unwrap_or_default();
                return self
                    .replay(&scope, key, hash)
                    .await?
                    .ok_or(IntakeError::KeyInProgress);
            }
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                return Err(IntakeError::field("retailer_id", "no retailer has this id"));
            }
            Err(e) => return Err(e.into()),
        }
        metrics::counter!("khaacho_orders_received_total", "channel" => req.channel.as_str())
            .increment(1);
        Ok(IntakeResult {
            accepted,
            replayed: false,
        })
    }

    /// Shape checks that need no transaction: every problem is reported at once.
    async fn check(&self, req: &CreateOrder) -> Result<Vec<CheckedLine>, IntakeError> {
        let mut errors = Vec::new();
        if req
            .note
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
        {
            errors.push(FieldError::new(
                "note",
                format!("note must be at most {MAX_NOTE_CHARS} characters"),
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
                if let Err(e) = check_text(text) {
                    errors.push(e);
                }
                Vec::new()
            }
            (Some(lines), None) => match self.check_lines(lines).await {
                Ok(checked) => checked,
                Err(IntakeError::Invalid(mut line_errors)) => {
                    errors.append(&mut line_errors);
                    Vec::new()
                }
                Err(other) => return Err(other),
            },
        };
        if errors.is_empty() {
            Ok(lines)
        } else {
            Err(IntakeError::Invalid(errors))
        }
    }

    /// Checks requested lines against the catalogue: known SKU, canonical unit compatible
    /// with the product, a legal quantity, no repeated (SKU, unit). Used by the intake, by
    /// the parse step and by an operator's correction of a parsed order.
    pub async fn check_lines(&self, lines: &[LineInput]) -> Result<Vec<CheckedLine>, IntakeError> {
        let limits = self.limits;
        if lines.len() > limits.max_lines {
            return Err(IntakeError::field(
                "lines",
                format!("an order may have at most {} lines", limits.max_lines),
            ));
        }
        let mut errors = Vec::new();
        if lines.is_empty() {
            errors.push(FieldError::new("lines", "an order needs at least one line"));
        }
        // Only well-formed SKUs are looked up; malformed ones are reported below.
        let skus: Vec<&str> = lines
            .iter()
            .map(|l| l.sku.as_str())
            .filter(|s| validate_sku(s).is_ok())
            .collect();
        let mut found = self.catalog.lookup(self.db, &skus).await?.into_iter();
        let mut out = Vec::with_capacity(lines.len());
        let mut seen = std::collections::HashSet::new();
        for (i, line) in lines.iter().enumerate() {
            let at = |f: &str| format!("lines[{i}].{f}");
            if let Err(msg) = validate_sku(&line.sku) {
                errors.push(FieldError::new(at("sku"), msg));
                continue;
            }
            let Some(info) = found.next().flatten().filter(|i| i.active) else {
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
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(IntakeError::Invalid(errors))
        }
    }

    async fn replay(
        &self,
        scope: &str,
        key: &str,
        hash: &str,
    ) -> Result<Option<IntakeResult>, IntakeError> {
        // Must see the latest write: the racing request that stored this key just committed.
        let row: Option<(String, Json<Accepted>)> = with_latest!(self.db, c => sqlx::query_as(
            "SELECT request_hash, response_body FROM idempotency_keys WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .fetch_optional(c)
            .await)?;
        match row {
            None => Ok(None),
            Some((stored, _)) if stored != hash => Err(IntakeError::KeyReused),
            Some((_, Json(accepted))) => {
                metrics::counter!("khaacho_idempotent_replays_total").increment(1);
                Ok(Some(IntakeResult {
                    accepted,
                    replayed: true,
                }))
            }
        }
    }
}

/// Checks the text of a text order (also used by the parse preview).
pub fn check_text(text: &str) -> Result<(), FieldError> {
    if text.trim().is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        return Err(FieldError::new(
            "text",
            format!("text must be 1 to {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(())
}

/// An order that passed the checks, ready to be written.
#[derive(Debug)]
pub struct Prepared {
    id: Uuid,
    retailer_id: Uuid,
    priority: OrderPriority,
    payment_mode: PaymentMode,
    channel: Channel,
    actor: Actor,
    note: Option<String>,
    correlation_id: Option<String>,
    /// The `traceparent` of the span that accepted it (while traces are exported).
    trace_parent: Option<String>,
    lines: Vec<(String, i64, String)>,
    source_text: Option<String>,
    /// `(scope, key, request hash, answer)` when the request carried an idempotency key.
    idempotency: Option<(String, String, String, Accepted)>,
}

/// Writes accepted orders for the [`GroupCommit`]: orders, first events, lines, first jobs
/// and idempotency records, in one transaction.
#[derive(Debug)]
pub struct IntakeWriter {
    db: Db,
}

impl IntakeWriter {
    /// A writer over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

impl BatchWriter for IntakeWriter {
    type Item = Prepared;
    type Output = ();

    async fn write(&self, orders: &[Prepared]) -> Result<Vec<()>, sqlx::Error> {
        let rows: Vec<NewOrder<'_>> = orders
            .iter()
            .map(|o| NewOrder {
                id: o.id,
                retailer_id: o.retailer_id,
                priority: o.priority.as_str(),
                channel: o.channel.as_str(),
                note: o.note.as_deref(),
                correlation_id: o.correlation_id.as_deref(),
                source_text: o.source_text.as_deref(),
                actor: &o.actor,
                payment_mode: o.payment_mode.as_str(),
            })
            .collect();
        let lines: Vec<repo::NewLines<'_>> = orders
            .iter()
            .map(|o| {
                (
                    o.id,
                    super::model::created_at_of(o.id).unwrap_or_else(now_ms),
                    &o.lines[..],
                )
            })
            .collect();
        // Structured orders go straight to the in-process steps; text orders are parsed first.
        let first: Vec<_> = orders
            .iter()
            .map(|o| {
                (
                    o.id,
                    o.priority.as_str(),
                    o.correlation_id.as_deref(),
                    o.source_text.is_some(),
                )
            })
            .collect();
        // The first jobs continue each order's request trace (this runs in the writer's task).
        let parents = orders
            .iter()
            .filter_map(|o| Some((o.correlation_id.clone()?, o.trace_parent.clone()?)))
            .collect();
        crate::base::trace::with_parents(parents, async {
            // PostgreSQL: one statement, on the keyed pool's connections, which plan it once
            // rather than per batch (it only inserts, so it has one plan whatever the tables
            // hold).
            if let Some(pool) = self.db.keyed_pool() {
                let keys: Vec<_> = orders
                    .iter()
                    .filter_map(|o| o.idempotency.as_ref())
                    .map(|(scope, key, hash, answer)| {
                        (scope.as_str(), key.as_str(), hash.as_str(), answer)
                    })
                    .collect();
                let queues = transition::create_at_once(pool, &rows, &lines, &first, &keys).await?;
                self.db.after_commit(&queues);
                return Ok(vec![(); orders.len()]);
            }
            let mut tx = self.db.begin().await?;
            transition::create(&mut tx, &rows).await?;
            repo::insert_lines(&mut tx, &lines).await?;
            pipeline::start(&mut tx, &first).await?;
            for (scope, key, hash, answer) in orders.iter().filter_map(|o| o.idempotency.as_ref()) {
                store_key(&mut tx, scope, key, hash, answer).await?;
            }
            tx.commit().await?;
            Ok(vec![(); orders.len()])
        })
        .await
    }

    fn max_in_flight(&self) -> usize {
        // One batch committing while the next gathers, on both backends. Overlapping commits
        // on PostgreSQL (4, then 2) made batches of one at moderate load, each order paying
        // its own statements and commit, and lowered the capacity on two cores.
        1
    }

    fn name(&self) -> &'static str {
        "intake"
    }
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
