//! Scores the parser on the hand-labelled evaluation set in `eval/`.
//! Run with `cargo test -p khaacho-parser --test eval -- --nocapture` to see the table;
//! set `EVAL_VERBOSE=1` to list every message that is not fully right.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{print_table, ratio, score_file};

// Floors a little under the scores measured when the set was finalised (246 messages:
// line F1 0.997, flag F1 0.963, exact 0.996 overall; every category line F1 >= 0.983).
// A regression below them fails the test.
/// Overall line F1 floor on (sku, qty, unit).
const MIN_LINE_F1: f64 = 0.97;
/// Overall flag F1 floor on flag type.
const MIN_FLAG_F1: f64 = 0.90;
/// Share of messages whose lines and flags are exactly right (overall).
const MIN_EXACT: f64 = 0.95;
/// Line F1 floor for every single category.
const MIN_CATEGORY_LINE_F1: f64 = 0.93;

#[test]
fn evaluation_set_scores_above_floors() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/eval");
    let verbose = std::env::var_os("EVAL_VERBOSE").is_some();
    let by_cat = score_file(
        &Path::new(dir).join("catalog.csv"),
        &Path::new(dir).join("messages.jsonl"),
        verbose,
    );
    print_table("eval/messages.jsonl (author's set)", &by_cat);
    for (name, s) in &by_cat {
        assert!(
            s.lines.f1() >= MIN_CATEGORY_LINE_F1,
            "{name}: line F1 {:.3} below floor",
            s.lines.f1()
        );
    }
    let all = by_cat["ALL"];
    assert!(all.messages >= 150, "evaluation set too small");
    assert!(
        all.lines.f1() >= MIN_LINE_F1,
        "line F1 {:.3} below floor",
        all.lines.f1()
    );
    assert!(
        all.flags.f1() >= MIN_FLAG_F1,
        "flag F1 {:.3} below floor",
        all.flags.f1()
    );
    assert!(
        ratio(all.exact, all.messages) >= MIN_EXACT,
        "exact-message share below floor"
    );
}
