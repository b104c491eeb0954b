//! The security middleware of every request: authenticate (Bearer access token or API key),
//! apply the rate limits, and audit refusals (403s, and 401s for presented but invalid
//! credentials). Authorization itself is declared in each handler with
//! [`Principal::require`](super::Principal::require).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use khaacho_auth::ratelimit::Decision;
use khaacho_auth::{Role, apikey};

use super::{AuthState, Principal, PrincipalKind};
use crate::app::App;
use crate::base::audit::{Entry, record_logged};
use crate::base::time::now_ms;
use crate::base::wire::error::{AuthzDenied, problem_response};

/// Rate-limit class of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteClass {
    /// Health, readiness, metrics, the API document and docs page, the console's static
    /// pages (no credentials; staff need them at the `critical` level too): never limited.
    Ops,
    /// Login and token refresh: tighter per-IP limit.
    Login,
    /// Order creation, catalogue import/export, the audit log: lower per-principal limit.
    Expensive,
    /// Provider webhooks (signed, without credentials): their own per-IP limit.
    Webhook,
    /// Everything else.
    Default,
}

/// The class of `method path` (path as routed, e.g. `/api/v1/orders/{id}`).
pub fn route_class(method: &Method, path: &str) -> RouteClass {
    match (method.as_str(), path) {
        (_, "/health" | "/ready" | "/metrics" | "/api/v1/openapi.json") => RouteClass::Ops,
        (_, p) if p.starts_with("/api/v1/docs") => RouteClass::Ops,
        ("GET", "/" | "/console" | "/console/" | "/console/assets/{name}") => RouteClass::Ops,
        ("POST", "/api/v1/auth/login" | "/api/v1/auth/refresh") => RouteClass::Login,
        ("POST", "/api/v1/channels/twilio/messages" | "/api/v1/channels/twilio/status") => {
            RouteClass::Webhook
        }
        ("POST", "/api/v1/orders" | "/api/v1/catalog/import" | "/api/v1/orders/parse")
        | ("GET", "/api/v1/catalog/export" | "/api/v1/audit") => RouteClass::Expensive,
        _ => RouteClass::Default,
    }
}

/// `Retry-After` of a request refused while the platform is critical.
const CRITICAL_RETRY_AFTER_SECS: u64 = 30;

/// What customers (and anonymous callers) are still served at the `critical` level: placing
/// orders, their status, the actions on orders already taken (a vendor's accept, reject,
/// dispatch, delivery; the retailer's confirm, cancel, report), signing in, and the
/// providers' webhooks (a message is an order).
/// Staff keep every route, to run the platform out of it.
fn served_when_critical(method: &Method, path: &str) -> bool {
    // The actions that carry orders already taken forward: refusing them would stall the
    // work in progress while new orders keep coming (and the vendors' refused accepts would
    // expire into reassignments, more work).
    crate::http::admission::Class::of(method, path) == crate::http::admission::Class::Progress
        || matches!(
            (method.as_str(), path),
            ("POST", "/api/v1/orders")
                | ("GET", "/api/v1/orders/{id}/status")
                | (
                    "POST",
                    "/api/v1/auth/login" | "/api/v1/auth/refresh" | "/api/v1/auth/logout"
                )
                | (
                    "POST",
                    "/api/v1/channels/twilio/messages" | "/api/v1/channels/twilio/status"
                )
        )
}

/// Reads the presented credential: `Authorization: Bearer …` or `X-Api-Key: …`.
fn credential(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| ());
        return Some(v.and_then(|v| {
            let (scheme, rest) = v.split_once(' ').ok_or(())?;
            if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
                Ok(rest.trim())
            } else {
                Err(())
            }
        }));
    }
    headers
        .get("x-api-key")
        .map(|v| v.to_str().map(str::trim).map_err(|_| ()))
}

async fn authenticate(app: &App, headers: &HeaderMap) -> AuthState {
    let request_id = crate::base::wire::request_id(headers);
    let Some(presented) = credential(headers) else {
        return AuthState::Anonymous;
    };
    let Ok(presented) = presented else {
        return AuthState::Invalid("malformed authorization header");
    };
    if presented.starts_with(apikey::KEY_PREFIX) {
        let Ok(prefix) = apikey::parse_prefix(presented) else {
            return AuthState::Invalid("malformed api key");
        };
        let now = now_ms();
        let row = match app.auth().cached_key(prefix, now) {
            Some(row) => row,
            None => match super::repo::find_live_api_key(app.db(), prefix).await {
                Ok(Some(row)) => {
                    app.auth().remember_key(&row, now);
                    row
                }
                Ok(None) => return AuthState::Invalid("unknown or revoked api key"),
                Err(e) => {
                    tracing::error!(error = %e, "api key lookup failed");
                    return AuthState::Invalid("api key lookup failed");
                }
            },
        };
        if !apikey::verify(presented, &row.key_hash) {
            return AuthState::Invalid("wrong api key secret");
        }
        let Ok(role) = row.role.parse::<Role>() else {
            return AuthState::Invalid("api key role");
        };
        if app.auth().should_touch(row.id, now) {
            let (db, id) = (app.db().clone(), row.id);
            tokio::spawn(async move {
                if let Err(e) = super::repo::touch_api_key(&db, id, now).await {
                    tracing::warn!(error = %e, "recording api key use failed");
                }
            });
        }
        return AuthState::Authenticated(Principal {
            kind: PrincipalKind::ApiKey,
            id: row.id,
            role,
            tenant: row.retailer_id.or(row.vendor_id),
            request_id,
        });
    }
    match app.auth().verify_access(presented) {
        Ok(claims) => AuthState::Authenticated(Principal {
            kind: PrincipalKind::User,
            id: claims.sub,
            role: claims.role,
            tenant: claims.tenant,
            request_id,
        }),
        Err(e) => AuthState::Invalid(match e {
            khaacho_auth::tokens::TokenError::Expired => "expired access token",
            _ => "invalid access token",
        }),
    }
}

