//! Splits one line of a message into tokens with byte spans into the original text.

use crate::normalize::{digit_value, fold_word, is_ignorable, is_word_char};

/// Phone numbers are digit runs at least this long; they are never quantities.
const PHONE_MIN_DIGITS: usize = 7;

/// What a token is, as far as the tokenizer can tell without the catalogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TokKind {
    /// A run of letters (any script); `norm` holds the folded form.
    Word,
    /// A number written in digits, a decimal, a fraction or a keycap emoji.
    Num(f64),
    /// A list separator: `, ; & + / | ! .` (sentence end) or a line break.
    Sep,
    /// Other punctuation that matters to the parser (`@ - x ? : ( )`).
    Punct(char),
    /// Something that looks numeric but is never a quantity: phone, time, date, list numbering.
    Noise,
}

/// One token of a line.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub kind: TokKind,
    /// Byte offset of the first character in the whole message.
    pub start: usize,
    /// Byte offset one past the last character in the whole message.
    pub end: usize,
    /// Folded text for words, the digits for numbers, the character for punctuation.
    pub norm: String,
    /// True when no whitespace separates this token from the previous one ("5kg", "-5").
    pub glued: bool,
}

struct Cursor<'a> {
    chars: Vec<(usize, char)>,
    text: &'a str,
    base: usize,
}

impl Cursor<'_> {
    fn ch(&self, i: usize) -> Option<char> {
        self.chars.get(i).map(|&(_, c)| c)
    }
    fn off(&self, i: usize) -> usize {
        self.chars.get(i).map_or(self.text.len(), |&(o, _)| o)
    }
    fn is_digit(&self, i: usize) -> bool {
        self.ch(i).and_then(digit_value).is_some()
    }
    /// Skips ignorable characters starting at `i`.
    fn skip_ignorable(&self, mut i: usize) -> usize {
        while self.ch(i).is_some_and(is_ignorable) {
            i += 1;
        }
        i
    }
    /// Reads a run of digits (ignorable characters between them allowed, for keycaps).
    fn digits(&self, mut i: usize) -> (String, usize) {
        let mut s = String::new();
        loop {
            let j = self.skip_ignorable(i);
            match self.ch(j).and_then(digit_value) {
                Some(d) => {
                    s.push(char::from_digit(d, 10).unwrap_or('0'));
                    i = j + 1;
                }
                None => return (s, self.skip_ignorable(i)),
            }
        }
    }
}

fn vulgar_fraction(c: char) -> Option<f64> {
    match c {
        '½' => Some(0.5),
        '¼' => Some(0.25),
        '¾' => Some(0.75),
        '⅓' => Some(1.0 / 3.0),
        '⅔' => Some(2.0 / 3.0),
        '🔟' => Some(10.0),
        _ => None,
    }
}

/// Tokenizes `line`, whose first byte sits at `base` in the whole message.
pub(crate) fn tokenize(line: &str, base: usize) -> Vec<Token> {
    let cur = Cursor {
        chars: line.char_indices().collect(),
        text: line,
        base,
    };
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    let mut last_end = 0usize;
    while i < cur.chars.len() {
        let (off, c) = cur.chars[i];
        let glued = off == last_end && !out.is_empty();
        let (tok, next) = if digit_value(c).is_some() {
            number(
                &cur,
                i,
                out.iter().all(|t| t.kind == TokKind::Noise || is_bullet(t)),
            )
        } else if let Some(v) = vulgar_fraction(c) {
            (
                Some(simple(TokKind::Num(v), &cur, i, i + 1, v.to_string())),
                i + 1,
            )
        } else if is_word_char(c) {
            word(&cur, i)
        } else if is_ignorable(c) || c.is_whitespace() {
            (None, i + 1)
        } else {
            punct(&cur, i, out.last())
        };
        if let Some(mut t) = tok {
            t.glued = glued;
            last_end = t.end - base;
            // "लिटरको", "मुगको": the genitive glued to a Devanagari word is its own token.
            if let Some(ko) = split_genitive(&cur, i, next, &t) {
                t.end = ko.start;
                t.norm = fold_word(&line[t.start - base..t.end - base]);
                out.push(t);
                out.push(ko);
            } else {
                out.push(t);
            }
        } else if !c.is_whitespace() && !is_ignorable(c) {
            last_end = cur.off(next);
        }
        i = next.max(i + 1);
    }
    out
}

