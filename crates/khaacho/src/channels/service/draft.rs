//! Draft orders built from messages: parsed with the same parser as text orders, checked
//! against the catalogue like an intake, with one clarification question per unclear line,
//! priced for the summary the retailer confirms.

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::app::App;
use crate::base::domain::{UnitRules, VAT_PERCENT, canonical_unit, line_amount, qty_to_milli, vat};
use crate::catalog::pricing::best_quote;
use crate::catalog::repo as catalog;
use crate::orders::intake::{IntakeError, LineInput};
use crate::orders::pipeline::parse::parse_text;

/// An order being put together in a conversation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Draft {
    /// Its id: the idempotency key of the order it becomes, so YES places it once.
    pub id: Uuid,
    /// Lines understood so far.
    pub lines: Vec<DraftLine>,
    /// Open questions, asked one at a time (the first is the one awaiting an answer).
    pub questions: Vec<Question>,
}

/// One understood line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DraftLine {
    /// SKU.
    pub sku: String,
    /// Product name, for the summary.
    pub name: String,
    /// Quantity in `unit`.
    pub qty: f64,
    /// Canonical unit.
    pub unit: String,
}

/// A clarification the retailer is asked.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Question {
    /// Words that matched no product (or several, or had an impossible quantity).
    Item {
        /// The words concerned.
        text: String,
    },
    /// A known product without a clear quantity.
    Quantity {
        /// SKU.
        sku: String,
        /// Product name.
        name: String,
        /// Its base unit (a bare number answers in it).
        unit: String,
    },
}

impl Question {
    /// The template and variables that ask it.
    pub fn ask(&self) -> (&'static str, serde_json::Value) {
        match self {
            Question::Item { text } => ("clarify_item", json!({ "text": text })),
            Question::Quantity { name, unit, .. } => {
                ("clarify_quantity", json!({ "product": name, "unit": unit }))
            }
        }
    }
}

/// What the parser made of a message: clean lines and questions.
#[derive(Debug, Default)]
pub struct Understood {
    /// Lines with a product, a quantity and a unit the catalogue accepts.
    pub lines: Vec<DraftLine>,
    /// One question per unclear line.
    pub questions: Vec<Question>,
}

/// Parses `text` as an order (the text-order parser, agents then the offline parser) and
/// checks its lines like the intake does.
pub async fn understand(app: &App, text: &str) -> Result<Understood, sqlx::Error> {
    let parsed = parse_text(app, text).await?;
    let mut out = Understood::default();
    let mut candidates = Vec::new();
    for item in &parsed.items {
        let name = product_name(app, &item.sku).await?;
        match (item.qty, item.unit.as_deref()) {
            (Some(qty), Some(unit)) => candidates.push(DraftLine {
                sku: item.sku.clone(),
                name,
                qty,
                unit: unit.to_string(),
            }),
            _ => {
                let unit = catalog::find_by_sku(app.db(), &item.sku)
                    .await?
                    .map(|p| p.unit)
                    .unwrap_or_default();
                out.questions.push(Question::Quantity {
                    sku: item.sku.clone(),
                    name,
                    unit,
                });
            }
        }
    }
    let asked_quantity = !out.questions.is_empty();
    for flag in &parsed.flags {
        let about_quantity = matches!(
            flag.kind.as_str(),
            "ambiguous_quantity" | "invalid_quantity" | "absurd_quantity"
        );
        // A quantity flag on a product already asked about needs no second question.
        if !(about_quantity && asked_quantity) {
            out.questions.push(Question::Item {
                text: flag.text.clone(),
            });
        }
    }
    for line in candidates {
        match check(app, &line).await? {
            Ok(()) => out.lines.push(line),
            Err(_) => out.questions.push(Question::Item {
                text: format!("{} {} {}", fmt_qty(line.qty), line.unit, line.name),
            }),
        }
    }
    Ok(out)
}

