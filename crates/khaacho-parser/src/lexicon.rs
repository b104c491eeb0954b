//! Fixed vocabulary: number words, quantity modifiers and the words that steer the parser
//! (corrections, prices, questions, payments, chit-chat) in English, romanized Nepali/Hindi and
//! Devanagari. Keys are folded with [`fold_word`] so spelling variants need no extra entries.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::normalize::fold_word;

/// What a vocabulary word means to the parser.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Lex {
    /// A number word ("dui", "पाँच", "twelve").
    Number(f64),
    /// A number word that is also an ordinary word ("chha" = six / "is", "do", "tin"); counts
    /// only when a unit or a product follows.
    WeakNumber(f64),
    /// "sawa" (+¼), "saadhe" (+½), "paune" (−¼): modifies a following number, or stands alone
    /// with `alone` ("sawa kilo" = 1.25 kg).
    Modifier { add: f64, alone: Option<f64> },
    /// Half, dedh, adhai: a complete quantity on its own.
    Fraction(f64),
    /// "say"/"hajar": multiplies the preceding number.
    Multiplier(f64),
    /// "a"/"an": one, but only right before a unit ("a dozen").
    Article,
    /// Vague amount ("some", "thorai", "kehi").
    Vague,
    /// Introduces a replacement ("no", "sorry", "hoina").
    Correction,
    /// Currency before a number ("rs", "npr", "रु").
    CurrencyBefore,
    /// Currency after a number ("rupees", "rupaiya").
    CurrencyAfter,
    /// Unit-price markers ("rate", "per", "dar"): the number is a price, not an amount.
    Rate,
    /// "worth", "ko" after an amount of money.
    Worth,
    /// Range joiners between two numbers ("to", "dekhi", "or").
    RangeJoin,
    /// After a number it is a time or date, never a quantity ("baje", "gate", "din").
    TimeWord,
    /// Price questions ("kati", "कति", "price").
    Question,
    /// Payment notices ("paisa", "payment", "esewa").
    Payment,
    /// Cancellations, complaints, returns and status questions ("cancel", "firta", "kahile
    /// aaucha"): the whole line orders nothing.
    Drop,
    /// The multiplication sign written as a letter ("x").
    Times,
    /// Greetings, politeness and order chit-chat: ignored, never an unknown item.
    Stop,
}

const NUMBERS: &[(f64, &[&str])] = &[
    (
        1.0,
        &["one", "ek", "एक", "ekta", "euta", "एउटा", "यौटा", "eutā"],
    ),
    (2.0, &["two", "dui", "दुई", "duita", "दुइ", "दुईवटा"]),
    (3.0, &["three", "teen", "तीन", "तिन", "tinta"]),
    (4.0, &["four", "चार", "charta"]),
    (
        5.0,
        &["five", "panch", "paanch", "pach", "पाँच", "पाच", "पांच"],
    ),
    (6.0, &["six", "chhe", "छः"]),
    (7.0, &["seven", "saat", "sat", "सात"]),
    (8.0, &["eight", "aath", "ath", "आठ"]),
    (9.0, &["nine", "नौ"]),
    (10.0, &["ten", "das", "dus", "दस", "दश"]),
    (11.0, &["eleven", "egara", "gyarah", "एघार"]),
    (12.0, &["twelve", "barah", "baarah", "बाह्र"]),
    (13.0, &["thirteen", "tera", "terah", "तेह्र"]),
    (14.0, &["fourteen", "chaudha", "चौध"]),
    (15.0, &["fifteen", "pandhra", "pandra", "पन्ध्र"]),
    (16.0, &["sixteen", "sora", "sorah", "सोह्र"]),
    (17.0, &["seventeen", "satra", "सत्र"]),
    (18.0, &["eighteen", "athara", "अठार"]),
    (19.0, &["nineteen", "unnais", "उन्नाइस"]),
    (20.0, &["twenty", "bis", "bees", "बीस"]),
    (25.0, &["twentyfive", "pachis", "pachchis", "पच्चीस"]),
    (30.0, &["thirty", "tis", "तीस"]),
    (40.0, &["forty", "chalis", "चालीस"]),
    (50.0, &["fifty", "pachas", "पचास"]),
    (100.0, &["hundred"]),
];

/// Number words that are also common ordinary words in chat.
const WEAK_NUMBERS: &[(f64, &[&str])] = &[
    (2.0, &["do"]),
    (3.0, &["tin"]),
    (4.0, &["char", "chaar"]),
    (6.0, &["chha", "cha", "chhah", "छ"]),
    (9.0, &["nau"]),
    // "bara"/"बार" is also "bar" (soap bar, "भिम बार").
    (12.0, &["bara", "बार"]),
];

const FRACTIONS: &[(f64, &[&str])] = &[
    (0.5, &["half", "aadha", "adha", "aadhaa", "आधा", "adhha"]),
    (1.5, &["dedh", "derh", "deda", "डेढ", "डेढ़"]),
    (2.5, &["adhai", "dhai", "arhai", "ढाई", "अढाई"]),
];

