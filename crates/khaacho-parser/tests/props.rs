//! Property tests: the parser never panics, spans are valid, normalisation is idempotent.
#![allow(clippy::unwrap_used)]

use std::sync::LazyLock;

use khaacho_parser::{Catalog, normalize, parse, run_jsonl};
use proptest::prelude::*;

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let f = std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/eval/catalog.csv")).unwrap();
    Catalog::from_csv(f).unwrap()
});

/// Order-like text built from vocabulary the parser reacts to, to reach deep code paths.
fn orderish() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "chini",
        "चिनी",
        "wai",
        "wai",
        "coke",
        "500ml",
        "frooti",
        "200",
        "ml",
        "kg",
        "केजी",
        "bora",
        "x",
        "×",
        "@",
        "rs",
        "रु",
        "-",
        "2-3",
        "1/2",
        "½",
        "dedh",
        "sawa",
        "dui",
        "५",
        "no",
        "sorry",
        "hoina",
        ",",
        "ra",
        "र",
        "&",
        "/",
        "+",
        "\n",
        "1.",
        "2)",
        "•",
        "?",
        "kati",
        "paisa",
        "9841234567",
        "10:30",
        "baje",
        "thorai",
        "0",
        "-5",
        "99999",
        "tomato",
        "dal",
        "musuro",
        "3️⃣",
        "🙏",
        "ko",
        "worth",
        "rupees",
        "darjan",
        "tray",
        "peti",
        "wota",
        "a",
        "half",
        "2pm",
        "hide",
        "&",
        "seek",
        "per",
        "kg/",
        "/-",
        "1,500",
        ".",
        "..",
        "७",
    ]);
    prop::collection::vec(words, 0..16).prop_map(|w| w.join(" "))
}

/// 256 cases by default; `PROPTEST_CASES=100000` for a long hunt.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn check_outcome(text: &str) {
    let out = parse(&CATALOG, text);
    for item in &out.items {
        let (a, b) = item.span;
        assert!(a <= b && b <= text.len(), "span {a}..{b} outside {text:?}");
        assert!(text.is_char_boundary(a) && text.is_char_boundary(b));
        assert!((0.0..=1.0).contains(&item.confidence));
        if let Some(q) = item.qty {
            assert!(q.is_finite() && q > 0.0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn never_panics_on_any_string(text in any::<String>()) {
        check_outcome(&text);
    }

    #[test]
    fn never_panics_on_orderish_text(text in orderish()) {
        check_outcome(&text);
    }

    #[test]
    fn never_panics_on_mixed_scripts(text in "[a-z0-9 ,.@/\\-x×½०-९क-हािीुूेैोौंँ्\u{FE0F}\u{20E3}\n]{0,60}") {
        check_outcome(&text);
    }

    #[test]
    fn normalize_is_idempotent(text in any::<String>()) {
        let once = normalize(&text);
        prop_assert_eq!(normalize(&once), once);
    }

    #[test]
    fn normalize_is_idempotent_on_scripts(text in "[A-Za-z ेीिूुँंश्षव़ऊई-]{0,30}") {
        let once = normalize(&text);
        prop_assert_eq!(normalize(&once), once);
    }

    #[test]
    fn jsonl_never_fails_on_any_line(text in any::<String>()) {
        let line = serde_json::json!({"id": 1, "text": text}).to_string() + "\n" + &text + "\n";
        let mut out = Vec::new();
        run_jsonl(&CATALOG, line.as_bytes(), &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        for l in s.lines() {
            let _: serde_json::Value = serde_json::from_str(l).unwrap();
        }
    }
}
