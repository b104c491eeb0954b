//! Routing preview: where an order would go now, on real vendors, offers and stock.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};
use khaacho::auth::Role;

async fn vendor(t: &TestApp, name: &str, phone: &str, district: &str) -> String {
    let r = t
        .post_json(
            "/api/v1/vendors",
            &json!({ "name": name, "phone": phone, "districts": [district], "opens": "00:00", "closes": "23:59" }),
        )
        .await;
    assert_eq!(r.status(), 201, "vendor {name}");
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn offer(t: &TestApp, vendor: &str, sku: &str, price: f64, stock: f64) {
    let r = t
        .client
        .put(t.url("/api/v1/offers"))
        .json(&json!({ "vendor_id": vendor, "sku": sku, "price_npr": price, "stock": stock }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "offer {sku} of {vendor}");
}

fn parts(v: &Value) -> Vec<(String, Vec<u64>)> {
    v["plan"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let lines = p["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_u64().unwrap())
                .collect();
            (p["vendor_id"].as_str().unwrap().to_string(), lines)
        })
        .collect()
}

fn candidate<'a>(v: &'a Value, vendor: &str) -> &'a Value {
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["vendor_id"] == vendor)
        .unwrap()
}

/// Places a cash order of 5 kg sugar (line 1) and 2 l oil (line 2); its id.
async fn place(t: &TestApp, retailer: &str) -> String {
    t.place(&json!({ "retailer_id": retailer, "payment_mode": "cash", "lines": [
        { "sku": "CHINI-1", "qty": 5, "unit": "kg" }, { "sku": "TEL-1", "qty": 2, "unit": "litre" }] }))
        .await
}

