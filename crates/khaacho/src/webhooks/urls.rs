//! The rule for subscriber URLs (against server-side request forgery): `https://` only, to a
//! public host — no credentials in the URL, no `localhost`, no loopback, private, link-local
//! (cloud metadata), carrier-grade-NAT, unspecified, multicast or documentation address,
//! whether written literally or what the host name resolves to. Checked when a subscription
//! is created (the literal form), before every delivery (the resolved addresses, so a name
//! that later points inside is refused then, with a reason and no retry) and, the one check
//! that cannot be raced, by the sender's own resolver as it connects ([`PublicOnly`]): a name
//! whose answer changes between the check and the connection (DNS rebinding, a short TTL)
//! still reaches only public addresses. `webhooks.allow_insecure_urls` lifts the rule for
//! development and tests.

use std::net::{IpAddr, SocketAddr};

use reqwest::Url;

/// Why a URL is refused.
pub type Refusal = String;

/// Parses and checks `raw` in its literal form.
pub fn check(raw: &str, allow_insecure: bool) -> Result<Url, Refusal> {
    let url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err("the URL must be https://".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL may not carry credentials".into());
    }
    let Some(host) = url.host_str() else {
        return Err("the URL has no host".into());
    };
    if raw.len() > 2_000 {
        return Err("the URL is longer than 2000 characters".into());
    }
    if allow_insecure {
        return Ok(url);
    }
    if url.scheme() != "https" {
        return Err("the URL must be https://".into());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") || lower.ends_with(".local") {
        return Err("the URL must name a public host".into());
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && !is_public(ip)
    {
        return Err("the URL must name a public address".into());
    }
    Ok(url)
}

/// Before a delivery: the host's addresses must all be public (unless insecure URLs are
/// allowed).
pub async fn check_resolved(url: &Url, allow_insecure: bool) -> Result<(), Refusal> {
    if allow_insecure {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    for a in addrs {
        if !is_public(a.ip()) {
            return Err(format!("{host} resolves to a non-public address"));
        }
    }
    Ok(())
}

/// The webhook client's resolver: a host name resolves to its addresses only when every one
/// of them is public, so the connection goes where the rule allows whatever the name
/// answered a moment before. (IP literals never reach a resolver; [`check`] refuses the
/// non-public ones.)
#[derive(Debug)]
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(inside) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(format!(
                    "{host} resolves to a non-public address ({}); not connecting",
                    inside.ip()
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is an ordinary public address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // carrier-grade NAT
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_to_public_hosts_unless_allowed() {
        assert!(check("https://erp.example.com/hooks", false).is_ok());
        assert!(
            check("https://203.0.113.5/x", false).is_err(),
            "documentation"
        );
        assert!(check("https://8.8.8.8/x", false).is_ok());
        for bad in [
            "http://erp.example.com/hooks",
            "ftp://erp.example.com/",
            "https://localhost/x",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://user:pw@erp.example.com/",
            "not a url",
        ] {
            assert!(check(bad, false).is_err(), "{bad}");
        }
        assert!(check("http://127.0.0.1:9000/x", true).is_ok());
        assert!(check("ftp://127.0.0.1/x", true).is_err());
    }
}
