//! The parser entry point: message text + catalogue → order lines and flags.

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::elems::{Elem, Kind, ProductHit, elements};
use crate::tokenize::tokenize;
use crate::unit::Unit;

/// Above this many base units (kg, litre, packet, piece, bottle; grams and millilitres counted
/// per thousand; a dozen as twelve) a quantity is beyond any plausible shop order and is flagged
/// `absurd_quantity` instead of being ordered.
pub const ABSURD_BASE_UNITS: f64 = 10_000.0;

/// Above this many outer packs (carton, crate, sack) a quantity is flagged `absurd_quantity`.
pub const ABSURD_OUTER_PACKS: f64 = 1_000.0;

/// One resolved order line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedItem {
    /// Catalogue SKU.
    pub sku: String,
    /// Quantity as written; `None` when the quantity is flagged (missing, vague, invalid…) or
    /// the line is a money amount.
    pub qty: Option<f64>,
    /// Unit as written (count words and bare numbers become the product's base unit).
    pub unit: Option<Unit>,
    /// "Rs 500 worth of sugar": the amount of money to spend on the product.
    pub amount_npr: Option<f64>,
    /// How sure the parser is of the product and quantity, 0..1.
    pub confidence: f32,
    /// Byte range of the product and its quantity in the input text.
    pub span: (usize, usize),
}

/// What a flag reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// An item-looking phrase with a quantity that matches nothing in the catalogue.
    UnknownItem,
    /// A phrase that matches two or more products equally well.
    AmbiguousItem,
    /// A range, a vague amount or no quantity at all.
    AmbiguousQuantity,
    /// Zero or negative.
    InvalidQuantity,
    /// Far beyond a plausible shop order (see [`ABSURD_BASE_UNITS`], [`ABSURD_OUTER_PACKS`]).
    AbsurdQuantity,
}

impl FlagKind {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagKind::UnknownItem => "unknown_item",
            FlagKind::AmbiguousItem => "ambiguous_item",
            FlagKind::AmbiguousQuantity => "ambiguous_quantity",
            FlagKind::InvalidQuantity => "invalid_quantity",
            FlagKind::AbsurdQuantity => "absurd_quantity",
        }
    }
}

/// Something a person should look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    /// The kind of problem.
    pub kind: FlagKind,
    /// The phrase of the message it concerns.
    pub text: String,
}

/// Result of parsing one message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParseOutcome {
    /// Order lines, one per (product, unit), in order of first mention.
    pub items: Vec<ParsedItem>,
    /// Problems found.
    pub flags: Vec<Flag>,
}

/// Parses one message against the catalogue. Never panics; pure.
pub fn parse(catalog: &Catalog, text: &str) -> ParseOutcome {
    let mut b = Builder::default();
    let mut base = 0;
    for line in text.split_inclusive('\n') {
        let toks = tokenize(line, base);
        base += line.len();
        if toks.is_empty() {
            continue;
        }
        b.line_first_item = b.items.len();
        let elems = elements(catalog, &toks);
        // "Sunpure 5L ko rate kati ho? ... Dhara 1L 1 peti pathaidinu": a question ends at
        // its question mark.
        for sentence in elems.split_inclusive(|e| matches!(e.kind, Kind::QuestionMark)) {
            if is_question(sentence) {
                continue;
            }
            for seg in sentence.split(|e| matches!(e.kind, Kind::Sep)) {
                bind_segment(catalog, text, seg, &mut b);
            }
        }
    }
    ParseOutcome {
        items: b.items,
        flags: b.flags,
    }
}

/// Price and availability questions ("chini kati ho?") produce nothing.
fn is_question(elems: &[Elem]) -> bool {
    let word = elems.iter().any(|e| matches!(e.kind, Kind::Question));
    let mark = elems.iter().any(|e| matches!(e.kind, Kind::QuestionMark));
    let qty = elems.iter().any(|e| matches!(e.kind, Kind::Qty { .. }));
    word || (mark && !qty)
}

