//! The vendor score, recomputed hourly (DOMAIN.md "Routing to vendors", "Vendor score"):
//! response speed 25, acceptance rate 20, price against the market 20, delivery success 25,
//! cancellation rate 10, each 0–100 and averaged by weight; grades A+ … F; "needs attention"
//! below 60. The routing score's reliability component is this number.

use serde::{Deserialize, Serialize};

use crate::ramp;

/// What a vendor did over the scoring window (the caller picks the window, e.g. 30 days).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VendorActivity {
    /// Offers it received.
    pub offers: u32,
    /// Of those, accepted.
    pub accepted: u32,
    /// Minutes from offer to answer (accept or reject), one per answered offer.
    pub response_minutes: Vec<f64>,
    /// Its prices against the market average, by value over what it sold (1.0 = average);
    /// `None` without sales.
    pub price_ratio: Option<f64>,
    /// Accepted parts that reached delivery or failed to (cancelled by the vendor, never
    /// delivered).
    pub parts_finished: u32,
    /// Of those, delivered in full.
    pub delivered: u32,
    /// Parts it cancelled after accepting.
    pub cancelled_by_vendor: u32,
}

/// Name of a vendor score component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VendorFactor {
    /// Median minutes to answer an offer: ≤ 10 → 100, ≥ 30 (the default offer deadline) → 0.
    ResponseSpeed,
    /// Accepted share of offers, in percent.
    AcceptanceRate,
    /// Price against the market: ≤ 90% → 100, ≥ 115% ("expensive") → 0.
    Price,
    /// Delivered share of finished parts, in percent.
    DeliverySuccess,
    /// Share of accepted parts it cancelled: 0% → 100, ≥ 20% → 0.
    CancellationRate,
}

impl VendorFactor {
    /// Its stable snake_case name (the serialized form).
    pub fn as_str(self) -> &'static str {
        match self {
            VendorFactor::ResponseSpeed => "response_speed",
            VendorFactor::AcceptanceRate => "acceptance_rate",
            VendorFactor::Price => "price",
            VendorFactor::DeliverySuccess => "delivery_success",
            VendorFactor::CancellationRate => "cancellation_rate",
        }
    }
}

/// One weighted factor; `points` is 50 (neutral) when the window holds no data for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorFactorScore {
    /// Which one.
    pub factor: VendorFactor,
    /// Its weight.
    pub weight: u32,
    /// 0–100.
    pub points: u8,
    /// Whether the window had data for it.
    pub measured: bool,
}

/// Letter grade of a vendor score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grade {
    /// ≥ 90.
    #[serde(rename = "A+")]
    APlus,
    /// ≥ 80.
    A,
    /// ≥ 70.
    B,
    /// ≥ 60.
    C,
    /// ≥ 50.
    D,
    /// Below 50.
    F,
}

impl Grade {
    /// The grade of `score`.
    pub fn of(score: u8) -> Self {
        match score {
            90.. => Grade::APlus,
            80..=89 => Grade::A,
            70..=79 => Grade::B,
            60..=69 => Grade::C,
            50..=59 => Grade::D,
            _ => Grade::F,
        }
    }

    /// As people write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::APlus => "A+",
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::D => "D",
            Grade::F => "F",
        }
    }
}

/// A vendor's score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorRating {
    /// 0–100; a vendor without any offer in the window scores 50 (DOMAIN: new vendors start
    /// at 50).
    pub score: u8,
    /// Its grade.
    pub grade: Grade,
    /// Below 60 with offers in the window (a vendor without any is new, not neglected).
    pub needs_attention: bool,
    /// Every factor.
    pub factors: Vec<VendorFactorScore>,
}

/// Scores a vendor's activity.
pub fn rate_vendor(a: &VendorActivity) -> VendorRating {
    let pct = |part: u32, whole: u32| f64::from(part) * 100.0 / f64::from(whole);
    let median = median(&a.response_minutes);
    let factors = vec![
        factor(
            VendorFactor::ResponseSpeed,
            25,
            median.map(|m| ramp(m, 30.0, 10.0)),
        ),
        factor(
            VendorFactor::AcceptanceRate,
            20,
            (a.offers > 0).then(|| ramp(pct(a.accepted.min(a.offers), a.offers), 0.0, 100.0)),
        ),
        factor(
            VendorFactor::Price,
            20,
            a.price_ratio.map(|r| ramp(r, 1.15, 0.90)),
        ),
        factor(
            VendorFactor::DeliverySuccess,
            25,
            (a.parts_finished > 0).then(|| {
                ramp(
                    pct(a.delivered.min(a.parts_finished), a.parts_finished),
                    0.0,
                    100.0,
                )
            }),
        ),
        factor(
            VendorFactor::CancellationRate,
            10,
            (a.accepted > 0).then(|| ramp(pct(a.cancelled_by_vendor, a.accepted), 20.0, 0.0)),
        ),
    ];
    let score = if a.offers == 0 {
        50
    } else {
        let weighted: u32 = factors.iter().map(|f| f.weight * u32::from(f.points)).sum();
        let weights: u32 = factors.iter().map(|f| f.weight).sum();
        (f64::from(weighted) / f64::from(weights)).round() as u8
    };
    VendorRating {
        score,
        grade: Grade::of(score),
        needs_attention: a.offers > 0 && score < 60,
        factors,
    }
}

