//! The daily scoring and the hourly controls, driven with an explicit clock: scores with
//! their factors and bands, automatic limit changes at most once per 30 days, late-payment
//! cuts, the overdue warning and block, alerts at most once per 24 h and their
//! acknowledgement. Both backends.

use khaacho::auth::Role;
use khaacho::credit::ledger::{self, Reserve};
use khaacho::credit::payments::{self, Method};
use khaacho::credit::{repo, scoring};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_problem, audit_rows};

const DAY_MS: i64 = 86_400_000;
const T0: i64 = 1_800_000_000_000;

/// Delivers an order of `amount` for `retailer` at `at` (a hold, then its posting).
pub(crate) async fn delivered(t: &TestApp, retailer: Uuid, amount: i64, at: i64) -> Uuid {
    let order = Uuid::now_v7();
    let mut tx = t.app.db().begin().await.unwrap();
    assert_eq!(
        ledger::reserve(&mut tx, retailer, order, amount)
            .await
            .unwrap(),
        Reserve::Reserved
    );
    ledger::post_delivery(&mut tx, order, amount, at)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    order
}

pub(crate) async fn pay(t: &TestApp, retailer: Uuid, amount: i64, reference: &str, at: i64) {
    let rules = khaacho_credit::CreditSettings::default();
    let mut tx = t.app.db().begin().await.unwrap();
    payments::record_at(
        &mut tx,
        retailer,
        amount,
        Method::Cash,
        reference,
        "test",
        &rules,
        at,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn account(t: &TestApp, retailer: Uuid) -> repo::AccountRow {
    repo::account(t.app.db(), retailer).await.unwrap().unwrap()
}

async fn alerts(t: &TestApp, retailer: Uuid) -> Vec<Value> {
    t.get_json(&format!(
        "/api/v1/credit/alerts?retailer_id={retailer}&limit=200"
    ))
    .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn open_account(t: &TestApp, limit: i64, opened_at: i64) -> Uuid {
    let retailer: Uuid = t.retailer().await.parse().unwrap();
    let mut tx = t.app.db().begin().await.unwrap();
    repo::ensure_accounts(&mut tx, &[retailer], limit)
        .await
        .unwrap();
    repo::set_opened_at(&mut tx, retailer, opened_at)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    retailer
}

#[tokio::test]
async fn three_late_payments_cut_the_limit_once_and_raise_one_alert() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let cfg = t.app.settings().credit.clone();
    let r = open_account(&t, 10_000_000, T0 - 400 * DAY_MS).await;
    // Three debits, each paid 20 days after its due date (late: grace is 7 days).
    for i in 0..3 {
        let at = T0 - (200 - i * 40) * DAY_MS;
        delivered(&t, r, 100_000, at).await;
        pay(&t, r, 100_000, &format!("late-{i}"), at + 50 * DAY_MS).await;
    }
    assert_eq!(account(&t, r).await.late_streak, 3);
    scoring::controls_one(t.app.db(), &cfg, r, T0)
        .await
        .unwrap();
    let a = account(&t, r).await;
    assert_eq!(a.limit_paisa, 7_500_000, "-25%");
    assert_eq!(a.late_streak, 0, "the streak starts again after a cut");
    let cut: Vec<_> = alerts(&t, r)
        .await
        .into_iter()
        .filter(|a| a["kind"] == "late_payment_cut")
        .collect();
    assert_eq!(cut.len(), 1);
    // The next hour changes nothing more.
    scoring::controls_one(t.app.db(), &cfg, r, T0 + 3_600_000)
        .await
        .unwrap();
    assert_eq!(account(&t, r).await.limit_paisa, 7_500_000);
}

#[tokio::test]
async fn overdue_debits_warn_at_15_days_and_block_at_30() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let cfg = t.app.settings().credit.clone();
    let r = open_account(&t, 500_000, T0 - 100 * DAY_MS).await;
    // Due 30 days after delivery.
    delivered(&t, r, 80_000, T0 - 30 * DAY_MS).await;
    scoring::controls_one(t.app.db(), &cfg, r, T0 + 10 * DAY_MS)
        .await
        .unwrap();
    assert!(
        alerts(&t, r).await.is_empty(),
        "10 days overdue: nothing yet"
    );
    scoring::controls_one(t.app.db(), &cfg, r, T0 + 16 * DAY_MS)
        .await
        .unwrap();
    let seen = alerts(&t, r).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["kind"], "overdue_warning");
    assert_eq!(seen[0]["severity"], "warning");
    // Within 24 hours the same alert is not raised again; a day later it is.
    scoring::controls_one(t.app.db(), &cfg, r, T0 + 16 * DAY_MS + 3_600_000)
        .await
        .unwrap();
    assert_eq!(alerts(&t, r).await.len(), 1);
    scoring::controls_one(t.app.db(), &cfg, r, T0 + 17 * DAY_MS + 1)
        .await
        .unwrap();
    assert_eq!(alerts(&t, r).await.len(), 2);
    scoring::controls_one(t.app.db(), &cfg, r, T0 + 31 * DAY_MS)
        .await
        .unwrap();
    assert_eq!(account(&t, r).await.status, "blocked");
    let block: Vec<_> = alerts(&t, r)
        .await
        .into_iter()
        .filter(|a| a["kind"] == "overdue_block")
        .collect();
    assert_eq!(block.len(), 1);
    assert_eq!(block[0]["severity"], "critical");
    // Operators acknowledge it, once.
    let id = block[0]["id"].as_str().unwrap();
    let ack = t
        .post_json(
            &format!("/api/v1/credit/alerts/{id}/acknowledge"),
            &json!({}),
        )
        .await;
    assert_eq!(ack.status(), 204);
    let open = t
        .get_json(&format!("/api/v1/credit/alerts?retailer_id={r}&open=true"))
        .await;
    assert!(
        open["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != id)
    );
    assert_problem(
        t.post_json(
            &format!("/api/v1/credit/alerts/{}/acknowledge", Uuid::now_v7()),
            &json!({}),
        )
        .await,
        404,
    )
    .await;
    // Audited with the acknowledgement, once: the unknown alert left no row.
    let rows = audit_rows(&t, "action=credit.alert_ack").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["entity_id"], id);
}