fn is_quantifier(k: &Kind) -> bool {
    matches!(
        k,
        Kind::Qty { .. } | Kind::Range(_) | Kind::Vague | Kind::UnitOnly(_) | Kind::Amount(_)
    )
}

/// A thing quantities bind to: a catalogue product or a run of unknown words.
enum Target<'a> {
    Product(&'a ProductHit),
    Unknown,
}

struct Slot<'a> {
    target: Target<'a>,
    start: usize,
    end: usize,
    assigned: Vec<&'a Elem>,
}

fn bind_segment(cat: &Catalog, text: &str, seg: &[Elem], b: &mut Builder) {
    if seg.iter().any(|e| matches!(e.kind, Kind::Payment)) {
        return;
    }
    let correction = seg.iter().any(|e| matches!(e.kind, Kind::Correction));
    let mut slots: Vec<Slot<'_>> = Vec::new();
    let mut slot_pos: Vec<usize> = Vec::new();
    for (i, e) in seg.iter().enumerate() {
        match &e.kind {
            // "Rara chauchau", "Wai Wai noodles": an unknown brand before a word several
            // products share is an unstocked product, never one of its siblings.
            Kind::Product(h)
                if h.cands.len() > 1
                    && i > 0
                    && matches!(seg[i - 1].kind, Kind::Content)
                    && matches!(slots.last().map(|s| &s.target), Some(Target::Unknown)) =>
            {
                if let Some(s) = slots.last_mut() {
                    s.end = e.end;
                }
            }
            // "Everest chicken masala": brand, unknown word, category word — an unstocked
            // variant, not the brand's other products.
            Kind::Product(h)
                if h.cands.len() > 1
                    && brand_before(seg, i).is_some_and(|j| slot_pos.last() == Some(&j)) =>
            {
                if let Some(s) = slots.last_mut() {
                    s.target = Target::Unknown;
                    s.end = e.end;
                }
            }
            Kind::Product(h) => {
                slots.push(Slot {
                    target: Target::Product(h),
                    start: e.start,
                    end: e.end,
                    assigned: Vec::new(),
                });
                slot_pos.push(i);
            }
            // A word right after a product name describes it ("surf exel", "basmati premium").
            Kind::Content if i > 0 && matches!(seg[i - 1].kind, Kind::Product(_)) => {}
            Kind::Content
                if i > 1
                    && matches!(seg[i - 1].kind, Kind::Content)
                    && matches!(seg[i - 2].kind, Kind::Product(_)) => {}
            // "10 packets Gaida matches": after a quantity, a word before a product names it.
            Kind::Content
                if i > 0
                    && is_quantifier(&seg[i - 1].kind)
                    && matches!(seg.get(i + 1).map(|e| &e.kind), Some(Kind::Product(h)) if h.cands.len() == 1) =>
                {}
            Kind::Content => {
                let extend = i > 0
                    && matches!(seg[i - 1].kind, Kind::Content)
                    && matches!(slots.last().map(|s| &s.target), Some(Target::Unknown));
                match slots.last_mut() {
                    Some(s) if extend => s.end = e.end,
                    _ => {
                        slots.push(Slot {
                            target: Target::Unknown,
                            start: e.start,
                            end: e.end,
                            assigned: Vec::new(),
                        });
                        slot_pos.push(i);
                    }
                }
            }
            _ => {}
        }
    }
    if !slots.iter().any(|s| matches!(s.target, Target::Product(_)))
        && correction
        && b.correct_last(seg)
    {
        return;
    }
    if slots.is_empty() {
        // "anda 1 tray, 6 wota": a bare quantity continues the line's last product.
        if !correction {
            b.extend_last(cat, seg);
        }
        return;
    }
    assign(seg, &slot_pos, &mut slots);
    for slot in &slots {
        match slot.target {
            Target::Product(hit) => emit_product(cat, text, hit, slot, correction, b),
            Target::Unknown => {
                if slot.assigned.iter().any(|e| is_quantifier(&e.kind)) {
                    b.flag(FlagKind::UnknownItem, &text[slot.start..slot.end]);
                }
            }
        }
    }
}

