//! Text normalisation shared by the catalogue index and the message parser.
//!
//! Both sides go through the same functions, so a spelling variant only has to fold to the same
//! key as the catalogue alias; it never has to be listed.

use unicode_normalization::UnicodeNormalization;

/// Upper bound on fold passes; folding shrinks or keeps the length, so it settles in a few.
const MAX_FOLD_PASSES: usize = 16;

/// True for characters that belong inside a word: letters, digits and the whole Devanagari block
/// (vowel signs, virama and nukta are combining marks, not letters), except the danda marks.
pub fn is_word_char(c: char) -> bool {
    if ('\u{0900}'..='\u{097F}').contains(&c) {
        return c != '।' && c != '॥';
    }
    c.is_alphanumeric()
}

/// Value of an ASCII or Devanagari decimal digit.
pub fn digit_value(c: char) -> Option<u32> {
    match c {
        '0'..='9' => Some(c as u32 - '0' as u32),
        '\u{0966}'..='\u{096F}' => Some(c as u32 - 0x0966),
        _ => None,
    }
}

/// Characters that are dropped without breaking a token: variation selectors, the keycap
/// combiner (so "3️⃣" reads as 3) and zero-width joiners inside Devanagari words.
pub fn is_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{FE0F}' | '\u{FE0E}' | '\u{20E3}' | '\u{200C}' | '\u{200D}' | '\u{00AD}'
    )
}

/// Folds one word to its matching key: NFC, lowercase, Devanagari spelling variants
/// (ी/ि, ू/ु, ँ/ं, nukta, virama, व/ब, श/ष/स) and romanization variants (aa/a, ee/i, oo/u,
/// w/v, sh/s, ph/f, ck/k, z/j, q/k, doubled letters). Idempotent: it runs to a fixed point.
pub fn fold_word(word: &str) -> String {
    // "AA", "AAA" (battery sizes) are one letter repeated: kept, or they would all be "a".
    let mut letters = word.chars();
    if let Some(c) = letters.next()
        && c.is_ascii_alphabetic()
        && (2..=4).contains(&word.len())
        && letters.all(|d| d.eq_ignore_ascii_case(&c))
    {
        return word.to_ascii_lowercase();
    }
    let mut cur = fold_once(word);
    for _ in 0..MAX_FOLD_PASSES {
        let next = fold_once(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

fn fold_once(word: &str) -> String {
    let lowered: String = if word.is_ascii() {
        word.to_ascii_lowercase()
    } else {
        word.nfc().collect::<String>().to_lowercase()
    };
    let chars: Vec<char> = lowered.chars().collect();
    let mut out = String::with_capacity(lowered.len());
    let mut prev: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (mapped, used) = match (c, next) {
            ('s', Some('h')) => (Some('s'), 2),
            ('p', Some('h')) => (Some('f'), 2),
            ('e', Some('e')) => (Some('i'), 2),
            ('o', Some('o')) => (Some('u'), 2),
            ('c', Some('k')) => (Some('k'), 2),
            ('w', _) => (Some('v'), 1),
            ('z', _) => (Some('j'), 1),
            ('q', _) => (Some('k'), 1),
            _ => (fold_devanagari(c), 1),
        };
        i += used;
        let Some(m) = mapped else { continue };
        if is_ignorable(m) {
            continue;
        }
        if prev == Some(m) && m.is_ascii_alphabetic() {
            continue;
        }
        out.push(m);
        prev = Some(m);
    }
    out
}

/// Devanagari variant folding for one character; `None` drops it.
fn fold_devanagari(c: char) -> Option<char> {
    match c {
        'ी' => Some('ि'),
        'ू' => Some('ु'),
        'ँ' => Some('ं'),
        'ई' => Some('इ'),
        'ऊ' => Some('उ'),
        'व' => Some('ब'),
        'श' | 'ष' => Some('स'),
        'ण' => Some('न'),
        '\u{093C}' | '\u{094D}' => None,
        _ => Some(c),
    }
}

/// Normalises free text: lowercase, punctuation and emoji become spaces, spaces collapse, each
/// word is folded with [`fold_word`]. Idempotent.
pub fn normalize(text: &str) -> String {
    let mut cur = normalize_once(text);
    for _ in 0..MAX_FOLD_PASSES {
        let next = normalize_once(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

fn normalize_once(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let folded = fold_word(word);
        for piece in folded.split(|c: char| !is_word_char(c)) {
            if piece.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(piece);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_ignorable(c) {
            continue;
        }
        if is_word_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn romanized_variants_fold_together() {
        for (a, b) in [
            ("chaamal", "chamal"),
            ("CHEENI", "chini"),
            ("masoor", "masur"),
            ("Wai", "vai"),
            ("shampoo", "sampu"),
            ("phul", "ful"),
            ("aadha", "adha"),
            ("ghee", "ghi"),
        ] {
            assert_eq!(fold_word(a), fold_word(b), "{a} vs {b}");
        }
    }

    #[test]
    fn devanagari_variants_fold_together() {
        assert_eq!(fold_word("चीनी"), fold_word("चिनि"));
        assert_eq!(fold_word("पाँच"), fold_word("पांच"));
        assert_eq!(fold_word("दिनुस्"), fold_word("दिनुस"));
    }

    #[test]
    fn normalize_strips_punctuation_and_collapses_spaces() {
        assert_eq!(normalize("  Parle-G!!  Biscuit 🍪 "), "parle g biscuit");
        assert_eq!(normalize("Hide & Seek"), "hide sik");
    }

    #[test]
    fn digits_of_both_scripts() {
        assert_eq!(digit_value('७'), Some(7));
        assert_eq!(digit_value('7'), Some(7));
        assert_eq!(digit_value('x'), None);
    }
}
