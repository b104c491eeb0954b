//! WhatsApp/SMS conversations, black-box on both backends: signed Twilio webhooks (stored
//! once per MessageSid, answered at once), who is writing, ordering in three scripts with
//! clarifications and YES, drafts expiring on the app's clock, status questions, vendors
//! answering offers by message, unknown numbers, and the outbox sender against a mock
//! Twilio (throttle, retry schedule to dead, late status callbacks, no double sends).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use khaacho::auth::Role;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::fulfilment::{offer, place, vendor, world};
use crate::helpers::{TestApp, assert_problem, audit_rows};

const TOKEN: &str = "twilio-test-auth-token";
const PUBLIC: &str = "https://khaacho.example";
const MESSAGES: &str = "/api/v1/channels/twilio/messages";
const STATUS: &str = "/api/v1/channels/twilio/status";
const MINUTE: i64 = 60_000;

pub(crate) async fn spawn() -> TestApp {
    TestApp::spawn_with(|s| {
        s.channels.public_url = Some(PUBLIC.into());
        s.channels.twilio_auth_token = Some(TOKEN.into());
    })
    .await
}

/// Posts a form to a Twilio webhook, signed with `token` (none: no signature header).
async fn post_signed(
    t: &TestApp,
    route: &str,
    params: &[(&str, &str)],
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = t
        .anonymous
        .post(t.url(route))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(params).unwrap());
    if let Some(token) = token {
        let sig =
            khaacho_auth::webhook::twilio_signature(token, &format!("{PUBLIC}{route}"), params);
        req = req.header("X-Twilio-Signature", sig);
    }
    req.send().await.unwrap()
}

