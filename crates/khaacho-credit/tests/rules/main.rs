//! Table and property tests of the credit and risk rules, black-box through the public API.
//! One test binary (modules below) so the shared 2-core machine links once.
#![allow(clippy::unwrap_used)]

mod band;
mod controls;
mod ledger;
mod properties;
mod risk;
mod score;

/// Rupees to paisa, so tables read in the units DOMAIN.md uses.
pub const fn npr(rupees: i64) -> i64 {
    rupees * 100
}

/// Days to milliseconds.
pub const fn days(n: i64) -> i64 {
    n * khaacho_credit::DAY_MS
}
