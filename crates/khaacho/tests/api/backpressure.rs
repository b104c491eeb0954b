//! Intake back-pressure: no congestion collapse. Once the pipeline is too far behind, new
//! orders get `503` with `Retry-After` (and nothing is written); orders already accepted are
//! processed; intake resumes once the backlog is caught up.

use std::time::Duration;

use khaacho::base::time::now_ms;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};

/// Moves every ready validation job's `run_at_ms` to `at`.
async fn set_validation_run_at(t: &TestApp, at: i64) {
    khaacho::with_write!(t.app.db(), c => sqlx::query(
        "UPDATE jobs SET run_at_ms = $1 WHERE kind = 'order.validate' AND status = 'queued'")
        .bind(at)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
    .unwrap();
}

#[tokio::test]
async fn intake_pushes_back_while_the_pipeline_is_behind_and_recovers() {
    let t = TestApp::spawn_with(|s| {
        s.backpressure.enabled = true;
        s.backpressure.max_ready_age_ms = 2_000;
        s.backpressure.sample_interval_ms = 50;
    })
    .await;
    t.seed().await;
    let retailer = t.retailer().await;
    let page = t.get_json("/api/v1/products?limit=2").await;
    let lines: Vec<Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!({ "sku": p["sku"], "qty": 1, "unit": p["unit"] }))
        .collect();
    let body = json!({ "retailer_id": retailer, "lines": lines });
    let first = t.order(&retailer, json!(lines)).await;

    // A delayed retry in the future is not a backlog: still accepted.
    set_validation_run_at(&t, now_ms() + 60_000).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    t.order(&retailer, json!(lines)).await;

    // The workers have fallen a minute behind.
    set_validation_run_at(&t, now_ms() - 60_000).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    let orders_before = t.count("orders").await;
    let r = t.post_json("/api/v1/orders", &body).await;
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let problem = assert_problem(r, 503).await;
    assert_eq!(problem["type"], "urn:khaacho:problem:overloaded");
    assert!(problem["detail"].as_str().unwrap().contains("behind"));
    assert_eq!(
        t.count("orders").await,
        orders_before,
        "a refusal writes nothing"
    );
    let metrics = t.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("khaacho_intake_backpressure_total{channel=\"api\"}")),
        "refusals are counted"
    );

    // The workers catch up: everything accepted before is processed, intake resumes.
    t.run_jobs().await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    t.order(&retailer, json!(lines)).await;
    let status = t
        .get_json(&format!(
            "/api/v1/orders/{}/status",
            first["order_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status["status"], "routed", "nothing accepted was dropped");
}