/// The ambiguous mention before the unknown words that precede element `i` ("Everest pav
/// bhaji masala": the index of "Everest").
fn brand_before(seg: &[Elem], i: usize) -> Option<usize> {
    let j = seg[..i]
        .iter()
        .rposition(|e| !matches!(e.kind, Kind::Content))?;
    let brand = matches!(&seg[j].kind, Kind::Product(p) if p.cands.len() > 1);
    (brand && j + 1 < i).then_some(j)
}

/// Gives every quantity-like element to a slot: quantities before the first name bind forward
/// ("5 kg chini"), otherwise each binds to the name before it ("chini 5 kg").
fn assign<'a>(seg: &'a [Elem], slot_pos: &[usize], slots: &mut [Slot<'a>]) {
    let first_q = seg.iter().position(|e| is_quantifier(&e.kind));
    let qty_first = match (first_q, slot_pos.first()) {
        (Some(q), Some(&p)) => q < p,
        _ => false,
    };
    for (i, e) in seg.iter().enumerate() {
        if !(is_quantifier(&e.kind) || matches!(e.kind, Kind::Correction)) {
            continue;
        }
        let idx = if qty_first {
            slot_pos
                .iter()
                .position(|&p| p > i)
                .unwrap_or(slot_pos.len().saturating_sub(1))
        } else {
            slot_pos.iter().rposition(|&p| p < i).unwrap_or(0)
        };
        if let Some(s) = slots.get_mut(idx) {
            s.assigned.push(e);
        }
    }
}

/// A quantity after corrections: value, unit as written, negative sign, confidence.
struct Q {
    value: f64,
    unit: Option<Unit>,
    container: bool,
    negative: bool,
    conf: f32,
    end: usize,
}

fn final_quantities(assigned: &[&Elem]) -> Vec<Q> {
    let mut out: Vec<Q> = Vec::new();
    let mut replace_next = false;
    for e in assigned {
        match e.kind {
            Kind::Correction => replace_next = true,
            Kind::Qty {
                value,
                unit,
                negative,
                conf,
                container,
            } => {
                let q = Q {
                    value,
                    unit,
                    container,
                    negative,
                    conf,
                    end: e.end,
                };
                if replace_next && let Some(prev) = out.pop() {
                    out.push(Q {
                        unit: q.unit.or(prev.unit),
                        ..q
                    });
                } else if let Some(same) = out.iter_mut().find(|p| p.unit == q.unit) {
                    // The same unit twice without a correction word: the later one stands.
                    *same = q;
                } else {
                    out.push(q);
                }
                replace_next = false;
            }
            _ => {}
        }
    }
    out
}

