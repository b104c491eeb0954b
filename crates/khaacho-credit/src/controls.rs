//! Pure decisions behind the hourly automated controls (DOMAIN.md "Risk", automated controls).
//!
//! The job reads each account's facts, asks these functions what to do, and records the
//! outcome; the dedupe of alerts is a decision too, so that two nodes or two ticks reach the
//! same answer from the same stored `last_alert_at`.

use serde::{Deserialize, Serialize};

use crate::band::LimitChange;
use crate::settings::{CreditSettings, RiskSettings};
use crate::{DAY_MS, HOUR_MS, Paisa, npr, percent_of};

/// Whole days `at_ms` is past `due_at_ms`: 0 when not past due, 1 from 24 h after due, etc.
/// Negative for early payments so the score can tell early from on time if it ever needs to.
pub fn days_past_due(due_at_ms: i64, at_ms: i64) -> i64 {
    at_ms.saturating_sub(due_at_ms).div_euclid(DAY_MS)
}

/// A payment is late when made more than `on_time_grace_days` (7) whole days after due.
pub fn payment_is_late(due_at_ms: i64, paid_at_ms: i64, s: &CreditSettings) -> bool {
    days_past_due(due_at_ms, paid_at_ms) > s.on_time_grace_days
}

/// The late-payment cut, or `None` when it does not apply or would not lower the limit.
///
/// After `late_payment_streak` (3) consecutive late payments the limit drops by
/// `late_payment_cut_pct` (25%) of the current limit, but all such cuts together never take
/// more than `late_payment_max_total_cut_pct` (50%) of `original_limit_paisa`, and never go
/// below `late_payment_floor_paisa` (NPR 10,000). A limit already at or below those bounds is
/// left alone: the rule cuts, it never raises.
///
/// `original_limit_paisa` is the limit before the first late-payment cut. `consecutive_late`
/// must count the late payments *since the last cut* (the caller resets it when it applies a
/// cut), otherwise every hourly run would cut again for the same streak.
pub fn late_payment_cut(
    consecutive_late: u32,
    original_limit_paisa: Paisa,
    current_limit_paisa: Paisa,
    s: &CreditSettings,
) -> Option<LimitChange> {
    if consecutive_late < s.late_payment_streak || current_limit_paisa <= 0 {
        return None;
    }
    let target = current_limit_paisa - percent_of(current_limit_paisa, s.late_payment_cut_pct);
    let max_cut_bound =
        original_limit_paisa - percent_of(original_limit_paisa, s.late_payment_max_total_cut_pct);
    let bound = max_cut_bound.max(s.late_payment_floor_paisa);
    let new_limit = target.max(bound);
    if new_limit >= current_limit_paisa {
        return None;
    }
    let note = if new_limit == target {
        String::new()
    } else if bound == s.late_payment_floor_paisa {
        format!(", held at the {} floor", npr(bound))
    } else {
        format!(
            ", held at {}% total cut of the original {}",
            s.late_payment_max_total_cut_pct,
            npr(original_limit_paisa)
        )
    };
    let reason = format!(
        "{consecutive_late} consecutive late payments: limit -{}% ({} → {}){note}",
        s.late_payment_cut_pct,
        npr(current_limit_paisa),
        npr(new_limit)
    );
    Some(LimitChange {
        previous_limit_paisa: current_limit_paisa,
        new_limit_paisa: new_limit,
        reason,
    })
}

/// What the overdue control does for an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverdueAction {
    /// Nothing overdue long enough to act on.
    None,
    /// Remind the retailer (15 days by default).
    Warn,
    /// Block credit orders (30 days by default) until the overdue debit is paid.
    Block,
}

impl OverdueAction {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            OverdueAction::None => "none",
            OverdueAction::Warn => "warn",
            OverdueAction::Block => "block",
        }
    }
}

/// Action for an account whose oldest unpaid debit is `oldest_overdue_days` past due (use
/// [`days_past_due`]; 0 or negative when nothing is overdue). Thresholds are inclusive.
pub fn overdue_action(oldest_overdue_days: i64, s: &CreditSettings) -> OverdueAction {
    if oldest_overdue_days >= s.overdue_block_days {
        OverdueAction::Block
    } else if oldest_overdue_days >= s.overdue_warn_days {
        OverdueAction::Warn
    } else {
        OverdueAction::None
    }
}

/// Whether an alert may be raised now, given when the same alert (same kind, same retailer)
/// was last raised: at most once per `alert_dedupe_hours` (24).
pub fn should_alert(last_alert_at_ms: Option<i64>, now_ms: i64, s: &CreditSettings) -> bool {
    let window_ms = s.alert_dedupe_hours.saturating_mul(HOUR_MS);
    last_alert_at_ms.is_none_or(|last| now_ms.saturating_sub(last) >= window_ms)
}

/// An order spike: the last 7 days' order count is above `spike_factor_pct` (300%) of the
/// usual 7-day rate *and* at least `spike_min_orders_7d`, so a retailer without a baseline is
/// not flagged for its second order. `usual_7d_rate` is the average per 7 days over the
/// retailer's earlier history (0 when it has none).
pub fn order_spike(recent_7d_count: u32, usual_7d_rate: f64, rs: &RiskSettings) -> bool {
    let threshold = usual_7d_rate.max(0.0) * f64::from(rs.spike_factor_pct) / 100.0;
    recent_7d_count >= rs.spike_min_orders_7d && f64::from(recent_7d_count) > threshold
}

/// The hourly high-risk alert: a retailer risk score at or above `alert_at` (70).
pub fn high_risk_alert(retailer_risk_score: u8, rs: &RiskSettings) -> bool {
    retailer_risk_score >= rs.alert_at
}
