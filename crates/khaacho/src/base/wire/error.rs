//! One error type for the HTTP layer, rendered as RFC 9457 problem details. Server errors
//! are opaque to the client and logged with the request id.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A problem with one input field.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// Where: a JSON path like `lines[2].qty`, or `row 5.unit` for CSV.
    pub field: String,
    /// What is wrong, for people.
    pub message: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// RFC 9457 problem details as sent over the wire.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// Field-level errors of a validation failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request body that is well-formed but invalid (422); every problem is listed.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A malformed query or path parameter (400); every problem is listed.
    #[error("invalid parameter")]
    InvalidParams(Vec<FieldError>),
    /// The request could not be read as such (malformed JSON, wrong content type, body too
    /// large, body too slow); the status says which.
    #[error("{1}")]
    BadRequest(StatusCode, String),
    /// Missing, malformed, expired or unknown credentials (401 with `WWW-Authenticate`).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated, but the role or tenant may not do this (403; audited by the middleware).
    #[error("{0}")]
    Forbidden(String),
    /// No such resource (or not visible to the caller).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the resource's state.
    #[error("{0}")]
    Conflict(String),
    /// The state machine forbids the change.
    #[error("{0}")]
    IllegalTransition(String),
    /// A dependency (the database) is unavailable.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The server is shedding load to stay within its capacity (503 with `Retry-After`).
    #[error("{detail}")]
    Overloaded {
        /// What is behind, for people.
        detail: String,
        /// When to try again.
        retry_after_secs: u64,
    },
    /// Anything else: logged, opaque to the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                ApiError::Unavailable("database busy".into())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    /// A body that could not be read: too large (413) or broken off by the client (400).
    fn from(r: BytesRejection) -> Self {
        ApiError::BadRequest(r.status(), r.body_text())
    }
}

impl ApiError {
    /// One validation error of a request body (422).
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// One malformed query or path parameter (400).
    pub fn param(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidParams(vec![FieldError::new(field, message)])
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
            ),
            ApiError::InvalidParams(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-parameter",
                "Invalid parameter",
            ),
            ApiError::BadRequest(s, _) => (*s, "bad-request", status_title(*s)),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::IllegalTransition(_) => (
                StatusCode::CONFLICT,
                "illegal-transition",
                "Illegal state transition",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            ApiError::Overloaded { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded", "Overloaded")
            }
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }
}

fn status_title(s: StatusCode) -> &'static str {
    s.canonical_reason().unwrap_or("Error")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title) = self.parts();
        let detail = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                "an unexpected error occurred; quote the x-request-id header when reporting it"
                    .to_string()
            }
            ApiError::Unavailable(d) => {
                tracing::warn!(detail = %d, "dependency unavailable");
                self.to_string()
            }
            other => other.to_string(),
        };
        let denied = match &self {
            ApiError::Forbidden(reason) => Some(AuthzDenied(reason.clone())),
            _ => None,
        };
        let unauthorized = matches!(self, ApiError::Unauthorized(_));
        let refused = matches!(self, ApiError::Overloaded { .. });
        let retry_after = match &self {
            ApiError::Overloaded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let errors = match self {
            ApiError::Validation(errors) | ApiError::InvalidParams(errors) => errors,
            _ => Vec::new(),
        };
        let mut resp = problem_response(status, kind, title, detail, errors);
        if unauthorized {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"khaacho\""),
            );
        }
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if refused {
            // The server turned it away to protect itself (`record_metrics` tells).
            resp.extensions_mut().insert(Refused);
        }
        if let Some(d) = denied {
            resp.extensions_mut().insert(d);
        }
        resp
    }
}

/// Marks a `503` the server chose to give — the process full, the pipeline behind, a
/// customer's request at the `critical` level — so the HTTP record counts it as a refusal,
/// not a failure (`SlaRecorder::record_refused`).
#[derive(Clone, Copy, Debug)]
pub struct Refused;

/// Marks a 403 answer so the security middleware writes the `authz.denied` audit row.
#[derive(Clone, Debug)]
pub struct AuthzDenied(pub String);

/// Builds a problem response (also used by middleware for errors raised outside handlers).
pub fn problem_response(
    status: StatusCode,
    kind: &str,
    title: &str,
    detail: String,
    errors: Vec<FieldError>,
) -> Response {
    let body = Problem {
        kind: format!("urn:khaacho:problem:{kind}"),
        title: title.to_string(),
        status: status.as_u16(),
        detail,
        errors,
    };
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}
