//! Extractors whose rejections are problem JSON instead of axum's plain-text bodies.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;

use super::error::ApiError;

/// JSON body; a malformed body, wrong content type or oversize body becomes a problem.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// Query string.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);
