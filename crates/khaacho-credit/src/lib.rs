//! Khaacho's credit and risk rules as pure functions.
//!
//! No I/O, no clock, no database: the application's pipeline steps and scheduled jobs read the
//! facts (ledger entries, order counts, settings), call these functions, and write the results.
//! That keeps every rule table-testable and lets the same rule run in the order pipeline, the
//! hourly controls and the daily score job without drifting apart.
//!
//! Conventions used throughout:
//! - money is integer paisa ([`Paisa`]), never floating point;
//! - times are UTC epoch milliseconds (`*_ms`), durations in whole days or hours as named;
//! - every threshold comes from [`CreditSettings`] or [`RiskSettings`], whose defaults are the
//!   figures of DOMAIN.md "Credit" and "Risk".
//!
//! | module | what it decides |
//! | --- | --- |
//! | [`score`] | credit score 300–900 with its factor breakdown |
//! | [`band`] | band of a score, order cap, approval/cash-only, daily limit change |
//! | [`controls`] | hourly controls: late-payment cut, overdue warn/block, alert dedupe, spikes |
//! | [`risk`] | order risk 0–100 at validation: pass, review or reject, with reasons |
//! | [`ledger`] | FIFO payment allocation, the hold check, an in-memory reference ledger |
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod band;
pub mod controls;
pub mod ledger;
pub mod risk;
pub mod score;
pub mod settings;

pub use band::{Band, LimitChange, automatic_limit_change, decrease_floor_paisa};
pub use controls::{
    OverdueAction, days_past_due, high_risk_alert, late_payment_cut, order_spike, overdue_action,
    payment_is_late, should_alert,
};
pub use ledger::{
    AccountModel, Allocation, EntryKind, Hold, HoldState, LedgerEntry, LedgerError, OpenDebit,
    allocate_fifo, hold_fits,
};
pub use risk::{
    Component, ComponentName, Decision, OrderRiskInputs, Reason, ReasonCode, RetailerRisk,
    RetailerRiskInputs, RiskAssessment, RiskInputs, assess, retailer_risk,
};
pub use score::{
    CreditScore, FactorName, ScoreFactor, ScoreInputs, compute_score, utilisation_pct,
};
pub use settings::{CreditSettings, RiskSettings, RiskWeights, ScoreWeights, SignalPoints};

/// Money in paisa (1 NPR = 100 paisa). A plain `i64` like the rest of the application, named
/// so signatures say what the number is.
pub type Paisa = i64;

/// One day in milliseconds; day counts are whole elapsed days, not calendar days.
pub const DAY_MS: i64 = 86_400_000;

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// Linear points 0–100 for `value`: 0 at `zero_at`, 100 at `full_at`, clamped outside.
/// Works in both directions (`full_at < zero_at` rewards small values), which is how every
/// "≤ x best, ≥ y worst" rule in DOMAIN is expressed.
pub fn ramp(value: f64, zero_at: f64, full_at: f64) -> u8 {
    if !value.is_finite() {
        return 0;
    }
    if zero_at == full_at {
        // Degenerate configuration: a step at the threshold rather than a division by zero.
        let reached = if full_at >= zero_at {
            value >= full_at
        } else {
            value <= full_at
        };
        return if reached { 100 } else { 0 };
    }
    let fraction = ((value - zero_at) / (full_at - zero_at)).clamp(0.0, 1.0);
    // In range 0..=100 after the clamp, so the cast cannot truncate.
    (fraction * 100.0).round() as u8
}

/// `amount × pct / 100`, rounded half away from zero, without overflow for any `i64` input.
pub(crate) fn percent_of(amount: Paisa, pct: i64) -> Paisa {
    let product = i128::from(amount) * i128::from(pct);
    let rounded = if product >= 0 {
        (product + 50) / 100
    } else {
        (product - 50) / 100
    };
    saturate(rounded)
}

/// Narrows to `i64`, saturating, so absurd settings give absurd-but-defined results.
pub(crate) fn saturate(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// Paisa as `NPR 1,234.50` for human-readable reasons.
pub fn npr(paisa: Paisa) -> String {
    let sign = if paisa < 0 { "-" } else { "" };
    let abs = paisa.unsigned_abs();
    let rupees = (abs / 100).to_string();
    let mut grouped = String::with_capacity(rupees.len() + rupees.len() / 3);
    for (i, digit) in rupees.chars().enumerate() {
        if i > 0 && (rupees.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}NPR {grouped}.{:02}", abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_both_ways_and_clamps() {
        assert_eq!(ramp(30.0, 90.0, 30.0), 100);
        assert_eq!(ramp(60.0, 90.0, 30.0), 50);
        assert_eq!(ramp(95.0, 90.0, 30.0), 0);
        assert_eq!(ramp(12.0, 0.0, 24.0), 50);
        assert_eq!(ramp(5.0, 5.0, 5.0), 100);
        assert_eq!(ramp(f64::NAN, 0.0, 1.0), 0);
    }

    #[test]
    fn percent_rounds_half_away_from_zero() {
        assert_eq!(percent_of(1_000, 25), 250);
        assert_eq!(percent_of(5, 10), 1);
        assert_eq!(percent_of(-5, 10), -1);
        assert_eq!(percent_of(i64::MAX, 200), i64::MAX);
    }

    #[test]
    fn formats_rupees() {
        assert_eq!(npr(0), "NPR 0.00");
        assert_eq!(npr(123_456_789), "NPR 1,234,567.89");
        assert_eq!(npr(-1_050), "-NPR 10.50");
    }
}
