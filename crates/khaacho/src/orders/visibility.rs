//! Who may see what of an order, next to the scoped finders (`repo::find`/`list`, which decide
//! *which* orders a caller sees). Every route that returns orders, lines or events renders
//! them through [`Visibility`], so a rule is applied the same way everywhere.
//!
//! The rule today: staff and the buying retailer see everything; a vendor sees only the lines
//! addressed to it and no money beyond its own lines — no order totals, and no amounts in
//! event details (a large-order hold names the order total, later a credit hold its amount).

use serde_json::Value;
use uuid::Uuid;

use super::model::LineRow;
use crate::base::principal::{Principal, Role};

/// What of an order a caller may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Everything (staff, the buying retailer).
    Full,
    /// A vendor: its own lines, no order-level money.
    Vendor(Uuid),
}

impl Visibility {
    /// The policy for `principal`.
    pub fn of(principal: &Principal) -> Self {
        match principal.role {
            Role::Vendor => Visibility::Vendor(principal.vendor().unwrap_or(Uuid::nil())),
            Role::Admin | Role::Operator | Role::Retailer => Visibility::Full,
        }
    }

    /// Whether order totals may be shown.
    pub fn shows_totals(self) -> bool {
        self == Visibility::Full
    }

    /// The lines the caller may see.
    pub fn lines(self, mut lines: Vec<LineRow>) -> Vec<LineRow> {
        if let Visibility::Vendor(v) = self {
            lines.retain(|l| l.vendor_id == Some(v));
        }
        lines
    }

    /// An event's detail as the caller may see it: for a vendor, every amount is removed.
    pub fn event_detail(self, detail: Value) -> Value {
        match self {
            Visibility::Full => detail,
            Visibility::Vendor(_) => without_money(detail),
        }
    }
}

/// Whether a detail key names an amount of money.
fn is_money_key(key: &str) -> bool {
    key.ends_with("_paisa") || key.ends_with("_npr") || key == "totals" || key == "amount"
}

fn without_money(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !is_money_key(k))
                .map(|(k, v)| (k, without_money(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_money).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_vendor_sees_no_amounts_in_event_details() {
        let detail = json!({ "total_paisa": 60_000_000, "review_above_paisa": 50_000_000,
            "lines": [{ "line_no": 1, "code": "no_offer", "subtotal_npr": 5.0 }], "reason": "x" });
        let seen = Visibility::Vendor(Uuid::nil()).event_detail(detail.clone());
        assert_eq!(
            seen,
            json!({ "lines": [{ "line_no": 1, "code": "no_offer" }], "reason": "x" })
        );
        assert_eq!(Visibility::Full.event_detail(detail.clone()), detail);
    }
}
