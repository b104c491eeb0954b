//! The HTTP API: one router merged from the features, and the middleware stack. The wire
//! helpers the features build their handlers from live in the floor (`crate::base::wire`).

pub mod admission;
pub mod openapi;
pub mod ops;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, Version, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::app::App;
use crate::base::wire::REQUEST_ID;
use crate::base::wire::error::problem_response;

#[derive(OpenApi)]
#[openapi(
    info(title = "Khaacho API", description = "Order platform for wholesale trade in Nepal: durable order intake (202 + status URL), catalogue, retailers and vendors, operations.", version = "1"),
    tags(
        (name = "orders", description = "Order intake, status and operator actions"),
        (name = "catalog", description = "Products, offers and catalogue CSV"),
        (name = "parties", description = "Retailers and vendors"),
        (name = "admin", description = "Job queue administration"),
        (name = "ops", description = "Health, readiness and metrics"),
        (name = "auth", description = "Login, tokens, API keys, users and the audit log"),
        (name = "credit", description = "Credit accounts, ledger, payments, limits and reconciliation"),
        (name = "reports", description = "Dashboard figures scoped to the caller, CSV exports of orders and the credit summary"),
        (name = "fulfilment", description = "Routing orders to vendors (today: the routing preview)"),
        (name = "channels", description = "WhatsApp/SMS through Twilio: signed webhooks, the outbox"),
        (name = "webhooks", description = "Signed outbound webhooks to vendor systems: subscriptions, deliveries, retries"),
        (name = "live", description = "Live updates: WebSocket tickets and the /ws socket"),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Declares the `bearer` security scheme (access token or API key) required by default.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT access token, or an API key kh_live_…")
                    .build(),
            ),
        );
    }
}

/// The API routes with their OpenAPI description (paths as served, `/api/v1/…`).
pub fn api() -> (Router<App>, OpenApiDoc) {
    let v1 = OpenApiRouter::new()
        .merge(crate::orders::routes::router())
        .merge(crate::admin::agents::router())
        .merge(crate::admin::alerts::router())
        .merge(crate::admin::sla::router())
        .merge(crate::admin::reports::router())
        .merge(crate::admin::mode::router())
        .merge(crate::catalog::routes::router())
        .merge(crate::parties::routes::router())
        .merge(crate::admin::jobs::router())
        .merge(crate::auth::routes::router())
        .merge(crate::credit::routes::router())
        .merge(crate::fulfilment::routes::router())
        .merge(crate::channels::routes::router())
        .merge(crate::webhooks::routes::router())
        .merge(crate::live::routes::router());
    let (routes, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .merge(ops::router())
        .split_for_parts();
    // After the merge: a modifier on `ApiDoc` itself would run before any route exists.
    utoipa::Modify::modify(&openapi::CommonResponses, &mut doc);
    (routes, doc)
}

/// The complete HTTP application with its middleware.
pub fn router(app: App) -> Router {
    let (routes, doc) = api();
    let settings = app.settings().http.clone();
    let timeout = Duration::from_millis(settings.request_timeout_ms);
    let cors = cors(&settings.cors_allow_origins);
    routes
        .merge(SwaggerUi::new("/api/v1/docs").url("/api/v1/openapi.json", doc))
        .merge(crate::console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(middleware::from_fn_with_state(app.clone(), crate::auth::middleware::security))
        .layer(middleware::from_fn_with_state(timeout, time_limit))
        .layer(middleware::map_response(ensure_problem))
        .layer(middleware::from_fn_with_state(
            admission::Admission::new(
                settings.max_in_flight,
                settings.read_share_percent,
                settings.write_share_percent,
            ),
            shed,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), record_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
                    let id = header(REQUEST_ID.as_str()).unwrap_or("");
                    let span = tracing::info_span!("http", method = %req.method(), path = %req.uri().path(),
                        request_id = %id);
                    // A caller's trace continues into ours (and into the jobs this request enqueues).
                    crate::base::trace::continue_from(&span, header("traceparent"), header("tracestate"));
                    span
                })
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                // Failures are logged by `record_metrics`, which can tell the server's own
                // refusals (metered, not logged: an overloaded process would otherwise spend
                // its time writing an error line for each request it turns away).
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::from_fn(sanitize_request_id))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            problem_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error",
                "an unexpected error occurred".into(), vec![])
        }))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(middleware::from_fn_with_state(settings.behind_tls, crate::auth::middleware::headers))
        .layer(cors)
        .with_state(app)
}

/// CORS for the configured origins only (none configured: no cross-origin access).
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            REQUEST_ID,
        ])
        .expose_headers([
            REQUEST_ID,
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
        ])
        .max_age(Duration::from_secs(600))
}

async fn not_found() -> Response {
    problem_response(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "no such route".into(),
        vec![],
    )
}

