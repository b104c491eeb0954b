//! Argument validation: duration parsing and the loopback-only guard.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Url;

/// Parses a human duration such as `30s`, `2m`, `500ms`, `1.5s` or `1h`.
///
/// A bare number (e.g. `0` or `10`) is read as seconds. Negative, non-finite
/// or absurdly large values are rejected.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration (expected e.g. 30s, 2m, 500ms)".to_owned());
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "invalid duration {input:?} (expected e.g. 30s, 2m, 500ms)"
        ));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid number in duration {input:?}"))?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {input:?} (use ms, s, m or h)"
            ));
        }
    };
    let secs = value * seconds_per_unit;
    if !secs.is_finite() || !(0.0..=7.0 * 24.0 * 3600.0).contains(&secs) {
        return Err(format!("duration {input:?} is out of range (max 7 days)"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {input:?}: {e}"))
}

/// Parses a positive request rate (requests per second) for `--rate`.
pub(crate) fn parse_rate(input: &str) -> Result<f64, String> {
    let rate: f64 = input
        .trim()
        .parse()
        .map_err(|_| format!("invalid rate {input:?} (expected requests per second, e.g. 500)"))?;
    if !rate.is_finite() || !(0.01..=10_000_000.0).contains(&rate) {
        return Err(format!(
            "rate {input:?} out of range (0.01 ..= 10000000 requests/s)"
        ));
    }
    Ok(rate)
}

/// Parses working hours `HH:MM-HH:MM` (Nepal time, as the vendors' `opens` and `closes`)
/// for `khaacho simulate --vendor-hours`; returns the two times as written.
pub(crate) fn parse_hours(input: &str) -> Result<(String, String), String> {
    let bad = || {
        format!(
            "invalid hours {input:?} (expected HH:MM-HH:MM, e.g. 09:00-18:00, or 00:00-24:00 for around the clock)"
        )
    };
    let (opens, closes) = input.trim().split_once('-').ok_or_else(bad)?;
    let minute = |t: &str| -> Option<u32> {
        let (h, m) = t.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    // A closing time may be midnight at the end of the day, as the server takes it.
    let closing = |t: &str| if t == "24:00" { Some(1440) } else { minute(t) };
    let (o, c) = (opens.trim(), closes.trim());
    match (minute(o), closing(c)) {
        (Some(a), Some(b)) if a < b => Ok((o.to_owned(), c.to_owned())),
        (Some(_), Some(_)) => Err(format!(
            "hours {input:?}: the vendors must open before they close"
        )),
        _ => Err(bad()),
    }
}

/// Returns true when `host` (as found in a URL: a name, an IPv4 address or a
/// bracketed IPv6 address) is the loopback interface.
///
/// Accepted: `localhost`, any address in 127.0.0.0/8, `::1` and IPv4-mapped
/// loopback (`::ffff:127.x.y.z`). Everything else is refused, including other
/// names that might resolve to loopback (we never trust DNS for this).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        };
    }
    let name = bare.strip_suffix('.').unwrap_or(bare);
    name.eq_ignore_ascii_case("localhost")
}

/// Parses `url` and refuses anything that does not point at this machine's
/// loopback interface (127.0.0.0/8, `localhost`, `[::1]`).
///
/// The load generator must never send load to another host, so this check
/// runs before any request is made (and again for every status URL the server
/// hands back).
pub fn ensure_loopback(url: &str) -> anyhow::Result<Url> {
    let parsed = Url::parse(url.trim()).with_context(|| {
        format!("--url {url:?} is not a valid URL (e.g. http://127.0.0.1:8080)")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("--url {url:?}: only http:// and https:// URLs are supported");
    }
    let Some(host) = parsed.host_str() else {
        bail!("--url {url:?} has no host");
    };
    if !is_loopback_host(host) {
        bail!(
            "refusing to send load to {host:?}: `khaacho loadtest` only targets loopback \
             (127.0.0.0/8, localhost, [::1]); this machine must never load-test another host"
        );
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 10 "), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in [
            "",
            "s",
            "abc",
            "10x",
            "-1s",
            "1..5s",
            "5 parsecs",
            "999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn parses_rates() {
        assert_eq!(parse_rate("500"), Ok(500.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        for bad in ["0", "-3", "abc", "NaN", "inf", "1e12"] {
            assert!(parse_rate(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn parses_working_hours() {
        let hours = |a: &str, b: &str| Ok((a.to_owned(), b.to_owned()));
        assert_eq!(parse_hours("00:00-23:59"), hours("00:00", "23:59"));
        assert_eq!(parse_hours("00:00-24:00"), hours("00:00", "24:00"));
        assert!(parse_hours("24:00-24:00").is_err(), "24:00 only closes");
        assert_eq!(parse_hours(" 09:30 - 18:00 "), hours("09:30", "18:00"));
        for bad in [
            "",
            "09:00",
            "9:00-18:00",
            "09:00-24:01",
            "09:00-25:00",
            "09:60-18:00",
            "18:00-09:00",
            "09:00-09:00",
            "a-b",
        ] {
            assert!(parse_hours(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn accepts_loopback_urls() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.5.5.5:9000/",
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://[::1]:8080",
            "https://127.0.0.1",
            "http://[::ffff:127.0.0.1]:80",
        ] {
            assert!(ensure_loopback(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn refuses_non_loopback_urls() {
        for bad in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://192.168.1.1",
            "http://0.0.0.0:8080",
            "http://[::]:8080",
            "http://[2001:db8::1]",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(ensure_loopback(bad).is_err(), "{bad} should be refused");
        }
        let msg = format!(
            "{:#}",
            ensure_loopback("http://10.0.0.1").expect_err("refused")
        );
        assert!(msg.contains("loopback"), "{msg}");
    }
}
