//! Turns the tokens of one line into parser elements: product mentions (exact, folded or fuzzy
//! catalogue matches, with size variants resolved), quantities, prices and steering words.

use crate::catalog::{Catalog, KeyEntry, key_part};
use crate::context;
use crate::lexicon::{Lex, lex};
use crate::tokenize::{TokKind, Token};
use crate::unit::{Unit, unit_from_folded};

/// Confidence of a product found through a size-stripped (variant) key.
const VARIANT_CONFIDENCE: f32 = 0.9;
/// Fuzzy similarity is scaled by this, so a fuzzy match never looks as sure as an exact one.
const FUZZY_SCALE: f32 = 0.9;
/// Longest run of words tried as one fuzzy query.
const FUZZY_MAX_WORDS: usize = 3;

/// A product mention in the text.
#[derive(Debug, Clone)]
pub(crate) struct ProductHit {
    /// Candidate products; more than one means the mention is ambiguous.
    pub cands: Vec<u32>,
    /// Match confidence 0..1.
    pub conf: f32,
    /// True when a size next to the name picked the variant ("coke 500ml").
    pub sized: bool,
    /// Products the first word of a longer name stands for ("sunsilk" of "sunsilk pouch"):
    /// siblings a later pack unit may name.
    pub brand: Vec<u32>,
    /// An ambiguous brand that later words of the line complete ("Real juice 1L - orange 6,
    /// litchi 6"): a heading, not a line.
    pub heading: bool,
}

/// One element of a line, with its byte span in the message.
#[derive(Debug, Clone)]
pub(crate) struct Elem {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// What an element is.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Product(ProductHit),
    /// A quantity; `unit` is `Some(Piece)` for count words; `negative` for "-5".
    Qty {
        value: f64,
        unit: Option<Unit>,
        negative: bool,
        conf: f32,
        /// The unit was written as a container word ("jar", "bag", "bottle"), see
        /// [`crate::unit::is_container`].
        container: bool,
    },
    /// "2-3 kg", "2 or 3".
    Range(Option<Unit>),
    /// "some", "thorai".
    Vague,
    /// A unit with no number ("chini bora").
    UnitOnly(Unit),
    /// Money that is not a unit price: "Rs 500 (worth of) chini".
    Amount(f64),
    /// A unit price ("@ 95", "rate 120"): never a quantity.
    Rate,
    Correction,
    /// A word that is neither vocabulary nor catalogue: part of a possible unknown item.
    Content,
    Sep,
    Question,
    QuestionMark,
    Payment,
}

/// One line being analysed: tokens with their vocabulary and unit readings, which tokens a
/// mention or size already took, and the mentions found.
pub(crate) struct Line<'a> {
    pub toks: &'a [Token],
    pub lexes: Vec<Option<Lex>>,
    pub units: Vec<Option<Unit>>,
    pub used: Vec<bool>,
    /// Product hit starting at a token index, with the index of its last token.
    pub hits: Vec<Option<(usize, ProductHit)>>,
}

impl Line<'_> {
    /// A free word that is neither vocabulary, unit nor part of a mention.
    pub(crate) fn is_content(&self, i: usize) -> bool {
        !self.used[i]
            && self.toks[i].kind == TokKind::Word
            && self.lexes[i].is_none()
            && self.units[i].is_none()
    }
}

/// Builds the elements of one tokenized line.
pub(crate) fn elements(cat: &Catalog, toks: &[Token]) -> Vec<Elem> {
    let n = toks.len();
    let mut line = Line {
        toks,
        lexes: toks
            .iter()
            .map(|t| (t.kind == TokKind::Word).then(|| lex(&t.norm)).flatten())
            .collect(),
        units: toks
            .iter()
            .map(|t| {
                (t.kind == TokKind::Word)
                    .then(|| unit_from_folded(&t.norm))
                    .flatten()
            })
            .collect(),
        used: vec![false; n],
        hits: vec![None; n],
    };
    exact_matches(cat, &mut line);
    // "Aqua pure pani": an everyday alias right next to a name of the same product is part of it.
    merge_generic(&mut line);
    context::release_everyday(&mut line);
    context::release_shop_names(&mut line);
    context::complete_variants(cat, &mut line);
    fuzzy_matches(cat, &mut line);
    merge_generic(&mut line);
    context::bare_sizes(cat, &mut line);
    context::select_sizes(cat, &mut line);
    context::continue_sizes(cat, &mut line);
    let mut out = build(&mut line);
    context::drop_asides(toks, &mut out);
    context::unit_before_number(&mut out);
    out
}