fn emit_product(
    cat: &Catalog,
    text: &str,
    hit: &ProductHit,
    slot: &Slot<'_>,
    replace: bool,
    b: &mut Builder,
) {
    let end = slot
        .assigned
        .iter()
        .map(|e| e.end)
        .fold(slot.end, usize::max);
    let start = slot
        .assigned
        .iter()
        .map(|e| e.start)
        .fold(slot.start, usize::min);
    let phrase = &text[start..end];
    let written: Vec<Unit> = slot
        .assigned
        .iter()
        .filter_map(|e| match e.kind {
            Kind::Qty { unit: Some(u), .. } | Kind::UnitOnly(u) => Some(u),
            _ => None,
        })
        .collect();
    let by_unit = pick_by_unit(cat, &hit.cands, &written);
    let cands = by_unit
        .as_ref()
        .map_or(&hit.cands[..], std::slice::from_ref);
    let [idx] = cands[..] else {
        // "Good day dai", "chiya khana aaunus": a word several products share is an order
        // item only with a quantity.
        if !hit.heading && slot.assigned.iter().any(|e| is_quantifier(&e.kind)) {
            b.flag(FlagKind::AmbiguousItem, &text[slot.start..slot.end]);
        }
        return;
    };
    b.last_brand.clone_from(&hit.brand);
    let product = cat.product(idx);
    let sku = &product.sku;
    let base = product.unit;
    let item = |qty: Option<f64>, unit: Option<Unit>, conf: f32| ParsedItem {
        sku: sku.clone(),
        qty,
        unit: Some(unit.unwrap_or(base)),
        amount_npr: None,
        confidence: hit.conf * conf,
        span: (start, end),
    };
    let qtys = final_quantities(&slot.assigned);
    if qtys.is_empty() {
        let kinds = || slot.assigned.iter().map(|e| &e.kind);
        if let Some(amount) = kinds().find_map(|k| match k {
            Kind::Amount(a) => Some(*a),
            _ => None,
        }) {
            b.push(
                ParsedItem {
                    qty: None,
                    unit: None,
                    amount_npr: Some(amount),
                    ..item(None, None, 0.9)
                },
                replace,
            );
            return;
        }
        let unit = kinds().find_map(|k| match k {
            Kind::Range(u) => *u,
            Kind::UnitOnly(u) => Some(*u),
            _ => None,
        });
        if hit.sized && !kinds().any(|k| matches!(k, Kind::Range(_) | Kind::Vague)) {
            b.push(item(Some(1.0), None, 0.9), replace);
            return;
        }
        b.flag(FlagKind::AmbiguousQuantity, phrase);
        b.push(
            item(None, unit.map(|u| written_unit(u, false, base)), 0.5),
            false,
        );
        return;
    }
    for q in qtys {
        let unit = q.unit.map(|u| written_unit(u, q.container, base));
        let flag = if q.negative || q.value <= 0.0 {
            Some(FlagKind::InvalidQuantity)
        } else if is_absurd(q.value, unit.unwrap_or(base)) {
            Some(FlagKind::AbsurdQuantity)
        } else {
            None
        };
        match flag {
            Some(kind) => {
                b.flag(kind, &text[start..q.end.max(slot.end)]);
                b.push(item(None, unit, 0.5), false);
            }
            None => b.push(item(Some(q.value), unit, q.conf), replace),
        }
    }
}

/// "clinic plus 2 poka" vs "clinic plus 2 bottle": of several candidates, the one whose base
/// unit is the pack unit written with the quantity.
fn pick_by_unit(cat: &Catalog, cands: &[u32], units: &[Unit]) -> Option<u32> {
    if cands.len() < 2 {
        return None;
    }
    let mut pick: Option<u32> = None;
    for &u in units {
        if !matches!(u, Unit::Packet | Unit::Bottle) {
            continue;
        }
        let mut same = cands.iter().filter(|&&c| cat.product(c).unit == u);
        match (same.next(), same.next()) {
            (Some(&c), None) if pick.is_none_or(|p| p == c) => pick = Some(c),
            _ => return None,
        }
    }
    pick
}

/// The unit of a line: count words mean the product's base unit, and so do container words
/// ("jar", "bag", "bottle") on a product counted in packets, pieces or bottles.
fn written_unit(u: Unit, container: bool, base: Unit) -> Unit {
    let counted = matches!(base, Unit::Packet | Unit::Piece | Unit::Bottle);
    if u == Unit::Piece || (container && counted) {
        base
    } else {
        u
    }
}

/// True when `qty unit` is beyond any plausible shop order.
pub fn is_absurd(qty: f64, unit: Unit) -> bool {
    match unit {
        Unit::Carton | Unit::Crate | Unit::Sack => qty > ABSURD_OUTER_PACKS,
        Unit::G | Unit::Ml => qty / 1000.0 > ABSURD_BASE_UNITS,
        Unit::Dozen => qty * 12.0 > ABSURD_BASE_UNITS,
        _ => qty > ABSURD_BASE_UNITS,
    }
}

