//! Every number the credit and risk rules use, with DOMAIN.md's figures as defaults.
//!
//! The rules never carry a literal threshold: an admin edits these through the settings table
//! or the configuration file, and a partial document keeps the defaults for everything it
//! leaves out (`#[serde(default)]` on every struct). Percentages are whole percent and money is
//! integer paisa, so every rule is exact integer arithmetic and the tests can pin boundaries.

use serde::{Deserialize, Serialize};

use crate::Paisa;

/// Paisa in one rupee; defaults below are written in rupees for the reader's sake.
const PAISA_PER_NPR: Paisa = 100;

/// Weights of the five credit-score factors. They are normalised by their sum, so a
/// configuration that does not add up to 100 still yields a score in range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreWeights {
    /// Payment timeliness (DOMAIN: 40).
    pub timeliness: u32,
    /// Order consistency: orders per month and regularity (DOMAIN: 20).
    pub consistency: u32,
    /// Credit utilisation (DOMAIN: 20).
    pub utilisation: u32,
    /// Account age (DOMAIN: 10).
    pub account_age: u32,
    /// Dispute and cancellation rate (DOMAIN: 10).
    pub disputes: u32,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            timeliness: 40,
            consistency: 20,
            utilisation: 20,
            account_age: 10,
            disputes: 10,
        }
    }
}

/// Credit score, bands, limit changes and the hourly credit controls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreditSettings {
    /// Lowest possible score (all factors at 0 points).
    pub score_min: u16,
    /// Score of a retailer whose factors are all neutral, including one with no history.
    pub score_base: u16,
    /// Highest possible score (all factors at 100 points).
    pub score_max: u16,
    /// Factor points that map to `score_base`; also what a factor without data scores, so
    /// missing data neither rewards nor punishes.
    pub neutral_factor_points: u8,
    /// Factor weights.
    pub weights: ScoreWeights,
    /// A payment is on time when made at most this many days after the due date.
    pub on_time_grace_days: i64,
    /// Average orders per month that earns full frequency points (4 ≈ weekly restocking).
    pub consistency_target_orders_per_month: u32,
    /// Share of the consistency factor given to frequency; the rest rewards regularity.
    pub consistency_frequency_share_pct: u32,
    /// Utilisation at or below this percent of the limit earns full points.
    pub utilisation_best_pct: u32,
    /// Utilisation at or above this percent earns zero points.
    pub utilisation_worst_pct: u32,
    /// Account age in months that earns full points.
    pub account_age_full_months: u32,
    /// Dispute-and-cancellation rate (percent of orders) that earns zero points.
    pub dispute_rate_worst_pct: u32,
    // Bands are flat fields rather than one struct per band so that a partial document
    // (say only `good_limit_change_pct`) keeps every other band figure at its own default.
    /// Lowest score of the excellent band.
    pub excellent_min_score: u16,
    /// Lowest score of the good band.
    pub good_min_score: u16,
    /// Lowest score of the fair band.
    pub fair_min_score: u16,
    /// Lowest score of the poor band; anything lower is very poor.
    pub poor_min_score: u16,
    /// Largest single credit order in the excellent band (`None`: no cap).
    pub excellent_order_cap_paisa: Option<Paisa>,
    /// Largest single credit order in the good band (`None`: no cap).
    pub good_order_cap_paisa: Option<Paisa>,
    /// Largest single order in the fair band.
    pub fair_order_cap_paisa: Option<Paisa>,
    /// Largest single order in the poor band.
    pub poor_order_cap_paisa: Option<Paisa>,
    /// Largest single order in the very poor band (paid in cash: no credit orders at all).
    pub very_poor_order_cap_paisa: Option<Paisa>,
    /// Automatic limit change of the excellent band, percent (+20).
    pub excellent_limit_change_pct: i32,
    /// Automatic limit change of the good band, percent (+10).
    pub good_limit_change_pct: i32,
    /// Automatic limit change of the fair band, percent (0: none).
    pub fair_limit_change_pct: i32,
    /// Automatic limit change of the poor band, percent (−10).
    pub poor_limit_change_pct: i32,
    /// Automatic limit change of the very poor band, percent (−20).
    pub very_poor_limit_change_pct: i32,
    /// An automatic increase in the excellent band stops here (`None`: no ceiling).
    pub excellent_limit_ceiling_paisa: Option<Paisa>,
    /// An automatic increase in the good band stops here (`None`: no ceiling).
    pub good_limit_ceiling_paisa: Option<Paisa>,
    /// Ceiling for the fair band, should it be configured to increase.
    pub fair_limit_ceiling_paisa: Option<Paisa>,
    /// Ceiling for the poor band, should it be configured to increase.
    pub poor_limit_ceiling_paisa: Option<Paisa>,
    /// Ceiling for the very poor band, should it be configured to increase.
    pub very_poor_limit_ceiling_paisa: Option<Paisa>,
    /// Automatic limit changes happen at most once in this many days.
    pub limit_change_min_interval_days: i64,
    /// A limit decrease never goes below this percent of outstanding (120 = 1.2 ×).
    pub decrease_floor_outstanding_pct: i64,
    /// Consecutive late payments that trigger a late-payment cut.
    pub late_payment_streak: u32,
    /// Size of one late-payment cut, percent of the current limit.
    pub late_payment_cut_pct: i64,
    /// Late-payment cuts together take at most this percent of the original limit.
    pub late_payment_max_total_cut_pct: i64,
    /// A late-payment cut never takes the limit below this.
    pub late_payment_floor_paisa: Paisa,
    /// Oldest overdue debit at this many days warns the retailer.
    pub overdue_warn_days: i64,
    /// Oldest overdue debit at this many days blocks credit orders.
    pub overdue_block_days: i64,
    /// Payment terms of a new account: due = delivery + this many days.
    pub default_terms_days: i64,
    /// The same alert is raised at most once in this many hours.
    pub alert_dedupe_hours: i64,
}

