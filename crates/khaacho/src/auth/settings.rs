//! Configuration of authentication, rate limits and the audit log (`auth.*`, `rate_limits.*`,
//! `audit.*`). Secrets (the signing key) are redacted in `Debug`.

use std::fmt;

use serde::Deserialize;

/// `auth.*`: tokens and login protection.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// PKCS#8 PEM of the Ed25519 signing key (production). Unset: the embedded default
    /// generates one on first start and keeps it in the `signing_keys` table.
    pub signing_key_pem: Option<String>,
    /// Lifetime of access tokens.
    pub access_ttl_secs: u64,
    /// Lifetime of refresh tokens (each rotation restarts it).
    pub refresh_ttl_secs: u64,
    /// Failed logins within `lockout_window_secs` that lock an account.
    pub lockout_max_failures: u32,
    /// Window in which failures are counted.
    pub lockout_window_secs: u64,
    /// How long a locked account stays locked.
    pub lockout_secs: u64,
    /// How long a node keeps an API key it looked up (0: look it up on every request). A
    /// revocation takes effect at once on the node that revoked it, on the others within this.
    pub api_key_cache_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            signing_key_pem: None,
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 7 * 24 * 3600,
            lockout_max_failures: 5,
            lockout_window_secs: 5 * 60,
            lockout_secs: 15 * 60,
            api_key_cache_ms: 5_000,
        }
    }
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field(
                "signing_key_pem",
                &self.signing_key_pem.as_ref().map(|_| "***"),
            )
            .field("access_ttl_secs", &self.access_ttl_secs)
            .field("refresh_ttl_secs", &self.refresh_ttl_secs)
            .field("lockout_max_failures", &self.lockout_max_failures)
            .field("lockout_window_secs", &self.lockout_window_secs)
            .field("lockout_secs", &self.lockout_secs)
            .field("api_key_cache_ms", &self.api_key_cache_ms)
            .finish()
    }
}

/// One limit: a sustained rate per second and a burst.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
pub struct Limit {
    /// Sustained requests per second (fractions allowed: 0.5 = one every two seconds).
    pub per_second: f64,
    /// Requests allowed at once from idle.
    pub burst: u32,
}

impl Limit {
    /// The `khaacho_auth` quota of this limit.
    pub fn quota(&self) -> khaacho_auth::ratelimit::Quota {
        use khaacho_auth::ratelimit::Quota;
        // Per minute keeps fractional rates exact enough (0.5/s = 30/min).
        let per_minute = (self.per_second * 60.0).round().clamp(1.0, u32::MAX as f64) as u32;
        Quota::per_minute(per_minute).with_burst(self.burst.max(1))
    }
}

/// `rate_limits.*`. Defaults are DoS ceilings high enough for `khaacho loadtest` at
/// 5,000 orders/s from one principal; tighten them per deployment.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Switches every limit off.
    pub enabled: bool,
    /// Per client IP for requests without credentials (including failed authentication).
    pub per_ip: Limit,
    /// Per client IP for `POST /api/v1/auth/login` (and refresh).
    pub login_per_ip: Limit,
    /// Per client IP for the provider webhooks (Twilio messages and status callbacks), instead
    /// of `per_ip`: a provider posts every message of every customer from a few addresses,
    /// and a refused webhook is a customer's message lost. Each is still signature-checked.
    pub webhook_per_ip: Limit,
    /// Per principal (user or API key) on every authenticated route.
    pub per_principal: Limit,
    /// Per principal on expensive routes (order creation, catalogue import/export, audit).
    pub expensive_per_principal: Limit,
    /// All requests of this process (or of all processes sharing Redis).
    pub global: Limit,
    /// Key prefix in Redis (`REDIS_URL` set): limits are shared by every process using it.
    pub redis_prefix: String,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            per_ip: Limit {
                per_second: 20.0,
                burst: 100,
            },
            login_per_ip: Limit {
                per_second: 0.5,
                burst: 20,
            },
            webhook_per_ip: Limit {
                per_second: 5_000.0,
                burst: 5_000,
            },
            per_principal: Limit {
                per_second: 20_000.0,
                burst: 20_000,
            },
            expensive_per_principal: Limit {
                per_second: 10_000.0,
                burst: 10_000,
            },
            global: Limit {
                per_second: 100_000.0,
                burst: 100_000,
            },
            redis_prefix: "khaacho:rl:".into(),
        }
    }
}

/// `audit.*`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct AuditSettings {
    /// Audit rows older than this many days are deleted by the maintenance job (0 keeps all).
    pub retention_days: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            retention_days: 400,
        }
    }
}
