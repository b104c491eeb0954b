//! Masking of personal data for logs (DESIGN.md §7: phone numbers and names are masked).
//!
//! Masks keep just enough to correlate log lines by eye (country code, last digits, initials).

/// Masks a phone number: keeps a leading `+` and the 3-digit country code when the number is
/// long enough, and the last 4 digits; every other character becomes `*`. A channel prefix such
/// as Twilio's `whatsapp:` is kept. Short inputs are masked more, so at least half of the
/// characters are always hidden.
///
/// `mask_phone("+9779841234567") == "+977******4567"`.
pub fn mask_phone(phone: &str) -> String {
    let (channel, number) = match phone.rsplit_once(':') {
        Some((c, n)) => (&phone[..c.len() + 1], n),
        None => ("", phone),
    };
    let (plus, body) = match number.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", number),
    };
    let chars: Vec<char> = body.chars().collect();
    let n = chars.len();
    let tail = if n >= 8 { 4 } else { n / 4 };
    let head = if !plus.is_empty() && n >= 3 + tail + 4 {
        3
    } else {
        0
    };
    let mut out = String::with_capacity(phone.len());
    out.push_str(channel);
    out.push_str(plus);
    for (i, c) in chars.iter().enumerate() {
        out.push(if i < head || i >= n - tail { *c } else { '*' });
    }
    out
}

/// Masks a person's or shop's name: the first character of each word is kept, the rest become
/// `*` (one per character); whitespace is kept.
///
/// `mask_name("Ram Bahadur") == "R** B******"`.
pub fn mask_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut at_word_start = true;
    for c in name.chars() {
        if c.is_whitespace() {
            out.push(c);
            at_word_start = true;
        } else if at_word_start {
            out.push(c);
            at_word_start = false;
        } else {
            out.push('*');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_examples() {
        assert_eq!(mask_phone("+9779841234567"), "+977******4567");
        assert_eq!(mask_phone("9841234567"), "******4567");
        assert_eq!(
            mask_phone("whatsapp:+9779841234567"),
            "whatsapp:+977******4567"
        );
        assert_eq!(mask_phone("+15551234"), "+****1234");
        assert_eq!(mask_phone("1234"), "***4");
        assert_eq!(mask_phone("12"), "**");
        assert_eq!(mask_phone(""), "");
        assert_eq!(mask_phone("+"), "+");
    }

    #[test]
    fn phone_never_reveals_most_digits() {
        for p in [
            "+9779841234567",
            "+97798412",
            "01-4412345",
            "98412345678901",
        ] {
            let m = mask_phone(p);
            let hidden = m.chars().filter(|&c| c == '*').count();
            assert!(
                hidden * 2 >= p.trim_start_matches('+').len() - 3,
                "{p} -> {m}"
            );
            assert_eq!(m.chars().count(), p.chars().count());
        }
    }

    #[test]
    fn name_examples() {
        assert_eq!(mask_name("Ram Bahadur"), "R** B******");
        assert_eq!(mask_name("Sita"), "S***");
        assert_eq!(mask_name("  Hari  Prasad "), "  H***  P***** ");
        assert_eq!(mask_name("राम बहादुर"), "र** ब*****");
        assert_eq!(mask_name(""), "");
    }
}
