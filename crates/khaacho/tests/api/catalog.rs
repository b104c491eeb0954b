//! Catalogue import/export, products, offers, retailers and vendors.

use serde_json::json;

use crate::helpers::{TestApp, assert_problem, audit_rows};

const HEADER: &str = "sku,name,aliases,unit,pack_size,price_npr,category";

#[tokio::test]
async fn catalog_csv_round_trips_and_bad_rows_write_nothing() {
    let t = TestApp::spawn().await;
    let csv = format!(
        "{HEADER}\nCHINI-1,Sugar,chini|चिनी|cheeni,kg,50,95.5,sugar_salt\nWAI-75,Wai Wai,wai wai|वाइवाइ,packet,30,20,noodles\n"
    );
    let import = |body: String| {
        t.client
            .post(t.url("/api/v1/catalog/import"))
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    let r = import(csv.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["imported"], 2);
    let exported = t.get("/api/v1/catalog/export").await;
    assert!(
        exported.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = exported.text().await.unwrap();
    assert_eq!(
        text,
        format!(
            "{HEADER}\nCHINI-1,Sugar,chini|चिनी|cheeni,kg,50,95.50,sugar_salt\nWAI-75,Wai Wai,wai wai|वाइवाइ,packet,30,20.00,noodles\n"
        )
    );
    // Importing the export again changes nothing.
    assert_eq!(import(text.clone()).await.unwrap().status(), 200);
    assert_eq!(
        t.get("/api/v1/catalog/export").await.text().await.unwrap(),
        text
    );

    let bad = format!("{HEADER}\nNEW-1,New,,kg,,10,other\nBAD SKU,,x,tonne,-1,free,\n");
    let p = assert_problem(import(bad).await.unwrap(), 422).await;
    assert!(p["errors"].as_array().unwrap().len() >= 5);
    assert_eq!(p["errors"][0]["field"], "row 3.sku");
    assert_problem(t.get("/api/v1/products/NEW-1").await, 404).await;
    assert_problem(import("a,b\n1,2\n".into()).await.unwrap(), 422).await;
    let r = t
        .client
        .post(t.url("/api/v1/catalog/import"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(r, 415).await;

    let product = t.get_json("/api/v1/products/CHINI-1").await;
    assert_eq!(product["aliases"], json!(["chini", "चिनी", "cheeni"]));
    assert_eq!(product["pack_size"], 50.0);
    assert_eq!(product["list_price_npr"], 95.5);
    assert_eq!(product["offers"], json!([]));
}

#[tokio::test]
async fn demo_seed_is_rich_and_idempotent() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let counts = (
        t.count("products").await,
        t.count("vendors").await,
        t.count("retailers").await,
        t.count("offers").await,
    );
    assert!(
        counts.0 >= 150 && counts.1 >= 8 && counts.2 >= 50 && counts.3 > counts.0,
        "{counts:?}"
    );
    t.seed().await;
    let again = (
        t.count("products").await,
        t.count("vendors").await,
        t.count("retailers").await,
        t.count("offers").await,
    );
    assert_eq!(counts, again);
    let page = t.get_json("/api/v1/products?limit=200").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 200);
    let next = page["next_cursor"].as_str().unwrap();
    let rest = t.get_json(&format!("/api/v1/products?cursor={next}")).await;
    assert_eq!(
        rest["items"].as_array().unwrap().len() as i64,
        counts.0 - 200
    );
    let rice = t.get_json("/api/v1/products/RICE-JEERA-25").await;
    let offer = &rice["offers"][0];
    assert!(
        offer["tiers"].as_array().unwrap().len() == 2 && offer["stock"].as_f64().unwrap() > 0.0
    );
    let vendors = t.get_json("/api/v1/vendors?limit=200").await;
    let districts: std::collections::HashSet<_> = vendors["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| {
            v["districts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().to_string())
        })
        .collect();
    assert!(
        districts.contains("Kathmandu")
            && districts.contains("Lalitpur")
            && districts.contains("Bhaktapur")
    );
}

#[tokio::test]
async fn offers_keep_price_history_and_validate_input() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let vendor = t.get_json("/api/v1/vendors?limit=1").await["items"][0]["id"].clone();
    let put = |body: serde_json::Value| t.client.put(t.url("/api/v1/offers")).json(&body).send();
    let offer =
        json!({ "vendor_id": vendor, "sku": "RICE-JEERA-25", "price_npr": 99.5, "stock": 100 });
    assert_eq!(put(offer.clone()).await.unwrap().status(), 200);
    let history = t.count("price_history").await;
    assert_eq!(put(offer.clone()).await.unwrap().status(), 200);
    assert_eq!(
        t.count("price_history").await,
        history,
        "same price: no new history row"
    );
    let mut cheaper = offer.clone();
    cheaper["price_npr"] = json!(97);
    assert_eq!(put(cheaper).await.unwrap().status(), 200);
    assert_eq!(t.count("price_history").await, history + 1);
    let bad = json!({ "vendor_id": uuid::Uuid::now_v7(), "sku": "NOPE", "price_npr": -1, "stock": -5,
        "tiers": [{ "min_qty": 0, "price_npr": 1 }], "valid_to": "tomorrow" });
    let p = assert_problem(put(bad).await.unwrap(), 422).await;
    let fields: Vec<_> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["price_npr", "stock", "tiers[0]", "valid_to", "sku"]
    );
    let unknown_vendor = json!({ "vendor_id": uuid::Uuid::now_v7(), "sku": "RICE-JEERA-25", "price_npr": 1, "stock": 1 });
    let p = assert_problem(put(unknown_vendor).await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["field"], "vendor_id");
}

