//! Order risk 0–100 at validation (DOMAIN.md "Risk").
//!
//! # How the score is built
//! 1. **Retailer component**, 0–100: four components each earn 0–100 risk points and are
//!    averaged by weight (payment delay 40, utilisation 30, order pattern 20, overdue 10):
//!    `retailer = round(Σ weightᵢ·pointsᵢ / Σ weightᵢ)`. The same number drives the hourly
//!    "retailer score ≥ 70" alert ([`retailer_risk`], [`crate::high_risk_alert`]).
//! 2. **Order signals** add fixed points on top (defaults: first order of a new retailer +20,
//!    value above 3× the retailer's average +25, 7-day count above 3× the usual rate +25,
//!    value above the band's cap +50).
//! 3. `score = min(100, retailer + Σ signal points)`; ≥ 80 reject, 50–79 review, else pass.
//!
//! Every component with non-zero points and every fired signal yields a [`Reason`] with a
//! stable snake_case code, so an operator sees why an order was held.

use serde::{Deserialize, Serialize};

use crate::controls::order_spike;
use crate::settings::RiskSettings;
use crate::{Paisa, npr, ramp};

/// Facts about the retailer, independent of the order at hand.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RetailerRiskInputs {
    /// Days late (after due) of recent payments; early payments count as 0.
    pub recent_days_late: Vec<i64>,
    /// Credit in use (outstanding + held, this order included) as percent of the limit;
    /// `None` without a limit.
    pub utilisation_pct: Option<u32>,
    /// Orders in the last 7 days, this order included.
    pub orders_last_7d: u32,
    /// Usual orders per 7 days over earlier history; 0 without history.
    pub usual_7d_rate: f64,
    /// Days the oldest unpaid debit is past due; 0 when none is.
    pub oldest_overdue_days: i64,
}

/// Facts about the order being validated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRiskInputs {
    /// Order total including VAT.
    pub value_paisa: Paisa,
    /// This is the first order of a retailer new to the platform.
    pub is_first_order: bool,
    /// Average value of the retailer's earlier orders; `None` without earlier orders.
    pub average_order_value_paisa: Option<Paisa>,
    /// The retailer's band cap, [`crate::Band::order_cap_paisa`]; `None` when uncapped.
    pub band_order_cap_paisa: Option<Paisa>,
}

/// Everything [`assess`] needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RiskInputs {
    /// The retailer's facts.
    pub retailer: RetailerRiskInputs,
    /// The order's facts.
    pub order: OrderRiskInputs,
}

/// Name of a retailer risk component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentName {
    /// Average lateness of recent payments.
    PaymentDelay,
    /// Share of the limit in use.
    Utilisation,
    /// Recent order count against the usual rate.
    OrderPattern,
    /// Age of the oldest overdue debit.
    Overdue,
}

/// One weighted component of the retailer risk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// Which component.
    pub name: ComponentName,
    /// Its configured weight.
    pub weight: u32,
    /// Risk points 0 (none) to 100 (maximal).
    pub points: u8,
}

/// Stable reason codes, stored with the assessment and shown to operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Recent payments arrived late.
    PaymentDelay,
    /// Much of the limit is in use.
    HighUtilisation,
    /// More orders than usual lately (component, below the spike signal).
    UnusualOrderPattern,
    /// A debit is past due.
    OverdueBalance,
    /// First order of a new retailer.
    FirstOrderNewRetailer,
    /// Order value above the configured multiple of the retailer's average.
    ValueAboveAverage,
    /// 7-day order count above the configured multiple of the usual rate.
    OrderCountSpike,
    /// Order value above the band's single-order cap.
    ValueAboveBandCap,
}

impl ReasonCode {
    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentDelay => "payment_delay",
            Self::HighUtilisation => "high_utilisation",
            Self::UnusualOrderPattern => "unusual_order_pattern",
            Self::OverdueBalance => "overdue_balance",
            Self::FirstOrderNewRetailer => "first_order_new_retailer",
            Self::ValueAboveAverage => "value_above_average",
            Self::OrderCountSpike => "order_count_spike",
            Self::ValueAboveBandCap => "value_above_band_cap",
        }
    }
}

/// Why the score is what it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code for filters and translations.
    pub code: ReasonCode,
    /// Human-readable explanation with the figures.
    pub text: String,
}

/// What validation does with the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Below `review_at` (50): continue.
    Pass,
    /// `review_at`..`reject_at` (50–79): hold for an operator.
    Review,
    /// At or above `reject_at` (80): reject.
    Reject,
}

impl Decision {
    /// The decision for a final score.
    pub fn for_score(score: u8, rs: &RiskSettings) -> Decision {
        if score >= rs.reject_at {
            Decision::Reject
        } else if score >= rs.review_at {
            Decision::Review
        } else {
            Decision::Pass
        }
    }
}

/// The retailer component on its own, for the hourly alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetailerRisk {
    /// Weighted average of the components, 0–100.
    pub score: u8,
    /// The four components.
    pub components: Vec<Component>,
    /// One reason per component with non-zero points.
    pub reasons: Vec<Reason>,
}

/// The full order assessment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskAssessment {
    /// Final score 0–100: retailer component plus signals, capped at 100.
    pub score: u8,
    /// The retailer component alone, 0–100.
    pub retailer_score: u8,
    /// The retailer components.
    pub components: Vec<Component>,
    /// Component reasons first, then fired order signals.
    pub reasons: Vec<Reason>,
    /// Pass, review or reject.
    pub decision: Decision,
}

