//! HTTP routes of fulfilment: vendor parts and their actions, the routing decisions of an
//! order and the routing preview.
//!
//! A vendor sees only the parts offered to or accepted by it (another vendor's part, or one
//! that moved on, is simply not found) and only its own offers; staff see everything and may
//! act for a vendor with a reason.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::facts;
use super::repo::{self as parts, PartRow, PartStatus};
use super::service::{self, Acting, FulfilmentError, PartAction};
use crate::app::App;
use crate::base::db::Reader;
use crate::base::domain::{milli_to_qty, paisa_to_npr, qty_to_milli};
use crate::base::principal::{Principal, Role, STAFF};
use crate::base::time::fmt_time;
use crate::base::wire::error::{ApiError, FieldError, Problem};
use crate::base::wire::extract::{Json, Path, Query};
use crate::base::wire::{Page, page_limit, split_page};
use crate::orders::model::Actor;
use crate::orders::repo;
use crate::parties::repo::{self as parties, Retailer};

/// Who may see and act on parts (a vendor: its own).
const PART_ROLES: &[Role] = &[Role::Admin, Role::Operator, Role::Vendor];

/// Routes of this feature.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(get_routing))
        .routes(routes!(list_fulfilments))
        .routes(routes!(get_fulfilment))
        .routes(routes!(accept_fulfilment))
        .routes(routes!(reject_fulfilment))
        .routes(routes!(cancel_fulfilment))
        .routes(routes!(dispatch_fulfilment))
        .routes(routes!(deliver_fulfilment))
        .routes(routes!(order_routing_decisions))
        .merge(super::score_routes::router())
}

/// One line of a vendor part.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FulfilmentLineView {
    /// The order line.
    pub line_no: i32,
    /// Product.
    pub product_id: Uuid,
    /// Quantity ordered, in `unit`.
    pub quantity: f64,
    /// The product's base unit.
    pub unit: String,
    /// Taken from the vendor's stock (once accepted).
    pub reserved_quantity: f64,
    /// Handed over (once delivered).
    pub delivered_quantity: Option<f64>,
}

/// One offer of a part to a vendor.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OfferView {
    /// Id.
    pub id: Uuid,
    /// The vendor asked.
    pub vendor_id: Uuid,
    /// `offered`, `accepted`, `rejected`, `expired`, `cancelled` (its order withdrawn),
    /// `cancelled_by_vendor` (accepted, then given back).
    pub status: String,
    /// Sent (Nepal time).
    pub offered_at: String,
    /// Answer by (Nepal time).
    pub deadline: String,
    /// Answered or expired (Nepal time).
    pub responded_at: Option<String>,
    /// The reason given.
    pub reason: Option<String>,
}

/// Where a part goes: the retailer's shop. Its vendor sees the shop's name and district with
/// the offer (to decide on it), and the address, phone and coordinates once it has accepted
/// the part (to deliver it); staff see everything.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliverToView {
    /// The retailer.
    pub retailer_id: Uuid,
    /// Shop name.
    pub name: String,
    /// District.
    pub district: String,
    /// Street address (once accepted).
    pub address: Option<String>,
    /// E.164 phone (once accepted).
    pub phone: Option<String>,
    /// Latitude (once accepted).
    pub lat: Option<f64>,
    /// Longitude (once accepted).
    pub lng: Option<f64>,
}

impl DeliverToView {
    /// `shop` as `principal` may see it on part `p`: a vendor sees its contact once it
    /// accepted `p`; staff (and the retailer itself, reading its order) always.
    fn of(shop: &Retailer, p: &PartRow, principal: &Principal) -> Self {
        let contact = principal.role != Role::Vendor || p.accepted_at_ms.is_some();
        DeliverToView {
            retailer_id: shop.id,
            name: shop.name.clone(),
            district: shop.district.clone(),
            address: shop.address.clone().filter(|_| contact),
            phone: contact.then(|| shop.phone.clone()),
            lat: shop.lat.filter(|_| contact),
            lng: shop.lng.filter(|_| contact),
        }
    }
}

