//! Credit score 300–900 with a factor breakdown that explains the number.
//!
//! # How factor points become a score
//! Each factor earns 0–100 points. The weighted average `W = Σ weightᵢ·pointsᵢ / Σ weightᵢ`
//! (0–100) maps piecewise-linearly onto the score, anchored so that neutral points
//! (`neutral_factor_points`, 50) give exactly the base score (500):
//!
//! ```text
//! W ≥ 50:  score = 500 + (W − 50) × (900 − 500) / 50   → 50 ↦ 500, 100 ↦ 900 (8 per point)
//! W < 50:  score = 500 − (50 − W) × (500 − 300) / 50   →  0 ↦ 300,  50 ↦ 500 (4 per point)
//! ```
//! rounded half up to a whole score. With default settings the band thresholds correspond to
//! `W` of 81.25 (750), 68.75 (650), 56.25 (550) and 37.5 (450).
//!
//! A factor without data (no debits yet, no orders yet, no limit) earns the neutral points so
//! missing data neither helps nor hurts; a retailer with no history at all gets exactly the
//! base score and `has_history == false`, which the daily job can use to skip limit changes.

use serde::{Deserialize, Serialize};

use crate::settings::CreditSettings;
use crate::{Paisa, ramp};

/// The facts the score is computed from; the daily job gathers them from the ledger and orders.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreInputs {
    /// For each paid debit, whole days between due date and the payment that settled it
    /// (negative when paid early), see [`crate::days_past_due`].
    pub paid_debits_days_late: Vec<i64>,
    /// For each unpaid debit now past due, whole days past due. Counts as late once past the
    /// grace period, so a retailer who never pays does not keep a clean record.
    pub open_debits_days_overdue: Vec<i64>,
    /// Orders placed in each recent calendar month, oldest first (e.g. the last 6).
    pub orders_per_month: Vec<u32>,
    /// Credit in use (outstanding + held) as percent of the limit; `None` without a limit.
    pub utilisation_pct: Option<u32>,
    /// Whole months since the account was opened.
    pub account_age_months: u32,
    /// Orders placed over the scoring window.
    pub orders_total: u32,
    /// Of those, orders disputed by the retailer or cancelled by it.
    pub orders_disputed_or_cancelled: u32,
}

/// Which factor a [`ScoreFactor`] describes; serialises as a stable snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorName {
    /// Payments made within the grace period after due.
    Timeliness,
    /// Orders per month and their regularity.
    Consistency,
    /// Share of the limit in use.
    Utilisation,
    /// How long the retailer has had an account.
    AccountAge,
    /// Dispute and cancellation rate.
    Disputes,
}

impl FactorName {
    /// The stable name, as stored with the score history.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeliness => "timeliness",
            Self::Consistency => "consistency",
            Self::Utilisation => "utilisation",
            Self::AccountAge => "account_age",
            Self::Disputes => "disputes",
        }
    }
}

/// One line of the score's explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreFactor {
    /// The factor.
    pub name: FactorName,
    /// Its weight in percent of the total weight.
    pub weight_pct: u32,
    /// Points earned, 0 (worst) to 100 (best).
    pub points_0_100: u8,
    /// Human-readable facts behind the points, for operators and the retailer.
    pub detail: String,
}

/// A computed score with the breakdown that produced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditScore {
    /// 300–900 with default settings.
    pub score: u16,
    /// `false` for a retailer with no orders and no debits: the score is the neutral base.
    pub has_history: bool,
    /// One entry per factor, in weight order.
    pub factors: Vec<ScoreFactor>,
}

/// Credit in use as percent of the limit, rounded down; `None` when there is no limit.
pub fn utilisation_pct(used_paisa: Paisa, limit_paisa: Paisa) -> Option<u32> {
    if limit_paisa <= 0 {
        return None;
    }
    let pct = i128::from(used_paisa.max(0)) * 100 / i128::from(limit_paisa);
    Some(u32::try_from(pct).unwrap_or(u32::MAX))
}

/// Computes the score and its breakdown. See the module docs for the mapping.
pub fn compute_score(inputs: &ScoreInputs, settings: &CreditSettings) -> CreditScore {
    let has_history = inputs.orders_total > 0
        || inputs.orders_per_month.iter().any(|&n| n > 0)
        || !inputs.paid_debits_days_late.is_empty()
        || !inputs.open_debits_days_overdue.is_empty();
    let w = &settings.weights;
    let factors = if has_history {
        vec![
            factor(
                FactorName::Timeliness,
                w.timeliness,
                timeliness(inputs, settings),
            ),
            factor(
                FactorName::Consistency,
                w.consistency,
                consistency(inputs, settings),
            ),
            factor(
                FactorName::Utilisation,
                w.utilisation,
                utilisation(inputs, settings),
            ),
            factor(
                FactorName::AccountAge,
                w.account_age,
                account_age(inputs, settings),
            ),
            factor(FactorName::Disputes, w.disputes, disputes(inputs, settings)),
        ]
    } else {
        let neutral = || {
            (
                settings.neutral_factor_points,
                "no history yet: neutral".to_owned(),
            )
        };
        vec![
            factor(FactorName::Timeliness, w.timeliness, neutral()),
            factor(FactorName::Consistency, w.consistency, neutral()),
            factor(FactorName::Utilisation, w.utilisation, neutral()),
            factor(FactorName::AccountAge, w.account_age, neutral()),
            factor(FactorName::Disputes, w.disputes, neutral()),
        ]
    };
    CreditScore {
        score: map_to_score(&factors, settings),
        has_history,
        factors,
    }
}