const WORDS: &[(Lex, &[&str])] = &[
    (
        Lex::Modifier {
            add: 0.25,
            alone: Some(1.25),
        },
        &["sawa", "sava", "सवा"],
    ),
    (
        Lex::Modifier {
            add: 0.5,
            alone: None,
        },
        &["saadhe", "sade", "sadhe", "साढे", "साढ़े"],
    ),
    (
        Lex::Modifier {
            add: -0.25,
            alone: Some(0.75),
        },
        &["paune", "pone", "पौने"],
    ),
    (Lex::Multiplier(100.0), &["say", "saya", "sau", "सय"]),
    (
        Lex::Multiplier(1000.0),
        &["hajar", "hazar", "thousand", "हजार"],
    ),
    (Lex::Article, &["a", "an"]),
    (
        Lex::Vague,
        &[
            "some",
            "few",
            "little",
            "thorai",
            "thori",
            "thoda",
            "thodi",
            "kehi",
            "alikati",
            "alik",
            "kuch",
            "enough",
            "more",
            "जति",
            "केही",
            "थोरै",
            "अलिकति",
            "several",
        ],
    ),
    (
        Lex::Correction,
        &[
            "no",
            "sorry",
            "banaunu",
            "banaidinu",
            "banaidinus",
            "banau",
            "बनाउनु",
            "बनाइदिनु",
            "make",
            "hoina",
            "haina",
            "hoena",
            "not",
            "nahi",
            "nai",
            "actually",
            "instead",
            "correction",
            "matlab",
            "mean",
            "galti",
            "होइन",
            "हैन",
            "माफ",
            "सरी",
            "sry",
        ],
    ),
    (Lex::CurrencyBefore, &["rs", "npr", "रु", "रू", "nrs", "inr"]),
    (
        Lex::CurrencyAfter,
        &[
            "rupees",
            "rupee",
            "rupaiya",
            "rupiya",
            "rupaiyan",
            "रुपैयाँ",
            "रुपैया",
            "रुपियाँ",
        ],
    ),
    (Lex::Rate, &["rate", "per", "dar", "each", "दर", "mrp", "@"]),
    (Lex::Worth, &["worth", "ko", "ka", "को"]),
    (
        Lex::RangeJoin,
        &["to", "dekhi", "or", "va", "ya", "वा", "देखि", "ki"],
    ),
    (
        Lex::TimeWord,
        &[
            "baje",
            "bajey",
            "बजे",
            "pm",
            "am",
            "oclock",
            "gate",
            "गते",
            "tarikh",
            "date",
            "din",
            "दिन",
            "day",
            "days",
            "ghanta",
            "ghante",
            "hour",
            "hours",
            "minute",
            "minutes",
            "min",
            "mins",
            "mahina",
            "month",
            "months",
            "week",
            "weeks",
            "hapta",
            "saal",
            "year",
            "बजेसम्म",
            // people and occasions are counted too, never ordered
            "jana",
            "जना",
            "people",
            "persons",
            "person",
            "guests",
            "manchhe",
            "manche",
            "मान्छे",
            "times",
            "patak",
            "choti",
            "पटक",
        ],
    ),
    (
        Lex::Question,
        &[
            "kati",
            "कति",
            "kitna",
            "kitne",
            "price",
            "how",
            "daam",
            "mol",
            "मूल्य",
            "भाउ",
            "bhau",
            "available",
            "cha?",
            "chha?",
            "stock",
        ],
    ),
    (
        Lex::Payment,
        &[
            "paisa",
            "पैसा",
            "payment",
            "paid",
            "esewa",
            "khalti",
            "fonepay",
            "transfer",
            "transferred",
            "bhuktani",
            "भुक्तानी",
            "deposit",
            "deposited",
            "bank",
            "cheque",
            "due",
            "baki",
            "बाँकी",
            "hisab",
            "हिसाब",
            "bill",
            "cash",
            "nagad",
            "नगद",
        ],
    ),
    (
        Lex::Drop,
        &[
            "cancel",
            "cancelled",
            "canceled",
            "cancell",
            "radda",
            "रद्द",
            "complaint",
            "complain",
            "return",
            "returned",
            "firta",
            "फिर्ता",
            "problem",
            "samasya",
            "समस्या",
            "damaged",
            "damage",
            "expired",
            "expiry",
            "bigreko",
            "बिग्रेको",
            "phuteko",
            "फुटेको",
            "broken",
            "missing",
            "kahile",
            "kaile",
            "कहिले",
            "pugyo",
            "aipugyo",
            "aaipugyo",
            "आइपुग्यो",
            "arrived",
            "delivered",
            "milyo",
            "मिल्यो",
            "pugena",
            "पुग्यो",
            "status",
            "received",
            "aayena",
            "आएन",
            "paunubhayo",
        ],
    ),
    (Lex::Times, &["x"]),
    (Lex::Stop, crate::stopwords::STOP_WORDS),
];

static LEXICON: LazyLock<HashMap<String, Lex>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    // Later inserts win; stop words go first so specific meanings override them.
    for (lex, words) in WORDS.iter().rev() {
        for w in *words {
            map.insert(fold_word(w), *lex);
        }
    }
    for (v, words) in WEAK_NUMBERS {
        for w in *words {
            map.insert(fold_word(w), Lex::WeakNumber(*v));
        }
    }
    for (v, words) in NUMBERS {
        for w in *words {
            map.insert(fold_word(w), Lex::Number(*v));
        }
    }
    for (v, words) in FRACTIONS {
        for w in *words {
            map.insert(fold_word(w), Lex::Fraction(*v));
        }
    }
    map
});

/// Looks up a folded word.
pub(crate) fn lex(folded: &str) -> Option<Lex> {
    LEXICON.get(folded).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_words_in_three_scripts() {
        assert_eq!(lex(&fold_word("paanch")), Some(Lex::Number(5.0)));
        assert_eq!(lex(&fold_word("पाँच")), Some(Lex::Number(5.0)));
        assert_eq!(lex(&fold_word("twelve")), Some(Lex::Number(12.0)));
        assert_eq!(lex(&fold_word("बीस")), Some(Lex::Number(20.0)));
        assert_eq!(lex(&fold_word("dedh")), Some(Lex::Fraction(1.5)));
        assert_eq!(lex(&fold_word("do")), Some(Lex::WeakNumber(2.0)));
        assert_eq!(lex(&fold_word("no")), Some(Lex::Correction));
    }
}
