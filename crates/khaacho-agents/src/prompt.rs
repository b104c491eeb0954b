//! Prompt text and candidate pre-selection shared by the LLM adapters.
//!
//! Sending a 10,000-product catalogue with every message would cost seconds and dollars, so the
//! local catalogue picks the products the message could be about and only those go in the
//! prompt. The model may only answer with SKUs from that list; anything else becomes an
//! `unknown_item` flag during validation.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use khaacho_parser::{Catalog, normalize, parse};

/// At most this many candidate products go into one prompt.
pub(crate) const MAX_CANDIDATES: usize = 50;

/// Aliases shown per candidate: enough to show the model how the product is written.
const ALIASES_PER_CANDIDATE: usize = 4;

/// Words shorter than this are not used for candidate lookup ("5", "kg", "ra" match too much).
const MIN_WORD: usize = 3;

/// Prefix length for the loose lookup that catches inflections and typos ("chiniko").
const PREFIX: usize = 4;

/// The task, the units and the rules, for the system prompt of either provider.
pub(crate) const SYSTEM_PROMPT: &str = "You read wholesale orders that retailers in Nepal send \
by chat (English, romanized Nepali or Hindi, Devanagari, or a mix) and turn them into order lines.

Rules:
- Use only SKUs from the candidate list in the user message. If the retailer orders something \
that is not in the list, do not guess: add a flag {\"type\": \"unknown_item\", \"text\": <the phrase>}.
- qty is the quantity as written (\"dedh\" = 1.5, \"aadha\" = 0.5, \"ek dozen\" = 1 dozen). \
unit is one of: kg, g, litre, ml, packet, piece, bottle, carton, crate, sack, dozen \
(\"kilo\" = kg, \"ctn\"/\"peti\"/\"box\" = carton, \"poko\" = packet, \"wota\"/\"pcs\" = the product's own unit). \
Use null for unit when only a bare number is given.
- A money amount instead of a quantity (\"Rs 500 ko chini\") goes in amount_npr with qty and unit null. \
Prices per unit (\"@ 95\", \"rate 95\") are not quantities.
- A range or a vague amount (\"2-3 kg\", \"thorai\") gives qty null and a flag of type ambiguous_quantity; \
a phrase that fits two candidates equally gives a flag of type ambiguous_item.
- If the retailer corrects himself (\"10 no 20\", \"sorry 20\"), keep only the correction.
- Ignore greetings, thanks, payment notices and price questions.
- text is the phrase of the message the line or flag comes from, copied exactly.
Answer only through the required JSON structure.";

/// Word and prefix index of the catalogue's names and aliases, built once per catalogue.
#[derive(Debug, Default)]
pub(crate) struct CandidateIndex {
    words: HashMap<String, Vec<u32>>,
    prefixes: HashMap<String, Vec<u32>>,
    by_sku: HashMap<String, u32>,
}

impl CandidateIndex {
    fn build(catalog: &Catalog) -> CandidateIndex {
        let mut index = CandidateIndex::default();
        for (i, p) in catalog.products().iter().enumerate() {
            let i = i as u32;
            index.by_sku.entry(p.sku.clone()).or_insert(i);
            for phrase in std::iter::once(&p.name).chain(&p.aliases) {
                let folded = normalize(phrase);
                // The joined form lets "waiwai" in a message find the alias "wai wai".
                let joined: String = folded.split_whitespace().collect();
                for word in folded.split_whitespace().chain([joined.as_str()]) {
                    if word.chars().count() < MIN_WORD {
                        continue;
                    }
                    add(&mut index.words, word.to_owned(), i);
                    if let Some(prefix) = prefix(word) {
                        add(&mut index.prefixes, prefix, i);
                    }
                }
            }
        }
        index
    }
}

fn add(map: &mut HashMap<String, Vec<u32>>, key: String, product: u32) {
    let list = map.entry(key).or_default();
    if list.last() != Some(&product) {
        list.push(product);
    }
}

fn prefix(word: &str) -> Option<String> {
    (word.chars().count() >= PREFIX).then(|| word.chars().take(PREFIX).collect())
}

/// Caches the index of the last catalogue seen. The app swaps the whole `Arc<Catalog>` when the
/// catalogue changes, so pointer identity is a cheap and exact staleness check.
#[derive(Debug, Default)]
pub(crate) struct CandidateCache {
    last: Mutex<Option<(Arc<Catalog>, Arc<CandidateIndex>)>>,
}

impl CandidateCache {
    fn index(&self, catalog: &Arc<Catalog>) -> Arc<CandidateIndex> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cat, index)) = last.as_ref()
            && Arc::ptr_eq(cat, catalog)
        {
            return Arc::clone(index);
        }
        let index = Arc::new(CandidateIndex::build(catalog));
        *last = Some((Arc::clone(catalog), Arc::clone(&index)));
        index
    }

    /// Products the message may be about, best first: what the local parser found, then
    /// products sharing whole words with the message, then products sharing word prefixes.
    pub(crate) fn candidates(&self, catalog: &Arc<Catalog>, message: &str) -> Vec<u32> {
        let index = self.index(catalog);
        let mut chosen: Vec<u32> = Vec::new();
        let local = parse(catalog, message);
        for item in &local.items {
            if let Some(&i) = index.by_sku.get(&item.sku) {
                push_unique(&mut chosen, i);
            }
        }
        let folded = normalize(message);
        let words: Vec<&str> = folded
            .split_whitespace()
            .filter(|w| w.chars().count() >= MIN_WORD && !w.chars().all(|c| c.is_numeric()))
            .collect();
        let mut score: HashMap<u32, u32> = HashMap::new();
        for w in &words {
            for &p in index.words.get(*w).into_iter().flatten() {
                *score.entry(p).or_default() += 2;
            }
            if let Some(pre) = prefix(w) {
                for &p in index.prefixes.get(&pre).into_iter().flatten() {
                    *score.entry(p).or_default() += 1;
                }
            }
        }
        let mut ranked: Vec<(u32, u32)> = score.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (p, _) in ranked {
            push_unique(&mut chosen, p);
        }
        chosen.truncate(MAX_CANDIDATES);
        chosen
    }
}

fn push_unique(list: &mut Vec<u32>, v: u32) {
    if !list.contains(&v) {
        list.push(v);
    }
}

/// The user message: the retailer's text and the compact candidate list
/// (`SKU | name | unit | aliases`).
pub(crate) fn user_message(catalog: &Catalog, candidates: &[u32], message: &str) -> String {
    let mut out = String::with_capacity(message.len() + candidates.len() * 60 + 64);
    out.push_str("Candidate products (SKU | name | unit | also written as):\n");
    for &i in candidates {
        let Some(p) = catalog.products().get(i as usize) else {
            continue;
        };
        let aliases: Vec<&str> = p
            .aliases
            .iter()
            .take(ALIASES_PER_CANDIDATE)
            .map(String::as_str)
            .collect();
        let _ = writeln!(
            out,
            "{} | {} | {} | {}",
            p.sku,
            p.name,
            p.unit,
            aliases.join(", ")
        );
    }
    if candidates.is_empty() {
        out.push_str("(none: flag every item as unknown_item)\n");
    }
    out.push_str("\nOrder message:\n");
    out.push_str(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::catalog;

    #[test]
    fn candidates_come_from_parser_and_word_lookup() {
        let cat = Arc::new(catalog());
        let cache = CandidateCache::default();
        let skus = |msg: &str| -> Vec<String> {
            cache
                .candidates(&cat, msg)
                .into_iter()
                .map(|i| cat.products()[i as usize].sku.clone())
                .collect()
        };
        assert_eq!(skus("5 kg chini"), ["SUGAR"]);
        // "sunflower" alone matches by word even without a quantity the parser would bind.
        assert!(skus("sunflowerko tel ani waiwai chahiyo").contains(&"OIL-SUN".to_string()));
        assert!(skus("sunflowerko tel ani waiwai chahiyo").contains(&"WAIWAI".to_string()));
        assert!(skus("namaste").is_empty());
    }

    #[test]
    fn user_message_lists_candidates_and_text() {
        let cat = catalog();
        let msg = user_message(&cat, &[0], "5 kg chini");
        assert!(msg.contains("SUGAR | Sugar | kg | chini, cheeni"));
        assert!(msg.ends_with("5 kg chini"));
    }
}
