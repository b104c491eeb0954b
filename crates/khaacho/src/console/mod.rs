//! The browser console (DESIGN.md §14): one HTML shell, one vanilla JavaScript module and one
//! stylesheet, embedded in the binary and served at `/console` (`/` redirects there). No CDN,
//! no build step: the page talks only to the public API and the live-updates WebSocket, with
//! the caller's own token, so it can do nothing the API would not let that caller do.
//!
//! Served with a strict Content-Security-Policy (scripts, styles and connections from this
//! origin only, the WebSocket to this host included; no inline script) and `Cache-Control:
//! no-cache` with an `ETag`, so a browser revalidates and a new binary's assets are picked up
//! at once. Not in the OpenAPI document: these are pages, not API.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::base::wire::error::problem_response;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    etag: String,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, body: &'static str) -> Self {
        Self {
            name,
            content_type,
            body,
            etag: format!("\"{:016x}\"", fnv1a(body.as_bytes())),
        }
    }
}

/// The shell (`/console`) and its assets (`/console/assets/{name}`).
static SHELL: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "index.html",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    )
});
static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        Asset::new(
            "console.js",
            "text/javascript; charset=utf-8",
            include_str!("assets/console.js"),
        ),
        Asset::new(
            "console.css",
            "text/css; charset=utf-8",
            include_str!("assets/console.css"),
        ),
    ]
});

/// The console's routes (merged by `http::router`, outside `/api/v1`). Generic over the
/// router's state: the console needs none, so it imports nothing of the application.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/console") }))
        .route("/console", get(shell))
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .route("/console/assets/{name}", get(asset))
}

async fn shell(headers: HeaderMap) -> Response {
    serve(&SHELL, &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => serve(a, &headers),
        None => problem_response(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            "no such console asset".into(),
            vec![],
        ),
    }
}

fn serve(a: &Asset, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            )],
            a.body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&a.etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&csp(headers)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// The page's policy. `connect-src 'self'` covers `ws:`/`wss:` to this host in CSP 3, but not
/// in every browser still in use, so the socket's origin is named too — from `Host` only when
/// it is a plain `host[:port]` (anything else: `'self'` alone).
fn csp(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
    let ws = host.map_or_else(String::new, |h| format!(" ws://{h} wss://{h}"));
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{ws}; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// FNV-1a, for the assets' `ETag` (content-addressed, stable across builds of the same text).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_socket_only_for_a_plain_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(csp(&h).contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"));
        h.insert(header::HOST, HeaderValue::from_static("evil; script-src *"));
        assert!(csp(&h).contains("connect-src 'self';"));
        assert!(!csp(&h).contains("evil"));
    }
}
