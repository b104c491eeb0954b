//! Credit and risk: who may buy how much (DESIGN §11, DOMAIN "Credit" and "Risk").
//!
//! - [`ledger`]: holds and postings (reserve at validation, post at delivery, void on
//!   cancellation or rejection, reverse after delivery), idempotent per order, and the
//!   reconciliation that proves every account against its holds and ledger;
//! - [`payments`]: payments allocated oldest-due first, limit and status changes;
//! - [`risk`]: the facts the order-risk rules need, read for a batch of retailers at once;
//! - [`scoring`]: the daily credit scores with bands and automatic limit changes, and the
//!   hourly controls (late-payment cuts, overdue warning and block, risk and spike alerts);
//! - [`alerts`]: alerts with severity, listed and acknowledged by operators (the overdue
//!   warning, the block and the late-payment cut also message the retailer);
//! - [`reminders`]: the daily payment reminders (3 days before due, on due, 7 days after);
//! - [`routes`]: the API (accounts, ledger, payments, limits, reconciliation).
//!
//! The rules themselves (score, bands, limit changes, controls, order risk) are pure and live
//! in the `khaacho-credit` crate. The pipeline's credit and risk steps
//! (`orders/pipeline/{credit,risk}.rs`) call into this module.

pub mod alerts;
pub mod ledger;
pub mod payments;
pub mod reminders;
pub mod repo;
pub mod risk;
pub mod routes;
pub mod scoring;

use serde::Deserialize;

/// Credit and risk settings (`credit.*`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct CreditConfig {
    /// Limit of a retailer's account when it is opened (with its first credit order), NPR.
    pub default_limit_npr: i64,
    /// Score, bands, limit changes and controls.
    pub rules: khaacho_credit::CreditSettings,
    /// Order risk weights, signals and thresholds.
    pub risk: khaacho_credit::RiskSettings,
}

impl Default for CreditConfig {
    fn default() -> Self {
        Self {
            default_limit_npr: 100_000,
            rules: khaacho_credit::CreditSettings::default(),
            risk: khaacho_credit::RiskSettings::default(),
        }
    }
}

impl CreditConfig {
    /// The opening limit in paisa.
    pub fn default_limit_paisa(&self) -> i64 {
        self.default_limit_npr.saturating_mul(100)
    }
}
