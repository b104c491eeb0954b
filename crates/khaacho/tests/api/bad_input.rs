//! Every bad request gets a clear 4xx problem and writes nothing.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};

async fn assert_nothing_written(t: &TestApp) {
    assert_eq!(t.count("orders").await, 0);
    assert_eq!(t.count("order_lines").await, 0);
    assert_eq!(t.count("jobs").await, 0);
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_refused() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let url = t.url("/api/v1/orders");
    let r = t
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"retailer_id\": ")
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("malformed JSON"));
    let r = t
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(r, 415).await;
    let r = t.client.post(&url).body("{}").send().await.unwrap();
    assert_problem(r, 415).await;
    let r = t
        .post_json(
            "/api/v1/orders",
            &json!({ "retailer_id": "not-a-uuid", "lines": [] }),
        )
        .await;
    assert_problem(r, 422).await;
    let r = t.post_json("/api/v1/orders", &json!({ "lines": [] })).await;
    assert_problem(r, 422).await;
    let r = t
        .post_json(
            "/api/v1/orders",
            &json!({ "retailer_id": uuid::Uuid::now_v7(), "lines": [], "surprise": 1 }),
        )
        .await;
    assert_problem(r, 422).await;
    assert_nothing_written(&t).await;
}

#[tokio::test]
async fn bad_lines_are_each_named() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let products = t.get_json("/api/v1/products?limit=200").await;
    let counted = products["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["unit"] == "packet")
        .unwrap()["sku"]
        .clone();
    let by_kg = products["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["unit"] == "kg")
        .unwrap()["sku"]
        .clone();
    let lines = json!([
        { "sku": "NO-SUCH-SKU", "qty": 1, "unit": "kg" },
        { "sku": counted, "qty": 0, "unit": "packet" },
        { "sku": counted, "qty": -3, "unit": "piece" },
        { "sku": counted, "qty": 1.5, "unit": "bottle" },
        { "sku": by_kg, "qty": 1_000_000, "unit": "kg" },
        { "sku": by_kg, "qty": 2, "unit": "litre" },
        { "sku": by_kg, "qty": 2, "unit": "tonne" },
        { "sku": by_kg, "qty": "two", "unit": "g" },
        { "sku": by_kg, "qty": 1.0001, "unit": "kg" },
        { "sku": "bad sku!", "qty": 1, "unit": "kg" },
    ]);
    let r = t
        .post_json(
            "/api/v1/orders",
            &json!({ "retailer_id": retailer, "lines": lines }),
        )
        .await;
    let p = assert_problem(r, 422).await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "lines[0].sku",
            "lines[1].qty",
            "lines[2].qty",
            "lines[3].qty",
            "lines[4].qty",
            "lines[5].unit",
            "lines[6].unit",
            "lines[7].qty",
            "lines[8].qty",
            "lines[9].sku"
        ]
    );
    let msg = |i: usize| p["errors"][i]["message"].as_str().unwrap().to_string();
    assert!(msg(0).contains("unknown SKU"));
    assert!(msg(1).contains("greater than zero"));
    assert!(msg(3).contains("whole number"));
    assert!(msg(4).contains("at most"));
    let r = t.post_json("/api/v1/orders", &json!({ "retailer_id": uuid::Uuid::now_v7(), "lines": [{ "sku": by_kg, "qty": 1, "unit": "kg" }] })).await;
    let p = assert_problem(r, 422).await;
    assert_eq!(p["errors"][0]["field"], "retailer_id");
    assert_nothing_written(&t).await;
}

#[tokio::test]
async fn huge_orders_and_bodies_are_refused() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let line = json!({ "sku": "RICE-JEERA-25", "qty": 1, "unit": "kg" });
    let lines: Vec<Value> = (0..10_000).map(|_| line.clone()).collect();
    let r = t
        .post_json(
            "/api/v1/orders",
            &json!({ "retailer_id": retailer, "lines": lines }),
        )
        .await;
    let status = r.status().as_u16();
    assert!(status == 413 || status == 422, "10,000 lines: {status}");
    assert_problem(r, status).await;
    let big = format!(
        "{{\"retailer_id\":\"{retailer}\",\"note\":\"{}\",\"lines\":[]}}",
        "x".repeat(10 * 1024 * 1024)
    );
    let r = t
        .client
        .post(t.url("/api/v1/orders"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(r, 413).await;
    let r = t
        .post_json(
            "/api/v1/orders",
            &json!({ "retailer_id": retailer, "lines": [] }),
        )
        .await;
    assert_problem(r, 422).await;
    let r = t
        .post_json(
            "/api/v1/orders",
            &json!({ "retailer_id": retailer, "lines": [line, line] }),
        )
        .await;
    let p = assert_problem(r, 422).await;
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("appear twice")
    );
    assert_nothing_written(&t).await;
}
