//! The structured output every LLM adapter asks for, and its validation against the catalogue.
//!
//! The model is a suggestion engine, not a source of truth: every line it returns is checked
//! here before it can become an order line.

use std::sync::OnceLock;

use khaacho_parser::{Catalog, Flag, FlagKind, ParseOutcome, ParsedItem, Unit, is_absurd};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AgentError;

/// Confidence given to a validated LLM line. Models do not report calibrated confidence, and
/// the local parser's exact matches score higher: this sits between its exact and fuzzy scores
/// so review rules that look at confidence treat LLM lines as "probably right".
pub const LLM_CONFIDENCE: f32 = 0.8;

/// More lines than this in one answer is a runaway generation, not an order.
const MAX_ITEMS: usize = 200;

/// The JSON schema of the output, shared by both providers. Written for OpenAI's strict mode:
/// every property required, no additional properties, nullable fields as `[type, "null"]`.
pub fn output_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut units: Vec<Value> = Unit::ALL.iter().map(|u| json!(u.as_str())).collect();
        units.push(Value::Null);
        let flag_kinds: Vec<&str> = [
            FlagKind::UnknownItem,
            FlagKind::AmbiguousItem,
            FlagKind::AmbiguousQuantity,
            FlagKind::InvalidQuantity,
            FlagKind::AbsurdQuantity,
        ]
        .iter()
        .map(|k| k.as_str())
        .collect();
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["items", "flags"],
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["sku", "qty", "unit", "amount_npr", "text"],
                        "properties": {
                            "sku": {"type": "string", "description": "SKU from the candidate list"},
                            "qty": {"type": ["number", "null"], "description": "quantity as written; null if missing, vague or a range"},
                            "unit": {"type": ["string", "null"], "enum": units},
                            "amount_npr": {"type": ["number", "null"], "description": "money to spend when the order gives an amount instead of a quantity"},
                            "text": {"type": "string", "description": "the phrase of the message this line comes from, copied exactly"}
                        }
                    }
                },
                "flags": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["type", "text"],
                        "properties": {
                            "type": {"type": "string", "enum": flag_kinds},
                            "text": {"type": "string"}
                        }
                    }
                }
            }
        })
    })
}

#[derive(Debug, Deserialize)]
struct WireOutput {
    items: Vec<WireItem>,
    // Lenient: a model that found nothing to flag may leave the array out.
    #[serde(default)]
    flags: Vec<WireFlag>,
}

#[derive(Debug, Deserialize)]
struct WireItem {
    sku: String,
    // Missing nullable fields read as null; servers without strict mode omit them.
    qty: Option<f64>,
    unit: Option<Unit>,
    amount_npr: Option<f64>,
    #[serde(default)]
    text: String,
}

#[derive(Debug, Deserialize)]
struct WireFlag {
    #[serde(rename = "type")]
    kind: FlagKind,
    text: String,
}

/// Turns a provider's JSON answer into a [`ParseOutcome`], or says why it cannot be used.
///
/// - Wrong shape (missing `items` or `sku`, a unit outside the canonical set, an unknown flag
///   type) → [`AgentError::BadOutput`].
/// - An SKU that is not in the catalogue → the line is dropped and flagged `unknown_item`:
///   the model must never invent a product.
/// - Zero, negative or non-finite quantities or amounts, or a weight unit on a liquid (or the
///   reverse) → [`AgentError::BadOutput`]: the model misread the message, so the whole answer
///   is distrusted and the chain falls back.
/// - A quantity beyond [`is_absurd`] → kept with `qty: null` and flagged `absurd_quantity`, as
///   the local parser does.
pub fn validate_output(
    catalog: &Catalog,
    message: &str,
    output: &Value,
) -> Result<ParseOutcome, AgentError> {
    let wire = WireOutput::deserialize(output)
        .map_err(|e| AgentError::BadOutput(format!("output does not match the schema: {e}")))?;
    if wire.items.len() > MAX_ITEMS {
        return Err(AgentError::BadOutput(format!(
            "{} lines in one answer",
            wire.items.len()
        )));
    }
    let mut out = ParseOutcome {
        items: Vec::with_capacity(wire.items.len()),
        flags: wire
            .flags
            .into_iter()
            .map(|f| Flag {
                kind: f.kind,
                text: f.text,
            })
            .collect(),
    };
    for item in wire.items {
        validate_item(catalog, message, item, &mut out)?;
    }
    Ok(out)
}

