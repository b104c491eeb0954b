//! Health, readiness, metrics, the OpenAPI document and generic HTTP behaviour.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, sample};

/// Every route the API serves. A route added to the server but not to the OpenAPI
/// document (or the other way round) fails `openapi_documents_every_route`.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/orders"),
    ("get", "/api/v1/orders"),
    ("get", "/api/v1/orders/{id}"),
    ("get", "/api/v1/orders/{id}/status"),
    ("post", "/api/v1/orders/{id}/approve"),
    ("post", "/api/v1/orders/{id}/reject"),
    ("post", "/api/v1/orders/{id}/cancel"),
    ("post", "/api/v1/orders/parse"),
    ("get", "/api/v1/admin/agents"),
    ("put", "/api/v1/admin/agents"),
    ("get", "/api/v1/products"),
    ("get", "/api/v1/products/{sku}"),
    ("get", "/api/v1/products/{sku}/prices"),
    ("get", "/api/v1/products/{sku}/price-history"),
    ("get", "/api/v1/catalog/export"),
    ("post", "/api/v1/catalog/import"),
    ("put", "/api/v1/offers"),
    ("get", "/api/v1/retailers"),
    ("post", "/api/v1/retailers"),
    ("get", "/api/v1/retailers/{id}"),
    ("patch", "/api/v1/retailers/{id}"),
    ("get", "/api/v1/vendors"),
    ("post", "/api/v1/vendors"),
    ("get", "/api/v1/vendors/{id}"),
    ("patch", "/api/v1/vendors/{id}"),
    ("get", "/api/v1/reports/summary"),
    ("get", "/api/v1/admin/mode"),
    ("put", "/api/v1/admin/safe-mode"),
    ("get", "/api/v1/reports/orders.csv"),
    ("get", "/api/v1/reports/credit.csv"),
    ("get", "/api/v1/vendors/{id}/score"),
    ("get", "/api/v1/admin/jobs"),
    ("get", "/api/v1/admin/jobs/{id}"),
    ("delete", "/api/v1/admin/jobs/{id}"),
    ("post", "/api/v1/admin/jobs/{id}/retry"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("post", "/api/v1/auth/api-keys"),
    ("get", "/api/v1/auth/api-keys"),
    ("delete", "/api/v1/auth/api-keys/{id}"),
    ("post", "/api/v1/users"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/credit/accounts/{id}"),
    ("get", "/api/v1/credit/accounts/{id}/ledger"),
    ("post", "/api/v1/credit/accounts/{id}/payments"),
    ("put", "/api/v1/credit/accounts/{id}/limit"),
    ("post", "/api/v1/credit/accounts/{id}/block"),
    ("post", "/api/v1/credit/accounts/{id}/unblock"),
    ("get", "/api/v1/credit/accounts/{id}/score"),
    ("get", "/api/v1/credit/reconciliation"),
    ("get", "/api/v1/credit/alerts"),
    ("post", "/api/v1/credit/alerts/{id}/acknowledge"),
    ("get", "/api/v1/orders/{id}/routing"),
    ("get", "/api/v1/orders/{id}/routing-decisions"),
    ("post", "/api/v1/orders/{id}/confirm"),
    ("post", "/api/v1/orders/{id}/report-issue"),
    ("get", "/api/v1/fulfilments"),
    ("get", "/api/v1/fulfilments/{id}"),
    ("post", "/api/v1/fulfilments/{id}/accept"),
    ("post", "/api/v1/fulfilments/{id}/reject"),
    ("post", "/api/v1/fulfilments/{id}/cancel"),
    ("post", "/api/v1/fulfilments/{id}/dispatch"),
    ("post", "/api/v1/fulfilments/{id}/deliver"),
    ("post", "/api/v1/channels/twilio/messages"),
    ("post", "/api/v1/channels/twilio/status"),
    ("get", "/api/v1/channels/messages"),
    ("post", "/api/v1/channels/messages/{id}/retry"),
    ("post", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks"),
    ("delete", "/api/v1/webhooks/{id}"),
    ("get", "/api/v1/webhooks/{id}/deliveries"),
    ("post", "/api/v1/webhooks/deliveries/{id}/retry"),
    ("get", "/api/v1/alerts"),
    ("post", "/api/v1/alerts/{id}/acknowledge"),
    ("get", "/api/v1/sla"),
    ("post", "/api/v1/ws/tickets"),
    ("get", "/api/v1/ws"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
];

#[tokio::test]
async fn openapi_documents_every_route() {
    let t = TestApp::spawn().await;
    let doc = t.get_json("/api/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    for (m, p) in ROUTES {
        assert!(
            documented.contains(&(m.to_string(), p.to_string())),
            "{m} {p} is missing from the OpenAPI document"
        );
    }
    assert_eq!(
        documented.len(),
        ROUTES.len(),
        "documented routes not listed here: {documented:?}"
    );
    // Every documented operation is routed by the server (never the not-found fallback).
    for (m, p) in &documented {
        let path = p
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{sku}", "X");
        let method = reqwest::Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
        let r = t.client.request(method, t.url(&path)).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!(
            !(status == 404 && body.contains("no such route")) && status != 405,
            "{m} {p} is not routed: {status}"
        );
    }
    // Every schema the document refers to is in it (a view nested in another is listed too).
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "{refs:?}");
    for r in &refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
        assert!(
            schemas.contains_key(name),
            "{r} is referred to but not defined"
        );
    }
    assert!(schemas.contains_key("DeliverToView"));
    let docs = t.get("/api/v1/docs/").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

/// Every `$ref` in `v`.
fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let t = TestApp::spawn().await;
    assert_eq!(t.get_json("/health").await, json!({ "status": "ok" }));
    let ready = t.get_json("/ready").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["queue"], "ok");
    t.seed().await;
    let retailer = t.retailer().await;
    let placed = t
        .order(
            &retailer,
            json!([{ "sku": "RICE-JEERA-25", "qty": 1, "unit": "kg" }]),
        )
        .await;
    let status = format!(
        "/api/v1/orders/{}/status",
        placed["order_id"].as_str().unwrap()
    );
    assert_eq!(t.get_json(&status).await["status"], "received");
    let text = t.metrics().await;
    // This process's connection pools: the most each may open (`db_max_connections` is 4
    // here), and how many it holds open. The status poll above read on the keyed pool.
    let pools: &[(&str, f64)] = if t.app.db().is_postgres() {
        &[("main", 4.0), ("keyed", 1.0)]
    } else {
        &[("write", 1.0), ("read", 4.0)]
    };
    for (pool, most) in pools {
        let max = format!("khaacho_db_connections_max{{pool=\"{pool}\"}}");
        assert_eq!(sample(&text, &max), Some(*most), "{max}");
        let open = format!("khaacho_db_connections{{pool=\"{pool}\",state=\"open\"}}");
        let idle = format!("khaacho_db_connections{{pool=\"{pool}\",state=\"idle\"}}");
        let (open, idle) = (sample(&text, &open).unwrap(), sample(&text, &idle).unwrap());
        assert!(
            open >= 1.0 && open <= *most && idle <= open,
            "{pool}: {open} open, {idle} idle"
        );
    }
    for needle in [
        "khaacho_http_requests_total{method=\"POST\",route=\"/api/v1/orders\",status=\"202\"}",
        "khaacho_http_request_duration_seconds_bucket",
        "khaacho_jobs_enqueued_total{kind=\"order.validate\"}",
        "khaacho_queue_oldest_ready_age_seconds{queue=\"validate\"}",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}");
    }
    assert_eq!(
        sample(&text, "khaacho_queue_depth{queue=\"validate\"}"),
        Some(1.0)
    );
    t.run_jobs().await;
    let text = t.metrics().await;
    for needle in [
        "khaacho_jobs_started_total{kind=\"order.validate\"}",
        "khaacho_jobs_succeeded_total{kind=\"order.validate\"}",
        "khaacho_job_duration_seconds_bucket{kind=\"order.validate\"",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}");
    }
    for (series, value) in [
        ("khaacho_queue_depth{queue=\"validate\"}", 0.0),
        ("khaacho_queue_depth{queue=\"route\"}", 0.0),
        // Kept by the order.changed consumer: the intake's +1 received, the validation's
        // received → validated, the routing's validated → routed.
        ("khaacho_orders{state=\"received\"}", 0.0),
        ("khaacho_orders{state=\"validated\"}", 0.0),
        ("khaacho_orders{state=\"routed\"}", 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series}");
    }
}

#[tokio::test]
async fn unknown_routes_methods_and_ids_get_problems() {
    let t = TestApp::spawn().await;
    let p = assert_problem(t.get("/api/v1/nowhere").await, 404).await;
    assert_eq!(p["detail"], "no such route");
    let r = t
        .client
        .patch(t.url("/api/v1/orders"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 405).await;
    assert_problem(t.get("/api/v1/orders/not-a-uuid").await, 400).await;
    let r = t.get("/health").await;
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().contains_key("x-request-id"));
    let long = "x".repeat(300);
    let forged = t
        .client
        .get(t.url("/health"))
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    assert_ne!(forged.headers()["x-request-id"], long.as_str());
    let kept = t
        .client
        .get(t.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123");
    let _: Value = t.get_json("/ready").await;
}