fn starts_product(t: &Token, next: Option<&Token>) -> bool {
    match t.kind {
        TokKind::Word => true,
        // "2pm", "7up", "5 Star": a number starts a name only together with a word.
        TokKind::Num(_) => next.is_some_and(|n| n.kind == TokKind::Word),
        _ => false,
    }
}

fn exact_matches(cat: &Catalog, line: &mut Line<'_>) {
    let toks = line.toks;
    let mut key = String::new();
    let mut bounds: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let digits = if line.used[i] {
            None
        } else {
            digit_name(cat, toks, i)
        };
        if digits.is_none() && (line.used[i] || !starts_product(&toks[i], toks.get(i + 1))) {
            i += 1;
            continue;
        }
        key.clear();
        bounds.clear();
        let mut j = i;
        while j < toks.len() && bounds.len() < cat.max_key_tokens() {
            let t = &toks[j];
            if let Some(part) = key_part(t) {
                key.push_str(part);
                bounds.push((key.len(), j));
            } else if !matches!(t.kind, TokKind::Punct('-') | TokKind::Punct('.')) {
                break;
            }
            j += 1;
        }
        let mut matched = digits;
        for &(len, last) in bounds.iter().rev() {
            if matched.is_some() {
                break;
            }
            if toks[last].kind == TokKind::Sep
                || !toks[i..=last].iter().any(|t| t.kind == TokKind::Word)
            {
                continue;
            }
            if let Some(e) = cat.lookup(&key[..len]) {
                matched = Some((last, hit_from_entry(e)));
                break;
            }
        }
        match matched {
            Some((last, mut hit)) => {
                if last > i
                    && let Some(e) = cat.lookup(&toks[i].norm)
                {
                    hit.brand = hit_from_entry(e).cands;
                }
                line.used[i..=last].iter_mut().for_each(|u| *u = true);
                line.hits[i] = Some((last, hit));
                i = last + 1;
            }
            None => i += 1,
        }
    }
}

/// "50-50": numbers joined by a dash that spell a digit-only catalogue name.
fn digit_name(cat: &Catalog, toks: &[Token], i: usize) -> Option<(usize, ProductHit)> {
    let [a, dash, b] = toks.get(i..i + 3)? else {
        return None;
    };
    let glued = dash.kind == TokKind::Punct('-') && dash.glued && b.glued;
    if !(glued && matches!(a.kind, TokKind::Num(_)) && matches!(b.kind, TokKind::Num(_))) {
        return None;
    }
    let key = format!("{}{}{}", crate::catalog::DIGIT_KEY, a.norm, b.norm);
    cat.lookup(&key).map(|e| (i + 2, hit_from_entry(e)))
}

/// The mention a catalogue key stands for.
pub(crate) fn hit_from_entry(e: &KeyEntry) -> ProductHit {
    if e.strong.is_empty() {
        ProductHit {
            cands: e.weak.clone(),
            conf: VARIANT_CONFIDENCE,
            sized: false,
            heading: false,
            brand: Vec::new(),
        }
    } else {
        // Weak candidates stay reachable through size selection (variant groups).
        ProductHit {
            cands: e.strong.clone(),
            conf: 1.0,
            sized: false,
            heading: false,
            brand: Vec::new(),
        }
    }
}

fn fuzzy_matches(cat: &Catalog, line: &mut Line<'_>) {
    let n = line.toks.len();
    let mut i = 0;
    let mut query = String::new();
    while i < n {
        if !line.is_content(i) {
            i += 1;
            continue;
        }
        let mut found = None;
        let max_len = (i..n).take_while(|&k| line.is_content(k)).count();
        for len in (1..=max_len.min(FUZZY_MAX_WORDS)).rev() {
            query.clear();
            for t in &line.toks[i..i + len] {
                query.push_str(&t.norm);
            }
            let hits = cat.fuzzy(&query);
            let Some(&(best_key, best_sim)) = hits.first() else {
                continue;
            };
            let mut cands: Vec<u32> = Vec::new();
            for &(k, sim) in &hits {
                if (best_sim - sim).abs() > 1e-9 && k != best_key {
                    break;
                }
                if let Some(e) = cat.lookup(k) {
                    let h = hit_from_entry(e);
                    for c in h.cands {
                        if !cands.contains(&c) {
                            cands.push(c);
                        }
                    }
                }
            }
            if !cands.is_empty() {
                found = Some((i + len - 1, cands, best_sim as f32 * FUZZY_SCALE));
                break;
            }
        }
        match found {
            Some((last, cands, conf)) => {
                line.used[i..=last].iter_mut().for_each(|u| *u = true);
                line.hits[i] = Some((
                    last,
                    ProductHit {
                        cands,
                        conf,
                        sized: false,
                        heading: false,
                        brand: Vec::new(),
                    },
                ));
                i = last + 1;
            }
            None => i += 1,
        }
    }
}

