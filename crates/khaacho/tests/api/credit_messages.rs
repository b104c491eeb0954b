//! Messages to retailers about their credit, black-box on both backends with the app's
//! clock: payment reminders 3 days before a due date, on it and 7 days after (only while
//! unpaid, once each, in the retailer's language), and the credit alerts a retailer must
//! hear of (overdue warning, block, late-payment cut), once per overdue debit or cut.

use khaacho::credit::{reminders, repo, scoring};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::credit_controls::{delivered, pay};
use crate::helpers::TestApp;

const DAY_MS: i64 = 86_400_000;

/// A seeded retailer with an account: `(id, phone)`.
async fn retailer(t: &TestApp, limit: i64, opened_at: i64) -> (Uuid, String) {
    t.seed().await;
    let id: Uuid = t.retailer().await.parse().unwrap();
    let mut tx = t.app.db().begin().await.unwrap();
    repo::ensure_accounts(&mut tx, &[id], limit).await.unwrap();
    repo::set_opened_at(&mut tx, id, opened_at).await.unwrap();
    tx.commit().await.unwrap();
    let phone = t.get_json(&format!("/api/v1/retailers/{id}")).await["phone"]
        .as_str()
        .unwrap()
        .to_string();
    (id, phone)
}

/// The outbox to `phone`, oldest first: `(template, language, body)`.
async fn outbox(t: &TestApp, phone: &str) -> Vec<(String, String, String)> {
    crate::channels::messages(t, phone)
        .await
        .iter()
        .map(|m: &Value| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("template"), s("language"), s("body"))
        })
        .collect()
}

fn templates(m: &[(String, String, String)]) -> Vec<&str> {
    m.iter().map(|x| x.0.as_str()).collect()
}

fn reference(order: Uuid) -> String {
    order.simple().to_string()[26..].to_uppercase()
}

async fn remind(t: &TestApp) -> usize {
    reminders::run(&t.app, t.app.clock().now_ms())
        .await
        .unwrap()
}

