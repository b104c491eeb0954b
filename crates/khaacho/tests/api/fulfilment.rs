//! The life of an order after validation, black-box on both backends: routing into vendor
//! parts, offers with deadlines (the app's clock moved forward, never slept), accept with
//! stock reserved, reject and expiry with reassignment up to the limit, dispatch, delivery
//! with short quantities and the credit posting, confirmation and automatic completion,
//! cancellation at every stage, and the races: concurrent accepts of one offer, and of
//! different offers for the same stock.

use khaacho::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_problem, audit_rows, commit_once_waited_for, sample};

const MINUTE: i64 = 60_000;

/// A catalogue of sugar (NPR 100/kg) and oil (NPR 200/l), and a retailer in Kathmandu.
pub(crate) async fn world(t: &TestApp) -> Uuid {
    let csv = "sku,name,aliases,unit,pack_size,price_npr,category\n\
               CHINI-1,Sugar,chini,kg,50,100,sugar_salt\nTEL-1,Oil,tel,litre,,200,oil\n";
    t.import_catalog(csv).await;
    add_retailer(t, "Gita Kirana", "+9779800000001").await
}

/// A retailer in Kathmandu, registered by staff.
async fn add_retailer(t: &TestApp, name: &str, phone: &str) -> Uuid {
    let r = t
        .post_json(
            "/api/v1/retailers",
            &json!({ "name": name, "phone": phone, "district": "Kathmandu" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub(crate) async fn vendor(t: &TestApp, name: &str, n: u32) -> Uuid {
    let r = t
        .post_json(
            "/api/v1/vendors",
            // Room for as many unanswered offers as open orders (ten): the tests not about
            // capacity give one vendor up to ten offers at once.
            &json!({ "name": name, "phone": format!("+97798000001{n:02}"), "districts": ["Kathmandu"],
                     "opens": "00:00", "closes": "23:59", "max_awaiting": 10 }),
        )
        .await;
    assert_eq!(r.status(), 201, "vendor {name}");
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A vendor serving only Kaski: none of the world's Kathmandu retailers' orders can go to it.
pub(crate) async fn far_vendor(t: &TestApp) -> Uuid {
    t.post_json(
        "/api/v1/vendors",
        &json!({ "name": "Pokhara Traders", "phone": "+9779800000199", "districts": ["Kaski"] }),
    )
    .await
    .json::<Value>()
    .await
    .unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub(crate) async fn offer(t: &TestApp, vendor: Uuid, sku: &str, price: f64, stock: f64) {
    let r = t
        .client
        .put(t.url("/api/v1/offers"))
        .json(&json!({ "vendor_id": vendor, "sku": sku, "price_npr": price, "stock": stock }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "offer {sku} of {vendor}");
}

/// Sets `vendor`'s capacity limits (`max_active`, `max_awaiting`) as staff.
async fn set_limits(t: &TestApp, vendor: Uuid, limits: Value) {
    let url = t.url(&format!("/api/v1/vendors/{vendor}"));
    let r = t.client.patch(url).json(&limits).send().await.unwrap();
    assert_eq!(r.status(), 200, "{limits}");
}

/// Stock of `sku` at `vendor`, in base units.
async fn stock(t: &TestApp, vendor: Uuid, sku: &str) -> f64 {
    let milli: i64 = khaacho::with_latest!(t.app.db(), c => sqlx::query_scalar(
        "SELECT o.stock_milli FROM offers o JOIN products p ON p.id = o.product_id WHERE o.vendor_id = $1 AND p.sku = $2")
        .bind(vendor).bind(sku).fetch_one(c).await)
    .unwrap();
    milli as f64 / 1000.0
}

/// Places an order (credit unless `cash`), runs the pipeline, returns its id.
pub(crate) async fn place(t: &TestApp, retailer: Uuid, lines: Value) -> String {
    let id = submit(t, retailer, lines).await;
    t.run_jobs().await;
    id
}

/// Places an order and returns its id, leaving the pipeline to the caller.
async fn submit(t: &TestApp, retailer: Uuid, lines: Value) -> String {
    t.place(&json!({ "retailer_id": retailer, "lines": lines }))
        .await
}

/// Places `n` orders of 2 kg sugar from `retailer` and runs the pipeline.
async fn sugar_orders(t: &TestApp, retailer: Uuid, n: usize) {
    for _ in 0..n {
        submit(
            t,
            retailer,
            json!([{ "sku": "CHINI-1", "qty": 2, "unit": "kg" }]),
        )
        .await;
    }
    t.run_jobs().await;
}

pub(crate) async fn order(t: &TestApp, id: &str) -> Value {
    t.get_json(&format!("/api/v1/orders/{id}")).await
}

fn path(o: &Value) -> Vec<String> {
    o["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap().to_string())
        .collect()
}

/// The parts of an order: `(fulfilment id, vendor id, status)`.
fn parts(o: &Value) -> Vec<(String, Option<String>, String)> {
    o["fulfilments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["vendor_id"].as_str().map(str::to_string),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Why a stored routing `decision` passed `vendor` over: its candidate's `ineligible` lines
/// with their reasons (`None` when it was no candidate).
fn passed_over(decision: &Value, vendor: Uuid) -> Option<Value> {
    decision["decision"]["candidates"]
        .as_array()?
        .iter()
        .find(|c| c["vendor_id"] == vendor.to_string())
        .map(|c| c["ineligible"].clone())
}

/// `POST /api/v1/fulfilments/{id}/{action}` as `client`.
async fn act(
    t: &TestApp,
    client: &reqwest::Client,
    part: &str,
    action: &str,
    body: Value,
) -> reqwest::Response {
    client
        .post(t.url(&format!("/api/v1/fulfilments/{part}/{action}")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// `POST /api/v1/orders/{id}/cancel` as `client`, with `reason`.
async fn cancel(
    t: &TestApp,
    client: &reqwest::Client,
    id: &str,
    reason: &str,
) -> reqwest::Response {
    client
        .post(t.url(&format!("/api/v1/orders/{id}/cancel")))
        .json(&json!({ "reason": reason }))
        .send()
        .await
        .unwrap()
}

/// `GET path` as `client`, its JSON body.
async fn read_as(t: &TestApp, client: &reqwest::Client, path: &str) -> Value {
    client
        .get(t.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn ok(r: reqwest::Response) -> Value {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

async fn account(t: &TestApp, retailer: Uuid) -> Value {
    t.get_json(&format!("/api/v1/credit/accounts/{retailer}"))
        .await
}

async fn reconciled(t: &TestApp) {
    let r = t
        .client_as(Role::Admin, None)
        .get(t.url("/api/v1/credit/reconciliation"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(r["drift"], json!([]), "{r}");
    // The vendors' kept counts of open parts agree with the parts (a recount corrects none).
    let corrected = khaacho::fulfilment::repo::recount_workloads(t.app.db())
        .await
        .unwrap();
    assert!(
        corrected.is_empty(),
        "(vendor, kept, counted): {corrected:?}"
    );
    // And their kept volumes of every day agree with the parts' lines.
    let corrected = khaacho::fulfilment::repo::recount_volumes(t.app.db(), 0)
        .await
        .unwrap();
    assert!(
        corrected.is_empty(),
        "((product, day, vendor), kept, counted): {corrected:?}"
    );
}

async fn tick(t: &TestApp) -> khaacho::fulfilment::jobs::Ticked {
    let now = t.app.clock().now_ms();
    let done = khaacho::fulfilment::jobs::tick(&t.app, now).await.unwrap();
    t.run_jobs().await;
    done
}

#[tokio::test]
async fn an_order_goes_from_validated_to_completed_with_stock_credit_and_ledger() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let a = vendor(&t, "All-in-one", 1).await;
    offer(&t, a, "CHINI-1", 100.0, 50.0).await;
    offer(&t, a, "TEL-1", 200.0, 50.0).await;
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }, { "sku": "TEL-1", "qty": 2, "unit": "litre" }]),
    )
    .await;
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "routed", "{o}");
    // 5 × 100 + 2 × 200 = 900, VAT 13% = 117.
    assert_eq!(o["totals"]["total_npr"], 1017.0);
    assert_eq!(o["credit_hold"]["status"], "pending");
    let ps = parts(&o);
    assert_eq!(ps.len(), 1, "one vendor supplies everything");
    let (part, to, status) = ps[0].clone();
    assert_eq!(
        (to.as_deref(), status.as_str()),
        (Some(a.to_string().as_str()), "offered")
    );
    assert_eq!(
        o["fulfilments"][0]["allowed_actions"],
        json!(["accept", "reject"])
    );
    assert!(o["fulfilments"][0]["deadline"].is_string());
    // The decision is stored with its candidates and reason.
    assert_eq!(o["routing"][0]["outcome"], "routed");
    assert!(
        o["routing"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("supplies all 2 lines")
    );
    assert_eq!(
        o["routing"][0]["decision"]["candidates"][0]["vendor_id"],
        a.to_string()
    );
    assert_eq!(account(&t, retailer).await["held_npr"], 1017.0);

    // The vendor finds it in its inbox and accepts: stock is reserved.
    let va = t.client_as(Role::Vendor, Some(a));
    let inbox: Value = read_as(&t, &va, "/api/v1/fulfilments?status=offered").await;
    assert_eq!(inbox["items"][0]["id"], part.as_str());
    // The offer says which shop it is for; the shop's contact comes with the accept.
    assert_eq!(
        inbox["items"][0]["deliver_to"],
        json!({ "retailer_id": retailer, "name": "Gita Kirana", "district": "Kathmandu",
                "address": null, "phone": null, "lat": null, "lng": null })
    );
    assert_eq!(
        o["fulfilments"][0]["deliver_to"]["phone"], "+9779800000001",
        "staff see the contact at once"
    );
    let accepted = ok(act(&t, &va, &part, "accept", json!({})).await).await;
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["deliver_to"]["phone"], "+9779800000001");
    let mine = read_as(&t, &va, &format!("/api/v1/fulfilments/{part}")).await;
    assert_eq!(
        (
            mine["deliver_to"]["name"].as_str(),
            mine["deliver_to"]["phone"].as_str()
        ),
        (Some("Gita Kirana"), Some("+9779800000001"))
    );
    assert_eq!(accepted["lines"][0]["reserved_quantity"], 5.0);
    assert_eq!(stock(&t, a, "CHINI-1").await, 45.0);
    assert_eq!(stock(&t, a, "TEL-1").await, 48.0);
    assert_eq!(order(&t, &id).await["status"], "accepted");
    // A second accept is an illegal transition that names what is allowed.
    let p = assert_problem(act(&t, &va, &part, "accept", json!({})).await, 409).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("allowed now: dispatch"),
        "{p}"
    );

    ok(act(&t, &va, &part, "dispatch", json!({})).await).await;
    assert_eq!(order(&t, &id).await["status"], "dispatched");
    let delivered = ok(act(&t, &va, &part, "deliver", json!({})).await).await;
    assert_eq!(delivered["delivered_npr"], 1017.0);
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "delivered");
    assert_eq!(o["credit_hold"]["status"], "posted");
    assert_eq!(o["credit_hold"]["posted_npr"], 1017.0);
    let acct = account(&t, retailer).await;
    assert_eq!(
        (acct["held_npr"].as_f64(), acct["outstanding_npr"].as_f64()),
        (Some(0.0), Some(1017.0))
    );
    let ledger = t
        .get_json(&format!("/api/v1/credit/accounts/{retailer}/ledger"))
        .await;
    let debit = &ledger["items"][0];
    assert_eq!(
        (debit["kind"].as_str(), debit["amount_npr"].as_f64()),
        (Some("order_debit"), Some(1017.0))
    );
    assert_eq!(debit["order_id"], id.as_str());

    // The retailer confirms receipt.
    let rc = t.client_as(Role::Retailer, Some(retailer));
    let r = rc
        .post(t.url(&format!("/api/v1/orders/{id}/confirm")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.run_jobs().await;
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "completed");
    assert_eq!(
        path(&o),
        [
            "received",
            "validated",
            "routed",
            "accepted",
            "dispatched",
            "delivered",
            "completed"
        ]
    );
    let roles: Vec<&str> = o["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "operator", "system", "system", "vendor", "vendor", "vendor", "retailer"
        ]
    );
    assert_eq!(o["events"][5]["detail"]["posted_paisa"], 101_700);
    // Every change reached the consumers: the per-status counts say one completed order.
    let metrics = t.metrics().await;
    assert_eq!(
        sample(&metrics, "khaacho_orders{state=\"completed\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "khaacho_orders{state=\"routed\"}"),
        Some(0.0)
    );
    reconciled(&t).await;
}

#[tokio::test]
async fn a_split_order_follows_its_slowest_part_and_posts_a_short_delivery() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let b = vendor(&t, "Sugar House", 2).await;
    let c = vendor(&t, "Oil Depot", 3).await;
    offer(&t, b, "CHINI-1", 100.0, 50.0).await;
    offer(&t, c, "TEL-1", 200.0, 50.0).await;
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }, { "sku": "TEL-1", "qty": 2, "unit": "litre" }]),
    )
    .await;
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "routed");
    let ps = parts(&o);
    assert_eq!(ps.len(), 2, "{o}");
    let part_of = |v: Uuid| {
        ps.iter()
            .find(|p| p.1.as_deref() == Some(&v.to_string()))
            .unwrap()
            .0
            .clone()
    };
    let (pb, pc) = (part_of(b), part_of(c));
    let (vb, vc) = (
        t.client_as(Role::Vendor, Some(b)),
        t.client_as(Role::Vendor, Some(c)),
    );

    // Each vendor sees only its own part and its own lines.
    let seen = read_as(&t, &vb, &format!("/api/v1/orders/{id}")).await;
    assert_eq!(parts(&seen).len(), 1);
    assert_eq!(seen["lines"].as_array().unwrap().len(), 1);
    let own = &seen["fulfilments"][0]["lines"];
    assert_eq!(own.as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(
        (own[0]["line_no"].as_i64(), own[0]["quantity"].as_f64()),
        (Some(1), Some(5.0)),
        "{seen}"
    );
    // Staff see both parts, each with its own line.
    for (k, (line_no, quantity)) in o["fulfilments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let l = &p["lines"];
            assert_eq!(l.as_array().unwrap().len(), 1, "{o}");
            (
                l[0]["line_no"].as_i64().unwrap(),
                l[0]["quantity"].as_f64().unwrap(),
            )
        })
        .enumerate()
    {
        assert!(
            matches!((line_no, quantity), (1, 5.0) | (2, 2.0)),
            "part {k}: {o}"
        );
    }
    assert!(seen.get("totals").is_none_or(Value::is_null), "{seen}");
    assert_problem(
        vb.get(t.url(&format!("/api/v1/fulfilments/{pc}")))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_problem(act(&t, &vb, &pc, "accept", json!({})).await, 404).await;

    // The order moves only when its slowest part does.
    ok(act(&t, &vb, &pb, "accept", json!({})).await).await;
    assert_eq!(order(&t, &id).await["status"], "routed");
    ok(act(&t, &vc, &pc, "accept", json!({})).await).await;
    assert_eq!(order(&t, &id).await["status"], "accepted");
    ok(act(&t, &vb, &pb, "dispatch", json!({})).await).await;
    assert_eq!(order(&t, &id).await["status"], "accepted");

    // Bad deliveries are refused with the line named; an early delivery is illegal.
    let p = assert_problem(act(&t, &vc, &pc, "deliver", json!({})).await, 409).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("allowed now: dispatch"),
        "{p}"
    );
    for (body, field) in [
        (
            json!({ "lines": [{ "line_no": 1, "quantity": 6 }] }),
            "lines[0].quantity",
        ),
        (
            json!({ "lines": [{ "line_no": 1, "quantity": -1 }] }),
            "lines[0].quantity",
        ),
        (
            json!({ "lines": [{ "line_no": 2, "quantity": 1 }] }),
            "lines[0].line_no",
        ),
    ] {
        let p = assert_problem(act(&t, &vb, &pb, "deliver", body).await, 422).await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    // Three of the five kilos arrive.
    let d = ok(act(
        &t,
        &vb,
        &pb,
        "deliver",
        json!({ "lines": [{ "line_no": 1, "quantity": 3 }] }),
    )
    .await)
    .await;
    assert_eq!(d["lines"][0]["delivered_quantity"], 3.0);
    assert_eq!(d["delivered_npr"], 339.0);
    assert_eq!(order(&t, &id).await["status"], "accepted");
    ok(act(&t, &vc, &pc, "dispatch", json!({})).await).await;
    assert_eq!(order(&t, &id).await["status"], "dispatched");
    ok(act(&t, &vc, &pc, "deliver", json!({})).await).await;
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "delivered");
    // Posted at what was delivered: 339 + 452; the rest of the 1,017 hold is released.
    assert_eq!(o["credit_hold"]["posted_npr"], 791.0);
    let acct = account(&t, retailer).await;
    assert_eq!(
        (acct["held_npr"].as_f64(), acct["outstanding_npr"].as_f64()),
        (Some(0.0), Some(791.0))
    );
    assert_eq!(
        stock(&t, b, "CHINI-1").await,
        45.0,
        "the reservation stays with the delivery"
    );

    // Nobody confirms: 48 hours later the tick completes it.
    t.app.clock().advance(47 * 60 * MINUTE);
    assert_eq!(tick(&t).await.completed, 0);
    t.app.clock().advance(2 * 60 * MINUTE);
    assert_eq!(tick(&t).await.completed, 1);
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "completed");
    assert_eq!(
        o["events"].as_array().unwrap().last().unwrap()["reason"],
        "auto_completed"
    );
    reconciled(&t).await;
}

#[tokio::test]
async fn cancelling_at_each_stage_releases_stock_and_credit_or_refunds() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let a = vendor(&t, "All-in-one", 1).await;
    offer(&t, a, "CHINI-1", 100.0, 100.0).await;
    offer(&t, a, "TEL-1", 200.0, 20.0).await;
    let va = t.client_as(Role::Vendor, Some(a));
    let rc = t.client_as(Role::Retailer, Some(retailer));
    let line = json!([{ "sku": "CHINI-1", "qty": 10, "unit": "kg" }]); // NPR 1,130
    let part_of = |o: &Value| parts(o)[0].0.clone();

    // Routed: the offer is withdrawn, the hold released; no stock had moved.
    let id = place(&t, retailer, line.clone()).await;
    let part = part_of(&order(&t, &id).await);
    assert_eq!(cancel(&t, &rc, &id, "changed my mind").await.status(), 200);
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "cancelled");
    assert_eq!(o["credit_hold"]["status"], "voided");
    assert_eq!(o["fulfilments"][0]["status"], "cancelled");
    assert_eq!(o["fulfilments"][0]["offers"][0]["status"], "cancelled");
    assert_eq!(stock(&t, a, "CHINI-1").await, 100.0);
    assert_problem(act(&t, &va, &part, "accept", json!({})).await, 409).await;

    // Accepted: the reserved stock of every line goes back, and the lines hold none.
    let two = json!([{ "sku": "CHINI-1", "qty": 10, "unit": "kg" },
                     { "sku": "TEL-1", "qty": 2, "unit": "litre" }]);
    let id = place(&t, retailer, two).await;
    let part = part_of(&order(&t, &id).await);
    ok(act(&t, &va, &part, "accept", json!({})).await).await;
    assert_eq!(stock(&t, a, "CHINI-1").await, 90.0);
    assert_eq!(stock(&t, a, "TEL-1").await, 18.0);
    assert_eq!(cancel(&t, &rc, &id, "found it cheaper").await.status(), 200);
    let o = order(&t, &id).await;
    assert_eq!(
        (o["status"].as_str(), o["credit_hold"]["status"].as_str()),
        (Some("cancelled"), Some("voided"))
    );
    let released = &o["events"].as_array().unwrap().last().unwrap()["detail"]["stock_released"];
    let mut qty: Vec<i64> = released
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["qty_milli"].as_i64().unwrap())
        .collect();
    qty.sort();
    assert_eq!(qty, [2_000, 10_000], "{released}");
    assert_eq!(stock(&t, a, "CHINI-1").await, 100.0);
    assert_eq!(stock(&t, a, "TEL-1").await, 20.0);
    let p = t.get_json(&format!("/api/v1/fulfilments/{part}")).await;
    let lines = p["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{p}");
    assert!(lines.iter().all(|l| l["reserved_quantity"] == 0.0), "{p}");

    // Dispatched: too late for the retailer; an operator may, and the goods go back.
    let id = place(&t, retailer, line.clone()).await;
    let part = part_of(&order(&t, &id).await);
    ok(act(&t, &va, &part, "accept", json!({})).await).await;
    ok(act(&t, &va, &part, "dispatch", json!({})).await).await;
    let p = assert_problem(cancel(&t, &rc, &id, "late").await, 409).await;
    assert!(
        p["detail"].as_str().unwrap().contains("before dispatch"),
        "{p}"
    );
    assert_eq!(
        cancel(&t, &t.client, &id, "truck broke down")
            .await
            .status(),
        200
    );
    assert_eq!(order(&t, &id).await["credit_hold"]["status"], "voided");
    assert_eq!(stock(&t, a, "CHINI-1").await, 100.0);

    // Delivered: an issue holds it for an operator; cancelling then refunds what was posted.
    let id = place(&t, retailer, line.clone()).await;
    let part = part_of(&order(&t, &id).await);
    ok(act(&t, &va, &part, "accept", json!({})).await).await;
    ok(act(&t, &va, &part, "dispatch", json!({})).await).await;
    ok(act(&t, &va, &part, "deliver", json!({})).await).await;
    assert_eq!(account(&t, retailer).await["outstanding_npr"], 1130.0);
    let issue = |body: Value| {
        rc.post(t.url(&format!("/api/v1/orders/{id}/report-issue")))
            .json(&body)
            .send()
    };
    let p = assert_problem(issue(json!({})).await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["field"], "reason");
    assert_eq!(
        issue(json!({ "reason": "half the sacks were wet" }))
            .await
            .unwrap()
            .status(),
        200
    );
    let o = order(&t, &id).await;
    assert_eq!(
        (o["status"].as_str(), o["hold_reason"].as_str()),
        (Some("on_hold"), Some("retailer_issue"))
    );
    assert_problem(cancel(&t, &rc, &id, "refund me").await, 409).await;
    assert_eq!(
        cancel(&t, &t.client, &id, "goods returned").await.status(),
        200
    );
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "cancelled");
    assert_eq!(
        o["events"].as_array().unwrap().last().unwrap()["detail"]["refund_paisa"],
        113_000
    );
    assert_eq!(account(&t, retailer).await["outstanding_npr"], 0.0);
    assert_eq!(
        stock(&t, a, "CHINI-1").await,
        90.0,
        "delivered goods stay delivered"
    );
    // Confirming something not delivered is refused.
    let id = place(&t, retailer, line.clone()).await;
    let r = rc
        .post(t.url(&format!("/api/v1/orders/{id}/confirm")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 409).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("only a delivered order"),
        "{p}"
    );
    reconciled(&t).await;
}