/// "lux sabun", "dal musuro": a specific name next to a generic one that includes it is one
/// mention of the specific product, not an ambiguous second item.
fn merge_generic(line: &mut Line<'_>) {
    let mut i = 0;
    while i < line.hits.len() {
        let Some((last, a)) = line.hits[i].clone() else {
            i += 1;
            continue;
        };
        // The next hit, skipping brackets and dashes: "rice (mansuli)".
        let mut nb = last + 1;
        while line.toks.get(nb).is_some_and(|t| {
            matches!(
                t.kind,
                TokKind::Punct('(') | TokKind::Punct(')') | TokKind::Punct('-')
            ) || (t.kind == TokKind::Word && matches!(t.norm.as_str(), "ko" | "को"))
        }) {
            nb += 1;
        }
        let Some(Some((last_b, b))) = line.hits.get(nb).cloned() else {
            i = last + 1;
            continue;
        };
        let merged = match (a.cands.as_slice(), b.cands.as_slice()) {
            ([x], [y]) if x == y => Some(a.clone()),
            ([x], many) if many.len() > 1 && many.contains(x) => Some(a.clone()),
            (many, [y]) if many.len() > 1 && many.contains(y) => Some(b.clone()),
            // "धारा तेल", "Tokla chiya": a brand of several sizes next to its category word.
            (xs, ys) if xs.len() > 1 && ys.len() > 1 && xs.iter().all(|x| ys.contains(x)) => {
                Some(a.clone())
            }
            (xs, ys) if xs.len() > 1 && ys.len() > 1 && ys.iter().all(|y| xs.contains(y)) => {
                Some(b.clone())
            }
            _ => None,
        };
        match merged {
            Some(h) => {
                line.hits[nb] = None;
                line.used[last + 1..nb].iter_mut().for_each(|u| *u = true);
                line.hits[i] = Some((last_b, h));
            }
            None => i = last + 1,
        }
    }
}

fn num_value(line: &Line<'_>, i: usize) -> Option<f64> {
    if line.used.get(i).copied().unwrap_or(true) {
        return None;
    }
    match (line.toks[i].kind, line.lexes[i]) {
        (TokKind::Num(v), _) => Some(v),
        (_, Some(Lex::Number(v))) | (_, Some(Lex::Fraction(v))) => Some(v),
        (_, Some(Lex::WeakNumber(v))) if weak_number_counts(line, i) => Some(v),
        _ => None,
    }
}

fn weak_number_counts(line: &Line<'_>, i: usize) -> bool {
    let j = i + 1;
    j < line.toks.len() && (line.units[j].is_some() || line.hits[j].is_some())
}

fn build(line: &mut Line<'_>) -> Vec<Elem> {
    let toks = line.toks;
    let mut out: Vec<Elem> = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let simple = |kind| Elem {
            kind,
            start: t.start,
            end: t.end,
        };
        if let Some((last, hit)) = line.hits[i].take() {
            out.push(Elem {
                kind: Kind::Product(hit),
                start: t.start,
                end: toks[last].end,
            });
            i = last + 1;
            continue;
        }
        if line.used[i] {
            i += 1;
            continue;
        }
        let next = match (t.kind, line.lexes[i]) {
            (TokKind::Sep, _) => {
                out.push(simple(Kind::Sep));
                i + 1
            }
            (TokKind::Punct('?'), _) => {
                out.push(simple(Kind::QuestionMark));
                i + 1
            }
            (TokKind::Punct('@'), _) | (TokKind::Word, Some(Lex::Rate)) => {
                price(line, i, &mut out, true)
            }
            (TokKind::Word, Some(Lex::CurrencyBefore)) => price(line, i, &mut out, false),
            (TokKind::Num(_), _)
            | (TokKind::Word, Some(Lex::Number(_)))
            | (TokKind::Word, Some(Lex::Fraction(_)))
            | (TokKind::Word, Some(Lex::Modifier { .. })) => quantity(line, i, &mut out),
            (TokKind::Word, Some(Lex::WeakNumber(_))) if weak_number_counts(line, i) => {
                quantity(line, i, &mut out)
            }
            (TokKind::Word, Some(Lex::Article))
                if line.units.get(i + 1).copied().flatten().is_some() =>
            {
                quantity(line, i, &mut out)
            }
            (TokKind::Word, Some(Lex::Vague)) => {
                out.push(simple(Kind::Vague));
                i + 1
            }
            (TokKind::Word, Some(Lex::Correction)) => {
                out.push(simple(Kind::Correction));
                i + 1
            }
            (TokKind::Word, Some(Lex::Question)) | (TokKind::Word, Some(Lex::Drop)) => {
                out.push(simple(Kind::Question));
                i + 1
            }
            (TokKind::Word, Some(Lex::Payment)) => {
                out.push(simple(Kind::Payment));
                i + 1
            }
            (TokKind::Word, None) => {
                match line.units[i] {
                    Some(u) => out.push(simple(Kind::UnitOnly(u))),
                    None => out.push(simple(Kind::Content)),
                }
                i + 1
            }
            _ => i + 1,
        };
        i = next.max(i + 1);
    }
    out
}