fn factor(factor: VendorFactor, weight: u32, points: Option<u8>) -> VendorFactorScore {
    VendorFactorScore {
        factor,
        weight,
        points: points.unwrap_or(50),
        measured: points.is_some(),
    }
}

/// The median of finite values; `None` when there are none.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(r: &VendorRating, f: VendorFactor) -> u8 {
        r.factors.iter().find(|x| x.factor == f).unwrap().points
    }

    #[test]
    fn grades_at_their_boundaries() {
        let cases = [
            (100, "A+"),
            (90, "A+"),
            (89, "A"),
            (80, "A"),
            (79, "B"),
            (70, "B"),
            (69, "C"),
            (60, "C"),
            (59, "D"),
            (50, "D"),
            (49, "F"),
            (0, "F"),
        ];
        for (score, grade) in cases {
            assert_eq!(Grade::of(score).as_str(), grade, "{score}");
        }
    }

    #[test]
    fn each_factor_at_its_boundaries() {
        let base = VendorActivity {
            offers: 10,
            accepted: 10,
            response_minutes: vec![10.0],
            price_ratio: Some(0.9),
            parts_finished: 10,
            delivered: 10,
            cancelled_by_vendor: 0,
        };
        let r = rate_vendor(&base);
        assert_eq!(r.score, 100);
        assert_eq!(r.grade, Grade::APlus);
        assert!(!r.needs_attention);
        for (minutes, want) in [(5.0, 100), (10.0, 100), (20.0, 50), (30.0, 0), (90.0, 0)] {
            let r = rate_vendor(&VendorActivity {
                response_minutes: vec![minutes],
                ..base.clone()
            });
            assert_eq!(
                points(&r, VendorFactor::ResponseSpeed),
                want,
                "{minutes} min"
            );
        }
        // The median, not the mean: one slow answer among fast ones does not sink it.
        let r = rate_vendor(&VendorActivity {
            response_minutes: vec![5.0, 6.0, 600.0],
            ..base.clone()
        });
        assert_eq!(points(&r, VendorFactor::ResponseSpeed), 100);
        let r = rate_vendor(&VendorActivity {
            accepted: 7,
            ..base.clone()
        });
        assert_eq!(points(&r, VendorFactor::AcceptanceRate), 70);
        for (ratio, want) in [(0.8, 100), (0.9, 100), (1.025, 50), (1.15, 0), (1.5, 0)] {
            let r = rate_vendor(&VendorActivity {
                price_ratio: Some(ratio),
                ..base.clone()
            });
            assert_eq!(points(&r, VendorFactor::Price), want, "ratio {ratio}");
        }
        let r = rate_vendor(&VendorActivity {
            delivered: 9,
            ..base.clone()
        });
        assert_eq!(points(&r, VendorFactor::DeliverySuccess), 90);
        for (cancelled, want) in [(0, 100), (1, 50), (2, 0), (5, 0)] {
            let r = rate_vendor(&VendorActivity {
                cancelled_by_vendor: cancelled,
                ..base.clone()
            });
            assert_eq!(
                points(&r, VendorFactor::CancellationRate),
                want,
                "{cancelled} of 10"
            );
        }
    }

    #[test]
    fn new_vendors_start_at_fifty_and_missing_data_is_neutral() {
        let r = rate_vendor(&VendorActivity::default());
        assert_eq!((r.score, r.grade, r.needs_attention), (50, Grade::D, false));
        assert!(r.factors.iter().all(|f| !f.measured && f.points == 50));
        // Offers but nothing answered, sold or finished: only acceptance is measured.
        let r = rate_vendor(&VendorActivity {
            offers: 4,
            ..Default::default()
        });
        assert_eq!(points(&r, VendorFactor::AcceptanceRate), 0);
        assert_eq!(r.score, 40); // (25·50 + 20·0 + 20·50 + 25·50 + 10·50) / 100
        assert!(r.needs_attention);
    }
}
