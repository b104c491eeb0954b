//! Webhook subscriptions over HTTP. A vendor manages its own subscriptions (events about
//! its own parts); an admin manages every subscription, and creates staff-wide ones (no
//! vendor: every order). The signing secret is shown once, in the answer to the creation.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::types::Json as SqlJson;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::events::event_types;
use super::repo::{self, AttemptRow, DeliveryRow, SubscriptionRow};
use super::sender::DeliverWebhook;
use super::urls;
use crate::app::App;
use crate::base::audit;
use crate::base::principal::{Principal, Role};
use crate::base::time::fmt_time;
use crate::base::wire::error::{ApiError, FieldError, Problem};
use crate::base::wire::extract::{Json, Path, Query};
use crate::base::wire::{IdPage, Page, page_limit, split_page};
use crate::queue::{EnqueueOptions, enqueue};

/// Who may manage webhooks: admins (all) and vendors (their own).
const MANAGERS: &[Role] = &[Role::Admin, Role::Vendor];

/// Routes of the webhooks.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_subscription, list_subscriptions))
        .routes(routes!(delete_subscription))
        .routes(routes!(list_deliveries))
        .routes(routes!(retry_delivery))
}

/// A new subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// Where deliveries are posted: `https://` to a public host.
    #[schema(example = "https://erp.example.com/khaacho")]
    pub url: String,
    /// Event types (`order.validated`, `order.routed`, `order.accepted`, …,
    /// `order.reassigned`), or `["*"]` for all.
    #[schema(example = json!(["order.routed"]))]
    pub events: Vec<String>,
    /// Admins only: the vendor whose parts it hears of; absent, a staff-wide subscription
    /// (every order). A vendor's subscription is always its own.
    pub vendor_id: Option<Uuid>,
}

/// A subscription (its secret only in the answer to its creation).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Subscription {
    /// Id.
    pub id: Uuid,
    /// The vendor whose parts it hears of; `null`: staff-wide.
    pub vendor_id: Option<Uuid>,
    /// Where deliveries are posted.
    pub url: String,
    /// Event types, or `*`.
    pub events: Vec<String>,
    /// Receives new events.
    pub active: bool,
    /// Who created it.
    pub created_by: String,
    /// Created (Nepal time).
    pub created_at: String,
    /// The signing secret (`whsec_…`): shown once, at creation. Verify `Khaacho-Signature`
    /// with it (HMAC-SHA256 of `"<t>.<raw body>"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<SubscriptionRow> for Subscription {
    fn from(s: SubscriptionRow) -> Self {
        Subscription {
            id: s.id,
            vendor_id: s.vendor_id,
            url: s.url,
            events: s.events.0,
            active: s.active,
            created_by: s.created_by,
            created_at: fmt_time(s.created_at_ms),
            secret: None,
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// 1, 2, …
    pub attempt: i32,
    /// Started (Nepal time).
    pub at: String,
    /// The receiver's answer, if it answered.
    pub status_code: Option<i32>,
    /// How long it took, in milliseconds.
    pub latency_ms: i64,
    /// Why it failed (`null`: delivered).
    pub error: Option<String>,
}

/// A delivery with its log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// Id (`Khaacho-Delivery-Id`).
    pub id: Uuid,
    /// Its subscription.
    pub subscription_id: Uuid,
    /// The event (`Khaacho-Event-Id`; the same on every retry).
    pub event_id: Uuid,
    /// The event type.
    pub event_type: String,
    /// The JSON body posted.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// `queued`, `sending`, `delivered` or `dead`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// When the next attempt is due (Nepal time).
    pub next_attempt_at: String,
    /// The receiver's last answer.
    pub last_status_code: Option<i32>,
    /// How long the last attempt took, in milliseconds.
    pub last_latency_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Written (Nepal time).
    pub created_at: String,
    /// Every attempt, oldest first.
    pub log: Vec<Attempt>,
}

fn delivery_view(d: DeliveryRow, attempts: &[AttemptRow]) -> Delivery {
    Delivery {
        id: d.id,
        subscription_id: d.subscription_id,
        event_id: d.event_id,
        event_type: d.event_type,
        payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null),
        status: d.status,
        attempts: d.attempts,
        next_attempt_at: fmt_time(d.next_attempt_at_ms),
        last_status_code: d.last_status_code,
        last_latency_ms: d.last_latency_ms,
        last_error: d.last_error,
        created_at: fmt_time(d.created_at_ms),
        log: attempts
            .iter()
            .filter(|a| a.delivery_id == d.id)
            .map(|a| Attempt {
                attempt: a.attempt,
                at: fmt_time(a.at_ms),
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                error: a.error.clone(),
            })
            .collect(),
    }
}

/// The vendor whose subscriptions the caller manages (`None`: an admin, all of them).
fn scope(principal: &Principal) -> Result<Option<Uuid>, ApiError> {
    principal.require(MANAGERS)?;
    Ok(principal.vendor())
}