#[tokio::test]
async fn rejections_and_expiries_move_a_part_three_times_then_hold_the_order() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let mut vendors = Vec::new();
    for (i, price) in [100.0, 101.0, 102.0, 103.0, 104.0].into_iter().enumerate() {
        let v = vendor(&t, &format!("Vendor {i}"), 10 + i as u32).await;
        offer(&t, v, "CHINI-1", price, 50.0).await;
        vendors.push(v);
    }
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let current = |o: &Value| -> (String, Uuid) {
        let p = &parts(o)[0];
        (p.0.clone(), p.1.as_deref().unwrap().parse().unwrap())
    };
    let (part, first) = current(&order(&t, &id).await);
    let client = |v: Uuid| t.client_as(Role::Vendor, Some(v));

    // 1. A rejection (with a reason) moves it on at once.
    let p = assert_problem(
        act(&t, &client(first), &part, "reject", json!({})).await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "reason");
    let moved = ok(act(
        &t,
        &client(first),
        &part,
        "reject",
        json!({ "reason": "out of trucks" }),
    )
    .await)
    .await;
    let second: Uuid = moved["vendor_id"].as_str().unwrap().parse().unwrap();
    assert_ne!(second, first);
    assert_eq!(moved["reassignments"], 1);
    assert_problem(
        act(&t, &client(first), &part, "accept", json!({})).await,
        404,
    )
    .await;

    // 2. Nobody answers: past the deadline an accept is refused, and the tick moves it.
    t.app.clock().advance(29 * MINUTE);
    assert_eq!(tick(&t).await.expired, 0, "not yet due");
    t.app.clock().advance(2 * MINUTE);
    let p = assert_problem(
        act(&t, &client(second), &part, "accept", json!({})).await,
        409,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    assert_eq!(tick(&t).await.expired, 1);
    let (_, third) = current(&order(&t, &id).await);
    assert!(![first, second].contains(&third));

    // 3. Another rejection, then a last expiry after three moves: no fourth.
    ok(act(
        &t,
        &client(third),
        &part,
        "reject",
        json!({ "reason": "no stock after all" }),
    )
    .await)
    .await;
    let (_, fourth) = current(&order(&t, &id).await);
    assert!(![first, second, third].contains(&fourth));
    assert_eq!(order(&t, &id).await["status"], "routed");
    t.app.clock().advance(31 * MINUTE);
    assert_eq!(tick(&t).await.expired, 1);
    let o = order(&t, &id).await;
    assert_eq!(
        (o["status"].as_str(), o["hold_reason"].as_str()),
        (Some("on_hold"), Some("vendor_unavailable"))
    );
    assert_eq!(
        (
            o["fulfilments"][0]["status"].as_str(),
            o["fulfilments"][0]["vendor_id"].as_str()
        ),
        (Some("unassigned"), None)
    );
    let offers: Vec<&str> = o["fulfilments"][0]["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(offers, ["rejected", "expired", "rejected", "expired"]);
    let outcomes: Vec<&str> = o["routing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "routed",
            "reassigned",
            "reassigned",
            "reassigned",
            "no_vendor"
        ]
    );
    // Operators are alerted.
    let alerts = t.get_json("/api/v1/alerts?kind=vendor_unavailable").await;
    assert_eq!(alerts["items"][0]["subject_id"], id.as_str(), "{alerts}");
    let alert = alerts["items"][0]["id"].as_str().unwrap();
    let r = t
        .client
        .post(t.url(&format!("/api/v1/alerts/{alert}/acknowledge")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(t.get_json("/api/v1/alerts").await["items"], json!([]));
    let rows = audit_rows(&t, "action=alert.acknowledge").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["entity_id"], alert);

    // An operator approves: every vendor may be asked again.
    let r = t
        .post_json(
            &format!("/api/v1/orders/{id}/approve"),
            &json!({ "reason": "try again" }),
        )
        .await;
    assert_eq!(r.status(), 200);
    t.run_jobs().await;
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "routed", "{o}");
    assert_eq!(o["fulfilments"][0]["status"], "offered");
    assert_eq!(o["fulfilments"][0]["reassignments"], 1);
    reconciled(&t).await;
}