/// The catalogue's verdict on one line (known, active, unit and quantity allowed).
async fn check(app: &App, line: &DraftLine) -> Result<Result<(), String>, sqlx::Error> {
    let input = [input_of(line)];
    match app.intake().check_lines(&input).await {
        Ok(_) => Ok(Ok(())),
        Err(IntakeError::Invalid(errors)) => Ok(Err(errors
            .into_iter()
            .map(|e| e.message)
            .collect::<Vec<_>>()
            .join("; "))),
        Err(IntakeError::Storage(e)) => Err(e),
        Err(other) => Ok(Err(other.to_string())),
    }
}

/// A draft line as the intake takes it.
pub fn input_of(line: &DraftLine) -> LineInput {
    LineInput {
        sku: line.sku.clone(),
        qty: json!(line.qty),
        unit: line.unit.clone(),
    }
}

async fn product_name(app: &App, sku: &str) -> Result<String, sqlx::Error> {
    Ok(catalog::find_by_sku(app.db(), sku)
        .await?
        .map_or_else(|| sku.to_string(), |p| p.name))
}

/// Adds `new` lines to `lines`, summing a product already there in the same unit.
pub fn merge(lines: &mut Vec<DraftLine>, new: Vec<DraftLine>) {
    for n in new {
        match lines
            .iter_mut()
            .find(|l| l.sku == n.sku && l.unit == n.unit)
        {
            Some(l) => l.qty += n.qty,
            None => lines.push(n),
        }
    }
}

/// The answer to a quantity question: `qty` of the product's base unit, if the catalogue
/// accepts it.
pub async fn answer_quantity(
    app: &App,
    sku: &str,
    name: &str,
    unit: &str,
    qty: f64,
) -> Result<Option<DraftLine>, sqlx::Error> {
    let line = DraftLine {
        sku: sku.to_string(),
        name: name.to_string(),
        qty,
        unit: unit.to_string(),
    };
    Ok(check(app, &line).await?.ok().map(|()| line))
}

/// The summary of a draft: one text line per order line with its price, and the total with
/// VAT (paisa). Lines are priced with the best offer of an active vendor now (as validation
/// will), else the list price; a product with neither is shown without a price.
pub async fn price(
    app: &App,
    lines: &[DraftLine],
    now_ms: i64,
) -> Result<(String, i64), sqlx::Error> {
    let mut text = Vec::with_capacity(lines.len());
    let mut total = 0;
    for (i, line) in lines.iter().enumerate() {
        let product = catalog::find_by_sku(app.db(), &line.sku).await?;
        let amount = match &product {
            Some(p) => {
                let base = canonical_unit(&p.unit);
                let base_qty = match (canonical_unit(&line.unit), base, qty_to_milli(line.qty)) {
                    (Some(u), Some(b), Some(q)) => u.to_base(q, b, p.pack_size_milli).ok(),
                    _ => None,
                };
                match base_qty {
                    Some(q) => {
                        let offers = catalog::valid_offers(app.db(), &[p.id], now_ms).await?;
                        let unit_price = best_quote(&offers, q)
                            .map(|quote| quote.unit_price_paisa)
                            .ok()
                            .or(p.list_price_paisa);
                        unit_price.map(|price| {
                            let net = line_amount(price, q);
                            net + vat(net, VAT_PERCENT)
                        })
                    }
                    None => None,
                }
            }
            None => None,
        };
        total += amount.unwrap_or(0);
        let price = amount.map_or_else(|| "price on confirmation".to_string(), khaacho_credit::npr);
        text.push(format!(
            "{}. {} {} {} - {price}",
            i + 1,
            fmt_qty(line.qty),
            line.unit,
            line.name
        ));
    }
    Ok((text.join("\n"), total))
}

/// A quantity without needless decimals ("5", "2.5").
pub fn fmt_qty(q: f64) -> String {
    if q.fract() == 0.0 {
        format!("{}", q as i64)
    } else {
        format!("{q}")
    }
}
