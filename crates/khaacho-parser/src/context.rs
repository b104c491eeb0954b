//! Line-level passes that use the context around product mentions: everyday words that are
//! also aliases, elliptical variants after a brand ("Wai Wai chicken 2, veg 1"), sizes that
//! continue the previous product ("100g ko 20, 250g ko 10"), bare sizes ("fanta 1.5 - 2 peti")
//! and parenthetical substitutes ("(if none, X instead)").

use crate::catalog::{Catalog, Size};
use crate::elems::{Elem, Kind, Line, ProductHit, hit_from_entry};
use crate::lexicon::Lex;
use crate::normalize::fold_word;
use crate::tokenize::{TokKind, Token};
use crate::unit::{Unit, unit_from_folded};

/// Confidence of a variant completed from the brand of an earlier mention.
const ELLIPSIS_CONFIDENCE: f32 = 0.85;

/// Words that mark a bracketed phrase as a substitute, not an extra line.
const SUBSTITUTE_WORDS: &[&str] = &[
    "nabhaye",
    "navaye",
    "nabhayema",
    "navayema",
    "nabhae",
    "navae",
    "nabhaya",
    "nabhe",
    "nahuda",
    "nahunda",
    "if",
    "instead",
    "otherwise",
    "else",
    "alternative",
    "substitute",
    "or",
    "bhane",
    "नभए",
    "नभये",
    "नभएमा",
    "भने",
    "नहुँदा",
    "वा",
];

/// Words that make the name before them a business ("Sona Traders", "Ganesh Kirana").
const BUSINESS_WORDS: &[&str] = &[
    "traders",
    "trader",
    "store",
    "stores",
    "kirana",
    "pasal",
    "bhandar",
    "suppliers",
    "enterprises",
    "mart",
    "shop",
    "किराना",
    "पसल",
    "भण्डार",
    "ट्रेडर्स",
    "स्टोर",
];

/// "Sona Traders": a mention followed by a business word is a shop's name.
pub(crate) fn release_shop_names(line: &mut Line<'_>) {
    for first in 0..line.toks.len() {
        let Some(last) = line.hits[first].as_ref().map(|(l, _)| *l) else {
            continue;
        };
        let business = line.toks.get(last + 1).is_some_and(|t| {
            t.kind == TokKind::Word && BUSINESS_WORDS.iter().any(|w| fold_word(w) == t.norm)
        });
        if business {
            // The name stays taken (so no typo match finds it again) but orders nothing.
            line.hits[first] = None;
        }
    }
}

/// "Good day dai", "Tokla 500g pani 10 packet": a mention made only of everyday vocabulary
/// counts only as an order item when a quantity stands right before it, or when it opens its
/// phrase and a quantity follows. Otherwise it is released back to plain words.
pub(crate) fn release_everyday(line: &mut Line<'_>) {
    let n = line.toks.len();
    for first in 0..n {
        let Some((last, _)) = line.hits[first].as_ref().map(|(l, h)| (*l, h.conf)) else {
            continue;
        };
        // Names with digits ("3 in 1", "7 up") are names, not everyday words.
        let everyday = (first..=last).all(|k| {
            line.toks[k].kind == TokKind::Word && line.lexes[k].is_some() && line.units[k].is_none()
        });
        if !everyday {
            continue;
        }
        // The number (and unit) just before, unless it is the size of the mention before it
        // ("Tokla 500g pani").
        let q_start = match first.checked_sub(1) {
            Some(k) if matches!(line.toks[k].kind, TokKind::Num(_)) => Some(k),
            Some(k) if line.units[k].is_some() && !line.used[k] => Some(k.saturating_sub(1)),
            _ => None,
        };
        // ... or of any mention earlier in the phrase ("chini arko 5 kg pani thapdinu").
        let seg_start = (0..first)
            .rev()
            .find(|&k| line.toks[k].kind == TokKind::Sep)
            .map_or(0, |k| k + 1);
        let qty_before = q_start.is_some_and(|q| !(seg_start..q).any(|k| line.hits[k].is_some()));
        let qty_after = line.toks.get(last + 1).is_some_and(|t| {
            matches!(t.kind, TokKind::Num(_))
                || matches!(
                    line.lexes[last + 1],
                    Some(Lex::Number(_)) | Some(Lex::Fraction(_))
                )
        });
        let opens = first == 0
            || matches!(line.toks[first - 1].kind, TokKind::Sep | TokKind::Noise)
            || (line.lexes[first - 1].is_some() && !line.used[first - 1]);
        if !(qty_before || (opens && qty_after)) {
            line.hits[first] = None;
            line.used[first..=last].iter_mut().for_each(|u| *u = false);
        }
    }
}

