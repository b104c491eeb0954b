//! What a message asks for, in English, romanized Nepali or Devanagari. Pure: the
//! conversation service decides what an intent means in the state the conversation is in
//! (a bare "2" answers a quantity question, or cancels a draft waiting for YES/NO).

/// What a message asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Hello, namaste: nothing to do but answer.
    Greeting,
    /// Thanks: nothing to do but answer.
    Thanks,
    /// What can I write?
    Help,
    /// YES, ho, हो, 1: confirm what is pending.
    Yes,
    /// NO, haina, होइन, 2: drop what is pending.
    No,
    /// SKIP: drop the open clarification question.
    Skip,
    /// Where are my orders (optionally one, by its reference)?
    Status(Option<String>),
    /// A vendor takes an offer.
    Accept(String),
    /// A vendor refuses an offer (a reason is required by the rules; `None` when missing).
    Reject(String, Option<String>),
    /// "CANCEL <ref> [why]": a retailer cancels an order before dispatch; a vendor gives back
    /// a part it accepted and cannot deliver (a reason is required of it).
    Cancel(String, Option<String>),
    /// A retailer confirms receipt of a delivered order.
    Received(String),
    /// A retailer reports a problem with a delivered order.
    Issue(String, Option<String>),
    /// Anything else: an order, or the answer to a question.
    Text,
}

const YES: &[&str] = &[
    "yes",
    "y",
    "yes.",
    "ok",
    "okay",
    "confirm",
    "ho",
    "hoo",
    "huncha",
    "hunchha",
    "hajur",
    "ha",
    "haan",
    "हो",
    "हजुर",
    "हुन्छ",
    "1",
    "१",
];
const NO: &[&str] = &[
    "no",
    "n",
    "cancel",
    "haina",
    "hoina",
    "hoena",
    "chaina",
    "nai",
    "होइन",
    "हैन",
    "होईन",
    "2",
    "२",
];
const GREETING: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "namaste",
    "namaskar",
    "namaskaar",
    "नमस्ते",
    "नमस्कार",
    "dai",
    "didi",
    "bhai",
    "sir",
    "hajur",
    "good",
    "morning",
    "evening",
    "subha",
    "prabhat",
    "शुभ",
    "प्रभात",
    "दाइ",
    "दिदी",
];
const THANKS: &[&str] = &[
    "thanks",
    "thank",
    "you",
    "thx",
    "dhanyabad",
    "dhanyavad",
    "dhanyabaad",
    "धन्यवाद",
    "dherai",
    "धेरै",
];
const HELP: &[&str] = &["help", "madat", "sahayog", "मद्दत", "सहयोग", "menu", "?"];
const SKIP: &[&str] = &["skip", "chhodnu", "chodnu", "छोड्नु", "छोड"];
const STATUS: &[&str] = &["status", "sthiti", "स्थिति", "track"];
/// "mero order kaha pugyo?", "अर्डर कहाँ पुग्यो": where is my order.
const WHERE: &[&str] = &["kaha", "kahaa", "kata", "कहाँ", "कता", "where"];
const ORDER: &[&str] = &["order", "ardar", "अर्डर", "saman", "samaan", "सामान"];
const ACCEPT: &[&str] = &["accept", "swikar", "sweekar", "स्वीकार"];
const REJECT: &[&str] = &["reject", "aswikar", "asweekar", "अस्वीकार"];
const RECEIVED: &[&str] = &[
    "received",
    "receive",
    "paye",
    "payo",
    "milyo",
    "प्राप्त",
    "मिल्यो",
    "पाएँ",
];
const ISSUE: &[&str] = &["issue", "problem", "samasya", "समस्या"];
const CANCEL: &[&str] = &["cancel", "radda", "rad", "रद्द"];

/// Whether `word` reads as an order or part reference (4 to 6 hexadecimal digits, the
/// messages show the last six): "cancel it" is no command.
fn is_reference(word: &str) -> bool {
    (4..=6).contains(&word.len()) && word.chars().all(|c| c.is_ascii_hexdigit())
}

/// The words of a message, lower-cased, without surrounding punctuation.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| {
                matches!(c, ',' | '.' | '!' | '?' | '।' | ';' | ':' | '"' | '\'')
            })
            .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

fn is(word: &str, set: &[&str]) -> bool {
    set.contains(&word)
}

