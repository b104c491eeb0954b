//! The two recurring intelligence jobs, black-box on both backends, driven with an explicit
//! `now`: vendor scores (history, `vendors.score` as routing's reliability, who may read a
//! score) and price-intelligence snapshots (the statistics of known offers, paging, and the
//! abnormal-change alert at most once per product and severity per 24 h).

use khaacho::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fulfilment::{offer, order, place, vendor, world};
use crate::helpers::{TestApp, assert_problem};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// Places an order of one line, runs the pipeline and routing; returns the order id and its
/// one part.
async fn place_one(
    t: &TestApp,
    retailer: Uuid,
    sku: &str,
    qty: u32,
    unit: &str,
) -> (String, String) {
    let id = place(
        t,
        retailer,
        json!([{ "sku": sku, "qty": qty, "unit": unit }]),
    )
    .await;
    let o = order(t, &id).await;
    assert_eq!(o["status"], "routed", "{o}");
    let part = o["fulfilments"][0]["id"].as_str().unwrap().to_string();
    (id, part)
}

async fn act(t: &TestApp, vendor: Uuid, part: &str, action: &str, body: Value) {
    let r = t
        .client_as(Role::Vendor, Some(vendor))
        .post(t.url(&format!("/api/v1/fulfilments/{part}/{action}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{action} {part}");
    t.run_jobs().await;
}

async fn db_score(t: &TestApp, vendor: Uuid) -> i32 {
    khaacho::with_latest!(t.app.db(), c => sqlx::query_scalar("SELECT score FROM vendors WHERE id = $1")
        .bind(vendor).fetch_one(c).await)
    .unwrap()
}

fn reliability(routing: &Value, vendor: Uuid) -> u64 {
    let c = routing["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["vendor_id"] == vendor.to_string())
        .unwrap_or_else(|| panic!("candidate {vendor} in {routing}"));
    c["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "reliability")
        .unwrap_or_else(|| panic!("reliability of {vendor} in {routing}"))["points"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn a_fast_full_deliverer_outscores_a_vendor_that_rejects_and_lets_offers_expire() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let good = vendor(&t, "Quick Sugar", 1).await;
    let pricey = vendor(&t, "Pricey Sugar", 2).await;
    let slow = vendor(&t, "Sleepy Oil", 3).await;
    offer(&t, good, "CHINI-1", 100.0, 100.0).await;
    offer(&t, pricey, "CHINI-1", 150.0, 100.0).await;
    offer(&t, slow, "TEL-1", 200.0, 100.0).await;

    // The good vendor accepts at once and delivers in full.
    let (_, part) = place_one(&t, retailer, "CHINI-1", 5, "kg").await;
    act(&t, good, &part, "accept", json!({})).await;
    act(&t, good, &part, "dispatch", json!({})).await;
    act(&t, good, &part, "deliver", json!({})).await;
    // The oil vendor rejects one offer and lets another expire.
    let (oil_order, part) = place_one(&t, retailer, "TEL-1", 2, "litre").await;
    act(&t, slow, &part, "reject", json!({ "reason": "busy" })).await;
    place_one(&t, retailer, "TEL-1", 1, "litre").await;
    t.app.clock().advance(31 * MINUTE);
    let now = t.app.clock().now_ms();
    let ticked = khaacho::fulfilment::jobs::tick(&t.app, now).await.unwrap();
    assert_eq!(ticked.expired, 1);
    t.run_jobs().await;

    // Before any run every vendor holds the starting 50 (the routing preview of the oil
    // order, whose only candidate is the oil vendor).
    let path = format!("/api/v1/orders/{oil_order}/routing");
    assert_eq!(reliability(&t.get_json(&path).await, slow), 50);

    let now = t.app.clock().now_ms();
    assert_eq!(
        khaacho::fulfilment::scores::score_vendors(&t.app, now)
            .await
            .unwrap(),
        3
    );
    // Good: answered in 0 min, accepted 1 of 1, sold at 100 against a 125 average (ratio
    // 0.8), delivered 1 of 1 in full: every factor at 100.
    let g = t.get_json(&format!("/api/v1/vendors/{good}/score")).await;
    assert_eq!(g["current"]["score"], 100, "{g}");
    assert_eq!(g["current"]["grade"], "A+");
    assert_eq!(g["current"]["needs_attention"], false);
    let activity = &g["current"]["factors"]["activity"];
    assert_eq!(
        (
            &activity["offers"],
            &activity["accepted"],
            &activity["parts_finished"],
            &activity["delivered"],
            &activity["cancelled_by_vendor"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(1), &json!(0))
    );
    assert!((activity["price_ratio"].as_f64().unwrap() - 0.8).abs() < 1e-9);
    // Slow: 2 offers, none accepted (acceptance 0), the rejection answered at once (speed
    // 100), nothing sold or finished (neutral 50): (25·100 + 20·0 + 20·50 + 25·50 + 10·50) / 100.
    let s = t.get_json(&format!("/api/v1/vendors/{slow}/score")).await;
    assert_eq!(s["current"]["score"], 53, "{s}");
    assert_eq!(s["current"]["grade"], "D");
    assert_eq!(s["current"]["needs_attention"], true);
    assert_eq!(s["current"]["factors"]["activity"]["offers"], 2);
    assert_eq!(s["current"]["factors"]["activity"]["accepted"], 0);
    let factors = s["current"]["factors"]["factors"].as_array().unwrap();
    let points = |name: &str| {
        factors.iter().find(|f| f["factor"] == name).unwrap()["points"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        (points("response_speed"), points("acceptance_rate")),
        (100, 0)
    );
    // The untried vendor stays at 50; the history holds one row per vendor.
    let p = t.get_json(&format!("/api/v1/vendors/{pricey}/score")).await;
    assert_eq!(
        (
            p["current"]["score"].as_i64(),
            p["current"]["grade"].as_str()
        ),
        (Some(50), Some("D"))
    );
    assert_eq!(t.count("vendor_scores").await, 3);
    assert_eq!(
        (
            db_score(&t, good).await,
            db_score(&t, slow).await,
            db_score(&t, pricey).await
        ),
        (100, 53, 50)
    );
    // Routing reads the score as reliability.
    assert_eq!(reliability(&t.get_json(&path).await, slow), 53);

    // A retried run at the same instant writes no second row; an hour later adds history.
    khaacho::fulfilment::scores::score_vendors(&t.app, now)
        .await
        .unwrap();
    assert_eq!(t.count("vendor_scores").await, 3);
    khaacho::fulfilment::scores::score_vendors(&t.app, now + HOUR)
        .await
        .unwrap();
    assert_eq!(t.count("vendor_scores").await, 6);
    let g = t.get_json(&format!("/api/v1/vendors/{good}/score")).await;
    assert_eq!(g["history"].as_array().unwrap().len(), 1);
    assert_eq!(g["history"][0]["score"], 100);
    // Thirty days later the window is empty: back to the neutral 50.
    khaacho::fulfilment::scores::score_vendors(&t.app, now + 31 * 24 * HOUR)
        .await
        .unwrap();
    assert_eq!(db_score(&t, good).await, 50);
    assert_eq!(db_score(&t, slow).await, 50);

    // Who may read a score: a vendor its own only; a retailer none.
    let as_good = t.client_as(Role::Vendor, Some(good));
    let r = as_good
        .get(t.url(&format!("/api/v1/vendors/{good}/score")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = as_good
        .get(t.url(&format!("/api/v1/vendors/{slow}/score")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    let r = t
        .client_as(Role::Retailer, Some(retailer))
        .get(t.url(&format!("/api/v1/vendors/{good}/score")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    // A vendor never scored has no score yet.
    let fresh = vendor(&t, "Brand New", 4).await;
    assert_problem(t.get(&format!("/api/v1/vendors/{fresh}/score")).await, 404).await;
}

async fn price_alerts(t: &TestApp, product: &str) -> Vec<Value> {
    let v = t
        .get_json(&format!(
            "/api/v1/alerts?all=true&kind=price_change&subject_id={product}"
        ))
        .await;
    v["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn price_snapshots_hold_the_statistics_and_an_abnormal_change_alerts_once() {
    let t = TestApp::spawn().await;
    world(&t).await;
    let (a, b, c) = (
        vendor(&t, "A", 1).await,
        vendor(&t, "B", 2).await,
        vendor(&t, "C", 3).await,
    );
    offer(&t, a, "CHINI-1", 100.0, 100.0).await;
    offer(&t, b, "CHINI-1", 120.0, 100.0).await;
    offer(&t, c, "CHINI-1", 200.0, 100.0).await;
    offer(&t, a, "TEL-1", 200.0, 100.0).await;
    let sugar = t.get_json("/api/v1/products/CHINI-1").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let snap = |now: i64| {
        let app = t.app.clone();
        async move {
            khaacho::catalog::intelligence::snapshot_prices(&app, now)
                .await
                .unwrap()
        }
    };
    let now = t.app.clock().now_ms();
    assert_eq!(snap(now).await, 2, "both products have offers");
    let h = t.get_json("/api/v1/products/CHINI-1/price-history").await;
    let first = &h["items"][0];
    assert_eq!(
        (
            first["average_npr"].as_f64(),
            first["min_npr"].as_f64(),
            first["max_npr"].as_f64(),
            first["median_npr"].as_f64()
        ),
        (Some(140.0), Some(100.0), Some(200.0), Some(120.0)),
        "{h}"
    );
    assert_eq!(first["change_30d_pct"], 0.0);
    assert_eq!(first["trend"], "stable");
    assert!(price_alerts(&t, &sugar).await.is_empty());

    // A raises sugar to 220: the average goes from 140 to 180, +28.6%: medium → warning.
    offer(&t, a, "CHINI-1", 220.0, 100.0).await;
    let later = now + HOUR;
    snap(later).await;
    let alerts = price_alerts(&t, &sugar).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        (
            alerts[0]["severity"].as_str(),
            alerts[0]["subject"].as_str()
        ),
        (Some("warning"), Some("product"))
    );
    assert_eq!(alerts[0]["detail"]["change_severity"], "medium");
    // Within 24 h of an open alert nothing is raised again.
    snap(later + 2 * HOUR).await;
    snap(later + 23 * HOUR).await;
    assert_eq!(price_alerts(&t, &sugar).await.len(), 1);
    // A bigger change is another severity: A at 400 → average 240, +71%: critical.
    offer(&t, a, "CHINI-1", 400.0, 100.0).await;
    snap(later + 23 * HOUR + MINUTE).await;
    let alerts = price_alerts(&t, &sugar).await;
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["severity"], "critical");
    // More than 24 h after the critical one (still open, still critical): raised again.
    snap(later + 48 * HOUR).await;
    assert_eq!(price_alerts(&t, &sugar).await.len(), 3);

    // Newest first, paged; a retried run at the same instant writes nothing twice.
    snap(later + 48 * HOUR).await;
    let all = t
        .get_json("/api/v1/products/CHINI-1/price-history?limit=200")
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 6);
    assert_eq!(all["next_cursor"], Value::Null);
    assert_eq!(all["items"][0]["average_npr"].as_f64(), Some(240.0));
    assert_eq!(all["items"][5]["average_npr"].as_f64(), Some(140.0));
    let p1 = t
        .get_json("/api/v1/products/CHINI-1/price-history?limit=4")
        .await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 4);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = t
        .get_json(&format!(
            "/api/v1/products/CHINI-1/price-history?limit=4&cursor={cursor}"
        ))
        .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 2);
    assert_eq!(p2["items"][1], all["items"][5]);
    assert_eq!(p2["next_cursor"], Value::Null);
    // Bad parameters are problems; an unknown product is not found.
    for q in ["limit=0", "cursor=nope", "surprise=1"] {
        assert_problem(
            t.get(&format!("/api/v1/products/CHINI-1/price-history?{q}"))
                .await,
            400,
        )
        .await;
    }
    assert_problem(t.get("/api/v1/products/NOPE-1/price-history").await, 404).await;
    // Every role reads it.
    let r = t
        .client_as(Role::Vendor, Some(b))
        .get(t.url("/api/v1/products/CHINI-1/price-history"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