/// Computes the retailer component (step 1 of the module docs).
pub fn retailer_risk(r: &RetailerRiskInputs, rs: &RiskSettings) -> RetailerRisk {
    let w = &rs.weights;
    let avg_late = if r.recent_days_late.is_empty() {
        0.0
    } else {
        let total: f64 = r.recent_days_late.iter().map(|&d| d.max(0) as f64).sum();
        total / r.recent_days_late.len() as f64
    };
    let delay = ramp(avg_late, 0.0, rs.payment_delay_full_days as f64);
    let utilisation = r.utilisation_pct.map_or(0, |u| {
        ramp(
            f64::from(u),
            f64::from(rs.utilisation_low_pct),
            f64::from(rs.utilisation_high_pct),
        )
    });
    // Zero at the usual rate, full where a spike starts, so the component and the spike
    // signal agree on what "unusual" means.
    let usual = r.usual_7d_rate.max(0.0);
    let spike_at =
        (usual * f64::from(rs.spike_factor_pct) / 100.0).max(f64::from(rs.spike_min_orders_7d));
    let pattern = ramp(f64::from(r.orders_last_7d), usual, spike_at);
    let overdue = ramp(
        r.oldest_overdue_days as f64,
        0.0,
        rs.overdue_full_days as f64,
    );

    let components = vec![
        Component {
            name: ComponentName::PaymentDelay,
            weight: w.payment_delay,
            points: delay,
        },
        Component {
            name: ComponentName::Utilisation,
            weight: w.utilisation,
            points: utilisation,
        },
        Component {
            name: ComponentName::OrderPattern,
            weight: w.order_pattern,
            points: pattern,
        },
        Component {
            name: ComponentName::Overdue,
            weight: w.overdue,
            points: overdue,
        },
    ];
    let den: u64 = components.iter().map(|c| u64::from(c.weight)).sum();
    let num: u64 = components
        .iter()
        .map(|c| u64::from(c.weight) * u64::from(c.points))
        .sum();
    let score = if den == 0 {
        0
    } else {
        ((2 * num + den) / (2 * den)).min(100) as u8
    };

    let mut reasons = Vec::new();
    let mut add = |points: u8, code, text: String| {
        if points > 0 {
            reasons.push(Reason { code, text });
        }
    };
    add(
        delay,
        ReasonCode::PaymentDelay,
        format!("recent payments {avg_late:.1} days late on average"),
    );
    if let Some(u) = r.utilisation_pct {
        add(
            utilisation,
            ReasonCode::HighUtilisation,
            format!("{u}% of the credit limit in use"),
        );
    }
    add(
        pattern,
        ReasonCode::UnusualOrderPattern,
        format!(
            "{} orders in 7 days against a usual {usual:.1}",
            r.orders_last_7d
        ),
    );
    add(
        overdue,
        ReasonCode::OverdueBalance,
        format!(
            "oldest unpaid debit {} days past due",
            r.oldest_overdue_days
        ),
    );
    RetailerRisk {
        score,
        components,
        reasons,
    }
}

/// Assesses an order: retailer component, order signals, decision (see the module docs).
pub fn assess(inputs: &RiskInputs, rs: &RiskSettings) -> RiskAssessment {
    let retailer = retailer_risk(&inputs.retailer, rs);
    let mut reasons = retailer.reasons;
    let mut signal_points: u32 = 0;
    let mut signal = |points: u8, code, text: String| {
        signal_points += u32::from(points);
        reasons.push(Reason {
            code,
            text: format!("{text} (+{points})"),
        });
    };
    let (o, p) = (&inputs.order, &rs.signal_points);
    if o.is_first_order {
        signal(
            p.first_order_new_retailer,
            ReasonCode::FirstOrderNewRetailer,
            "first order of a new retailer".into(),
        );
    }
    if let Some(avg) = o.average_order_value_paisa.filter(|&a| a > 0) {
        let threshold = i128::from(avg) * i128::from(rs.high_value_factor_pct);
        if i128::from(o.value_paisa) * 100 > threshold {
            let text = format!(
                "order value {} above {}% of the average {}",
                npr(o.value_paisa),
                rs.high_value_factor_pct,
                npr(avg)
            );
            signal(p.value_above_average, ReasonCode::ValueAboveAverage, text);
        }
    }
    let r = &inputs.retailer;
    if order_spike(r.orders_last_7d, r.usual_7d_rate, rs) {
        let text = format!(
            "{} orders in 7 days, above {}% of the usual {:.1}",
            r.orders_last_7d, rs.spike_factor_pct, r.usual_7d_rate
        );
        signal(p.order_count_spike, ReasonCode::OrderCountSpike, text);
    }
    if let Some(cap) = o.band_order_cap_paisa.filter(|&cap| o.value_paisa > cap) {
        let text = format!(
            "order value {} above the band cap {}",
            npr(o.value_paisa),
            npr(cap)
        );
        signal(p.value_above_band_cap, ReasonCode::ValueAboveBandCap, text);
    }
    let score = (u32::from(retailer.score) + signal_points).min(100) as u8;
    RiskAssessment {
        score,
        retailer_score: retailer.score,
        components: retailer.components,
        reasons,
        decision: Decision::for_score(score, rs),
    }
}
