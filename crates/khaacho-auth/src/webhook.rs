//! Webhook signatures: validating Twilio's inbound requests, and signing our own outbound ones.
//!
//! **Twilio** (`X-Twilio-Signature`): base64(HMAC-SHA1(auth token, URL + every form parameter's
//! name and value, sorted by name)). The URL must be exactly the one Twilio called, including
//! the query string; behind a TLS-terminating proxy, rebuild it from the configured public base
//! URL, not from the request's `Host`/scheme.
//!
//! **Khaacho outbound** ([`SIGNATURE_HEADER`] = `Khaacho-Signature`), in the style of Stripe:
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. Receivers recompute the
//! HMAC over the raw body bytes, compare in constant time and refuse timestamps outside a
//! tolerance window (default 5 minutes), which bounds replay. During a secret rotation the
//! header may carry several `v1=` entries; any one matching is enough.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::util::{hex, random_bytes, unhex, unix_now};

/// Header carrying our outbound signature.
pub const SIGNATURE_HEADER: &str = "Khaacho-Signature";
/// Header carrying Twilio's signature.
pub const TWILIO_SIGNATURE_HEADER: &str = "X-Twilio-Signature";
/// Default accepted age (either direction) of a `Khaacho-Signature` timestamp.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a `Khaacho-Signature` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The header is not `t=<int>,v1=<hex>[,v1=<hex>…]`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is outside the tolerance window (replay or clock trouble).
    #[error("signature timestamp outside tolerance")]
    Stale,
    /// No `v1` matches the body under this secret.
    #[error("signature mismatch")]
    Mismatch,
}

// ---------------------------------------------------------------- Twilio

/// Computes Twilio's signature for a request: `url` exactly as Twilio called it, `params` the
/// decoded `application/x-www-form-urlencoded` body (empty for GET).
pub fn twilio_signature<K, V>(auth_token: &str, url: &str, params: &[(K, V)]) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    // Sorted by name, then value (Twilio's SDKs sort repeated names' values too).
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut mac = hmac_sha1(auth_token.as_bytes());
    mac.update(url.as_bytes());
    for (k, v) in pairs {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Validates `X-Twilio-Signature` in constant time. Like Twilio's SDKs, it accepts the URL both
/// with and without an explicit port (Twilio may sign `https://host:443/...` or
/// `https://host/...` depending on how the webhook was configured).
pub fn verify_twilio<K, V>(auth_token: &str, url: &str, params: &[(K, V)], signature: &str) -> bool
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let candidates = [with_default_port(url), without_port(url)];
    let mut ok = subtle::Choice::from(0);
    // Check both without short-circuiting, so timing does not tell which form matched.
    for candidate in candidates.iter() {
        let expected = twilio_signature(auth_token, candidate, params);
        ok |= expected.as_bytes().ct_eq(signature.as_bytes());
    }
    bool::from(ok)
}

fn hmac_sha1(key: &[u8]) -> Hmac<Sha1> {
    // HMAC accepts keys of any length; this cannot fail.
    match Hmac::<Sha1>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// Splits `scheme://authority rest` and the authority into (host part, port) positions.
fn split_url(url: &str) -> Option<(&str, &str, &str, Option<&str>)> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_part = &authority[host_start..];
    // The port colon comes after an IPv6 literal's closing bracket.
    let search_from = host_part.rfind(']').map_or(0, |i| i + 1);
    match host_part[search_from..].rfind(':') {
        Some(i) => {
            let colon = host_start + search_from + i;
            let port = &authority[colon + 1..];
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                Some((scheme, &authority[..colon], rest, Some(port)))
            } else {
                Some((scheme, authority, rest, None))
            }
        }
        None => Some((scheme, authority, rest, None)),
    }
}

fn without_port(url: &str) -> String {
    match split_url(url) {
        Some((scheme, host, rest, Some(_))) => format!("{scheme}://{host}{rest}"),
        _ => url.to_owned(),
    }
}

fn with_default_port(url: &str) -> String {
    match split_url(url) {
        Some((scheme, host, rest, None)) => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                "443"
            } else {
                "80"
            };
            format!("{scheme}://{host}:{port}{rest}")
        }
        _ => url.to_owned(),
    }
}

// ---------------------------------------------------------------- Khaacho outbound

/// A new random signing secret for a webhook subscription (`whsec_` + 43 base64url characters).
/// Show it to the subscriber once; store it encrypted or as is (it must be usable for signing).
pub fn generate_secret() -> String {
    format!("whsec_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// The `Khaacho-Signature` header value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex(&signature_v1(secret, timestamp, body))
    )
}

