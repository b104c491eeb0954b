//! `POST /api/v1/ws/tickets` and `GET /api/v1/ws` (the upgrade). The socket's protocol is in
//! `session.rs`.

use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::tickets::{self, Refused};
use crate::app::App;
use crate::base::audit::{Entry, record_logged};
use crate::base::principal::Principal;
use crate::base::time::fmt_time;
use crate::base::wire::error::{ApiError, Problem};
use crate::base::wire::extract::Query;

/// Routes of live updates.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_ticket))
        .routes(routes!(open_socket))
}

/// A WebSocket ticket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WsTicket {
    /// Use once, within `expires_in_secs`, as `GET /api/v1/ws?ticket=…`.
    pub ticket: String,
    /// The path to open, ticket included.
    pub url: String,
    /// Seconds it stays usable.
    pub expires_in_secs: i64,
    /// When it expires (Nepal time).
    pub expires_at: String,
}

/// A short-lived, single-use ticket to open the live-updates WebSocket (any authenticated
/// caller; browsers cannot send `Authorization` with a WebSocket). The socket acts as the
/// caller that asked for the ticket.
#[utoipa::path(post, path = "/ws/tickets", tag = "live",
    responses((status = 201, body = WsTicket),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn create_ticket(
    State(app): State<App>,
    principal: Principal,
) -> Result<(StatusCode, axum::Json<WsTicket>), ApiError> {
    let now = app.clock().now_ms();
    let ttl = app.settings().live.ticket_ttl_ms;
    let ticket = tickets::issue(app.db(), &principal, now, ttl).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(WsTicket {
            url: format!("/api/v1/ws?ticket={ticket}"),
            ticket,
            expires_in_secs: ttl / 1000,
            expires_at: fmt_time(now + ttl),
        }),
    ))
}

/// Parameters of the upgrade.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SocketParams {
    /// A ticket from `POST /api/v1/ws/tickets` (single use, 60 s).
    pub ticket: Option<String>,
}

/// The live-updates WebSocket (DESIGN.md §14; protocol in the README and ARCHITECTURE.md):
/// send `{"type":"subscribe","topics":["orders"],"after":"<last event id>"}`, receive
/// `subscribed`, the missed events, `caught_up`, then live `event` frames. Authenticated by
/// `ticket` (browsers) or, for clients that can send headers, by the usual `Authorization`
/// or `X-Api-Key`. A missing, malformed, expired, unknown or used ticket is 401 before the
/// upgrade (audited).
#[utoipa::path(get, path = "/ws", tag = "live", params(SocketParams),
    responses((status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 426, body = Problem, content_type = "application/problem+json")))]
async fn open_socket(
    State(app): State<App>,
    headers: HeaderMap,
    caller: Result<Principal, ApiError>,
    Query(p): Query<SocketParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let not_upgrade = || {
        ApiError::BadRequest(
            StatusCode::UPGRADE_REQUIRED,
            "this route only answers a WebSocket upgrade (GET with Connection: Upgrade, Upgrade: websocket)"
                .into(),
        )
    };
    let Some(ticket) = p.ticket else {
        // No ticket: the request's own credentials (a client that can send headers).
        let principal = caller.map_err(|_| {
            ApiError::Unauthorized(
                "a ticket is required: POST /api/v1/ws/tickets, then open /api/v1/ws?ticket=…",
            )
        })?;
        let upgrade = upgrade.map_err(|_| not_upgrade())?;
        return Ok(accept(app, principal, upgrade));
    };
    if !tickets::well_formed(&ticket) {
        return Err(refuse(&app, &headers, Refused::Malformed).await);
    }
    // Checked before the ticket is used, so a plain GET does not burn it.
    let upgrade = upgrade.map_err(|_| not_upgrade())?;
    let principal = match tickets::redeem(app.db(), &ticket, app.clock().now_ms()).await? {
        Ok(p) => p,
        Err(why) => return Err(refuse(&app, &headers, why).await),
    };
    Ok(accept(app, principal, upgrade))
}

fn accept(app: App, principal: Principal, upgrade: WebSocketUpgrade) -> Response {
    let max = app.settings().live.max_frame_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| super::session::run(app, principal, socket))
        .into_response()
}

/// Audits a refused ticket like any refused credential, and answers 401.
async fn refuse(app: &App, headers: &HeaderMap, why: Refused) -> ApiError {
    let mut e = Entry::new("anonymous", None, "auth.invalid_credentials")
        .summary(serde_json::json!({ "route": "GET /api/v1/ws", "reason": why.reason() }));
    e.request_id = crate::base::wire::request_id(headers);
    record_logged(app.db(), &e).await;
    ApiError::Unauthorized("invalid, expired or already used ticket")
}