impl Default for CreditSettings {
    fn default() -> Self {
        Self {
            score_min: 300,
            score_base: 500,
            score_max: 900,
            neutral_factor_points: 50,
            weights: ScoreWeights::default(),
            on_time_grace_days: 7,
            consistency_target_orders_per_month: 4,
            consistency_frequency_share_pct: 50,
            utilisation_best_pct: 30,
            utilisation_worst_pct: 90,
            account_age_full_months: 24,
            dispute_rate_worst_pct: 20,
            excellent_min_score: 750,
            good_min_score: 650,
            fair_min_score: 550,
            poor_min_score: 450,
            excellent_order_cap_paisa: None,
            good_order_cap_paisa: None,
            fair_order_cap_paisa: Some(100_000 * PAISA_PER_NPR),
            poor_order_cap_paisa: Some(50_000 * PAISA_PER_NPR),
            very_poor_order_cap_paisa: Some(25_000 * PAISA_PER_NPR),
            excellent_limit_change_pct: 20,
            good_limit_change_pct: 10,
            fair_limit_change_pct: 0,
            poor_limit_change_pct: -10,
            very_poor_limit_change_pct: -20,
            excellent_limit_ceiling_paisa: Some(1_000_000 * PAISA_PER_NPR),
            good_limit_ceiling_paisa: Some(500_000 * PAISA_PER_NPR),
            fair_limit_ceiling_paisa: None,
            poor_limit_ceiling_paisa: None,
            very_poor_limit_ceiling_paisa: None,
            limit_change_min_interval_days: 30,
            decrease_floor_outstanding_pct: 120,
            late_payment_streak: 3,
            late_payment_cut_pct: 25,
            late_payment_max_total_cut_pct: 50,
            late_payment_floor_paisa: 10_000 * PAISA_PER_NPR,
            overdue_warn_days: 15,
            overdue_block_days: 30,
            default_terms_days: 30,
            alert_dedupe_hours: 24,
        }
    }
}

/// Weights of the four retailer risk components (normalised by their sum).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RiskWeights {
    /// Payment delay (DOMAIN: 40).
    pub payment_delay: u32,
    /// Utilisation (DOMAIN: 30).
    pub utilisation: u32,
    /// Order pattern (DOMAIN: 20).
    pub order_pattern: u32,
    /// Overdue balance (DOMAIN: 10).
    pub overdue: u32,
}

