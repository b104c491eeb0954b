//! Scores the blind batches in `eval/blind/` (messages written from DOMAIN.md alone by people
//! who never saw the parser, against a second catalogue `eval/blind/catalog2.csv`) and enforces
//! the floors described in `eval/README.md`:
//!
//! 1. every batch keeps at least its recorded current-score floor, and
//! 2. on the last three batches the current code scores at least the mean of their recorded
//!    first-sight scores (fixing never makes them worse than they were when first seen).
//!
//! `cargo test -p khaacho-parser --test blind -- --nocapture` prints one table per batch;
//! `BLIND_VERBOSE=batch-01` lists that batch's misses (`BLIND_VERBOSE=all` every batch's).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{print_table, score_file};

/// First-sight scores, measured before any change informed by the batch: (batch, line F1,
/// flag F1). Copied from `eval/README.md`; the last three form the first-sight floor.
const FIRST_SIGHT: &[(&str, f64, f64)] = &[
    ("batch-01", 0.856, 0.512),
    ("batch-02", 0.969, 0.687),
    ("batch-03", 0.985, 0.818),
    ("batch-04", 0.981, 0.757),
    ("batch-05", 0.951, 0.727),
    ("batch-06", 0.988, 0.923),
];

/// Current-score floors per batch, a little under the scores measured at the last change:
/// (batch, line F1, flag F1).
const CURRENT_FLOORS: &[(&str, f64, f64)] = &[
    ("batch-01", 0.98, 0.97),
    ("batch-02", 0.98, 0.97),
    ("batch-03", 0.98, 0.92),
    ("batch-04", 0.98, 0.90),
    ("batch-05", 0.98, 0.97),
    ("batch-06", 0.98, 0.97),
];

fn batches() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/eval/blind");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".jsonl")?;
            stem.starts_with("batch-").then(|| stem.to_string())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn blind_batches_keep_their_floors() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/eval/blind"));
    let verbose = std::env::var("BLIND_VERBOSE").unwrap_or_default();
    let mut current: Vec<(String, f64, f64)> = Vec::new();
    for name in batches() {
        let by_cat = score_file(
            &dir.join("catalog2.csv"),
            &dir.join(format!("{name}.jsonl")),
            verbose == name || verbose == "all",
        );
        print_table(&format!("eval/blind/{name}.jsonl"), &by_cat);
        let all = by_cat["ALL"];
        current.push((name, all.lines.f1(), all.flags.f1()));
    }
    let score_of = |b: &str| current.iter().find(|c| c.0 == b).map(|c| (c.1, c.2));
    for &(b, line, flag) in CURRENT_FLOORS {
        let (l, f) = score_of(b).unwrap_or_else(|| panic!("batch {b} missing"));
        assert!(l >= line, "{b}: line F1 {l:.3} below floor {line:.3}");
        assert!(f >= flag, "{b}: flag F1 {f:.3} below floor {flag:.3}");
    }
    let last3 = &FIRST_SIGHT[FIRST_SIGHT.len().saturating_sub(3)..];
    if !last3.is_empty() {
        let n = last3.len() as f64;
        let first_line = last3.iter().map(|x| x.1).sum::<f64>() / n;
        let first_flag = last3.iter().map(|x| x.2).sum::<f64>() / n;
        let now: Vec<(f64, f64)> = last3.iter().map(|x| score_of(x.0).unwrap()).collect();
        let now_line = now.iter().map(|x| x.0).sum::<f64>() / n;
        let now_flag = now.iter().map(|x| x.1).sum::<f64>() / n;
        println!(
            "\nlast {n} first-sight batches: first-sight mean line F1 {first_line:.3} flag F1 \
             {first_flag:.3}; now {now_line:.3} / {now_flag:.3}"
        );
        assert!(now_line >= first_line, "first-sight line F1 floor broken");
        assert!(now_flag >= first_flag, "first-sight flag F1 floor broken");
    }
}