/// The closest mention that ends before token `i`: (first token, last token, hit).
fn previous_hit<'h>(line: &'h Line<'_>, i: usize) -> Option<(usize, usize, &'h ProductHit)> {
    previous_hits(line, i).next()
}

/// Mentions that end before token `i`, closest first.
fn previous_hits<'h>(
    line: &'h Line<'_>,
    i: usize,
) -> impl Iterator<Item = (usize, usize, &'h ProductHit)> {
    (0..i).rev().filter_map(move |f| match &line.hits[f] {
        Some((l, h)) if *l < i => Some((f, *l, h)),
        _ => None,
    })
}

/// How many earlier mentions are tried as the brand of an elliptical variant.
const BRAND_LOOKBACK: usize = 6;

/// "Preeti chicken 20, veg 10", "Real orange 1L 6, litchi 6", "yum yum chiken 2ctn": an
/// unmatched word after a mention is tried as a variant of that mention's brand (its first
/// words plus the word). Right after an ambiguous mention it may also complete the name.
pub(crate) fn complete_variants(cat: &Catalog, line: &mut Line<'_>) {
    let n = line.toks.len();
    let mut key = String::new();
    for i in 0..n {
        // A word that names another product on its own may still be a variant of the brand
        // before it when it opens a phrase ("Good Day cashew 2 ctn, butter 1 ctn").
        let lone_hit = matches!(&line.hits[i], Some((l, _)) if *l == i)
            && i > 0
            && line.toks[i - 1].kind == TokKind::Sep;
        if !(line.is_content(i) || lone_hit) {
            continue;
        }
        let prevs: Vec<(usize, usize, bool)> = previous_hits(line, i)
            .take(BRAND_LOOKBACK)
            .map(|(f, l, h)| (f, l, h.cands.len() == 1))
            .collect();
        let Some(&(first, last, _)) = prevs.first() else {
            continue;
        };
        let adjacent = last + 1 == i;
        if adjacent && prevs[0].2 {
            continue;
        }
        let word = &line.toks[i].norm;
        let mut found: Option<(usize, ProductHit)> = None;
        let tries = prevs
            .iter()
            .flat_map(|&(f, l, _)| (1..=l + 1 - f).rev().map(move |p| (f, l, p)));
        for (first, last, p) in tries {
            if adjacent && first != prevs[0].0 {
                break;
            }
            key.clear();
            for t in &line.toks[first..first + p] {
                if t.kind == TokKind::Word || matches!(t.kind, TokKind::Num(_)) {
                    key.push_str(&t.norm);
                }
            }
            let brand_len = key.chars().count();
            key.push_str(word);
            if let Some(e) = cat.lookup(&key) {
                found = Some((first, hit_from_entry(e)));
                break;
            }
            // A typo in the word completing an ambiguous name ("yum yum chiken"): one edit,
            // with the whole brand and a word of 4+ letters.
            let wlen = word.chars().count();
            if adjacent && p == last + 1 - first && wlen >= 4 && brand_len >= 3 {
                let hits = cat.fuzzy(&key);
                let qlen = key.chars().count();
                if let Some(&(k, sim)) = hits.first()
                    && hits.get(1).is_none_or(|h| h.1 < sim)
                    && (1.0 - sim) * (qlen.max(k.chars().count()) as f64) < 1.5
                    && let Some(e) = cat.lookup(k)
                {
                    let mut h = hit_from_entry(e);
                    h.conf *= sim as f32;
                    found = Some((first, h));
                    break;
                }
            }
        }
        if found.is_none() && adjacent && !lone_hit {
            found = abbreviation(cat, &line.hits[first], word).map(|h| (first, h));
        }
        let Some((brand_first, mut hit)) = found else {
            continue;
        };
        if !cat.one_group(&hit.cands) {
            continue;
        }
        // The earlier mention only named the brand of a list: it adds no line of its own.
        if !adjacent
            && let Some((_, brand)) = line.hits[brand_first].as_mut()
            && brand.cands.len() > 1
        {
            brand.heading = true;
        }
        hit.conf = hit.conf.min(ELLIPSIS_CONFIDENCE);
        line.used[i] = true;
        if adjacent {
            line.used[first..=i].iter_mut().for_each(|u| *u = true);
            line.hits[first] = Some((i, hit));
        } else {
            line.hits[i] = Some((i, hit));
        }
    }
}