#[tokio::test]
async fn retailers_and_vendors_are_registered_with_checks() {
    let t = TestApp::spawn().await;
    let r = t
        .post_json(
            "/api/v1/retailers",
            &json!({ "name": "Gita Kirana", "phone": "+9779800000001", "district": "Lalitpur" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    let got = t
        .get_json(&format!(
            "/api/v1/retailers/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(got["name"], "Gita Kirana");
    let dup = t
        .post_json(
            "/api/v1/retailers",
            &json!({ "name": "Other", "phone": "+9779800000001", "district": "Lalitpur" }),
        )
        .await;
    let p = assert_problem(dup, 422).await;
    assert_eq!(p["errors"][0]["field"], "phone");
    let bad = t
        .post_json(
            "/api/v1/retailers",
            &json!({ "name": "", "phone": "98000", "district": "", "lat": 100.0 }),
        )
        .await;
    assert_eq!(
        assert_problem(bad, 422).await["errors"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let v = t
        .post_json(
            "/api/v1/vendors",
            &json!({ "name": "Valley Traders", "phone": "+9779800000002",
        "districts": ["Kathmandu"], "opens": "07:30", "closes": "19:00" }),
        )
        .await;
    assert_eq!(v.status(), 201);
    let v: serde_json::Value = v.json().await.unwrap();
    assert_eq!(
        (
            v["opens_at_min"].as_i64(),
            v["closes_at_min"].as_i64(),
            v["score"].as_i64()
        ),
        (Some(450), Some(1140), Some(50))
    );
    let bad = t.post_json("/api/v1/vendors", &json!({ "name": "X", "phone": "+9779800000003", "districts": [], "opens": "25:00", "closes": "08:00" })).await;
    assert_problem(bad, 422).await;
    assert_problem(
        t.get(&format!("/api/v1/vendors/{}", uuid::Uuid::now_v7()))
            .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn price_intelligence_compares_vendors_and_flags_large_changes() {
    let t = TestApp::spawn().await;
    let csv = format!(
        "{HEADER}\nCHINI-1,Sugar,chini,kg,50,100,sugar_salt\nNUN-1,Salt,nun,kg,,20,sugar_salt\n"
    );
    t.import_catalog(&csv).await;
    let mut vendors = Vec::new();
    for (i, price) in [100.0, 110.0, 130.0].into_iter().enumerate() {
        let v = t
            .post_json(
                "/api/v1/vendors",
                &json!({ "name": format!("Vendor {i}"), "phone": format!("+97798000001{i}"), "districts": ["Kathmandu"] }),
            )
            .await;
        assert_eq!(v.status(), 201);
        let id = v.json::<serde_json::Value>().await.unwrap()["id"].clone();
        let offer = json!({ "vendor_id": id, "sku": "CHINI-1", "price_npr": price, "stock": 100 });
        assert_eq!(
            t.client
                .put(t.url("/api/v1/offers"))
                .json(&offer)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        vendors.push(id);
    }
    // Vendor 0 raises sugar by 25%: a medium alert, and the average rises.
    let raise =
        json!({ "vendor_id": vendors[0], "sku": "CHINI-1", "price_npr": 125, "stock": 100 });
    assert_eq!(
        t.client
            .put(t.url("/api/v1/offers"))
            .json(&raise)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let p = t.get_json("/api/v1/products/CHINI-1/prices").await;
    assert_eq!(p["vendors"], 3);
    assert_eq!(
        (
            &p["average_npr"],
            &p["min_npr"],
            &p["max_npr"],
            &p["median_npr"]
        ),
        (&json!(121.67), &json!(110.0), &json!(130.0), &json!(125.0))
    );
    // (121.67 − 113.33) / 113.33: the same offers asked 100, 110 and 130 when first priced.
    assert_eq!(p["change_30d_pct"], json!(7.36));
    assert_eq!(p["trend"], "rising");
    assert_eq!(p["volatility"], 55); // one change (5) of 25% (50)
    let by_vendor: Vec<(f64, &str)> = p["by_vendor"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["price_npr"].as_f64().unwrap(),
                v["competitiveness"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_vendor,
        [(110.0, "excellent"), (125.0, "excellent"), (130.0, "good")]
    );
    let changes = p["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (
            &changes[0]["old_npr"],
            &changes[0]["new_npr"],
            &changes[0]["change_pct"],
            &changes[0]["alert"]
        ),
        (&json!(100.0), &json!(125.0), &json!(25.0), &json!("medium"))
    );
    // A product nobody offers: no statistics; an unknown one: 404.
    let salt = t.get_json("/api/v1/products/NUN-1/prices").await;
    assert_eq!(
        (
            salt["vendors"].as_u64(),
            &salt["average_npr"],
            &salt["trend"]
        ),
        (Some(0), &json!(null), &json!(null))
    );
    assert_problem(t.get("/api/v1/products/NOPE-1/prices").await, 404).await;
}

#[tokio::test]
async fn vendors_are_updated_by_staff_with_checks_and_an_audit_entry() {
    let t = TestApp::spawn().await;
    let v = t
        .post_json(
            "/api/v1/vendors",
            &json!({ "name": "Valley Traders", "phone": "+9779800000002", "districts": ["Kathmandu"] }),
        )
        .await;
    assert_eq!(v.status(), 201);
    let id = v.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/v1/vendors/{id}");
    let patch = |body: serde_json::Value| t.client.patch(t.url(&path)).json(&body).send();
    let r = patch(
        json!({ "districts": ["Lalitpur", " Kathmandu "], "opens": "07:00", "max_active": 20,
        "lat": 27.68, "lng": 85.32, "active": false }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let got = t.get_json(&path).await;
    assert_eq!(got["districts"], json!(["Lalitpur", "Kathmandu"]));
    assert_eq!(
        (
            got["opens_at_min"].as_i64(),
            got["closes_at_min"].as_i64(),
            got["max_active"].as_i64(),
            got["active"].as_bool()
        ),
        (Some(420), Some(1080), Some(20), Some(false))
    );
    assert_eq!(
        (got["name"].as_str(), got["phone"].as_str()),
        (Some("Valley Traders"), Some("+9779800000002"))
    );

    // Bad changes: each a 422 naming the field, nothing written.
    let p = assert_problem(patch(json!({ "opens": "19:00" })).await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["field"], "closes");
    let p = assert_problem(
        patch(json!({ "districts": [], "max_active": 0, "lat": 91.0 }))
            .await
            .unwrap(),
        422,
    )
    .await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["lat", "districts", "max_active"]);
    assert_problem(patch(json!({ "opens": "7am" })).await.unwrap(), 422).await;
    assert_problem(
        patch(json!({ "phone": "+9779800000009" })).await.unwrap(),
        422,
    )
    .await;
    // Midnight closes only: `24:00` as an opening time is refused like any other bad time.
    let p = assert_problem(patch(json!({ "opens": "24:00" })).await.unwrap(), 422).await;
    assert_eq!(p["errors"][0]["field"], "opens");
    assert_eq!(
        t.get_json(&path).await,
        got,
        "refused changes wrote nothing"
    );
    let unknown = t
        .client
        .patch(t.url(&format!("/api/v1/vendors/{}", uuid::Uuid::now_v7())))
        .json(&json!({ "active": true }))
        .send()
        .await
        .unwrap();
    assert_problem(unknown, 404).await;
    let as_vendor = t.client_as(khaacho::auth::Role::Vendor, Some(id.parse().unwrap()));
    let r = as_vendor
        .patch(t.url(&path))
        .json(&json!({ "active": true }))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;

    // The change is audited with what changed.
    let items = audit_rows(&t, "action=vendor.update").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["entity_id"], id.as_str());
    assert_eq!(items[0]["summary"]["max_active"], 20);
    assert_eq!(items[0]["summary"]["active"], false);
    assert!(
        items[0]["summary"].get("name").is_none(),
        "unchanged fields are not listed"
    );

    // Open around the clock: closing at 24:00, midnight at the end of the day.
    let r = patch(json!({ "opens": "00:00", "closes": "24:00" }))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let all_day = t.get_json(&path).await;
    assert_eq!(
        (
            all_day["opens_at_min"].as_i64(),
            all_day["closes_at_min"].as_i64()
        ),
        (Some(0), Some(1440))
    );
}
