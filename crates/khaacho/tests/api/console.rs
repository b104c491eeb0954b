//! The browser console's shell and assets (the browser itself is driven by
//! `tests/browser/console.test.mjs`): content types, the Content-Security-Policy, caching,
//! the redirect from `/`, and problems for what does not exist.

use crate::helpers::{TestApp, assert_problem};

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The policy every console response carries: this origin only, no inline script.
fn assert_strict_csp(r: &reqwest::Response, host: &str) {
    let csp = header(r, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(
        csp.contains(&format!("connect-src 'self' ws://{host} wss://{host}")),
        "the socket's origin is missing from {csp}"
    );
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert!(!csp.contains('*'));
}

#[tokio::test]
async fn the_shell_and_its_assets_are_served_with_types_csp_and_revalidation() {
    let t = TestApp::spawn().await;
    let host = t.addr.to_string();
    let shell = t.get("/console").await;
    assert_eq!(shell.status(), 200);
    assert_eq!(header(&shell, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&shell, "cache-control"), "no-cache");
    assert_eq!(header(&shell, "x-content-type-options"), "nosniff");
    assert_strict_csp(&shell, &host);
    let html = shell.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/console/assets/console.js"></script>"#));
    assert!(html.contains(r#"href="/console/assets/console.css""#));
    // No inline script or style: the policy would block it.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(!html.contains("<style") && !html.contains(" style="));
    for handler in ["onclick", "onload", "onerror", "onsubmit", "javascript:"] {
        assert!(!html.contains(handler), "{handler} in the shell");
    }

    for (path, ct, needle) in [
        (
            "/console/assets/console.js",
            "text/javascript; charset=utf-8",
            "'/ws/tickets'",
        ),
        (
            "/console/assets/console.css",
            "text/css; charset=utf-8",
            "@media",
        ),
    ] {
        let r = t.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), ct, "{path}");
        assert_eq!(header(&r, "cache-control"), "no-cache");
        assert_strict_csp(&r, &host);
        let etag = header(&r, "etag");
        assert!(
            etag.starts_with('"') && etag.len() > 2,
            "{path}: etag {etag}"
        );
        assert!(r.text().await.unwrap().contains(needle), "{path}");
        // A browser revalidating an unchanged asset gets 304 and no body.
        let again = t
            .client
            .get(t.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
    }

    // Every label of the dictionary has a Nepali text in Devanagari.
    let js = t
        .get("/console/assets/console.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(js.contains("ne: {") && js.contains("अर्डर बोर्ड"));
}

#[tokio::test]
async fn the_root_redirects_to_the_console() {
    let t = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, status) in [("/", 307), ("/console/", 308)] {
        let r = client.get(t.url(path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(header(&r, "location"), "/console", "{path}");
    }
    // Followed, it lands on the shell.
    let r = t.get("/console").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Khaacho console"));
}

#[tokio::test]
async fn unknown_assets_and_methods_are_problems() {
    let t = TestApp::spawn().await;
    for path in [
        "/console/assets/nope.js",
        "/console/assets/..%2Fmod.rs",
        "/console/assets/index.html",
    ] {
        let p = assert_problem(t.get(path).await, 404).await;
        assert_eq!(p["detail"], "no such console asset", "{path}");
    }
    assert_problem(t.get("/console/nope").await, 404).await;
    let r = t
        .client
        .post(t.url("/console"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_problem(r, 405).await;
}

#[tokio::test]
async fn the_console_needs_no_credentials_and_is_not_rate_limited() {
    let t = TestApp::spawn_with(|s| {
        s.rate_limits.per_ip.burst = 2;
        s.rate_limits.per_ip.per_second = 0.001;
    })
    .await;
    for _ in 0..5 {
        assert_eq!(t.get("/console").await.status(), 200);
        assert_eq!(t.get("/console/assets/console.js").await.status(), 200);
    }
}