#[tokio::test]
async fn scores_show_their_factors_and_bands_move_limits_once_per_30_days() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let cfg = t.app.settings().credit.clone();
    let r = open_account(&t, 200_000, T0 - 800 * DAY_MS).await;
    // Two years of small orders paid early: an excellent payer.
    for i in 0..8 {
        let at = T0 - (300 - i * 30) * DAY_MS;
        delivered(&t, r, 20_000, at).await;
        pay(&t, r, 20_000, &format!("ok-{i}"), at + 10 * DAY_MS).await;
    }
    scoring::score_one(t.app.db(), &cfg, r, T0).await.unwrap();
    let report = t
        .get_json(&format!("/api/v1/credit/accounts/{r}/score"))
        .await;
    let current = &report["current"];
    assert!(current["has_history"].as_bool().unwrap());
    let factors = current["factors"].as_array().unwrap();
    assert_eq!(factors.len(), 5, "{factors:?}");
    let weights: u64 = factors
        .iter()
        .map(|f| f["weight_pct"].as_u64().unwrap())
        .sum();
    assert_eq!(weights, 100);
    let score = current["score"].as_i64().unwrap();
    let a = account(&t, r).await;
    assert_eq!(a.score, Some(score as i32));
    let band = a.band.clone().unwrap();
    let step = match band.as_str() {
        "excellent" => 240_000,
        "good" => 220_000,
        other => panic!("an early payer should rate well, got {other} ({score})"),
    };
    assert_eq!(a.limit_paisa, step, "the band's automatic increase");
    // Scored again within 30 days: no second change.
    scoring::score_one(t.app.db(), &cfg, r, T0 + 5 * DAY_MS)
        .await
        .unwrap();
    assert_eq!(account(&t, r).await.limit_paisa, step);
    let report = t
        .get_json(&format!("/api/v1/credit/accounts/{r}/score"))
        .await;
    assert_eq!(report["history"].as_array().unwrap().len(), 1);

    // A new retailer is scored on neutral factors and its limit does not move.
    let fresh: Uuid = t.get_json("/api/v1/retailers?limit=3").await["items"][2]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut tx = t.app.db().begin().await.unwrap();
    repo::ensure_accounts(&mut tx, &[fresh], 100_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    scoring::score_one(t.app.db(), &cfg, fresh, T0)
        .await
        .unwrap();
    let a = account(&t, fresh).await;
    assert_eq!(a.limit_paisa, 100_000);
    let report = t
        .client_as(Role::Retailer, Some(fresh))
        .get(t.url(&format!("/api/v1/credit/accounts/{fresh}/score")))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(report["current"]["has_history"], false);
}
