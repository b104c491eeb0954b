//! Signed outbound webhooks, black-box on both backends, against local mock receivers that
//! verify `Khaacho-Signature` with the subscription's secret: deliveries signed and scoped
//! (a vendor hears only of its own parts, without order money), the retry schedule on the
//! app's clock, dead and retried by the owner, RBAC, the URL rule, deletion, and a rerun of
//! the `order.changed` consumer writing nothing twice.

use std::time::Duration;

use khaacho::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::fulfilment::{offer, place, vendor, world};
use crate::helpers::{TestApp, assert_problem, audit_rows};

const MINUTE: i64 = 60_000;

async fn spawn() -> TestApp {
    TestApp::spawn_with(|s| s.webhooks.allow_insecure_urls = true).await
}

/// Subscribes as `client`; returns the created subscription (with its secret).
async fn subscribe(t: &TestApp, client: &reqwest::Client, body: Value) -> Value {
    let r = client
        .post(t.url("/api/v1/webhooks"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{body}");
    r.json().await.unwrap()
}

/// A receiver at `route` that answers 200 to a request signed with `secret` (at the app's
/// clock, 5 minutes' tolerance) and carrying the event id of its body, else 401.
async fn receiver(server: &MockServer, t: &TestApp, route: &str, secret: &str, status: u16) {
    let app = t.app.clone();
    let secret = secret.to_string();
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(move |req: &Request| {
            let header = req
                .headers
                .get("Khaacho-Signature")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let now = (app.clock().now_ms() / 1000) as u64;
            let signed = khaacho_auth::webhook::verify_at(
                secret.as_bytes(),
                header,
                &req.body,
                Duration::from_secs(300),
                now,
            )
            .is_ok();
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let event_id = req
                .headers
                .get("Khaacho-Event-Id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !signed || body["id"] != event_id {
                return ResponseTemplate::new(401);
            }
            ResponseTemplate::new(status)
        })
        .mount(server)
        .await;
}

/// The bodies `server` received at `route` that it accepted as signed (every request in
/// these tests is; a 401 would leave its delivery queued and fail the test elsewhere).
async fn received(server: &MockServer, route: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == route)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn deliveries(t: &TestApp, client: &reqwest::Client, sub: &str) -> Vec<Value> {
    let r = client
        .get(t.url(&format!("/api/v1/webhooks/{sub}/deliveries")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn types(bodies: &[Value]) -> Vec<&str> {
    bodies.iter().map(|b| b["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn deliveries_are_signed_and_a_vendor_hears_only_of_its_own_parts_without_order_money() {
    let t = spawn().await;
    let server = MockServer::start().await;
    let retailer = world(&t).await;
    let v1 = vendor(&t, "Bhandari Traders", 1).await;
    let v2 = vendor(&t, "Tel Bhandar", 2).await;
    offer(&t, v1, "CHINI-1", 100.0, 50.0).await;
    offer(&t, v2, "TEL-1", 200.0, 50.0).await;
    let admin = t.client_as(Role::Admin, None);
    let staff = subscribe(
        &t,
        &admin,
        json!({ "url": format!("{}/staff", server.uri()), "events": ["*"] }),
    )
    .await;
    let vendor1 = t.client_as(Role::Vendor, Some(v1));
    let vendor2 = t.client_as(Role::Vendor, Some(v2));
    let mine = subscribe(
        &t,
        &vendor1,
        json!({ "url": format!("{}/v1", server.uri()), "events": ["order.routed", "order.accepted"] }),
    )
    .await;
    let theirs = subscribe(
        &t,
        &vendor2,
        json!({ "url": format!("{}/v2", server.uri()), "events": ["order.routed"] }),
    )
    .await;
    assert_eq!(mine["vendor_id"], v1.to_string(), "a vendor's own");
    assert!(staff["vendor_id"].is_null(), "staff-wide");
    for (sub, route) in [(&staff, "/staff"), (&mine, "/v1"), (&theirs, "/v2")] {
        let secret = sub["secret"].as_str().unwrap();
        assert!(secret.starts_with("whsec_"));
        receiver(&server, &t, route, secret, 200).await;
    }

    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }, { "sku": "TEL-1", "qty": 2, "unit": "litre" }]),
    )
    .await;
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(o["status"], "routed", "{o}");

    // Staff-wide: every change, with the order's money and every part.
    let s = received(&server, "/staff").await;
    assert_eq!(
        types(&s),
        ["order.received", "order.validated", "order.routed"],
        "{s:?}"
    );
    let routed = &s[2];
    assert_eq!(routed["data"]["order_id"], id);
    assert_eq!(
        (
            routed["data"]["from"].as_str(),
            routed["data"]["to"].as_str()
        ),
        (Some("validated"), Some("routed"))
    );
    assert!(routed["data"]["total_paisa"].as_i64().unwrap() > 0);
    assert_eq!(routed["data"]["parts"].as_array().unwrap().len(), 2);

    // Each vendor: its own part only, no order total, no retailer.
    for (route, v) in [("/v1", v1), ("/v2", v2)] {
        let b = received(&server, route).await;
        assert_eq!(types(&b), ["order.routed"], "{route}: {b:?}");
        let data = &b[0]["data"];
        let parts = data["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 1, "{route}: {data}");
        assert_eq!(parts[0]["vendor_id"], v.to_string());
        assert!(
            data.get("total_paisa").is_none() && data.get("retailer_id").is_none(),
            "{data}"
        );
    }

    // The delivery log: delivered, 200, one attempt.
    let d = deliveries(&t, &vendor1, mine["id"].as_str().unwrap()).await;
    assert_eq!(d.len(), 1);
    assert_eq!(
        (
            d[0]["status"].as_str(),
            d[0]["last_status_code"].as_i64(),
            d[0]["attempts"].as_i64()
        ),
        (Some("delivered"), Some(200), Some(1))
    );
    assert_eq!(d[0]["log"].as_array().unwrap().len(), 1);
    assert!(d[0]["log"][0]["error"].is_null());
    assert_eq!(d[0]["event_id"], d[0]["payload"]["id"]);
    // Staff-wide, a page of several deliveries: each with its own one attempt.
    let d = deliveries(&t, &admin, staff["id"].as_str().unwrap()).await;
    assert_eq!(d.len(), 3);
    for x in &d {
        let log = x["log"].as_array().unwrap();
        assert_eq!(
            (
                log.len(),
                log[0]["attempt"].as_i64(),
                log[0]["status_code"].as_i64()
            ),
            (1, Some(1), Some(200)),
            "{x}"
        );
    }

    // Lists: the secret is never shown again; a vendor sees only its own.
    let list = vendor2
        .get(t.url("/api/v1/webhooks"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], theirs["id"]);
    assert!(items[0].get("secret").is_none());
    let all = admin
        .get(t.url("/api/v1/webhooks"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    let r = vendor2
        .get(t.url(&format!(
            "/api/v1/webhooks/{}/deliveries",
            mine["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;

    // A rerun of the consumer over the same changes writes no delivery twice.
    let before = t.count("webhook_deliveries").await;
    let id: Uuid = id.parse().unwrap();
    let events: Vec<(Uuid, Option<String>, String)> = khaacho::with_latest!(t.app.db(), c =>
        sqlx::query_as("SELECT id, from_status, to_status FROM order_events WHERE order_id = $1 ORDER BY id")
            .bind(id).fetch_all(c).await)
    .unwrap();
    let changes: Vec<Value> = events
        .into_iter()
        .map(|(event, from, to)| json!({ "order_id": id, "event_id": event, "from": from, "to": to }))
        .collect();
    let job: khaacho::orders::transition::OrderChanged =
        serde_json::from_value(json!({ "changes": changes })).unwrap();
    let mut tx = t.app.db().begin().await.unwrap();
    khaacho::queue::enqueue(&mut tx, &job, Default::default())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(t.run_jobs().await >= 1);
    assert_eq!(t.count("webhook_deliveries").await, before);
    assert_eq!(received(&server, "/staff").await.len(), 3);
}

#[tokio::test]
async fn failed_deliveries_retry_after_1_5_15_30_60_minutes_then_go_dead_and_the_owner_retries() {
    let t = spawn().await;
    let server = MockServer::start().await;
    let retailer = world(&t).await;
    let admin = t.client_as(Role::Admin, None);
    let sub = subscribe(
        &t,
        &admin,
        json!({ "url": format!("{}/hook", server.uri()), "events": ["order.received"] }),
    )
    .await;
    let sub_id = sub["id"].as_str().unwrap().to_string();
    // A 410 is an answer (the breaker stays closed), but not a delivery.
    receiver(&server, &t, "/hook", sub["secret"].as_str().unwrap(), 410).await;
    place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 1, "unit": "kg" }]),
    )
    .await;
    let d = &deliveries(&t, &admin, &sub_id).await[0];
    assert_eq!(
        (
            d["status"].as_str(),
            d["attempts"].as_i64(),
            d["last_status_code"].as_i64()
        ),
        (Some("queued"), Some(1), Some(410)),
        "{d}"
    );
    assert!(d["last_error"].as_str().unwrap().contains("410"), "{d}");
    let sweep = || async {
        khaacho::webhooks::sender::sweep(&t.app, t.app.clock().now_ms())
            .await
            .unwrap()
    };
    for (i, wait) in [1, 5, 15, 30, 60].into_iter().enumerate() {
        t.app.clock().advance(wait * MINUTE - 20_000);
        sweep().await;
        assert_eq!(
            deliveries(&t, &admin, &sub_id).await[0]["attempts"],
            i as i64 + 1,
            "before {wait} min"
        );
        t.app.clock().advance(20_000);
        sweep().await;
        assert_eq!(
            deliveries(&t, &admin, &sub_id).await[0]["attempts"],
            i as i64 + 2,
            "after {wait} min"
        );
    }
    let d = deliveries(&t, &admin, &sub_id).await[0].clone();
    assert_eq!(d["status"], "dead", "{d}");
    assert_eq!(d["log"].as_array().unwrap().len(), 6);
    assert!(
        d["log"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status_code"] == 410 && a["latency_ms"].as_i64().unwrap() >= 0)
    );
    t.app.clock().advance(24 * 60 * MINUTE);
    sweep().await;
    assert_eq!(
        deliveries(&t, &admin, &sub_id).await[0]["attempts"],
        6,
        "dead stays dead"
    );
    assert_eq!(received(&server, "/hook").await.len(), 6);

    // Retry: not by a vendor (not its subscription) nor an operator; by the admin once.
    let did = d["id"].as_str().unwrap();
    let retry = format!("/api/v1/webhooks/deliveries/{did}/retry");
    let v = vendor(&t, "Bhandari Traders", 1).await;
    let r = t
        .client_as(Role::Vendor, Some(v))
        .post(t.url(&retry))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    let r = t.client.post(t.url(&retry)).send().await.unwrap();
    assert_problem(r, 403).await;
    server.reset().await;
    receiver(&server, &t, "/hook", sub["secret"].as_str().unwrap(), 204).await;
    let r = admin.post(t.url(&retry)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(
        (again["status"].as_str(), again["attempts"].as_i64()),
        (Some("queued"), Some(0))
    );
    let r = admin.post(t.url(&retry)).send().await.unwrap();
    assert_problem(r, 409).await;
    t.run_jobs().await;
    let d = &deliveries(&t, &admin, &sub_id).await[0];
    assert_eq!(
        (d["status"].as_str(), d["last_status_code"].as_i64()),
        (Some("delivered"), Some(204)),
        "{d}"
    );
    assert_eq!(d["log"].as_array().unwrap().len(), 7);
    assert_eq!(audit_rows(&t, "action=webhook.retry").await.len(), 1);
}

#[tokio::test]
async fn subscriptions_need_https_to_a_public_host_a_known_event_and_the_right_role() {
    // The default rule: no insecure URLs.
    let t = TestApp::spawn().await;
    let admin = t.client_as(Role::Admin, None);
    let post = |client: reqwest::Client, body: Value| {
        let url = t.url("/api/v1/webhooks");
        async move { client.post(url).json(&body).send().await.unwrap() }
    };
    for url in [
        "http://erp.example.com/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://10.0.0.7/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "https://user:secret@erp.example.com/hooks",
        "erp.example.com",
    ] {
        let r = post(admin.clone(), json!({ "url": url, "events": ["*"] })).await;
        let p = assert_problem(r, 422).await;
        assert_eq!(p["errors"][0]["field"], "url", "{url}: {p}");
    }
    let r = post(
        admin.clone(),
        json!({ "url": "https://erp.example.com/h", "events": ["order.shipped"] }),
    )
    .await;
    let p = assert_problem(r, 422).await;
    assert_eq!(p["errors"][0]["field"], "events[0]", "{p}");
    let r = post(
        admin.clone(),
        json!({ "url": "https://erp.example.com/h", "events": [] }),
    )
    .await;
    assert_problem(r, 422).await;
    let r = post(
        admin.clone(),
        json!({ "url": "https://erp.example.com/h", "events": ["*"], "vendor_id": Uuid::now_v7() }),
    )
    .await;
    let p = assert_problem(r, 422).await;
    assert_eq!(p["errors"][0]["field"], "vendor_id", "{p}");

    // Roles: operators and retailers manage none; a vendor only its own.
    let body = json!({ "url": "https://erp.example.com/h", "events": ["order.routed"] });
    for role in [Role::Operator, Role::Retailer] {
        let r = post(t.client_as(role, Some(Uuid::now_v7())), body.clone()).await;
        assert_problem(r, 403).await;
    }
    world(&t).await;
    let v1 = vendor(&t, "Bhandari Traders", 1).await;
    let v2 = vendor(&t, "Tel Bhandar", 2).await;
    let vendor1 = t.client_as(Role::Vendor, Some(v1));
    let r = post(
        vendor1.clone(),
        json!({ "url": "https://erp.example.com/h", "events": ["*"], "vendor_id": v2 }),
    )
    .await;
    assert_problem(r, 403).await;
    let sub = subscribe(&t, &vendor1, body.clone()).await;
    assert_eq!(sub["events"], json!(["order.routed"]));
    let sid = sub["id"].as_str().unwrap();
    assert_eq!(audit_rows(&t, "action=webhook.create").await.len(), 1);

    // The rule again at delivery: an address that is no longer allowed is not called.
    khaacho::with_write!(t.app.db(), c => sqlx::query("UPDATE webhook_subscriptions SET url = 'https://localhost/h'")
        .execute(c).await.map(|_| ())).unwrap();
    offer(&t, v1, "CHINI-1", 100.0, 50.0).await;
    let retailer = t.get_json("/api/v1/retailers?limit=1").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 1, "unit": "kg" }]),
    )
    .await;
    let d = deliveries(&t, &vendor1, sid).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["status"], "dead", "{}", d[0]);
    assert!(
        d[0]["last_error"].as_str().unwrap().starts_with("not sent"),
        "{}",
        d[0]
    );

    // Deletion: by its owner only; then gone from the list and from new events.
    let vendor2 = t.client_as(Role::Vendor, Some(v2));
    let r = vendor2
        .delete(t.url(&format!("/api/v1/webhooks/{sid}")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    let r = vendor1
        .delete(t.url(&format!("/api/v1/webhooks/{sid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = vendor1
        .delete(t.url(&format!("/api/v1/webhooks/{sid}")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    let list = vendor1
        .get(t.url("/api/v1/webhooks"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    let before = t.count("webhook_deliveries").await;
    place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 1, "unit": "kg" }]),
    )
    .await;
    assert_eq!(t.count("webhook_deliveries").await, before);
}
