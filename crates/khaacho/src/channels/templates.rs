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
/// test keeps every name the code uses present in both files).
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
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out = out.replace(&format!("{{{k}}}"), &value);
        }
    }
    out
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
            for name in NAMES {
                assert!(t.contains_key(name), "{name} missing in {}", lang.as_str());
            }
            assert_eq!(
                t.len(),
                NAMES.len(),
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
}