fn validate_item(
    catalog: &Catalog,
    message: &str,
    item: WireItem,
    out: &mut ParseOutcome,
) -> Result<(), AgentError> {
    let Some(product) = catalog.by_sku(&item.sku) else {
        let text = if item.text.is_empty() {
            item.sku
        } else {
            item.text
        };
        push_flag(out, FlagKind::UnknownItem, text);
        return Ok(());
    };
    for (field, value) in [("qty", item.qty), ("amount_npr", item.amount_npr)] {
        if let Some(v) = value
            && !(v.is_finite() && v > 0.0)
        {
            return Err(AgentError::BadOutput(format!(
                "{field} {v} for {} is not a positive number",
                product.sku
            )));
        }
    }
    let unit = match (item.qty, item.unit) {
        // A bare number means the product's own unit, as in the local parser.
        (Some(_), None) => Some(product.unit),
        (_, u) => u,
    };
    if let Some(u) = unit
        && !compatible(product.unit, u)
    {
        return Err(AgentError::BadOutput(format!(
            "unit {u} does not fit {} (sold by {})",
            product.sku, product.unit
        )));
    }
    let mut qty = item.qty;
    // Money only stands for the quantity when there is none, as in the local parser.
    let amount_npr = if qty.is_some() { None } else { item.amount_npr };
    if let (Some(q), Some(u)) = (qty, unit)
        && is_absurd(q, u)
    {
        qty = None;
        push_flag(out, FlagKind::AbsurdQuantity, item.text.clone());
    }
    if qty.is_none() && amount_npr.is_none() && !out.flags.iter().any(|f| f.text == item.text) {
        push_flag(out, FlagKind::AmbiguousQuantity, item.text.clone());
    }
    out.items.push(ParsedItem {
        sku: product.sku.clone(),
        qty,
        unit: if amount_npr.is_some() { None } else { unit },
        amount_npr,
        confidence: LLM_CONFIDENCE,
        span: span_of(message, &item.text),
    });
    Ok(())
}

fn push_flag(out: &mut ParseOutcome, kind: FlagKind, text: String) {
    if !out.flags.iter().any(|f| f.kind == kind && f.text == text) {
        out.flags.push(Flag { kind, text });
    }
}

/// Weight and volume do not convert without a density, so "2 litre chini" is a misreading.
/// Everything else is allowed: retailers order loose goods by the packet or sack, and packaged
/// goods by the kilo, and the local parser accepts both as written too.
fn compatible(product_unit: Unit, unit: Unit) -> bool {
    let weight = |u: Unit| matches!(u, Unit::Kg | Unit::G);
    let volume = |u: Unit| matches!(u, Unit::Litre | Unit::Ml);
    !(weight(product_unit) && volume(unit) || volume(product_unit) && weight(unit))
}

