//! HTTP routes of orders.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::actions::{self, Action, ActionError};
use super::confirmations;
use super::detail;
use super::intake::{Accepted, Channel, CreateOrder, IntakeError, LineInput, OrderRequest};
use super::model::{Actor, EventRow, LineRow, OrderRow, OrderStatus};
use super::pipeline::parse::{self, ParseRequest, ParseResult, PreviewError};
use super::repo::{self, ListFilter};
use super::visibility::Visibility;
use crate::app::App;
use crate::base::domain::{milli_to_qty, paisa_to_npr};
use crate::base::principal::{ALL_ROLES, Principal, Role, STAFF};
use crate::base::time::fmt_time;
use crate::base::wire::error::{ApiError, Problem};
use crate::base::wire::extract::{Json, Path, Query};
use crate::base::wire::{Page, decode_cursor, encode_cursor, request_id};
use crate::fulfilment::routes::{self as fulfilment, DecisionView, FulfilmentView};

/// Routes of this feature.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(get_order_status))
        .routes(routes!(approve_order))
        .routes(routes!(reject_order))
        .routes(routes!(cancel_order))
        .routes(routes!(confirm_order))
        .routes(routes!(report_issue))
        .routes(routes!(parse_order_text))
}

/// What a text would mean as an order, without creating anything.
#[utoipa::path(post, path = "/orders/parse", tag = "orders", request_body = ParseRequest,
    responses((status = 200, body = ParseResult), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn parse_order_text(
    State(app): State<App>,
    principal: Principal,
    body: Result<Json<ParseRequest>, ApiError>,
) -> Result<axum::Json<ParseResult>, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Retailer])?;
    let Json(req) = body?;
    match parse::preview(&app, &req).await {
        Ok(result) => Ok(axum::Json(result)),
        Err(PreviewError::Invalid(e)) => Err(ApiError::Validation(vec![e])),
        Err(PreviewError::Storage(e)) => Err(e.into()),
    }
}

