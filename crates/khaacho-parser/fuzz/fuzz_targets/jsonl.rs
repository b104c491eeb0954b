//! Fuzz `run_jsonl` on arbitrary bytes: it must never panic, must emit exactly one valid JSON
//! object per non-blank input line (blank lines are documented as skipped), and may fail only
//! with an I/O error — here only `InvalidData` for a line that is not UTF-8, after having
//! answered every line before it.
#![no_main]

use std::io::ErrorKind;

use libfuzzer_sys::fuzz_target;

use khaacho_parser::run_jsonl;

#[path = "common.rs"]
mod common;
use common::CATALOG;

/// Runs `run_jsonl` on `input` and checks the output against the line structure of `input`.
fn check(input: &[u8]) {
    let mut out = Vec::new();
    let res = run_jsonl(&CATALOG, input, &mut out);

    // What `BufRead::lines` sees: pieces up to each '\n' ("\r\n" counts as one), plus a final
    // piece without '\n' if non-empty. Blank lines (after `trim`) produce no output.
    let mut expected = 0usize;
    let mut bad_utf8 = false;
    let mut rest = input;
    while !rest.is_empty() {
        let (raw, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (
                rest[..i].strip_suffix(b"\r").unwrap_or(&rest[..i]),
                &rest[i + 1..],
            ),
            None => (rest, &[][..]),
        };
        rest = next;
        match std::str::from_utf8(raw) {
            Ok(line) if line.trim().is_empty() => {}
            Ok(_) => expected += 1,
            Err(_) => {
                bad_utf8 = true;
                break;
            }
        }
    }

    match &res {
        Ok(()) if !bad_utf8 => {}
        Err(e) if bad_utf8 && e.kind() == ErrorKind::InvalidData => {}
        _ => panic!("run_jsonl returned {res:?} (invalid UTF-8 line present: {bad_utf8})"),
    }

    let out = std::str::from_utf8(&out).expect("run_jsonl wrote invalid UTF-8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        expected,
        "expected {expected} output lines, got {}: in={:?} out={out:?}",
        lines.len(),
        String::from_utf8_lossy(input)
    );
    assert!(
        out.is_empty() || out.ends_with('\n'),
        "output not newline-terminated"
    );
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("output line is not JSON");
        let obj = v.as_object().expect("output line is not a JSON object");
        assert!(obj.contains_key("id"), "output line without id: {l}");
        assert!(
            obj.contains_key("error") || (obj.contains_key("items") && obj.contains_key("flags")),
            "output line is neither a result nor an error: {l}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    // 1. The raw bytes: mostly invalid JSON lines, exercises the error path and line handling.
    check(data);

    // 2. Every line wrapped as {"id": n, "text": line} so the parser itself is reached.
    let text = String::from_utf8_lossy(data);
    let mut wrapped = String::new();
    for (n, line) in text.split('\n').enumerate() {
        let obj = serde_json::json!({"id": n, "text": line});
        wrapped.push_str(&obj.to_string());
        wrapped.push('\n');
    }
    check(wrapped.as_bytes());
});