/// Skips punctuation between a currency word and its number ("rs. 500", "rs: 500").
fn skip_punct(line: &Line<'_>, mut i: usize) -> usize {
    while line.toks.get(i).is_some_and(|t| {
        matches!(
            t.kind,
            TokKind::Punct('.') | TokKind::Punct(':') | TokKind::Punct('=')
        )
    }) {
        i += 1;
    }
    i
}

/// A price after "@", "rate", "rs": consumes the number (and "/kg" or "per kg" after it).
fn price(line: &Line<'_>, i: usize, out: &mut Vec<Elem>, rate: bool) -> usize {
    let mut j = skip_punct(line, i + 1);
    let mut rate = rate;
    // "@ Rs 95", "rate rs 95"
    if line.lexes.get(j).copied().flatten() == Some(Lex::CurrencyBefore)
        || line.lexes.get(j).copied().flatten() == Some(Lex::Rate)
    {
        if line.lexes.get(j).copied().flatten() == Some(Lex::Rate) {
            rate = true;
        }
        j = skip_punct(line, j + 1);
    }
    let Some(TokKind::Num(v)) = line.toks.get(j).map(|t| t.kind) else {
        // "Fanta 2.25 ko rate pani pathaunu": asking for a rate is a price question.
        if rate && matches!(line.toks[i].norm.as_str(), "rate" | "dar" | "दर" | "mrp") {
            out.push(Elem {
                kind: Kind::Question,
                start: line.toks[i].start,
                end: line.toks[i].end,
            });
        }
        return i + 1;
    };
    let mut end = j + 1;
    end = skip_multiplier(line, end, &mut 0.0);
    if per_unit(line, end) {
        rate = true;
        end += 2;
    }
    out.push(Elem {
        kind: if rate { Kind::Rate } else { Kind::Amount(v) },
        start: line.toks[i].start,
        end: line.toks[end - 1].end,
    });
    end
}

/// "/kg" or "per kg" at `j`.
fn per_unit(line: &Line<'_>, j: usize) -> bool {
    let slash = line.toks.get(j).is_some_and(|t| t.norm == "/")
        || line.lexes.get(j).copied().flatten() == Some(Lex::Rate);
    slash && line.units.get(j + 1).copied().flatten().is_some()
}

fn skip_multiplier(line: &Line<'_>, j: usize, value: &mut f64) -> usize {
    if let Some(Some(Lex::Multiplier(m))) = line.lexes.get(j) {
        *value *= m;
        return j + 1;
    }
    j
}

/// "crtn", "pkets": a content word one edit away from a unit word of three or more letters.
fn misspelt_unit(line: &Line<'_>, k: usize) -> Option<Unit> {
    let t = line.toks.get(k)?;
    if t.kind != TokKind::Word || line.lexes[k].is_some() || line.hits[k].is_some() || line.used[k]
    {
        return None;
    }
    if t.norm.chars().count() < 3 {
        return None;
    }
    crate::unit::fuzzy_unit(&t.norm)
}

fn is_times(line: &Line<'_>, k: usize) -> bool {
    line.toks.get(k).is_some_and(|t| {
        t.kind == TokKind::Punct('x')
            || (t.kind == TokKind::Word && line.lexes[k] == Some(Lex::Times))
    })
}