/// Accept an order. Answers 202 once the order and its processing job are committed.
#[utoipa::path(post, path = "/orders", tag = "orders",
    request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for a repeated key")),
    responses(
        (status = 202, description = "Accepted; poll status_url", body = Accepted),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid order", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The pipeline is behind (back-pressure); retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_order(
    State(app): State<App>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Json<CreateOrder>, ApiError>,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Retailer])?;
    let Json(body) = body?;
    // A retailer orders for itself: its own id is implied, another one is refused; staff
    // name the retailer they order for.
    let retailer_id = match (principal.retailer(), body.retailer_id) {
        (Some(own), Some(named)) if own != named => {
            return Err(ApiError::Forbidden(
                "a retailer can only order for its own retailer_id".into(),
            ));
        }
        (Some(own), _) => own,
        (None, Some(named)) => named,
        (None, None) => {
            return Err(ApiError::field(
                "retailer_id",
                "name the retailer this order is for",
            ));
        }
    };
    let request = OrderRequest {
        retailer_id,
        body,
        channel: Channel::Api,
        actor: actor_of(&principal),
        idempotency_key: headers
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap_or_default().to_string()),
        correlation_id: request_id(&headers),
    };
    let result = app.intake().accept(request).await.map_err(intake_error)?;
    let mut resp = (StatusCode::ACCEPTED, axum::Json(&result.accepted)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/orders/{}", result.accepted.order_id))
    {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    if result.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// Renders an intake refusal.
fn intake_error(e: IntakeError) -> ApiError {
    match e {
        IntakeError::Invalid(errors) => ApiError::Validation(errors),
        IntakeError::KeyReused => {
            ApiError::BadRequest(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        IntakeError::KeyInProgress => ApiError::Conflict(e.to_string()),
        IntakeError::Overloaded(o) => ApiError::Overloaded {
            detail: e.to_string(),
            retry_after_secs: o.retry_after_secs,
        },
        IntakeError::Storage(e) => e.into(),
    }
}

/// Renders a refused action.
fn action_error(e: ActionError) -> ApiError {
    match e {
        ActionError::Invalid(errors) => ApiError::Validation(errors),
        ActionError::NotFound => ApiError::NotFound("order"),
        ActionError::Illegal(msg) => ApiError::IllegalTransition(msg),
        ActionError::Storage(e) => e.into(),
    }
}

/// The caller as it is recorded in an order's history.
fn actor_of(principal: &Principal) -> Actor {
    Actor {
        id: principal.actor(),
        role: principal.role.as_str(),
    }
}

/// A priced order line.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LineView {
    /// Position, from 1.
    pub line_no: i32,
    /// Requested SKU.
    pub sku: String,
    /// Requested quantity.
    pub qty: f64,
    /// Requested unit.
    pub unit: String,
    /// Product name (once validated).
    pub product_name: Option<String>,
    /// Quantity in the product's base unit.
    pub base_qty: Option<f64>,
    /// The base unit.
    pub base_unit: Option<String>,
    /// Price per base unit, NPR.
    pub unit_price_npr: Option<f64>,
    /// Amount before VAT, NPR.
    pub subtotal_npr: Option<f64>,
    /// VAT, NPR.
    pub vat_npr: Option<f64>,
    /// Amount with VAT, NPR.
    pub total_npr: Option<f64>,
    /// Why this price.
    pub price_reason: Option<String>,
    /// Offering vendor.
    pub vendor_id: Option<Uuid>,
    /// Why the line was refused.
    pub reject_code: Option<String>,
    /// Detail of the refusal.
    pub reject_detail: Option<String>,
}

impl From<LineRow> for LineView {
    fn from(l: LineRow) -> Self {
        Self {
            line_no: l.line_no,
            sku: l.sku,
            qty: milli_to_qty(l.qty_milli),
            unit: l.unit,
            product_name: l.product_name,
            base_qty: l.base_qty_milli.map(milli_to_qty),
            base_unit: l.base_unit,
            unit_price_npr: l.unit_price_paisa.map(paisa_to_npr),
            subtotal_npr: l.subtotal_paisa.map(paisa_to_npr),
            vat_npr: l.vat_paisa.map(paisa_to_npr),
            total_npr: l.total_paisa.map(paisa_to_npr),
            price_reason: l.price_reason,
            vendor_id: l.vendor_id,
            reject_code: l.reject_code,
            reject_detail: l.reject_detail,
        }
    }
}

/// One entry of the order's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Previous status.
    pub from: Option<String>,
    /// New status.
    pub to: String,
    /// Who.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// Why.
    pub reason: Option<String>,
    /// Structured detail: refused lines, the parse behind a review hold, a failed job.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
    /// When (Nepal time, RFC 3339).
    pub at: String,
}

impl EventView {
    fn new(e: EventRow, visibility: Visibility) -> Self {
        Self {
            from: e.from_status,
            to: e.to_status,
            actor: e.actor,
            role: e.role,
            reason: e.reason,
            detail: e.detail.map(|d| visibility.event_detail(d.0)),
            at: fmt_time(e.at_ms),
        }
    }
}

/// Order totals.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    /// Sum before VAT, NPR.
    pub subtotal_npr: f64,
    /// VAT 13%, NPR.
    pub vat_npr: f64,
    /// Total, NPR.
    pub total_npr: f64,
}

/// An order with its lines and history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    /// Id.
    pub id: Uuid,
    /// Buyer.
    pub retailer_id: Uuid,
    /// Current state.
    pub status: OrderStatus,
    /// Share of the way to completion.
    pub progress_percent: u8,
    /// Priority.
    pub priority: String,
    /// Channel it came through.
    pub channel: String,
    /// Retailer's note.
    pub note: Option<String>,
    /// Why it is on hold.
    pub hold_reason: Option<String>,
    /// Why it was rejected, cancelled or failed.
    pub reject_reason: Option<String>,
    /// Totals once priced.
    pub totals: Option<Totals>,
    /// Creation time (Nepal time).
    pub created_at: String,
    /// Last change (Nepal time).
    pub updated_at: String,
    /// Lines (omitted in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LineView>>,
    /// History (omitted in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventView>>,
    /// `credit` or `cash` on delivery.
    pub payment_mode: String,
    /// The credit reserved for this order (detail only; not shown to vendors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit_hold: Option<CreditHoldView>,
    /// The order's risk assessment (detail only; not shown to vendors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskView>,
    /// Its vendor parts (detail only; a vendor sees its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fulfilments: Option<Vec<FulfilmentView>>,
    /// Routing decisions with their candidates, scores and reasons (detail only; staff).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<Vec<DecisionView>>,
}

/// The credit hold of an order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreditHoldView {
    /// Reserved amount, NPR.
    pub amount_npr: f64,
    /// `pending`, `posted`, `voided`, `expired`.
    pub status: String,
    /// Who approved it past the limit, if anyone.
    pub override_by: Option<String>,
    /// Posted (delivered) amount, NPR.
    pub posted_npr: Option<f64>,
}

