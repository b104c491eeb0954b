//! The product catalogue and its match index (alias map, size variants, trigram postings).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::tokenize::{TokKind, Token, tokenize};
use crate::unit::{Unit, unit_from_folded};

/// Minimum normalised edit similarity (0..1) for a typo-tolerant match.
pub const FUZZY_THRESHOLD: f64 = 0.75;

/// Queries shorter than this (in folded characters) are never fuzzy-matched: "dal" and "tel"
/// are one typo away from too many other words.
const FUZZY_MIN_CHARS: usize = 4;

/// Trigrams shared by more keys than this are skipped when gathering fuzzy candidates; they do
/// not discriminate and would make one lookup touch most of a large catalogue.
const MAX_POSTING_LEN: usize = 2_000;

/// How many of the best trigram candidates get a full edit-distance comparison.
const MAX_FUZZY_CANDIDATES: usize = 32;

/// Prefix of the key of a digit-only name written with a dash ("50-50"): such a name matches
/// only "50-50" in the text, never a bare "5050".
pub(crate) const DIGIT_KEY: &str = "#";

/// One product row of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogProduct {
    /// Stock-keeping unit, unique in the catalogue.
    pub sku: String,
    /// Display name; a size in it ("Frooti 200ml") marks the product as a size variant.
    pub name: String,
    /// Other names: English, romanized Nepali, Devanagari and common misspellings.
    pub aliases: Vec<String>,
    /// Base unit a bare number refers to.
    pub unit: Unit,
    /// Base units per outer pack (carton, sack, crate), when known.
    pub pack_size: Option<f64>,
    /// Indicative price per base unit in NPR.
    pub price_npr: Option<f64>,
    /// Category, e.g. "rice", "noodles".
    pub category: String,
}

/// A size printed in a product name, in grams or millilitres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Size {
    pub measure: Unit,
    pub amount: f64,
}

impl Size {
    /// Converts `qty unit` to a size when the unit is a weight or volume.
    pub(crate) fn from_qty(qty: f64, unit: Unit) -> Option<Size> {
        let (measure, amount) = match unit {
            Unit::Kg => (Unit::G, qty * 1000.0),
            Unit::G => (Unit::G, qty),
            Unit::Litre => (Unit::Ml, qty * 1000.0),
            Unit::Ml => (Unit::Ml, qty),
            _ => return None,
        };
        Some(Size { measure, amount })
    }

    fn same(self, other: Size) -> bool {
        self.measure == other.measure && (self.amount - other.amount).abs() < 1e-6
    }
}

/// Products reachable from one alias key.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyEntry {
    /// Products that carry this alias (or name) exactly.
    pub strong: Vec<u32>,
    /// Products whose alias matches once its size is removed ("frooti" for "Frooti 200ml").
    pub weak: Vec<u32>,
}

/// Error reading a catalogue CSV; names the row (1-based, header = row 1) and column.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogError {
    /// The CSV itself could not be read (bad quoting, wrong field count, I/O).
    Csv {
        /// Row where the reader stopped, when known.
        row: Option<u64>,
        /// The reader's message.
        message: String,
    },
    /// A required header column is absent.
    MissingColumn {
        /// The column name.
        column: &'static str,
    },
    /// A field holds an invalid value.
    InvalidField {
        /// 1-based row, the header being row 1.
        row: u64,
        /// The column name.
        column: &'static str,
        /// The offending value.
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogError::Csv {
                row: Some(r),
                message,
            } => write!(f, "row {r}: {message}"),
            CatalogError::Csv { row: None, message } => write!(f, "{message}"),
            CatalogError::MissingColumn { column } => write!(f, "missing column `{column}`"),
            CatalogError::InvalidField {
                row,
                column,
                value,
                reason,
            } => write!(f, "row {row}, column `{column}`: {reason} ({value:?})"),
        }
    }
}

impl std::error::Error for CatalogError {}

/// The catalogue with its precomputed match index. Build once, share across threads.
#[derive(Debug, Clone)]
pub struct Catalog {
    products: Vec<CatalogProduct>,
    sizes: Vec<Option<Size>>,
    group_of: Vec<u32>,
    groups: Vec<Vec<u32>>,
    keys: HashMap<String, KeyEntry>,
    key_names: Vec<String>,
    trigrams: HashMap<u64, Vec<u32>>,
    max_key_tokens: usize,
    by_sku: HashMap<String, u32>,
}