async fn method_not_allowed() -> Response {
    problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not accept that method".into(),
        vec![],
    )
}

/// Turns a request away with `503` + `Retry-After` when the slots its class may use are all
/// taken (`http.max_in_flight`, shared out by [`admission`]: reads first, then writes, the
/// actions that carry accepted orders and money forward last): past capacity, waiting clients
/// would otherwise each hold a task, buffers and a connection's worth of memory while the
/// backlog grows. The probes and the metrics always get through, so operators still see the
/// process, and Twilio's webhooks.
async fn shed(
    State(slots): State<Arc<admission::Admission>>,
    req: Request,
    next: Next,
) -> Response {
    // The probes and metrics always get through; so do Twilio's webhooks: Twilio does not
    // retry a refused inbound message, so shedding one would lose a customer's order (they
    // are cheap — stored, then answered — and have their own rate limit).
    if matches!(
        req.uri().path(),
        "/health"
            | "/ready"
            | "/metrics"
            | "/api/v1/channels/twilio/messages"
            | "/api/v1/channels/twilio/status"
    ) {
        return next.run(req).await;
    }
    let class = admission::Class::of(req.method(), req.uri().path());
    match slots.admit(class) {
        Some(_slot) => next.run(req).await,
        None => {
            metrics::counter!("khaacho_http_shed_total", "class" => class.as_str()).increment(1);
            crate::base::wire::error::ApiError::Overloaded {
                detail: "the server is working on as many requests as it takes at once; try again shortly"
                    .into(),
                retry_after_secs: 1,
            }
            .into_response()
        }
    }
}

/// Answers a request that takes longer than `limit`. Whose fault it is decides the answer:
/// if the handler was waiting for more of the request body when time ran out, the client
/// did not send it in time (408, and the connection is closed); otherwise the server was
/// too slow (503).
async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let waiting = Arc::new(AtomicBool::new(false));
    let http1 = req.version() <= Version::HTTP_11;
    let req = req.map(|body| {
        Body::new(WatchedBody {
            inner: body,
            waiting: waiting.clone(),
        })
    });
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) if waiting.load(Ordering::Acquire) => {
            let mut resp = problem_response(
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
                format!(
                    "the request body did not arrive within {} ms",
                    limit.as_millis()
                ),
                vec![],
            );
            // The unread rest of the body makes the connection unusable (RFC 9110 §15.5.9);
            // HTTP/2 has no such header and resets the stream instead.
            if http1 {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
        Err(_) => problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "Request timed out",
            format!("the request took longer than {} ms", limit.as_millis()),
            vec![],
        ),
    }
}

/// A request body that records whether its reader is waiting for the client right now.
struct WatchedBody {
    inner: Body,
    waiting: Arc<AtomicBool>,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        self.waiting.store(poll.is_pending(), Ordering::Release);
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Drops a client-sent request id that is too long or not printable, so it cannot forge
/// log lines; a fresh one is then generated.
async fn sanitize_request_id(mut req: Request, next: Next) -> Response {
    let bad = req
        .headers()
        .get(REQUEST_ID)
        .is_some_and(|v| v.len() > 128 || !v.as_bytes().iter().all(|b| b.is_ascii_graphic()));
    if bad {
        req.headers_mut().remove(REQUEST_ID);
    }
    next.run(req).await
}

/// Prometheus request metrics, and the in-process SLA record (timed by the app's clock, so
/// tests can move it).
async fn record_metrics(State(app): State<App>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    let code = resp.status().as_u16();
    let elapsed = started.elapsed();
    let (now, ms) = (
        app.clock().now_ms(),
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    );
    if resp
        .extensions()
        .get::<crate::base::wire::error::Refused>()
        .is_some()
    {
        app.sla().record_refused(now, ms);
    } else {
        if code >= 500 {
            tracing::error!(status = code, latency_ms = ms, "response failed");
        }
        app.sla().record(now, ms, code);
    }
    let status = code.to_string();
    metrics::counter!("khaacho_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("khaacho_http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
    resp
}

/// Turns an error response raised outside the handlers (a layer, or an axum extractor
/// such as the CSV import's body reader) into a problem response: one without a body type,
/// or with a plain-text one, whose text (axum's, never user data) becomes the detail.
async fn ensure_problem(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let plain = match resp.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(ct) => ct.as_bytes().starts_with(b"text/plain"),
    };
    if !plain {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|t| !t.is_empty());
    let title = status.canonical_reason().unwrap_or("Error");
    let detail = text.unwrap_or_else(|| title.to_lowercase());
    let mut problem = problem_response(status, "http", title, detail, vec![]);
    // Keep what the layer said besides the body (`Allow`, `Retry-After`, rate-limit headers).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().append(name.clone(), value.clone());
        }
    }
    problem
}