/// "ruchi chk": of an ambiguous mention's candidates, the one with a name word that starts
/// like `word` and contains its letters in order (an abbreviation), when exactly one has it.
fn abbreviation(
    cat: &Catalog,
    hit: &Option<(usize, ProductHit)>,
    word: &str,
) -> Option<ProductHit> {
    let (_, hit) = hit.as_ref()?;
    if hit.cands.len() < 2 || word.chars().count() < 2 || !word.is_ascii() {
        return None;
    }
    let abbreviates = |w: &str| {
        let mut rest = w.chars();
        w.len() > word.len()
            && w.starts_with(&word[..1])
            && word.chars().all(|c| rest.any(|d| d == c))
    };
    let mut pick: Option<u32> = None;
    for &c in &hit.cands {
        let p = cat.product(c);
        let names = std::iter::once(&p.name).chain(p.aliases.iter());
        let has = names
            .flat_map(|a| a.split_whitespace())
            .any(|w| abbreviates(&fold_word(w)));
        if has {
            if pick.is_some() {
                return None;
            }
            pick = Some(c);
        }
    }
    pick.map(|c| ProductHit {
        cands: vec![c],
        conf: ELLIPSIS_CONFIDENCE,
        sized: false,
        heading: false,
        brand: Vec::new(),
    })
}

/// A free "number measure-unit" pair at `a` ("500 ml", "250g").
pub(crate) fn size_at(line: &Line<'_>, a: usize) -> Option<Size> {
    let (TokKind::Num(v), false) = (line.toks.get(a)?.kind, line.used[a]) else {
        return None;
    };
    let u = (*line.units.get(a + 1)?)?;
    if line.used[a + 1] {
        return None;
    }
    Size::from_qty(v, u)
}

/// The one variant among `cands`' size groups with `size`.
fn variant_of(cat: &Catalog, cands: &[u32], size: Size) -> Option<u32> {
    let mut found: Option<u32> = None;
    for &c in cands {
        if let Some(v) = cat.variant_with_size(c, size) {
            match found {
                Some(f) if f != v => return None,
                _ => found = Some(v),
            }
        }
    }
    found
}

/// "Tokla 100g ko 20 packet, 250g ko 10 ota": a size in a phrase with no product names a
/// variant of the previous mention's product.
pub(crate) fn continue_sizes(cat: &Catalog, line: &mut Line<'_>) {
    let n = line.toks.len();
    let mut seg_start = 0;
    while seg_start < n {
        let seg_end = (seg_start..n)
            .find(|&k| line.toks[k].kind == TokKind::Sep)
            .unwrap_or(n);
        let has_hit = (seg_start..seg_end).any(|k| line.hits[k].is_some());
        if !has_hit
            && let Some(a) = (seg_start..seg_end).find(|&k| size_at(line, k).is_some())
            && let Some(size) = size_at(line, a)
            && let Some((_, _, prev)) = previous_hit(line, a)
            && let Some(v) = variant_of(cat, &prev.cands, size)
        {
            let conf = prev.conf.min(ELLIPSIS_CONFIDENCE);
            line.used[a] = true;
            line.used[a + 1] = true;
            line.hits[a] = Some((
                a + 1,
                ProductHit {
                    cands: vec![v],
                    conf,
                    sized: true,
                    heading: false,
                    brand: Vec::new(),
                },
            ));
        }
        seg_start = seg_end + 1;
    }
}

/// "fanta 1.5 - 2 peti", "dew 1.5 3 crate": a bare number right after a mention of several
/// size variants is their size (litres or kilograms, or ml/g as written) when another
/// quantity follows in the same phrase.
pub(crate) fn bare_sizes(cat: &Catalog, line: &mut Line<'_>) {
    let n = line.toks.len();
    for first in 0..n {
        let Some((last, hit)) = line.hits[first].as_ref() else {
            continue;
        };
        let (last, cands) = (*last, hit.cands.clone());
        if cands.len() < 2 {
            continue;
        }
        let a = last + 1;
        let Some(TokKind::Num(v)) = line.toks.get(a).map(|t| t.kind) else {
            continue;
        };
        if line.used[a] || line.units.get(a + 1).copied().flatten().is_some() {
            continue;
        }
        let more = line.toks[a + 1..]
            .iter()
            .take_while(|t| t.kind != TokKind::Sep)
            .any(|t| matches!(t.kind, TokKind::Num(_)));
        if !more {
            continue;
        }
        let tries = [
            Size::from_qty(v, Unit::Litre),
            Size::from_qty(v, Unit::Kg),
            Size::from_qty(v, Unit::Ml),
            Size::from_qty(v, Unit::G),
        ];
        let mut picked: Option<u32> = None;
        for size in tries.into_iter().flatten() {
            if let Some(p) = variant_of(cat, &cands, size) {
                if picked.is_some_and(|q| q != p) {
                    picked = None;
                    break;
                }
                picked = Some(p);
            }
        }
        if let Some(p) = picked {
            line.used[a] = true;
            if let Some((l, h)) = line.hits[first].as_mut() {
                *l = a;
                h.cands = vec![p];
                h.sized = true;
            }
        }
    }
}

