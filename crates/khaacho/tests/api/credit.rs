//! Credit and risk: the ledger cannot overspend under concurrency, postings are idempotent,
//! payments are allocated oldest due first, random histories stay reconciled, and the API
//! refuses bad input without writing anything. Both backends.

use khaacho::auth::Role;
use khaacho::credit::ledger::{self, Reserve};
use khaacho::credit::payments::{self, Method};
use khaacho::credit::repo;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_problem, commit_once_waited_for};

const DAY_MS: i64 = 86_400_000;

/// The total (paisa) of one order of `lines`, measured with a cash order.
async fn order_total(t: &TestApp, retailer: &str, lines: &Value) -> i64 {
    let r = t
        .post_json(
            "/api/v1/orders",
            &json!({ "retailer_id": retailer, "lines": lines, "payment_mode": "cash" }),
        )
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    t.run_jobs().await;
    let o = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(o["status"], "routed", "{o}");
    assert!(
        o.get("credit_hold").is_none(),
        "a cash order reserves nothing"
    );
    (o["totals"]["total_npr"].as_f64().unwrap() * 100.0).round() as i64
}

async fn set_limit(t: &TestApp, retailer: &str, paisa: i64) -> reqwest::Response {
    t.client_as(Role::Admin, None)
        .put(t.url(&format!("/api/v1/credit/accounts/{retailer}/limit")))
        .json(&json!({ "limit_npr": paisa as f64 / 100.0, "reason": "test" }))
        .send()
        .await
        .unwrap()
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
    assert!(r["accounts"].as_u64().unwrap() > 0);
    assert_eq!(r["drift"], json!([]), "{r}");
}

#[tokio::test]
async fn fifty_parallel_orders_against_an_account_that_fits_ten() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let lines = json!([{ "sku": "SUGAR-50", "qty": 5, "unit": "kg" }]);
    let total = order_total(&t, &retailer, &lines).await;
    let limit = 10 * total + total / 2;
    assert_eq!(set_limit(&t, &retailer, limit).await.status(), 200);

    let mut handles = Vec::new();
    for _ in 0..50 {
        let (client, url) = (t.client.clone(), t.url("/api/v1/orders"));
        let body = json!({ "retailer_id": retailer, "lines": lines });
        handles.push(tokio::spawn(async move {
            client.post(url).json(&body).send().await.unwrap().status()
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), 202);
    }
    // Several workers at once, as in production.
    let drains: Vec<_> = (0..4)
        .map(|_| {
            let app = t.app.clone();
            tokio::spawn(async move {
                khaacho::queue::runtime::drain(&app, &khaacho::jobs::registry())
                    .await
                    .unwrap()
            })
        })
        .collect();
    for d in drains {
        d.await.unwrap();
    }
    t.run_jobs().await;

    let account = t
        .get_json(&format!("/api/v1/credit/accounts/{retailer}"))
        .await;
    let held = (account["held_npr"].as_f64().unwrap() * 100.0).round() as i64;
    assert!(held <= limit, "held {held} exceeds the limit {limit}");
    assert_eq!(held, 10 * total, "exactly the orders that fit are reserved");
    let orders = t
        .get_json(&format!("/api/v1/orders?retailer_id={retailer}&limit=200"))
        .await;
    let items = orders["items"].as_array().unwrap();
    assert_eq!(items.len(), 51);
    let over = items
        .iter()
        .filter(|o| o["hold_reason"] == "credit_limit")
        .count();
    assert_eq!(over, 40, "the rest wait for a person with credit_limit");
    assert_eq!(
        t.count("credit_holds").await,
        10,
        "one pending hold per reserved order, none for the others"
    );
    reconciled(&t).await;
}