/// A vendor whose open parts reach its capacity (`max_active`) is passed over, and has room
/// again once a part of its is delivered, moves to another vendor or is cancelled; one whose
/// unanswered offers reach `max_awaiting` likewise, until it answers. Each is seen by the
/// next order's routing, and the kept counts agree with the parts at the end.
#[tokio::test]
async fn a_vendor_at_capacity_is_passed_over_until_a_part_of_its_closes() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let small = vendor(&t, "Cheap but small", 1).await;
    let large = vendor(&t, "Dear but large", 2).await;
    let limit = async |limits: Value| set_limits(&t, small, limits).await;
    limit(json!({ "max_active": 1 })).await;
    offer(&t, small, "CHINI-1", 90.0, 100.0).await;
    offer(&t, large, "CHINI-1", 110.0, 100.0).await;
    let sugar = json!([{ "sku": "CHINI-1", "qty": 2, "unit": "kg" }]);
    let vs = t.client_as(Role::Vendor, Some(small));
    let rc = t.client_as(Role::Retailer, Some(retailer));
    // `(part, vendor)` of a new order's one part, and why the small vendor was passed over.
    let next = async || {
        let o = order(&t, &place(&t, retailer, sugar.clone()).await).await;
        let (part, to, _) = parts(&o)[0].clone();
        // The line is addressed to the vendor routing chose, not the cheapest one pricing saw.
        assert_eq!(o["lines"][0]["vendor_id"].as_str(), to.as_deref(), "{o}");
        let small_was = passed_over(&o["routing"][0], small);
        (
            o["id"].as_str().unwrap().to_string(),
            part,
            to.unwrap(),
            small_was,
        )
    };
    let full = Some(json!([{ "line_no": 1, "reasons": ["at_capacity"] }]));

    // The cheaper vendor takes the first order; with it open, the next goes elsewhere.
    let (_, first, to, _) = next().await;
    assert_eq!(to, small.to_string());
    let (_, _, to, why) = next().await;
    assert_eq!((to, &why), (large.to_string(), &full));
    // Accepted and on its way, the part still counts.
    ok(act(&t, &vs, &first, "accept", json!({})).await).await;
    ok(act(&t, &vs, &first, "dispatch", json!({})).await).await;
    let (_, _, to, why) = next().await;
    assert_eq!((to, &why), (large.to_string(), &full));
    // Delivered, it no longer does.
    ok(act(&t, &vs, &first, "deliver", json!({})).await).await;
    let (_, rejected, to, _) = next().await;
    assert_eq!(to, small.to_string());
    // A rejection moves the part to the other vendor and frees the small one.
    let moved = ok(act(
        &t,
        &vs,
        &rejected,
        "reject",
        json!({ "reason": "no van today" }),
    )
    .await)
    .await;
    assert_eq!(moved["vendor_id"], large.to_string());
    let (cancelled, _, to, _) = next().await;
    assert_eq!(to, small.to_string());
    let (_, _, to, why) = next().await;
    assert_eq!((to, &why), (large.to_string(), &full));
    // So does the retailer's cancellation before dispatch.
    let r = cancel(&t, &rc, &cancelled, "ordered twice").await;
    assert_eq!(r.status(), 200);
    let (_, waiting, to, _) = next().await;
    assert_eq!(to, small.to_string());

    // Room for ten orders but for one unanswered offer: the offer it has not answered keeps
    // it from the next order; once accepted, it no longer does.
    limit(json!({ "max_active": 10, "max_awaiting": 1 })).await;
    let (_, _, to, why) = next().await;
    let unanswered = Some(json!([{ "line_no": 1, "reasons": ["unanswered_offers"] }]));
    assert_eq!((to, &why), (large.to_string(), &unanswered));
    ok(act(&t, &vs, &waiting, "accept", json!({})).await).await;
    let (_, _, to, _) = next().await;
    assert_eq!(to, small.to_string());
    reconciled(&t).await;
}

/// Routing judges capacity on the counts it read, without a lock: rejections side by side
/// (PostgreSQL runs them so; SQLite one after the other) that each move a part to the one
/// vendor with room for one more give it that one part, and the others — finding it full when
/// they write — decide again and go to the next vendor.
#[tokio::test]
async fn concurrent_reassignments_never_take_a_vendor_past_its_capacity() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let first = vendor(&t, "Cheapest", 1).await;
    let small = vendor(&t, "Second, room for one", 2).await;
    let last = vendor(&t, "Dearest", 3).await;
    set_limits(&t, small, json!({ "max_active": 1 })).await;
    // Only the first vendor has sugar in stock while the orders are routed.
    offer(&t, first, "CHINI-1", 90.0, 1000.0).await;
    offer(&t, small, "CHINI-1", 100.0, 0.0).await;
    offer(&t, last, "CHINI-1", 110.0, 0.0).await;
    sugar_orders(&t, retailer, 8).await;
    let ids = offered_parts(&t).await;
    assert_eq!(ids.len(), 8);
    offer(&t, small, "CHINI-1", 100.0, 1000.0).await;
    offer(&t, last, "CHINI-1", 110.0, 1000.0).await;

    let answers = act_at_once(&t, first, &ids, "reject", json!({ "reason": "no van" })).await;
    let to: Vec<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            let part: Value = serde_json::from_str(body).unwrap();
            part["vendor_id"].as_str().unwrap_or("none").to_string()
        })
        .collect();
    let given = |v: Uuid| to.iter().filter(|t| **t == v.to_string()).count();
    assert_eq!((given(small), given(last)), (1, 7), "{to:?}");
    reconciled(&t).await;
}

/// A vendor stored with no limit (0, as a seed file may say; the API asks for at least 1)
/// takes every order: the write's check applies routing's rule, where 0 is no limit.
#[tokio::test]
async fn a_vendor_without_limits_is_never_over_them() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let a = vendor(&t, "No limits", 1).await;
    offer(&t, a, "CHINI-1", 100.0, 100.0).await;
    khaacho::with_write!(t.app.db(), c => sqlx::query(
        "UPDATE vendors SET max_active = 0, max_awaiting = 0 WHERE id = $1")
        .bind(a).execute(c).await.map(|r| r.rows_affected()))
    .unwrap();
    sugar_orders(&t, retailer, 3).await;
    assert_eq!(offered_parts(&t).await.len(), 3);
    assert_eq!(
        t.metric("khaacho_vendor_overbooked_total{during=\"routing\"}")
            .await,
        None,
        "nothing decided again"
    );
    reconciled(&t).await;
}

