use khaacho_credit::{Band, CreditSettings, automatic_limit_change, decrease_floor_paisa};

use crate::{days, npr};

#[test]
fn band_boundaries() {
    let s = CreditSettings::default();
    let table = [
        (300, Band::VeryPoor),
        (449, Band::VeryPoor),
        (450, Band::Poor),
        (549, Band::Poor),
        (550, Band::Fair),
        (649, Band::Fair),
        (650, Band::Good),
        (749, Band::Good),
        (750, Band::Excellent),
        (900, Band::Excellent),
    ];
    for (score, band) in table {
        assert_eq!(Band::from_score(score, &s), band, "score {score}");
    }
}

#[test]
fn band_policies() {
    let s = CreditSettings::default();
    let caps: Vec<_> = Band::ALL.iter().map(|b| b.order_cap_paisa(&s)).collect();
    assert_eq!(
        caps,
        [
            None,
            None,
            Some(npr(100_000)),
            Some(npr(50_000)),
            Some(npr(25_000))
        ]
    );
    let approval: Vec<_> = Band::ALL.iter().map(|b| b.requires_approval()).collect();
    assert_eq!(approval, [false, false, false, true, false]);
    let cash: Vec<_> = Band::ALL.iter().map(|b| b.cash_only()).collect();
    assert_eq!(cash, [false, false, false, false, true]);
}

#[test]
fn band_names_are_stable_snake_case() {
    for band in Band::ALL {
        let json = serde_json::to_string(&band).unwrap();
        assert_eq!(json, format!("\"{}\"", band.as_str()));
        assert_eq!(band.as_str().parse::<Band>().unwrap(), band);
        assert_eq!(band.to_string(), band.as_str());
    }
    assert_eq!(Band::VeryPoor.as_str(), "very_poor");
    assert!("terrible".parse::<Band>().is_err());
}

/// `(band, current, outstanding, expected new limit)` with no previous change.
#[test]
fn limit_change_percentages_ceilings_and_floor() {
    let s = CreditSettings::default();
    let table = [
        (Band::Excellent, 100_000, 0, Some(120_000)),
        (Band::Excellent, 900_000, 0, Some(1_000_000)), // capped at the ceiling
        (Band::Excellent, 1_000_000, 0, None),          // already at the ceiling
        (Band::Excellent, 1_200_000, 0, None),          // above it (manual): never lowered
        (Band::Good, 400_000, 0, Some(440_000)),
        (Band::Good, 480_000, 0, Some(500_000)),
        (Band::Good, 500_000, 0, None),
        (Band::Fair, 100_000, 0, None),
        (Band::Poor, 100_000, 50_000, Some(90_000)),
        (Band::Poor, 100_000, 75_000, Some(90_000)), // 1.2 × 75,000 = 90,000 exactly
        (Band::Poor, 100_000, 80_000, Some(96_000)), // held at 1.2 × outstanding
        (Band::Poor, 100_000, 85_000, None),         // floor above current: never raised
        (Band::VeryPoor, 100_000, 0, Some(80_000)),
        (Band::VeryPoor, 100_000, 70_000, Some(84_000)),
        (Band::VeryPoor, 0, 0, None),
    ];
    for (band, current, outstanding, expected) in table {
        let change =
            automatic_limit_change(band, npr(current), npr(outstanding), None, days(100), &s);
        assert_eq!(
            change.as_ref().map(|c| c.new_limit_paisa),
            expected.map(npr),
            "{band} {current} {outstanding}"
        );
        if let Some(c) = change {
            assert_eq!(c.previous_limit_paisa, npr(current));
            assert!(
                c.reason.starts_with(&format!("credit band {band}")),
                "{}",
                c.reason
            );
        }
    }
}

#[test]
fn at_most_one_change_per_30_days() {
    let s = CreditSettings::default();
    let now = days(1_000);
    let change = |last| automatic_limit_change(Band::Excellent, npr(100_000), 0, last, now, &s);
    assert!(change(Some(now - days(29))).is_none());
    assert!(change(Some(now - days(30) + 1)).is_none());
    assert!(change(Some(now - days(30))).is_some());
    assert!(change(None).is_some());
    // The rule applies to decreases too.
    let cut = automatic_limit_change(Band::Poor, npr(100_000), 0, Some(now - days(10)), now, &s);
    assert!(cut.is_none());
}

#[test]
fn reasons_name_the_bound_that_applied() {
    let s = CreditSettings::default();
    let c = automatic_limit_change(Band::Excellent, npr(900_000), 0, None, 0, &s).unwrap();
    assert_eq!(
        c.reason,
        "credit band excellent: limit +20% (NPR 900,000.00 → NPR 1,000,000.00), capped at the NPR 1,000,000.00 ceiling"
    );
    let c = automatic_limit_change(Band::Poor, npr(100_000), npr(80_000), None, 0, &s).unwrap();
    assert!(
        c.reason
            .contains("held at 120% of outstanding NPR 80,000.00"),
        "{}",
        c.reason
    );
}

#[test]
fn decrease_floor_rounds_up() {
    let s = CreditSettings::default();
    assert_eq!(decrease_floor_paisa(npr(50_000), &s), npr(60_000));
    assert_eq!(decrease_floor_paisa(1, &s), 2); // 1.2 paisa → 2
    assert_eq!(decrease_floor_paisa(-500, &s), 0);
}

#[test]
fn thresholds_come_from_settings() {
    let s = CreditSettings {
        good_min_score: 700,
        excellent_limit_change_pct: 5,
        ..CreditSettings::default()
    };
    assert_eq!(Band::from_score(699, &s), Band::Fair);
    let c = automatic_limit_change(Band::Excellent, npr(100_000), 0, None, 0, &s).unwrap();
    assert_eq!(c.new_limit_paisa, npr(105_000));
}