/// PostgreSQL: the validation run judges credit on the accounts as it first reads them,
/// unlocked, and locks them only at its end, after routing. An account changed meanwhile by
/// another transaction (here one the test holds open, which the run's lock waits for) is
/// judged again as locked: an order that did not fit but now does is reserved and routed, an
/// order that fitted but no longer does is held and reserves nothing — each as if the account
/// had been locked from the start, nothing of the first judgement kept.
#[tokio::test]
async fn credit_is_judged_again_on_accounts_that_changed_before_the_run_locked_them() {
    let t = TestApp::spawn().await;
    if !t.app.db().is_postgres() {
        return; // SQLite: the run holds the write lock from its first write to its commit.
    }
    t.seed().await;
    let retailer = t.retailer().await;
    let lines = json!([{ "sku": "SUGAR-50", "qty": 5, "unit": "kg" }]);
    let total = order_total(&t, &retailer, &lines).await;
    let rid: Uuid = retailer.parse().unwrap();
    let pool = sqlx::PgPool::connect(&t.database_url).await.unwrap();
    let committed = async || -> i64 {
        sqlx::query_scalar(
            "SELECT held_paisa + outstanding_paisa FROM credit_accounts WHERE retailer_id = $1",
        )
        .bind(rid)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let set = async |limit: i64| {
        sqlx::query("UPDATE credit_accounts SET limit_paisa = $1 WHERE retailer_id = $2")
            .bind(limit)
            .bind(rid)
            .execute(&pool)
            .await
            .unwrap();
    };
    // Runs the order's validation while another transaction, holding the account, changes
    // its limit to `limit`; that transaction commits once the run waits for the account.
    let run_while_the_limit_becomes = async |limit: i64| {
        let mut other = pool.begin().await.unwrap();
        let pid: i32 = sqlx::query_scalar(
            "UPDATE credit_accounts SET limit_paisa = $1 WHERE retailer_id = $2 RETURNING pg_backend_pid()",
        )
        .bind(limit)
        .bind(rid)
        .fetch_one(&mut *other)
        .await
        .unwrap();
        let let_go = commit_once_waited_for(&pool, other, pid, "the validation run");
        tokio::join!(t.run_jobs(), let_go);
    };
    let place = async || {
        let placed = t.order(&retailer, lines.clone()).await;
        placed["order_id"].as_str().unwrap().to_string()
    };

    // Does not fit as first read; the limit rises before the run locks the account.
    let before = committed().await;
    set(before + total / 2).await;
    let first = place().await;
    run_while_the_limit_becomes(before + 2 * total).await;
    let o = t.get_json(&format!("/api/v1/orders/{first}")).await;
    assert_eq!(o["status"], "routed", "{o}");
    assert_eq!(o["credit_hold"]["status"], "pending", "{o}");
    let path: Vec<&str> = o["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["received", "validated", "routed"], "{o}");
    assert_eq!(committed().await, before + total);

    // Fits as first read; the limit falls before the run locks the account.
    let second = place().await;
    run_while_the_limit_becomes(before + total + total / 2).await;
    let o = t.get_json(&format!("/api/v1/orders/{second}")).await;
    assert_eq!(o["status"], "on_hold", "{o}");
    assert_eq!(o["hold_reason"], "credit_limit", "{o}");
    assert!(o.get("credit_hold").is_none(), "{o}");
    assert!(
        o["fulfilments"].as_array().unwrap().is_empty(),
        "nothing routed on the first judgement is kept: {o}"
    );
    assert_eq!(committed().await, before + total, "nothing more reserved");
    assert_eq!(t.metric("khaacho_credit_redecided_total").await, Some(2.0));
    pool.close().await;
    reconciled(&t).await;
}

#[tokio::test]
async fn postings_are_idempotent_and_payments_go_to_the_oldest_debit_first() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer: Uuid = t.retailer().await.parse().unwrap();
    let rules = khaacho_credit::CreditSettings::default();
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let day0 = 1_800_000_000_000;
    let mut tx = t.app.db().begin().await.unwrap();
    repo::ensure_accounts(&mut tx, &[retailer], 100_000)
        .await
        .unwrap();
    assert_eq!(
        ledger::reserve(&mut tx, retailer, a, 40_000).await.unwrap(),
        Reserve::Reserved
    );
    assert_eq!(
        ledger::reserve(&mut tx, retailer, a, 40_000).await.unwrap(),
        Reserve::AlreadyHeld
    );
    assert_eq!(
        ledger::reserve(&mut tx, retailer, b, 50_000).await.unwrap(),
        Reserve::Reserved
    );
    assert_eq!(
        ledger::reserve(&mut tx, retailer, c, 20_000).await.unwrap(),
        Reserve::OverLimit
    );

    // A short delivery posts what was delivered and releases the rest of the hold.
    let first = ledger::post_delivery(&mut tx, a, 30_000, day0)
        .await
        .unwrap();
    assert!(first.new);
    assert_eq!(first.entry.due_at_ms, Some(day0 + 30 * DAY_MS));
    let again = ledger::post_delivery(&mut tx, a, 30_000, day0)
        .await
        .unwrap();
    assert!(!again.new);
    assert_eq!(again.entry.id, first.entry.id);
    assert!(
        !ledger::void(&mut tx, a).await.unwrap(),
        "a posted hold cannot be voided"
    );
    ledger::post_delivery(&mut tx, b, 50_000, day0 + DAY_MS)
        .await
        .unwrap();
    let acc = repo::account_tx(&mut tx, retailer).await.unwrap().unwrap();
    assert_eq!((acc.held_paisa, acc.outstanding_paisa), (0, 80_000));

    // 40,000 pays the older debit (30,000) fully and 10,000 of the next.
    let paid = payments::record(
        &mut tx,
        retailer,
        40_000,
        Method::Bank,
        "rcpt-1",
        "test",
        &rules,
    )
    .await
    .unwrap();
    assert_eq!(paid.applied.len(), 2);
    assert_eq!(paid.applied[0], (first.entry.id, 30_000));
    assert_eq!(paid.applied[1].1, 10_000);
    // The same reference and amount is a replay; another amount is refused.
    assert!(
        !payments::record(
            &mut tx,
            retailer,
            40_000,
            Method::Bank,
            "rcpt-1",
            "test",
            &rules
        )
        .await
        .unwrap()
        .new
    );
    assert!(
        payments::record(&mut tx, retailer, 1, Method::Bank, "rcpt-1", "test", &rules)
            .await
            .is_err()
    );
    // Overpaying leaves a credit balance, which settles the next delivery first.
    let over = payments::record(
        &mut tx,
        retailer,
        50_000,
        Method::Cash,
        "rcpt-2",
        "test",
        &rules,
    )
    .await
    .unwrap();
    assert_eq!(over.unapplied, 10_000);
    assert_eq!(
        ledger::reserve(&mut tx, retailer, c, 20_000).await.unwrap(),
        Reserve::Reserved
    );
    let third = ledger::post_delivery(&mut tx, c, 20_000, day0 + 2 * DAY_MS)
        .await
        .unwrap();
    assert_eq!(third.entry.open_paisa, Some(10_000));
    // Cancelled after delivery: a reversing credit, once.
    let rev = ledger::reverse_after_delivery(&mut tx, c, 20_000, "returned")
        .await
        .unwrap();
    assert!(rev.new);
    assert_eq!(rev.entry.amount_paisa, -20_000);
    assert!(
        !ledger::reverse_after_delivery(&mut tx, c, 20_000, "returned")
            .await
            .unwrap()
            .new
    );
    let acc = repo::account_tx(&mut tx, retailer).await.unwrap().unwrap();
    assert_eq!(acc.outstanding_paisa, 0);
    assert_eq!(acc.credit_balance_paisa, 10_000);
    assert_eq!(rev.entry.balance_paisa, -10_000);
    tx.commit().await.unwrap();
    reconciled(&t).await;
}

/// Many deliveries posted in one call (the part actions' batch) come out as posting them one
/// after another would: each account's entries numbered on from its last, running balances
/// chained, a credit balance settling the first debits, an order named twice posted once, and
/// one refused order refusing the whole call.
#[tokio::test]
async fn many_deliveries_posted_at_once_chain_like_one_by_one() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let list = t.get_json("/api/v1/retailers?limit=2").await;
    let (ra, rb): (Uuid, Uuid) = (
        list["items"][0]["id"].as_str().unwrap().parse().unwrap(),
        list["items"][1]["id"].as_str().unwrap().parse().unwrap(),
    );
    let rules = khaacho_credit::CreditSettings::default();
    let (a1, a2, b1, b2) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let day0 = 1_800_000_000_000;
    let mut tx = t.app.db().begin().await.unwrap();
    repo::ensure_accounts(&mut tx, &[ra, rb], 1_000_000)
        .await
        .unwrap();
    // B paid 30,000 in advance.
    payments::record(&mut tx, rb, 30_000, Method::Cash, "adv", "test", &rules)
        .await
        .unwrap();
    for (r, o, amount) in [
        (ra, a1, 10_000),
        (ra, a2, 5_000),
        (rb, b1, 20_000),
        (rb, b2, 40_000),
    ] {
        assert_eq!(
            ledger::reserve(&mut tx, r, o, amount).await.unwrap(),
            Reserve::Reserved
        );
    }
    let before_a = repo::account_tx(&mut tx, ra).await.unwrap().unwrap();
    let before_b = repo::account_tx(&mut tx, rb).await.unwrap().unwrap();
    tx.commit().await.unwrap();

    // One refused order (no hold) refuses the call: nothing is written.
    let mut tx = t.app.db().begin().await.unwrap();
    let refused =
        ledger::post_deliveries(&mut tx, &[(a1, 10_000), (Uuid::now_v7(), 1)], day0).await;
    assert!(
        matches!(refused, Err(ledger::LedgerError::NoHold)),
        "{refused:?}"
    );
    drop(tx);
    let mut tx = t.app.db().begin().await.unwrap();
    assert!(
        repo::entry_for_order(&mut tx, a1, "order_debit")
            .await
            .unwrap()
            .is_none()
    );
    let too_much = ledger::post_deliveries(&mut tx, &[(a1, 10_000), (b1, 20_001)], day0).await;
    assert!(
        matches!(too_much, Err(ledger::LedgerError::TooMuch(_))),
        "{too_much:?}"
    );
    drop(tx);

    let mut tx = t.app.db().begin().await.unwrap();
    let posted = ledger::post_deliveries(
        &mut tx,
        &[
            (a1, 8_000),
            (b1, 20_000),
            (a2, 5_000),
            (b2, 40_000),
            (a1, 8_000),
        ],
        day0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        posted.iter().map(|p| p.new).collect::<Vec<_>>(),
        [true, true, true, true, false]
    );
    assert_eq!(posted[4].entry.id, posted[0].entry.id, "a1 posted once");
    let (pa1, pb1, pa2, pb2) = (
        &posted[0].entry,
        &posted[1].entry,
        &posted[2].entry,
        &posted[3].entry,
    );
    assert_eq!(
        (pa1.seq, pa2.seq),
        (before_a.last_seq + 1, before_a.last_seq + 2)
    );
    assert_eq!(
        (pb1.seq, pb2.seq),
        (before_b.last_seq + 1, before_b.last_seq + 2)
    );
    let balance_a = before_a.outstanding_paisa - before_a.credit_balance_paisa;
    assert_eq!(
        (pa1.balance_paisa, pa2.balance_paisa),
        (balance_a + 8_000, balance_a + 13_000)
    );
    // B's 30,000 in advance settles b1 whole and 10,000 of b2.
    assert_eq!((pb1.open_paisa, pb1.paid_at_ms), (Some(0), Some(day0)));
    assert_eq!((pb2.open_paisa, pb2.paid_at_ms), (Some(30_000), None));
    assert_eq!(
        pa1.due_at_ms,
        Some(day0 + i64::from(before_a.terms_days) * DAY_MS)
    );
    let mut tx = t.app.db().begin().await.unwrap();
    let after_a = repo::account_tx(&mut tx, ra).await.unwrap().unwrap();
    let after_b = repo::account_tx(&mut tx, rb).await.unwrap().unwrap();
    // The holds are released whole (a1's short delivery included).
    assert_eq!(after_a.held_paisa, before_a.held_paisa - 15_000);
    assert_eq!(
        after_a.outstanding_paisa,
        before_a.outstanding_paisa + 13_000
    );
    assert_eq!(after_b.held_paisa, before_b.held_paisa - 60_000);
    assert_eq!(
        (after_b.outstanding_paisa, after_b.credit_balance_paisa),
        (
            before_b.outstanding_paisa + 30_000,
            before_b.credit_balance_paisa - 30_000
        )
    );
    assert_eq!(
        (after_a.last_seq, after_b.last_seq),
        (before_a.last_seq + 2, before_b.last_seq + 2)
    );
    assert_eq!(
        repo::hold(&mut tx, a1).await.unwrap().unwrap().posted_paisa,
        Some(8_000)
    );
    // Again: every order already posted, nothing new.
    let again = ledger::post_deliveries(&mut tx, &[(b2, 40_000), (a2, 5_000)], day0)
        .await
        .unwrap();
    assert!(again.iter().all(|p| !p.new));
    assert_eq!((again[0].entry.id, again[1].entry.id), (pb2.id, pa2.id));
    tx.commit().await.unwrap();
    reconciled(&t).await;
}