const COLUMNS: [&str; 7] = [
    "sku",
    "name",
    "aliases",
    "unit",
    "pack_size",
    "price_npr",
    "category",
];

impl Catalog {
    /// Builds the catalogue and its index: alias keys (folded, spaces removed), size variant
    /// groups and trigram postings for typo-tolerant lookup.
    pub fn new(products: Vec<CatalogProduct>) -> Catalog {
        let mut cat = Catalog {
            sizes: Vec::with_capacity(products.len()),
            group_of: Vec::with_capacity(products.len()),
            groups: Vec::new(),
            keys: HashMap::with_capacity(products.len() * 4),
            key_names: Vec::new(),
            trigrams: HashMap::new(),
            max_key_tokens: 1,
            by_sku: HashMap::with_capacity(products.len()),
            products: Vec::new(),
        };
        let mut group_ids: HashMap<String, u32> = HashMap::new();
        for (idx, p) in products.iter().enumerate() {
            let idx = idx as u32;
            let (name_key, size, base_key) = cat.analyse(&p.name);
            cat.sizes.push(size);
            cat.by_sku.entry(p.sku.clone()).or_insert(idx);
            let gid = match group_ids.get(&base_key) {
                Some(&g) => g,
                None => {
                    let g = cat.groups.len() as u32;
                    cat.groups.push(Vec::new());
                    group_ids.insert(base_key.clone(), g);
                    g
                }
            };
            cat.groups[gid as usize].push(idx);
            cat.group_of.push(gid);
            cat.add_key(name_key, idx, true);
            cat.add_key(base_key, idx, false);
            for alias in &p.aliases {
                let (k, _, base) = cat.analyse(alias);
                cat.add_key(k, idx, true);
                cat.add_key(base, idx, false);
            }
        }
        cat.products = products;
        cat.build_trigrams();
        cat
    }

    /// Reads a catalogue CSV with header `sku,name,aliases,unit,pack_size,price_npr,category`
    /// (aliases `|`-separated; pack_size and price_npr may be empty).
    pub fn from_csv<R: std::io::Read>(reader: R) -> Result<Catalog, CatalogError> {
        let mut rdr = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(reader);
        let headers = rdr.headers().map_err(csv_error)?.clone();
        let mut pos = [0usize; 7];
        for (slot, col) in pos.iter_mut().zip(COLUMNS) {
            *slot = headers
                .iter()
                .position(|h| h.eq_ignore_ascii_case(col))
                .ok_or(CatalogError::MissingColumn { column: col })?;
        }
        let mut products = Vec::new();
        for (n, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(csv_error)?;
            let row = rec.position().map_or(n as u64 + 2, |p| p.line());
            let field = |i: usize| rec.get(pos[i]).unwrap_or("");
            products.push(product_from_fields(row, &field)?);
        }
        Ok(Catalog::new(products))
    }

    /// All products, in input order.
    pub fn products(&self) -> &[CatalogProduct] {
        &self.products
    }

    /// Looks a product up by SKU.
    pub fn by_sku(&self, sku: &str) -> Option<&CatalogProduct> {
        self.by_sku.get(sku).map(|&i| &self.products[i as usize])
    }

    pub(crate) fn product(&self, idx: u32) -> &CatalogProduct {
        &self.products[idx as usize]
    }

    pub(crate) fn size_of(&self, idx: u32) -> Option<Size> {
        self.sizes[idx as usize]
    }

    pub(crate) fn max_key_tokens(&self) -> usize {
        self.max_key_tokens
    }

    pub(crate) fn lookup(&self, key: &str) -> Option<&KeyEntry> {
        self.keys.get(key)
    }

    /// True when all `cands` are size variants of one product ("Real Mixed 200ml" and "1L").
    pub(crate) fn one_group(&self, cands: &[u32]) -> bool {
        cands
            .iter()
            .all(|&c| self.group_of[c as usize] == self.group_of[cands[0] as usize])
    }

