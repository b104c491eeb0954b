//! Fuzz `parse` on arbitrary text against a fixed catalogue and check its output invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

use khaacho_parser::{normalize, parse};

#[path = "common.rs"]
mod common;
use common::CATALOG;

fuzz_target!(|data: &[u8]| {
    // Invalid UTF-8 is replaced, not skipped, so byte-level mutations still reach the parser.
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    let catalog = &*CATALOG;

    let out = parse(catalog, text);
    for item in &out.items {
        let (a, b) = item.span;
        assert!(
            a <= b && b <= text.len(),
            "span {a}..{b} outside {} bytes: {text:?}",
            text.len()
        );
        assert!(
            text.is_char_boundary(a) && text.is_char_boundary(b),
            "span {a}..{b} not on char boundaries: {text:?}"
        );
        assert!(
            catalog.by_sku(&item.sku).is_some(),
            "sku {:?} not in the catalogue: {text:?}",
            item.sku
        );
        if let Some(q) = item.qty {
            assert!(
                q.is_finite() && q > 0.0,
                "qty {q} for {}: {text:?}",
                item.sku
            );
        }
        if let Some(m) = item.amount_npr {
            assert!(m.is_finite(), "amount_npr {m} for {}: {text:?}", item.sku);
        }
        assert!(
            (0.0..=1.0).contains(&item.confidence),
            "confidence {} for {}: {text:?}",
            item.confidence,
            item.sku
        );
    }

    // Parsing is a pure function of its input.
    assert_eq!(
        parse(catalog, text),
        out,
        "parse not deterministic: {text:?}"
    );

    let once = normalize(text);
    assert_eq!(
        normalize(&once),
        once,
        "normalize not idempotent on {text:?}"
    );
});
