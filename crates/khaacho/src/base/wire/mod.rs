//! The shared pieces of the wire format: problem errors, extractors, pages and cursors,
//! query-parameter readers. Features build their HTTP handlers from these; the router and
//! middleware that assemble them live at the top (`crate::http`).
//!
//! One rule for bad input: a malformed query or path parameter answers 400
//! ([`ApiError::param`]), a request body that is well-formed but invalid answers 422
//! ([`ApiError::field`]); both name the offending field in `errors[]`. Control characters
//! are refused at the edge by one rule too ([`controls`]).

pub mod controls;
pub mod error;
pub mod extract;

use axum::http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use self::error::ApiError;

/// The request id header, accepted from clients or generated.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of this request (set by the middleware).
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A page of a list with the cursor of the next page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Cuts rows fetched with `limit + 1` down to one page and names the cursor of the next
/// page (the extra row only tells that there is one).
pub fn split_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    cursor: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(cursor)
    } else {
        None
    };
    (rows, next)
}

/// Paging by id (lists in creation order).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IdPage {
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

/// Validates a requested page size (default 50, 1–200); out of range is a bad parameter.
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(l) if (1..=200).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::param("limit", "limit must be between 1 and 200")),
    }
}

/// Encodes a `(created_at_ms, id)` keyset position.
pub fn encode_cursor(ms: i64, id: Uuid) -> String {
    format!("{ms}.{}", id.simple())
}

/// Decodes [`encode_cursor`]'s output; anything else is a bad `cursor` parameter.
pub fn decode_cursor(s: &str) -> Result<(i64, Uuid), ApiError> {
    s.split_once('.')
        .and_then(|(ms, id)| Some((ms.parse().ok()?, Uuid::parse_str(id).ok()?)))
        .ok_or_else(invalid_cursor)
}

/// The answer to a cursor that no page of this list could have handed out (400).
pub fn invalid_cursor() -> ApiError {
    ApiError::param(
        "cursor",
        "invalid cursor; pass next_cursor from the previous page",
    )
}

/// Reads an optional RFC 3339 time query parameter as epoch milliseconds; anything else is
/// a bad parameter named `field`.
pub fn parse_time_param(field: &'static str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .map_err(|_| {
                    ApiError::param(
                        field,
                        "must be an RFC 3339 time, e.g. 2026-11-23T10:00:00+05:45",
                    )
                })
        })
        .transpose()
}
