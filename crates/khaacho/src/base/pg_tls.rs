//! The TLS mode of PostgreSQL connections when the URL does not name one.
//!
//! libpq's (and sqlx's) default, `prefer`, is the worst of both: across a network it accepts a
//! plain connection from anyone in the middle, and on loopback or a Unix socket it pays for
//! TLS that protects nothing and costs CPU on both sides, which a 2-core machine serving
//! thousands of orders a second feels.
//! So when neither the URL (`sslmode=`) nor `PGSSLMODE` decides, Khaacho picks by where the
//! server is: `disable` for a Unix socket or a loopback address, otherwise `verify-full` when a
//! root certificate is configured (`sslrootcert=` or `PGSSLROOTCERT`), else `require`. An
//! explicit choice always wins.

use std::net::IpAddr;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Why the TLS mode in force was chosen (logged at start-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsReason {
    /// `sslmode` in the URL or `PGSSLMODE`.
    Explicit,
    /// The server is on this machine (Unix socket or loopback): TLS protects nothing.
    Local,
    /// A remote server with a configured root certificate: encrypt and verify the host.
    RemoteVerified,
    /// A remote server without a root certificate: encrypt, refuse plain connections.
    Remote,
}

impl TlsReason {
    /// A short phrase for the start-up log.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsReason::Explicit => "set explicitly (sslmode in the URL or PGSSLMODE)",
            TlsReason::Local => "server on this machine (Unix socket or loopback)",
            TlsReason::RemoteVerified => "remote server, root certificate configured",
            TlsReason::Remote => "remote server",
        }
    }
}

/// The decision itself (pure, for tests): `explicit` is an `sslmode` named by the URL or the
/// environment, `host` the host name or address, `socket` whether a Unix socket is used,
/// `root_cert` whether a root certificate is configured.
pub fn choose(
    explicit: Option<PgSslMode>,
    host: &str,
    socket: bool,
    root_cert: bool,
) -> (PgSslMode, TlsReason) {
    if let Some(mode) = explicit {
        return (mode, TlsReason::Explicit);
    }
    if socket || is_local_host(host) {
        (PgSslMode::Disable, TlsReason::Local)
    } else if root_cert {
        (PgSslMode::VerifyFull, TlsReason::RemoteVerified)
    } else {
        (PgSslMode::Require, TlsReason::Remote)
    }
}

/// Whether `host` is a Unix socket directory, `localhost` or a loopback address.
fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Applies [`choose`] to parsed options of `url`; returns the options and what was chosen.
pub fn apply(url: &str, opts: PgConnectOptions) -> (PgConnectOptions, PgSslMode, TlsReason) {
    let (mut explicit, mut root_cert) = (None, false);
    if let Ok(parsed) = reqwest::Url::parse(url) {
        for (key, value) in parsed.query_pairs() {
            match &*key {
                "sslmode" | "ssl-mode" => explicit = value.parse::<PgSslMode>().ok(),
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => root_cert = true,
                _ => {}
            }
        }
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    explicit = explicit.or_else(|| env("PGSSLMODE").and_then(|v| v.parse().ok()));
    root_cert |= env("PGSSLROOTCERT").is_some();
    let (mode, reason) = choose(
        explicit,
        opts.get_host(),
        opts.get_socket().is_some(),
        root_cert,
    );
    (opts.ssl_mode(mode), mode, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(explicit: Option<PgSslMode>, host: &str, socket: bool, root: bool) -> PgSslMode {
        choose(explicit, host, socket, root).0
    }

    #[test]
    fn local_servers_get_no_tls() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
        ] {
            assert!(
                matches!(mode(None, host, false, false), PgSslMode::Disable),
                "{host}"
            );
            assert!(
                matches!(mode(None, host, false, true), PgSslMode::Disable),
                "{host}"
            );
        }
        assert!(matches!(
            mode(None, "/var/run/postgresql", false, false),
            PgSslMode::Disable
        ));
        assert!(matches!(
            mode(None, "db.internal", true, false),
            PgSslMode::Disable
        ));
    }

    #[test]
    fn remote_servers_require_tls_and_verify_with_a_root_cert() {
        for host in [
            "db.internal",
            "10.0.0.5",
            "192.168.1.10",
            "2001:db8::1",
            "localhost.evil.com",
        ] {
            assert!(
                matches!(mode(None, host, false, false), PgSslMode::Require),
                "{host}"
            );
            assert!(
                matches!(mode(None, host, false, true), PgSslMode::VerifyFull),
                "{host}"
            );
        }
    }

    #[test]
    fn an_explicit_mode_always_wins() {
        let (m, why) = choose(Some(PgSslMode::Require), "127.0.0.1", false, false);
        assert!(matches!(m, PgSslMode::Require));
        assert_eq!(why, TlsReason::Explicit);
        assert!(matches!(
            mode(Some(PgSslMode::Disable), "db.example.com", false, true),
            PgSslMode::Disable
        ));
    }

    #[test]
    fn reads_the_url() {
        let url = "postgres://u@127.0.0.1:5432/db?sslmode=verify-ca";
        let opts: PgConnectOptions = url.parse().unwrap();
        let (_, m, why) = apply(url, opts);
        assert!(matches!(m, PgSslMode::VerifyCa));
        assert_eq!(why, TlsReason::Explicit);
        let url = "postgres://u@db.example.com/db?sslrootcert=/etc/ca.pem";
        let (_, m, _) = apply(url, url.parse().unwrap());
        // PGSSLMODE may be set in the environment of the test run; only assert without it.
        if std::env::var("PGSSLMODE").is_err() {
            assert!(matches!(m, PgSslMode::VerifyFull));
        }
    }
}