/// The rate limits that apply to one request, as `(metric class, key, limit)`.
fn limits(
    app: &App,
    class: RouteClass,
    state: &AuthState,
    ip: &str,
) -> Vec<(&'static str, String, super::settings::Limit)> {
    let rl = &app.settings().rate_limits;
    let mut out = vec![("global", "global".to_string(), rl.global)];
    match state {
        AuthState::Authenticated(p) => {
            let who = format!(
                "{}:{}",
                if p.kind == PrincipalKind::User {
                    "u"
                } else {
                    "k"
                },
                p.id
            );
            out.push(("principal", format!("p:{who}"), rl.per_principal));
            if class == RouteClass::Expensive {
                out.push(("expensive", format!("e:{who}"), rl.expensive_per_principal));
            }
        }
        _ if class == RouteClass::Webhook => {
            out.push(("webhook", format!("wh:{ip}"), rl.webhook_per_ip));
        }
        _ => {
            out.push(("ip", format!("ip:{ip}"), rl.per_ip));
            if class == RouteClass::Login {
                out.push(("login", format!("login:{ip}"), rl.login_per_ip));
            }
        }
    }
    out
}

fn set_rate_headers(headers: &mut HeaderMap, d: &Decision) {
    headers.insert("ratelimit-limit", HeaderValue::from(d.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(d.reset_secs()));
}

/// The middleware: see the module docs.
pub async fn security(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let class = path
        .as_deref()
        .map_or(RouteClass::Default, |p| route_class(req.method(), p));
    if class == RouteClass::Ops {
        return next.run(req).await;
    }
    let state = authenticate(&app, req.headers()).await;
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
    let mut shown: Option<Decision> = None;
    if app.settings().rate_limits.enabled {
        for (metric_class, key, limit) in limits(&app, class, &state, &ip) {
            let d = app.auth().limiter.check(&key, &limit.quota()).await;
            if !d.allowed {
                metrics::counter!("khaacho_rate_limited_total", "class" => metric_class)
                    .increment(1);
                let mut resp = problem_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "Too many requests",
                    format!(
                        "rate limit ({metric_class}) exceeded; retry after the time in Retry-After"
                    ),
                    vec![],
                );
                set_rate_headers(resp.headers_mut(), &d);
                if let Some(s) = d.retry_after_secs() {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(s));
                }
                return resp;
            }
            // The header shows the tightest limit that applies.
            if shown.as_ref().is_none_or(|s| d.remaining < s.remaining) {
                shown = Some(d);
            }
        }
    }
    if app.mode().level() == crate::base::mode::Level::Critical
        && !matches!(&state, AuthState::Authenticated(p) if p.is_staff())
        && !served_when_critical(req.method(), path.as_deref().unwrap_or(""))
    {
        metrics::counter!("khaacho_degraded_refusals_total").increment(1);
        let mut resp = problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded",
            "Service degraded",
            "the platform is under heavy load: only placing orders, reading their status and \
             acting on orders already taken are served now; retry after the time in Retry-After"
                .to_string(),
            vec![],
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(CRITICAL_RETRY_AFTER_SECS),
        );
        resp.extensions_mut()
            .insert(crate::base::wire::error::Refused);
        return resp;
    }
    let method = req.method().clone();
    req.extensions_mut().insert(state.clone());
    let request_id = crate::base::wire::request_id(req.headers());
    let mut resp = next.run(req).await;
    if let Some(d) = &shown {
        set_rate_headers(resp.headers_mut(), d);
    }
    let route = format!("{method} {}", path.as_deref().unwrap_or("unmatched"));
    if resp.status() == StatusCode::FORBIDDEN
        && let Some(AuthzDenied(reason)) = resp.extensions().get::<AuthzDenied>().cloned()
    {
        let (actor, role) = match &state {
            AuthState::Authenticated(p) => (p.actor(), Some(p.role.as_str())),
            _ => ("anonymous".to_string(), None),
        };
        let mut e = Entry::new(actor, role, "authz.denied")
            .summary(serde_json::json!({ "route": route, "reason": reason }));
        e.request_id = request_id;
        record_logged(app.db(), &e).await;
    } else if resp.status() == StatusCode::UNAUTHORIZED
        && let AuthState::Invalid(reason) = &state
    {
        let mut e = Entry::new("anonymous", None, "auth.invalid_credentials")
            .summary(serde_json::json!({ "route": route, "reason": reason, "ip": ip }));
        e.request_id = request_id;
        record_logged(app.db(), &e).await;
    }
    resp
}

/// Security headers that depend on configuration: HSTS behind TLS, and a CSP on the docs page
/// (the API answers JSON and needs none).
pub async fn headers(State(behind_tls): State<bool>, req: Request, next: Next) -> Response {
    let docs = req.uri().path().starts_with("/api/v1/docs");
    let mut resp = next.run(req).await;
    if behind_tls {
        resp.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if docs {
        // Swagger UI is served from this origin with an inline bootstrap script and styles.
        resp.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
                 img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        );
    }
    resp
}