    /// Size variants of `idx` (including itself) whose size equals `size`.
    pub(crate) fn variant_with_size(&self, idx: u32, size: Size) -> Option<u32> {
        let group = &self.groups[self.group_of[idx as usize] as usize];
        group
            .iter()
            .copied()
            .find(|&p| self.sizes[p as usize].is_some_and(|s| s.same(size)))
    }

    /// Tokenizes a name and returns (full key, size, key without the size).
    fn analyse(&mut self, name: &str) -> (String, Option<Size>, String) {
        let toks = tokenize(name, 0);
        let mut size = None;
        let mut size_at = usize::MAX;
        for w in toks.windows(2) {
            if let (TokKind::Num(v), Some(u)) = (w[0].kind, unit_from_folded(&w[1].norm))
                && let Some(s) = Size::from_qty(v, u)
            {
                size = Some(s);
                size_at = w[0].start;
                break;
            }
        }
        let mut full = compact_key(&toks, |_| true);
        let nums = toks
            .iter()
            .filter(|t| matches!(t.kind, TokKind::Num(_)))
            .count();
        if nums >= 2 && full.chars().all(|c| c.is_ascii_digit()) {
            full.insert_str(0, DIGIT_KEY);
        }
        let mut skip_next = false;
        let base = compact_key(&toks, |t| {
            if t.start == size_at {
                skip_next = true;
                return false;
            }
            if skip_next {
                skip_next = false;
                return false;
            }
            true
        });
        let n = toks.iter().filter(|t| key_part(t).is_some()).count();
        self.max_key_tokens = self.max_key_tokens.max(n).min(8);
        (full, size, base)
    }

