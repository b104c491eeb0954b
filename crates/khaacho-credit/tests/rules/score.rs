use khaacho_credit::{CreditSettings, FactorName, ScoreInputs, compute_score, utilisation_pct};

/// A retailer with every factor at full points; tests change one factor at a time.
fn perfect() -> ScoreInputs {
    ScoreInputs {
        paid_debits_days_late: vec![-2, 0, 7],
        open_debits_days_overdue: vec![],
        orders_per_month: vec![4, 4, 4, 4, 4, 4],
        utilisation_pct: Some(30),
        account_age_months: 24,
        orders_total: 24,
        orders_disputed_or_cancelled: 0,
    }
}

fn points(inputs: &ScoreInputs, name: FactorName) -> u8 {
    let score = compute_score(inputs, &CreditSettings::default());
    score
        .factors
        .iter()
        .find(|f| f.name == name)
        .unwrap()
        .points_0_100
}

#[test]
fn extremes_and_neutral_map_to_300_500_900() {
    let s = CreditSettings::default();
    assert_eq!(compute_score(&perfect(), &s).score, 900);

    let worst = ScoreInputs {
        paid_debits_days_late: vec![8, 40],
        open_debits_days_overdue: vec![31],
        orders_per_month: vec![0, 0, 0],
        utilisation_pct: Some(95),
        account_age_months: 0,
        orders_total: 5,
        orders_disputed_or_cancelled: 5,
    };
    assert_eq!(compute_score(&worst, &s).score, 300);

    let new = compute_score(&ScoreInputs::default(), &s);
    assert_eq!(new.score, 500);
    assert!(!new.has_history);
    assert!(
        new.factors
            .iter()
            .all(|f| f.points_0_100 == 50 && f.detail.contains("no history"))
    );
}

#[test]
fn weighted_points_map_piecewise_around_the_base() {
    let s = CreditSettings::default();
    // Timeliness 0, the rest 100: W = 60 → 500 + 10 × 8 = 580.
    let mut i = perfect();
    i.paid_debits_days_late = vec![8];
    assert_eq!(compute_score(&i, &s).score, 580);
    // Timeliness 50: W = 80 → 500 + 30 × 8 = 740.
    i.paid_debits_days_late = vec![0, 8];
    assert_eq!(compute_score(&i, &s).score, 740);
    // Everything at 0 but disputes 100: W = 10 → 500 − 40 × 4 = 340.
    let i = ScoreInputs {
        paid_debits_days_late: vec![30],
        orders_per_month: vec![0],
        utilisation_pct: Some(90),
        orders_total: 3,
        ..ScoreInputs::default()
    };
    assert_eq!(compute_score(&i, &s).score, 340);
}

#[test]
fn factor_breakdown_explains_the_score() {
    let score = compute_score(&perfect(), &CreditSettings::default());
    let names: Vec<_> = score.factors.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "timeliness",
            "consistency",
            "utilisation",
            "account_age",
            "disputes"
        ]
    );
    let weights: Vec<_> = score.factors.iter().map(|f| f.weight_pct).collect();
    assert_eq!(weights, [40, 20, 20, 10, 10]);
    assert!(
        score.factors[0]
            .detail
            .contains("3 of 3 debits paid within 7 days")
    );
}

#[test]
fn timeliness_grace_is_seven_days() {
    let table = [
        (vec![7], vec![], 100),
        (vec![8], vec![], 0),
        (vec![0, 0, 0, 30], vec![], 75),
        // Unpaid debits count once past the grace period, not before.
        (vec![0], vec![7], 100),
        (vec![0], vec![8], 50),
        (vec![], vec![3], 50), // nothing counted yet: neutral
    ];
    for (paid, open, expected) in table {
        let i = ScoreInputs {
            paid_debits_days_late: paid.clone(),
            open_debits_days_overdue: open.clone(),
            ..perfect()
        };
        assert_eq!(
            points(&i, FactorName::Timeliness),
            expected,
            "paid {paid:?} open {open:?}"
        );
    }
}

#[test]
fn consistency_rewards_frequency_and_regularity() {
    let table = [
        (vec![4, 4, 4], 100),
        (vec![9, 9], 100),
        (vec![2, 2, 2], 75), // half the target, perfectly regular
        (vec![0, 8], 50),    // on target on average, coefficient of variation 1
        (vec![0, 0, 0], 0),
        (vec![], 50), // no monthly counts: neutral
    ];
    for (months, expected) in table {
        let i = ScoreInputs {
            orders_per_month: months.clone(),
            ..perfect()
        };
        assert_eq!(points(&i, FactorName::Consistency), expected, "{months:?}");
    }
}

#[test]
fn utilisation_best_at_30_worst_above_90() {
    for (pct, expected) in [
        (Some(0), 100),
        (Some(30), 100),
        (Some(31), 98),
        (Some(60), 50),
        (Some(89), 2),
        (Some(90), 0),
        (Some(91), 0),
        (Some(250), 0),
        (None, 50),
    ] {
        let i = ScoreInputs {
            utilisation_pct: pct,
            ..perfect()
        };
        assert_eq!(points(&i, FactorName::Utilisation), expected, "{pct:?}");
    }
    assert_eq!(utilisation_pct(30, 100), Some(30));
    assert_eq!(utilisation_pct(1, 0), None);
    assert_eq!(utilisation_pct(-5, 100), Some(0));
}

#[test]
fn account_age_full_at_24_months() {
    for (months, expected) in [(0, 0), (6, 25), (12, 50), (23, 96), (24, 100), (120, 100)] {
        let i = ScoreInputs {
            account_age_months: months,
            ..perfect()
        };
        assert_eq!(points(&i, FactorName::AccountAge), expected, "{months}");
    }
}

#[test]
fn disputes_zero_points_at_20_percent() {
    for (bad, total, expected) in [
        (0, 20, 100),
        (1, 20, 75),
        (2, 20, 50),
        (4, 20, 0),
        (5, 20, 0),
        (9, 3, 0),
    ] {
        let i = ScoreInputs {
            orders_disputed_or_cancelled: bad,
            orders_total: total,
            ..perfect()
        };
        assert_eq!(points(&i, FactorName::Disputes), expected, "{bad}/{total}");
    }
    let i = ScoreInputs {
        orders_total: 0,
        ..perfect()
    };
    assert_eq!(points(&i, FactorName::Disputes), 50);
}

#[test]
fn weights_come_from_settings() {
    let mut s = CreditSettings::default();
    s.weights.timeliness = 0;
    let mut i = perfect();
    i.paid_debits_days_late = vec![100];
    // Timeliness no longer counts: every remaining factor is perfect.
    assert_eq!(compute_score(&i, &s).score, 900);
    s.weights = khaacho_credit::ScoreWeights {
        timeliness: 0,
        consistency: 0,
        utilisation: 0,
        account_age: 0,
        disputes: 0,
    };
    assert_eq!(compute_score(&i, &s).score, 500);
}
