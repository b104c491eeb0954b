use khaacho_credit::{
    ComponentName, Decision, OrderRiskInputs, ReasonCode, RetailerRiskInputs, RiskInputs,
    RiskSettings, assess, retailer_risk,
};

use crate::npr;

/// A retailer with no risk at all and an ordinary order.
fn clean() -> RiskInputs {
    RiskInputs {
        retailer: RetailerRiskInputs {
            recent_days_late: vec![0, -2, 0],
            utilisation_pct: Some(20),
            orders_last_7d: 2,
            usual_7d_rate: 2.0,
            oldest_overdue_days: 0,
        },
        order: OrderRiskInputs {
            value_paisa: npr(10_000),
            is_first_order: false,
            average_order_value_paisa: Some(npr(10_000)),
            band_order_cap_paisa: None,
        },
    }
}

fn codes(inputs: &RiskInputs) -> Vec<&'static str> {
    assess(inputs, &RiskSettings::default())
        .reasons
        .iter()
        .map(|r| r.code.as_str())
        .collect()
}

#[test]
fn clean_order_passes_without_reasons() {
    let a = assess(&clean(), &RiskSettings::default());
    assert_eq!(
        (a.score, a.retailer_score, a.decision),
        (0, 0, Decision::Pass)
    );
    assert!(a.reasons.is_empty());
    let names: Vec<_> = a.components.iter().map(|c| (c.name, c.weight)).collect();
    assert_eq!(
        names,
        [
            (ComponentName::PaymentDelay, 40),
            (ComponentName::Utilisation, 30),
            (ComponentName::OrderPattern, 20),
            (ComponentName::Overdue, 10)
        ]
    );
}

#[test]
fn decision_thresholds() {
    let rs = RiskSettings::default();
    for (score, decision) in [
        (0, Decision::Pass),
        (49, Decision::Pass),
        (50, Decision::Review),
        (79, Decision::Review),
        (80, Decision::Reject),
        (100, Decision::Reject),
    ] {
        assert_eq!(Decision::for_score(score, &rs), decision, "{score}");
    }
}

/// Exact scores around the thresholds through the whole assessment: signals plus the overdue
/// component (weight 10, full at 30 days, so `d` days overdue adds `round(d / 3)`).
#[test]
fn decisions_at_49_50_79_80() {
    let rs = RiskSettings::default();
    let mut review = clean();
    review.order.is_first_order = true; // +20
    review.order.value_paisa = npr(40_000); // 4 × the average: +25
    for (overdue, score, decision) in [(12, 49, Decision::Pass), (15, 50, Decision::Review)] {
        review.retailer.oldest_overdue_days = overdue;
        let a = assess(&review, &rs);
        assert_eq!((a.score, a.decision), (score, decision), "{overdue} days");
    }
    let mut reject = clean();
    reject.order.is_first_order = true; // +20
    reject.order.band_order_cap_paisa = Some(npr(5_000)); // +50
    for (overdue, score, decision) in [(27, 79, Decision::Review), (30, 80, Decision::Reject)] {
        reject.retailer.oldest_overdue_days = overdue;
        let a = assess(&reject, &rs);
        assert_eq!((a.score, a.decision), (score, decision), "{overdue} days");
    }
}

#[test]
fn each_signal_adds_its_points() {
    let mut i = clean();
    i.order.is_first_order = true;
    assert_eq!(codes(&i), ["first_order_new_retailer"]);
    assert_eq!(assess(&i, &RiskSettings::default()).score, 20);

    let mut i = clean();
    i.order.value_paisa = npr(30_000); // exactly 3 × is not above
    assert!(codes(&i).is_empty());
    i.order.value_paisa = npr(30_000) + 1;
    assert_eq!(codes(&i), ["value_above_average"]);

    let mut i = clean();
    i.order.band_order_cap_paisa = Some(npr(10_000)); // at the cap
    assert!(codes(&i).is_empty());
    i.order.band_order_cap_paisa = Some(npr(9_999));
    assert_eq!(codes(&i), ["value_above_band_cap"]);
    assert_eq!(
        assess(&i, &RiskSettings::default()).decision,
        Decision::Review
    );

    let mut i = clean();
    i.retailer.orders_last_7d = 7; // usual 2, spike above 6
    assert_eq!(codes(&i), ["unusual_order_pattern", "order_count_spike"]);
    let a = assess(&i, &RiskSettings::default());
    // Pattern component at 100 × weight 20 = 20, plus the spike's 25.
    assert_eq!((a.retailer_score, a.score), (20, 45));
}

#[test]
fn score_caps_at_100() {
    let mut i = clean();
    i.retailer = RetailerRiskInputs {
        recent_days_late: vec![45],
        utilisation_pct: Some(120),
        orders_last_7d: 20,
        usual_7d_rate: 1.0,
        oldest_overdue_days: 60,
    };
    i.order = OrderRiskInputs {
        value_paisa: npr(500_000),
        is_first_order: true,
        average_order_value_paisa: Some(npr(1_000)),
        band_order_cap_paisa: Some(npr(25_000)),
    };
    let a = assess(&i, &RiskSettings::default());
    assert_eq!(
        (a.retailer_score, a.score, a.decision),
        (100, 100, Decision::Reject)
    );
    assert_eq!(a.reasons.len(), 8);
}

#[test]
fn retailer_components_map_linearly() {
    let rs = RiskSettings::default();
    let r = RetailerRiskInputs {
        recent_days_late: vec![0, 30], // average 15 of 30 days → 50 points
        utilisation_pct: Some(60),     // halfway between 30 and 90 → 50
        orders_last_7d: 2,
        usual_7d_rate: 2.0,
        oldest_overdue_days: 0,
    };
    let risk = retailer_risk(&r, &rs);
    let points: Vec<_> = risk.components.iter().map(|c| c.points).collect();
    assert_eq!(points, [50, 50, 0, 0]);
    // (40 × 50 + 30 × 50) / 100 = 35.
    assert_eq!(risk.score, 35);
    let codes: Vec<_> = risk.reasons.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        [ReasonCode::PaymentDelay, ReasonCode::HighUtilisation]
    );
}

#[test]
fn reason_codes_serialise_as_their_stable_names() {
    for code in [
        ReasonCode::PaymentDelay,
        ReasonCode::OrderCountSpike,
        ReasonCode::ValueAboveBandCap,
        ReasonCode::FirstOrderNewRetailer,
    ] {
        assert_eq!(
            serde_json::to_string(&code).unwrap(),
            format!("\"{}\"", code.as_str())
        );
    }
    assert_eq!(
        serde_json::to_string(&Decision::Review).unwrap(),
        "\"review\""
    );
}