fn factor(name: FactorName, weight_pct: u32, (points, detail): (u8, String)) -> ScoreFactor {
    ScoreFactor {
        name,
        weight_pct,
        points_0_100: points.min(100),
        detail,
    }
}

/// The piecewise-linear mapping of the module docs, in exact integer arithmetic.
fn map_to_score(factors: &[ScoreFactor], s: &CreditSettings) -> u16 {
    let den: i128 = factors.iter().map(|f| i128::from(f.weight_pct)).sum();
    let num: i128 = factors
        .iter()
        .map(|f| i128::from(f.weight_pct) * i128::from(f.points_0_100))
        .sum();
    let (min, base, max) = (
        i128::from(s.score_min),
        i128::from(s.score_base),
        i128::from(s.score_max),
    );
    if den == 0 {
        return s.score_base;
    }
    let neutral = i128::from(s.neutral_factor_points.min(100));
    let above = num - neutral * den;
    let score = if above >= 0 {
        base + div_round(above * (max - base), (100 - neutral) * den)
    } else {
        base - div_round(-above * (base - min), neutral * den)
    };
    u16::try_from(score.max(min).min(max).max(0)).unwrap_or(u16::MAX)
}

/// Non-negative `num / den` rounded half up; 0 when `den` is 0 (the branch cannot be reached
/// with a non-zero numerator then, because points cannot pass 100 or go below 0).
fn div_round(num: i128, den: i128) -> i128 {
    if den == 0 {
        0
    } else {
        (2 * num + den) / (2 * den)
    }
}

fn neutral(s: &CreditSettings, what: &str) -> (u8, String) {
    (s.neutral_factor_points, format!("{what}: neutral"))
}

fn timeliness(i: &ScoreInputs, s: &CreditSettings) -> (u8, String) {
    let grace = s.on_time_grace_days;
    let on_time = i
        .paid_debits_days_late
        .iter()
        .filter(|&&d| d <= grace)
        .count();
    let late_paid = i.paid_debits_days_late.len() - on_time;
    let late_open = i
        .open_debits_days_overdue
        .iter()
        .filter(|&&d| d > grace)
        .count();
    let counted = on_time + late_paid + late_open;
    if counted == 0 {
        return neutral(s, "no paid or overdue debits yet");
    }
    let points = ramp(on_time as f64, 0.0, counted as f64);
    let detail = format!(
        "{on_time} of {counted} debits paid within {grace} days of due \
         ({late_paid} paid late, {late_open} unpaid past grace)"
    );
    (points, detail)
}

fn consistency(i: &ScoreInputs, s: &CreditSettings) -> (u8, String) {
    let months = &i.orders_per_month;
    if months.is_empty() {
        return neutral(s, "no monthly order counts");
    }
    let n = months.len() as f64;
    let mean = months.iter().map(|&c| f64::from(c)).sum::<f64>() / n;
    let variance = months
        .iter()
        .map(|&c| (f64::from(c) - mean).powi(2))
        .sum::<f64>()
        / n;
    // Regularity is 1 − coefficient of variation: steady monthly buying scores 1, bursts
    // followed by silent months approach 0.
    let regularity = if mean > 0.0 {
        1.0 - (variance.sqrt() / mean).min(1.0)
    } else {
        0.0
    };
    let target = f64::from(s.consistency_target_orders_per_month);
    let frequency = if target > 0.0 {
        (mean / target).min(1.0)
    } else {
        1.0
    };
    let share = f64::from(s.consistency_frequency_share_pct.min(100)) / 100.0;
    let points = ramp(share * frequency + (1.0 - share) * regularity, 0.0, 1.0);
    let detail = format!(
        "{mean:.1} orders/month over {} months (target {}), regularity {:.0}%",
        months.len(),
        s.consistency_target_orders_per_month,
        regularity * 100.0
    );
    (points, detail)
}

fn utilisation(i: &ScoreInputs, s: &CreditSettings) -> (u8, String) {
    let Some(pct) = i.utilisation_pct else {
        return neutral(s, "no credit limit");
    };
    let points = ramp(
        f64::from(pct),
        f64::from(s.utilisation_worst_pct),
        f64::from(s.utilisation_best_pct),
    );
    let detail = format!(
        "{pct}% of limit in use (best ≤ {}%, worst ≥ {}%)",
        s.utilisation_best_pct, s.utilisation_worst_pct
    );
    (points, detail)
}

fn account_age(i: &ScoreInputs, s: &CreditSettings) -> (u8, String) {
    let months = i.account_age_months;
    let points = ramp(f64::from(months), 0.0, f64::from(s.account_age_full_months));
    (
        points,
        format!(
            "{months} months (full points at {})",
            s.account_age_full_months
        ),
    )
}

fn disputes(i: &ScoreInputs, s: &CreditSettings) -> (u8, String) {
    if i.orders_total == 0 {
        return neutral(s, "no orders in the window");
    }
    let bad = i.orders_disputed_or_cancelled.min(i.orders_total);
    let rate_pct = f64::from(bad) * 100.0 / f64::from(i.orders_total);
    let points = ramp(rate_pct, f64::from(s.dispute_rate_worst_pct), 0.0);
    let detail = format!(
        "{bad} of {} orders disputed or cancelled ({rate_pct:.1}%, zero points at {}%)",
        i.orders_total, s.dispute_rate_worst_pct
    );
    (points, detail)
}
