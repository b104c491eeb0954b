//! HTTP routes of authentication, users, API keys and the audit log. The role each route
//! needs is declared in its handler (`principal.require(…)`); docs/ROLES.md lists them all.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::service::{
    self, ApiKeyView, AuthError, CreatedApiKey, NewApiKey, NewUser, TokenPair, UserView,
};
use super::{ADMIN, Principal};
use crate::app::App;
use crate::base::audit::{self, AuditFilter, AuditView};
use crate::base::wire::error::{ApiError, Problem};
use crate::base::wire::extract::{Json, Path, Query};
use crate::base::wire::{IdPage, Page, decode_cursor, encode_cursor, page_limit, request_id};

/// Routes of this feature.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(revoke_api_key))
        .routes(routes!(create_user))
        .routes(routes!(list_audit))
}

/// Login body: `username` (or `email`) and `password`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username.
    #[serde(default)]
    pub username: Option<String>,
    /// Or the e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest").finish_non_exhaustive()
    }
}

/// Sign in: an access token (15 min) and a refresh token (7 days, single use).
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest, security(()),
    responses((status = 200, body = TokenPair),
        (status = 401, description = "Invalid credentials (also for locked accounts)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address", body = Problem, content_type = "application/problem+json")))]
async fn login(
    State(app): State<App>,
    headers: HeaderMap,
    Json(req): Json<LoginRequest>,
) -> Result<axum::Json<TokenPair>, ApiError> {
    let who = req
        .username
        .or(req.email)
        .filter(|s| !s.trim().is_empty() && s.len() <= 254);
    let Some(who) = who else {
        return Err(ApiError::field("username", "username or email is required"));
    };
    Ok(axum::Json(
        service::login(&app, who.trim(), req.password, request_id(&headers)).await?,
    ))
}

/// A refresh token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from login or the previous refresh.
    pub refresh_token: String,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRequest").finish_non_exhaustive()
    }
}

/// Rotate a refresh token: new access and refresh tokens; the presented one is spent.
/// Presenting a spent token again revokes every token of that login (401).
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest, security(()),
    responses((status = 200, body = TokenPair), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn refresh(
    State(app): State<App>,
    headers: HeaderMap,
    Json(req): Json<RefreshRequest>,
) -> Result<axum::Json<TokenPair>, ApiError> {
    Ok(axum::Json(
        service::refresh(&app, &req.refresh_token, request_id(&headers)).await?,
    ))
}

/// Sign out: revokes the refresh token and its whole family (idempotent). Access tokens
/// already issued expire on their own within 15 minutes.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest, security(()),
    responses((status = 204, description = "Signed out")))]
async fn logout(
    State(app): State<App>,
    headers: HeaderMap,
    Json(req): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    service::logout(&app, &req.refresh_token, request_id(&headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create an API key scoped to a role and tenant (admin). The key is in this answer only.
#[utoipa::path(post, path = "/auth/api-keys", tag = "auth", request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create_api_key(
    State(app): State<App>,
    principal: Principal,
    body: Result<Json<NewApiKey>, ApiError>,
) -> Result<(StatusCode, axum::Json<CreatedApiKey>), ApiError> {
    principal.require(ADMIN)?;
    let Json(req) = body?;
    let (key, row) = service::create_api_key(&app, req, principal.audit("api_key.create")).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedApiKey {
            key,
            info: ApiKeyView::from(&row),
        }),
    ))
}

/// API keys, newest first (admin): prefix, scope, last use; never the key.
#[utoipa::path(get, path = "/auth/api-keys", tag = "auth", params(IdPage),
    responses((status = 200, body = Page<ApiKeyView>), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn list_api_keys(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<IdPage>,
) -> Result<axum::Json<Page<ApiKeyView>>, ApiError> {
    principal.require(ADMIN)?;
    let limit = page_limit(p.limit)?;
    let rows = super::repo::list_api_keys(app.db(), p.cursor, limit + 1).await?;
    let (rows, next) = crate::base::wire::split_page(rows, limit, |k| k.id.to_string());
    Ok(axum::Json(Page {
        items: rows.iter().map(ApiKeyView::from).collect(),
        next_cursor: next,
    }))
}

/// Revoke an API key (admin); it stops working with the next request.
#[utoipa::path(delete, path = "/auth/api-keys/{id}", tag = "auth", params(("id" = Uuid, Path, description = "API key id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn revoke_api_key(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    principal.require(ADMIN)?;
    service::revoke_api_key(&app, id, principal.audit("api_key.revoke")).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a user (admin). There is no self-registration; only an admin can create an admin.
#[utoipa::path(post, path = "/users", tag = "auth", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create_user(
    State(app): State<App>,
    principal: Principal,
    body: Result<Json<NewUser>, ApiError>,
) -> Result<(StatusCode, axum::Json<UserView>), ApiError> {
    principal.require(ADMIN)?;
    let Json(req) = body?;
    let row = service::create_user(&app, req, principal.audit("user.create")).await?;
    Ok((StatusCode::CREATED, axum::Json(UserView::from(&row))))
}

/// Filters of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// `user:<id>`, `apikey:<id>`, `anonymous` or `cli`.
    pub actor: Option<String>,
    /// e.g. `auth.login`, `auth.login_failed`, `authz.denied`, `order.approve`.
    pub action: Option<String>,
    /// e.g. `order`, `user`, `api_key`, `retailer`.
    pub entity: Option<String>,
    /// The entity's id.
    pub entity_id: Option<String>,
    /// At or after (RFC 3339).
    pub from: Option<String>,
    /// Before (RFC 3339).
    pub to: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// An audit page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Rows, newest first.
    pub items: Vec<AuditView>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// The audit log, newest first (admin).
#[utoipa::path(get, path = "/audit", tag = "auth", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn list_audit(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<AuditParams>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    principal.require(ADMIN)?;
    let limit = page_limit(p.limit)?;
    let filter = AuditFilter {
        actor: p.actor,
        action: p.action,
        entity: p.entity,
        entity_id: p.entity_id,
        from_ms: crate::base::wire::parse_time_param("from", p.from.as_deref())?,
        to_ms: crate::base::wire::parse_time_param("to", p.to.as_deref())?,
        after: p.cursor.as_deref().map(decode_cursor).transpose()?,
        limit: limit + 1,
    };
    let rows = audit::list(app.db(), &filter).await?;
    let (rows, next) = crate::base::wire::split_page(rows, limit, |r| encode_cursor(r.at_ms, r.id));
    Ok(axum::Json(AuditPage {
        items: rows.into_iter().map(AuditView::from).collect(),
        next_cursor: next,
    }))
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized(msg) => ApiError::Unauthorized(msg),
            AuthError::Invalid(errors) => ApiError::Validation(errors),
            AuthError::NotFound(what) => ApiError::NotFound(what),
            AuthError::Storage(e) => e.into(),
            AuthError::Internal(e) => ApiError::Internal(e),
        }
    }
}