/// [`sign`] with the current time.
pub fn sign_now(secret: &[u8], body: &[u8]) -> String {
    sign(secret, unix_now(), body)
}

/// Verifies a `Khaacho-Signature` header against the raw body, at the current time.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    tolerance: Duration,
) -> Result<(), WebhookError> {
    verify_at(secret, header, body, tolerance, unix_now())
}

/// [`verify`] at an explicit time (Unix seconds).
pub fn verify_at(
    secret: &[u8],
    header: &str,
    body: &[u8],
    tolerance: Duration,
    now: u64,
) -> Result<(), WebhookError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(WebhookError::Malformed)?;
        match k {
            "t" if timestamp.is_none() => {
                timestamp = Some(v.parse::<u64>().map_err(|_| WebhookError::Malformed)?);
            }
            "t" => return Err(WebhookError::Malformed),
            "v1" => candidates.push(unhex(v).ok_or(WebhookError::Malformed)?),
            _ => {} // Unknown schemes (future v2) are ignored, as Stripe does.
        }
    }
    let t = timestamp.ok_or(WebhookError::Malformed)?;
    if candidates.is_empty() {
        return Err(WebhookError::Malformed);
    }
    if now.abs_diff(t) > tolerance.as_secs() {
        return Err(WebhookError::Stale);
    }
    let expected = signature_v1(secret, t, body);
    let mut ok = subtle::Choice::from(0);
    for c in &candidates {
        ok |= expected.as_slice().ct_eq(c.as_slice());
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(WebhookError::Mismatch)
    }
}