/// Classifies one message.
pub fn classify(text: &str) -> Intent {
    let w = words(text);
    let Some(first) = w.first() else {
        return Intent::Help;
    };
    let rest = |from: usize| Some(w[from..].join(" ")).filter(|s| !s.is_empty());
    if w.len() == 1 && is(first, YES) {
        return Intent::Yes;
    }
    if w.len() == 1 && is(first, NO) {
        return Intent::No;
    }
    if w.len() == 1 && is(first, SKIP) {
        return Intent::Skip;
    }
    // Commands carrying a reference: "ACCEPT 3F9A2C", "REJECT 3F9A2C no stock".
    if w.len() >= 2 {
        let reference = w[1].to_uppercase();
        if is(first, ACCEPT) {
            return Intent::Accept(reference);
        }
        if is(first, REJECT) {
            return Intent::Reject(reference, rest(2));
        }
        if is(first, RECEIVED) {
            return Intent::Received(reference);
        }
        if is(first, ISSUE) {
            return Intent::Issue(reference, rest(2));
        }
        if is(first, CANCEL) && is_reference(&w[1]) {
            return Intent::Cancel(reference, rest(2));
        }
    }
    if is(first, STATUS) || (first == "order" && w.get(1).is_some_and(|s| is(s, STATUS))) {
        let reference = w
            .iter()
            .skip(1)
            .find(|x| !is(x, STATUS))
            .map(|r| r.to_uppercase());
        return Intent::Status(reference);
    }
    // Without a number: "order chini 5 kg, kaha pathaune?" is an order.
    let numberless = !text
        .chars()
        .any(|c| c.is_ascii_digit() || ('०'..='९').contains(&c));
    if numberless && w.iter().any(|x| is(x, WHERE)) && w.iter().any(|x| is(x, ORDER)) {
        return Intent::Status(None);
    }
    if w.iter().all(|x| is(x, HELP)) {
        return Intent::Help;
    }
    // Whole messages of pleasantries only; "namaste dai, chini 5 kg" is an order.
    if w.iter()
        .any(|x| is(x, THANKS) && !is(x, &["you", "dherai", "धेरै"]))
        && w.iter().all(|x| is(x, THANKS) || is(x, GREETING))
    {
        return Intent::Thanks;
    }
    if w.iter().all(|x| is(x, GREETING)) {
        return Intent::Greeting;
    }
    Intent::Text
}

/// Whether a message is written in Devanagari (replies then go out in Nepali).
pub fn is_devanagari(text: &str) -> bool {
    text.chars().any(|c| ('\u{0900}'..='\u{097F}').contains(&c))
}

/// A bare quantity ("5", "2.5", "५") answering a "how much?" question.
pub fn bare_number(text: &str) -> Option<f64> {
    let ascii: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '०'..='९' => char::from(b'0' + (c as u32 - '०' as u32) as u8),
            c => c,
        })
        .collect();
    ascii
        .parse::<f64>()
        .ok()
        .filter(|q| q.is_finite() && *q > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_in_three_scripts() {
        for yes in ["YES", "yes", "Ho", "हो", "1", "ok!"] {
            assert_eq!(classify(yes), Intent::Yes, "{yes}");
        }
        for no in ["NO", "haina", "होइन", "2", "cancel"] {
            assert_eq!(classify(no), Intent::No, "{no}");
        }
    }

    #[test]
    fn pleasantries_are_not_orders() {
        assert_eq!(classify("Namaste dai"), Intent::Greeting);
        assert_eq!(classify("नमस्ते"), Intent::Greeting);
        assert_eq!(classify("thank you!"), Intent::Thanks);
        assert_eq!(classify("dhanyabad dai"), Intent::Thanks);
        assert_eq!(classify("namaste dai, chini 5 kg"), Intent::Text);
        assert_eq!(classify("help"), Intent::Help);
    }

    #[test]
    fn commands_with_references() {
        assert_eq!(classify("ACCEPT 3f9a2c"), Intent::Accept("3F9A2C".into()));
        assert_eq!(
            classify("reject 3F9A2C no stock today"),
            Intent::Reject("3F9A2C".into(), Some("no stock today".into()))
        );
        assert_eq!(
            classify("reject 3F9A2C"),
            Intent::Reject("3F9A2C".into(), None)
        );
        assert_eq!(
            classify("CANCEL 3f9a2c truck broke down"),
            Intent::Cancel("3F9A2C".into(), Some("truck broke down".into()))
        );
        assert_eq!(
            classify("रद्द 3F9A2C"),
            Intent::Cancel("3F9A2C".into(), None)
        );
        assert_eq!(classify("cancel"), Intent::No);
        assert_eq!(classify("cancel that order please"), Intent::Text);
        assert_eq!(
            classify("RECEIVED ab12cd"),
            Intent::Received("AB12CD".into())
        );
        assert_eq!(
            classify("issue AB12CD 2 packets torn"),
            Intent::Issue("AB12CD".into(), Some("2 packets torn".into()))
        );
        assert_eq!(classify("status"), Intent::Status(None));
        assert_eq!(
            classify("order status ab12cd"),
            Intent::Status(Some("AB12CD".into()))
        );
        assert_eq!(classify("स्थिति"), Intent::Status(None));
        assert_eq!(classify("mero order kaha pugyo?"), Intent::Status(None));
        assert_eq!(classify("मेरो अर्डर कहाँ पुग्यो?"), Intent::Status(None));
        assert_eq!(classify("where is my order"), Intent::Status(None));
        assert_eq!(classify("mero order kaha?"), Intent::Status(None));
        assert_eq!(classify("order chini 5 kg, kaha pathaune?"), Intent::Text);
    }

    #[test]
    fn bare_numbers_in_both_digit_sets() {
        assert_eq!(bare_number(" 5 "), Some(5.0));
        assert_eq!(bare_number("५"), Some(5.0));
        assert_eq!(bare_number("2.5"), Some(2.5));
        assert_eq!(bare_number("0"), None);
        assert_eq!(bare_number("5 kg"), None);
    }
}