/// Subscribe a URL to order events: deliveries are signed with the secret in the answer.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = NewSubscription,
    responses((status = 201, body = Subscription),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create_subscription(
    State(app): State<App>,
    principal: Principal,
    body: Result<Json<NewSubscription>, ApiError>,
) -> Result<(StatusCode, axum::Json<Subscription>), ApiError> {
    let own = scope(&principal)?;
    let Json(s) = body?;
    let mut errors = Vec::new();
    if let Err(why) = urls::check(s.url.trim(), app.settings().webhooks.allow_insecure_urls) {
        errors.push(FieldError::new("url", why));
    }
    let known = event_types();
    if s.events.is_empty() {
        errors.push(FieldError::new(
            "events",
            "name at least one event type, or \"*\"",
        ));
    }
    for (i, e) in s.events.iter().enumerate() {
        if e != "*" && !known.contains(e) {
            errors.push(FieldError::new(
                format!("events[{i}]"),
                format!("unknown event type; one of *, {}", known.join(", ")),
            ));
        }
    }
    let vendor_id = match (own, s.vendor_id) {
        (Some(v), Some(asked)) if asked != v => {
            return Err(ApiError::Forbidden(
                "a vendor subscribes only for itself".into(),
            ));
        }
        (Some(v), _) => Some(v),
        (None, asked) => asked,
    };
    if let Some(v) = vendor_id
        && own.is_none()
        && !repo::vendor_exists(app.db(), v).await?
    {
        errors.push(FieldError::new("vendor_id", "no such vendor"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut events = s.events.clone();
    events.sort();
    events.dedup();
    let row = SubscriptionRow {
        id: Uuid::now_v7(),
        vendor_id,
        url: s.url.trim().to_string(),
        events: SqlJson(events),
        secret: khaacho_auth::webhook::generate_secret(),
        active: true,
        created_by: principal.actor(),
        created_at_ms: app.clock().now_ms(),
        deleted_at_ms: None,
    };
    let mut tx = app.db().begin().await?;
    repo::insert_subscription(&mut tx, &row).await?;
    let entry = principal
        .audit("webhook.create")
        .on("webhook_subscription", row.id)
        .summary(serde_json::json!({ "url": row.url, "events": row.events.0, "vendor_id": row.vendor_id }));
    audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    let secret = row.secret.clone();
    let mut view = Subscription::from(row);
    view.secret = Some(secret);
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// The caller's subscriptions (an admin: all), newest first.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(IdPage),
    responses((status = 200, body = Page<Subscription>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn list_subscriptions(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<IdPage>,
) -> Result<axum::Json<Page<Subscription>>, ApiError> {
    let own = scope(&principal)?;
    let limit = page_limit(p.limit)?;
    let rows = repo::list_subscriptions(app.db(), own, p.cursor, limit + 1).await?;
    let (rows, next) = split_page(rows, limit, |s| s.id.to_string());
    Ok(axum::Json(Page {
        items: rows.into_iter().map(Subscription::from).collect(),
        next_cursor: next,
    }))
}

/// Delete a subscription: it hears of nothing more and its queued deliveries go dead; its
/// delivery log stays.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses((status = 204, description = "Deleted"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn delete_subscription(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let own = scope(&principal)?;
    if repo::find_subscription(app.db(), id, own).await?.is_none() {
        return Err(ApiError::NotFound("webhook subscription"));
    }
    let mut tx = app.db().begin().await?;
    if !repo::delete_subscription(&mut tx, id, app.clock().now_ms()).await? {
        return Err(ApiError::NotFound("webhook subscription"));
    }
    audit::record_tx(
        &mut tx,
        &principal
            .audit("webhook.delete")
            .on("webhook_subscription", id),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Filters of a subscription's deliveries.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// Only in this status: `queued`, `sending`, `delivered`, `dead`.
    pub status: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

const STATUSES: [&str; 4] = ["queued", "sending", "delivered", "dead"];

/// A subscription's deliveries with their attempt log, newest first.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id"), DeliveryParams),
    responses((status = 200, body = Page<Delivery>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn list_deliveries(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    Query(p): Query<DeliveryParams>,
) -> Result<axum::Json<Page<Delivery>>, ApiError> {
    let own = scope(&principal)?;
    let limit = page_limit(p.limit)?;
    if let Some(s) = p.status.as_deref()
        && !STATUSES.contains(&s)
    {
        return Err(ApiError::param(
            "status",
            format!("status must be one of {}", STATUSES.join(", ")),
        ));
    }
    if repo::find_subscription(app.db(), id, own).await?.is_none() {
        return Err(ApiError::NotFound("webhook subscription"));
    }
    let rows =
        repo::list_deliveries(app.db(), id, p.status.as_deref(), p.cursor, limit + 1).await?;
    let (rows, next) = split_page(rows, limit, |d| d.id.to_string());
    let ids: Vec<Uuid> = rows.iter().map(|d| d.id).collect();
    let attempts = repo::attempts_of(app.db(), &ids).await?;
    Ok(axum::Json(Page {
        items: rows
            .into_iter()
            .map(|d| delivery_view(d, &attempts))
            .collect(),
        next_cursor: next,
    }))
}

/// Put a `dead` delivery back in the queue (its subscription's owner, or an admin; audited).
#[utoipa::path(post, path = "/webhooks/deliveries/{id}/retry", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Delivery id")),
    responses((status = 200, body = Delivery),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn retry_delivery(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Delivery>, ApiError> {
    let own = scope(&principal)?;
    let Some(before) = repo::find_delivery(app.db(), id).await? else {
        return Err(ApiError::NotFound("webhook delivery"));
    };
    if repo::find_subscription(app.db(), before.subscription_id, own)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("webhook delivery"));
    }
    let now = app.clock().now_ms();
    let mut tx = app.db().begin().await?;
    if !repo::requeue(&mut tx, id, now).await? {
        return Err(ApiError::Conflict(format!(
            "only dead deliveries can be retried; this one is {}",
            before.status
        )));
    }
    enqueue(&mut tx, &DeliverWebhook { id }, EnqueueOptions::default()).await?;
    let entry = principal
        .audit("webhook.retry")
        .on("webhook_delivery", id)
        .summary(serde_json::json!({ "from": before.status, "attempts": before.attempts }));
    audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    let after = repo::find_delivery(app.db(), id)
        .await?
        .ok_or(ApiError::NotFound("webhook delivery"))?;
    let attempts = repo::attempts_of(app.db(), &[id]).await?;
    Ok(axum::Json(delivery_view(after, &attempts)))
}
