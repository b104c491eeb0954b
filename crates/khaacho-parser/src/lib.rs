//! Khaacho order-text parser: a chat message (English, romanized Nepali/Hindi, Devanagari or a
//! mix) plus the product catalogue → order lines `{sku, qty, unit}` or `{sku, amount_npr}` and
//! flags for what a person must check. Pure and allocation-light; the catalogue index is built
//! once by [`Catalog::new`] and shared.
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

mod catalog;
mod context;
mod elems;
mod jsonl;
mod lexicon;
pub mod normalize;
mod parse;
mod stopwords;
mod tokenize;
mod unit;

pub use catalog::{Catalog, CatalogError, CatalogProduct, FUZZY_THRESHOLD};
pub use jsonl::run_jsonl;
pub use normalize::normalize;
pub use parse::{
    ABSURD_BASE_UNITS, ABSURD_OUTER_PACKS, Flag, FlagKind, ParseOutcome, ParsedItem, is_absurd,
    parse,
};
pub use unit::Unit;