/// An order's risk assessment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RiskView {
    /// 0 (none) to 100.
    pub score: i32,
    /// `pass`, `review` or `reject`.
    pub decision: String,
    /// `[{name, weight, points}]`: the retailer components.
    #[schema(value_type = Object)]
    pub components: serde_json::Value,
    /// `[{code, text}]`: why.
    #[schema(value_type = Object)]
    pub reasons: serde_json::Value,
}

impl OrderView {
    /// The order as `visibility` lets its caller see it; every route returning orders builds
    /// its answer here.
    fn new(
        o: OrderRow,
        lines: Option<Vec<LineRow>>,
        events: Option<Vec<EventRow>>,
        visibility: Visibility,
    ) -> Self {
        let status = o.status();
        let totals = match (o.subtotal_paisa, o.vat_paisa, o.total_paisa) {
            _ if !visibility.shows_totals() => None,
            (Some(s), Some(v), Some(t)) => Some(Totals {
                subtotal_npr: paisa_to_npr(s),
                vat_npr: paisa_to_npr(v),
                total_npr: paisa_to_npr(t),
            }),
            _ => None,
        };
        Self {
            id: o.id,
            retailer_id: o.retailer_id,
            status,
            progress_percent: status.progress_percent(),
            priority: o.priority,
            channel: o.channel,
            note: o.note,
            hold_reason: o.hold_reason,
            reject_reason: o.reject_reason,
            totals,
            created_at: fmt_time(o.created_at_ms),
            updated_at: fmt_time(o.updated_at_ms),
            lines: lines.map(|l| {
                visibility
                    .lines(l)
                    .into_iter()
                    .map(LineView::from)
                    .collect()
            }),
            events: events.map(|e| {
                e.into_iter()
                    .map(|e| EventView::new(e, visibility))
                    .collect()
            }),
            payment_mode: o.payment_mode,
            credit_hold: None,
            risk: None,
            fulfilments: None,
            routing: None,
        }
    }
}

/// The order `id` if the caller may read it; another tenant's order is "not found".
async fn visible_order(app: &App, principal: &Principal, id: Uuid) -> Result<OrderRow, ApiError> {
    principal.require(ALL_ROLES)?;
    repo::find(app.db(), principal.order_scope(), id)
        .await?
        .ok_or(ApiError::NotFound("order"))
}

/// An order with its priced lines, totals and event history.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_order(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let order = visible_order(&app, &principal, id).await?;
    let visibility = Visibility::of(&principal);
    let wants = detail::Wants {
        credit: visibility.shows_totals(),
        decisions: principal.is_staff(),
    };
    let d = detail::read(app.db(), &order, wants).await?;
    let mut view = OrderView::new(order, Some(d.lines), Some(d.events), visibility);
    view.credit_hold = d.hold.map(|h| CreditHoldView {
        amount_npr: paisa_to_npr(h.amount_paisa),
        status: h.status,
        override_by: h.override_by,
        posted_npr: h.posted_paisa.map(paisa_to_npr),
    });
    view.risk = d.assessment.map(|r| RiskView {
        score: r.score,
        decision: r.decision,
        components: r.components.0,
        reasons: r.reasons.0,
    });
    view.fulfilments = Some(fulfilment::visible_parts(
        &principal,
        d.parts,
        d.part_lines,
        d.offers,
        &d.shops,
    ));
    if wants.decisions {
        view.routing = Some(fulfilment::decision_views(d.decisions));
    }
    Ok(axum::Json(view))
}

/// The short status answer polled after a 202.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    /// Order id.
    pub order_id: Uuid,
    /// Current state.
    pub status: OrderStatus,
    /// Share of the way to completion.
    pub progress_percent: u8,
    /// Why it is on hold.
    pub hold_reason: Option<String>,
    /// Why it was rejected, cancelled or failed.
    pub reject_reason: Option<String>,
    /// Last change (Nepal time).
    pub updated_at: String,
}

/// Current state of an order (cheap; for polling).
#[utoipa::path(get, path = "/orders/{id}/status", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = StatusView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_order_status(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<StatusView>, ApiError> {
    let o = visible_order(&app, &principal, id).await?;
    let status = o.status();
    Ok(axum::Json(StatusView {
        order_id: o.id,
        status,
        progress_percent: status.progress_percent(),
        hold_reason: o.hold_reason,
        reject_reason: o.reject_reason,
        updated_at: fmt_time(o.updated_at_ms),
    }))
}