fn quantity(line: &Line<'_>, i: usize, out: &mut Vec<Elem>) -> usize {
    let toks = line.toks;
    let words = toks[i].kind == TokKind::Word;
    let mut j = i;
    let mut value = match line.lexes[i] {
        Some(Lex::Modifier { add, alone }) => match num_value(line, i + 1) {
            Some(v) => {
                j = i + 1;
                v + add
            }
            None => match alone {
                Some(v) => v,
                None => return i + 1,
            },
        },
        Some(Lex::Article) => 1.0,
        _ => match num_value(line, i) {
            Some(v) => v,
            None => return i + 1,
        },
    };
    // "1 1/2", "2 ½"
    if value.fract() == 0.0
        && let Some(TokKind::Num(f)) = toks.get(j + 1).map(|t| t.kind)
        && f < 1.0
        && f > 0.0
    {
        value += f;
        j += 1;
    }
    let mut k = skip_multiplier(line, j + 1, &mut value);
    // "-5" is negative; "SUGAR-10KG" (dash glued to a word) and "1.5 - 2" are not.
    let negative = i >= 2
        && toks[i].glued
        && toks[i - 1].kind == TokKind::Punct('-')
        && !toks[i - 1].glued
        && !matches!(toks[i - 2].kind, TokKind::Num(_));
    let start = if negative {
        toks[i - 1].start
    } else {
        toks[i].start
    };
    // Ranges: "2-3", "2 to 3", "2 ya 3".
    let joiner = toks
        .get(k)
        .is_some_and(|t| t.kind == TokKind::Punct('-') || line.lexes[k] == Some(Lex::RangeJoin));
    let range = joiner && num_value(line, k + 1).is_some();
    if range {
        k += 2;
    }
    if toks
        .get(k)
        .is_some_and(|t| line.lexes[k] == Some(Lex::Times) && t.kind == TokKind::Word)
    {
        k += 1;
    }
    // "6 more bottles": a filler between the number and its unit.
    if toks
        .get(k)
        .is_some_and(|t| matches!(t.norm.as_str(), "more" | "extra" | "aru" | "thap"))
        && line.units.get(k + 1).copied().flatten().is_some()
    {
        k += 1;
    }
    let unit = line
        .units
        .get(k)
        .copied()
        .flatten()
        .or_else(|| misspelt_unit(line, k))
        .or_else(|| {
            let t = toks.get(k)?;
            (t.kind == TokKind::Word)
                .then(|| crate::unit::count_container(&t.norm))
                .flatten()
        })
        .filter(|_| !line.used[k]);
    let container = unit.is_some() && crate::unit::is_container(&toks[k].norm);
    if unit.is_some() {
        k += 1;
        // "25kg x 2": two of them.
        if is_times(line, k)
            && let Some(n) = num_value(line, k + 1)
            && line.units.get(k + 2).copied().flatten().is_none()
        {
            value *= n;
            k += 2;
        }
    }
    // "Bhaktapur-6" (a ward number) and "15th" (a date) are not amounts.
    let address = i >= 2
        && toks[i].glued
        && toks[i - 1].kind == TokKind::Punct('-')
        && toks[i - 1].glued
        && line.is_content(i - 2);
    let ordinal = toks.get(i + 1).is_some_and(|t| {
        t.glued && t.kind == TokKind::Word && matches!(t.norm.as_str(), "st" | "nd" | "rd" | "th")
    });
    if unit.is_none() && (address || ordinal) {
        return if ordinal { i + 2 } else { k };
    }
    // "25 kg wala": describes which pack, it is not an amount.
    if toks
        .get(k)
        .is_some_and(|t| matches!(t.norm.as_str(), "vala" | "vali" | "bala" | "वाला" | "बाला"))
    {
        return k + 1;
    }
    let end = toks[k - 1].end;
    let after = line.lexes.get(k).copied().flatten();
    let elem = |kind| Elem { kind, start, end };
    match after {
        Some(Lex::TimeWord) if unit.is_none() => return k + 1,
        Some(Lex::CurrencyAfter) | Some(Lex::CurrencyBefore) if unit.is_none() => {
            let rate = per_unit(line, k + 1);
            out.push(Elem {
                kind: if rate {
                    Kind::Rate
                } else {
                    Kind::Amount(value)
                },
                start,
                end: toks[if rate { k + 2 } else { k }].end,
            });
            return if rate { k + 3 } else { k + 1 };
        }
        Some(Lex::Worth) if unit.is_none() && value >= 100.0 && !range => {
            out.push(elem(Kind::Amount(value)));
            return k + 1;
        }
        _ => {}
    }
    // "500/-" is money.
    if unit.is_none()
        && toks.get(k).is_some_and(|t| t.norm == "/")
        && toks
            .get(k + 1)
            .is_some_and(|t| t.kind == TokKind::Punct('-'))
    {
        out.push(elem(Kind::Amount(value)));
        return k + 2;
    }
    if range {
        out.push(elem(Kind::Range(unit)));
    } else {
        out.push(elem(Kind::Qty {
            value,
            unit,
            negative,
            conf: if words { 0.9 } else { 1.0 },
            container,
        }));
    }
    k
}