/// A vendor part of an order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FulfilmentView {
    /// Id.
    pub id: Uuid,
    /// The order.
    pub order_id: Uuid,
    /// The vendor it is offered to or accepted by (none once no vendor is left).
    pub vendor_id: Option<Uuid>,
    /// `offered`, `accepted`, `dispatched`, `delivered`, `unassigned`, `cancelled`.
    pub status: String,
    /// What may be done now: `accept`, `reject`, `dispatch`, `cancel`, `deliver`.
    pub allowed_actions: Vec<String>,
    /// Answer the open offer by (Nepal time).
    pub deadline: Option<String>,
    /// Times it moved to another vendor.
    pub reassignments: i32,
    /// The shop it goes to (absent only when its record could not be read, e.g. from a read
    /// replica that has not yet seen a retailer registered moments ago).
    pub deliver_to: Option<DeliverToView>,
    /// Its lines at the order's prices, VAT included, NPR.
    pub total_npr: f64,
    /// What was handed over, VAT included, NPR.
    pub delivered_npr: Option<f64>,
    /// Accepted (Nepal time).
    pub accepted_at: Option<String>,
    /// Dispatched (Nepal time).
    pub dispatched_at: Option<String>,
    /// Delivered (Nepal time).
    pub delivered_at: Option<String>,
    /// Lines.
    pub lines: Vec<FulfilmentLineView>,
    /// Offers, oldest first (a vendor sees only its own).
    pub offers: Vec<OfferView>,
}

impl FulfilmentView {
    fn new(
        p: PartRow,
        lines: Vec<parts::PartLineRow>,
        offers: Vec<parts::PartOfferRow>,
        deliver_to: Option<DeliverToView>,
    ) -> Self {
        FulfilmentView {
            deliver_to,
            allowed_actions: service::allowed(p.status())
                .iter()
                .map(|a| a.to_string())
                .collect(),
            id: p.id,
            order_id: p.order_id,
            vendor_id: p.vendor_id,
            deadline: p.deadline_ms.map(fmt_time),
            reassignments: p.reassignments,
            total_npr: paisa_to_npr(p.total_paisa),
            delivered_npr: p.delivered_paisa.map(paisa_to_npr),
            accepted_at: p.accepted_at_ms.map(fmt_time),
            dispatched_at: p.dispatched_at_ms.map(fmt_time),
            delivered_at: p.delivered_at_ms.map(fmt_time),
            status: p.status,
            lines: lines
                .into_iter()
                .map(|l| FulfilmentLineView {
                    line_no: l.line_no,
                    product_id: l.product_id,
                    quantity: milli_to_qty(l.qty_milli),
                    unit: l.unit,
                    reserved_quantity: milli_to_qty(l.reserved_milli),
                    delivered_quantity: l.delivered_milli.map(milli_to_qty),
                })
                .collect(),
            offers: offers
                .into_iter()
                .map(|o| OfferView {
                    id: o.id,
                    vendor_id: o.vendor_id,
                    status: o.status,
                    offered_at: fmt_time(o.offered_at_ms),
                    deadline: fmt_time(o.deadline_ms),
                    responded_at: o.responded_at_ms.map(fmt_time),
                    reason: o.reason,
                })
                .collect(),
        }
    }
}

/// Renders `rows` for `principal`: a vendor sees only its own offers.
pub async fn views(
    app: &App,
    principal: &Principal,
    rows: Vec<PartRow>,
) -> Result<Vec<FulfilmentView>, ApiError> {
    let ids: Vec<Uuid> = rows.iter().map(|p| p.id).collect();
    let lines = parts::lines(app.db(), &ids).await?;
    render(app, principal, rows, lines).await
}