/// The glued genitive "को" at the end of a Devanagari word of at least two more letters, as a
/// separate (glued) token.
fn split_genitive(cur: &Cursor<'_>, from: usize, to: usize, t: &Token) -> Option<Token> {
    if t.kind != TokKind::Word || to < from + 4 {
        return None;
    }
    if cur.ch(to - 2) != Some('क') || cur.ch(to - 1) != Some('ो') {
        return None;
    }
    let mut ko = simple(TokKind::Word, cur, to - 2, to, fold_word("को"));
    ko.glued = true;
    Some(ko)
}

fn is_bullet(t: &Token) -> bool {
    matches!(
        t.kind,
        TokKind::Punct('-') | TokKind::Punct('•') | TokKind::Punct('x')
    )
}

fn simple(kind: TokKind, cur: &Cursor<'_>, from: usize, to: usize, norm: String) -> Token {
    Token {
        kind,
        start: cur.base + cur.off(from),
        end: cur.base + cur.off(to),
        norm,
        glued: false,
    }
}

fn number(cur: &Cursor<'_>, i: usize, line_start: bool) -> (Option<Token>, usize) {
    let (mut int, mut j) = cur.digits(i);
    // Thousands grouping "1,500" (exactly three digits after the comma).
    while cur.ch(j) == Some(',') && cur.is_digit(j + 1) {
        let (grp, k) = cur.digits(j + 1);
        if grp.len() == 3 && !cur.is_digit(k) {
            int.push_str(&grp);
            j = k;
        } else {
            break;
        }
    }
    if int.len() >= PHONE_MIN_DIGITS {
        return (Some(simple(TokKind::Noise, cur, i, j, int)), j);
    }
    match cur.ch(j) {
        Some('.') if cur.is_digit(j + 1) => {
            let (frac, k) = cur.digits(j + 1);
            let s = format!("{int}.{frac}");
            let v = s.parse::<f64>().unwrap_or(0.0);
            return (Some(simple(TokKind::Num(v), cur, i, k, s)), k);
        }
        Some(':') if cur.is_digit(j + 1) => {
            let (_, k) = cur.digits(j + 1);
            return (Some(simple(TokKind::Noise, cur, i, k, int)), k);
        }
        Some('/') if cur.is_digit(j + 1) => return slash_number(cur, i, j, &int),
        Some('-') if cur.is_digit(j + 1) => {
            let (second, k) = cur.digits(j + 1);
            // "98412-34567" is a phone number, "2081-05-12" a date.
            if int.len() + second.len() >= PHONE_MIN_DIGITS {
                return (Some(simple(TokKind::Noise, cur, i, k, int)), k);
            }
            if cur.ch(k) == Some('-') && cur.is_digit(k + 1) {
                let (_, m) = cur.digits(k + 1);
                return (Some(simple(TokKind::Noise, cur, i, m, int)), m);
            }
        }
        Some('.') | Some(')') if line_start => {
            let after = cur.ch(j + 1);
            if after.is_none_or(|c| c.is_whitespace() || is_word_char(c)) {
                return (Some(simple(TokKind::Noise, cur, i, j + 1, int)), j + 1);
            }
        }
        Some(c) if vulgar_fraction(c).is_some_and(|v| v < 1.0) => {
            let v = int.parse::<f64>().unwrap_or(0.0) + vulgar_fraction(c).unwrap_or(0.0);
            return (
                Some(simple(TokKind::Num(v), cur, i, j + 1, v.to_string())),
                j + 1,
            );
        }
        _ => {}
    }
    let v = int.parse::<f64>().unwrap_or(0.0);
    (Some(simple(TokKind::Num(v), cur, i, j, int)), j)
}

/// "1/2" is a fraction; "12/05" or "12/05/2024" is a date and never a quantity.
fn slash_number(cur: &Cursor<'_>, i: usize, j: usize, int: &str) -> (Option<Token>, usize) {
    let (den, k) = cur.digits(j + 1);
    if cur.ch(k) == Some('/') && cur.is_digit(k + 1) {
        let (_, m) = cur.digits(k + 1);
        return (Some(simple(TokKind::Noise, cur, i, m, int.to_string())), m);
    }
    let a = int.parse::<f64>().unwrap_or(0.0);
    let b = den.parse::<f64>().unwrap_or(0.0);
    if (2.0..=8.0).contains(&b) && a < b {
        let v = a / b;
        return (Some(simple(TokKind::Num(v), cur, i, k, v.to_string())), k);
    }
    (Some(simple(TokKind::Noise, cur, i, k, int.to_string())), k)
}