/// Byte range of the quoted phrase in the message; the whole message when the model did not
/// quote it exactly (spans must stay valid char-boundary ranges of the input).
fn span_of(message: &str, phrase: &str) -> (usize, usize) {
    let phrase = phrase.trim();
    match message.find(phrase) {
        Some(start) if !phrase.is_empty() => (start, start + phrase.len()),
        _ => (0, message.len()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use khaacho_parser::CatalogProduct;

    use super::*;

    fn product(sku: &str, name: &str, aliases: &[&str], unit: Unit) -> CatalogProduct {
        CatalogProduct {
            sku: sku.into(),
            name: name.into(),
            aliases: aliases.iter().map(|a| (*a).into()).collect(),
            unit,
            pack_size: None,
            price_npr: Some(100.0),
            category: "test".into(),
        }
    }

    /// The small catalogue every test of this crate uses.
    pub(crate) fn catalog() -> Catalog {
        Catalog::new(vec![
            product("SUGAR", "Sugar", &["chini", "cheeni"], Unit::Kg),
            product(
                "WAIWAI",
                "Wai Wai Noodles",
                &["wai wai", "waiwai"],
                Unit::Packet,
            ),
            product(
                "OIL-SUN",
                "Sunflower Oil",
                &["tel", "sunflower tel"],
                Unit::Litre,
            ),
            product("RICE", "Mansuli Rice", &["chamal", "mansuli"], Unit::Kg),
            product("EGG", "Eggs", &["anda"], Unit::Piece),
        ])
    }

    fn run(v: Value) -> Result<ParseOutcome, AgentError> {
        validate_output(&catalog(), "5 kg chini, 2 carton wai wai", &v)
    }

    #[test]
    fn valid_lines_become_items_with_spans() {
        let out = run(json!({"items": [
            {"sku": "SUGAR", "qty": 5, "unit": "kg", "amount_npr": null, "text": "5 kg chini"},
            {"sku": "WAIWAI", "qty": 2, "unit": "carton", "amount_npr": null, "text": "2 carton wai wai"}
        ], "flags": []}))
        .unwrap();
        assert_eq!(out.items.len(), 2);
        assert_eq!(out.items[0].sku, "SUGAR");
        assert_eq!(out.items[0].qty, Some(5.0));
        assert_eq!(out.items[0].unit, Some(Unit::Kg));
        assert_eq!(out.items[0].span, (0, 10));
        assert_eq!(out.items[1].unit, Some(Unit::Carton));
        assert!(out.flags.is_empty());
    }

    #[test]
    fn unknown_sku_becomes_a_flag_not_a_line() {
        let out = run(json!({"items": [
            {"sku": "MAGGI", "qty": 2, "unit": "carton", "amount_npr": null, "text": "2 carton maggi"}
        ], "flags": []}))
        .unwrap();
        assert!(out.items.is_empty());
        assert_eq!(out.flags[0].kind, FlagKind::UnknownItem);
        assert_eq!(out.flags[0].text, "2 carton maggi");
    }

    #[test]
    fn bad_shapes_and_values_are_rejected() {
        for bad in [
            json!({"flags": []}),
            json!({"items": [{"qty": 1, "unit": "kg", "text": "x"}]}),
            json!({"items": [{"sku": "SUGAR", "qty": -5, "unit": "kg", "amount_npr": null, "text": "x"}]}),
            json!({"items": [{"sku": "SUGAR", "qty": 0, "unit": "kg", "amount_npr": null, "text": "x"}]}),
            json!({"items": [{"sku": "SUGAR", "qty": 5, "unit": "kilo", "amount_npr": null, "text": "x"}]}),
            json!({"items": [{"sku": "SUGAR", "qty": 5, "unit": "litre", "amount_npr": null, "text": "x"}]}),
            json!({"items": [{"sku": "SUGAR", "qty": "5", "unit": "kg", "amount_npr": null, "text": "x"}]}),
            json!({"items": [], "flags": [{"type": "bogus", "text": "x"}]}),
            json!([1, 2]),
        ] {
            assert!(
                matches!(run(bad.clone()), Err(AgentError::BadOutput(_))),
                "accepted {bad}"
            );
        }
    }

    #[test]
    fn absurd_and_missing_quantities_are_flagged_like_the_local_parser() {
        let out = run(json!({"items": [
            {"sku": "SUGAR", "qty": 500000, "unit": "kg", "amount_npr": null, "text": "chini"},
            {"sku": "WAIWAI", "qty": null, "unit": null, "amount_npr": null, "text": "wai wai"},
            {"sku": "RICE", "qty": null, "unit": null, "amount_npr": 500, "text": "Rs 500 chamal"},
            {"sku": "EGG", "qty": 30, "unit": null, "amount_npr": null, "text": "30 anda"}
        ], "flags": []}))
        .unwrap();
        let kinds: Vec<_> = out.flags.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [FlagKind::AbsurdQuantity, FlagKind::AmbiguousQuantity]
        );
        assert_eq!(out.items[0].qty, None);
        assert_eq!(out.items[0].unit, Some(Unit::Kg));
        assert_eq!(out.items[2].amount_npr, Some(500.0));
        assert_eq!(
            out.items[3].unit,
            Some(Unit::Piece),
            "bare number = product unit"
        );
        assert_eq!(
            out.items[3].span,
            (0, 28),
            "unquoted phrase spans the message"
        );
    }

    #[test]
    fn schema_lists_every_unit_and_is_strict() {
        let s = output_schema();
        assert_eq!(s["additionalProperties"], json!(false));
        let units = s["properties"]["items"]["items"]["properties"]["unit"]["enum"]
            .as_array()
            .unwrap();
        assert_eq!(units.len(), Unit::ALL.len() + 1);
    }
}
