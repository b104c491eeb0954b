//! Canonical order units and their written synonyms.

use serde::{Deserialize, Serialize};

use crate::normalize::fold_word;

/// A canonical unit of quantity, as used on order lines.
///
/// Serialised in lowercase (`kg g litre ml packet piece bottle carton crate sack dozen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Kilogram.
    Kg,
    /// Gram.
    G,
    /// Litre.
    Litre,
    /// Millilitre.
    Ml,
    /// Packet, pouch or sachet ("poko").
    Packet,
    /// Single piece; count words ("wota", "pcs", "thaan") resolve to the product's own unit.
    Piece,
    /// Bottle.
    Bottle,
    /// Carton, case, box or "peti" (an outer pack).
    Carton,
    /// Crate or egg tray (an outer pack).
    Crate,
    /// Sack ("bora", "bori").
    Sack,
    /// Twelve pieces.
    Dozen,
}

/// Written forms of each unit, before transliteration folding. Matching folds both sides,
/// so "kilo"/"kiloo" or "peti"/"petti" need only one entry.
const SYNONYMS: &[(Unit, &[&str])] = &[
    (
        Unit::Kg,
        &[
            "kg",
            "kgs",
            "kilo",
            "kilos",
            "kilogram",
            "kilograms",
            "kilogramme",
            "kelo",
            "kg.",
            "केजी",
            "किलो",
            "के.जी",
            "केजि",
            "किलोग्राम",
        ],
    ),
    (
        Unit::G,
        &[
            "g",
            "gm",
            "gms",
            "gr",
            "gram",
            "grams",
            "gramme",
            "grm",
            "ग्राम",
            "ग्रा",
        ],
    ),
    (
        Unit::Litre,
        &[
            "l",
            "lt",
            "ltr",
            "ltrs",
            "lit",
            "litre",
            "litres",
            "liter",
            "liters",
            "लिटर",
            "लि",
            "लिटर्",
        ],
    ),
    (
        Unit::Ml,
        &["ml", "mls", "millilitre", "milliliter", "एमएल", "मिलि"],
    ),
    (
        Unit::Packet,
        &[
            "pkt",
            "pkts",
            "packet",
            "packets",
            "pack",
            "packs",
            "pakt",
            "poko",
            "pokos",
            "pouch",
            "pouches",
            "sachet",
            "sachets",
            "pkg",
            "pockets",
            "pocket",
            "प्याकेट",
            "पोको",
            "प्याक",
            "पाउच",
        ],
    ),
    (
        Unit::Piece,
        &[
            "pcs",
            "pc",
            "piece",
            "pieces",
            "wota",
            "ota",
            "thaan",
            "than",
            "nos",
            "vota",
            "gota",
            "goti",
            "वटा",
            "ओटा",
            "गोटा",
            "थान",
            "पिस",
        ],
    ),
    (
        Unit::Bottle,
        &["bottle", "bottles", "btl", "btls", "botal", "बोतल"],
    ),
    (
        Unit::Carton,
        &[
            "ctn",
            "ctns",
            "carton",
            "cartons",
            "cartoon",
            "cartoons",
            "case",
            "cases",
            "peti",
            "box",
            "boxes",
            "कार्टुन",
            "कार्टन",
            "पेटी",
            "बक्स",
        ],
    ),
    (
        Unit::Crate,
        &["crate", "crates", "tray", "trays", "kret", "क्रेट", "ट्रे"],
    ),
    (
        Unit::Sack,
        &[
            "bora",
            "bori",
            "sack",
            "sacks",
            "boras",
            "bag",
            "bags",
            "बोरा",
            "बोरी",
        ],
    ),
    (
        Unit::Dozen,
        &[
            "darjan",
            "dozen",
            "dozens",
            "dz",
            "doz",
            "dzn",
            "dzns",
            "दर्जन",
            "दरजन",
        ],
    ),
];

impl Unit {
    /// Every unit, in declaration order.
    pub const ALL: [Unit; 11] = [
        Unit::Kg,
        Unit::G,
        Unit::Litre,
        Unit::Ml,
        Unit::Packet,
        Unit::Piece,
        Unit::Bottle,
        Unit::Carton,
        Unit::Crate,
        Unit::Sack,
        Unit::Dozen,
    ];