    fn add_key(&mut self, key: String, idx: u32, strong: bool) {
        if key.is_empty() || key.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return;
        }
        let e = self.keys.entry(key).or_default();
        let list = if strong { &mut e.strong } else { &mut e.weak };
        if !list.contains(&idx) {
            list.push(idx);
        }
    }

    fn build_trigrams(&mut self) {
        let mut names: Vec<&String> = self.keys.keys().collect();
        names.sort();
        self.key_names = names.into_iter().cloned().collect();
        for (id, name) in self.key_names.iter().enumerate() {
            let mut seen: Vec<u64> = Vec::new();
            for tri in trigrams(name) {
                if !seen.contains(&tri) {
                    seen.push(tri);
                    self.trigrams.entry(tri).or_default().push(id as u32);
                }
            }
        }
    }

    /// Typo-tolerant lookup of a compact folded query: the matching keys with their
    /// similarity, best first, all at or above [`FUZZY_THRESHOLD`].
    pub(crate) fn fuzzy(&self, query: &str) -> Vec<(&str, f64)> {
        let qlen = query.chars().count();
        if qlen < FUZZY_MIN_CHARS {
            return Vec::new();
        }
        let q_tris = trigrams(query);
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for tri in &q_tris {
            if let Some(post) = self.trigrams.get(tri)
                && post.len() <= MAX_POSTING_LEN
            {
                for &id in post {
                    *counts.entry(id).or_insert(0) += 1;
                }
            }
        }
        let need = (q_tris.len() as u32).div_ceil(3).max(1);
        let mut cands: Vec<(u32, u32)> = counts.into_iter().filter(|&(_, c)| c >= need).collect();
        cands.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        cands.truncate(MAX_FUZZY_CANDIDATES);
        let mut out: Vec<(&str, f64)> = Vec::new();
        for (id, _) in cands {
            let key = self.key_names[id as usize].as_str();
            let klen = key.chars().count();
            let dist = strsim::damerau_levenshtein(query, key);
            let allowed = match qlen.max(klen) {
                // "coki" is "coke", but "tira" is not "jira" and "gaida" is not "maida": in
                // short names the first letter must be right.
                0..=5 if query.chars().next() != key.chars().next() => 0,
                0..=5 => 1,
                6..=9 => 2,
                _ => 3,
            };
            let sim = 1.0 - dist as f64 / qlen.max(klen) as f64;
            if dist <= allowed && sim >= FUZZY_THRESHOLD {
                out.push((key, sim));
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }
}

/// The part a token contributes to a compact key, if any.
pub(crate) fn key_part(t: &Token) -> Option<&str> {
    match t.kind {
        TokKind::Word | TokKind::Num(_) => Some(&t.norm),
        TokKind::Sep if t.norm == "&" || t.norm == "and" || t.norm == "n" => Some("and"),
        TokKind::Sep if t.norm == "+" => Some("+"),
        _ => None,
    }
}

fn compact_key(toks: &[Token], mut keep: impl FnMut(&Token) -> bool) -> String {
    let mut s = String::new();
    for t in toks {
        if let Some(part) = key_part(t)
            && keep(t)
        {
            s.push_str(part);
        }
    }
    s
}

fn trigrams(s: &str) -> Vec<u64> {
    let mut chars: Vec<char> = Vec::with_capacity(s.len() + 2);
    chars.push('^');
    chars.extend(s.chars());
    chars.push('$');
    chars
        .windows(3)
        .map(|w| ((w[0] as u64) << 42) | ((w[1] as u64) << 21) | w[2] as u64)
        .collect()
}

fn csv_error(e: csv::Error) -> CatalogError {
    CatalogError::Csv {
        row: e.position().map(|p| p.line()),
        message: e.to_string(),
    }
}

fn product_from_fields<'r>(
    row: u64,
    field: &dyn Fn(usize) -> &'r str,
) -> Result<CatalogProduct, CatalogError> {
    let invalid =
        |column: &'static str, value: &str, reason: &'static str| CatalogError::InvalidField {
            row,
            column,
            value: value.to_string(),
            reason,
        };
    let sku = field(0);
    if sku.is_empty() {
        return Err(invalid("sku", sku, "empty sku"));
    }
    let name = field(1);
    if name.is_empty() {
        return Err(invalid("name", name, "empty name"));
    }
    let unit = Unit::parse(field(3)).ok_or_else(|| invalid("unit", field(3), "unknown unit"))?;
    let number = |i: usize, column: &'static str| -> Result<Option<f64>, CatalogError> {
        let v = field(i);
        if v.is_empty() {
            return Ok(None);
        }
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
            _ => Err(invalid(column, v, "not a non-negative number")),
        }
    };
    Ok(CatalogProduct {
        sku: sku.to_string(),
        name: name.to_string(),
        aliases: field(2)
            .split('|')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect(),
        unit,
        pack_size: number(4, "pack_size")?,
        price_npr: number(5, "price_npr")?,
        category: field(6).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "sku,name,aliases,unit,pack_size,price_npr,category\n\
        SUG,Sugar,chini|चिनी,kg,50,95,sugar\n\
        FR200,Frooti 200ml,frooti,bottle,24,25,drinks\n\
        FR600,Frooti 600ml,,bottle,12,60,drinks\n";

    #[test]
    fn reads_csv_and_indexes_aliases_and_sizes() {
        let cat = Catalog::from_csv(CSV.as_bytes()).unwrap();
        assert_eq!(cat.products().len(), 3);
        assert_eq!(cat.lookup("chini").unwrap().strong, vec![0]);
        assert_eq!(cat.lookup("चिनि").unwrap().strong, vec![0]);
        let e = cat.lookup("fruti").unwrap();
        assert_eq!(e.strong, vec![1]);
        assert_eq!(e.weak, vec![1, 2]);
        let s = Size::from_qty(0.6, Unit::Litre).unwrap();
        assert_eq!(cat.variant_with_size(1, s), Some(2));
    }

    #[test]
    fn csv_errors_name_row_and_column() {
        let bad = "sku,name,aliases,unit,pack_size,price_npr,category\nA,Apple,,kg,,,fruit\nB,Ban,,kgz,,,fruit\n";
        let err = Catalog::from_csv(bad.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "row 3, column `unit`: unknown unit (\"kgz\")"
        );
        let bad = "sku,name,aliases,unit,pack_size,price_npr,category\nA,Apple,,kg,abc,,fruit\n";
        let err = Catalog::from_csv(bad.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("pack_size"));
        let err = Catalog::from_csv("sku,name\n".as_bytes()).unwrap_err();
        assert_eq!(err, CatalogError::MissingColumn { column: "aliases" });
    }

    #[test]
    fn fuzzy_finds_typos() {
        let cat = Catalog::from_csv(CSV.as_bytes()).unwrap();
        let hits = cat.fuzzy("chinni");
        assert_eq!(hits.first().map(|h| h.0), Some("chini"));
        assert!(cat.fuzzy("xyzzy").is_empty());
    }
}
