//! HTTP routes of credit (filled in below).
use utoipa_axum::router::OpenApiRouter;

use crate::app::App;

/// Routes of this feature.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
}