/// "carton 3", "CTN 1": a unit written just before a bare number is that number's unit.
pub(crate) fn unit_before_number(elems: &mut Vec<Elem>) {
    let mut k = 0;
    while k + 1 < elems.len() {
        if let Kind::UnitOnly(u) = elems[k].kind
            && let Kind::Qty { unit: None, .. } = elems[k + 1].kind
        {
            let start = elems[k].start;
            if let Kind::Qty {
                unit, container, ..
            } = &mut elems[k + 1].kind
            {
                *unit = Some(u);
                *container = matches!(u, Unit::Packet | Unit::Bottle);
            }
            elems[k + 1].start = start;
            elems.remove(k);
        }
        k += 1;
    }
}

/// True for a folded word that marks a substitute ("nabhaye", "instead", "if").
pub(crate) fn is_substitute_word(folded: &str) -> bool {
    SUBSTITUTE_WORDS.iter().any(|w| fold_word(w) == folded)
}

/// "Parle-G 2 ctn (48 pkt each)": numbers in parentheses are notes when the line has a quantity
/// outside them.
pub(crate) fn drop_asides(toks: &[Token], elems: &mut Vec<Elem>) {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut substitutes: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<usize> = None;
    let mut substitute = false;
    for t in toks {
        match t.kind {
            TokKind::Punct('(') => {
                open = Some(t.start);
                substitute = false;
            }
            TokKind::Punct(')') => {
                if let Some(o) = open.take() {
                    ranges.push((o, t.end));
                    if substitute {
                        substitutes.push((o, t.end));
                    }
                }
            }
            TokKind::Word | TokKind::Sep if open.is_some() => {
                substitute |= is_substitute_word(&t.norm);
            }
            _ => {}
        }
    }
    if ranges.is_empty() {
        return;
    }
    // "(nabhaye Red Label 250g)", "(if none, Tokla instead)": a substitute adds no line.
    elems.retain(|e| !substitutes.iter().any(|&(a, b)| e.start >= a && e.end <= b));
    let inside = |e: &Elem| ranges.iter().any(|&(a, b)| e.start >= a && e.end <= b);
    let quantifier = |e: &Elem| {
        matches!(
            e.kind,
            Kind::Qty { .. } | Kind::Range(_) | Kind::Vague | Kind::UnitOnly(_) | Kind::Amount(_)
        )
    };
    if elems.iter().any(|e| quantifier(e) && !inside(e)) {
        elems.retain(|e| !(quantifier(e) && inside(e)));
    }
}

/// "coke 500ml", "Frooti 4 200ml", "200ml mixed": a size next to a mention picks the variant.
pub(crate) fn select_sizes(cat: &Catalog, line: &mut Line<'_>) {
    for first in 0..line.toks.len() {
        let Some((last, hit)) = line.hits[first].clone() else {
            continue;
        };
        let mut spots = vec![last + 1];
        if first >= 2 {
            spots.push(first - 2);
        }
        // "Frooti 4 200ml": the size may follow the count; "DHARA-1L", "व्हील पाउडर १ किलो",
        // "Aqua pure pani 1 litre": or a dash, a descriptor or a filler word.
        let skippable = line.toks.get(last + 1).is_some_and(|t| {
            matches!(t.kind, TokKind::Num(_) | TokKind::Punct('-'))
                || (t.kind == TokKind::Word
                    && !line.used[last + 1]
                    && line.units[last + 1].is_none()
                    && matches!(line.lexes[last + 1], None | Some(Lex::Stop)))
        });
        if skippable {
            spots.push(last + 2);
        }
        let mut chosen = None;
        for a in spots {
            let Some(size) = size_at(line, a) else {
                continue;
            };
            let mut variants: Vec<u32> = Vec::new();
            for &c in &hit.cands {
                if let Some(v) = cat.variant_with_size(c, size)
                    && !variants.contains(&v)
                {
                    variants.push(v);
                }
            }
            if variants.len() == 1 {
                chosen = Some((a, variants[0]));
                break;
            }
        }
        if let Some((a, v)) = chosen {
            line.used[a] = true;
            line.used[a + 1] = true;
            if let Some((_, h)) = line.hits[first].as_mut() {
                h.cands = vec![v];
                h.sized = true;
            }
        } else if hit.cands.len() == 1 && cat.size_of(hit.cands[0]).is_some() && hit.conf >= 1.0 {
            // A name that itself carries the size ("frooti 200ml") also counts as sized.
            let named = line.toks[first..=last]
                .iter()
                .any(|t| t.kind != TokKind::Word || unit_from_folded(&t.norm).is_some());
            if named && let Some((_, h)) = line.hits[first].as_mut() {
                h.sized = true;
            }
        }
    }
}