#[derive(Default)]
struct Builder {
    items: Vec<ParsedItem>,
    flags: Vec<Flag>,
    /// Index of the first item produced by the current line.
    line_first_item: usize,
    /// Brand candidates of the mention behind the last line ("sunsilk pouch 10, bottle 6").
    last_brand: Vec<u32>,
}

impl Builder {
    fn flag(&mut self, kind: FlagKind, text: &str) {
        self.flags.push(Flag {
            kind,
            text: text.trim().to_string(),
        });
    }

    /// Adds a line: repeats of (sku, unit) are summed, or replaced after a correction word.
    fn push(&mut self, item: ParsedItem, replace: bool) {
        let same = |i: &&mut ParsedItem| {
            i.sku == item.sku
                && i.unit == item.unit
                && i.qty.is_some() == item.qty.is_some()
                && i.amount_npr.is_some() == item.amount_npr.is_some()
        };
        if item.qty.is_some() || item.amount_npr.is_some() {
            if let Some(existing) = self.items.iter_mut().find(same) {
                let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(x), Some(y)) if !replace => Some(x + y),
                    (_, y) => y,
                };
                existing.qty = add(existing.qty, item.qty);
                existing.amount_npr = add(existing.amount_npr, item.amount_npr);
                existing.span = item.span;
                return;
            }
            if replace && let Some(pos) = self.items.iter().rposition(|i| i.sku == item.sku) {
                self.items[pos] = item;
                return;
            }
        }
        self.items.push(item);
    }

    /// A quantity-only segment adds another line for the current line's last product.
    fn extend_last(&mut self, cat: &Catalog, seg: &[Elem]) {
        if self.items.len() <= self.line_first_item {
            return;
        }
        let Some(last) = self.items.last().cloned() else {
            return;
        };
        if last.qty.is_none() {
            return;
        }
        let qs = final_quantities(&seg.iter().collect::<Vec<_>>());
        let [q] = qs.as_slice() else {
            return;
        };
        if q.negative || q.value <= 0.0 || q.unit.is_none() {
            return;
        }
        // "sunsilk pouch 10, bottle 6": a pack unit the product is not sold in names the
        // brand's sibling that is.
        let sibling = q
            .unit
            .filter(|_| q.container)
            .and_then(|u| {
                let own = cat.by_sku(&last.sku).map(|p| p.unit);
                (own != Some(u)).then(|| pick_by_unit(cat, &self.last_brand, &[u]))
            })
            .flatten()
            .map(|c| cat.product(c));
        let sku = sibling.map_or(last.sku.clone(), |p| p.sku.clone());
        let base = cat.by_sku(&sku).map_or(Unit::Piece, |p| p.unit);
        let unit = q.unit.map(|u| written_unit(u, q.container, base));
        if is_absurd(q.value, unit.unwrap_or(Unit::Piece)) {
            return;
        }
        self.push(
            ParsedItem {
                sku,
                qty: Some(q.value),
                unit,
                span: (last.span.0, q.end),
                ..last
            },
            false,
        );
    }

    /// "10, sorry 20": a correction without a product replaces the last line's quantity.
    fn correct_last(&mut self, seg: &[Elem]) -> bool {
        let Some(last) = self.items.last_mut() else {
            return false;
        };
        let q = final_quantities(&seg.iter().collect::<Vec<_>>());
        let Some(q) = q.last() else {
            return false;
        };
        if q.negative || q.value <= 0.0 {
            return false;
        }
        last.qty = Some(q.value);
        last.amount_npr = None;
        if let Some(u) = q.unit
            && u != Unit::Piece
        {
            last.unit = Some(u);
        }
        true
    }
}
