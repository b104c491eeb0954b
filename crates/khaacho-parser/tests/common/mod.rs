//! Scoring shared by `tests/eval.rs` (the author's set) and `tests/blind.rs` (blind batches):
//! parses every message of a JSON-lines file against a catalogue and compares lines
//! (sku, qty, unit) or (sku, amount_npr) and flag types with the gold answer.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use khaacho_parser::{Catalog, parse};
use serde_json::Value;

/// True positives, false positives, false negatives.
#[derive(Default, Clone, Copy, Debug)]
pub struct Counts {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
}

impl Counts {
    pub fn add(&mut self, o: Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
    pub fn p(self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn r(self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn f1(self) -> f64 {
        let (p, r) = (self.p(), self.r());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// Empty sets count as perfect (a message with no lines and none predicted is right).
pub fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Scores of one category (or "ALL").
#[derive(Default, Clone, Copy, Debug)]
pub struct Score {
    pub lines: Counts,
    pub flags: Counts,
    pub messages: usize,
    pub exact: usize,
    /// Messages whose gold answer has no flag but that got at least one.
    pub spurious_flag_msgs: usize,
    /// Messages whose gold answer has no flag.
    pub clean_msgs: usize,
}

impl Score {
    pub fn exact_share(&self) -> f64 {
        ratio(self.exact, self.messages)
    }
}

/// Multiset comparison of two key lists.
fn compare(expected: &[String], predicted: &[String]) -> Counts {
    let mut left: Vec<&String> = expected.iter().collect();
    let mut c = Counts::default();
    for p in predicted {
        if let Some(pos) = left.iter().position(|e| *e == p) {
            left.remove(pos);
            c.tp += 1;
        } else {
            c.fp += 1;
        }
    }
    c.fn_ = left.len();
    c
}

fn qty_key(v: Option<f64>) -> String {
    v.map_or_else(|| "null".to_string(), |q| format!("{q:.4}"))
}

fn expected_lines(exp: &Value) -> Vec<String> {
    exp["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let sku = i["sku"].as_str().unwrap();
            match i.get("amount_npr") {
                Some(a) => format!("{sku} Rs{}", qty_key(a.as_f64())),
                None => format!(
                    "{sku} {} {}",
                    qty_key(i["qty"].as_f64()),
                    i["unit"].as_str().unwrap_or("-")
                ),
            }
        })
        .collect()
}

/// Scores `messages` (JSON lines with id, category, text, expected) against `catalog`; the map
/// holds every category and "ALL". With `verbose`, every message not fully right is printed.
pub fn score_file(catalog: &Path, messages: &Path, verbose: bool) -> BTreeMap<String, Score> {
    let cat = Catalog::from_csv(std::fs::File::open(catalog).unwrap()).unwrap();
    let text = std::fs::read_to_string(messages).unwrap();
    let mut by_cat: BTreeMap<String, Score> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let exp = &v["expected"];
        let out = parse(&cat, v["text"].as_str().unwrap());
        let want = expected_lines(exp);
        let got: Vec<String> = out
            .items
            .iter()
            .map(|i| match i.amount_npr {
                Some(a) => format!("{} Rs{}", i.sku, qty_key(Some(a))),
                None => format!(
                    "{} {} {}",
                    i.sku,
                    qty_key(i.qty),
                    i.unit.map_or("-", |u| u.as_str())
                ),
            })
            .collect();
        let want_flags: Vec<String> = exp["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["type"].as_str().unwrap().to_string())
            .collect();
        let got_flags: Vec<String> = out
            .flags
            .iter()
            .map(|f| f.kind.as_str().to_string())
            .collect();
        let lc = compare(&want, &got);
        let fc = compare(&want_flags, &got_flags);
        let exact = lc.fp == 0 && lc.fn_ == 0 && fc.fp == 0 && fc.fn_ == 0;
        let clean = want_flags.is_empty();
        if verbose && !exact {
            println!(
                "MISS {} {:?}\n   want {want:?} {want_flags:?}\n   got  {got:?} {got_flags:?}",
                v["id"], v["text"]
            );
        }
        for key in [
            v["category"].as_str().unwrap().to_string(),
            "ALL".to_string(),
        ] {
            let s = by_cat.entry(key).or_default();
            s.lines.add(lc);
            s.flags.add(fc);
            s.messages += 1;
            s.exact += usize::from(exact);
            s.clean_msgs += usize::from(clean);
            s.spurious_flag_msgs += usize::from(clean && !got_flags.is_empty());
        }
    }
    by_cat
}

/// Prints the score table of one file.
pub fn print_table(title: &str, by_cat: &BTreeMap<String, Score>) {
    println!(
        "\n{title}\n{:<11} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9}",
        "category",
        "msgs",
        "line P",
        "line R",
        "line F1",
        "flag P",
        "flag R",
        "flag F1",
        "exact",
        "spurious"
    );
    for (name, s) in by_cat {
        println!(
            "{:<11} {:>5} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>5}/{:<3}",
            name,
            s.messages,
            s.lines.p(),
            s.lines.r(),
            s.lines.f1(),
            s.flags.p(),
            s.flags.r(),
            s.flags.f1(),
            s.exact_share(),
            s.spurious_flag_msgs,
            s.clean_msgs
        );
    }
}
