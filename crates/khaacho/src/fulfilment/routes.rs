//! HTTP routes of fulfilment: the routing preview.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::facts;
use crate::app::App;
use crate::base::domain::paisa_to_npr;
use crate::base::principal::{Principal, STAFF};
use crate::base::time::now_ms;
use crate::base::wire::error::{ApiError, Problem};
use crate::base::wire::extract::Path;
use crate::orders::repo;

/// Routes of this feature.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(get_routing))
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
    /// `inactive`, `out_of_area`, `at_capacity`, `no_offer`, `short_stock`, `closed`,
    /// `volume_share`.
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
    /// No eligible vendor is open now, so working hours were not applied.
    pub hours_relaxed: bool,
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
    let facts = facts::load(app.db(), &order, &lines, now_ms())
        .await?
        .ok_or(ApiError::NotFound("retailer"))?;
    let d = khaacho_vendors::route(
        &facts.retailer,
        &facts.lines,
        &facts.vendors,
        &app.settings().routing,
    );
    let name = |id: Uuid| {
        facts
            .rows
            .get(&id)
            .map(|v| v.name.clone())
            .unwrap_or_default()
    };
    Ok(axum::Json(RoutingView {
        order_id: order.id,
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
    }))
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