fn word(cur: &Cursor<'_>, i: usize) -> (Option<Token>, usize) {
    let mut raw = String::new();
    let mut j = i;
    loop {
        match cur.ch(j) {
            Some(c) if is_ignorable(c) => j += 1,
            Some(c) if is_word_char(c) && digit_value(c).is_none() => {
                raw.push(c);
                j += 1;
            }
            // Joiners inside a word: "parle-g", "hide'n", "के.जी".
            Some('-') | Some('\'') | Some('’') | Some('.')
                if j > i
                    && cur.ch(j + 1).is_some_and(|n| {
                        is_word_char(n)
                            && digit_value(n).is_none()
                            && (cur.ch(j) != Some('.') || ('\u{0900}'..='\u{097F}').contains(&n))
                    }) =>
            {
                j += 1
            }
            _ => break,
        }
    }
    let norm = fold_word(&raw);
    let kind = if is_separator_word(&norm) {
        TokKind::Sep
    } else {
        TokKind::Word
    };
    (Some(simple(kind, cur, i, j, norm)), j)
}

/// Words that join items: "and", "ra", "र", "aur", "ani".
fn is_separator_word(norm: &str) -> bool {
    matches!(norm, "and" | "ra" | "र" | "aur" | "ani" | "tatha" | "n")
}

fn punct(cur: &Cursor<'_>, i: usize, prev: Option<&Token>) -> (Option<Token>, usize) {
    let Some(c) = cur.ch(i) else {
        return (None, i + 1);
    };
    let kind = match c {
        ',' | ';' | '&' | '+' | '/' | '|' | '!' | '।' | '॥' | '\n' | '\r' => TokKind::Sep,
        '.' => {
            let next = cur.ch(i + 1);
            let prev_is_abbrev = prev.is_some_and(|t| {
                matches!(
                    t.norm.as_str(),
                    "rs" | "npr" | "रु" | "no" | "nos" | "kg" | "ltr"
                )
            });
            // "rs. 500", "no. 5" abbreviate; "30 kg. nun 2 peti" ends a sentence.
            let mut k = i + 1;
            while cur.ch(k).is_some_and(char::is_whitespace) {
                k += 1;
            }
            let number_next = cur.ch(k).is_some_and(|c| digit_value(c).is_some());
            if next.is_none_or(char::is_whitespace) && !(prev_is_abbrev && number_next) {
                TokKind::Sep
            } else {
                TokKind::Punct('.')
            }
        }
        '×' | '*' => TokKind::Punct('x'),
        '–' | '—' | '~' => TokKind::Punct('-'),
        '₹' => {
            return (
                Some(simple(TokKind::Word, cur, i, i + 1, "rs".to_string())),
                i + 1,
            );
        }
        '@' | '-' | '?' | ':' | '(' | ')' | '•' | '=' | '#' => TokKind::Punct(c),
        _ => return (None, i + 1),
    };
    (Some(simple(kind, cur, i, i + 1, c.to_string())), i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<TokKind> {
        tokenize(s, 0).into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn numbers_fractions_phones_times() {
        assert_eq!(kinds("1/2"), vec![TokKind::Num(0.5)]);
        assert_eq!(kinds("1½"), vec![TokKind::Num(1.5)]);
        assert_eq!(kinds("2.5"), vec![TokKind::Num(2.5)]);
        assert_eq!(kinds("9841234567"), vec![TokKind::Noise]);
        assert_eq!(kinds("10:30"), vec![TokKind::Noise]);
        assert_eq!(kinds("12/05/2024"), vec![TokKind::Noise]);
        assert_eq!(kinds("3️⃣"), vec![TokKind::Num(3.0)]);
        assert_eq!(kinds("१०"), vec![TokKind::Num(10.0)]);
        assert_eq!(kinds("1,500"), vec![TokKind::Num(1500.0)]);
    }

    #[test]
    fn glued_units_split_and_numbering_is_noise() {
        let t = tokenize("1. chini 5kg", 0);
        assert_eq!(t[0].kind, TokKind::Noise);
        assert_eq!(t[2].kind, TokKind::Num(5.0));
        assert_eq!(t[3].norm, "kg");
        assert!(t[3].glued);
    }

    #[test]
    fn spans_are_byte_offsets() {
        let s = "चिनी ५ केजी";
        for t in tokenize(s, 0) {
            assert!(s.is_char_boundary(t.start) && s.is_char_boundary(t.end));
        }
    }
}
