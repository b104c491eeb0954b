//! Batch mode: JSON lines in (`{"id","text"}`), JSON lines out.

use std::io::{BufRead, Write};

use serde_json::{Map, Value, json};

use crate::catalog::Catalog;
use crate::parse::{ParseOutcome, parse};

/// Reads `{"id","text"}` lines and writes one line per input:
/// `{"id","items":[{"sku","qty","unit"} | {"sku","amount_npr"}],"flags":[{"type","text"}]}`.
/// A line that is not valid JSON or lacks a string `text` yields `{"id","error"}` instead;
/// blank lines are skipped. Only I/O errors end the run.
pub fn run_jsonl<R: BufRead, W: Write>(
    catalog: &Catalog,
    input: R,
    mut output: W,
) -> std::io::Result<()> {
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let out = match serde_json::from_str::<Value>(&line) {
            Ok(v) => {
                let id = v.get("id").cloned().unwrap_or(Value::Null);
                match v.get("text").and_then(Value::as_str) {
                    Some(text) => outcome_json(id, &parse(catalog, text)),
                    None => json!({"id": id, "error": "missing string field `text`"}),
                }
            }
            Err(e) => {
                json!({"id": Value::Null, "error": format!("line {}: invalid JSON: {e}", n + 1)})
            }
        };
        serde_json::to_writer(&mut output, &out)?;
        output.write_all(b"\n")?;
    }
    output.flush()
}

/// The JSON shape of one outcome (without the timing or confidence details).
pub(crate) fn outcome_json(id: Value, o: &ParseOutcome) -> Value {
    let items: Vec<Value> = o
        .items
        .iter()
        .map(|i| {
            let mut m = Map::new();
            m.insert("sku".into(), Value::from(i.sku.as_str()));
            match i.amount_npr {
                Some(a) => {
                    m.insert("amount_npr".into(), json!(a));
                }
                None => {
                    m.insert("qty".into(), i.qty.map_or(Value::Null, |q| json!(q)));
                    m.insert(
                        "unit".into(),
                        i.unit.map_or(Value::Null, |u| Value::from(u.as_str())),
                    );
                }
            }
            Value::Object(m)
        })
        .collect();
    let flags: Vec<Value> = o
        .flags
        .iter()
        .map(|f| json!({"type": f.kind.as_str(), "text": f.text}))
        .collect();
    json!({"id": id, "items": items, "flags": flags})
}