/// Renders `rows` with their `lines` (already read), reading their offers and shops.
async fn render(
    app: &App,
    principal: &Principal,
    rows: Vec<PartRow>,
    lines: Vec<parts::PartLineRow>,
) -> Result<Vec<FulfilmentView>, ApiError> {
    let ids: Vec<Uuid> = rows.iter().map(|p| p.id).collect();
    let offers = parts::offers(app.db(), &ids).await?;
    let shops = shops_of(app, &rows).await?;
    Ok(shown(principal, rows, lines, offers, &shops))
}

/// The shops `rows` go to (one read).
async fn shops_of(app: &App, rows: &[PartRow]) -> Result<Vec<Retailer>, ApiError> {
    let ids: Vec<Uuid> = rows.iter().map(|p| p.retailer_id).collect();
    Ok(parties::find_retailers(&mut Reader::Pool(app.db()), &ids).await?)
}

/// Renders `rows` with their `lines`, `offers` and `shops` (all already read): a vendor sees
/// only its own offers, and a shop's contact only on a part it accepted.
fn shown(
    principal: &Principal,
    rows: Vec<PartRow>,
    mut lines: Vec<parts::PartLineRow>,
    mut offers: Vec<parts::PartOfferRow>,
    shops: &[Retailer],
) -> Vec<FulfilmentView> {
    if let Some(v) = principal
        .vendor()
        .filter(|_| principal.role == Role::Vendor)
    {
        offers.retain(|o| o.vendor_id == v);
    }
    rows.into_iter()
        .map(|p| {
            let mine = lines.extract_if(.., |l| l.fulfilment_id == p.id).collect();
            let offered = offers.extract_if(.., |o| o.fulfilment_id == p.id).collect();
            let shop = shops
                .iter()
                .find(|s| s.id == p.retailer_id)
                .map(|s| DeliverToView::of(s, &p, principal));
            FulfilmentView::new(p, mine, offered, shop)
        })
        .collect()
}

/// The parts of an order that `principal` may see (a vendor: its own), from the rows the
/// order view read ([`crate::orders::detail`]).
pub fn visible_parts(
    principal: &Principal,
    mut rows: Vec<PartRow>,
    mut lines: Vec<parts::PartLineRow>,
    offers: Vec<parts::PartOfferRow>,
    shops: &[Retailer],
) -> Vec<FulfilmentView> {
    if principal.role == Role::Vendor {
        rows.retain(|p| p.vendor_id.is_some() && p.vendor_id == principal.vendor());
        lines.retain(|l| rows.iter().any(|p| p.id == l.fulfilment_id));
    }
    shown(principal, rows, lines, offers, shops)
}

/// Filters of the parts list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FulfilmentParams {
    /// Only parts in this status (`offered`, `accepted`, `dispatched`, `delivered`,
    /// `unassigned`, `cancelled`).
    pub status: Option<String>,
    /// Only this vendor's (staff; a vendor always sees its own).
    pub vendor_id: Option<Uuid>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