#[tokio::test]
async fn reminders_go_3_days_before_on_the_due_date_and_7_days_after_once_each_while_unpaid() {
    let t = TestApp::spawn().await;
    // Noon in Nepal: the reminders count Nepal days, and no midnight falls within the test.
    t.clock_to_nepal_minute(720);
    let now = t.app.clock().now_ms();
    let (r, phone) = retailer(&t, 10_000_000, now - 400 * DAY_MS).await;
    // Two debits due in 30 days (the default terms); the older is paid in full at once.
    let paid = delivered(&t, r, 80_000, now).await;
    let open = delivered(&t, r, 56_500, now + 1).await;
    pay(&t, r, 80_000, "cash-1", now + 2).await;
    assert_eq!(remind(&t).await, 0, "30 days ahead: nothing");
    t.app.clock().advance(26 * DAY_MS);
    assert_eq!(remind(&t).await, 0, "4 days ahead: nothing");

    t.app.clock().advance(DAY_MS);
    assert_eq!(remind(&t).await, 1, "3 days ahead");
    let due = reminders::nepal_date(now + 1 + 30 * DAY_MS);
    let m = outbox(&t, &phone).await;
    assert_eq!(templates(&m), ["payment_due_soon"], "{m:?}");
    assert_eq!(
        m[0].2,
        format!(
            "Reminder: NPR 565.00 for order {} is due on {due}. Please pay by then to keep your credit open.",
            reference(open)
        )
    );
    assert!(!m[0].2.contains(&reference(paid)));
    // Again the same day, and the next day: nothing new.
    assert_eq!(remind(&t).await, 0);
    t.app.clock().advance(DAY_MS);
    assert_eq!(remind(&t).await, 0);

    t.app.clock().advance(2 * DAY_MS);
    assert_eq!(remind(&t).await, 1, "due today");
    assert_eq!(remind(&t).await, 0);
    let m = outbox(&t, &phone).await;
    assert_eq!(templates(&m), ["payment_due_soon", "payment_due_today"]);

    // The retailer's language setting wins from now on.
    let r2 = t
        .client
        .patch(t.url(&format!("/api/v1/retailers/{r}")))
        .json(&json!({ "language": "ne" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r2.status(), 200);
    t.app.clock().advance(6 * DAY_MS);
    assert_eq!(remind(&t).await, 0, "6 days after: nothing");
    t.app.clock().advance(DAY_MS);
    assert_eq!(remind(&t).await, 1, "7 days after, still unpaid");
    let m = outbox(&t, &phone).await;
    assert_eq!(
        templates(&m),
        ["payment_due_soon", "payment_due_today", "payment_overdue"]
    );
    assert_eq!(m[2].1, "ne");
    assert!(
        m[2].2.contains(&reference(open)) && m[2].2.contains("NPR 565.00"),
        "{}",
        m[2].2
    );
    assert!(m[2].2.contains("बाँकी"), "{}", m[2].2);

    // Paid: no more reminders, even for a kind not yet sent.
    pay(&t, r, 56_500, "cash-2", t.app.clock().now_ms()).await;
    t.app.clock().advance(DAY_MS);
    assert_eq!(remind(&t).await, 0);
}

#[tokio::test]
async fn the_overdue_warning_the_block_and_a_limit_cut_are_told_to_the_retailer_once() {
    let t = TestApp::spawn().await;
    let cfg = t.app.settings().credit.clone();
    let t0 = t.app.clock().now_ms();
    let (r, phone) = retailer(&t, 10_000_000, t0 - 400 * DAY_MS).await;
    // Three late payments: the limit is cut.
    for i in 0..3 {
        let at = t0 - (300 - i * 40) * DAY_MS;
        delivered(&t, r, 100_000, at).await;
        pay(&t, r, 100_000, &format!("late-{i}"), at + 50 * DAY_MS).await;
    }
    // A debit due 30 days after delivery, unpaid.
    delivered(&t, r, 80_000, t0 - 30 * DAY_MS).await;
    scoring::controls_one(t.app.db(), &cfg, r, t0 + 10 * DAY_MS)
        .await
        .unwrap();
    let m = outbox(&t, &phone).await;
    assert_eq!(templates(&m), ["credit_limit_cut"], "{m:?}");
    assert_eq!(
        m[0].2,
        "After 3 late payments in a row, your credit limit is now NPR 75,000.00 (it was NPR 100,000.00). Paying on time raises it again."
    );
    scoring::controls_one(t.app.db(), &cfg, r, t0 + 16 * DAY_MS)
        .await
        .unwrap();
    let m = outbox(&t, &phone).await;
    assert_eq!(
        templates(&m),
        ["credit_limit_cut", "credit_overdue_warning"]
    );
    assert!(
        m[1].2
            .starts_with("A payment of yours is 16 days overdue. At 30 days"),
        "{}",
        m[1].2
    );
    // The alert again a day later (operators see it daily); the retailer is told once.
    scoring::controls_one(t.app.db(), &cfg, r, t0 + 17 * DAY_MS + 1)
        .await
        .unwrap();
    assert_eq!(outbox(&t, &phone).await.len(), 2);
    scoring::controls_one(t.app.db(), &cfg, r, t0 + 31 * DAY_MS)
        .await
        .unwrap();
    let m = outbox(&t, &phone).await;
    assert_eq!(
        templates(&m),
        [
            "credit_limit_cut",
            "credit_overdue_warning",
            "credit_blocked"
        ]
    );
    assert!(m[2].2.contains("31 days overdue"), "{}", m[2].2);
    scoring::controls_one(t.app.db(), &cfg, r, t0 + 33 * DAY_MS)
        .await
        .unwrap();
    assert_eq!(outbox(&t, &phone).await.len(), 3, "blocked once");
    // Recorded for the sweep (no send job without Twilio).
    assert!(
        crate::channels::messages(&t, &phone)
            .await
            .iter()
            .all(|m| m["status"] == "queued")
    );
}

/// A mock e-mail API (SendGrid's v3 mail send) answering 202 with a message id.
async fn mail_api() -> wiremock::MockServer {
    use wiremock::matchers::{header, method, path};
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("authorization", "Bearer SG.test-key"))
        .respond_with(wiremock::ResponseTemplate::new(202).insert_header("x-message-id", "sg-0001"))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn a_retailer_with_an_email_address_gets_its_reminders_by_email_through_the_mail_api() {
    let server = mail_api().await;
    let base = server.uri();
    let t = TestApp::spawn_with(move |s| {
        s.channels.email_api_url = base;
        s.channels.email_api_key = Some("SG.test-key".into());
        s.channels.email_from = Some("orders@khaacho.example".into());
    })
    .await;
    let now = t.app.clock().now_ms();
    let (r, phone) = retailer(&t, 10_000_000, now - 400 * DAY_MS).await;
    let patch = |body: Value| {
        let url = t.url(&format!("/api/v1/retailers/{r}"));
        let client = t.client.clone();
        async move { client.patch(url).json(&body).send().await.unwrap() }
    };
    for bad in [
        "gita",
        "gita@",
        "@example.com",
        "gita @example.com",
        "gita@example",
    ] {
        let p = crate::helpers::assert_problem(patch(json!({ "email": bad })).await, 422).await;
        assert_eq!(p["errors"][0]["field"], "email", "{bad}: {p}");
    }
    let after: Value = patch(json!({ "email": " gita@example.com " }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["email"], "gita@example.com");
    assert_eq!(
        t.get_json(&format!("/api/v1/retailers/{r}")).await["email"],
        "gita@example.com"
    );

    let order = delivered(&t, r, 56_500, now).await;
    t.app.clock().advance(27 * DAY_MS);
    assert_eq!(remind(&t).await, 2, "the text message and the e-mail");
    assert_eq!(remind(&t).await, 0, "once each");
    t.run_jobs().await;
    let mails = crate::channels::messages(&t, "gita@example.com").await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(
        (
            mails[0]["channel"].as_str(),
            mails[0]["status"].as_str(),
            mails[0]["provider_sid"].as_str()
        ),
        (Some("email"), Some("sent"), Some("sg-0001"))
    );
    // Twilio is not configured: the text message is recorded, not sent.
    let texts = outbox(&t, &phone).await;
    assert_eq!(templates(&texts), ["payment_due_soon"]);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        sent["personalizations"][0]["to"][0]["email"],
        "gita@example.com"
    );
    assert_eq!(sent["from"]["email"], "orders@khaacho.example");
    let body = sent["content"][0]["value"].as_str().unwrap();
    assert_eq!(body, mails[0]["body"].as_str().unwrap());
    assert!(body.contains(&reference(order)), "{body}");
    assert!(
        sent["subject"]
            .as_str()
            .unwrap()
            .starts_with("Khaacho: Reminder: NPR 565.00"),
        "{sent}"
    );
    // Removing the address: nothing more is e-mailed.
    let after: Value = patch(json!({ "email": "" })).await.json().await.unwrap();
    assert!(after["email"].is_null(), "{after}");
}

#[tokio::test]
async fn without_an_email_key_the_outbox_records_the_email_and_sends_nothing() {
    let t = TestApp::spawn().await;
    // Noon in Nepal: the reminders count Nepal days, and no midnight falls within the test.
    t.clock_to_nepal_minute(720);
    let now = t.app.clock().now_ms();
    let (r, _) = retailer(&t, 10_000_000, now - 400 * DAY_MS).await;
    let resp = t
        .client
        .patch(t.url(&format!("/api/v1/retailers/{r}")))
        .json(&json!({ "email": "gita@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    delivered(&t, r, 56_500, now).await;
    t.app.clock().advance(30 * DAY_MS);
    assert_eq!(remind(&t).await, 2);
    t.run_jobs().await;
    khaacho::channels::outbox::sweep(&t.app, t.app.clock().now_ms())
        .await
        .unwrap();
    let mails = crate::channels::messages(&t, "gita@example.com").await;
    assert_eq!(mails.len(), 1);
    assert_eq!(
        (
            mails[0]["template"].as_str(),
            mails[0]["status"].as_str(),
            mails[0]["attempts"].as_i64()
        ),
        (Some("payment_due_today"), Some("queued"), Some(0))
    );
    // The sweep asks only for what it can send: e-mails never crowd out text messages.
    let id: Uuid = mails[0]["id"].as_str().unwrap().parse().unwrap();
    let now = t.app.clock().now_ms();
    let due = |twilio, email| khaacho::channels::repo::due(t.app.db(), now, 200, twilio, email);
    assert!(!due(true, false).await.unwrap().contains(&id));
    assert!(due(false, true).await.unwrap().contains(&id));
}
