//! Admin view and run-time switch of the order-text parser agents: whether LLM providers
//! may parse text orders, and the state of each provider's circuit breaker.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::base::principal::{ADMIN, Principal};
use crate::base::wire::error::{ApiError, Problem};
use crate::base::wire::extract::Json;

/// Routes of this module.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(get_agents, set_agents))
}

/// One remote provider.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    /// `openai` or `anthropic`.
    pub name: String,
    /// Circuit breaker: `closed`, `half_open` or `open`.
    pub breaker: String,
}

/// The parser agents as they run in this process.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentsView {
    /// Whether LLM providers are asked before the offline parser.
    pub llm_enabled: bool,
    /// Remote providers in the order they are tried (the offline parser always ends the chain).
    pub providers: Vec<ProviderView>,
}

/// Body of `PUT /api/v1/admin/agents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentsSwitch {
    /// Let LLM providers parse text orders (false: offline parser only).
    pub llm_enabled: bool,
}

fn view(app: &App) -> AgentsView {
    let agents = app.agents();
    AgentsView {
        llm_enabled: agents.llm_switch().is_enabled(),
        providers: agents
            .breakers()
            .into_iter()
            .map(|(name, state)| ProviderView {
                name: name.to_string(),
                breaker: match state {
                    khaacho_resilience::BreakerState::Closed => "closed",
                    khaacho_resilience::BreakerState::HalfOpen => "half_open",
                    khaacho_resilience::BreakerState::Open => "open",
                }
                .to_string(),
            })
            .collect(),
    }
}

/// The parser agents: LLM switch and breaker states (this process).
#[utoipa::path(get, path = "/admin/agents", tag = "admin",
    responses((status = 200, body = AgentsView), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn get_agents(
    State(app): State<App>,
    principal: Principal,
) -> Result<axum::Json<AgentsView>, ApiError> {
    principal.require(ADMIN)?;
    Ok(axum::Json(view(&app)))
}

/// Switch LLM parsing on or off at run time (this process; set `agents.llm_enabled` in the
/// configuration to make it stick and reach every node).
#[utoipa::path(put, path = "/admin/agents", tag = "admin", request_body = AgentsSwitch,
    responses((status = 200, body = AgentsView), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn set_agents(
    State(app): State<App>,
    principal: Principal,
    body: Result<Json<AgentsSwitch>, ApiError>,
) -> Result<axum::Json<AgentsView>, ApiError> {
    principal.require(ADMIN)?;
    let Json(switch) = body?;
    app.agents().llm_switch().set(switch.llm_enabled);
    let entry = principal
        .audit("agents.switch")
        .summary(serde_json::json!({ "llm_enabled": switch.llm_enabled }));
    crate::base::audit::record(app.db(), &entry).await?;
    tracing::warn!(
        llm_enabled = switch.llm_enabled,
        "LLM order parsing switched"
    );
    Ok(axum::Json(view(&app)))
}