/// Vendor parts, newest first: a vendor's own (its inbox of offers with `status=offered`),
/// or everyone's for staff.
#[utoipa::path(get, path = "/fulfilments", tag = "fulfilment", params(FulfilmentParams),
    responses((status = 200, body = Page<FulfilmentView>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn list_fulfilments(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<FulfilmentParams>,
) -> Result<axum::Json<Page<FulfilmentView>>, ApiError> {
    principal.require(PART_ROLES)?;
    let limit = page_limit(p.limit)?;
    if let Some(s) = p
        .status
        .as_deref()
        .filter(|s| PartStatus::parse(s).is_none())
    {
        let names: Vec<&str> = PartStatus::ALL.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::param(
            "status",
            format!("unknown status {s:?}; one of {}", names.join(", ")),
        ));
    }
    let vendor = if principal.role == Role::Vendor {
        Some(principal.vendor().unwrap_or(Uuid::nil()))
    } else {
        p.vendor_id
    };
    let rows = parts::list(app.db(), vendor, p.status.as_deref(), p.cursor, limit + 1).await?;
    let (rows, next) = split_page(rows, limit, |r| r.id.to_string());
    Ok(axum::Json(Page {
        items: views(&app, &principal, rows).await?,
        next_cursor: next,
    }))
}

/// A part the caller may see, or 404.
async fn visible(app: &App, principal: &Principal, id: Uuid) -> Result<PartRow, ApiError> {
    let part = parts::find(app.db(), id)
        .await?
        .ok_or(ApiError::NotFound("fulfilment"))?;
    if principal.role == Role::Vendor
        && (part.vendor_id.is_none() || part.vendor_id != principal.vendor())
    {
        return Err(ApiError::NotFound("fulfilment"));
    }
    Ok(part)
}

/// One vendor part with its lines and offers.
#[utoipa::path(get, path = "/fulfilments/{id}", tag = "fulfilment",
    params(("id" = Uuid, Path, description = "Fulfilment id")),
    responses((status = 200, body = FulfilmentView),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_fulfilment(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<FulfilmentView>, ApiError> {
    principal.require(PART_ROLES)?;
    let part = visible(&app, &principal, id).await?;
    let mut v = views(&app, &principal, vec![part]).await?;
    v.pop()
        .map(axum::Json)
        .ok_or(ApiError::NotFound("fulfilment"))
}

/// Body of accept, reject and dispatch.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartActionBody {
    /// Why (required to reject or cancel, and of an operator acting for a vendor).
    #[serde(default)]
    pub reason: Option<String>,
}

/// One delivered line.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveredLine {
    /// The order line.
    pub line_no: i32,
    /// Quantity handed over, in the line's base unit (0 up to what was ordered).
    pub quantity: f64,
}

/// Body of deliver.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverBody {
    /// Lines delivered short (lines not named were delivered in full).
    #[serde(default)]
    pub lines: Vec<DeliveredLine>,
    /// Why (required of an operator acting for a vendor).
    #[serde(default)]
    pub reason: Option<String>,
}

async fn act(
    app: &App,
    principal: &Principal,
    id: Uuid,
    action: PartAction,
    reason: Option<&str>,
) -> Result<axum::Json<FulfilmentView>, ApiError> {
    principal.require(PART_ROLES)?;
    let actor = Actor {
        id: principal.actor(),
        role: principal.role.as_str(),
    };
    let verb = match &action {
        PartAction::Accept => "fulfilment.accept",
        PartAction::Reject => "fulfilment.reject",
        PartAction::Cancel => "fulfilment.cancel",
        PartAction::Dispatch => "fulfilment.dispatch",
        PartAction::Deliver(_) => "fulfilment.deliver",
    };
    let acting = Acting {
        vendor: (principal.role == Role::Vendor).then(|| principal.vendor().unwrap_or(Uuid::nil())),
        actor: &actor,
        reason,
        audit: principal.is_staff().then(|| principal.audit(verb)),
    };
    let acted = match acting.vendor {
        // A vendor's own accept, dispatch or delivery: the group commit finds the part (a
        // vendor acting on a part not its own learns nothing about it).
        Some(vendor) if super::batch::batched(&acting, &action) => {
            super::batch::submit(app, id, vendor, &actor, reason, action).await
        }
        _ => {
            let found = visible(app, principal, id).await?;
            service::act(app, &found, &acting, action).await
        }
    }
    .map_err(fulfilment_error)?;
    let mut v = match (acted.offers, acted.shop) {
        (Some(offers), Some(shop)) => {
            shown(principal, vec![acted.part], acted.lines, offers, &[shop])
        }
        _ => render(app, principal, vec![acted.part], acted.lines).await?,
    };
    v.pop()
        .map(axum::Json)
        .ok_or(ApiError::NotFound("fulfilment"))
}