    /// The canonical lowercase name (`"kg"`, `"litre"`, …), the same as its serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Kg => "kg",
            Unit::G => "g",
            Unit::Litre => "litre",
            Unit::Ml => "ml",
            Unit::Packet => "packet",
            Unit::Piece => "piece",
            Unit::Bottle => "bottle",
            Unit::Carton => "carton",
            Unit::Crate => "crate",
            Unit::Sack => "sack",
            Unit::Dozen => "dozen",
        }
    }

    /// Parses a unit name or synonym in English, romanized Nepali or Devanagari
    /// ("kilo", "ctn", "poko", "वटा", …). Case and transliteration variants are tolerated.
    pub fn parse(s: &str) -> Option<Unit> {
        let folded = fold_word(s.trim());
        unit_from_folded(&folded)
    }

    /// True for outer packs (carton, crate, sack) whose plausible order sizes are small.
    pub fn is_outer_pack(self) -> bool {
        matches!(self, Unit::Carton | Unit::Crate | Unit::Sack)
    }

    /// True for units that express a measured size (weight or volume) rather than a count.
    pub fn is_measure(self) -> bool {
        matches!(self, Unit::Kg | Unit::G | Unit::Litre | Unit::Ml)
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

static UNIT_MAP: std::sync::LazyLock<std::collections::HashMap<String, Unit>> =
    std::sync::LazyLock::new(|| {
        let mut map = std::collections::HashMap::new();
        for (unit, words) in SYNONYMS {
            for w in *words {
                map.insert(fold_word(w), *unit);
            }
        }
        map
    });

/// Folded unit synonyms of at least three letters, for one-typo matching.
static UNIT_WORDS: std::sync::LazyLock<Vec<(String, Unit)>> = std::sync::LazyLock::new(|| {
    UNIT_MAP
        .iter()
        .filter(|(w, _)| w.chars().count() >= 3 && w.is_ascii())
        .map(|(w, u)| (w.clone(), *u))
        .collect()
});

/// A unit one edit away from `folded` ("crtn" → carton), when exactly one unit is that close.
pub(crate) fn fuzzy_unit(folded: &str) -> Option<Unit> {
    let mut found: Option<Unit> = None;
    for (w, u) in UNIT_WORDS.iter() {
        if strsim::damerau_levenshtein(folded, w) <= 1 {
            match found {
                Some(f) if f != *u => return None,
                _ => found = Some(*u),
            }
        }
    }
    found
}

/// Container words: after a number they count units of the product itself ("4 jar Nescafe",
/// "Fortune atta 4 bag"), so on a product counted in packets, pieces or bottles they mean its
/// base unit. Words also in [`SYNONYMS`] keep that unit for products sold by weight or volume
/// ("2 bags maida" = 2 sacks); the others (`jar`, `tin`, `can`…) are count words everywhere.
const CONTAINERS: &[&str] = &[
    "strip",
    "strips",
    "jar",
    "jars",
    "tin",
    "tins",
    "can",
    "cans",
    "bundle",
    "bundles",
    "box",
    "boxes",
    "bag",
    "bags",
    "pouch",
    "pouches",
    "packet",
    "packets",
    "pkt",
    "pkts",
    "pack",
    "packs",
    "poko",
    "pokos",
    "bottle",
    "bottles",
    "btl",
    "btls",
    "botal",
    "sachet",
    "sachets",
    "dabba",
    "dibba",
    "dabbi",
    "thaili",
    "jhola",
    "muttha",
    "mutha",
    "बट्टा",
    "डब्बा",
    "डिब्बा",
    "थैली",
    "झोला",
    "मुठा",
    "बोतल",
    "प्याकेट",
    "पोको",
    "प्याक",
    "बक्स",
    "जार",
    "टिन",
    "क्यान",
    "बन्डल",
    "पाउच",
];

static CONTAINER_SET: std::sync::LazyLock<std::collections::HashSet<String>> =
    std::sync::LazyLock::new(|| CONTAINERS.iter().map(|w| fold_word(w)).collect());

/// True for a folded container word (see [`CONTAINERS`]).
pub(crate) fn is_container(folded: &str) -> bool {
    CONTAINER_SET.contains(folded)
}

/// A container word that is not in [`SYNONYMS`] ("jar", "tin", "can"): a count unit, but only
/// right after a number ("can" and "tin" are ordinary words elsewhere).
pub(crate) fn count_container(folded: &str) -> Option<Unit> {
    (is_container(folded) && unit_from_folded(folded).is_none()).then_some(Unit::Piece)
}

/// Looks up an already folded word (see [`crate::normalize::fold_word`]).
pub(crate) fn unit_from_folded(folded: &str) -> Option<Unit> {
    UNIT_MAP.get(folded).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synonyms_map_to_canonical_units() {
        let cases = [
            ("kilo", Unit::Kg),
            ("KGS", Unit::Kg),
            ("केजी", Unit::Kg),
            ("किलो", Unit::Kg),
            ("gm", Unit::G),
            ("ग्राम", Unit::G),
            ("ltr", Unit::Litre),
            ("liter", Unit::Litre),
            ("लिटर", Unit::Litre),
            ("ml", Unit::Ml),
            ("poko", Unit::Packet),
            ("प्याकेट", Unit::Packet),
            ("wota", Unit::Piece),
            ("वटा", Unit::Piece),
            ("गोटा", Unit::Piece),
            ("btl", Unit::Bottle),
            ("बोतल", Unit::Bottle),
            ("peti", Unit::Carton),
            ("पेटी", Unit::Carton),
            ("कार्टुन", Unit::Carton),
            ("tray", Unit::Crate),
            ("bora", Unit::Sack),
            ("बोरा", Unit::Sack),
            ("darjan", Unit::Dozen),
            ("दर्जन", Unit::Dozen),
        ];
        for (s, u) in cases {
            assert_eq!(Unit::parse(s), Some(u), "{s}");
        }
        assert_eq!(Unit::parse("banana"), None);
    }

    #[test]
    fn serde_names_are_lowercase() {
        for u in Unit::ALL {
            let json = serde_json::to_string(&u).unwrap();
            assert_eq!(json, format!("\"{}\"", u.as_str()));
            assert_eq!(Unit::parse(u.as_str()), Some(u));
        }
    }
}
