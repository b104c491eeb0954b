//! Credit bands and the daily automatic limit change.
//!
//! A band turns the score into what a retailer may do (order cap, operator approval, cash
//! only) and how its limit drifts. Band boundaries, caps, percentages and ceilings all come
//! from [`CreditSettings`]; only the two behavioural flags (approval for poor, cash only for
//! very poor) are fixed, because they are what the bands mean rather than tunable numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::settings::CreditSettings;
use crate::{DAY_MS, Paisa, npr, percent_of};

/// Credit band of a retailer, from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// ≥ 750 by default: no order cap; limit +20% up to NPR 1,000,000.
    Excellent,
    /// 650–749: no order cap; limit +10% up to NPR 500,000.
    Good,
    /// 550–649: single order ≤ NPR 100,000.
    Fair,
    /// 450–549: single order ≤ NPR 50,000, operator approval, limit −10%.
    Poor,
    /// < 450: single order ≤ NPR 25,000, cash only, limit −20%.
    VeryPoor,
}

/// A band name that is not one of [`Band::as_str`]'s values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown credit band {0:?}")]
pub struct UnknownBand(pub String);

impl Band {
    /// Every band, best first.
    pub const ALL: [Band; 5] = [
        Band::Excellent,
        Band::Good,
        Band::Fair,
        Band::Poor,
        Band::VeryPoor,
    ];

    /// The band of `score`: the best band whose minimum the score reaches.
    pub fn from_score(score: u16, s: &CreditSettings) -> Band {
        if score >= s.excellent_min_score {
            Band::Excellent
        } else if score >= s.good_min_score {
            Band::Good
        } else if score >= s.fair_min_score {
            Band::Fair
        } else if score >= s.poor_min_score {
            Band::Poor
        } else {
            Band::VeryPoor
        }
    }

    /// The stable snake_case name, as stored and serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Excellent => "excellent",
            Band::Good => "good",
            Band::Fair => "fair",
            Band::Poor => "poor",
            Band::VeryPoor => "very_poor",
        }
    }

    /// Largest single order allowed on credit; `None` means no cap.
    pub fn order_cap_paisa(self, s: &CreditSettings) -> Option<Paisa> {
        match self {
            Band::Excellent => s.excellent_order_cap_paisa,
            Band::Good => s.good_order_cap_paisa,
            Band::Fair => s.fair_order_cap_paisa,
            Band::Poor => s.poor_order_cap_paisa,
            Band::VeryPoor => s.very_poor_order_cap_paisa,
        }
    }

    /// Orders from this band go on hold for an operator (DOMAIN: poor).
    pub fn requires_approval(self) -> bool {
        self == Band::Poor
    }

    /// No credit orders at all, cash on delivery only (DOMAIN: very poor).
    pub fn cash_only(self) -> bool {
        self == Band::VeryPoor
    }

    /// Automatic limit change of the band in percent (negative: a decrease).
    pub fn limit_change_pct(self, s: &CreditSettings) -> i32 {
        match self {
            Band::Excellent => s.excellent_limit_change_pct,
            Band::Good => s.good_limit_change_pct,
            Band::Fair => s.fair_limit_change_pct,
            Band::Poor => s.poor_limit_change_pct,
            Band::VeryPoor => s.very_poor_limit_change_pct,
        }
    }

    /// Ceiling of automatic increases in this band; `None` means none.
    pub fn limit_ceiling_paisa(self, s: &CreditSettings) -> Option<Paisa> {
        match self {
            Band::Excellent => s.excellent_limit_ceiling_paisa,
            Band::Good => s.good_limit_ceiling_paisa,
            Band::Fair => s.fair_limit_ceiling_paisa,
            Band::Poor => s.poor_limit_ceiling_paisa,
            Band::VeryPoor => s.very_poor_limit_ceiling_paisa,
        }
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Band {
    type Err = UnknownBand;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Band::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| UnknownBand(s.to_owned()))
    }
}

/// A limit change to apply and log (DOMAIN: every change of limit is logged with its reason).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitChange {
    /// The limit before the change.
    pub previous_limit_paisa: Paisa,
    /// The limit to set.
    pub new_limit_paisa: Paisa,
    /// Why, in words an operator can read in the limit history.
    pub reason: String,
}

/// The lowest limit a decrease may reach: `decrease_floor_outstanding_pct` (120%) of
/// outstanding, rounded up to the paisa, so the retailer keeps headroom to pay down its debt
/// rather than being pushed over its limit by our own change.
pub fn decrease_floor_paisa(outstanding_paisa: Paisa, s: &CreditSettings) -> Paisa {
    let product =
        i128::from(outstanding_paisa.max(0)) * i128::from(s.decrease_floor_outstanding_pct.max(0));
    crate::saturate((product + 99) / 100)
}

/// The daily band-driven limit change, or `None` when nothing should change.
///
/// Rules, in order: at most one automatic change per `limit_change_min_interval_days` (30)
/// since `last_change_at_ms` (any logged change, manual ones included, restarts the clock);
/// the band's percent applies to the current limit; an increase stops at the band's ceiling
/// and never lowers a limit already above it; a decrease never goes below
/// [`decrease_floor_paisa`] and never raises the limit; no change when the result equals the
/// current limit.
///
/// With default settings a retailer without history scores the base 500, which is in the
/// poor band; the daily job should skip this call when [`crate::CreditScore::has_history`] is
/// false, or a new account's limit would shrink before its first order.
pub fn automatic_limit_change(
    band: Band,
    current_limit_paisa: Paisa,
    outstanding_paisa: Paisa,
    last_change_at_ms: Option<i64>,
    now_ms: i64,
    s: &CreditSettings,
) -> Option<LimitChange> {
    let min_interval_ms = s.limit_change_min_interval_days.saturating_mul(DAY_MS);
    if last_change_at_ms.is_some_and(|last| now_ms.saturating_sub(last) < min_interval_ms) {
        return None;
    }
    let pct = band.limit_change_pct(s);
    let current = current_limit_paisa.max(0);
    let target = current.saturating_add(percent_of(current, i64::from(pct)));
    let (new_limit, bound_note) = if pct > 0 {
        match band.limit_ceiling_paisa(s) {
            Some(ceiling) if target > ceiling => (
                ceiling.max(current),
                format!(", capped at the {} ceiling", npr(ceiling)),
            ),
            _ => (target, String::new()),
        }
    } else {
        let floor = decrease_floor_paisa(outstanding_paisa, s);
        if target < floor {
            let note = format!(
                ", held at {}% of outstanding {}",
                s.decrease_floor_outstanding_pct,
                npr(outstanding_paisa)
            );
            (floor.min(current), note)
        } else {
            (target, String::new())
        }
    };
    if new_limit == current_limit_paisa {
        return None;
    }
    let reason = format!(
        "credit band {band}: limit {pct:+}% ({} → {}){bound_note}",
        npr(current_limit_paisa),
        npr(new_limit)
    );
    Some(LimitChange {
        previous_limit_paisa: current_limit_paisa,
        new_limit_paisa: new_limit,
        reason,
    })
}