impl Default for RiskWeights {
    fn default() -> Self {
        Self {
            payment_delay: 40,
            utilisation: 30,
            order_pattern: 20,
            overdue: 10,
        }
    }
}

/// Points each order signal adds on top of the retailer component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignalPoints {
    /// First order of a new retailer: worth a look, not a hold on its own.
    pub first_order_new_retailer: u8,
    /// Order value above `high_value_factor_pct` of the retailer's average.
    pub value_above_average: u8,
    /// 7-day order count above `spike_factor_pct` of the usual rate.
    pub order_count_spike: u8,
    /// Order value above the band's single-order cap: alone it reaches review.
    pub value_above_band_cap: u8,
}

impl Default for SignalPoints {
    fn default() -> Self {
        Self {
            first_order_new_retailer: 20,
            value_above_average: 25,
            order_count_spike: 25,
            value_above_band_cap: 50,
        }
    }
}

/// Order risk at validation and the hourly risk alerts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RiskSettings {
    /// Retailer component weights.
    pub weights: RiskWeights,
    /// Average days late (after due) at which the payment-delay component is 100.
    pub payment_delay_full_days: i64,
    /// Utilisation at or below this percent scores 0 risk.
    pub utilisation_low_pct: u32,
    /// Utilisation at or above this percent scores 100 risk.
    pub utilisation_high_pct: u32,
    /// Oldest overdue debit at this many days makes the overdue component 100.
    pub overdue_full_days: i64,
    /// Points added by order signals.
    pub signal_points: SignalPoints,
    /// An order is high-value above this percent of the retailer's average (300 = 3 ×).
    pub high_value_factor_pct: u32,
    /// A 7-day order count above this percent of the usual 7-day rate is a spike (300 = 3 ×).
    pub spike_factor_pct: u32,
    /// A spike also needs at least this many orders in 7 days, so a retailer with little or no
    /// baseline is not flagged for its second or third order (project choice, not DOMAIN).
    pub spike_min_orders_7d: u32,
    /// Scores at or above this are held for review.
    pub review_at: u8,
    /// Scores at or above this are rejected.
    pub reject_at: u8,
    /// A retailer risk score at or above this raises an alert (hourly control).
    pub alert_at: u8,
}

impl Default for RiskSettings {
    fn default() -> Self {
        Self {
            weights: RiskWeights::default(),
            payment_delay_full_days: 30,
            utilisation_low_pct: 30,
            utilisation_high_pct: 90,
            overdue_full_days: 30,
            signal_points: SignalPoints::default(),
            high_value_factor_pct: 300,
            spike_factor_pct: 300,
            spike_min_orders_7d: 4,
            review_at: 50,
            reject_at: 80,
            alert_at: 70,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_documents_keep_the_defaults() {
        let credit: CreditSettings = serde_json::from_str(
            r#"{"overdue_block_days": 45, "good_limit_change_pct": 5, "fair_order_cap_paisa": null}"#,
        )
        .expect("valid settings");
        assert_eq!(credit.overdue_block_days, 45);
        assert_eq!(credit.overdue_warn_days, 15);
        assert_eq!(credit.good_limit_change_pct, 5);
        assert_eq!(credit.good_min_score, 650);
        assert_eq!(credit.fair_order_cap_paisa, None);
        assert_eq!(credit.poor_order_cap_paisa, Some(5_000_000));

        let risk: RiskSettings = serde_json::from_str(r#"{"reject_at": 90}"#).expect("valid");
        assert_eq!(risk.reject_at, 90);
        assert_eq!(risk.review_at, 50);
    }

    #[test]
    fn defaults_are_domain_figures() {
        let s = CreditSettings::default();
        assert_eq!(s.fair_order_cap_paisa, Some(10_000_000));
        assert_eq!(s.excellent_limit_ceiling_paisa, Some(100_000_000));
        assert_eq!(s.late_payment_floor_paisa, 1_000_000);
        let w = &s.weights;
        assert_eq!(
            w.timeliness + w.consistency + w.utilisation + w.account_age + w.disputes,
            100
        );
    }
}
