//! Notifications of order changes, black-box on both backends: an order's life writes the
//! right messages to the retailer and the vendor, in the language of each one's conversation,
//! exactly once even when the `order.changed` consumer runs again over the same changes.

use khaacho::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::channels::{say_as, spawn};
use crate::fulfilment::{far_vendor, offer, place, vendor, world};
use crate::helpers::TestApp;

const RETAILER_PHONE: &str = "+9779800000001";
const VENDOR_PHONE: &str = "+9779800000101";

/// The outbox to `phone`, oldest first: `(template, language, channel, body)`.
async fn outbox(t: &TestApp, phone: &str) -> Vec<(String, String, String, String)> {
    crate::channels::messages(t, phone)
        .await
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("template"), s("language"), s("channel"), s("body"))
        })
        .collect()
}

fn templates(items: &[(String, String, String, String)]) -> Vec<&str> {
    items.iter().map(|m| m.0.as_str()).collect()
}

/// The reference of an id in messages (last six hex digits, upper-case).
fn reference(id: &str) -> String {
    id.replace('-', "")[26..].to_uppercase()
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

/// Runs the `order.changed` consumer again over every change the order went through, as a
/// retried batch would.
async fn rerun_changes(t: &TestApp, order_id: &str) {
    let id: Uuid = order_id.parse().unwrap();
    let events: Vec<(Uuid, Option<String>, String)> = khaacho::with_latest!(t.app.db(), c =>
        sqlx::query_as("SELECT id, from_status, to_status FROM order_events WHERE order_id = $1 ORDER BY id")
            .bind(id).fetch_all(c).await)
    .unwrap();
    assert!(events.len() >= 4, "{events:?}");
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
    // It succeeded (a completed job is gone), rather than failing on a duplicate.
    let left: i64 = khaacho::with_latest!(t.app.db(), c =>
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'order.changed'").fetch_one(c).await)
    .unwrap();
    assert_eq!(left, 0, "the rerun order.changed completed");
}

#[tokio::test]
async fn an_orders_life_tells_the_retailer_and_the_vendor_once_each() {
    let t = TestApp::spawn().await;
    let retailer = world(&t).await;
    let v = vendor(&t, "Bhandari Traders", 1).await;
    offer(&t, v, "CHINI-1", 100.0, 50.0).await;
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(o["status"], "routed", "{o}");
    let part = o["fulfilments"][0]["id"].as_str().unwrap().to_string();
    let order_ref = reference(&id);
    let part_ref = reference(&part);

    // Confirmed to the retailer (English: it never wrote), offered to the vendor.
    let r = outbox(&t, RETAILER_PHONE).await;
    assert_eq!(templates(&r), ["order_confirmed"], "{r:?}");
    assert_eq!(
        r[0].3,
        format!(
            "Your order {order_ref} is confirmed (NPR 565.00). We are sending it to vendors now."
        )
    );
    assert_eq!((r[0].1.as_str(), r[0].2.as_str()), ("en", "whatsapp"));
    let m = outbox(&t, VENDOR_PHONE).await;
    assert_eq!(templates(&m), ["vendor_offer"], "{m:?}");
    let body = &m[0].3;
    assert!(
        body.starts_with(&format!(
            "New order {part_ref} for Gita Kirana, Kathmandu:\n- 5 kg Sugar\n"
        )),
        "{body}"
    );
    assert!(body.contains("\nTotal: NPR 565.00\n"), "{body}");
    assert!(
        body.contains(&format!(
            "Reply ACCEPT {part_ref} to take it, or REJECT {part_ref} <reason> to refuse it."
        )),
        "{body}"
    );
    // The deadline as a person reads it, in Nepal time.
    let deadline = o["fulfilments"][0]["deadline"].as_str().unwrap();
    let deadline = chrono::DateTime::parse_from_rfc3339(deadline)
        .unwrap()
        .timestamp_millis();
    let by = khaacho::base::time::fmt_short(deadline);
    assert!(body.contains(&format!("Please answer by {by}. ")), "{body}");

    // Its life: accepted, dispatched, delivered with the request to confirm receipt.
    act(&t, v, &part, "accept").await;
    act(&t, v, &part, "dispatch").await;
    act(&t, v, &part, "deliver").await;
    let r = outbox(&t, RETAILER_PHONE).await;
    assert_eq!(
        templates(&r),
        [
            "order_confirmed",
            "order_accepted",
            "order_dispatched",
            "order_delivered"
        ]
    );
    assert_eq!(
        r[3].3,
        format!(
            "Your order {order_ref} is delivered. Please reply RECEIVED {order_ref} to confirm, or ISSUE {order_ref} <what is wrong>."
        )
    );
    assert_eq!(outbox(&t, VENDOR_PHONE).await.len(), 1);

    // A retried consumer over the same changes writes nothing twice.
    let before = t.count("outbound_messages").await;
    rerun_changes(&t, &id).await;
    assert_eq!(t.count("outbound_messages").await, before);
    assert_eq!(outbox(&t, RETAILER_PHONE).await.len(), 4);
    assert_eq!(outbox(&t, VENDOR_PHONE).await.len(), 1);
}

#[tokio::test]
async fn a_cancellation_tells_the_retailer_in_its_language_and_the_vendor_in_its_own() {
    let t = spawn().await;
    let retailer = world(&t).await;
    let v = vendor(&t, "Bhandari Traders", 1).await;
    offer(&t, v, "CHINI-1", 100.0, 50.0).await;
    // The retailer writes in Devanagari, so its messages are in Nepali; the vendor never wrote.
    say_as(&t, "SMnp1", RETAILER_PHONE, "नमस्ते").await;
    t.run_jobs().await;
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    let part = o["fulfilments"][0]["id"].as_str().unwrap().to_string();
    let r = t
        .client_as(Role::Retailer, Some(retailer))
        .post(t.url(&format!("/api/v1/orders/{id}/cancel")))
        .json(&json!({ "reason": "changed my mind" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.run_jobs().await;

    let order_ref = reference(&id);
    let r = outbox(&t, RETAILER_PHONE).await;
    assert_eq!(
        templates(&r),
        ["greeting", "order_confirmed", "order_cancelled"],
        "{r:?}"
    );
    assert_eq!(r[1].1, "ne");
    assert!(
        r[1].3
            .starts_with(&format!("तपाईंको अर्डर {order_ref} पक्का भयो")),
        "{r:?}"
    );
    assert_eq!(
        r[2].3,
        format!("तपाईंको अर्डर {order_ref} रद्द भयो: changed my mind")
    );
    let m = outbox(&t, VENDOR_PHONE).await;
    assert_eq!(templates(&m), ["vendor_offer", "vendor_part_cancelled"]);
    assert_eq!(m[1].1, "en");
    assert_eq!(
        m[1].3,
        format!(
            "Order {} is cancelled, please do not send it: changed my mind",
            reference(&part)
        )
    );

    let before = t.count("outbound_messages").await;
    rerun_changes(&t, &id).await;
    assert_eq!(t.count("outbound_messages").await, before);
}

async fn patch(
    t: &TestApp,
    role: Role,
    tenant: Option<Uuid>,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = t
        .client_as(role, tenant)
        .patch(t.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_party_language_setting_wins_and_a_moved_offer_tells_the_next_vendor() {
    let t = spawn().await;
    let retailer = world(&t).await;
    let first = vendor(&t, "Bhandari Traders", 1).await;
    let second = vendor(&t, "Shrestha Suppliers", 2).await;
    offer(&t, first, "CHINI-1", 100.0, 50.0).await;
    offer(&t, second, "CHINI-1", 104.0, 50.0).await;

    // Each party sets its own language; only its language, only its own record.
    let retailer_path = format!("/api/v1/retailers/{retailer}");
    let (status, body) = patch(
        &t,
        Role::Retailer,
        Some(retailer),
        &retailer_path,
        json!({ "language": "ne" }),
    )
    .await;
    assert_eq!(
        (status, body["language"].as_str()),
        (200, Some("ne")),
        "{body}"
    );
    let (status, body) = patch(
        &t,
        Role::Retailer,
        Some(retailer),
        &retailer_path,
        json!({ "name": "Other" }),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = patch(
        &t,
        Role::Retailer,
        Some(retailer),
        &retailer_path,
        json!({ "language": "fr" }),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "language", "{body}");
    let (status, _) = patch(
        &t,
        Role::Retailer,
        Some(Uuid::now_v7()),
        &retailer_path,
        json!({ "language": "en" }),
    )
    .await;
    assert_eq!(status, 404, "another retailer's record is not found");
    let (status, body) = patch(
        &t,
        Role::Vendor,
        Some(second),
        &format!("/api/v1/vendors/{second}"),
        json!({ "language": "ne" }),
    )
    .await;
    assert_eq!(
        (status, body["language"].as_str()),
        (200, Some("ne")),
        "{body}"
    );
    let (status, _) = patch(
        &t,
        Role::Vendor,
        Some(second),
        &format!("/api/v1/vendors/{first}"),
        json!({ "language": "ne" }),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = patch(
        &t,
        Role::Vendor,
        Some(second),
        &format!("/api/v1/vendors/{second}"),
        json!({ "max_active": 99 }),
    )
    .await;
    assert_eq!(status, 403);

    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    let part = o["fulfilments"][0]["id"].as_str().unwrap().to_string();
    // The retailer never wrote, yet its setting makes its messages Nepali.
    let r = outbox(&t, RETAILER_PHONE).await;
    assert_eq!(templates(&r), ["order_confirmed"], "{r:?}");
    assert_eq!(r[0].1, "ne", "{r:?}");

    // The cheaper vendor refuses: the part moves to the next one, who hears of it in Nepali.
    let r = t
        .client_as(Role::Vendor, Some(first))
        .post(t.url(&format!("/api/v1/fulfilments/{part}/reject")))
        .json(&json!({ "reason": "out of stock" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.run_jobs().await;
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(o["fulfilments"][0]["vendor_id"], second.to_string(), "{o}");
    let m = outbox(&t, "+9779800000102").await;
    assert_eq!(templates(&m), ["vendor_offer"], "{m:?}");
    assert_eq!(m[0].1, "ne");
    assert!(m[0].3.contains(&reference(&part)), "{m:?}");
    // The move is on the order's timeline, and the retailer heard nothing of it.
    let events = t.get_json(&format!("/api/v1/orders/{id}")).await;
    let reasons: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"offer_reassigned"), "{events}");
    assert_eq!(outbox(&t, RETAILER_PHONE).await.len(), 1);

    // A rerun of every change writes nothing twice.
    let before = t.count("outbound_messages").await;
    rerun_changes(&t, &id).await;
    assert_eq!(t.count("outbound_messages").await, before);
}

/// A held order tells its retailer why in words of its language, not the code the order
/// carries.
#[tokio::test]
async fn a_held_order_tells_the_retailer_why_in_its_words() {
    let t = spawn().await;
    let retailer = world(&t).await;
    // Its one vendor serves another district: priced, but routing finds nobody to send it to.
    let far = far_vendor(&t).await;
    offer(&t, far, "CHINI-1", 90.0, 50.0).await;
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(
        (o["status"].as_str(), o["hold_reason"].as_str()),
        (Some("on_hold"), Some("vendor_unavailable")),
        "{o}"
    );
    let r = outbox(&t, RETAILER_PHONE).await;
    assert_eq!(templates(&r), ["order_confirmed", "order_on_hold"], "{r:?}");
    assert_eq!(
        r[1].3,
        format!(
            "Your order {} is on hold: no vendor can take it right now. Our team will look at it soon.",
            reference(&id)
        )
    );

    // The same in Nepali once the retailer asks for it.
    let path = format!("/api/v1/retailers/{retailer}");
    let (status, _) = patch(
        &t,
        Role::Retailer,
        Some(retailer),
        &path,
        json!({ "language": "ne" }),
    )
    .await;
    assert_eq!(status, 200);
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 2, "unit": "kg" }]),
    )
    .await;
    let r = outbox(&t, RETAILER_PHONE).await;
    let held: Vec<&str> = r
        .iter()
        .filter(|m| m.0 == "order_on_hold" && m.3.contains(&reference(&id)))
        .map(|m| m.3.as_str())
        .collect();
    assert_eq!(held.len(), 1, "{r:?}");
    assert!(held[0].contains("अहिले कुनै विक्रेताले लिन सकेनन्"), "{}", held[0]);
    assert!(!held[0].contains("vendor_unavailable"), "{}", held[0]);
}

/// "As you asked" is said only to a retailer that cancelled its own order without words; an
/// operator's cancellation is not passed off as the retailer's.
#[tokio::test]
async fn only_the_retailers_own_cancellation_reads_as_you_asked() {
    let t = spawn().await;
    let retailer = world(&t).await;
    let v = vendor(&t, "Bhandari Traders", 1).await;
    offer(&t, v, "CHINI-1", 100.0, 50.0).await;
    let sugar = json!([{ "sku": "CHINI-1", "qty": 2, "unit": "kg" }]);
    let cancelled = async |client: &reqwest::Client| {
        let id = place(&t, retailer, sugar.clone()).await;
        let r = client
            .post(t.url(&format!("/api/v1/orders/{id}/cancel")))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        t.run_jobs().await;
        outbox(&t, RETAILER_PHONE)
            .await
            .into_iter()
            .find(|m| m.0 == "order_cancelled" && m.3.contains(&reference(&id)))
            .unwrap()
            .3
    };
    let own = cancelled(&t.client_as(Role::Retailer, Some(retailer))).await;
    assert!(own.ends_with("is cancelled: as you asked"), "{own}");
    let staff = cancelled(&t.client).await;
    assert!(!staff.contains("as you asked"), "{staff}");
}
