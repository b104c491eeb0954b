//! Intake, validation and pricing, the state machine and operator actions.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, sample};

/// A product with one known offer, so prices are exact: base NPR 100/kg, NPR 90 from 10 kg.
async fn priced_product(t: &TestApp, sku: &str) -> String {
    let csv = format!(
        "sku,name,aliases,unit,pack_size,price_npr,category\n{sku},Test Sugar,chini,kg,50,100,sugar_salt\n"
    );
    t.import_catalog(&csv).await;
    let vendor = t.get_json("/api/v1/vendors?limit=1").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let offer = json!({ "vendor_id": vendor, "sku": sku, "price_npr": 100, "stock": 1000,
        "tiers": [{ "min_qty": 10, "price_npr": 90 }] });
    let r = t
        .client
        .put(t.url("/api/v1/offers"))
        .json(&offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    vendor
}

#[tokio::test]
async fn accepted_order_is_validated_priced_and_traced() {
    let t = TestApp::spawn().await;
    t.seed().await;
    priced_product(&t, "TEST-SUGAR").await;
    let retailer = t.retailer().await;
    let resp = t
        .client
        .post(t.url("/api/v1/orders"))
        .header("x-request-id", "trace-me-123")
        .json(&json!({ "retailer_id": retailer, "lines": [
            { "sku": "TEST-SUGAR", "qty": 5, "unit": "kg" },
            { "sku": "TEST-SUGAR", "qty": 0.5, "unit": "sack" }
        ], "note": "deliver before 10" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["x-request-id"], "trace-me-123");
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["status"], "received");
    let id = accepted["order_id"].as_str().unwrap().to_string();
    assert_eq!(
        accepted["status_url"],
        format!("/api/v1/orders/{id}/status")
    );

    let status = t.get_json(&format!("/api/v1/orders/{id}/status")).await;
    assert_eq!(status["status"], "received");
    let jobs = t.get_json("/api/v1/admin/jobs?kind=order.validate").await;
    assert_eq!(
        jobs["items"][0]["correlation_id"], "trace-me-123",
        "request id follows the order into its job"
    );

    // The validation, which routes the order in its own run (no routing job), and the
    // order.changed jobs of the intake and of that run (its validation and routing, written
    // together: one job, both events).
    assert_eq!(t.run_jobs().await, 3);
    let order = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(order["status"], "routed");
    assert_eq!(order["progress_percent"], 45);
    let lines = order["lines"].as_array().unwrap();
    // 5 kg at the base price; half a 50 kg sack = 25 kg at the tier price.
    assert_eq!(lines[0]["unit_price_npr"], 100.0);
    assert_eq!(lines[0]["subtotal_npr"], 500.0);
    assert_eq!(lines[0]["vat_npr"], 65.0);
    assert_eq!(lines[0]["price_reason"], "base price");
    assert_eq!(lines[1]["base_qty"], 25.0);
    assert_eq!(lines[1]["base_unit"], "kg");
    assert_eq!(lines[1]["unit_price_npr"], 90.0);
    assert_eq!(lines[1]["subtotal_npr"], 2250.0);
    assert_eq!(lines[1]["price_reason"], "bulk tier from 10");
    assert_eq!(
        order["totals"],
        json!({ "subtotal_npr": 2750.0, "vat_npr": 357.5, "total_npr": 3107.5 })
    );
    let events: Vec<_> = order["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["received", "validated", "routed"]);
    assert!(order["created_at"].as_str().unwrap().ends_with("+05:45"));
    assert_eq!(t.run_jobs().await, 0, "nothing left to do");
}

#[tokio::test]
async fn lines_without_offers_reject_the_order_with_reasons() {
    let t = TestApp::spawn().await;
    t.seed().await;
    priced_product(&t, "TEST-SUGAR").await;
    let csv = "sku,name,aliases,unit,pack_size,price_npr,category\nNO-OFFER-1,Unsold Thing,,piece,,10,other\n";
    t.client
        .post(t.url("/api/v1/catalog/import"))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let retailer = t.retailer().await;
    let a = t
        .order(&retailer, json!([{ "sku": "NO-OFFER-1", "qty": 2, "unit": "piece" }, { "sku": "TEST-SUGAR", "qty": 2000, "unit": "kg" }]))
        .await;
    t.run_jobs().await;
    let order = t
        .get_json(&format!(
            "/api/v1/orders/{}",
            a["order_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(order["status"], "rejected");
    assert_eq!(order["reject_reason"], "lines_rejected");
    assert_eq!(order["lines"][0]["reject_code"], "no_offer");
    assert_eq!(order["lines"][1]["reject_code"], "insufficient_stock");
    assert_eq!(order["progress_percent"], 100);
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer() {
    let t = TestApp::spawn().await;
    t.seed().await;
    priced_product(&t, "TEST-SUGAR").await;
    let retailer = t.retailer().await;
    let body = json!({ "retailer_id": retailer, "lines": [{ "sku": "TEST-SUGAR", "qty": 1, "unit": "kg" }] });
    let send = |b: Value| {
        t.client
            .post(t.url("/api/v1/orders"))
            .header("idempotency-key", "k-1")
            .json(&b)
            .send()
    };
    let first = send(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = send(body.clone()).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again);
    assert_eq!(t.count("orders").await, 1);
    let mut other = body.clone();
    other["lines"][0]["qty"] = json!(2);
    let conflict = send(other).await.unwrap();
    let p = assert_problem(conflict, 422).await;
    assert!(p["detail"].as_str().unwrap().contains("Idempotency-Key"));
    assert_eq!(t.count("orders").await, 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_order() {
    let t = TestApp::spawn().await;
    t.seed().await;
    priced_product(&t, "TEST-SUGAR").await;
    let retailer = t.retailer().await;
    let body = json!({ "retailer_id": retailer, "lines": [{ "sku": "TEST-SUGAR", "qty": 1, "unit": "kg" }] });
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (client, url, body) = (t.client.clone(), t.url("/api/v1/orders"), body.clone());
        handles.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("idempotency-key", "same")
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for h in handles {
        let (status, body) = h.await.unwrap();
        if status == 202 {
            ids.insert(body["order_id"].as_str().unwrap().to_string());
        } else {
            assert_eq!(status, 409, "{body}");
        }
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(t.count("orders").await, 1);
    assert_eq!(
        t.count("jobs").await,
        2,
        "its validation and its order.changed"
    );
}

/// Orders arriving together are written in shared batches (on PostgreSQL one statement per
/// batch, `transition::create_at_once`): each order is written whole and once — its lines, its
/// first event, its first job on its own queue, its idempotency record, the shop's count for
/// the day (one counter row, however many of the batch's orders are the shop's) — and then
/// carried on.
#[tokio::test]
async fn a_burst_of_orders_from_one_shop_is_written_whole_and_once() {
    let t = TestApp::spawn().await;
    t.seed().await;
    priced_product(&t, "TEST-SUGAR").await;
    let retailer = t.retailer().await;
    let mut handles = Vec::new();
    for i in 0..40 {
        let body = if i % 4 == 3 {
            json!({ "retailer_id": retailer, "text": "TEST-SUGAR 2 kg" })
        } else {
            json!({ "retailer_id": retailer, "lines": [{ "sku": "TEST-SUGAR", "qty": i + 1, "unit": "kg" }] })
        };
        let (client, url) = (t.client.clone(), t.url("/api/v1/orders"));
        handles.push(tokio::spawn(async move {
            let mut req = client.post(url).json(&body);
            if i % 2 == 0 {
                req = req.header("idempotency-key", format!("burst-{i}"));
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()["order_id"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap());
    }
    assert_eq!(t.count("orders").await, 40);
    assert_eq!(
        t.count("order_lines").await,
        30,
        "the text orders' lines come from the parse step"
    );
    assert_eq!(
        t.count("order_events WHERE to_status = 'received'").await,
        40
    );
    assert_eq!(t.count("idempotency_keys").await, 20);
    assert_eq!(t.count("jobs WHERE kind = 'order.validate'").await, 30);
    assert_eq!(t.count("jobs WHERE kind = 'order.parse'").await, 10);
    assert!(t.count("jobs WHERE kind = 'order.changed'").await >= 1);
    let counted: i64 = khaacho::with_latest!(t.app.db(), c => sqlx::query_scalar::<_, i64>(
        "SELECT CAST(SUM(n) AS BIGINT) FROM retailer_order_days").fetch_one(c).await)
    .unwrap();
    assert_eq!(counted, 40);
    assert_eq!(t.count("retailer_order_days").await, 1);
    // Written as batches, not one by one: a batch that fails is written again order by order,
    // which would hide a batch statement that cannot take two orders of one shop.
    let metrics = t.metrics().await;
    let series = |s: &str| sample(&metrics, s).unwrap_or(0.0);
    assert_eq!(
        series("khaacho_group_commit_batch_retries_total{writer=\"intake\"}"),
        0.0
    );
    let batches = series("khaacho_group_commit_batch_size_count{writer=\"intake\"}");
    let orders = series("khaacho_group_commit_batch_size_sum{writer=\"intake\"}");
    assert_eq!(orders, 40.0);
    assert!(
        batches < orders,
        "some batch held several orders: {batches} batches"
    );
    t.run_jobs().await;
    for id in &ids {
        let status = t.get_json(&format!("/api/v1/orders/{id}/status")).await;
        assert_ne!(status["status"], "received", "{id}: {status}");
    }
}

#[tokio::test]
async fn large_orders_are_held_and_operators_decide() {
    let t = TestApp::spawn_with(|s| s.pipeline.review_above_npr = 1_000).await;
    t.seed().await;
    priced_product(&t, "TEST-SUGAR").await;
    let retailer = t.retailer().await;
    let big = t
        .order(
            &retailer,
            json!([{ "sku": "TEST-SUGAR", "qty": 20, "unit": "kg" }]),
        )
        .await;
    let small = t
        .order(
            &retailer,
            json!([{ "sku": "TEST-SUGAR", "qty": 1, "unit": "kg" }]),
        )
        .await;
    let other_big = t
        .order(
            &retailer,
            json!([{ "sku": "TEST-SUGAR", "qty": 30, "unit": "kg" }]),
        )
        .await;
    t.run_jobs().await;
    let path =
        |a: &Value, tail: &str| format!("/api/v1/orders/{}{tail}", a["order_id"].as_str().unwrap());
    let held = t.get_json(&path(&big, "")).await;
    assert_eq!(held["status"], "on_hold", "{held}");
    assert_eq!(held["hold_reason"], "large_order_review");
    assert_eq!(
        t.get_json(&path(&small, "/status")).await["status"],
        "routed"
    );

    // Approving something that is not held is refused; so is a reason-less rejection.
    let r = t.post_json(&path(&small, "/approve"), &json!({})).await;
    assert_problem(r, 409).await;
    let r = t.post_json(&path(&other_big, "/reject"), &json!({})).await;
    let p = assert_problem(r, 422).await;
    assert_eq!(p["errors"][0]["field"], "reason");

    let r = t
        .post_json(
            &path(&big, "/approve"),
            &json!({ "reason": "known customer" }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let approved = t.get_json(&path(&big, "")).await;
    assert_eq!(approved["status"], "validated");
    let last = approved["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str()),
        (Some("on_hold"), Some("validated"))
    );
    assert_eq!(last["reason"], "known customer");
    assert_eq!(last["role"], "operator");

    let r = t
        .post_json(
            &path(&other_big, "/reject"),
            &json!({ "reason": "credit concern" }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let rejected = t.get_json(&path(&other_big, "/status")).await;
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["reject_reason"], "credit concern");
    // Terminal: nothing moves it any more.
    let r = t.post_json(&path(&other_big, "/cancel"), &json!({})).await;
    assert_problem(r, 409).await;
    let r = t
        .post_json(
            &path(&small, "/cancel"),
            &json!({ "reason": "changed mind" }),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        t.get_json(&path(&small, "/status")).await["status"],
        "cancelled"
    );
}

#[tokio::test]
async fn orders_list_filters_and_paginates() {
    let t = TestApp::spawn().await;
    t.seed().await;
    priced_product(&t, "TEST-SUGAR").await;
    let retailers = t.get_json("/api/v1/retailers?limit=2").await;
    let (r1, r2) = (
        retailers["items"][0]["id"].as_str().unwrap(),
        retailers["items"][1]["id"].as_str().unwrap(),
    );
    let mut mine = Vec::new();
    for i in 0..5 {
        let a = t
            .order(
                r1,
                json!([{ "sku": "TEST-SUGAR", "qty": i + 1, "unit": "kg" }]),
            )
            .await;
        mine.push(a["order_id"].as_str().unwrap().to_string());
    }
    t.order(r2, json!([{ "sku": "TEST-SUGAR", "qty": 1, "unit": "kg" }]))
        .await;
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/orders?retailer_id={r1}&limit=2");
    loop {
        let page = t.get_json(&path).await;
        for o in page["items"].as_array().unwrap() {
            assert_eq!(o["retailer_id"], r1);
            assert!(o.get("lines").is_none());
            seen.push(o["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/orders?retailer_id={r1}&limit=2&cursor={c}"),
            None => break,
        }
    }
    mine.reverse();
    assert_eq!(seen, mine, "newest first, every order once");
    assert_eq!(
        t.get_json("/api/v1/orders?status=received").await["items"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    t.run_jobs().await;
    assert_eq!(
        t.get_json("/api/v1/orders?status=received").await["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        t.get_json("/api/v1/orders?status=routed&limit=200").await["items"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let future = t
        .get_json("/api/v1/orders?from=2099-01-01T00:00:00%2B05:45")
        .await;
    assert!(future["items"].as_array().unwrap().is_empty());
    let bad = t.get("/api/v1/orders?status=nonsense").await;
    assert_problem(bad, 400).await;
    let bad = t.get("/api/v1/orders?cursor=zzz").await;
    assert_eq!(
        assert_problem(bad, 400).await["errors"][0]["field"],
        "cursor"
    );
    let missing = t
        .get(&format!("/api/v1/orders/{}", uuid::Uuid::now_v7()))
        .await;
    assert_problem(missing, 404).await;
}
