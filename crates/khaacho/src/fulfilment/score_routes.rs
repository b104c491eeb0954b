//! `GET /vendors/{id}/score`: a vendor's latest score with its grade, factors and history.
//! Staff see every vendor; a vendor sees only its own (another id is simply not found).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scores::{self, VendorScoreRow};
use crate::app::App;
use crate::base::principal::{Principal, Role};
use crate::base::time::fmt_time;
use crate::base::wire::error::{ApiError, Problem};
use crate::base::wire::extract::Path;

/// History points returned after the latest score.
const HISTORY: i64 = 30;

/// Routes of vendor scores.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(get_vendor_score))
}

/// One computed vendor score.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VendorScoreView {
    /// 0–100 (routing reads it as reliability).
    pub score: i32,
    /// `A+` (≥ 90), `A` (≥ 80), `B` (≥ 70), `C` (≥ 60), `D` (≥ 50), `F`.
    pub grade: String,
    /// Below 60 with offers in the window.
    pub needs_attention: bool,
    /// `{factors: [{factor, weight, points, measured}], activity: {offers, accepted,
    /// response_minutes, price_ratio, parts_finished, delivered, cancelled_by_vendor}}`.
    #[schema(value_type = Object)]
    pub factors: serde_json::Value,
    /// When (Nepal time).
    pub at: String,
}

impl From<VendorScoreRow> for VendorScoreView {
    fn from(r: VendorScoreRow) -> Self {
        Self {
            score: r.score,
            grade: r.grade,
            needs_attention: r.needs_attention,
            factors: r.factors.0,
            at: fmt_time(r.at_ms),
        }
    }
}

/// A vendor's score with its history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VendorScoreReport {
    /// The vendor.
    pub vendor_id: Uuid,
    /// The latest score.
    pub current: VendorScoreView,
    /// Earlier scores, newest first (up to 30).
    pub history: Vec<VendorScoreView>,
}

/// A vendor's score (hourly, over the last 30 days): the latest with its factors, and its
/// history. Staff, or the vendor itself.
#[utoipa::path(get, path = "/vendors/{id}/score", tag = "fulfilment",
    params(("id" = Uuid, Path, description = "Vendor id")),
    responses((status = 200, body = VendorScoreReport),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such vendor, or not scored yet", body = Problem, content_type = "application/problem+json")))]
async fn get_vendor_score(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<VendorScoreReport>, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Vendor])?;
    if principal.vendor().is_some_and(|own| own != id) {
        return Err(ApiError::NotFound("vendor"));
    }
    let mut rows = scores::history(app.db(), id, HISTORY + 1)
        .await?
        .into_iter()
        .map(VendorScoreView::from);
    let current = rows.next().ok_or(ApiError::NotFound("vendor score"))?;
    Ok(axum::Json(VendorScoreReport {
        vendor_id: id,
        current,
        history: rows.collect(),
    }))
}
