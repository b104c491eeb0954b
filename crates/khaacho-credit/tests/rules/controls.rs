use khaacho_credit::{
    CreditSettings, HOUR_MS, OverdueAction, RiskSettings, days_past_due, high_risk_alert,
    late_payment_cut, order_spike, overdue_action, payment_is_late, should_alert,
};

use crate::{days, npr};

#[test]
fn on_time_means_within_seven_days_of_due() {
    let s = CreditSettings::default();
    let due = days(100);
    assert_eq!(days_past_due(due, due), 0);
    assert_eq!(days_past_due(due, due - 1), -1);
    assert_eq!(days_past_due(due, due + days(7) + 23 * HOUR_MS), 7);
    assert!(!payment_is_late(due, due + days(7) + 23 * HOUR_MS, &s));
    assert!(payment_is_late(due, due + days(8), &s));
    assert!(!payment_is_late(due, due - days(3), &s));
}

/// `(consecutive late, original, current, expected new limit)`.
#[test]
fn late_payment_cut_rules() {
    let s = CreditSettings::default();
    let table = [
        (2, 100_000, 100_000, None),
        (3, 100_000, 100_000, Some(75_000)),
        (5, 100_000, 100_000, Some(75_000)),
        (3, 100_000, 75_000, Some(56_250)),
        (3, 100_000, 56_250, Some(50_000)), // 42,187.50 would pass the 50% total cut
        (3, 100_000, 50_000, None),         // already cut by half
        (3, 12_000, 12_000, Some(10_000)),  // 9,000 would pass the NPR 10,000 floor
        (3, 10_000, 10_000, None),
        (3, 8_000, 8_000, None), // below the floor already: never raised
        (3, 100_000, 0, None),
    ];
    for (late, original, current, expected) in table {
        let cut = late_payment_cut(late, npr(original), npr(current), &s);
        assert_eq!(
            cut.as_ref().map(|c| c.new_limit_paisa),
            expected.map(npr),
            "{late} {original} {current}"
        );
    }
    let c = late_payment_cut(3, npr(12_000), npr(12_000), &s).unwrap();
    assert!(
        c.reason.contains("held at the NPR 10,000.00 floor"),
        "{}",
        c.reason
    );
    let c = late_payment_cut(3, npr(100_000), npr(56_250), &s).unwrap();
    assert!(c.reason.contains("held at 50% total cut"), "{}", c.reason);
}

#[test]
fn overdue_warns_at_15_and_blocks_at_30() {
    let s = CreditSettings::default();
    for (d, action) in [
        (-5, OverdueAction::None),
        (0, OverdueAction::None),
        (14, OverdueAction::None),
        (15, OverdueAction::Warn),
        (29, OverdueAction::Warn),
        (30, OverdueAction::Block),
        (400, OverdueAction::Block),
    ] {
        assert_eq!(overdue_action(d, &s), action, "{d} days");
    }
    assert_eq!(
        serde_json::to_string(&OverdueAction::Block).unwrap(),
        "\"block\""
    );
}

#[test]
fn alerts_once_per_24_hours() {
    let s = CreditSettings::default();
    let now = days(50);
    assert!(should_alert(None, now, &s));
    assert!(!should_alert(Some(now), now, &s));
    assert!(!should_alert(Some(now - 24 * HOUR_MS + 1), now, &s));
    assert!(should_alert(Some(now - 24 * HOUR_MS), now, &s));
}

#[test]
fn spike_is_above_three_times_the_usual_rate() {
    let rs = RiskSettings::default();
    let table = [
        (6, 2.0, false), // exactly 3 × is not above
        (7, 2.0, true),
        (4, 1.0, true),
        (3, 1.0, false), // below the minimum count
        (3, 0.0, false),
        (4, 0.0, true),
        (10, 5.0, false),
    ];
    for (count, usual, spike) in table {
        assert_eq!(order_spike(count, usual, &rs), spike, "{count} vs {usual}");
    }
}

#[test]
fn high_risk_alert_at_70() {
    let rs = RiskSettings::default();
    assert!(!high_risk_alert(69, &rs));
    assert!(high_risk_alert(70, &rs));
}