/// PostgreSQL: routing that chose a vendor whose last free place another transaction took
/// meanwhile (another process's routing batch; here a transaction the test holds open) finds
/// it full when it writes, rolls back and decides again: the order goes to the next vendor,
/// and its one stored decision names the first `at_capacity`.
#[tokio::test]
async fn routing_decides_again_when_its_vendor_filled_up_meanwhile() {
    let t = TestApp::spawn().await;
    if !t.app.db().is_postgres() {
        return; // SQLite: routing holds the write lock from its read to its commit.
    }
    let retailer = world(&t).await;
    let small = vendor(&t, "Cheap, room for one", 1).await;
    let large = vendor(&t, "Dearer", 2).await;
    set_limits(&t, small, json!({ "max_active": 1 })).await;
    offer(&t, small, "CHINI-1", 90.0, 100.0).await;
    offer(&t, large, "CHINI-1", 110.0, 100.0).await;
    let id = submit(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 2, "unit": "kg" }]),
    )
    .await;

    // The other transaction gives the small vendor its one place, and waits to commit until
    // routing — which read the count as committed, 0 — waits for it at its own write.
    let pool = sqlx::PgPool::connect(&t.database_url).await.unwrap();
    let mut other = pool.begin().await.unwrap();
    let pid: i32 = sqlx::query_scalar(
        "INSERT INTO vendor_workloads (vendor_id, open_parts, awaiting_parts) VALUES ($1, 1, 1) \
         ON CONFLICT (vendor_id) DO UPDATE SET open_parts = vendor_workloads.open_parts + 1, \
         awaiting_parts = vendor_workloads.awaiting_parts + 1 RETURNING pg_backend_pid()",
    )
    .bind(small)
    .fetch_one(&mut *other)
    .await
    .unwrap();
    let let_go = commit_once_waited_for(&pool, other, pid, "routing");
    tokio::join!(t.run_jobs(), let_go);

    let o = order(&t, &id).await;
    assert_eq!(parts(&o)[0].1, Some(large.to_string()), "{o}");
    let decisions = o["routing"].as_array().unwrap();
    assert_eq!(
        decisions.len(),
        1,
        "the rolled-back decision is not kept: {o}"
    );
    assert_eq!(
        passed_over(&decisions[0], small),
        Some(json!([{ "line_no": 1, "reasons": ["at_capacity"] }]))
    );
    assert_eq!(
        t.metric("khaacho_vendor_overbooked_total{during=\"routing\"}")
            .await,
        Some(1.0)
    );
    // The place the other transaction took had no part behind it: give it back.
    sqlx::query(
        "UPDATE vendor_workloads SET open_parts = open_parts - 1, awaiting_parts = awaiting_parts - 1 \
         WHERE vendor_id = $1",
    )
    .bind(small)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    reconciled(&t).await;
}

#[tokio::test]
async fn an_order_no_vendor_can_supply_is_held_with_an_alert() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let far = far_vendor(&t).await;
    offer(&t, far, "CHINI-1", 90.0, 50.0).await;
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let o = order(&t, &id).await;
    assert_eq!(
        (o["status"].as_str(), o["hold_reason"].as_str()),
        (Some("on_hold"), Some("vendor_unavailable")),
        "{o}"
    );
    assert_eq!(o["routing"][0]["outcome"], "no_vendor");
    assert_eq!(o["fulfilments"], json!([]));
    let alerts = t.get_json(&format!("/api/v1/alerts?subject_id={id}")).await;
    assert_eq!(alerts["items"][0]["kind"], "vendor_unavailable");
    // Nothing was offered to anyone.
    let r = t.get_json("/api/v1/fulfilments").await;
    assert_eq!(r["items"], json!([]));
}

#[tokio::test]
async fn twenty_concurrent_accepts_of_one_offer_have_one_winner() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let a = vendor(&t, "All-in-one", 1).await;
    offer(&t, a, "CHINI-1", 100.0, 50.0).await;
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let part = parts(&order(&t, &id).await)[0].0.clone();
    let va = t.client_as(Role::Vendor, Some(a));
    let url = t.url(&format!("/api/v1/fulfilments/{part}/accept"));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (c, url) = (va.clone(), url.clone());
            tokio::spawn(async move {
                c.post(url)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for task in tasks {
        codes.push(task.await.unwrap());
    }
    codes.sort_unstable();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 19, "{codes:?}");
    assert_eq!(stock(&t, a, "CHINI-1").await, 45.0, "reserved once");
    // An operator acting for the vendor must give a reason.
    let p = assert_problem(act(&t, &t.client, &part, "dispatch", json!({})).await, 422).await;
    assert_eq!(p["errors"][0]["field"], "reason");
    ok(act(
        &t,
        &t.client,
        &part,
        "dispatch",
        json!({ "reason": "vendor phoned it in" }),
    )
    .await)
    .await;
    let o = order(&t, &id).await;
    assert_eq!(
        o["events"].as_array().unwrap().last().unwrap()["role"],
        "operator"
    );
    // Audited once, with the new status and the reason; the refused attempts (no reason,
    // and dispatching what is already dispatched) left no row.
    assert_problem(
        act(
            &t,
            &t.client,
            &part,
            "dispatch",
            json!({ "reason": "again" }),
        )
        .await,
        409,
    )
    .await;
    let rows = audit_rows(&t, "action=fulfilment.dispatch").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["entity_id"], part.as_str());
    assert_eq!(rows[0]["summary"]["status"], "dispatched");
    assert_eq!(rows[0]["summary"]["reason"], "vendor phoned it in");
}

