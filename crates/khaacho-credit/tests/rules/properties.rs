use khaacho_credit::{
    AccountModel, CreditSettings, Decision, OpenDebit, OrderRiskInputs, RetailerRiskInputs,
    RiskInputs, RiskSettings, ScoreInputs, ScoreWeights, allocate_fifo, assess, compute_score,
};
use proptest::prelude::*;

fn score_inputs() -> impl Strategy<Value = ScoreInputs> {
    (
        prop::collection::vec(-400i64..400, 0..20),
        prop::collection::vec(-10i64..400, 0..10),
        prop::collection::vec(0u32..200, 0..13),
        prop::option::of(any::<u32>()),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(paid, open, months, util, age, total, bad)| ScoreInputs {
            paid_debits_days_late: paid,
            open_debits_days_overdue: open,
            orders_per_month: months,
            utilisation_pct: util,
            account_age_months: age,
            orders_total: total,
            orders_disputed_or_cancelled: bad,
        })
}

fn weights() -> impl Strategy<Value = ScoreWeights> {
    (0u32..200, 0u32..200, 0u32..200, 0u32..200, 0u32..200).prop_map(|(a, b, c, d, e)| {
        ScoreWeights {
            timeliness: a,
            consistency: b,
            utilisation: c,
            account_age: d,
            disputes: e,
        }
    })
}

fn risk_inputs() -> impl Strategy<Value = RiskInputs> {
    (
        prop::collection::vec(any::<i32>().prop_map(i64::from), 0..10),
        prop::option::of(any::<u32>()),
        any::<u32>(),
        prop_oneof![any::<f64>(), 0.0..20.0],
        any::<i32>().prop_map(i64::from),
        any::<i64>(),
        any::<bool>(),
        prop::option::of(any::<i64>()),
        prop::option::of(any::<i64>()),
    )
        .prop_map(
            |(late, util, count, usual, overdue, value, first, avg, cap)| RiskInputs {
                retailer: RetailerRiskInputs {
                    recent_days_late: late,
                    utilisation_pct: util,
                    orders_last_7d: count,
                    usual_7d_rate: usual,
                    oldest_overdue_days: overdue,
                },
                order: OrderRiskInputs {
                    value_paisa: value,
                    is_first_order: first,
                    average_order_value_paisa: avg,
                    band_order_cap_paisa: cap,
                },
            },
        )
}

/// One operation of the account's life; order ids are few so operations hit the same holds.
#[derive(Clone, Debug)]
enum Op {
    Hold(u64, i64),
    Post(u64, i64),
    Void(u64),
    Expire(u64),
    Reverse(u64, i64),
    Pay(i64),
    SetLimit(i64),
    Block(bool),
}

fn op() -> impl Strategy<Value = Op> {
    let order = 0u64..8;
    let amount = prop_oneof![-10i64..0, 1i64..200_000, 1i64..2_000_000];
    prop_oneof![
        4 => (order.clone(), amount.clone()).prop_map(|(o, a)| Op::Hold(o, a)),
        3 => (order.clone(), amount.clone()).prop_map(|(o, a)| Op::Post(o, a)),
        1 => order.clone().prop_map(Op::Void),
        1 => order.clone().prop_map(Op::Expire),
        1 => (order, amount.clone()).prop_map(|(o, a)| Op::Reverse(o, a)),
        3 => amount.clone().prop_map(Op::Pay),
        1 => amount.prop_map(Op::SetLimit),
        1 => any::<bool>().prop_map(Op::Block),
    ]
}

proptest! {
    #[test]
    fn score_is_always_between_300_and_900(inputs in score_inputs(), w in weights()) {
        let s = CreditSettings { weights: w, ..CreditSettings::default() };
        let score = compute_score(&inputs, &s);
        prop_assert!((300..=900).contains(&score.score), "{}", score.score);
        prop_assert!(score.factors.iter().all(|f| f.points_0_100 <= 100));
    }

    #[test]
    fn risk_is_always_between_0_and_100(inputs in risk_inputs()) {
        let rs = RiskSettings::default();
        let a = assess(&inputs, &rs);
        prop_assert!(a.score <= 100 && a.retailer_score <= a.score);
        prop_assert!(a.components.iter().all(|c| c.points <= 100));
        prop_assert_eq!(a.decision, Decision::for_score(a.score, &rs));
    }

    #[test]
    fn fifo_conserves_money(
        payment in 0i64..10_000_000,
        debits in prop::collection::vec((0i64..100, -100i64..1_000_000), 0..20),
    ) {
        // Ids are unique, as ledger entry ids are; dues collide often to exercise the tie rule.
        let open: Vec<OpenDebit> = debits
            .iter()
            .zip(0u64..)
            .map(|(&(due, remaining), id)| OpenDebit { id, due_at_ms: due, remaining_paisa: remaining })
            .collect();
        let a = allocate_fifo(payment, &open).unwrap();
        let applied: i64 = a.applied.iter().map(|&(_, amount)| amount).sum();
        prop_assert_eq!(applied + a.unapplied_credit_paisa, payment);
        prop_assert!(a.unapplied_credit_paisa >= 0);
        prop_assert!(a.applied.iter().all(|&(_, amount)| amount > 0));
        let owed: i64 = open.iter().map(|d| d.remaining_paisa.max(0)).sum();
        prop_assert_eq!(applied, payment.min(owed));
        // Oldest due first: in (due, id) order the payment fills a prefix of the open debits,
        // every one fully but the last.
        let mut fifo: Vec<&OpenDebit> = open.iter().filter(|d| d.remaining_paisa > 0).collect();
        fifo.sort_by_key(|d| (d.due_at_ms, d.id));
        let expected: Vec<u64> = fifo.iter().take(a.applied.len()).map(|d| d.id).collect();
        let got: Vec<u64> = a.applied.iter().map(|&(id, _)| id).collect();
        prop_assert_eq!(got, expected);
        for (d, &(_, amount)) in fifo.iter().zip(&a.applied).rev().skip(1) {
            prop_assert_eq!(amount, d.remaining_paisa);
        }
    }

    #[test]
    fn model_keeps_every_invariant(limit in 0i64..5_000_000, ops in prop::collection::vec(op(), 0..60)) {
        let s = CreditSettings::default();
        let mut m = AccountModel::new(limit, s.default_terms_days).unwrap();
        for (step, op) in ops.iter().enumerate() {
            let before = m.clone();
            let at = step as i64 * khaacho_credit::DAY_MS;
            let result = match *op {
                Op::Hold(o, a) => m.hold(o, a),
                Op::Post(o, a) => m.post(o, a, at).map(|_| ()),
                Op::Void(o) => m.void(o),
                Op::Expire(o) => m.expire(o),
                Op::Reverse(o, a) => m.reverse_after_delivery(o, a, at).map(|_| ()),
                Op::Pay(a) => m.pay(a, at).map(|_| ()),
                Op::SetLimit(a) => m.set_limit(a, &s),
                Op::Block(b) => {
                    m.set_blocked(b);
                    Ok(())
                }
            };
            if result.is_err() {
                prop_assert_eq!(&m, &before, "failed {:?} changed the account", op);
            }
            prop_assert!(m.check_invariants().is_ok(), "after {:?}: {:?}", op, m.check_invariants());
        }
    }
}