/// One random history: orders reserved (or refused), delivered in full or short, voided,
/// reversed, paid partly or more than owed, limits changed. After every step the account
/// is checked against a reference model and, at the end, against its own ledger.
async fn random_history(t: &TestApp, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rules = khaacho_credit::CreditSettings::default();
    let retailer: Uuid = t.retailer().await.parse().unwrap();
    let mut model = khaacho_credit::AccountModel::new(500_000, 30).unwrap();
    let mut tx = t.app.db().begin().await.unwrap();
    repo::ensure_accounts(&mut tx, &[retailer], 500_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut orders: Vec<(u64, Uuid)> = Vec::new();
    let mut at = 1_800_000_000_000_i64;
    for step in 0..40u64 {
        at += rng.random_range(0..5) * DAY_MS;
        let mut tx = t.app.db().begin().await.unwrap();
        match rng.random_range(0..6) {
            0 | 1 => {
                let (n, id) = (step, Uuid::now_v7());
                let amount = rng.random_range(1..=200_000);
                let got = ledger::reserve(&mut tx, retailer, id, amount)
                    .await
                    .unwrap();
                let want = model.hold(n, amount);
                assert_eq!(
                    got == Reserve::Reserved,
                    want.is_ok(),
                    "seed {seed} step {step}: {got:?} vs {want:?}"
                );
                if got == Reserve::Reserved {
                    orders.push((n, id));
                }
            }
            2 if !orders.is_empty() => {
                let (n, id) = orders[rng.random_range(0..orders.len())];
                let held = repo::hold(&mut tx, id).await.unwrap().unwrap();
                let delivered = rng.random_range(1..=held.amount_paisa);
                // A second posting of the same order is a no-op here and refused by the model.
                let got = ledger::post_delivery(&mut tx, id, delivered, at).await;
                let want = model.post(n, delivered, at);
                let changed = got.as_ref().is_ok_and(|p| p.new);
                assert_eq!(
                    changed,
                    want.is_ok(),
                    "seed {seed} step {step}: {got:?} vs {want:?}"
                );
            }
            3 if !orders.is_empty() => {
                let (n, id) = orders[rng.random_range(0..orders.len())];
                let got = ledger::void(&mut tx, id).await.unwrap();
                assert_eq!(got, model.void(n).is_ok(), "seed {seed} step {step}");
            }
            4 => {
                let amount = rng.random_range(1..=150_000);
                let reference = format!("ref-{seed}-{step}");
                payments::record(
                    &mut tx,
                    retailer,
                    amount,
                    Method::Wallet,
                    &reference,
                    "test",
                    &rules,
                )
                .await
                .unwrap();
                model.pay(amount, at).unwrap();
            }
            5 => {
                let limit = rng.random_range(0..=800_000);
                let got =
                    payments::set_limit(&mut tx, retailer, limit, "test", "test", &rules).await;
                let want = model.set_limit(limit, &rules);
                assert_eq!(
                    got.is_ok(),
                    want.is_ok(),
                    "seed {seed} step {step}: limit {limit}"
                );
            }
            _ => {}
        }
        tx.commit().await.unwrap();
        let mut tx = t.app.db().begin().await.unwrap();
        let acc = repo::account_tx(&mut tx, retailer).await.unwrap().unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(
            (
                acc.held_paisa,
                acc.outstanding_paisa,
                acc.credit_balance_paisa,
                acc.limit_paisa
            ),
            (
                model.held_paisa(),
                model.outstanding_paisa(),
                model.credit_balance_paisa(),
                model.limit_paisa()
            ),
            "seed {seed} step {step}"
        );
        assert!(
            acc.held_paisa + acc.outstanding_paisa
                <= acc.limit_paisa.max(acc.held_paisa + acc.outstanding_paisa)
        );
        model.check_invariants().unwrap();
    }
    let drift = ledger::reconcile(t.app.db()).await.unwrap();
    assert!(drift.is_empty(), "seed {seed}: {drift:?}");
}

#[tokio::test]
async fn random_histories_stay_reconciled_with_the_ledger() {
    for seed in 0..6 {
        let t = TestApp::spawn().await;
        t.seed().await;
        random_history(&t, seed).await;
    }
}

#[tokio::test]
async fn blocked_accounts_refuse_credit_and_an_approval_overrides_the_limit() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let lines = json!([{ "sku": "SUGAR-50", "qty": 5, "unit": "kg" }]);
    let total = order_total(&t, &retailer, &lines).await;
    assert_eq!(set_limit(&t, &retailer, total / 2).await.status(), 200);
    let held = t.order(&retailer, lines.clone()).await;
    t.run_jobs().await;
    let path = format!("/api/v1/orders/{}", held["order_id"].as_str().unwrap());
    let o = t.get_json(&path).await;
    assert_eq!(o["status"], "on_hold");
    assert_eq!(o["hold_reason"], "credit_limit");
    assert!(o.get("credit_hold").is_none());
    assert!(o["risk"]["score"].as_i64().is_some(), "{o}");
    // An operator approves past the limit: the hold is reserved and recorded as an override.
    let r = t
        .post_json(
            &format!("{path}/approve"),
            &json!({ "reason": "known shop" }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let o = t.get_json(&path).await;
    assert_eq!(o["status"], "validated");
    assert_eq!(o["credit_hold"]["status"], "pending");
    assert!(
        o["credit_hold"]["override_by"]
            .as_str()
            .unwrap()
            .starts_with("user:")
    );
    assert!(o["risk"]["score"].as_i64().is_some(), "{o}");
    // A hold on an order without an assessment (assessed under older rules) is still shown.
    let id: uuid::Uuid = held["order_id"].as_str().unwrap().parse().unwrap();
    khaacho::with_write!(t.app.db(), c => sqlx::query("DELETE FROM risk_assessments WHERE order_id = $1")
        .bind(id).execute(c).await.map(|_| ()))
    .unwrap();
    let o = t.get_json(&path).await;
    assert_eq!(o["credit_hold"]["status"], "pending", "{o}");
    assert!(o.get("risk").is_none(), "{o}");
    // Rejecting releases it.
    let r = t
        .post_json(
            &format!("{path}/reject"),
            &json!({ "reason": "changed mind" }),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(t.get_json(&path).await["credit_hold"]["status"], "voided");
    let account = t
        .get_json(&format!("/api/v1/credit/accounts/{retailer}"))
        .await;
    assert_eq!(account["held_npr"], 0.0);

    // Blocked: credit orders are refused, cash orders still go through.
    let admin = t.client_as(Role::Admin, None);
    let r = admin
        .post(t.url(&format!("/api/v1/credit/accounts/{retailer}/block")))
        .json(&json!({ "reason": "30 days overdue" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(set_limit(&t, &retailer, 10 * total).await.status(), 200);
    let refused = t.order(&retailer, lines.clone()).await;
    t.run_jobs().await;
    let o = t
        .get_json(&format!(
            "/api/v1/orders/{}",
            refused["order_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(o["status"], "rejected");
    assert_eq!(o["reject_reason"], "credit_blocked");
    order_total(&t, &retailer, &lines).await;
    reconciled(&t).await;
}

#[tokio::test]
async fn credit_routes_refuse_bad_input_and_write_nothing() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let pay = |body: Value| {
        let (c, url) = (
            t.client.clone(),
            t.url(&format!("/api/v1/credit/accounts/{retailer}/payments")),
        );
        async move { c.post(url).json(&body).send().await.unwrap() }
    };
    for amount in [0.0, -5.0, 1.234] {
        let p = assert_problem(
            pay(json!({ "amount_npr": amount, "method": "cash", "reference": "r1" })).await,
            422,
        )
        .await;
        assert_eq!(p["errors"][0]["field"], "amount_npr");
    }
    assert_problem(
        pay(json!({ "amount_npr": 10, "method": "gold", "reference": "r1" })).await,
        422,
    )
    .await;
    assert_problem(
        pay(json!({ "amount_npr": 10, "method": "cash" })).await,
        422,
    )
    .await;
    assert_eq!(t.count("payments").await, 0);
    let unknown = Uuid::now_v7();
    assert_problem(
        t.post_json(
            &format!("/api/v1/credit/accounts/{unknown}/payments"),
            &json!({ "amount_npr": 10, "method": "cash", "reference": "r1" }),
        )
        .await,
        404,
    )
    .await;
    // A shop that never ordered on credit has no account: its first payment opens one at
    // the default limit and is kept as credit balance.
    let new_shop: Value = t
        .post_json(
            "/api/v1/retailers",
            &json!({ "name": "Naya Pasal", "phone": "+9779800000077", "district": "Kathmandu" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let new_shop = new_shop["id"].as_str().unwrap();
    let path = format!("/api/v1/credit/accounts/{new_shop}");
    assert_problem(t.get(&path).await, 404).await;
    let paid = t
        .post_json(
            &format!("{path}/payments"),
            &json!({ "amount_npr": 250, "method": "wallet", "reference": "esewa-1" }),
        )
        .await;
    assert_eq!(paid.status(), 201);
    let paid: Value = paid.json().await.unwrap();
    assert_eq!(paid["unapplied_npr"], 250.0);
    assert_eq!(paid["account"]["credit_balance_npr"], 250.0);
    assert_eq!(paid["account"], t.get_json(&path).await);
    assert_eq!(t.count("payments").await, 1);

    let first = pay(json!({ "amount_npr": 100, "method": "bank", "reference": "r-7" })).await;
    assert_eq!(first.status(), 201);
    // The answer's account is the one the payment wrote, as a read after the commit sees it.
    let first: Value = first.json().await.unwrap();
    let account = t
        .get_json(&format!("/api/v1/credit/accounts/{retailer}"))
        .await;
    assert_eq!(first["account"], account);
    let replay = pay(json!({ "amount_npr": 100, "method": "bank", "reference": "r-7" })).await;
    assert_eq!(replay.status(), 200);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["account"], account);
    assert_eq!(replay["payment_id"], first["payment_id"]);
    assert_problem(
        pay(json!({ "amount_npr": 90, "method": "bank", "reference": "r-7" })).await,
        409,
    )
    .await;
    assert_eq!(t.count("payments").await, 2);

    // A limit below 1.2 × outstanding is refused.
    let rid: Uuid = retailer.parse().unwrap();
    let mut tx = t.app.db().begin().await.unwrap();
    let order = Uuid::now_v7();
    assert_eq!(
        ledger::reserve(&mut tx, rid, order, 50_000).await.unwrap(),
        Reserve::Reserved
    );
    ledger::post_delivery(&mut tx, order, 50_000, 1_800_000_000_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // 100 NPR of credit balance settled 100 of the 500 delivered: 400 outstanding, floor 480.
    let p = assert_problem(set_limit(&t, &retailer, 47_000).await, 422).await;
    assert_eq!(p["errors"][0]["field"], "limit_npr");
    assert_eq!(t.count("credit_changes").await, 0, "nothing written");
    assert_eq!(set_limit(&t, &retailer, 48_000).await.status(), 200);
    let r = t
        .client_as(Role::Admin, None)
        .put(t.url(&format!("/api/v1/credit/accounts/{retailer}/limit")))
        .json(&json!({ "limit_npr": 1000, "reason": " " }))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422).await;

    // A retailer sees its own account and ledger only; a vendor none.
    let own: Uuid = retailer.parse().unwrap();
    let me = t.client_as(Role::Retailer, Some(own));
    let ledger: Value = me
        .get(t.url(&format!("/api/v1/credit/accounts/{retailer}/ledger")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["items"].as_array().unwrap().len(), 2);
    let csv = me
        .get(t.url(&format!(
            "/api/v1/credit/accounts/{retailer}/ledger?format=csv"
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let other = Uuid::now_v7();
    assert_problem(
        me.get(t.url(&format!("/api/v1/credit/accounts/{other}")))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_problem(
        t.client_as(Role::Vendor, Some(Uuid::now_v7()))
            .get(t.url(&format!("/api/v1/credit/accounts/{retailer}")))
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    reconciled(&t).await;
}

#[tokio::test]
async fn the_demo_gives_retailers_varied_reconciled_credit_histories_once() {
    let t = TestApp::spawn().await;
    let report = khaacho::seed::demo_with_credit(&t.app).await.unwrap();
    let now = khaacho::base::time::now_ms();
    let retailers = t.get_json("/api/v1/retailers?limit=200").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(report.credit_accounts, retailers.len());

    // Every retailer has an account, scored at once;
    // most have a history in their ledger (and a band), a few none (unrated).
    let (mut with_history, mut without) = (0, 0);
    let mut bands = std::collections::BTreeSet::new();
    for id in &retailers {
        let a = t.get_json(&format!("/api/v1/credit/accounts/{id}")).await;
        let limit = a["limit_npr"].as_f64().unwrap();
        // Opened at NPR 50,000 – 1,000,000, then moved by the band (at most -20%, at most
        // NPR 1,000,000) when scored.
        assert!((40_000.0..=1_000_000.0).contains(&limit), "{a}");
        assert!(a["score"].is_i64(), "{a}");
        let ledger = t
            .get_json(&format!("/api/v1/credit/accounts/{id}/ledger"))
            .await;
        let empty = ledger["items"].as_array().unwrap().is_empty();
        assert_eq!(
            a["band"].is_null(),
            empty,
            "unrated exactly without history: {a}"
        );
        if let Some(b) = a["band"].as_str() {
            bands.insert(b.to_string());
        }
        if empty {
            without += 1;
        } else {
            with_history += 1;
        }
    }
    assert!(without >= 1, "a brand-new retailer without history");
    assert!(with_history >= retailers.len() - 5, "{with_history}");
    for band in ["excellent", "good", "fair", "very_poor"] {
        assert!(
            bands.contains(band),
            "the demo shows the {band} band: {bands:?}"
        );
    }
    let limits = t
        .count("(SELECT DISTINCT limit_paisa FROM credit_accounts) l")
        .await;
    assert!(limits >= 5, "varied limits: {limits}");

    // Every rule can be seen: a debit 30+ days overdue (block), one 15–29 days (warning),
    // a streak of late payments, debits paid late and on time.
    let overdue = |from: i64, to: i64| {
        format!(
            "ledger_entries WHERE kind = 'order_debit' AND open_paisa > 0 AND due_at_ms <= {} AND due_at_ms > {}",
            now - from * DAY_MS,
            now - to * DAY_MS
        )
    };
    assert!(t.count(&overdue(30, 10_000)).await >= 1, "a block");
    assert!(t.count(&overdue(15, 30)).await >= 1, "a warning");
    assert!(t.count("credit_accounts WHERE late_streak >= 3").await >= 1);
    let late =
        "ledger_entries WHERE kind = 'order_debit' AND paid_at_ms > due_at_ms + 7 * 86400000";
    assert!(t.count(late).await >= 10);
    assert!(
        t.count("ledger_entries WHERE kind = 'order_debit' AND paid_at_ms <= due_at_ms")
            .await
            >= 100
    );

    // The first two retailers are healthy: ample available credit and nothing overdue; the
    // first one's credit order goes through.
    for id in &retailers[..2] {
        let a = t.get_json(&format!("/api/v1/credit/accounts/{id}")).await;
        assert!(a["available_npr"].as_f64().unwrap() >= a["limit_npr"].as_f64().unwrap() / 2.0);
        let entries = repo::ledger(t.app.db(), id.parse().unwrap(), None, 1000)
            .await
            .unwrap();
        assert!(entries.len() > 50, "a long history");
        assert!(
            entries
                .iter()
                .all(|e| e.open_paisa.unwrap_or(0) == 0 || e.due_at_ms.unwrap() >= now),
            "nothing overdue: {a}"
        );
    }
    let placed = t
        .order(
            &retailers[0],
            json!([{ "sku": "SUGAR-50", "qty": 5, "unit": "kg" }]),
        )
        .await;
    t.run_jobs().await;
    let o = t
        .get_json(&format!(
            "/api/v1/orders/{}",
            placed["order_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(o["status"], "routed", "{o}");
    assert_eq!(o["credit_hold"]["status"], "pending", "{o}");
    reconciled(&t).await;

    // A second seed adds nothing.
    let tables = [
        "credit_accounts",
        "credit_holds",
        "ledger_entries",
        "payments",
    ];
    let mut before = Vec::new();
    for table in tables {
        before.push(t.count(table).await);
    }
    let again = khaacho::seed::demo_with_credit(&t.app).await.unwrap();
    assert_eq!(again.credit_accounts, 0);
    for (table, n) in tables.into_iter().zip(before) {
        assert_eq!(t.count(table).await, n, "{table}");
    }
    reconciled(&t).await;
}

/// The risk step's "orders in the last 7 days" comes from the daily counts the transition
/// service keeps as orders are created: every order counts once (whatever became of it),
/// only its retailer's, and only for 7 Nepal days.
#[tokio::test]
async fn orders_in_seven_days_are_counted_as_orders_are_created() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    // Read before the orders are placed: a Nepal midnight between the two would otherwise put
    // the orders on the day after `now`'s (the orders' days are their wall-clock creation's).
    let now = khaacho::base::time::now_ms();
    let lines = json!([{ "sku": "SUGAR-50", "qty": 1, "unit": "kg" }]);
    for mode in ["cash", "credit", "cash"] {
        let body = json!({ "retailer_id": retailer, "lines": lines, "payment_mode": mode });
        assert_eq!(t.post_json("/api/v1/orders", &body).await.status(), 202);
    }
    t.run_jobs().await;
    let id: Uuid = retailer.parse().unwrap();
    let other = Uuid::now_v7();
    let day = 86_400_000;
    let count = |at: i64| {
        let db = t.app.db().clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let b = khaacho::credit::risk::behaviour(&mut tx, &[id, other], at)
                .await
                .unwrap();
            (b[&id].orders_7d, b[&other].orders_7d)
        }
    };
    assert_eq!(count(now).await, (3, 0));
    assert_eq!(
        count(now + 6 * day).await,
        (3, 0),
        "still within the 7 days"
    );
    assert_eq!(count(now + 8 * day).await, (0, 0), "past them");
}

/// The credit step is idempotent per order: a run over an order that already holds credit (a
/// retried run; here the order is put back to `received` by hand and its job enqueued again)
/// reserves nothing twice and decides as before.
#[tokio::test]
async fn a_run_over_an_order_that_already_holds_credit_reserves_nothing_twice() {
    let t = TestApp::spawn_with(|s| s.pipeline.review_above_npr = 1).await;
    t.seed().await;
    let retailer = t.retailer().await;
    let lines = json!([{ "sku": "SUGAR-50", "qty": 5, "unit": "kg" }]);
    let placed = t.order(&retailer, lines).await;
    t.run_jobs().await;
    let id: Uuid = placed["order_id"].as_str().unwrap().parse().unwrap();
    let path = format!("/api/v1/orders/{id}");
    let held = |o: &Value| (o["status"].clone(), o["hold_reason"].clone());
    let account = format!("/api/v1/credit/accounts/{retailer}");
    let o = t.get_json(&path).await;
    assert_eq!(o["payment_mode"], "credit", "{o}");
    assert_eq!(
        held(&o),
        (json!("on_hold"), json!("large_order_review")),
        "{o}"
    );
    let total = o["totals"]["total_npr"].clone();
    assert_eq!(t.get_json(&account).await["held_npr"], total);

    let created: i64 = khaacho::with_write!(t.app.db(), c => sqlx::query_scalar(
        "UPDATE orders SET status = 'received', hold_reason = NULL, held_from = NULL WHERE id = $1 \
         RETURNING created_at_ms")
        .bind(id).fetch_one(c).await)
    .unwrap();
    assert!(created > 0);
    let mut tx = t.app.db().begin().await.unwrap();
    khaacho::orders::pipeline::start(&mut tx, &[(id, "normal", None, false)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    t.run_jobs().await;
    let o = t.get_json(&path).await;
    assert_eq!(
        held(&o),
        (json!("on_hold"), json!("large_order_review")),
        "{o}"
    );
    assert_eq!(t.get_json(&account).await["held_npr"], total, "held once");
    let holds: i64 = khaacho::with_write!(t.app.db(), c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM credit_holds WHERE order_id = $1")
        .bind(id).fetch_one(c).await)
    .unwrap();
    assert_eq!(holds, 1);
    reconciled(&t).await;
}

/// The risk step in the pipeline scores each order on what the read above gives: the week's
/// orders and the debits of the history window (on PostgreSQL read in one statement with the
/// accounts and the orders' holds). Six orders in a week are a spike for a shop of two months
/// without credit orders; a debit paid ten days late and another open ten days past due weigh in as
/// payment delay and an overdue balance.
#[tokio::test]
async fn the_pipeline_scores_risk_on_the_weeks_orders_and_the_payment_history() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let lines = json!([{ "sku": "SUGAR-50", "qty": 1, "unit": "kg" }]);
    let place = async || {
        let body = json!({ "retailer_id": retailer, "lines": lines, "payment_mode": "cash" });
        t.place(&body).await
    };
    let risk = async |id: &str| t.get_json(&format!("/api/v1/orders/{id}")).await["risk"].clone();
    let points = |risk: &Value, name: &str| {
        risk["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["points"].as_i64().unwrap())
            .unwrap()
    };
    let codes = |risk: &Value| -> Vec<String> {
        risk["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap().to_string())
            .collect()
    };
    // The shop's first order opens its account, dated back two months: a usual rate of no
    // credit orders a week, where a new shop's first busy week would be its baseline.
    let first = place().await;
    t.run_jobs().await;
    assert_eq!(points(&risk(&first).await, "order_pattern"), 0);
    let id: Uuid = retailer.parse().unwrap();
    let now = khaacho::base::time::now_ms();
    let day = 86_400_000;
    let mut tx = t.app.db().begin().await.unwrap();
    repo::set_opened_at(&mut tx, id, now - 60 * day)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut week = Vec::new();
    for _ in 0..5 {
        week.push(place().await);
    }
    t.run_jobs().await;
    for id in &week {
        let r = risk(id).await;
        assert_eq!(points(&r, "order_pattern"), 100, "{r}");
        assert!(codes(&r).contains(&"order_count_spike".to_string()), "{r}");
        assert_eq!(points(&r, "payment_delay"), 0, "{r}");
        assert_eq!(points(&r, "overdue"), 0, "{r}");
    }

    // (seq, due, paid, open)
    for (seq, due, paid, open) in [
        (1001_i64, now - 20 * day, Some(now - 10 * day), 0_i64),
        (1002, now - 10 * day, None, 5_000),
    ] {
        khaacho::with_write!(t.app.db(), c => sqlx::query(
            "INSERT INTO ledger_entries (id, retailer_id, seq, kind, amount_paisa, balance_paisa, due_at_ms, \
             open_paisa, paid_at_ms, at_ms) VALUES ($1, $2, $3, 'order_debit', 5000, 5000, $4, $5, $6, $7)")
            .bind(Uuid::now_v7()).bind(id).bind(seq).bind(due).bind(open).bind(paid).bind(due - 30 * day)
            .execute(c).await.map(|_| ()))
        .unwrap();
    }
    let late = place().await;
    t.run_jobs().await;
    let r = risk(&late).await;
    // 10 days late on average, the oldest open debit 10 days past due: a third of each
    // component's 30 days.
    assert_eq!(points(&r, "payment_delay"), 33, "{r}");
    assert_eq!(points(&r, "overdue"), 33, "{r}");
    assert!(codes(&r).contains(&"overdue_balance".to_string()), "{r}");
}