/// Ids of the parts now offered.
async fn offered_parts(t: &TestApp) -> Vec<String> {
    let all = t.get_json("/api/v1/fulfilments?status=offered").await;
    all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

/// `vendor` accepts every one of `parts` at once; the answers' statuses and bodies.
async fn accept_at_once(t: &TestApp, vendor: Uuid, parts: &[String]) -> Vec<(u16, String)> {
    act_at_once(t, vendor, parts, "accept", json!({})).await
}

/// `vendor` posts `action` with `body` on every one of `parts` at once; the answers'
/// statuses and bodies.
async fn act_at_once(
    t: &TestApp,
    vendor: Uuid,
    parts: &[String],
    action: &str,
    body: Value,
) -> Vec<(u16, String)> {
    let client = t.client_as(Role::Vendor, Some(vendor));
    let tasks: Vec<_> = parts
        .iter()
        .map(|p| {
            let (c, url, body) = (
                client.clone(),
                t.url(&format!("/api/v1/fulfilments/{p}/{action}")),
                body.clone(),
            );
            tokio::spawn(async move {
                let r = c.post(url).json(&body).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn concurrent_accepts_of_different_offers_never_oversell_stock() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let a = vendor(&t, "Small Shop", 1).await;
    offer(&t, a, "CHINI-1", 100.0, 10.0).await;
    // Eight orders of 2 kg each against 10 kg: every one is routed (each fits alone), at most
    // five can be accepted.
    sugar_orders(&t, retailer, 8).await;
    let part_ids = offered_parts(&t).await;
    assert_eq!(part_ids.len(), 8);
    let codes: Vec<u16> = accept_at_once(&t, a, &part_ids)
        .await
        .into_iter()
        .map(|(code, _)| code)
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 3, "{codes:?}");
    assert_eq!(stock(&t, a, "CHINI-1").await, 0.0);
}

/// Parts of several products take their stock all or nothing, in one order whatever the
/// order of their lines: concurrent accepts of orders sharing two products (half listing
/// them the other way round) neither deadlock nor oversell, and an accept refused for the
/// scarcer product leaves the other's stock untouched.
#[tokio::test]
async fn concurrent_accepts_sharing_products_take_stock_all_or_nothing() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let a = vendor(&t, "Small Shop", 1).await;
    offer(&t, a, "CHINI-1", 100.0, 10.0).await;
    offer(&t, a, "TEL-1", 200.0, 6.0).await;
    let sugar = json!({ "sku": "CHINI-1", "qty": 2, "unit": "kg" });
    let oil = json!({ "sku": "TEL-1", "qty": 2, "unit": "litre" });
    for i in 0..8 {
        let lines = if i % 2 == 0 {
            json!([sugar, oil])
        } else {
            json!([oil, sugar])
        };
        submit(&t, retailer, lines).await;
    }
    t.run_jobs().await;
    let part_ids = offered_parts(&t).await;
    assert_eq!(part_ids.len(), 8);
    let answers = accept_at_once(&t, a, &part_ids).await;
    let won = answers.iter().filter(|(c, _)| *c == 200).count();
    assert_eq!(won, 3, "oil covers three: {answers:?}");
    for (code, body) in answers.iter().filter(|(c, _)| *c != 200) {
        assert_eq!(*code, 409, "{body}");
        assert!(body.contains("stock no longer covers line"), "{body}");
    }
    assert_eq!(stock(&t, a, "TEL-1").await, 0.0);
    assert_eq!(
        stock(&t, a, "CHINI-1").await,
        4.0,
        "only the winners took sugar"
    );
    let accepted = t.get_json("/api/v1/fulfilments?status=accepted").await;
    let accepted = accepted["items"].as_array().unwrap();
    assert_eq!(accepted.len(), 3, "{accepted:?}");
    for p in accepted {
        let lines = p["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 2, "{p}");
        for l in lines {
            assert_eq!(l["reserved_quantity"], l["quantity"], "{p}");
        }
    }
}

/// A routing job that runs out of attempts holds its order for an operator with a critical
/// alert (its credit stays reserved); retrying the dead job routes it.
#[tokio::test]
async fn a_dead_routing_job_holds_the_order_and_its_retry_routes_it() {
    use khaacho::queue::Registry;
    use khaacho::queue::runtime::{drain, reap_expired};
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let v = vendor(&t, "Bishnu Traders", 1).await;
    offer(&t, v, "CHINI-1", 95.0, 100.0).await;
    let r = t
        .post_json(
            "/api/v1/orders",
            &json!({ "retailer_id": retailer, "lines": [{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }] }),
        )
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Everything but routing runs; then a worker kept dying on the routing job.
    let without_routing: Registry<khaacho::app::App> = Registry::default()
        .register_batch::<khaacho::orders::pipeline::ProcessOrders>()
        .register_batch::<khaacho::orders::transition::OrderChanged>();
    drain(&t.app, &without_routing).await.unwrap();
    assert_eq!(order(&t, &id).await["status"], "validated");
    let killed = khaacho::with_write!(t.app.db(), c => sqlx::query(
        "UPDATE jobs SET status = 'running', attempts = max_attempts, locked_by = 'gone', locked_until_ms = $1 \
         WHERE kind = 'order.route'")
        .bind(khaacho::base::time::now_ms() - 1)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
    .unwrap();
    assert_eq!(killed, 1);
    assert_eq!(
        reap_expired(&t.app, &khaacho::jobs::registry())
            .await
            .unwrap(),
        1
    );
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "on_hold", "{o}");
    assert_eq!(o["hold_reason"], "routing_failed");
    let acct = account(&t, retailer).await;
    assert_eq!(
        acct["held_npr"], 536.75,
        "the credit stays reserved: {acct}"
    );
    let alerts = t.get_json("/api/v1/alerts?kind=routing_failed").await;
    assert_eq!(alerts["items"][0]["subject_id"], id.as_str(), "{alerts}");
    assert_eq!(alerts["items"][0]["severity"], "critical");

    let dead = t
        .get_json("/api/v1/admin/jobs?status=dead&kind=order.route")
        .await;
    let job = dead["items"][0]["id"].as_str().unwrap().to_string();
    let r = t
        .client
        .post(t.url(&format!("/api/v1/admin/jobs/{job}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.run_jobs().await;
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "routed", "{o}");
    assert_eq!(
        path(&o),
        ["received", "validated", "on_hold", "validated", "routed"]
    );
    assert_eq!(parts(&o)[0].2, "offered");
}

/// The validation run routes the orders it validates in its own transaction; when that
/// routing fails, the run is done again without it and the order's routing job carries it on
/// from `validated` — the order is neither failed nor lost, and its credit stays reserved.
#[tokio::test]
async fn routing_that_fails_in_the_validation_run_is_left_to_the_routing_job() {
    // A failed try waits up to an hour here (the tests' own backoff is 1–5 ms of wall time:
    // on a slow machine the drain would try the routing job again and again, as long as the
    // table is away, until it is out of attempts).
    let t = TestApp::spawn_with(|s| {
        s.queue.backoff_base_ms = 3_600_000;
        s.queue.backoff_cap_ms = 3_600_000;
    })
    .await;
    let retailer = world(&t).await;
    let v = vendor(&t, "Bishnu Traders", 1).await;
    offer(&t, v, "CHINI-1", 95.0, 100.0).await;
    let id = submit(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    async fn run(t: &TestApp, sql: &'static str) {
        khaacho::with_write!(t.app.db(), c => sqlx::query(sql).execute(c).await.map(|_| ()))
            .unwrap();
    }
    // Routing cannot read or count the vendors' open parts, wherever it runs.
    run(
        &t,
        "ALTER TABLE vendor_workloads RENAME TO vendor_workloads_away",
    )
    .await;
    t.run_jobs().await;
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "validated", "{o}");
    assert_eq!(path(&o), ["received", "validated"]);
    assert_eq!(account(&t, retailer).await["held_npr"], 536.75);
    let jobs = t.get_json("/api/v1/admin/jobs?kind=order.route").await;
    let items = jobs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{jobs}");
    assert!(
        items[0]["attempts"].as_i64().unwrap() >= 1,
        "its own tries failed too, and it waits for the next: {jobs}"
    );
    let dead = t.get_json("/api/v1/admin/jobs?status=dead").await;
    assert_eq!(dead["items"].as_array().unwrap().len(), 0, "{dead}");

    // Mended, the routing job's next try routes it.
    run(
        &t,
        "ALTER TABLE vendor_workloads_away RENAME TO vendor_workloads",
    )
    .await;
    run(
        &t,
        "UPDATE jobs SET run_at_ms = 0 WHERE kind = 'order.route'",
    )
    .await;
    t.run_jobs().await;
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "routed", "{o}");
    assert_eq!(path(&o), ["received", "validated", "routed"]);
    assert_eq!(parts(&o)[0].1, Some(v.to_string()));
}

async fn heal(t: &TestApp) -> khaacho::orders::pipeline::heal::Healed {
    let now = t.app.clock().now_ms();
    khaacho::orders::pipeline::heal::heal(&t.app, now)
        .await
        .unwrap()
}

async fn delete_jobs(t: &TestApp, kind: &str) -> u64 {
    khaacho::with_write!(t.app.db(), c => sqlx::query("DELETE FROM jobs WHERE kind = $1")
        .bind(kind).execute(c).await.map(|r| r.rows_affected()))
    .unwrap()
}

/// Stuck-order healing: an order whose step's job was lost is retried once, then reported;
/// an order merely waiting in a queue that is behind is left alone; an accepted order nobody
/// dispatches for a day is reported at once.
#[tokio::test]
async fn stuck_orders_are_retried_once_then_reported() {
    use khaacho::orders::pipeline::heal::Healed;
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let v = vendor(&t, "Bishnu Traders", 1).await;
    offer(&t, v, "CHINI-1", 95.0, 100.0).await;

    // Waiting behind a slow queue is not stuck.
    let a = submit(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    t.app.clock().advance(6 * MINUTE);
    assert_eq!(heal(&t).await, Healed::default());
    // Its job lost (a dead letter discarded): the step is retried and the order moves on.
    assert_eq!(delete_jobs(&t, "order.validate").await, 1);
    assert_eq!(
        heal(&t).await,
        Healed {
            retried: 1,
            alerted: 0
        }
    );
    t.run_jobs().await;
    assert_eq!(order(&t, &a).await["status"], "routed");

    // Validated, its routing job lost twice: retried once, then operators hear of it, once.
    let b = submit(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let without_routing: khaacho::queue::Registry<khaacho::app::App> =
        khaacho::queue::Registry::default()
            .register_batch::<khaacho::orders::pipeline::ProcessOrders>()
            .register_batch::<khaacho::orders::transition::OrderChanged>();
    khaacho::queue::runtime::drain(&t.app, &without_routing)
        .await
        .unwrap();
    assert_eq!(order(&t, &b).await["status"], "validated");
    assert_eq!(delete_jobs(&t, "order.route").await, 1);
    t.app.clock().advance(16 * MINUTE);
    assert_eq!(
        heal(&t).await,
        Healed {
            retried: 1,
            alerted: 0
        }
    );
    assert_eq!(
        delete_jobs(&t, "order.route").await,
        1,
        "the retry enqueued it"
    );
    t.app.clock().advance(5 * MINUTE);
    assert_eq!(
        heal(&t).await,
        Healed {
            retried: 0,
            alerted: 1
        }
    );
    assert_eq!(heal(&t).await, Healed::default(), "reported once");
    let alerts = t.get_json("/api/v1/alerts?kind=order_stuck").await;
    assert_eq!(alerts["items"].as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(alerts["items"][0]["subject_id"], b.as_str());
    assert!(
        alerts["items"][0]["message"]
            .as_str()
            .unwrap()
            .contains("validated"),
        "{alerts}"
    );

    // Accepted and not dispatched for a day: reported without a retry.
    let part = parts(&order(&t, &a).await)[0].0.clone();
    let va = t.client_as(Role::Vendor, Some(v));
    ok(act(&t, &va, &part, "accept", json!({})).await).await;
    t.app.clock().advance(25 * 60 * MINUTE);
    assert_eq!(
        heal(&t).await,
        Healed {
            retried: 0,
            alerted: 1
        }
    );
    let alerts = t.get_json("/api/v1/alerts?kind=order_stuck").await;
    let about_a: Vec<&Value> = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["subject_id"] == a.as_str())
        .collect();
    assert_eq!(about_a.len(), 1, "{alerts}");
    assert!(
        about_a[0]["message"]
            .as_str()
            .unwrap()
            .contains("without the vendor dispatching"),
        "{alerts}"
    );
}

/// A rejection re-routes its part inside its transaction; its read of the market goes through
/// that transaction. Eight rejections at once on the tests' four-connection pool all move on:
/// had each taken a second connection for the market while holding its own, the four holding
/// the pool would each wait for a fifth until the acquire timeout.
#[tokio::test]
async fn rejections_at_once_on_a_small_pool_all_move_on() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let cheap = vendor(&t, "Cheap Shop", 1).await;
    let other = vendor(&t, "Other Shop", 2).await;
    offer(&t, cheap, "CHINI-1", 90.0, 100.0).await;
    offer(&t, other, "CHINI-1", 100.0, 100.0).await;
    sugar_orders(&t, retailer, 8).await;
    let all = t.get_json("/api/v1/fulfilments?status=offered").await;
    let at_cheap: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["vendor_id"] == cheap.to_string())
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert!(at_cheap.len() >= 5, "{all}");
    let answers = act_at_once(
        &t,
        cheap,
        &at_cheap,
        "reject",
        json!({ "reason": "no truck today" }),
    )
    .await;
    for (code, body) in answers {
        assert_eq!(code, 200, "{body}");
        let moved: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(moved["vendor_id"], other.to_string(), "{moved}");
    }
    reconciled(&t).await;
}

/// `order.changed` jobs waiting: one per transaction that changed orders.
async fn change_jobs(t: &TestApp) -> i64 {
    khaacho::with_latest!(t.app.db(), c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'order.changed'").fetch_one(c).await)
    .unwrap()
}

/// Writes `requests` (part id, vendor, action) as one batch of the part actions' group
/// commit, as concurrent requests would arrive; each request's outcome.
async fn batch(
    t: &TestApp,
    requests: Vec<(&str, Uuid, khaacho::fulfilment::service::PartAction)>,
) -> Vec<Result<String, String>> {
    use khaacho::base::group_commit::BatchWriter;
    use khaacho::fulfilment::batch::{PartActionWriter, PartRequest};
    let mut items = Vec::new();
    for (part, vendor, action) in requests {
        let actor = khaacho::orders::model::Actor {
            id: format!("vendor:{vendor}"),
            role: "vendor",
        };
        items.push(PartRequest::new(
            t.app.clone(),
            part.parse().unwrap(),
            vendor,
            actor,
            None,
            action,
        ));
    }
    let writer = PartActionWriter {
        postgres: t.app.db().is_postgres(),
    };
    writer
        .write(&items)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            r.map(|a| {
                // The answer carries the part's offers (read once for a batch): its own
                // current offer among them.
                if let Some(offers) = &a.offers {
                    assert!(offers.iter().all(|o| o.fulfilment_id == a.part.id));
                    assert!(
                        a.part.offer_id.is_none()
                            || offers.iter().any(|o| Some(o.id) == a.part.offer_id),
                        "{offers:?}"
                    );
                }
                a.part.status
            })
            .map_err(|e| e.to_string())
        })
        .collect()
}

/// PostgreSQL: an order another transaction holds (the other batch in flight, a retailer's
/// confirmation) does not hold up the rest of a batch: the batch writes the other orders'
/// actions and commits, and the held order's action runs alone afterwards, once its order is
/// free, with the answer it would have had in the batch.
#[tokio::test]
async fn an_order_held_elsewhere_does_not_hold_up_the_rest_of_its_batch() {
    use khaacho::fulfilment::service::PartAction::Accept;
    let t = TestApp::spawn().await;
    if !t.app.db().is_postgres() {
        return; // SQLite: one writer holds the whole database; nothing is held elsewhere.
    }
    let retailer = world(&t).await;
    let a = vendor(&t, "Small Shop", 1).await;
    offer(&t, a, "CHINI-1", 100.0, 100.0).await;
    sugar_orders(&t, retailer, 3).await;
    let ids = offered_parts(&t).await;
    assert_eq!(ids.len(), 3);
    let part = async |id: &str| t.get_json(&format!("/api/v1/fulfilments/{id}")).await;
    let held: Uuid = part(&ids[0]).await["order_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut holder = t.app.db().begin().await.unwrap();
    khaacho::orders::repo::find_for_update(&mut holder, held)
        .await
        .unwrap()
        .unwrap();

    let requests = ids.iter().map(|p| (p.as_str(), a, Accept)).collect();
    // The other two are accepted while the first one's order is still held; then it is let go.
    let check = async {
        for id in &ids[1..] {
            let mut status = Value::Null;
            for _ in 0..500 {
                status = part(id).await["status"].clone();
                if status == "accepted" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert_eq!(
                status, "accepted",
                "part {id} waited for another order's lock"
            );
        }
        assert_eq!(part(&ids[0]).await["status"], "offered");
        holder.rollback().await.unwrap();
    };
    let (answers, ()) = tokio::join!(batch(&t, requests), check);
    assert_eq!(answers, vec![Ok("accepted".to_string()); 3]);
    let metrics = t.metrics().await;
    assert_eq!(
        sample(&metrics, "khaacho_part_actions_left_for_after_batch_total"),
        Some(1.0),
        "{metrics}"
    );
}

/// PostgreSQL: a batch judges its accepts on the stock as committed and takes it at its end.
/// Stock another transaction took in between (here: this test, holding the offer row and
/// emptying it while the batch waits for the row) sends the batch back to one action per
/// transaction, where each accept is refused for the stock it no longer has: nothing is
/// taken twice, the stock is never below zero, no part is accepted.
#[tokio::test]
async fn stock_taken_while_a_batch_was_writing_sends_it_back_to_one_by_one() {
    use khaacho::fulfilment::service::PartAction::Accept;
    let t = TestApp::spawn().await;
    let khaacho::base::db::Backend::Pg(pool) = t.app.db().backend() else {
        return; // SQLite: one writer; nobody takes stock while a batch writes.
    };
    let retailer = world(&t).await;
    let a = vendor(&t, "Small Shop", 1).await;
    offer(&t, a, "CHINI-1", 100.0, 7.0).await;
    sugar_orders(&t, retailer, 2).await;
    let ids = offered_parts(&t).await;
    assert_eq!(ids.len(), 2);

    let mut holder = pool.begin().await.unwrap();
    let me: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    sqlx::query("SELECT 1 FROM offers WHERE vendor_id = $1 FOR UPDATE")
        .bind(a)
        .execute(&mut *holder)
        .await
        .unwrap();
    let requests = ids.iter().map(|p| (p.as_str(), a, Accept)).collect();
    // Once the batch waits for the offer row (it judged the 7 kg enough for both), the row
    // is emptied and let go.
    let empty_it = async {
        let mut waiting = 0i64;
        for _ in 0..500 {
            waiting = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            )
            .bind(me)
            .fetch_one(pool)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(waiting, 1, "the batch never reached the stock");
        sqlx::query("UPDATE offers SET stock_milli = 1000 WHERE vendor_id = $1")
            .bind(a)
            .execute(&mut *holder)
            .await
            .unwrap();
        holder.commit().await.unwrap();
    };
    let (answers, ()) = tokio::join!(batch(&t, requests), empty_it);
    for answer in &answers {
        let refusal = answer.as_ref().unwrap_err();
        assert!(refusal.contains("stock no longer covers"), "{answers:?}");
    }
    assert_eq!(stock(&t, a, "CHINI-1").await, 1.0);
    assert_eq!(offered_parts(&t).await.len(), 2, "none accepted");
    let metrics = t.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "khaacho_part_action_batches_split_total{why=\"refused\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}

/// Vendors' actions that arrive together are written in one transaction (one
/// `order.changed` for the lot), each judged on its own: an accept the stock no longer
/// covers is refused alone and takes nothing, another vendor's part is not
/// found, a delivery above the ordered quantity is refused, and the orders that reach
/// `delivered` post their credit at the delivered amount. Two actions on one order in a
/// batch are written one by one, with the answers they would get alone.
#[tokio::test]
async fn actions_arriving_together_are_written_in_one_transaction_each_judged_alone() {
    use khaacho::fulfilment::service::PartAction::{Accept, Deliver, Dispatch};
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let a = vendor(&t, "Small Shop", 1).await;
    let b = vendor(&t, "Other Shop", 2).await;
    offer(&t, a, "CHINI-1", 100.0, 7.0).await;
    sugar_orders(&t, retailer, 5).await;
    let ids = offered_parts(&t).await;
    assert_eq!(ids.len(), 5);

    // Four accepts of 2 kg against 7 kg, vendor b acting on a's fifth part, and an accept of
    // a part that does not exist.
    let jobs = change_jobs(&t).await;
    let nowhere = Uuid::now_v7().to_string();
    let mut requests: Vec<_> = ids[..4].iter().map(|p| (p.as_str(), a, Accept)).collect();
    requests.push((ids[4].as_str(), b, Accept));
    requests.push((nowhere.as_str(), a, Accept));
    let answers = batch(&t, requests).await;
    assert_eq!(
        change_jobs(&t).await,
        jobs + 1,
        "one transaction: {answers:?}"
    );
    let won: Vec<&str> = answers.iter().filter_map(|r| r.as_deref().ok()).collect();
    assert_eq!(won, ["accepted"; 3], "{answers:?}");
    let refused: Vec<&str> = answers
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(String::as_str)
        .collect();
    assert_eq!(refused.len(), 3, "{answers:?}");
    assert!(
        refused[0].starts_with("stock no longer covers line 1"),
        "{refused:?}"
    );
    assert_eq!(refused[1..], ["fulfilment not found"; 2]);
    assert_eq!(
        stock(&t, a, "CHINI-1").await,
        1.0,
        "the short accept gave back nothing it took"
    );
    let accepted: Vec<&str> = ids[..4]
        .iter()
        .zip(&answers)
        .filter(|(_, r)| r.is_ok())
        .map(|(p, _)| p.as_str())
        .collect();

    // Three dispatches: one transaction.
    let jobs = change_jobs(&t).await;
    let answers = batch(&t, accepted.iter().map(|p| (*p, a, Dispatch)).collect()).await;
    assert_eq!(answers, vec![Ok("dispatched".to_string()); 3]);
    assert_eq!(change_jobs(&t).await, jobs + 1);

    // Three deliveries: in full, 1 kg of 2, and 3 kg of 2 (refused).
    let jobs = change_jobs(&t).await;
    let answers = batch(
        &t,
        vec![
            (accepted[0], a, Deliver(vec![])),
            (accepted[1], a, Deliver(vec![(1, 1000)])),
            (accepted[2], a, Deliver(vec![(1, 3000)])),
        ],
    )
    .await;
    assert_eq!(answers[0], Ok("delivered".to_string()));
    assert_eq!(answers[1], Ok("delivered".to_string()));
    assert_eq!(answers[2], Err("invalid request".to_string()));
    assert_eq!(change_jobs(&t).await, jobs + 1);
    // 226 (2 kg with VAT) + 113 (1 kg with VAT).
    assert_eq!(account(&t, retailer).await["outstanding_npr"], 339.0);

    // Two actions on one order: written one by one, the second finds the first done.
    let answers = batch(
        &t,
        vec![
            (accepted[2], a, Deliver(vec![])),
            (accepted[2], a, Deliver(vec![])),
        ],
    )
    .await;
    assert_eq!(answers[0], Ok("delivered".to_string()));
    let second = answers[1].as_ref().unwrap_err();
    assert!(
        second.starts_with("cannot deliver a fulfilment that is delivered"),
        "{second}"
    );
    assert_eq!(account(&t, retailer).await["outstanding_npr"], 565.0);

    t.run_jobs().await;
    for (part, short) in accepted.iter().zip([false, true, false]) {
        let p = t.get_json(&format!("/api/v1/fulfilments/{part}")).await;
        let o = order(&t, p["order_id"].as_str().unwrap()).await;
        assert_eq!(o["status"], "delivered", "{o}");
        assert_eq!(
            path(&o),
            [
                "received",
                "validated",
                "routed",
                "accepted",
                "dispatched",
                "delivered"
            ],
            "{o}"
        );
        let last = o["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["role"], "vendor", "{last}");
        assert_eq!(
            last["detail"]["short"].as_array().unwrap().len(),
            usize::from(short),
            "{last}"
        );
    }
    reconciled(&t).await;
}

/// A retailer in Kathmandu besides `world`'s (phone `+97798000002{n}`).
async fn another_retailer(t: &TestApp, n: u32) -> Uuid {
    add_retailer(t, &format!("Pasal {n}"), &format!("+97798000002{n:02}")).await
}

/// One vendor ("Big Shop", 1,000 kg of sugar) and four shops, each placing `each` orders of
/// 2 kg, processed: the vendor, the shops, and the parts offered. Some orders may be held by
/// the risk rules (new shops ordering several times at once); the rest are offered.
async fn four_shops_ordering(t: &TestApp, each: usize) -> (Uuid, Vec<Uuid>, Vec<String>) {
    let first = world(t).await;
    let a = vendor(t, "Big Shop", 1).await;
    offer(t, a, "CHINI-1", 100.0, 1000.0).await;
    let mut retailers = vec![first];
    for n in 1..4 {
        retailers.push(another_retailer(t, n).await);
    }
    for r in &retailers {
        for _ in 0..each {
            submit(t, *r, json!([{ "sku": "CHINI-1", "qty": 2, "unit": "kg" }])).await;
        }
    }
    t.run_jobs().await;
    (a, retailers, offered_parts(t).await)
}

/// Deliveries of many orders of several retailers at once — written in batches side by
/// side on PostgreSQL, each locking its retailers' accounts — post every order once, at its
/// delivered amount, and leave the ledger reconciled.
#[tokio::test]
async fn concurrent_deliveries_post_every_order_once_and_reconcile() {
    let t = TestApp::spawn().await;
    let (a, retailers, ids) = four_shops_ordering(&t, 4).await;
    assert!(ids.len() >= 8, "{ids:?}");
    for (action, body) in [("accept", json!({})), ("dispatch", json!({}))] {
        let answers = act_at_once(&t, a, &ids, action, body).await;
        assert!(
            answers.iter().all(|(c, _)| *c == 200),
            "{action}: {answers:?}"
        );
    }
    // Half delivered in full, half 1 kg of 2, all at once.
    let (full, short) = ids.split_at(ids.len() / 2);
    let (full_answers, short_answers) = tokio::join!(
        act_at_once(&t, a, full, "deliver", json!({})),
        act_at_once(
            &t,
            a,
            short,
            "deliver",
            json!({ "lines": [{ "line_no": 1, "quantity": 1 }] })
        ),
    );
    for (code, body) in full_answers.iter().chain(&short_answers) {
        assert_eq!(*code, 200, "{body}");
    }
    t.run_jobs().await;
    let mut owed = std::collections::HashMap::new();
    for (part, amount) in full
        .iter()
        .map(|p| (p, 226.0))
        .chain(short.iter().map(|p| (p, 113.0)))
    {
        let p = t.get_json(&format!("/api/v1/fulfilments/{part}")).await;
        let o = order(&t, p["order_id"].as_str().unwrap()).await;
        assert_eq!(o["status"], "delivered", "{o}");
        assert_eq!(
            path(&o).iter().filter(|s| *s == "delivered").count(),
            1,
            "{o}"
        );
        *owed
            .entry(o["retailer_id"].as_str().unwrap().to_string())
            .or_insert(0.0) += amount;
    }
    for r in &retailers {
        let acct = account(&t, *r).await;
        let owes = owed.get(&r.to_string()).copied().unwrap_or(0.0);
        assert_eq!(acct["outstanding_npr"].as_f64(), Some(owes), "{acct}");
    }
    reconciled(&t).await;
}

/// Retailers' confirmations arriving together are written in one transaction (one
/// `order.changed` job for the batch), each judged as it would be alone: another shop's
/// order is not found, an order not yet delivered is refused with its state named, a second
/// confirmation of the same order in the batch runs after it and is refused; and concurrent
/// confirmations of one order over HTTP have exactly one winner.
#[tokio::test]
async fn confirmations_arriving_together_are_written_in_one_transaction_each_judged_alone() {
    use khaacho::base::audit::Entry;
    use khaacho::base::group_commit::BatchWriter;
    use khaacho::base::scope::Scope;
    use khaacho::orders::confirmations::{Confirmation, ConfirmationWriter};
    let t = TestApp::spawn().await;
    let (a, retailers, parts) = four_shops_ordering(&t, 2).await;
    assert!(parts.len() >= 7, "{parts:?}");
    for action in ["accept", "dispatch"] {
        let answers = act_at_once(&t, a, &parts, action, json!({})).await;
        assert!(answers.iter().all(|(c, _)| *c == 200), "{answers:?}");
    }
    // One part stays dispatched; the rest are delivered.
    let (dispatched, delivered) = parts.split_first().unwrap();
    let answers = act_at_once(&t, a, delivered, "deliver", json!({})).await;
    assert!(answers.iter().all(|(c, _)| *c == 200), "{answers:?}");
    t.run_jobs().await;
    let order_of = async |part: &str| -> (Uuid, Uuid) {
        let p = t.get_json(&format!("/api/v1/fulfilments/{part}")).await;
        let o = order(&t, p["order_id"].as_str().unwrap()).await;
        (
            o["id"].as_str().unwrap().parse().unwrap(),
            o["retailer_id"].as_str().unwrap().parse().unwrap(),
        )
    };
    let (waiting, waiting_shop) = order_of(dispatched).await;
    let mut done = Vec::new();
    for p in delivered {
        done.push(order_of(p).await);
    }
    // The last delivered order is left for the race over HTTP.
    let (raced, raced_shop) = done.pop().unwrap();
    let stranger = retailers.iter().copied().find(|r| *r != done[0].1).unwrap();

    let request = |order: Uuid, shop: Uuid| {
        Confirmation::new(
            t.app.clone(),
            Scope::Retailer(shop),
            order,
            khaacho::orders::model::Actor {
                id: format!("retailer:{shop}"),
                role: "retailer",
            },
            None,
            Some(Entry::new(
                format!("retailer:{shop}"),
                Some("retailer"),
                "order",
            )),
        )
    };
    // Another shop's confirmation of the first order (not found), every delivered order by
    // its shop, the first again (after the batch: already completed), the dispatched one.
    let mut items = vec![request(done[0].0, stranger)];
    items.extend(done.iter().map(|&(o, shop)| request(o, shop)));
    items.push(request(done[1].0, done[1].1));
    items.push(request(waiting, waiting_shop));
    let jobs = change_jobs(&t).await;
    let writer = ConfirmationWriter {
        postgres: t.app.db().is_postgres(),
    };
    let answers: Vec<Result<String, String>> = writer
        .write(&items)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.map(|o| o.status).map_err(|e| e.to_string()))
        .collect();
    let n = done.len();
    assert_eq!(answers[0], Err("order not found".to_string()));
    assert_eq!(answers[1..=n], vec![Ok("completed".to_string()); n]);
    assert_eq!(
        answers[n + 1],
        Err("only a delivered order can be confirmed; this order is completed".to_string())
    );
    assert_eq!(
        answers[n + 2],
        Err("only a delivered order can be confirmed; this order is dispatched".to_string())
    );
    // The first order was named twice in the batch (the stranger's, then its own shop's):
    // the second ran alone after it. So: the batch's transaction and that one.
    assert_eq!(change_jobs(&t).await, jobs + 2, "{answers:?}");
    t.run_jobs().await;
    for &(o, _) in &done {
        let o = order(&t, &o.to_string()).await;
        assert_eq!(o["status"], "completed", "{o}");
        let last = o["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            (
                last["to"].as_str(),
                last["role"].as_str(),
                last["reason"].as_str()
            ),
            (Some("completed"), Some("retailer"), Some("confirmed")),
            "{o}"
        );
        let rows = audit_rows(&t, &format!("entity_id={}", o["id"].as_str().unwrap())).await;
        let confirms: Vec<&Value> = rows
            .iter()
            .filter(|r| r["action"] == "order.confirm")
            .collect();
        assert_eq!(confirms.len(), 1, "{rows:?}");
        assert_eq!(confirms[0]["summary"]["to"], "completed");
    }
    assert_eq!(
        order(&t, &waiting.to_string()).await["status"],
        "dispatched"
    );

    // Ten confirmations of one order at once, over HTTP: one 200, nine 409.
    let rc = t.client_as(Role::Retailer, Some(raced_shop));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (c, url) = (
                rc.clone(),
                t.url(&format!("/api/v1/orders/{raced}/confirm")),
            );
            tokio::spawn(async move {
                let r = c.post(url).json(&json!({})).send().await.unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for task in tasks {
        codes.push(task.await.unwrap());
    }
    codes.sort_unstable();
    assert_eq!(codes, [200, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    t.run_jobs().await;
    let o = order(&t, &raced.to_string()).await;
    assert_eq!(
        path(&o).iter().filter(|s| *s == "completed").count(),
        1,
        "{o}"
    );
}

/// Kept volume rows: `(vendor, quantity in base milli-units)` of every day, in vendor order.
async fn kept_volumes(t: &TestApp) -> Vec<(Uuid, i64)> {
    khaacho::with_latest!(t.app.db(), c => sqlx::query_as(
        "SELECT vendor_id, CAST(SUM(qty_milli) AS BIGINT) FROM vendor_volumes GROUP BY vendor_id ORDER BY vendor_id")
        .fetch_all(c).await)
    .unwrap()
}

#[tokio::test]
async fn the_volume_share_rule_counts_what_vendors_were_given_and_not_what_was_withdrawn() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let cheap = vendor(&t, "Cheap Sugar", 1).await;
    let dear = vendor(&t, "Dear Sugar", 2).await;
    offer(&t, cheap, "CHINI-1", 90.0, 100.0).await;
    offer(&t, dear, "CHINI-1", 100.0, 100.0).await;
    let rc = t.client_as(Role::Retailer, Some(retailer));
    let sugar = json!([{ "sku": "CHINI-1", "qty": 2, "unit": "kg" }]);
    let next = async || {
        // Past the minute a process reuses the volumes it read.
        t.app.clock().advance(2 * MINUTE);
        let o = order(&t, &place(&t, retailer, sugar.clone()).await).await;
        let to = parts(&o)[0].1.clone().unwrap();
        (
            o["id"].as_str().unwrap().to_string(),
            to,
            passed_over(&o["routing"][0], cheap),
        )
    };

    // Nobody sold sugar yet: the cheaper vendor.
    let (first, to, _) = next().await;
    assert_eq!(to, cheap.to_string());
    // It now holds all of the month's sugar, above the 40% share: the other vendor.
    let (_, to, why) = next().await;
    assert_eq!(to, dear.to_string());
    assert_eq!(
        why,
        Some(json!([{ "line_no": 1, "reasons": ["volume_share"] }]))
    );
    let by_vendor = |mut v: Vec<(Uuid, i64)>| {
        v.sort();
        v
    };
    assert_eq!(
        kept_volumes(&t).await,
        by_vendor(vec![(cheap, 2_000), (dear, 2_000)])
    );
    // Half each is above 40% too, but nobody would be left: the rule gives way.
    let (third, to, _) = next().await;
    assert_eq!(to, cheap.to_string());

    // The cheap vendor's orders withdrawn, its share goes with them: it is asked again.
    for id in [&first, &third] {
        assert_eq!(cancel(&t, &rc, id, "ordered twice").await.status(), 200);
    }
    assert_eq!(
        kept_volumes(&t).await,
        by_vendor(vec![(cheap, 0), (dear, 2_000)])
    );
    let (_, to, _) = next().await;
    assert_eq!(to, cheap.to_string());
    reconciled(&t).await;

    // The daily recount corrects a kept volume that went wrong and forgets days before the
    // window.
    let today = khaacho::fulfilment::repo::volume_day(t.app.clock().now_ms());
    khaacho::with_write!(t.app.db(), c => sqlx::query(
        "UPDATE vendor_volumes SET qty_milli = qty_milli + 500 WHERE vendor_id = $1")
        .bind(dear).execute(c).await.map(|r| r.rows_affected()))
    .unwrap();
    khaacho::with_write!(t.app.db(), c => sqlx::query(
        "INSERT INTO vendor_volumes (product_id, day, vendor_id, qty_milli) \
         SELECT product_id, day - 40, vendor_id, 7000 FROM vendor_volumes WHERE vendor_id = $1")
        .bind(dear).execute(c).await.map(|r| r.rows_affected()))
    .unwrap();
    let fixed = khaacho::fulfilment::repo::recount_volumes(t.app.db(), today - 30)
        .await
        .unwrap();
    assert_eq!(fixed.len(), 1, "{fixed:?}");
    assert_eq!((fixed[0].0.2, fixed[0].1, fixed[0].2), (dear, 2_500, 2_000));
    assert_eq!(
        kept_volumes(&t).await,
        by_vendor(vec![(cheap, 2_000), (dear, 2_000)])
    );
}

/// Two vendors offering sugar (First Choice at 100, Second Choice at 101) and an order of
/// 5 kg, routed to the first: `(first, second, order id, part id)`.
async fn sugar_first_choice_of_two(t: &TestApp) -> (Uuid, Uuid, String, String) {
    let retailer = world(t).await;
    let a = vendor(t, "First Choice", 1).await;
    let b = vendor(t, "Second Choice", 2).await;
    offer(t, a, "CHINI-1", 100.0, 50.0).await;
    offer(t, b, "CHINI-1", 101.0, 50.0).await;
    let id = place(
        t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let (part, to, _) = parts(&order(t, &id).await)[0].clone();
    assert_eq!(to, Some(a.to_string()));
    (a, b, id, part)
}

#[tokio::test]
async fn a_vendor_gives_back_an_accepted_part_before_dispatch_and_it_moves_on() {
    let t = TestApp::spawn().await;
    let (a, b, id, part) = sugar_first_choice_of_two(&t).await;
    let (va, vb) = (
        t.client_as(Role::Vendor, Some(a)),
        t.client_as(Role::Vendor, Some(b)),
    );

    // Only an accepted part can be given back, with a reason, by its own vendor.
    let p = assert_problem(
        act(&t, &va, &part, "cancel", json!({ "reason": "x" })).await,
        409,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("accept, reject"),
        "{p}"
    );
    let accepted = ok(act(&t, &va, &part, "accept", json!({})).await).await;
    assert_eq!(accepted["allowed_actions"], json!(["dispatch", "cancel"]));
    assert_eq!(stock(&t, a, "CHINI-1").await, 45.0);
    assert_eq!(order(&t, &id).await["status"], "accepted");
    let p = assert_problem(act(&t, &va, &part, "cancel", json!({})).await, 422).await;
    assert_eq!(p["errors"][0]["field"], "reason", "{p}");
    assert_problem(
        act(&t, &vb, &part, "cancel", json!({ "reason": "not mine" })).await,
        404,
    )
    .await;

    // Given back: the stock returns, the next vendor is offered the part, the order waits
    // for it again.
    let moved = ok(act(
        &t,
        &va,
        &part,
        "cancel",
        json!({ "reason": "the sugar got wet in the store" }),
    )
    .await)
    .await;
    assert_eq!(
        (
            moved["vendor_id"].as_str(),
            moved["status"].as_str(),
            &moved["reassignments"]
        ),
        (Some(b.to_string().as_str()), Some("offered"), &json!(1)),
        "{moved}"
    );
    assert_eq!(stock(&t, a, "CHINI-1").await, 50.0);
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "routed");
    assert_eq!(path(&o)[path(&o).len() - 2..], ["accepted", "routed"]);
    let last = o["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"], "the sugar got wet in the store", "{last}");
    assert_eq!(last["detail"]["cancelled_by"], a.to_string(), "{last}");
    let offers = o["fulfilments"][0]["offers"].as_array().unwrap().clone();
    let statuses: Vec<(&str, &str)> = offers
        .iter()
        .map(|f| {
            (
                f["vendor_id"].as_str().unwrap(),
                f["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&(a.to_string().as_str(), "cancelled_by_vendor"))
            && statuses.contains(&(b.to_string().as_str(), "offered")),
        "{statuses:?}"
    );
    assert_problem(act(&t, &va, &part, "dispatch", json!({})).await, 404).await;

    // The next vendor carries it; once dispatched it can no longer be given back.
    ok(act(&t, &vb, &part, "accept", json!({})).await).await;
    ok(act(&t, &vb, &part, "dispatch", json!({})).await).await;
    let p = assert_problem(
        act(&t, &vb, &part, "cancel", json!({ "reason": "late" })).await,
        409,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("deliver"), "{p}");
    assert_eq!(stock(&t, b, "CHINI-1").await, 45.0);
    reconciled(&t).await;

    // The first vendor's score counts the accepted offer it gave back.
    let now = t.app.clock().now_ms();
    khaacho::fulfilment::scores::score_vendors(&t.app, now)
        .await
        .unwrap();
    let s = t.get_json(&format!("/api/v1/vendors/{a}/score")).await;
    let activity = &s["current"]["factors"]["activity"];
    assert_eq!(
        (
            &activity["offers"],
            &activity["accepted"],
            &activity["cancelled_by_vendor"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{s}"
    );
}

#[tokio::test]
async fn a_part_given_back_with_no_vendor_left_waits_for_an_operator_who_offers_it_again() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let only = vendor(&t, "Only Sugar", 1).await;
    offer(&t, only, "CHINI-1", 100.0, 50.0).await;
    let vc = t.client_as(Role::Vendor, Some(only));
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let (part, _, _) = parts(&order(&t, &id).await)[0].clone();
    ok(act(&t, &vc, &part, "accept", json!({})).await).await;
    let back = ok(act(
        &t,
        &vc,
        &part,
        "cancel",
        json!({ "reason": "the scale is broken" }),
    )
    .await)
    .await;
    assert_eq!(
        (back["status"].as_str(), back["vendor_id"].as_str()),
        (Some("unassigned"), None),
        "{back}"
    );
    assert_eq!(stock(&t, only, "CHINI-1").await, 50.0);
    let o = order(&t, &id).await;
    assert_eq!(
        (o["status"].as_str(), o["hold_reason"].as_str()),
        (Some("on_hold"), Some("vendor_unavailable")),
        "{o}"
    );
    let alerts = t.get_json("/api/v1/alerts?kind=vendor_unavailable").await;
    assert_eq!(alerts["items"].as_array().unwrap().len(), 1, "{alerts}");

    // The scale is mended: the operator approves, the part is offered again, and taken.
    let r = t
        .post_json(
            &format!("/api/v1/orders/{id}/approve"),
            &json!({ "reason": "the vendor can weigh again" }),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    t.run_jobs().await;
    let o = order(&t, &id).await;
    assert_eq!(o["status"], "routed", "{o}");
    let (_, to, status) = parts(&o)[0].clone();
    assert_eq!(
        (to.as_deref(), status.as_str()),
        (Some(only.to_string().as_str()), "offered")
    );
    ok(act(&t, &vc, &part, "accept", json!({})).await).await;
    assert_eq!(order(&t, &id).await["status"], "accepted");
    assert_eq!(stock(&t, only, "CHINI-1").await, 45.0);
    reconciled(&t).await;
}

#[tokio::test]
async fn concurrent_give_backs_and_a_dispatch_of_one_part_leave_one_outcome() {
    let t = TestApp::spawn().await;
    let (a, b, id, part) = sugar_first_choice_of_two(&t).await;
    let va = t.client_as(Role::Vendor, Some(a));
    ok(act(&t, &va, &part, "accept", json!({})).await).await;
    // Ten give-backs and a dispatch at once (a double-tapping vendor, two of its staff).
    let tasks: Vec<_> = (0..11)
        .map(|k| {
            let (action, body) = if k == 5 {
                ("dispatch", json!({}))
            } else {
                ("cancel", json!({ "reason": "cannot deliver" }))
            };
            let c = va.clone();
            let url = t.url(&format!("/api/v1/fulfilments/{part}/{action}"));
            tokio::spawn(async move {
                let status = c.post(url).json(&body).send().await.unwrap().status();
                (action, status.as_u16())
            })
        })
        .collect();
    let mut won = Vec::new();
    for task in tasks {
        let (action, code) = task.await.unwrap();
        assert!([200, 404, 409].contains(&code), "{action}: {code}");
        if code == 200 {
            won.push(action);
        }
    }
    assert_eq!(won.len(), 1, "exactly one of them: {won:?}");
    let o = order(&t, &id).await;
    let (_, to, status) = parts(&o)[0].clone();
    if won[0] == "cancel" {
        // Given back once: the stock returned once, the part offered to the next vendor.
        assert_eq!(stock(&t, a, "CHINI-1").await, 50.0);
        assert_eq!(
            (to.as_deref(), status.as_str()),
            (Some(b.to_string().as_str()), "offered")
        );
    } else {
        assert_eq!(stock(&t, a, "CHINI-1").await, 45.0);
        assert_eq!(status, "dispatched");
    }
    reconciled(&t).await;
}

/// The reads of one key (an order and its lines, events, hold, risk assessment and parts; a
/// part's lines and offers; a shop; an API key) run on PostgreSQL's keyed-read pool, whose
/// statements are planned once per connection, whatever the statistics say at that moment.
/// Planned just after an ANALYZE of near-empty tables (and nothing to refresh it without
/// autovacuum), PostgreSQL chose a sequential scan even for a primary key, a plan the
/// connection would have kept while the table grew. Every statement the pool prepared while
/// an order's life was read is an index lookup by its key.
#[tokio::test]
async fn keyed_reads_plan_index_lookups_whatever_the_statistics() {
    let t = TestApp::spawn().await;
    let Some(keyed) = t.app.db().keyed_pool().cloned() else {
        return; // SQLite plans each statement itself.
    };
    let retailer = world(&t).await;
    let b = vendor(&t, "Sugar House", 2).await;
    let c = vendor(&t, "Oil Depot", 3).await;
    offer(&t, b, "CHINI-1", 100.0, 50.0).await;
    offer(&t, c, "TEL-1", 200.0, 50.0).await;
    // The statistics now say every table is (nearly) empty.
    let tables: Vec<String> = khaacho::with_latest!(t.app.db(), c => sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()")
        .fetch_all(c).await)
    .unwrap();
    let analyze = format!("ANALYZE {}", tables.join(", "));
    khaacho::with_latest!(t.app.db(), c => sqlx::raw_sql(sqlx::AssertSqlSafe(analyze))
        .execute(c).await.map(|_| ()))
    .unwrap();

    // An order split between the two vendors, read as its retailer would: through an API
    // key, the order with everything in it, its status, a part.
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }, { "sku": "TEL-1", "qty": 2, "unit": "litre" }]),
    )
    .await;
    let admin = t.client_as(Role::Admin, None);
    let r = admin
        .post(t.url("/api/v1/auth/api-keys"))
        .json(&json!({ "name": "shop app", "role": "retailer", "retailer_id": retailer }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let shop = crate::helpers::bearer_client(created["key"].as_str().unwrap());
    let seen = read_as(&t, &shop, &format!("/api/v1/orders/{id}")).await;
    assert_eq!(parts(&seen).len(), 2, "{seen}");
    assert_eq!(seen["lines"].as_array().unwrap().len(), 2, "{seen}");
    let status = read_as(&t, &shop, &format!("/api/v1/orders/{id}/status")).await;
    assert_eq!(status["status"], "routed");
    let part = &parts(&seen)[0].0;
    read_as(&t, &t.client, &format!("/api/v1/fulfilments/{part}")).await;

    // Every connection of the keyed pool, and what each prepared.
    let mut conns = Vec::new();
    for _ in 0..keyed.size() {
        conns.push(keyed.acquire().await.unwrap());
    }
    let mut seen_tables = std::collections::BTreeSet::new();
    let mut scans = Vec::new();
    for conn in &mut conns {
        let prepared: Vec<(String, String, i32)> = sqlx::query_as(
            "SELECT name, statement, coalesce(cardinality(parameter_types), 0) \
             FROM pg_prepared_statements WHERE statement NOT LIKE '%pg_prepared_statements%'",
        )
        .fetch_all(&mut **conn)
        .await
        .unwrap();
        for (name, statement, params) in prepared {
            let args = vec!["NULL"; params as usize].join(", ");
            let sql = if params == 0 {
                format!("EXPLAIN EXECUTE {name}")
            } else {
                format!("EXPLAIN EXECUTE {name}({args})")
            };
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut **conn)
                .await
                .unwrap();
            let plan: Vec<String> = rows
                .iter()
                .map(|r| sqlx::Row::get::<String, _>(r, 0))
                .collect();
            for table in &tables {
                if statement.contains(&format!(" {table} ")) {
                    seen_tables.insert(table.clone());
                }
            }
            if let Some(bad) = scan_in(&plan) {
                scans.push(format!("{statement}\n  {bad}\n{}", plan.join("\n")));
            }
        }
    }
    assert!(
        scans.is_empty(),
        "keyed reads planned as scans:\n{}",
        scans.join("\n\n")
    );
    for table in [
        "orders",
        "order_lines",
        "order_events",
        "credit_holds",
        "risk_assessments",
        "fulfilments",
        "fulfilment_lines",
        "fulfilment_offers",
        "retailers",
        "api_keys",
    ] {
        assert!(
            seen_tables.contains(table),
            "no keyed read of {table}: {seen_tables:?}"
        );
    }
}

/// The first node of `plan` (EXPLAIN's lines) that reads a table other than by an index
/// condition: a sequential scan, or an index walked whole with a filter.
fn scan_in(plan: &[String]) -> Option<String> {
    let nodes: Vec<(usize, &String)> = plan
        .iter()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.trim_start().starts_with("->"))
        .collect();
    for (k, (i, line)) in nodes.iter().enumerate() {
        if line.contains("Seq Scan") {
            return Some(line.trim().to_string());
        }
        if line.contains("Index Scan") || line.contains("Index Only Scan") {
            let end = nodes.get(k + 1).map_or(plan.len(), |(j, _)| *j);
            if !plan[i + 1..end].iter().any(|l| l.contains("Index Cond:")) {
                return Some(line.trim().to_string());
            }
        }
    }
    None
}