/// A WhatsApp message from `phone`, correctly signed; asserts the empty TwiML answer.
pub(crate) async fn say_as(t: &TestApp, sid: &str, phone: &str, body: &str) {
    let from = format!("whatsapp:{phone}");
    let params = [
        ("MessageSid", sid),
        ("From", from.as_str()),
        ("To", "whatsapp:+14155238886"),
        ("Body", body),
        ("NumMedia", "0"),
    ];
    let r = post_signed(t, MESSAGES, &params, Some(TOKEN)).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    assert_eq!(
        r.text().await.unwrap(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>"
    );
}

/// Says `body` and runs the jobs; returns the replies written since.
async fn say(t: &TestApp, phone: &str, body: &str) -> Vec<String> {
    let before = messages(t, phone).await.len();
    say_as(
        t,
        &format!("SM{}", uuid::Uuid::now_v7().simple()),
        phone,
        body,
    )
    .await;
    t.run_jobs().await;
    let all = messages(t, phone).await;
    all[before..]
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect()
}

/// The outbox to `phone`, oldest first.
pub(crate) async fn messages(t: &TestApp, phone: &str) -> Vec<Value> {
    let r = t
        .client
        .get(t.url(&format!(
            "/api/v1/channels/messages?limit=200&recipient={}",
            phone.replace('+', "%2B")
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut items = r.json::<Value>().await.unwrap()["items"]
        .as_array()
        .unwrap()
        .clone();
    items.reverse();
    items
}

async fn retailer_phone(t: &TestApp) -> (String, String) {
    let r = t.get_json("/api/v1/retailers?limit=1").await["items"][0].clone();
    (
        r["id"].as_str().unwrap().to_string(),
        r["phone"].as_str().unwrap().to_string(),
    )
}

async fn orders_of(t: &TestApp, retailer: &str) -> Vec<Value> {
    t.get_json(&format!("/api/v1/orders?retailer_id={retailer}&limit=100"))
        .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// The order reference in an "order placed" reply.
fn placed_ref(reply: &str) -> String {
    let rest = reply
        .split("order ")
        .nth(1)
        .or_else(|| reply.split("अर्डर ").nth(1))
        .unwrap();
    rest.split_whitespace().next().unwrap().to_string()
}

#[tokio::test]
async fn a_retailer_orders_in_three_scripts_and_each_yes_places_one_order() {
    let t = spawn().await;
    t.seed().await;
    let (retailer, phone) = retailer_phone(&t).await;

    // English.
    let r = say(&t, &phone, "5 kg chini and 2 carton wai wai please").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].starts_with("Your order:\n1. 5 kg"), "{}", r[0]);
    assert!(
        r[0].contains("2 carton") && r[0].contains("Total (incl. 13% VAT): NPR "),
        "{}",
        r[0]
    );
    assert!(r[0].contains("Reply YES to confirm"), "{}", r[0]);
    assert!(
        orders_of(&t, &retailer).await.is_empty(),
        "nothing is ordered before YES"
    );
    let r = say(&t, &phone, "YES").await;
    assert!(r[0].starts_with("Thank you! Your order "), "{r:?}");
    let first_ref = placed_ref(&r[0]);
    let orders = orders_of(&t, &retailer).await;
    assert_eq!(orders.len(), 1);
    let order = t
        .get_json(&format!(
            "/api/v1/orders/{}",
            orders[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(order["channel"], "whatsapp");
    assert!(
        order["id"]
            .as_str()
            .unwrap()
            .replace('-', "")
            .to_uppercase()
            .ends_with(&first_ref)
    );
    let skus: Vec<&str> = order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["SUGAR-50", "WAIWAI-CHICKEN-75G"]);

    // A second YES has nothing to confirm.
    let r = say(&t, &phone, "yes").await;
    assert!(r[0].starts_with("There is no order waiting"), "{r:?}");

    // Romanized Nepali, confirmed with "ho".
    let r = say(&t, &phone, "maida 3 kilo ra wai wai 2 peti pathaidinu").await;
    assert!(r[0].contains("3 kg") && r[0].contains("2 carton"), "{r:?}");
    let r = say(&t, &phone, "ho").await;
    assert!(r[0].starts_with("Thank you!"), "{r:?}");

    // Devanagari: the conversation switches to Nepali.
    let r = say(&t, &phone, "चिनी ५ केजी").await;
    assert!(r[0].starts_with("तपाईंको अर्डर:\n1. 5 kg"), "{r:?}");
    say_as(&t, "SM-devanagari-yes", &phone, "हो").await;
    t.run_jobs().await;
    let last = messages(&t, &phone).await.last().unwrap().clone();
    assert_eq!(last["language"], "ne");
    assert_eq!(last["template"], "order_placed");
    assert!(
        last["body"]
            .as_str()
            .unwrap()
            .starts_with("धन्यवाद! तपाईंको अर्डर"),
        "{last}"
    );
    assert_eq!(orders_of(&t, &retailer).await.len(), 3);

    // Twilio retries the last webhook: stored once, no second order, still 200.
    let inbound = t.count("inbound_messages").await;
    say_as(&t, "SM-devanagari-yes", &phone, "हो").await;
    t.run_jobs().await;
    assert_eq!(t.count("inbound_messages").await, inbound);
    assert_eq!(orders_of(&t, &retailer).await.len(), 3);
    for o in orders_of(&t, &retailer).await {
        let o = t
            .get_json(&format!("/api/v1/orders/{}", o["id"].as_str().unwrap()))
            .await;
        assert_eq!(o["channel"], "whatsapp", "{o}");
    }
}

#[tokio::test]
async fn unclear_lines_get_one_question_each_and_the_answers_complete_the_draft() {
    let t = spawn().await;
    t.seed().await;
    let (retailer, phone) = retailer_phone(&t).await;
    let r = say(&t, &phone, "chini 5 kg, 3 packet zorblax masala").await;
    assert_eq!(r.len(), 1);
    assert!(
        r[0].starts_with("I did not understand \"") && r[0].contains("zorblax"),
        "{r:?}"
    );
    // Not an answer: asked again.
    let r = say(&t, &phone, "hmm what").await;
    assert!(
        r[0].starts_with("Sorry, I still did not understand. I did not understand"),
        "{r:?}"
    );
    // The answer adds its line; then the summary.
    let r = say(&t, &phone, "2 carton wai wai").await;
    assert!(r[0].starts_with("Your order:"), "{r:?}");
    assert!(r[0].contains("5 kg") && r[0].contains("2 carton"), "{r:?}");
    let r = say(&t, &phone, "1").await;
    assert!(r[0].starts_with("Thank you!"), "{r:?}");
    let orders = orders_of(&t, &retailer).await;
    assert_eq!(orders.len(), 1);
    let order = t
        .get_json(&format!(
            "/api/v1/orders/{}",
            orders[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(order["lines"].as_array().unwrap().len(), 2, "{order}");

    // SKIP drops a question; NO drops the draft.
    let r = say(&t, &phone, "tel 2 litre ra 4 packet zorblax").await;
    assert!(r[0].contains("zorblax"), "{r:?}");
    let r = say(&t, &phone, "skip").await;
    assert!(r[0].starts_with("Your order:"), "{r:?}");
    let r = say(&t, &phone, "haina").await;
    assert!(r[0].starts_with("Cancelled."), "{r:?}");
    assert_eq!(orders_of(&t, &retailer).await.len(), 1);
}

#[tokio::test]
async fn a_quantity_question_takes_a_bare_number_even_one_that_also_means_no() {
    let t = spawn().await;
    t.seed().await;
    let (retailer, phone) = retailer_phone(&t).await;
    let r = say(&t, &phone, "chini ra 2 carton wai wai").await;
    assert_eq!(r.len(), 1);
    assert!(r[0].starts_with("How much Sugar do you want?"), "{r:?}");
    assert!(r[0].contains("\"5\" for 5 kg"), "{r:?}");
    // "2" would cancel a draft waiting for YES/NO; here it answers the question.
    let r = say(&t, &phone, "2").await;
    assert!(
        r[0].starts_with("Your order:\n1. 2 carton Wai Wai"),
        "{r:?}"
    );
    assert!(r[0].contains("2. 2 kg Sugar"), "{r:?}");
    let r = say(&t, &phone, "हो").await;
    assert!(r[0].starts_with("धन्यवाद!"), "{r:?}");
    let orders = orders_of(&t, &retailer).await;
    assert_eq!(orders.len(), 1);
    let order = t
        .get_json(&format!(
            "/api/v1/orders/{}",
            orders[0]["id"].as_str().unwrap()
        ))
        .await;
    let lines: Vec<(String, f64, String)> = order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap().into(),
                l["qty"].as_f64().unwrap(),
                l["unit"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("WAIWAI-CHICKEN-75G".to_string(), 2.0, "carton".to_string()),
            ("SUGAR-50".into(), 2.0, "kg".into())
        ]
    );
}

#[tokio::test]
async fn a_retailer_confirms_receipt_or_reports_an_issue_by_message() {
    let t = spawn().await;
    let retailer = world(&t).await;
    let a = vendor(&t, "Bhandari Traders", 1).await;
    offer(&t, a, "CHINI-1", 100.0, 50.0).await;
    let va = t.client_as(Role::Vendor, Some(a));
    let mut refs = Vec::new();
    for _ in 0..2 {
        let id = place(
            &t,
            retailer,
            json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
        )
        .await;
        let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
        let part = o["fulfilments"][0]["id"].as_str().unwrap().to_string();
        for action in ["accept", "dispatch", "deliver"] {
            let r = va
                .post(t.url(&format!("/api/v1/fulfilments/{part}/{action}")))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{action}");
        }
        t.run_jobs().await;
        refs.push((id.clone(), id.replace('-', "")[26..].to_uppercase()));
    }
    let phone = "+9779800000001";
    let (first, first_ref) = &refs[0];
    let r = say(&t, phone, &format!("received {first_ref}")).await;
    assert_eq!(r, [format!("Thank you! Order {first_ref} is complete.")]);
    assert_eq!(
        t.get_json(&format!("/api/v1/orders/{first}")).await["status"],
        "completed"
    );
    let r = say(&t, phone, &format!("RECEIVED {first_ref}")).await;
    assert!(
        r[0].starts_with(&format!(
            "{first_ref}: only a delivered order can be confirmed"
        )),
        "{r:?}"
    );

    let (second, second_ref) = &refs[1];
    let r = say(&t, phone, &format!("ISSUE {second_ref}")).await;
    assert!(r[0].starts_with("Please say what is wrong"), "{r:?}");
    let r = say(&t, phone, &format!("issue {second_ref} 2 kg missing")).await;
    assert!(
        r[0].starts_with(&format!("Sorry about that. Order {second_ref}")),
        "{r:?}"
    );
    let o = t.get_json(&format!("/api/v1/orders/{second}")).await;
    assert_eq!(
        (o["status"].as_str(), o["hold_reason"].as_str()),
        (Some("on_hold"), Some("retailer_issue"))
    );
    let event = o["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(event["detail"]["issue"], "2 kg missing", "{event}");
    assert_eq!(
        (event["actor"].as_str(), event["role"].as_str()),
        (Some("phone:+9779800000001"), Some("retailer"))
    );
}

#[tokio::test]
async fn the_summary_prices_like_validation_and_its_total_is_the_orders() {
    let t = spawn().await;
    let retailer = world(&t).await;
    let a = vendor(&t, "Bhandari Traders", 1).await;
    let b = vendor(&t, "Closed Traders", 2).await;
    offer(&t, a, "CHINI-1", 80.0, 50.0).await;
    offer(&t, a, "TEL-1", 210.0, 50.0).await;
    offer(&t, b, "CHINI-1", 50.0, 50.0).await;
    let r = t
        .client
        .patch(t.url(&format!("/api/v1/vendors/{b}")))
        .json(&json!({ "active": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let phone = "+9779800000001";
    let r = say(&t, phone, "chini 5 kg ra tel 2 litre").await;
    // 5 × 80 = 400 + 13% = 452 (not the inactive vendor's 50); 2 × 210 = 420 + 13% = 474.60.
    assert!(
        r[0].contains("1. 5 kg Sugar - NPR 452.00\n2. 2 litre Oil - NPR 474.60\n"),
        "{r:?}"
    );
    assert!(r[0].contains("Total (incl. 13% VAT): NPR 926.60"), "{r:?}");
    let r = say(&t, phone, "yes").await;
    assert!(r[0].contains("(NPR 926.60)"), "{r:?}");
    let orders = orders_of(&t, &retailer.to_string()).await;
    let o = t
        .get_json(&format!(
            "/api/v1/orders/{}",
            orders[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(o["totals"]["total_npr"], 926.6, "{o}");
}

#[tokio::test]
async fn twenty_concurrent_deliveries_of_one_yes_and_a_second_yes_place_one_order() {
    let t = spawn().await;
    t.seed().await;
    let (retailer, phone) = retailer_phone(&t).await;
    say(&t, &phone, "chini 5 kg").await;
    // Twilio retries the same webhook while the first is in flight.
    let posts = (0..20).map(|_| say_as(&t, "SM-yes-once", &phone, "YES"));
    futures::future::join_all(posts).await;
    // And the retailer, impatient, writes YES again.
    say_as(&t, "SM-yes-again", &phone, "yes").await;
    assert_eq!(t.count("inbound_messages").await, 3);
    t.run_jobs().await;
    assert_eq!(orders_of(&t, &retailer).await.len(), 1);
    let templates: Vec<String> = messages(&t, &phone)
        .await
        .iter()
        .map(|m| m["template"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        templates,
        ["draft_summary", "order_placed", "nothing_pending"]
    );
}

#[tokio::test]
async fn a_phones_messages_are_handled_in_the_order_they_arrived() {
    let t = spawn().await;
    t.seed().await;
    let (retailer, phone) = retailer_phone(&t).await;
    say_as(&t, "SM-first", &phone, "chini 5 kg").await;
    say_as(&t, "SM-second", &phone, "YES").await;
    // The first message's job is slow (here: gone); the second's runs first.
    let mut tx = t.app.db().begin().await.unwrap();
    let first: (uuid::Uuid,) = khaacho::with_tx!(tx, c => sqlx::query_as(
        "SELECT id FROM inbound_messages WHERE provider_message_id = 'SM-first'").fetch_one(c).await)
    .unwrap();
    khaacho::with_tx!(tx, c => sqlx::query("DELETE FROM jobs WHERE kind = 'channels.inbound' AND CAST(payload AS TEXT) LIKE $1")
        .bind(format!("%{}%", first.0)).execute(c).await.map(|r| r.rows_affected()))
    .unwrap();
    tx.commit().await.unwrap();
    t.run_jobs().await;
    let templates = |m: Vec<Value>| -> Vec<String> {
        m.iter()
            .map(|m| m["template"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        templates(messages(&t, &phone).await),
        ["draft_summary", "order_placed"]
    );
    assert_eq!(orders_of(&t, &retailer).await.len(), 1);
    // The first message's own job, when it comes, finds it handled.
    let mut tx = t.app.db().begin().await.unwrap();
    khaacho::queue::enqueue(
        &mut tx,
        &khaacho::channels::service::conversation::HandleInbound { id: first.0 },
        Default::default(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    t.run_jobs().await;
    assert_eq!(messages(&t, &phone).await.len(), 2);
    assert_eq!(orders_of(&t, &retailer).await.len(), 1);
}

#[tokio::test]
async fn a_draft_expires_after_ten_minutes_of_the_clock() {
    let t = spawn().await;
    t.seed().await;
    let (retailer, phone) = retailer_phone(&t).await;
    let r = say(&t, &phone, "chini 5 kg").await;
    assert!(r[0].contains("kept for 10 minutes"), "{r:?}");
    t.app.clock().advance(10 * MINUTE);
    let r = say(&t, &phone, "YES").await;
    assert_eq!(
        r,
        ["That order expired before it was confirmed. Please send it again."]
    );
    assert!(orders_of(&t, &retailer).await.is_empty());
    // Sent again, it works.
    say(&t, &phone, "chini 5 kg").await;
    t.app.clock().advance(9 * MINUTE);
    let r = say(&t, &phone, "YES").await;
    assert!(r[0].starts_with("Thank you!"), "{r:?}");
    assert_eq!(orders_of(&t, &retailer).await.len(), 1);
}

#[tokio::test]
async fn pleasantries_help_and_status_questions_are_answered_without_ordering() {
    let t = spawn().await;
    t.seed().await;
    let (retailer, phone) = retailer_phone(&t).await;
    let r = say(&t, &phone, "status").await;
    assert_eq!(r, ["You have no orders yet."]);
    let r = say(&t, &phone, "Namaste dai").await;
    assert!(r[0].starts_with("Namaste "), "{r:?}");
    let r = say(&t, &phone, "dhanyabad").await;
    assert!(r[0].starts_with("You're welcome"), "{r:?}");
    let r = say(&t, &phone, "help").await;
    assert!(r[0].contains("RECEIVED <ref>"), "{r:?}");
    assert!(orders_of(&t, &retailer).await.is_empty());

    say(&t, &phone, "chini 5 kg").await;
    let r = say(&t, &phone, "yes").await;
    let reference = placed_ref(&r[0]);
    let r = say(&t, &phone, "STATUS").await;
    assert!(r[0].starts_with("Your latest orders:\n"), "{r:?}");
    assert!(r[0].contains(&format!("{reference} - ")), "{r:?}");
    // Its state in words, and when it was placed as a person reads it.
    let placed = &orders_of(&t, &retailer).await[0];
    assert_eq!(placed["status"], "routed");
    let at = chrono::DateTime::parse_from_rfc3339(placed["created_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let r = say(&t, &phone, &format!("status {}", reference.to_lowercase())).await;
    assert!(
        r[0].ends_with(&format!(
            "{reference} - sent to vendors - NPR 509.40 ({})",
            khaacho::base::time::fmt_short(at)
        )),
        "{r:?}"
    );
    let r = say(&t, &phone, "mero order kaha pugyo?").await;
    assert!(
        r[0].starts_with("Your latest orders:\n") && r[0].contains(&reference),
        "{r:?}"
    );
    let r = say(&t, &phone, "status FFFFFF").await;
    assert!(r[0].starts_with("I could not find FFFFFF"), "{r:?}");
    // Receipt before delivery is refused by the order rules.
    let r = say(&t, &phone, &format!("RECEIVED {reference}")).await;
    assert!(
        r[0].starts_with(&format!("{reference}: only a delivered order")),
        "{r:?}"
    );
}

/// The demo world with one vendor (Bhandari Traders, phone +9779800000101) offering sugar,
/// and an order of 5 kg from it, routed: the vendor, the order's id and its part's chat
/// reference.
async fn sugar_from_one_vendor(t: &TestApp) -> (uuid::Uuid, String, String) {
    let retailer = world(t).await;
    let a = vendor(t, "Bhandari Traders", 1).await;
    offer(t, a, "CHINI-1", 100.0, 50.0).await;
    let id = place(
        t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    let part = o["fulfilments"][0]["id"].as_str().unwrap().to_string();
    let reference = part.replace('-', "")[26..].to_uppercase();
    (a, id, reference)
}

#[tokio::test]
async fn a_vendor_accepts_an_offer_by_message() {
    let t = spawn().await;
    let (a, id, reference) = sugar_from_one_vendor(&t).await;
    let phone = "+9779800000101";

    let r = say(&t, phone, "status").await;
    assert!(
        r[0].starts_with("Offers waiting for your answer:\n"),
        "{r:?}"
    );
    assert!(
        r[0].contains(&format!(
            "{reference} - Gita Kirana, Kathmandu - NPR 565.00 - answer by"
        )),
        "{r:?}"
    );
    // A vendor that asked for Nepali is answered in Nepali, each offer's line too, whatever
    // it writes in; back to English after.
    for (language, head, line) in [
        (
            "ne",
            "जवाफ पर्खिरहेका प्रस्तावहरू:\n",
            format!("{reference} - Gita Kirana, Kathmandu - NPR 565.00 - "),
        ),
        (
            "en",
            "Offers waiting for your answer:\n",
            format!("{reference} - Gita Kirana, Kathmandu - NPR 565.00 - answer by "),
        ),
    ] {
        let r = t
            .client
            .patch(t.url(&format!("/api/v1/vendors/{a}")))
            .json(&json!({ "language": language }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = say(&t, phone, "status").await;
        assert!(r[0].starts_with(head) && r[0].contains(&line), "{r:?}");
        assert_eq!(r[0].contains("भित्र जवाफ दिनुहोस्"), language == "ne", "{r:?}");
    }
    let r = say(&t, phone, &format!("REJECT {reference}")).await;
    assert!(r[0].starts_with("Please give a reason"), "{r:?}");
    let r = say(&t, phone, "ACCEPT 000000").await;
    assert!(r[0].starts_with("I could not find 000000"), "{r:?}");
    let r = say(&t, phone, &format!("accept {}", reference.to_lowercase())).await;
    assert_eq!(
        r,
        [format!(
            "Offer {reference} accepted. Deliver to: Gita Kirana, Kathmandu, +9779800000001. \
             Please dispatch it on time."
        )]
    );
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(o["fulfilments"][0]["status"], "accepted", "{o}");
    assert_eq!(o["status"], "accepted");
    // Accepting again is refused by the part's rules, not done twice.
    let r = say(&t, phone, &format!("ACCEPT {reference}")).await;
    assert!(r[0].starts_with(&format!("{reference}: ")), "{r:?}");
    let r = say(&t, phone, "status").await;
    assert_eq!(r, ["No offers are waiting for your answer."]);
}

/// CANCEL by message: a vendor gives back a part it accepted (with a reason) and the next
/// vendor is offered it; a retailer cancels its order before dispatch and hears so.
#[tokio::test]
async fn cancel_by_message_gives_a_part_back_or_cancels_an_order() {
    let t = spawn().await;
    let retailer = world(&t).await;
    let a = vendor(&t, "Bhandari Traders", 1).await;
    let b = vendor(&t, "Shrestha Suppliers", 2).await;
    offer(&t, a, "CHINI-1", 100.0, 50.0).await;
    offer(&t, b, "CHINI-1", 104.0, 50.0).await;
    let id = place(
        &t,
        retailer,
        json!([{ "sku": "CHINI-1", "qty": 5, "unit": "kg" }]),
    )
    .await;
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    let part = o["fulfilments"][0]["id"].as_str().unwrap().to_string();
    let part_ref = part.replace('-', "")[26..].to_uppercase();
    let order_ref = id.replace('-', "")[26..].to_uppercase();
    let phone = "+9779800000101";

    say(&t, phone, &format!("ACCEPT {part_ref}")).await;
    let r = say(&t, phone, &format!("cancel {part_ref}")).await;
    assert!(r[0].starts_with("Please give a reason: CANCEL"), "{r:?}");
    let r = say(&t, phone, &format!("CANCEL {part_ref} truck broke down")).await;
    assert_eq!(
        r,
        [format!(
            "Order {part_ref} given back. Thank you for telling us; we will find it another vendor."
        )]
    );
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(
        (
            o["status"].as_str(),
            o["fulfilments"][0]["vendor_id"].as_str()
        ),
        (Some("routed"), Some(b.to_string().as_str())),
        "{o}"
    );
    let last = o["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"], "truck broke down");
    // The next vendor hears of its offer.
    let offered: Vec<Value> = messages(&t, "+9779800000102")
        .await
        .into_iter()
        .filter(|m| m["template"] == "vendor_offer")
        .collect();
    assert_eq!(offered.len(), 1, "{offered:?}");
    assert!(offered[0]["body"].as_str().unwrap().contains(&part_ref));
    // The retailer, told "accepted" before, hears that another vendor is being asked.
    let changed: Vec<String> = messages(&t, "+9779800000001")
        .await
        .iter()
        .filter(|m| m["template"] == "order_vendor_changed")
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        changed,
        [format!(
            "Your order {order_ref}: the vendor who accepted it cannot deliver after all. We are asking another vendor now."
        )]
    );

    // The retailer cancels before dispatch; the order's message says so in its words.
    let shop = "+9779800000001";
    let r = say(&t, shop, &format!("CANCEL {}", order_ref.to_lowercase())).await;
    assert_eq!(
        r,
        [format!("Your order {order_ref} is cancelled: as you asked")]
    );
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(o["status"], "cancelled", "{o}");
    // The vendor offered the part hears it in a vendor's words.
    let told: Vec<String> = messages(&t, "+9779800000102")
        .await
        .iter()
        .filter(|m| m["template"] == "vendor_part_cancelled")
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        told,
        [format!(
            "Order {part_ref} is cancelled, please do not send it: the shop cancelled it"
        )]
    );
    // Once cancelled, a second CANCEL is refused by the order's rules.
    let r = say(&t, shop, &format!("CANCEL {order_ref}")).await;
    assert!(r[0].starts_with(&format!("{order_ref}: ")), "{r:?}");
}

#[tokio::test]
async fn a_vendor_giving_back_a_part_nobody_else_can_take_is_not_promised_another_vendor() {
    let t = spawn().await;
    let (_, id, part_ref) = sugar_from_one_vendor(&t).await;
    let phone = "+9779800000101";

    say(&t, phone, &format!("ACCEPT {part_ref}")).await;
    let r = say(&t, phone, &format!("CANCEL {part_ref} stock spoiled")).await;
    assert_eq!(
        r,
        [format!(
            "Order {part_ref} given back. Thank you for telling us; no other vendor can take it now, so our team will arrange it."
        )]
    );
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(
        (
            o["status"].as_str(),
            o["fulfilments"][0]["status"].as_str(),
            o["fulfilments"][0]["vendor_id"].as_str()
        ),
        (Some("on_hold"), Some("unassigned"), None),
        "{o}"
    );
}

#[tokio::test]
async fn an_unknown_number_gets_a_polite_reply_and_one_alert() {
    let t = spawn().await;
    t.seed().await;
    let phone = "+9779811111111";
    // A 10-digit local number without +977 is the same sender.
    for body in ["hello", "5 kg chini"] {
        let r = say(&t, phone, body).await;
        assert_eq!(
            r,
            [
                "Namaste! This number is not registered with Khaacho yet. Our team has been told and will contact you soon."
            ]
        );
    }
    // By SMS, without +977: the same sender, answered by SMS.
    let params = [
        ("MessageSid", "SM-local-form"),
        ("From", "9811111111"),
        ("Body", "hello?"),
    ];
    assert_eq!(
        post_signed(&t, MESSAGES, &params, Some(TOKEN))
            .await
            .status(),
        200
    );
    t.run_jobs().await;
    let m = messages(&t, phone).await;
    assert_eq!(m.len(), 3);
    assert_eq!(
        (m[0]["channel"].as_str(), m[2]["channel"].as_str()),
        (Some("whatsapp"), Some("sms"))
    );
    let alerts = t.get_json("/api/v1/alerts?kind=unknown_sender").await;
    let items = alerts["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{alerts}");
    assert_eq!(items[0]["detail"]["phone"], phone);
    assert_eq!(t.count("orders").await, 0);
}

#[tokio::test]
async fn webhooks_refuse_bad_signatures_and_bad_input_with_problems() {
    let t = spawn().await;
    let params = [
        ("MessageSid", "SM1"),
        ("From", "whatsapp:+9779800000001"),
        ("Body", "hi"),
    ];
    assert_problem(
        post_signed(&t, MESSAGES, &params, Some("wrong-token")).await,
        403,
    )
    .await;
    assert_problem(post_signed(&t, MESSAGES, &params, None).await, 403).await;
    // Signed for another URL (the Host the request came to, not the public URL).
    let sig = khaacho_auth::webhook::twilio_signature(TOKEN, &t.url(MESSAGES), &params);
    let r = t
        .anonymous
        .post(t.url(MESSAGES))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sig)
        .body(serde_urlencoded::to_string(params).unwrap())
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    assert_problem(
        post_signed(
            &t,
            STATUS,
            &[("MessageSid", "SM1"), ("MessageStatus", "delivered")],
            Some("x"),
        )
        .await,
        403,
    )
    .await;
    let denied = audit_rows(&t, "action=authz.denied").await;
    let webhook_denials = denied
        .iter()
        .filter(|r| {
            r["summary"]["route"]
                .as_str()
                .is_some_and(|s| s.contains("/channels/twilio/"))
        })
        .count();
    assert_eq!(webhook_denials, 4, "{denied:?}");
    assert_eq!(t.count("inbound_messages").await, 0);

    let missing = post_signed(&t, MESSAGES, &[("Body", "hi")], Some(TOKEN)).await;
    let p = assert_problem(missing, 422).await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["MessageSid", "From"]);
    let not_a_phone = post_signed(
        &t,
        MESSAGES,
        &[("MessageSid", "SM2"), ("From", "whatsapp:hello")],
        Some(TOKEN),
    )
    .await;
    assert_problem(not_a_phone, 422).await;
    let nul = post_signed(
        &t,
        MESSAGES,
        &[
            ("MessageSid", "SM5"),
            ("From", "+9779800000001"),
            ("Body", "chini\u{0}5 kg"),
        ],
        Some(TOKEN),
    )
    .await;
    let p = assert_problem(nul, 422).await;
    assert_eq!(p["errors"][0]["field"], "Body");
    let big = "x".repeat(20_000);
    let r = post_signed(
        &t,
        MESSAGES,
        &[
            ("MessageSid", "SM3"),
            ("From", "+9779800000001"),
            ("Body", &big),
        ],
        Some(TOKEN),
    )
    .await;
    assert_problem(r, 413).await;
    let json_body = t
        .anonymous
        .post(t.url(MESSAGES))
        .json(&json!({ "MessageSid": "SM4" }))
        .send()
        .await
        .unwrap();
    assert_problem(json_body, 415).await;
    assert_eq!(t.count("inbound_messages").await, 0);

    // Staff only: the outbox list.
    let r = t
        .client_as(Role::Retailer, None)
        .get(t.url("/api/v1/channels/messages"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    assert_problem(t.get("/api/v1/channels/messages?status=lost").await, 400).await;
}

#[tokio::test]
async fn without_an_auth_token_webhooks_are_refused_and_without_an_account_nothing_is_sent() {
    let t = TestApp::spawn().await;
    let params = [
        ("MessageSid", "SM1"),
        ("From", "whatsapp:+9779800000001"),
        ("Body", "hi"),
    ];
    assert_problem(post_signed(&t, MESSAGES, &params, Some(TOKEN)).await, 403).await;

    let t = spawn().await;
    let r = say(&t, "+9779811111111", "hello").await;
    assert_eq!(r.len(), 1);
    let m = messages(&t, "+9779811111111").await;
    assert_eq!(
        (m[0]["status"].as_str(), m[0]["attempts"].as_i64()),
        (Some("queued"), Some(0))
    );
    assert_eq!(m[0]["channel"], "whatsapp");
}

#[tokio::test]
async fn an_order_by_sms_carries_the_sms_channel() {
    let t = spawn().await;
    t.seed().await;
    let (retailer, phone) = retailer_phone(&t).await;
    for (sid, body) in [("SM-sms-1", "chini 5 kg"), ("SM-sms-2", "yes")] {
        let params = [
            ("MessageSid", sid),
            ("From", phone.as_str()),
            ("Body", body),
        ];
        assert_eq!(
            post_signed(&t, MESSAGES, &params, Some(TOKEN))
                .await
                .status(),
            200
        );
        t.run_jobs().await;
    }
    let m = messages(&t, &phone).await;
    assert_eq!(m.len(), 2);
    assert!(m.iter().all(|m| m["channel"] == "sms"), "{m:?}");
    assert_eq!(m[1]["template"], "order_placed");
    let orders = orders_of(&t, &retailer).await;
    assert_eq!(orders.len(), 1);
    let o = t
        .get_json(&format!(
            "/api/v1/orders/{}",
            orders[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(o["channel"], "sms");
}

#[tokio::test]
async fn khaacho_chat_signs_each_line_and_prints_the_replies() {
    let t = TestApp::spawn_working(|s| {
        s.channels.twilio_auth_token = Some(TOKEN.into());
        s.channels.public_url = Some(PUBLIC.into());
    })
    .await;
    t.seed().await;
    let (retailer, phone) = retailer_phone(&t).await;
    let url = format!("http://{}", t.addr);
    let local = phone.trim_start_matches("+977").to_string();
    let token = t.token(Role::Operator, None);
    let chat = khaacho::channels::chat::Chat::new(t.app.settings(), &url, &local, token).unwrap();
    let mut out = Vec::new();
    chat.run(&b"chini 5 kg\n\nYES\n"[..], &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with(&format!("chatting as whatsapp:{phone} with {url}")),
        "{out}"
    );
    assert!(
        out.contains("khaacho > Your order:\n          1. 5 kg Sugar"),
        "{out}"
    );
    assert!(out.contains("khaacho > Thank you! Your order "), "{out}");
    assert_eq!(orders_of(&t, &retailer).await.len(), 1);
    // A chat without the server's token cannot sign.
    let mut unsigned = t.app.settings().clone();
    unsigned.channels.twilio_auth_token = None;
    assert!(khaacho::channels::chat::Chat::new(&unsigned, &url, &phone, String::new()).is_err());
}

// ------------------------------------------------------------------ the sender

/// A mock Twilio answering every message with `status` (and a fresh SID on success).
async fn twilio(status: u16) -> MockServer {
    let server = MockServer::start().await;
    mount(&server, status).await;
    server
}

async fn mount(server: &MockServer, status: u16) {
    let n = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .respond_with(move |req: &Request| {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&req.body).unwrap();
            assert!(
                form.iter()
                    .any(|(k, v)| k == "From" && v == "whatsapp:+14155238886")
            );
            assert!(
                form.iter()
                    .any(|(k, v)| k == "StatusCallback" && v == &format!("{PUBLIC}{STATUS}"))
            );
            let i = n.fetch_add(1, Ordering::SeqCst);
            if status == 201 {
                ResponseTemplate::new(201)
                    .set_body_json(json!({ "sid": format!("SM{i:032}"), "status": "queued" }))
            } else {
                ResponseTemplate::new(status)
                    .set_body_json(json!({ "code": 20500, "message": "server error" }))
            }
        })
        .mount(server)
        .await;
}

async fn spawn_sending(server: &MockServer) -> TestApp {
    spawn_sending_with(server, |_| {}).await
}

async fn spawn_sending_with(
    server: &MockServer,
    more: impl FnOnce(&mut khaacho::config::Settings),
) -> TestApp {
    let base = server.uri();
    TestApp::spawn_with(move |s| {
        more(s);
        s.channels.public_url = Some(PUBLIC.into());
        s.channels.twilio_auth_token = Some(TOKEN.into());
        s.channels.twilio_account_sid = Some("AC123".into());
        s.channels.twilio_api_base = base;
        s.channels.whatsapp_from = Some("whatsapp:+14155238886".into());
    })
    .await
}

async fn posted(server: &MockServer) -> Vec<(String, String)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&r.body).unwrap();
            let get = |k: &str| form.iter().find(|(n, _)| n == k).unwrap().1.clone();
            (get("To"), get("Body"))
        })
        .collect()
}

async fn sweep(t: &TestApp) {
    khaacho::channels::outbox::sweep(&t.app, t.app.clock().now_ms())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_sender_sends_at_most_one_message_per_recipient_every_two_seconds() {
    let server = twilio(201).await;
    let t = spawn_sending(&server).await;
    let phone = "+9779811111111";
    for i in 0..3 {
        say_as(&t, &format!("SM-throttle-{i}"), phone, "hello").await;
    }
    t.run_jobs().await;
    assert_eq!(posted(&server).await.len(), 1, "one now, two held back");
    let m = messages(&t, phone).await;
    let statuses: Vec<&str> = m.iter().map(|m| m["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "sent").count(),
        1,
        "{statuses:?}"
    );
    sweep(&t).await;
    assert_eq!(posted(&server).await.len(), 1, "still within 2 s");
    t.app.clock().advance(2_000);
    sweep(&t).await;
    assert_eq!(posted(&server).await.len(), 2);
    t.app.clock().advance(2_000);
    sweep(&t).await;
    let sent = posted(&server).await;
    assert_eq!(sent.len(), 3);
    assert!(
        sent.iter()
            .all(|(to, body)| to == "whatsapp:+9779811111111" && body.starts_with("Namaste!"))
    );
    let m = messages(&t, phone).await;
    assert!(
        m.iter()
            .all(|m| m["status"] == "sent" && m["provider_sid"].is_string()),
        "{m:?}"
    );
}

#[tokio::test]
async fn failed_sends_retry_after_1_5_15_30_60_minutes_then_go_dead_and_staff_can_retry() {
    let server = twilio(500).await;
    let t = spawn_sending(&server).await;
    let phone = "+9779811111111";
    say(&t, phone, "hello").await;
    let m = &messages(&t, phone).await[0];
    assert_eq!(
        (m["status"].as_str(), m["attempts"].as_i64()),
        (Some("queued"), Some(1))
    );
    assert!(m["last_error"].as_str().unwrap().contains("500"), "{m}");
    for (i, wait) in [1, 5, 15, 30, 60].into_iter().enumerate() {
        // Not yet due a little before the wait is over.
        t.app.clock().advance(wait * MINUTE - 20_000);
        sweep(&t).await;
        assert_eq!(
            messages(&t, phone).await[0]["attempts"],
            i as i64 + 1,
            "before {wait} min"
        );
        t.app.clock().advance(20_000);
        sweep(&t).await;
        assert_eq!(
            messages(&t, phone).await[0]["attempts"],
            i as i64 + 2,
            "after {wait} min"
        );
    }
    let m = messages(&t, phone).await[0].clone();
    assert_eq!(m["status"], "dead", "{m}");
    t.app.clock().advance(24 * 60 * MINUTE);
    sweep(&t).await;
    assert_eq!(
        messages(&t, phone).await[0]["attempts"],
        6,
        "dead stays dead"
    );
    let dead = t.get_json("/api/v1/channels/messages?status=dead").await;
    assert_eq!(dead["items"].as_array().unwrap().len(), 1);

    let id = m["id"].as_str().unwrap();
    let r = t
        .client_as(Role::Retailer, None)
        .post(t.url(&format!("/api/v1/channels/messages/{id}/retry")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    let r = t
        .post_json(&format!("/api/v1/channels/messages/{id}/retry"), &json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(
        (again["status"].as_str(), again["attempts"].as_i64()),
        (Some("queued"), Some(0))
    );
    let r = t
        .post_json(&format!("/api/v1/channels/messages/{id}/retry"), &json!({}))
        .await;
    assert_problem(r, 409).await;
    assert_eq!(audit_rows(&t, "action=message.retry").await.len(), 1);
}

#[tokio::test]
async fn an_attempt_that_never_finished_goes_dead_instead_of_being_sent_again() {
    let server = twilio(201).await;
    let t = spawn_sending(&server).await;
    // A reply is claimed for sending and the process dies before Twilio answers.
    let phone = "+9779811111111";
    let now = t.app.clock().now_ms();
    let reply = khaacho::channels::outbox::Reply {
        template: "thanks",
        vars: json!({ "name": "Gita" }),
    };
    let mut tx = t.app.db().begin().await.unwrap();
    let id = khaacho::channels::outbox::queue(
        &mut tx,
        phone,
        khaacho::channels::phone::MessageChannel::Whatsapp,
        khaacho::channels::templates::Language::En,
        &reply,
        None,
        now,
        true,
    )
    .await
    .unwrap();
    khaacho::with_tx!(tx, c => sqlx::query("DELETE FROM jobs WHERE kind = 'channels.send'").execute(c).await.map(|r| r.rows_affected())).unwrap();
    tx.commit().await.unwrap();
    assert!(
        khaacho::channels::repo::claim(t.app.db(), id, now)
            .await
            .unwrap()
    );
    assert!(
        !khaacho::channels::repo::claim(t.app.db(), id, now)
            .await
            .unwrap(),
        "claimed once"
    );
    sweep(&t).await;
    assert_eq!(messages(&t, phone).await[0]["status"], "sending");
    t.app.clock().advance(10 * MINUTE + 1_000);
    sweep(&t).await;
    let m = messages(&t, phone).await[0].clone();
    assert_eq!(m["status"], "dead", "{m}");
    assert!(
        m["last_error"]
            .as_str()
            .unwrap()
            .contains("may or may not have been sent")
    );
    assert!(posted(&server).await.is_empty(), "never sent blindly");
}

#[tokio::test]
async fn outside_whatsapps_24_hour_window_a_reply_goes_as_its_approved_template_or_not_at_all() {
    let server = twilio(201).await;
    let t = spawn_sending_with(&server, |s| {
        s.channels
            .whatsapp_content_sids
            .insert("thanks".into(), "HX0123".into());
    })
    .await;
    let phone = "+9779811111111";
    say(&t, phone, "hello").await;
    assert_eq!(
        posted(&server).await.len(),
        1,
        "within the window: free text"
    );
    t.app.clock().advance(24 * 60 * MINUTE + 1_000);
    let now = t.app.clock().now_ms();
    let mut tx = t.app.db().begin().await.unwrap();
    for template in ["thanks", "greeting"] {
        let reply = khaacho::channels::outbox::Reply {
            template,
            vars: json!({ "name": "Gita Kirana" }),
        };
        khaacho::channels::outbox::queue(
            &mut tx,
            phone,
            khaacho::channels::phone::MessageChannel::Whatsapp,
            khaacho::channels::templates::Language::En,
            &reply,
            None,
            now,
            true,
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    t.run_jobs().await;
    t.app.clock().advance(2_000);
    sweep(&t).await;
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "the template one only");
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&requests[1].body).unwrap();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("ContentSid").as_deref(), Some("HX0123"));
    assert_eq!(
        get("ContentVariables").as_deref(),
        Some(r#"{"1":"Gita Kirana"}"#)
    );
    assert_eq!(get("Body"), None);
    let m = messages(&t, phone).await;
    let by_template = |name: &str| m.iter().find(|x| x["template"] == name).unwrap().clone();
    assert_eq!(by_template("thanks")["status"], "sent");
    let greeting = by_template("greeting");
    assert_eq!(greeting["status"], "dead", "{greeting}");
    assert!(
        greeting["last_error"]
            .as_str()
            .unwrap()
            .contains("24-hour window")
    );
}

#[tokio::test]
async fn a_late_status_callback_never_overwrites_delivered_and_a_retried_sender_does_not_send_twice()
 {
    let server = twilio(201).await;
    let t = spawn_sending(&server).await;
    let phone = "+9779811111111";
    say(&t, phone, "hello").await;
    assert_eq!(posted(&server).await.len(), 1);
    let m = messages(&t, phone).await[0].clone();
    assert_eq!(m["status"], "sent");
    let id: uuid::Uuid = m["id"].as_str().unwrap().parse().unwrap();
    // The job runs again (a retry after a lost lease): the row is no longer queued.
    let again = khaacho::channels::outbox::send_one(&t.app, id, t.app.clock().now_ms())
        .await
        .unwrap();
    assert_eq!(again, khaacho::channels::outbox::Sent::Skipped);
    let mut tx = t.app.db().begin().await.unwrap();
    khaacho::queue::enqueue(
        &mut tx,
        &khaacho::channels::outbox::SendMessage { id },
        Default::default(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    t.run_jobs().await;
    assert_eq!(posted(&server).await.len(), 1, "sent once");

    let sid = m["provider_sid"].as_str().unwrap();
    let callback = |status: &'static str| {
        [
            ("MessageSid", sid.to_string()),
            ("MessageStatus", status.to_string()),
        ]
    };
    let send = |status: &'static str| {
        let params = callback(status);
        let t = &t;
        async move {
            let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = post_signed(t, STATUS, &p, Some(TOKEN)).await;
            assert_eq!(r.status(), 200);
        }
    };
    send("delivered").await;
    assert_eq!(messages(&t, phone).await[0]["status"], "delivered");
    send("sent").await;
    send("failed").await;
    send("queued").await;
    assert_eq!(
        messages(&t, phone).await[0]["status"],
        "delivered",
        "terminal stays"
    );
    assert_problem(
        post_signed(&t, STATUS, &[("MessageSid", sid)], Some(TOKEN)).await,
        422,
    )
    .await;
}

#[tokio::test]
async fn twilio_webhooks_have_their_own_limit_not_the_anonymous_one() {
    // Twilio posts every customer's message from a few addresses: the anonymous per-IP budget
    // (here 5) must not refuse them, their own (here 30) still bounds a flood.
    let t = TestApp::spawn_with(|s| {
        s.channels.public_url = Some(PUBLIC.into());
        s.channels.twilio_auth_token = Some(TOKEN.into());
        s.rate_limits.per_ip = khaacho::auth::settings::Limit {
            per_second: 0.1,
            burst: 5,
        };
        s.rate_limits.webhook_per_ip = khaacho::auth::settings::Limit {
            per_second: 0.1,
            burst: 30,
        };
    })
    .await;
    for i in 0..30 {
        say_as(&t, &format!("SMlimit{i}"), "+9779800000001", "namaste").await;
    }
    let from = "whatsapp:+9779800000001";
    let params = [
        ("MessageSid", "SMlimit30"),
        ("From", from),
        ("Body", "namaste"),
    ];
    let r = post_signed(&t, MESSAGES, &params, Some(TOKEN)).await;
    assert_eq!(r.status(), 429, "the webhook budget is spent");
    assert!(r.headers().contains_key("retry-after"));
    // Anonymous requests elsewhere still have their own, smaller budget.
    for _ in 0..5 {
        assert_eq!(
            t.anonymous
                .get(t.url("/api/v1/products"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    }
    assert_eq!(
        t.anonymous
            .get(t.url("/api/v1/products"))
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
    let stored: i64 = khaacho::with_latest!(t.app.db(), c =>
        sqlx::query_scalar("SELECT COUNT(*) FROM inbound_messages").fetch_one(c).await)
    .unwrap();
    assert_eq!(stored, 30);
    let metrics = t.metrics().await;
    assert!(
        metrics.contains("khaacho_rate_limited_total{class=\"webhook\"}"),
        "{metrics}"
    );
}

/// A mock Twilio that refuses every WhatsApp message (Twilio's 63016-style 400) and takes
/// every SMS from `+15005550006`.
async fn twilio_without_whatsapp() -> MockServer {
    let server = MockServer::start().await;
    let n = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .respond_with(move |req: &Request| {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&req.body).unwrap();
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let i = n.fetch_add(1, Ordering::SeqCst);
            if get("To").unwrap().starts_with("whatsapp:") {
                ResponseTemplate::new(400).set_body_json(
                    json!({ "code": 63016, "message": "Failed to send freeform message" }),
                )
            } else {
                assert_eq!(get("From").as_deref(), Some("+15005550006"));
                ResponseTemplate::new(201)
                    .set_body_json(json!({ "sid": format!("SM{i:032}"), "status": "queued" }))
            }
        })
        .mount(&server)
        .await;
    server
}

/// `(channel, status, last_error, body)` of the outbox to `phone`, oldest first.
async fn rows(t: &TestApp, phone: &str) -> Vec<(String, String, String, String)> {
    messages(t, phone)
        .await
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("channel"), s("status"), s("last_error"), s("body"))
        })
        .collect()
}

#[tokio::test]
async fn a_whatsapp_message_that_fails_for_good_goes_once_by_sms_and_the_dead_row_says_so() {
    let server = twilio_without_whatsapp().await;
    let t = spawn_sending_with(&server, |s| {
        s.channels.sms_from = Some("+15005550006".into());
    })
    .await;
    let phone = "+9779811111111";
    say(&t, phone, "hello").await;
    // Refused on WhatsApp: dead, and the same text queued by SMS (held 2 s by the throttle).
    let m = rows(&t, phone).await;
    assert_eq!(m.len(), 2, "{m:?}");
    let sms_id = messages(&t, phone).await[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!((m[0].0.as_str(), m[0].1.as_str()), ("whatsapp", "dead"));
    assert!(m[0].2.contains("63016"), "{}", m[0].2);
    assert!(
        m[0].2
            .ends_with(&format!("; sent again by SMS (message {sms_id})")),
        "{}",
        m[0].2
    );
    assert_eq!((m[1].0.as_str(), m[1].1.as_str()), ("sms", "queued"));
    assert_eq!(m[1].3, m[0].3, "the same text");
    t.app.clock().advance(2_000);
    sweep(&t).await;
    let m = rows(&t, phone).await;
    assert_eq!(m[1].1, "sent", "{m:?}");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&requests[1].body).unwrap();
    assert!(form.contains(&("To".into(), phone.into())), "{form:?}");

    // Retried by staff and refused again: no second SMS.
    let wa = messages(&t, phone).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = t
        .post_json(&format!("/api/v1/channels/messages/{wa}/retry"), &json!({}))
        .await;
    assert_eq!(r.status(), 200);
    t.app.clock().advance(2_000);
    t.run_jobs().await;
    let m = rows(&t, phone).await;
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(m[0].1, "dead");
    assert!(
        m[0].2.ends_with("; already sent again by SMS once"),
        "{}",
        m[0].2
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);

    // Outside the 24-hour window without an approved template: not tried on WhatsApp, by SMS.
    t.app.clock().advance(24 * 60 * MINUTE + 1_000);
    let mut tx = t.app.db().begin().await.unwrap();
    let reply = khaacho::channels::outbox::Reply {
        template: "thanks",
        vars: json!({ "name": "Gita Kirana" }),
    };
    khaacho::channels::outbox::queue(
        &mut tx,
        phone,
        khaacho::channels::phone::MessageChannel::Whatsapp,
        khaacho::channels::templates::Language::En,
        &reply,
        None,
        t.app.clock().now_ms(),
        true,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    t.run_jobs().await;
    t.app.clock().advance(2_000);
    sweep(&t).await;
    let m = rows(&t, phone).await;
    assert_eq!(m.len(), 4, "{m:?}");
    assert_eq!((m[2].0.as_str(), m[2].1.as_str()), ("whatsapp", "dead"));
    assert!(
        m[2].2.contains("24-hour window") && m[2].2.contains("sent again by SMS"),
        "{}",
        m[2].2
    );
    assert_eq!(
        (m[3].0.as_str(), m[3].1.as_str(), m[3].3.as_str()),
        ("sms", "sent", "You're welcome, Gita Kirana!")
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        4,
        "no WhatsApp call"
    );
}

#[tokio::test]
async fn twilio_webhooks_are_never_shed_when_the_process_is_full() {
    // No request slot at all: everything else is turned away, a customer's message is not
    // (Twilio does not retry a refused inbound message).
    let t = TestApp::spawn_with(|s| {
        s.channels.public_url = Some(PUBLIC.into());
        s.channels.twilio_auth_token = Some(TOKEN.into());
        s.http.max_in_flight = 0;
    })
    .await;
    assert_eq!(t.get("/api/v1/products").await.status(), 503);
    say_as(&t, "SMshed1", "+9779800000001", "namaste").await;
    let stored: i64 = khaacho::with_latest!(t.app.db(), c =>
        sqlx::query_scalar("SELECT COUNT(*) FROM inbound_messages").fetch_one(c).await)
    .unwrap();
    assert_eq!(stored, 1);
}

/// Messages finished more than `channels.retention_days` ago are deleted by the maintenance
/// job; a message still waiting (not handled, not sent) is kept whatever its age.
#[tokio::test]
async fn messages_past_their_retention_are_deleted_unless_still_waiting() {
    const DAY: i64 = 24 * 60 * MINUTE;
    let server = twilio(201).await;
    let t = spawn_sending_with(&server, |s| s.channels.retention_days = 30).await;
    t.seed().await;
    let (_, phone) = retailer_phone(&t).await;
    // Handled and answered; the answer sent.
    let r = say(&t, &phone, "Namaste").await;
    assert_eq!(r.len(), 1);
    assert_eq!(messages(&t, &phone).await[0]["status"], "sent");
    // Stored by the webhook, not handled yet.
    say_as(&t, "SM-still-waiting", &phone, "help").await;
    assert_eq!(t.count("inbound_messages").await, 2);

    t.app.clock().advance(31 * DAY);
    let cutoff = t.app.clock().now_ms() - 30 * DAY;
    let removed = khaacho::channels::repo::purge_messages(t.app.db(), cutoff)
        .await
        .unwrap();
    assert_eq!(removed, 2, "the handled message and its sent answer");
    assert_eq!(
        t.count("inbound_messages").await,
        1,
        "the waiting one stays"
    );
    assert_eq!(t.count("outbound_messages").await, 0);

    // The waiting one is handled now, as ever; a month on, the maintenance job deletes it
    // and its answer.
    t.run_jobs().await;
    let answer = messages(&t, &phone).await;
    assert_eq!(answer.len(), 1);
    assert!(
        answer[0]["body"]
            .as_str()
            .unwrap()
            .contains("RECEIVED <ref>")
    );
    t.app.clock().advance(29 * DAY);
    t.run_maintenance().await;
    assert_eq!(t.count("inbound_messages").await, 1, "29 days: kept");
    assert_eq!(t.count("outbound_messages").await, 1);
    t.app.clock().advance(2 * DAY);
    t.run_maintenance().await;
    assert_eq!(t.count("inbound_messages").await, 0, "31 days: deleted");
    assert_eq!(t.count("outbound_messages").await, 0);
}
