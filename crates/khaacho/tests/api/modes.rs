//! Safe mode and degradation, black-box on both backends: safe mode keeps accepting orders
//! (API and WhatsApp) while the pipeline waits, and resumes them in order; the degradation
//! level rises at once with the measurements, falls one step after calm checks, spares the LLM
//! when degraded and serves customers only intake and status when critical. Every change is
//! audited and metered.

use khaacho::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::channels::{messages, say_as, spawn};
use crate::fulfilment::{offer, vendor, world};
use crate::helpers::{TestApp, assert_problem, audit_rows, sample};

const PHONE: &str = "+9779800000001";

async fn put_safe_mode(t: &TestApp, role: Role, body: Value) -> reqwest::Response {
    t.client_as(role, None)
        .put(t.url("/api/v1/admin/safe-mode"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn status(t: &TestApp, id: &str) -> String {
    t.get_json(&format!("/api/v1/orders/{id}")).await["status"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn level(t: &TestApp) -> String {
    t.get_json("/api/v1/admin/mode").await["level"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn check(t: &TestApp) {
    khaacho::admin::sla::check(&t.app, t.app.clock().now_ms())
        .await
        .unwrap();
}

async fn audit_count(t: &TestApp, action: &str) -> usize {
    audit_rows(t, &format!("action={action}")).await.len()
}

#[tokio::test]
async fn safe_mode_keeps_accepting_orders_and_resumes_them_in_order() {
    let t = spawn().await;
    let retailer = world(&t).await;
    let v = vendor(&t, "Bhandari Traders", 1).await;
    offer(&t, v, "CHINI-1", 100.0, 500.0).await;

    // Only an admin switches it, with a reason.
    assert_problem(
        put_safe_mode(
            &t,
            Role::Operator,
            json!({ "enabled": true, "reason": "x" }),
        )
        .await,
        403,
    )
    .await;
    assert_problem(
        put_safe_mode(&t, Role::Admin, json!({ "enabled": true, "reason": " " })).await,
        422,
    )
    .await;
    let r = put_safe_mode(
        &t,
        Role::Admin,
        json!({ "enabled": true, "reason": "database upgrade" }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let mode: Value = r.json().await.unwrap();
    assert_eq!(mode["safe_mode"], true, "{mode}");
    assert_eq!(mode["safe_mode_reason"], "database upgrade");
    assert_eq!(
        mode["paused_queues"],
        json!(["orders", "validate", "route"])
    );

    // Orders are accepted and stored; nothing processes them.
    let mut ids = Vec::new();
    for qty in [1, 2, 3] {
        let r = t
            .post_json(
                "/api/v1/orders",
                &json!({ "retailer_id": retailer, "lines": [{ "sku": "CHINI-1", "qty": qty, "unit": "kg" }] }),
            )
            .await;
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<Value>().await.unwrap()["order_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    t.run_jobs().await;
    // By WhatsApp too: the retailer hears that its order is received and will be processed.
    say_as(&t, "SMsafe1", PHONE, "chini 5 kg").await;
    t.run_jobs().await;
    say_as(&t, "SMsafe2", PHONE, "YES").await;
    t.run_jobs().await;
    let last = messages(&t, PHONE).await.last().cloned().unwrap();
    assert_eq!(last["template"], "order_placed_safe_mode", "{last}");
    assert!(
        last["body"]
            .as_str()
            .unwrap()
            .contains("will be processed soon"),
        "{last}"
    );
    let listed = t.get_json("/api/v1/orders?limit=10").await;
    let all: Vec<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 4, "{listed}");
    for id in &all {
        assert_eq!(status(&t, id).await, "received", "{id} waits");
    }
    // Waiting on purpose is not stuck: healing leaves them alone.
    t.app.clock().advance(20 * 60_000);
    let healed = khaacho::orders::pipeline::heal::heal(&t.app, t.app.clock().now_ms())
        .await
        .unwrap();
    assert_eq!(healed, Default::default());
    let metrics = t.metrics().await;
    assert_eq!(
        sample(&metrics, "khaacho_safe_mode"),
        Some(1.0),
        "{metrics}"
    );

    // Off: everything resumes, in the order it arrived.
    let r = put_safe_mode(
        &t,
        Role::Admin,
        json!({ "enabled": false, "reason": "upgrade done" }),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(t.run_jobs().await > 0);
    for id in &all {
        assert_eq!(status(&t, id).await, "routed", "{id}");
    }
    // Validated in the order they arrived (order ids and event ids are both time-ordered).
    let validated: Vec<Uuid> = khaacho::with_latest!(t.app.db(), c => sqlx::query_scalar(
        "SELECT order_id FROM order_events WHERE to_status = 'validated' ORDER BY id")
        .fetch_all(c).await)
    .unwrap();
    let mut arrived: Vec<Uuid> = all.iter().map(|id| id.parse().unwrap()).collect();
    arrived.sort();
    assert_eq!(validated, arrived, "validated in the order received");
    assert_eq!(audit_count(&t, "platform.safe_mode").await, 2);
    let metrics = t.metrics().await;
    assert_eq!(
        sample(&metrics, "khaacho_safe_mode"),
        Some(0.0),
        "{metrics}"
    );
}

/// The process that switches safe mode takes it at once. A refresh of its copy (every second,
/// to follow other processes) whose read was under way meanwhile may hold the row from before
/// the switch: taking it would undo the switch here until the next refresh, and the
/// pipeline's queues would claim jobs in safe mode meanwhile. The refresh is played in its two
/// halves around the switch, as the race interleaves them.
#[tokio::test]
async fn a_refresh_under_way_does_not_undo_a_switch_this_process_made() {
    let t = TestApp::spawn().await;
    let mode = t.app.mode();
    let before = khaacho::base::mode::read(t.app.db()).await.unwrap();
    assert!(!before.safe_mode);
    let reading = mode.reading();
    mode.set(&khaacho::base::mode::ModeRow {
        safe_mode: true,
        ..before.clone()
    });
    assert!(
        !mode.read_done(reading, &before),
        "a row read across the switch is not taken"
    );
    assert!(mode.safe_mode(), "the switch stands");
    assert!(mode.paused("validate"));
    // A refresh begun after the switch takes what it reads (here the stored row, as the
    // test switched this process's copy only).
    mode.refresh(t.app.db()).await.unwrap();
    assert!(!mode.safe_mode());
    let reading = mode.reading();
    assert!(mode.read_done(reading, &before));
}

#[tokio::test]
async fn degradation_rises_at_once_falls_after_calm_checks_and_sheds_load() {
    let t = TestApp::spawn_with(|s| {
        s.agents.llm_enabled = true;
        s.agents.chain = vec!["openai".into(), "local".into()];
        s.agents.openai = Some(khaacho_agents::OpenAiConfig {
            // Nothing listens on port 1: a call would fail and count on the breaker.
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
    check(&t).await;
    assert_eq!(level(&t).await, "normal");

    // Slow answers: degraded at once. The LLM is spared: the offline parser answers and the
    // provider's breaker never saw a call.
    let now = t.app.clock().now_ms();
    for _ in 0..100 {
        t.app.sla().record(now, 1_500, 200);
    }
    check(&t).await;
    assert_eq!(level(&t).await, "degraded");
    for _ in 0..3 {
        let p: Value = t
            .post_json("/api/v1/orders/parse", &json!({ "text": "chini 5 kg" }))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(p["agent"], "local", "{p}");
    }
    let agents: Value = t
        .client_as(Role::Admin, None)
        .get(t.url("/api/v1/admin/agents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agents["providers"][0]["breaker"], "closed", "{agents}");

    // Failing answers: critical. Customers may only order and read the status; staff keep all.
    for _ in 0..100 {
        t.app.sla().record(now, 50, 500);
    }
    check(&t).await;
    assert_eq!(level(&t).await, "critical");
    let retailer: Uuid = t.get_json("/api/v1/retailers?limit=1").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let shop = t.client_as(Role::Retailer, Some(retailer));
    let r = shop.get(t.url("/api/v1/products")).send().await.unwrap();
    assert_eq!(r.headers()["retry-after"], "30");
    let body = assert_problem(r, 503).await;
    assert!(
        body["type"].as_str().unwrap().ends_with("degraded"),
        "{body}"
    );
    let r = shop
        .post(t.url("/api/v1/orders"))
        .json(&json!({ "lines": [{ "sku": "SUGAR-50", "qty": 1, "unit": "kg" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = shop
        .get(t.url(&format!("/api/v1/orders/{id}/status")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Work already taken keeps moving: the retailer's confirm and a vendor's accept reach
    // their handlers (this order is not delivered yet; that part does not exist).
    let r = shop
        .post(t.url(&format!("/api/v1/orders/{id}/confirm")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(r, 409).await;
    assert!(
        body["detail"].as_str().unwrap().contains("delivered"),
        "{body}"
    );
    let wholesaler = t.client_as(Role::Vendor, Some(Uuid::now_v7()));
    let r = wholesaler
        .post(t.url(&format!("/api/v1/fulfilments/{}/accept", Uuid::now_v7())))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    assert_eq!(
        wholesaler
            .get(t.url("/api/v1/fulfilments"))
            .send()
            .await
            .unwrap()
            .status(),
        503,
        "a vendor's lists wait"
    );
    assert_eq!(
        t.get("/api/v1/products").await.status(),
        200,
        "staff keep every route"
    );

    // Calm again (the window moved on): one step down after three calm checks, not before.
    t.app.clock().advance(6 * 60_000);
    for expected in [
        "critical", "critical", "degraded", "degraded", "degraded", "normal",
    ] {
        check(&t).await;
        assert_eq!(level(&t).await, expected);
    }
    assert_eq!(
        shop.get(t.url("/api/v1/products"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(audit_count(&t, "platform.degradation").await, 4);
    let metrics = t.metrics().await;
    assert_eq!(
        sample(&metrics, "khaacho_degradation_level"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("khaacho_mode_changes_total{to=\"critical\"}"),
        "{metrics}"
    );
}

/// The server's own refusals — requests turned away because the process is full, new orders
/// pushed back, customers refused at `critical` — count against availability but are not
/// failures for the degradation level: counted, `critical`'s own refusals would hold it at
/// `critical` for as long as customers keep asking.
#[tokio::test]
async fn the_servers_own_refusals_do_not_raise_the_degradation_level() {
    use khaacho::base::mode::Level;
    // No request slot at all: every request but the probes is turned away.
    let t = TestApp::spawn_with(|s| s.http.max_in_flight = 0).await;
    for _ in 0..100 {
        assert_problem(t.get("/api/v1/products").await, 503).await;
    }
    let now = t.app.clock().now_ms();
    let w = t.app.sla().window(now, 300);
    assert_eq!((w.total, w.errors, w.refused), (100, 100, 100));
    assert_eq!(
        w.error_rate(),
        1.0,
        "customers saw 503s: availability counts them"
    );
    let report = khaacho::admin::sla::report(&t.app, now);
    let five = &report.windows[0];
    assert_eq!((five.server_errors, five.refused), (100, 100));
    assert_eq!(
        five.p95_ms.value, None,
        "a refusal has no latency: none was served"
    );
    t.app.sla().record(now, 700, 200);
    assert_eq!(
        khaacho::admin::sla::report(&t.app, now).windows[0]
            .p95_ms
            .value,
        Some(750.0),
        "the quantiles are of the requests served"
    );
    check(&t).await;
    assert_eq!(t.app.mode().level(), Level::Normal);
    // Real failures do raise it.
    for _ in 0..20 {
        t.app.sla().record(now, 50, 500);
    }
    check(&t).await;
    assert_eq!(t.app.mode().level(), Level::Critical);
}