/// Filters of the order list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only orders in this state.
    pub status: Option<OrderStatus>,
    /// Only this retailer's orders.
    pub retailer_id: Option<Uuid>,
    /// Created at or after (RFC 3339).
    pub from: Option<String>,
    /// Created before (RFC 3339).
    pub to: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Orders, newest first, with cursor pagination.
#[utoipa::path(get, path = "/orders", tag = "orders", params(ListParams),
    responses((status = 200, body = Page<OrderView>), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn list_orders(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<ListParams>,
) -> Result<axum::Json<Page<OrderView>>, ApiError> {
    principal.require(ALL_ROLES)?;
    let limit = crate::base::wire::page_limit(p.limit)?;
    let after = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = ListFilter {
        status: p.status,
        retailer_id: p.retailer_id,
        from_ms: crate::base::wire::parse_time_param("from", p.from.as_deref())?,
        to_ms: crate::base::wire::parse_time_param("to", p.to.as_deref())?,
        after,
        limit: limit + 1,
    };
    let rows = repo::list(app.db(), principal.order_scope(), &filter).await?;
    let (rows, next) =
        crate::base::wire::split_page(rows, limit, |o| encode_cursor(o.created_at_ms, o.id));
    Ok(axum::Json(Page {
        items: rows
            .into_iter()
            .map(|o| OrderView::new(o, None, None, Visibility::of(&principal)))
            .collect(),
        next_cursor: next,
    }))
}

/// Body of the operator actions.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// Why (required to reject).
    #[serde(default)]
    pub reason: Option<String>,
    /// Approving a text order held for `parse_review`: the corrected lines (replace what
    /// the parser understood).
    #[serde(default)]
    pub lines: Option<Vec<LineInput>>,
}

async fn act(
    app: &App,
    principal: &Principal,
    id: Uuid,
    action: Action,
    body: ActionBody,
) -> Result<axum::Json<OrderView>, ApiError> {
    let audit = Some(principal.audit("order"));
    let order = if action == Action::Confirm && body.lines.is_none() {
        // Many confirmations per transaction (`orders::confirmations`).
        confirmations::submit(
            app,
            principal.order_scope(),
            id,
            &actor_of(principal),
            body.reason.as_deref(),
            audit,
        )
        .await
    } else {
        actions::apply(
            app,
            principal.order_scope(),
            id,
            action,
            &actor_of(principal),
            body.reason.as_deref(),
            body.lines.as_deref(),
            audit,
        )
        .await
    }
    .map_err(action_error)?;
    Ok(axum::Json(OrderView::new(
        order,
        None,
        None,
        Visibility::of(principal),
    )))
}

/// Approve an order on hold: it continues from where it was held.
#[utoipa::path(post, path = "/orders/{id}/approve", tag = "orders", request_body = ActionBody,
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn approve_order(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<ActionBody>, ApiError>,
) -> Result<axum::Json<OrderView>, ApiError> {
    principal.require(STAFF)?;
    act(&app, &principal, id, Action::Approve, body?.0).await
}

/// Reject an order (a reason is required).
#[utoipa::path(post, path = "/orders/{id}/reject", tag = "orders", request_body = ActionBody,
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn reject_order(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<ActionBody>, ApiError>,
) -> Result<axum::Json<OrderView>, ApiError> {
    principal.require(STAFF)?;
    act(&app, &principal, id, Action::Reject, body?.0).await
}

/// Confirm receipt of a delivered order (the retailer, or staff for it): it is completed.
/// Unconfirmed delivered orders complete themselves after `fulfilment.auto_complete_hours`.
#[utoipa::path(post, path = "/orders/{id}/confirm", tag = "orders", request_body = ActionBody,
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn confirm_order(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<ActionBody>, ApiError>,
) -> Result<axum::Json<OrderView>, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Retailer])?;
    act(&app, &principal, id, Action::Confirm, body?.0).await
}

/// Report a problem with a delivered order (`reason` says what): it is held for an operator,
/// who approves it (back to delivered) or cancels it (a refund credit of what was posted).
#[utoipa::path(post, path = "/orders/{id}/report-issue", tag = "orders", request_body = ActionBody,
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn report_issue(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<ActionBody>, ApiError>,
) -> Result<axum::Json<OrderView>, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Retailer])?;
    act(&app, &principal, id, Action::ReportIssue, body?.0).await
}

/// Cancel an order that is not yet finished.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", request_body = ActionBody,
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn cancel_order(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<ActionBody>, ApiError>,
) -> Result<axum::Json<OrderView>, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Retailer])?;
    act(&app, &principal, id, Action::Cancel, body?.0).await
}
