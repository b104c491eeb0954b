//! Reports, black-box on both backends: the dashboard figures scoped to who asks (staff,
//! a retailer, a vendor), revenue that leaves refused orders out, credit exposure aged by days
//! past due on the app's clock, CSV exports, and bad windows answered with problems.

use khaacho::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fulfilment::{offer, order, place, vendor, world};
use crate::helpers::{TestApp, assert_problem};

const DAY: i64 = 86_400_000;

async fn get_as(t: &TestApp, role: Role, tenant: Option<Uuid>, path: &str) -> reqwest::Response {
    t.client_as(role, tenant)
        .get(t.url(path))
        .send()
        .await
        .unwrap()
}

async fn summary_as(t: &TestApp, role: Role, tenant: Option<Uuid>) -> Value {
    let r = get_as(t, role, tenant, "/api/v1/reports/summary?hours=24").await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn paisa(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 100.0).round() as i64
}

async fn act(t: &TestApp, vendor: Uuid, part: &str, action: &str) {
    let r = t
        .client_as(Role::Vendor, Some(vendor))
        .post(t.url(&format!("/api/v1/fulfilments/{part}/{action}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{action}");
    t.run_jobs().await;
}

#[tokio::test]
async fn reports_are_scoped_to_who_asks_and_age_what_is_past_due() {
    let t = TestApp::spawn().await;
    let gita = world(&t).await;
    let r = t
        .post_json(
            "/api/v1/retailers",
            &json!({ "name": "Hari Pasal", "phone": "+9779800000002", "district": "Kathmandu" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let hari: Uuid = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let v = vendor(&t, "Bhandari Traders", 1).await;
    offer(&t, v, "CHINI-1", 100.0, 500.0).await;
    offer(&t, v, "TEL-1", 200.0, 500.0).await;

    let sugar = json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]);
    let delivered = place(&t, gita, sugar.clone()).await;
    let cancelled = place(
        &t,
        gita,
        json!([{ "sku": "TEL-1", "qty": 2, "unit": "litre" }]),
    )
    .await;
    let haris = place(
        &t,
        hari,
        json!([{ "sku": "TEL-1", "qty": 1, "unit": "litre" }]),
    )
    .await;
    let r = t
        .client_as(Role::Retailer, Some(gita))
        .post(t.url(&format!("/api/v1/orders/{cancelled}/cancel")))
        .json(&json!({ "reason": "changed my mind" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.run_jobs().await;
    let o = order(&t, &delivered).await;
    let part = o["fulfilments"][0]["id"].as_str().unwrap().to_string();
    for action in ["accept", "dispatch", "deliver"] {
        act(&t, v, &part, action).await;
    }
    let total = |o: &Value| paisa(&o["totals"]["total_npr"]);
    let (delivered_total, haris_total) = (
        total(&order(&t, &delivered).await),
        total(&order(&t, &haris).await),
    );
    assert!(delivered_total > 0 && haris_total > 0);

    // Staff: everything; the cancelled order counts but earns nothing.
    let s = summary_as(&t, Role::Operator, None).await;
    assert_eq!(s["scope"], "all", "{s}");
    let minutes = s["orders_per_minute"].as_array().unwrap();
    assert!((60..=61).contains(&minutes.len()), "{}", minutes.len());
    let sum = |buckets: &Value, key: &str| -> i64 {
        buckets
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[key].as_i64().unwrap())
            .sum()
    };
    assert_eq!(sum(&s["orders_per_minute"], "count"), 3);
    assert_eq!(sum(&s["revenue_per_hour"], "count"), 3);
    assert_eq!(
        sum(&s["revenue_per_hour"], "revenue_paisa"),
        delivered_total + haris_total
    );
    assert_eq!(s["status_counts"]["cancelled"], 1, "{s}");
    assert_eq!(s["status_counts"]["delivered"], 1, "{s}");
    assert_eq!(s["top_retailers"][0]["name"], "Gita Kirana", "{s}");
    assert_eq!(
        s["top_retailers"][0]["revenue_paisa"], delivered_total,
        "{s}"
    );
    assert_eq!(s["top_products"][0]["id"], "CHINI-1", "{s}");
    assert_eq!(s["top_vendors"][0]["name"], "Bhandari Traders", "{s}");
    let exposure = &s["credit_exposure"];
    assert_eq!(exposure["outstanding_paisa"], delivered_total, "{s}");
    assert_eq!(exposure["not_due_paisa"], delivered_total, "{s}");

    // A retailer: its own orders and account, no one else's.
    let s = summary_as(&t, Role::Retailer, Some(hari)).await;
    assert_eq!(s["scope"], "retailer");
    assert_eq!(sum(&s["orders_per_minute"], "count"), 1);
    assert_eq!(sum(&s["revenue_per_hour"], "revenue_paisa"), haris_total);
    assert_eq!(s["top_retailers"], json!([]));
    assert_eq!(s["top_vendors"], json!([]));
    assert_eq!(s["credit_exposure"]["accounts"], 1, "{s}");
    assert_eq!(s["credit_exposure"]["outstanding_paisa"], 0, "{s}");

    // A vendor: its parts and their values, never an order's total or anyone's credit.
    let s = summary_as(&t, Role::Vendor, Some(v)).await;
    assert_eq!(s["scope"], "vendor");
    assert_eq!(s["credit_exposure"], Value::Null);
    assert_eq!(s["top_retailers"], json!([]));
    let parts: Vec<Value> = t.get_json("/api/v1/fulfilments?limit=50").await["items"]
        .as_array()
        .unwrap()
        .clone();
    let live: i64 = parts
        .iter()
        .filter(|p| !["cancelled", "unassigned"].contains(&p["status"].as_str().unwrap()))
        .map(|p| paisa(&p["total_npr"]))
        .sum();
    assert_eq!(sum(&s["revenue_per_hour"], "revenue_paisa"), live, "{s}");
    assert_eq!(s["top_products"][0]["orders"], 1, "{s}");

    // CSV: staff get every order, a retailer its own, a vendor none.
    let csv = get_as(
        &t,
        Role::Operator,
        None,
        "/api/v1/reports/orders.csv?hours=720",
    )
    .await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("id,created_at,retailer_id,retailer,status"),
        "{text}"
    );
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        text.contains(&format!("{cancelled},")) && text.contains("changed my mind"),
        "{text}"
    );
    let mine = get_as(
        &t,
        Role::Retailer,
        Some(hari),
        "/api/v1/reports/orders.csv?hours=720",
    )
    .await
    .text()
    .await
    .unwrap();
    assert_eq!(mine.lines().count(), 2, "{mine}");
    assert!(mine.contains(&haris), "{mine}");
    assert_problem(
        get_as(&t, Role::Vendor, Some(v), "/api/v1/reports/orders.csv").await,
        403,
    )
    .await;
    let credit = get_as(&t, Role::Admin, None, "/api/v1/reports/credit.csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        credit.starts_with("retailer_id,retailer,limit_npr"),
        "{credit}"
    );
    assert!(
        credit.lines().any(|l| l.contains("Gita Kirana")),
        "{credit}"
    );
    assert_problem(
        get_as(&t, Role::Retailer, Some(gita), "/api/v1/reports/credit.csv").await,
        403,
    )
    .await;

    // What is past due is aged on the app's clock.
    t.app.clock().advance(40 * DAY);
    let s = summary_as(&t, Role::Admin, None).await;
    let e = &s["credit_exposure"];
    let buckets = [
        "overdue_0_7_paisa",
        "overdue_8_15_paisa",
        "overdue_16_30_paisa",
        "overdue_30_plus_paisa",
    ];
    let aged: Vec<i64> = buckets.iter().map(|b| e[*b].as_i64().unwrap()).collect();
    assert_eq!(e["not_due_paisa"], 0, "{e}");
    assert_eq!(aged.iter().sum::<i64>(), delivered_total, "{e}");
    assert_eq!(
        aged.iter().filter(|a| **a > 0).count(),
        1,
        "one bucket: {e}"
    );
    t.app.clock().advance(40 * DAY);
    let s = summary_as(&t, Role::Admin, None).await;
    assert_eq!(
        s["credit_exposure"]["overdue_30_plus_paisa"], delivered_total,
        "{s}"
    );

    // Bad windows.
    for bad in ["hours=0", "hours=721", "hours=abc", "days=2"] {
        let r = get_as(
            &t,
            Role::Admin,
            None,
            &format!("/api/v1/reports/summary?{bad}"),
        )
        .await;
        assert_problem(r, 400).await;
    }
}
