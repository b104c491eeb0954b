//! The one rule for control characters in input.
//!
//! PostgreSQL refuses U+0000 in `text` while SQLite stores it, and no other control
//! character has any business in an order platform's data either (they forge log lines and
//! break CSV and terminal output). So every string input is checked at the edge, before it
//! can reach a service or a database, and the same request gets the same answer on both
//! backends:
//!
//! - **JSON body strings** (and object keys) may contain tab, line feed and carriage return,
//!   because some of them are free text people type (an order's `text` and `note`, a
//!   `reason`); every other control character (Unicode category Cc: U+0000–U+001F,
//!   U+007F–U+009F) is refused with 422 naming the JSON path, e.g. `lines[0].sku`.
//! - **Query and path parameters** are identifiers, cursors and filters, never free text:
//!   any control character, tab and line feed included, is refused with 400 naming the
//!   parameter.
//! - **Catalogue CSV cells** are SKUs, names, units, numbers and categories, never free text:
//!   any control character is refused with 422 naming `row N.column`.

/// Whether `c` may appear in free text (JSON body strings): anything but a control
/// character, except tab, line feed and carriage return.
pub fn allowed_in_text(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r')
}

/// The first character of `s` that free text may not contain.
pub fn forbidden_in_text(s: &str) -> Option<char> {
    s.chars().find(|c| !allowed_in_text(*c))
}

/// The first control character of `s`, for inputs that are never free text (parameters,
/// CSV cells).
pub fn forbidden_in_value(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control())
}

/// The message for a refused free-text string.
pub fn text_message(c: char) -> String {
    format!(
        "must not contain control characters other than tab, line feed and carriage return \
         (found U+{:04X})",
        u32::from(c)
    )
}

/// The message for a refused parameter or CSV cell.
pub fn value_message(c: char) -> String {
    format!(
        "must not contain control characters (found U+{:04X})",
        u32::from(c)
    )
}

/// A name taken from the input (a JSON key, a query parameter) made safe to echo back as
/// a field name: control characters are shown escaped.
pub fn printable_name(name: &str) -> String {
    if forbidden_in_value(name).is_none() {
        return name.to_string();
    }
    name.chars()
        .map(|c| {
            if c.is_control() {
                format!("\\u{{{:x}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_keeps_tab_and_newlines_only() {
        assert_eq!(forbidden_in_text("a\tb\r\nc नमस्ते"), None);
        assert_eq!(forbidden_in_text("a\u{0}b"), Some('\u{0}'));
        assert_eq!(forbidden_in_text("\u{1b}[31m"), Some('\u{1b}'));
        assert_eq!(forbidden_in_text("x\u{7f}"), Some('\u{7f}'));
        assert_eq!(forbidden_in_text("x\u{85}"), Some('\u{85}'));
    }

    #[test]
    fn values_refuse_every_control_character() {
        assert_eq!(forbidden_in_value("RICE-25"), None);
        assert_eq!(forbidden_in_value("a\tb"), Some('\t'));
        assert_eq!(
            value_message('\0'),
            "must not contain control characters (found U+0000)"
        );
        assert_eq!(printable_name("no\u{0}te"), "no\\u{0}te");
    }
}
