//! `GET /api/v1/sla` and the minute check's alerts (issue 12, operations console).

use serde_json::Value;

use crate::helpers::TestApp;

fn window<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["window"] == name)
        .unwrap()
}

async fn open_alerts(t: &TestApp, kind: &str) -> Vec<Value> {
    t.get_json(&format!("/api/v1/alerts?kind={kind}")).await["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn sla_counts_real_requests_and_judges_driven_outcomes() {
    let t = TestApp::spawn().await;
    // Move to a fresh minute far from anything recorded so far, at its second 10.
    let now = t.app.clock().now_ms();
    t.app
        .clock()
        .advance(7_200_000 + 70_000 - now.rem_euclid(60_000));

    // Real HTTP: 200s and a 404 are served, none is a server error.
    for _ in 0..3 {
        t.get("/health").await;
    }
    t.get("/api/v1/orders/00000000-0000-0000-0000-000000000000")
        .await;
    let body = t.get_json("/api/v1/sla").await;
    let w5 = window(&body, "5m");
    // The four above; the SLA request itself is recorded after it answered.
    assert_eq!(w5["requests"], 4, "{body}");
    assert_eq!(w5["server_errors"], 0);
    assert_eq!(w5["error_rate"]["value"], 0.0);
    assert_eq!(w5["availability"]["value"], 1.0);
    assert_eq!(w5["met"], true, "{body}");
    assert_eq!(window(&body, "1h")["requests"], 4);

    // Driven outcomes: 90 fast requests and 10 slow failures in this second, through the
    // recorder the middleware writes to.
    let now = t.app.clock().now_ms();
    for _ in 0..90 {
        t.app.sla().record(now, 20, 200);
    }
    for _ in 0..10 {
        t.app.sla().record(now, 1_200, 503);
    }
    let body = t.get_json("/api/v1/sla").await;
    let w5 = window(&body, "5m");
    // The five real requests so far (the first SLA request included) and the 100 driven.
    assert_eq!(w5["requests"], 105, "{body}");
    assert_eq!(w5["server_errors"], 10);
    // 95 of 105 are fast: p95 (rank 100) and p99 (rank 104) fall among the slow ones, in
    // the bucket up to 2.5 s.
    assert_eq!(w5["p95_ms"]["value"], 2500.0);
    assert_eq!(w5["p95_ms"]["objective"], 500.0);
    assert_eq!(w5["p95_ms"]["met"], false);
    assert_eq!(w5["p99_ms"]["value"], 2500.0);
    assert_eq!(w5["p99_ms"]["met"], false);
    let rate = w5["error_rate"]["value"].as_f64().unwrap();
    assert!((rate - 10.0 / 105.0).abs() < 1e-9, "{rate}");
    assert_eq!(w5["error_rate"]["met"], false);
    // This minute is bad; the 5-minute window spans 5 or 6 minutes.
    let minutes = if now.rem_euclid(60_000) / 1000 >= 59 {
        5.0
    } else {
        6.0
    };
    let availability = w5["availability"]["value"].as_f64().unwrap();
    assert!(
        (availability - (minutes - 1.0) / minutes).abs() < 1e-9,
        "{availability}"
    );
    assert_eq!(w5["met"], false);

    // Ten minutes later the 5-minute window is clean again; the hour still remembers.
    t.app.clock().advance(600_000);
    let body = t.get_json("/api/v1/sla").await;
    let w5 = window(&body, "5m");
    assert_eq!(w5["requests"], 0, "{body}");
    assert_eq!(w5["p95_ms"]["value"], Value::Null);
    assert_eq!(w5["met"], true);
    let h1 = window(&body, "1h");
    assert_eq!(h1["requests"], 106);
    assert_eq!(h1["server_errors"], 10);
    assert_eq!(h1["met"], false);

    // Staff only.
    let r = t
        .client_as(khaacho::auth::Role::Retailer, Some(uuid::Uuid::now_v7()))
        .get(t.url("/api/v1/sla"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn minute_check_raises_each_alert_once_while_open() {
    let t = TestApp::spawn_with(|s| {
        s.ops.dead_letters_alert = 0;
        s.ops.queue_age_alert_secs = 60;
    })
    .await;
    let app = &t.app;
    let now = app.clock().now_ms();

    // A quiet process: nothing to say.
    assert_eq!(khaacho::admin::sla::check(app, now).await.unwrap(), 0);

    // Slow but successful: only the p95 warning.
    for _ in 0..10 {
        app.sla().record(now, 700, 200);
    }
    assert_eq!(khaacho::admin::sla::check(app, now).await.unwrap(), 1);
    let p95 = open_alerts(&t, "latency_p95").await;
    assert_eq!(p95.len(), 1);
    assert_eq!(p95[0]["severity"], "warning");
    assert_eq!(p95[0]["detail"]["p95_ms"], 750.0);
    assert!(open_alerts(&t, "sla_violation").await.is_empty());

    // Failures: the SLA violation is critical; the p95 warning is still open, not repeated.
    for _ in 0..10 {
        app.sla().record(now, 30, 500);
    }
    assert_eq!(khaacho::admin::sla::check(app, now).await.unwrap(), 1);
    let v = open_alerts(&t, "sla_violation").await;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["severity"], "critical");
    assert_eq!(v[0]["detail"]["server_errors"], 10);
    assert_eq!(v[0]["detail"]["met"], false);
    assert_eq!(open_alerts(&t, "latency_p95").await.len(), 1);

    // A dead job above the threshold (0) and a ready job waiting 10 minutes.
    khaacho::with_write!(app.db(), c => sqlx::query(
        "INSERT INTO jobs (id, queue, kind, payload, priority, status, attempts, max_attempts, \
         run_at_ms, created_at_ms, updated_at_ms, errors) VALUES \
         ($1, 'maintenance', 'test.dead', '{}', 1, 'dead', 3, 3, $3, $3, $3, '[]'), \
         ($2, 'maintenance', 'test.waiting', '{}', 1, 'queued', 0, 3, $3, $3, $3, '[]')")
        .bind(uuid::Uuid::now_v7()).bind(uuid::Uuid::now_v7())
        .bind(khaacho::base::time::now_ms() - 600_000)
        .execute(c).await.map(|r| r.rows_affected()))
    .unwrap();
    assert_eq!(khaacho::admin::sla::check(app, now).await.unwrap(), 2);
    let dead = open_alerts(&t, "dead_letters").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["severity"], "critical");
    assert_eq!(dead[0]["detail"]["dead"], 1);
    let age = open_alerts(&t, "queue_age").await;
    assert_eq!(age.len(), 1);
    assert_eq!(age[0]["severity"], "warning");
    assert_eq!(age[0]["detail"]["queue"], "maintenance");

    // Nothing new while all are open.
    assert_eq!(khaacho::admin::sla::check(app, now).await.unwrap(), 0);

    // Acknowledged: raised again while the condition lasts.
    let id = v[0]["id"].as_str().unwrap();
    let r = t
        .client
        .post(t.url(&format!("/api/v1/alerts/{id}/acknowledge")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(khaacho::admin::sla::check(app, now).await.unwrap(), 1);
    assert_eq!(open_alerts(&t, "sla_violation").await.len(), 1);

    // Past the 5-minute window the service is fine again; dead letters and the old job
    // remain, and their alerts are still open: nothing new.
    app.clock().advance(600_000);
    assert_eq!(
        khaacho::admin::sla::check(app, app.clock().now_ms())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn minute_check_raises_an_open_breaker_once() {
    let t = TestApp::spawn_with(|s| {
        s.agents.llm_enabled = true;
        s.agents.chain = vec!["openai".into(), "local".into()];
        s.agents.openai = Some(khaacho_agents::OpenAiConfig {
            // Nothing listens on port 1: every call fails fast.
            base_url: "http://127.0.0.1:1/v1".into(),
            model: "test-model".into(),
            api_key: khaacho_agents::ApiKey::new("sk-test"),
            timeout_ms: 500,
        });
        s.agents.resilience.max_attempts = 1;
        s.agents.resilience.consecutive_failures = 2;
    })
    .await;
    t.seed().await;
    let now = t.app.clock().now_ms();
    assert_eq!(khaacho::admin::sla::check(&t.app, now).await.unwrap(), 0);
    for _ in 0..3 {
        let r = t
            .post_json(
                "/api/v1/orders/parse",
                &serde_json::json!({ "text": "chini 5 kg" }),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(khaacho::admin::sla::check(&t.app, now).await.unwrap(), 1);
    let open = open_alerts(&t, "breaker_open").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["severity"], "critical");
    assert_eq!(open[0]["subject"], "agent");
    assert_eq!(open[0]["detail"]["provider"], "openai");
    assert_eq!(khaacho::admin::sla::check(&t.app, now).await.unwrap(), 0);
}
