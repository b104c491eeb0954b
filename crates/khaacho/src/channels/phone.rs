//! Sender addresses as Twilio gives them (`whatsapp:+9779812345678`, `+9779812345678`,
//! `9812345678`) → the channel and an E.164 phone, the identity retailers and vendors are
//! stored under.

/// Through what a message came (and its reply goes back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageChannel {
    /// WhatsApp (Twilio addresses it `whatsapp:+…`).
    Whatsapp,
    /// Plain SMS.
    Sms,
}

impl MessageChannel {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageChannel::Whatsapp => "whatsapp",
            MessageChannel::Sms => "sms",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "whatsapp" => Some(MessageChannel::Whatsapp),
            "sms" => Some(MessageChannel::Sms),
            _ => None,
        }
    }

    /// The order channel an order placed through this conversation carries.
    pub fn order_channel(self) -> crate::orders::intake::Channel {
        match self {
            MessageChannel::Whatsapp => crate::orders::intake::Channel::Whatsapp,
            MessageChannel::Sms => crate::orders::intake::Channel::Sms,
        }
    }

    /// How Twilio addresses `phone` on this channel.
    pub fn address(self, phone: &str) -> String {
        match self {
            MessageChannel::Whatsapp => format!("whatsapp:{phone}"),
            MessageChannel::Sms => phone.to_string(),
        }
    }
}

/// Splits a Twilio address into its channel and the phone normalised to E.164, or `None`
/// when it is no phone number at all.
///
/// Nepal numbers are accepted with or without `+977`/`00977`/`977`: a 10-digit mobile
/// starting `97` or `98` gets `+977`. Other numbers must already be international
/// (`+` or `00`). Spaces, dashes, dots and brackets are ignored.
pub fn normalise(address: &str) -> Option<(MessageChannel, String)> {
    let address = address.trim();
    let (channel, rest) = match address.get(..9) {
        Some(p) if p.eq_ignore_ascii_case("whatsapp:") => (MessageChannel::Whatsapp, &address[9..]),
        _ => (MessageChannel::Sms, address),
    };
    Some((channel, e164(rest)?))
}

/// A phone number in E.164 (see [`normalise`]).
pub fn e164(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let plus = raw.starts_with('+');
    let mut digits = String::with_capacity(raw.len());
    for (i, c) in raw.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            // Devanagari digits, as a phone keyboard in Nepali may type them.
            '०'..='९' => digits.push(char::from(b'0' + (c as u32 - '०' as u32) as u8)),
            '+' if i == 0 => {}
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let international = if plus {
        digits
    } else if let Some(d) = digits.strip_prefix("00") {
        d.to_string()
    } else if digits.len() == 10 && (digits.starts_with("97") || digits.starts_with("98")) {
        format!("977{digits}")
    } else if digits.len() == 13 && digits.starts_with("977") {
        digits
    } else {
        return None;
    };
    // E.164: at most 15 digits, no leading zero in the country code.
    if !(8..=15).contains(&international.len()) || international.starts_with('0') {
        return None;
    }
    Some(format!("+{international}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nepal_numbers_in_every_shape_become_e164() {
        for raw in [
            "whatsapp:+9779812345678",
            "+977 981-234-5678",
            "9812345678",
            "009779812345678",
            "9779812345678",
            "WhatsApp:9812345678",
            "९८१२३४५६७८",
        ] {
            assert_eq!(
                normalise(raw).map(|(_, p)| p).as_deref(),
                Some("+9779812345678"),
                "{raw}"
            );
        }
        assert_eq!(
            normalise("whatsapp:+9779812345678").map(|(c, _)| c),
            Some(MessageChannel::Whatsapp)
        );
        assert_eq!(
            normalise("+14155238886").map(|(c, _)| c),
            Some(MessageChannel::Sms)
        );
    }

    #[test]
    fn what_is_no_phone_is_refused() {
        for raw in [
            "",
            "whatsapp:",
            "hello",
            "12345",
            "0981234567",
            "+0123456789",
            "98123456789012345",
        ] {
            assert_eq!(normalise(raw), None, "{raw}");
        }
    }
}
