//! Reply templates, in files (`crates/khaacho/templates/{en,ne}/messages.txt`), compiled in
//! and parsed once. Every reply names a template and its variables; the outbox stores both
//! and the rendered text.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The languages replies are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// English.
    En,
    /// Nepali (Devanagari).
    Ne,
}

impl Language {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Ne => "ne",
        }
    }

    /// Parses a stored name (anything else is English).
    pub fn parse(s: &str) -> Self {
        if s == "ne" {
            Language::Ne
        } else {
            Language::En
        }
    }
}

const EN: &str = include_str!("../../templates/en/messages.txt");
const NE: &str = include_str!("../../templates/ne/messages.txt");

/// `== name` blocks of one file.
fn parse(file: &'static str) -> HashMap<&'static str, String> {
    let mut out = HashMap::new();
    let mut name: Option<&'static str> = None;
    let mut text: Vec<&'static str> = Vec::new();
    let mut flush = |name: Option<&'static str>, text: &mut Vec<&'static str>| {
        if let Some(n) = name {
            out.insert(n, text.join("\n").trim().to_string());
        }
        text.clear();
    };
    for line in file.lines() {
        if let Some(n) = line.strip_prefix("== ") {
            flush(name, &mut text);
            name = Some(n.trim());
        } else if !line.starts_with('#') {
            text.push(line);
        }
    }
    flush(name, &mut text);
    out
}

fn templates(lang: Language) -> &'static HashMap<&'static str, String> {
    static EN_T: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    static NE_T: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    match lang {
        Language::En => EN_T.get_or_init(|| parse(EN)),
        Language::Ne => NE_T.get_or_init(|| parse(NE)),
    }
}

/// Renders template `name` in `lang` with `vars` (`{key}` → value). A template missing in
/// Nepali falls back to English; a name missing in both renders as the name itself (a unit
/// test keeps every name the code uses present in both files). A `reason` that is one of
/// the orders' reason codes ([`REASONS`]) is written out in `lang` for its reader: a
/// retailer's (`reason.<code>`), or, in a vendor's templates (`vendor_*`), a vendor's
/// (`reason.<code>.vendor`, [`VENDOR_REASONS`]; a code without one stays as written). Any
/// other reason (a person's own words) is kept as written.
pub fn render(lang: Language, name: &str, vars: &serde_json::Value) -> String {
    let text = templates(lang)
        .get(name)
        .or_else(|| templates(Language::En).get(name))
        .cloned()
        .unwrap_or_else(|| name.to_string());
    let mut out = text;
    if let Some(map) = vars.as_object() {
        for (k, v) in map {
            let value = match v {
                serde_json::Value::String(s) if k == "reason" && REASONS.contains(&s.as_str()) => {
                    reason_text(lang, name, s)
                }
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out = out.replace(&format!("{{{k}}}"), &value);
        }
    }
    out
}

/// The reason codes orders carry when held or rejected (`reason.<code>` in the files).
pub const REASONS: &[&str] = &[
    "credit_approval",
    "credit_limit",
    "credit_band_cap",
    "large_order_review",
    "risk_review",
    "parse_review",
    "vendor_unavailable",
    "retailer_issue",
    "credit_blocked",
    "cash_only_band",
    "risk_rejected",
    "lines_rejected",
    "retailer_cancelled",
];

/// The codes a vendor's message may carry, written for a vendor (`reason.<code>.vendor`).
pub const VENDOR_REASONS: &[&str] = &["retailer_cancelled"];

/// Reason `code` in template `name`, written for that template's reader (see [`render`]).
fn reason_text(lang: Language, name: &str, code: &str) -> String {
    let key = if !name.starts_with("vendor_") {
        format!("reason.{code}")
    } else if VENDOR_REASONS.contains(&code) {
        format!("reason.{code}.vendor")
    } else {
        return code.to_string();
    };
    render(lang, &key, &serde_json::Value::Null)
}

/// An order's state as a phone reads it (`status.<state>` in the files).
pub fn status_word(lang: Language, status: crate::orders::model::OrderStatus) -> String {
    render(
        lang,
        &format!("status.{}", status.as_str()),
        &serde_json::Value::Null,
    )
}

/// Every template name the conversations use.
pub const NAMES: &[&str] = &[
    "greeting",
    "thanks",
    "help_retailer",
    "help_vendor",
    "unknown_sender",
    "not_understood",
    "clarify_item",
    "clarify_quantity",
    "clarify_again",
    "draft_summary",
    "draft_empty",
    "draft_expired",
    "draft_cancelled",
    "nothing_pending",
    "order_placed",
    "order_placed_safe_mode",
    "order_refused",
    "status_list",
    "status_none",
    "ref_unknown",
    "offer_accepted",
    "offer_rejected",
    "reject_needs_reason",
    "cancel_needs_reason",
    "part_given_back",
    "part_given_back_held",
    "issue_needs_reason",
    "action_refused",
    "receipt_confirmed",
    "issue_reported",
    "vendor_offers",
    "vendor_no_offers",
    "vendor_offer_line",
    "order_confirmed",
    "order_on_hold",
    "order_accepted",
    "order_vendor_changed",
    "order_dispatched",
    "order_delivered",
    "order_rejected",
    "order_cancelled",
    "vendor_offer",
    "vendor_part_cancelled",
    "payment_due_soon",
    "payment_due_today",
    "payment_overdue",
    "credit_overdue_warning",
    "credit_blocked",
    "credit_limit_cut",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_languages_have_every_template() {
        for lang in [Language::En, Language::Ne] {
            let t = templates(lang);
            let reasons = REASONS
                .iter()
                .map(|r| format!("reason.{r}"))
                .chain(VENDOR_REASONS.iter().map(|r| format!("reason.{r}.vendor")));
            let states = crate::orders::model::OrderStatus::ALL
                .iter()
                .map(|s| format!("status.{}", s.as_str()));
            let all: Vec<String> = NAMES
                .iter()
                .map(|n| n.to_string())
                .chain(reasons)
                .chain(states)
                .collect();
            for name in &all {
                assert!(
                    t.contains_key(name.as_str()),
                    "{name} missing in {}",
                    lang.as_str()
                );
            }
            assert_eq!(
                t.len(),
                all.len(),
                "{} has templates nobody uses",
                lang.as_str()
            );
        }
    }

    #[test]
    fn renders_variables() {
        let s = render(
            Language::En,
            "order_placed",
            &json!({ "ref": "AB12CD", "total": "NPR 1.00" }),
        );
        assert!(
            s.starts_with("Thank you! Your order AB12CD is placed (NPR 1.00)."),
            "{s}"
        );
        assert!(render(Language::Ne, "draft_expired", &json!({})).contains("म्याद"));
    }

    #[test]
    fn a_reason_code_is_written_out_and_a_persons_words_are_kept() {
        let held = |lang, reason| {
            render(
                lang,
                "order_on_hold",
                &json!({ "ref": "AB12CD", "reason": reason }),
            )
        };
        assert_eq!(
            held(Language::En, "credit_approval"),
            "Your order AB12CD is on hold: it waits for a credit approval. Our team will look at it soon."
        );
        assert!(
            held(Language::Ne, "vendor_unavailable").contains("अहिले कुनै विक्रेताले लिन सकेनन्"),
            "{}",
            held(Language::Ne, "vendor_unavailable")
        );
        let cancelled = render(
            Language::En,
            "order_cancelled",
            &json!({ "ref": "AB12CD", "reason": "truck broke down" }),
        );
        assert_eq!(
            cancelled,
            "Your order AB12CD is cancelled: truck broke down"
        );
        // Written for the vendor in a vendor's message; a code it has no words for is kept.
        let to_vendor = |reason| {
            render(
                Language::En,
                "vendor_part_cancelled",
                &json!({ "ref": "AB12CD", "reason": reason }),
            )
        };
        assert_eq!(
            to_vendor("retailer_cancelled"),
            "Order AB12CD is cancelled, please do not send it: the shop cancelled it"
        );
        assert!(to_vendor("credit_blocked").ends_with(": credit_blocked"));
    }
}