#[tokio::test]
async fn routing_prefers_one_vendor_then_the_cheapest_split_and_says_why() {
    let t = TestApp::spawn().await;
    // Noon in Nepal: the vendors (open 00:00–23:59) are all open for the whole test.
    t.clock_to_nepal_minute(720);
    let csv = "sku,name,aliases,unit,pack_size,price_npr,category\n\
               CHINI-1,Sugar,chini,kg,50,100,sugar_salt\nTEL-1,Oil,tel,litre,,200,oil\n";
    t.import_catalog(csv).await;
    let r = t
        .post_json(
            "/api/v1/retailers",
            &json!({ "name": "Gita Kirana", "phone": "+9779800000001", "district": "Kathmandu" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let retailer = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = vendor(&t, "All-in-one", "+9779800000011", "Kathmandu").await;
    let b = vendor(&t, "Sugar House", "+9779800000012", "Kathmandu").await;
    let c = vendor(&t, "Oil Depot", "+9779800000013", "Kathmandu").await;
    let far = vendor(&t, "Pokhara Traders", "+9779800000014", "Kaski").await;
    offer(&t, &a, "CHINI-1", 100.0, 50.0).await;
    offer(&t, &a, "TEL-1", 200.0, 50.0).await;
    offer(&t, &b, "CHINI-1", 90.0, 50.0).await;
    offer(&t, &c, "TEL-1", 250.0, 50.0).await;
    offer(&t, &far, "CHINI-1", 50.0, 500.0).await;
    let id = place(&t, &retailer).await;
    t.run_jobs().await;
    let path = format!("/api/v1/orders/{id}/routing");

    // One vendor has everything: it gets the whole order, although B + C would be cheaper
    // for sugar.
    let v = t.get_json(&path).await;
    assert_eq!(parts(&v), [(a.clone(), vec![1, 2])]);
    assert_eq!(v["plan"]["goods_npr"], 900.0);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("supplies all 2 lines"),
        "{}",
        v["reason"]
    );
    let components: Vec<&str> = v["plan"]["parts"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        components,
        [
            "availability",
            "proximity",
            "workload",
            "price",
            "reliability"
        ]
    );
    assert_eq!(candidate(&v, &b)["eligible_lines"], json!([1]));
    assert_eq!(
        candidate(&v, &b)["ineligible"],
        json!([{ "line_no": 2, "reasons": ["no_offer"] }])
    );
    assert_eq!(
        candidate(&v, &far)["ineligible"][0],
        json!({ "line_no": 1, "reasons": ["out_of_area"] })
    );
    assert_eq!(candidate(&v, &far)["score"], Value::Null);

    // A runs short of oil: no vendor has everything, so the least-cost split: sugar from B
    // (NPR 450) and oil from C (NPR 500), plus NPR 200 for the second vendor.
    offer(&t, &a, "TEL-1", 200.0, 1.0).await;
    let v = t.get_json(&path).await;
    assert_eq!(parts(&v), [(b.clone(), vec![1]), (c.clone(), vec![2])]);
    assert_eq!(
        (
            v["plan"]["goods_npr"].as_f64(),
            v["plan"]["penalty_npr"].as_f64()
        ),
        (Some(950.0), Some(200.0))
    );
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("split across 2 vendors"),
        "{}",
        v["reason"]
    );
    assert_eq!(
        candidate(&v, &a)["ineligible"],
        json!([{ "line_no": 2, "reasons": ["short_stock"] }])
    );

    // Nobody has oil: no plan, and the line is named.
    offer(&t, &c, "TEL-1", 250.0, 0.0).await;
    let v = t.get_json(&path).await;
    assert_eq!(v["plan"], Value::Null);
    assert_eq!(v["uncovered"], json!([2]));
    assert_eq!(v["reason"], "no eligible vendor for line 2");

    // Staff only; unknown orders are 404.
    let retailer_client = t.client_as(Role::Retailer, Some(retailer.parse().unwrap()));
    let r = retailer_client.get(t.url(&path)).send().await.unwrap();
    assert_problem(r, 403).await;
    let r = t
        .get(&format!("/api/v1/orders/{}/routing", uuid::Uuid::now_v7()))
        .await;
    assert_problem(r, 404).await;
}

/// Working hours give way line by line: a vendor open now keeps the lines it carries, and a
/// line that only a closed vendor carries goes to that vendor (it answers when it opens)
/// instead of the whole order waiting for an operator.
#[tokio::test]
async fn a_line_no_open_vendor_carries_goes_to_a_closed_one() {
    let t = TestApp::spawn().await;
    let retailer = crate::fulfilment::world(&t).await.to_string();
    // The clock moves on to 10:00 Nepal time (UTC+05:45): the late shop is open (00:00–23:59),
    // the day shop is not (12:00–18:00).
    t.clock_to_nepal_minute(600);
    let mut ids = Vec::new();
    for (name, phone, opens, closes) in [
        ("Late Shop", "+9779800000011", "00:00", "23:59"),
        ("Day Shop", "+9779800000012", "12:00", "18:00"),
    ] {
        let r = t
            .post_json(
                "/api/v1/vendors",
                &json!({ "name": name, "phone": phone, "districts": ["Kathmandu"], "opens": opens, "closes": closes }),
            )
            .await;
        assert_eq!(r.status(), 201, "vendor {name}");
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (late, day) = (ids[0].clone(), ids[1].clone());
    offer(&t, &late, "CHINI-1", 100.0, 50.0).await;
    offer(&t, &day, "CHINI-1", 90.0, 50.0).await;
    offer(&t, &day, "TEL-1", 200.0, 50.0).await;
    let id = place(&t, &retailer).await;
    t.run_jobs().await;

    let v = t.get_json(&format!("/api/v1/orders/{id}/routing")).await;
    assert_eq!(parts(&v), [(late.clone(), vec![1]), (day.clone(), vec![2])]);
    assert_eq!(v["hours_relaxed"], json!([2]));
    assert_eq!(
        candidate(&v, &day)["ineligible"],
        json!([{ "line_no": 1, "reasons": ["closed"] }])
    );
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("no vendor open now may supply line 2"),
        "{reason}"
    );
    // The order went to both vendors rather than on hold.
    let order = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(order["status"], "routed", "{order}");
}