fn fulfilment_error(e: FulfilmentError) -> ApiError {
    match e {
        FulfilmentError::NotFound => ApiError::NotFound("fulfilment"),
        FulfilmentError::Invalid(errors) => ApiError::Validation(errors),
        FulfilmentError::Illegal(m) => ApiError::IllegalTransition(m),
        FulfilmentError::OutOfStock(m) => ApiError::Conflict(m),
        FulfilmentError::Ledger(e) => ApiError::Conflict(e.to_string()),
        e @ FulfilmentError::Overbooked => ApiError::Conflict(e.to_string()),
        FulfilmentError::Storage(e) => e.into(),
    }
}

/// Accept the offer of a part: its stock is reserved. Exactly one of concurrent accepts
/// wins; after the deadline the offer is refused (409).
#[utoipa::path(post, path = "/fulfilments/{id}/accept", tag = "fulfilment", request_body = PartActionBody,
    params(("id" = Uuid, Path, description = "Fulfilment id")),
    responses((status = 200, body = FulfilmentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn accept_fulfilment(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<PartActionBody>, ApiError>,
) -> Result<axum::Json<FulfilmentView>, ApiError> {
    simple_action(&app, &principal, id, body, PartAction::Accept).await
}

/// Reject the offer of a part (a reason is required): it goes to the next best vendor not
/// yet asked, or, after the last reassignment, the order waits for an operator.
#[utoipa::path(post, path = "/fulfilments/{id}/reject", tag = "fulfilment", request_body = PartActionBody,
    params(("id" = Uuid, Path, description = "Fulfilment id")),
    responses((status = 200, body = FulfilmentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn reject_fulfilment(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<PartActionBody>, ApiError>,
) -> Result<axum::Json<FulfilmentView>, ApiError> {
    simple_action(&app, &principal, id, body, PartAction::Reject).await
}

/// Give back an accepted part that cannot be delivered, before dispatch (a reason is
/// required): its reserved stock goes back, and the part is offered to the next best vendor
/// not yet asked, or, after the last reassignment, the order waits for an operator. It
/// counts against the vendor's cancellation rate.
#[utoipa::path(post, path = "/fulfilments/{id}/cancel", tag = "fulfilment", request_body = PartActionBody,
    params(("id" = Uuid, Path, description = "Fulfilment id")),
    responses((status = 200, body = FulfilmentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn cancel_fulfilment(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<PartActionBody>, ApiError>,
) -> Result<axum::Json<FulfilmentView>, ApiError> {
    simple_action(&app, &principal, id, body, PartAction::Cancel).await
}

/// The goods of an accepted part left the vendor.
#[utoipa::path(post, path = "/fulfilments/{id}/dispatch", tag = "fulfilment", request_body = PartActionBody,
    params(("id" = Uuid, Path, description = "Fulfilment id")),
    responses((status = 200, body = FulfilmentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn dispatch_fulfilment(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<PartActionBody>, ApiError>,
) -> Result<axum::Json<FulfilmentView>, ApiError> {
    simple_action(&app, &principal, id, body, PartAction::Dispatch).await
}

/// An action whose body is at most a reason.
async fn simple_action(
    app: &App,
    principal: &Principal,
    id: Uuid,
    body: Result<Json<PartActionBody>, ApiError>,
    action: PartAction,
) -> Result<axum::Json<FulfilmentView>, ApiError> {
    // Who may act is answered before what the body says.
    principal.require(PART_ROLES)?;
    let body = body?.0;
    act(app, principal, id, action, body.reason.as_deref()).await
}

/// The goods of a dispatched part arrived. Lines delivered short are named with the quantity
/// handed over; once every part is delivered the order is, and its credit is posted at the
/// delivered amount.
#[utoipa::path(post, path = "/fulfilments/{id}/deliver", tag = "fulfilment", request_body = DeliverBody,
    params(("id" = Uuid, Path, description = "Fulfilment id")),
    responses((status = 200, body = FulfilmentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn deliver_fulfilment(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<DeliverBody>, ApiError>,
) -> Result<axum::Json<FulfilmentView>, ApiError> {
    principal.require(PART_ROLES)?;
    let body = body?.0;
    let mut errors = Vec::new();
    let mut quantities = Vec::new();
    for (k, l) in body.lines.iter().enumerate() {
        match qty_to_milli(l.quantity) {
            Some(q) if l.quantity.is_finite() => quantities.push((l.line_no, q)),
            _ if l.quantity < 0.0 => errors.push(FieldError::new(
                format!("lines[{k}].quantity"),
                "a delivered quantity cannot be negative",
            )),
            _ => errors.push(FieldError::new(
                format!("lines[{k}].quantity"),
                "a quantity with at most three decimals",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let action = PartAction::Deliver(quantities);
    act(&app, &principal, id, action, body.reason.as_deref()).await
}

/// A stored routing decision.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    /// The part, for a reassignment.
    pub fulfilment_id: Option<Uuid>,
    /// `routed`, `reassigned`, `no_vendor`.
    pub outcome: String,
    /// What was chosen and why.
    pub reason: String,
    /// Candidates with their scores and components, and the plan, as decided.
    #[schema(value_type = Object)]
    pub decision: serde_json::Value,
    /// When (Nepal time).
    pub at: String,
}

/// Every routing decision taken for an order, oldest first (staff).
pub async fn decisions(app: &App, order: Uuid) -> Result<Vec<DecisionView>, ApiError> {
    Ok(decision_views(parts::decisions(app.db(), order).await?))
}

/// `rows` as the API shows them.
pub fn decision_views(rows: Vec<parts::DecisionRow>) -> Vec<DecisionView> {
    rows.into_iter()
        .map(|d| DecisionView {
            fulfilment_id: d.fulfilment_id,
            outcome: d.outcome,
            reason: d.reason,
            decision: d.decision.0,
            at: fmt_time(d.at_ms),
        })
        .collect()
}

/// The routing decisions taken for an order: the first routing with every candidate, its
/// scores and the plan, then each reassignment (staff).
#[utoipa::path(get, path = "/orders/{id}/routing-decisions", tag = "fulfilment",
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = Vec<DecisionView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn order_routing_decisions(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<DecisionView>>, ApiError> {
    principal.require(STAFF)?;
    let order = repo::find(app.db(), principal.order_scope(), id)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(axum::Json(decisions(&app, order.id).await?))
}

/// One weighted part of a vendor's score.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ComponentView {
    /// `availability`, `proximity`, `workload`, `price` or `reliability`.
    pub name: String,
    /// Its weight.
    pub weight: u32,
    /// 0–100.
    pub points: u8,
}

/// A line a vendor may not supply, and why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IneligibleView {
    /// Line number.
    pub line_no: u32,
    /// `inactive`, `out_of_area`, `at_capacity` (open parts at `max_active`),
    /// `unanswered_offers` (offers unanswered at `max_awaiting`), `no_offer`, `short_stock`,
    /// `closed`, `volume_share`.
    pub reasons: Vec<String>,
}

/// A vendor as the decision saw it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CandidateView {
    /// The vendor.
    pub vendor_id: Uuid,
    /// Its name.
    pub vendor_name: String,
    /// Lines it may supply.
    pub eligible_lines: Vec<u32>,
    /// Lines it may not supply.
    pub ineligible: Vec<IneligibleView>,
    /// Its score 0–100 for the lines it may supply.
    pub score: Option<u8>,
    /// The score's components.
    pub components: Vec<ComponentView>,
}

/// One vendor's part of the plan.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartView {
    /// The vendor.
    pub vendor_id: Uuid,
    /// Its name.
    pub vendor_name: String,
    /// Lines it would supply.
    pub lines: Vec<u32>,
    /// Their cost at its prices, NPR.
    pub cost_npr: f64,
    /// Its score for those lines.
    pub score: u8,
    /// The score's components.
    pub components: Vec<ComponentView>,
}

/// The plan.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    /// One part per vendor.
    pub parts: Vec<PartView>,
    /// Goods' cost, NPR.
    pub goods_npr: f64,
    /// Penalty for the vendors beyond the first, NPR.
    pub penalty_npr: f64,
}

/// Where an order would go if routed now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoutingView {
    /// The order.
    pub order_id: Uuid,
    /// What was chosen and why.
    pub reason: String,
    /// The plan; absent when some line has no eligible vendor.
    pub plan: Option<PlanView>,
    /// Lines no vendor may supply.
    pub uncovered: Vec<u32>,
    /// Lines no vendor open now may supply, for which working hours were not applied.
    pub hours_relaxed: Vec<u32>,
    /// Lines for which the 30-day volume share was not applied.
    pub volume_relaxed: Vec<u32>,
    /// Every vendor offering one of the order's products.
    pub candidates: Vec<CandidateView>,
}

/// The routing decision for an order as it would be taken now: eligible vendors with their
/// scores and components, and the plan (one vendor when one can supply every line, else the
/// least-cost split). Changes nothing. Staff only.
#[utoipa::path(get, path = "/orders/{id}/routing", tag = "fulfilment",
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = RoutingView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_routing(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<RoutingView>, ApiError> {
    principal.require(STAFF)?;
    let order = repo::find(app.db(), principal.order_scope(), id)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    let lines = repo::lines(app.db(), &order).await?;
    let facts = facts::load(
        app.db(),
        app.volumes(),
        &order,
        &lines,
        app.clock().now_ms(),
    )
    .await?
    .ok_or(ApiError::NotFound("retailer"))?;
    let d = khaacho_vendors::route(
        &facts.retailer,
        &facts.lines,
        &facts.vendors,
        &app.settings().routing,
    );
    Ok(axum::Json(RoutingView::new(order.id, d, &facts)))
}

impl RoutingView {
    /// The view of decision `d` taken on `facts` (vendor names from the facts).
    pub fn new(order_id: Uuid, d: khaacho_vendors::Decision, facts: &facts::Facts) -> Self {
        let name = |id: Uuid| super::routing::vendor_name(facts, id);
        RoutingView {
            order_id,
            reason: d.reason,
            plan: d.plan.map(|p| PlanView {
                goods_npr: paisa_to_npr(p.goods_paisa),
                penalty_npr: paisa_to_npr(p.penalty_paisa),
                parts: p
                    .parts
                    .into_iter()
                    .map(|part| PartView {
                        vendor_name: name(part.vendor_id),
                        vendor_id: part.vendor_id,
                        lines: part.lines,
                        cost_npr: paisa_to_npr(part.cost_paisa),
                        score: part.score.total,
                        components: components(&part.score),
                    })
                    .collect(),
            }),
            uncovered: d.uncovered,
            hours_relaxed: d.hours_relaxed,
            volume_relaxed: d.volume_relaxed,
            candidates: d
                .candidates
                .into_iter()
                .map(|c| CandidateView {
                    vendor_name: name(c.vendor_id),
                    vendor_id: c.vendor_id,
                    eligible_lines: c.eligible_lines,
                    ineligible: c
                        .ineligible
                        .into_iter()
                        .map(|(line_no, why)| IneligibleView {
                            line_no,
                            reasons: why.iter().map(|r| r.as_str().to_string()).collect(),
                        })
                        .collect(),
                    score: c.score.as_ref().map(|s| s.total),
                    components: c.score.as_ref().map(components).unwrap_or_default(),
                })
                .collect(),
        }
    }
}

fn components(s: &khaacho_vendors::VendorScore) -> Vec<ComponentView> {
    s.components
        .iter()
        .map(|c| ComponentView {
            name: c.name.as_str().to_string(),
            weight: c.weight,
            points: c.points,
        })
        .collect()
}