fn signature_v1(secret: &[u8], timestamp: u64, body: &[u8]) -> [u8; 32] {
    let mut mac = hmac_sha256(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TW_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn tw_params(phone: &'static str) -> Vec<(&'static str, &'static str)> {
        // Deliberately unsorted: the function must sort.
        vec![
            ("To", "+18005551212"),
            ("Digits", "1234"),
            ("From", phone),
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", phone),
        ]
    }

    /// The worked example of Twilio's "Webhooks security" page (auth token `12345`), widely
    /// reproduced: Caller/From `+14158675310` gives `GvWf1cFY/Q7PnoempGyD5oXAezc=`.
    #[test]
    fn twilio_docs_example() {
        let params = tw_params("+14158675310");
        let sig = twilio_signature("12345", TW_URL, &params);
        assert_eq!(sig, "GvWf1cFY/Q7PnoempGyD5oXAezc=");
        assert!(verify_twilio("12345", TW_URL, &params, &sig));
    }

    /// Twilio's own SDK test suite (twilio-python `tests/unit/test_request_validator.py`):
    /// Caller/From `+14158675309` gives `RSOYDt4T1cUTdK1PDd93/VVr8B8=`, and the port variants.
    #[test]
    fn twilio_sdk_vectors() {
        let params = tw_params("+14158675309");
        let expected = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert_eq!(twilio_signature("12345", TW_URL, &params), expected);
        assert!(verify_twilio("12345", TW_URL, &params, expected));
        // Signed without port, called with a port: still valid.
        let with_port = TW_URL.replace(".com", ".com:1234");
        assert!(verify_twilio("12345", &with_port, &params, expected));
        // Signed with :443 on a URL that we see without a port.
        assert!(verify_twilio(
            "12345",
            TW_URL,
            &params,
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        // Signed with :80 on http.
        let http = TW_URL.replace("https", "http");
        assert!(verify_twilio(
            "12345",
            &http,
            &params,
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        ));
        // http with a custom port, signed with that port.
        let http_port = http.replace(".com", ".com:1234");
        assert!(verify_twilio(
            "12345",
            &http_port,
            &params,
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        ));
    }

    /// Repeated parameter names (twilio-python `duplicate_expected`).
    #[test]
    fn twilio_repeated_params() {
        let params = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ];
        assert_eq!(
            twilio_signature("12345", TW_URL, &params),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn twilio_rejects_tampering() {
        let params = tw_params("+14158675310");
        let sig = "GvWf1cFY/Q7PnoempGyD5oXAezc=";
        let mut tampered = params.clone();
        tampered[1] = ("Digits", "9999");
        assert!(!verify_twilio("12345", TW_URL, &tampered, sig));
        assert!(!verify_twilio("54321", TW_URL, &params, sig));
        assert!(!verify_twilio(
            "12345",
            "https://evil.com/myapp.php?foo=1&bar=2",
            &params,
            sig
        ));
        assert!(!verify_twilio(
            "12345",
            &TW_URL.replace("https", "http"),
            &params,
            sig
        ));
        assert!(!verify_twilio("12345", TW_URL, &params, ""));
        assert!(!verify_twilio("12345", TW_URL, &params, &sig[..27]));
    }

    #[test]
    fn url_port_helpers() {
        assert_eq!(
            without_port("https://a.com:8443/x?y=1"),
            "https://a.com/x?y=1"
        );
        assert_eq!(with_default_port("https://a.com/x"), "https://a.com:443/x");
        assert_eq!(with_default_port("http://a.com?q=1"), "http://a.com:80?q=1");
        assert_eq!(
            with_default_port("https://a.com:8443/x"),
            "https://a.com:8443/x"
        );
        assert_eq!(without_port("https://[::1]:8443/x"), "https://[::1]/x");
        assert_eq!(without_port("https://[::1]/x"), "https://[::1]/x");
        assert_eq!(without_port("https://u:p@a.com/x"), "https://u:p@a.com/x");
        assert_eq!(without_port("not a url"), "not a url");
    }

    // Vector computed independently with Python:
    //   hmac.new(b"whsec_test_secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    const SECRET: &[u8] = b"whsec_test_secret";
    const T: u64 = 1_700_000_000;
    const BODY: &[u8] =
        br#"{"event":"order.accepted","order_id":"0190a1b2-0000-7000-8000-000000000001"}"#;
    const V1: &str = "72513efad9eb7120efe64e274a92e9d1a64fdd358cde2d406bbb56bb34994b5b";

    #[test]
    fn khaacho_sign_matches_independent_vector() {
        assert_eq!(sign(SECRET, T, BODY), format!("t={T},v1={V1}"));
        let header = format!("t={T},v1={V1}");
        assert_eq!(
            verify_at(SECRET, &header, BODY, DEFAULT_TOLERANCE, T + 10),
            Ok(())
        );
        // Upper-case hex from other implementations is accepted too.
        let upper = format!("t={T},v1={}", V1.to_uppercase());
        assert_eq!(
            verify_at(SECRET, &upper, BODY, DEFAULT_TOLERANCE, T),
            Ok(())
        );
    }

    #[test]
    fn khaacho_rejects_tampered_body_wrong_secret_stale() {
        let header = sign(SECRET, T, BODY);
        let tampered = BODY.to_vec().into_iter().rev().collect::<Vec<u8>>();
        assert_eq!(
            verify_at(SECRET, &header, &tampered, DEFAULT_TOLERANCE, T),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            verify_at(b"other secret", &header, BODY, DEFAULT_TOLERANCE, T),
            Err(WebhookError::Mismatch)
        );
        // 5 minutes is inclusive; one second later is stale, in either direction.
        assert_eq!(
            verify_at(SECRET, &header, BODY, DEFAULT_TOLERANCE, T + 300),
            Ok(())
        );
        assert_eq!(
            verify_at(SECRET, &header, BODY, DEFAULT_TOLERANCE, T + 301),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            verify_at(SECRET, &header, BODY, DEFAULT_TOLERANCE, T - 301),
            Err(WebhookError::Stale)
        );
        // Moving the timestamp to look fresh breaks the signature.
        let moved = header.replace(&T.to_string(), &(T + 100).to_string());
        assert_eq!(
            verify_at(SECRET, &moved, BODY, DEFAULT_TOLERANCE, T + 100),
            Err(WebhookError::Mismatch)
        );
    }

    #[test]
    fn khaacho_accepts_any_of_several_v1_during_rotation() {
        let old = sign(b"old", T, BODY);
        let new = sign(b"new", T, BODY);
        let new_v1 = new.split_once(",v1=").unwrap().1;
        let header = format!("{old},v1={new_v1}");
        assert_eq!(
            verify_at(b"old", &header, BODY, DEFAULT_TOLERANCE, T),
            Ok(())
        );
        assert_eq!(
            verify_at(b"new", &header, BODY, DEFAULT_TOLERANCE, T),
            Ok(())
        );
        assert_eq!(
            verify_at(b"third", &header, BODY, DEFAULT_TOLERANCE, T),
            Err(WebhookError::Mismatch)
        );
    }

    #[test]
    fn khaacho_malformed_headers() {
        for bad in [
            "",
            "garbage",
            "t=abc,v1=00",
            "v1=00",
            &format!("t={T}"),
            &format!("t={T},v1=zz"),
            &format!("t={T},t={T},v1={V1}"),
        ] {
            assert_eq!(
                verify_at(SECRET, bad, BODY, DEFAULT_TOLERANCE, T),
                Err(WebhookError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn sign_now_round_trips_and_secret_shape() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(secret.len(), 6 + 43);
        let header = sign_now(secret.as_bytes(), BODY);
        assert_eq!(
            verify(secret.as_bytes(), &header, BODY, DEFAULT_TOLERANCE),
            Ok(())
        );
    }
}
