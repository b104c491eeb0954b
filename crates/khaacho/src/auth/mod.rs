//! Identity and security (DESIGN.md §8): who is calling ([`Principal`], from a Bearer access
//! token or an API key), what they may do ([`Principal::require`], declared in each handler),
//! which rows they may see ([`Principal::order_scope`] and friends), rate limits, login
//! lockout and the audit log. The cryptography lives in the `khaacho-auth` crate.

pub mod cli;
pub mod middleware;
pub mod repo;
pub mod routes;
pub mod service;
pub mod settings;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub use crate::base::principal::{
    ADMIN, ALL_ROLES, AuthState, Principal, PrincipalKind, Role, STAFF,
};
use anyhow::Context;
use khaacho_auth::lockout::LockoutPolicy;
use khaacho_auth::ratelimit::{FallbackLimiter, Limiter, LocalLimiter, RedisLimiter};
use khaacho_auth::refresh::RefreshTokens;
use khaacho_auth::tokens::{Claims, KeySet, TokenError};
use uuid::Uuid;

use self::repo::SqlRefreshStore;
use crate::base::db::Db;
use crate::config::Settings;

/// The security state of a process: signing keys, refresh tokens, the rate limiter.
pub struct Auth {
    /// Access-token keys.
    pub keys: KeySet,
    /// Refresh tokens over SQL.
    pub refresh: RefreshTokens<SqlRefreshStore>,
    /// Rate limiter (local, or Redis with a local fallback).
    pub limiter: Limiter,
    /// Failed-login lockout.
    pub lockout: LockoutPolicy,
    /// When this node last wrote each API key's `last_used_at_ms`.
    key_touched: Mutex<HashMap<Uuid, i64>>,
    /// Access tokens this node verified, by their exact text: a client sending the same token
    /// thousands of times a second pays for one signature check. Expiry is re-checked on hit.
    verified: Mutex<HashMap<String, Claims>>,
    /// Live API keys this node looked up, by prefix, with when: a client sending the same key
    /// many times a second costs one lookup per `auth.api_key_cache_ms`. Only live keys are
    /// kept (an unknown prefix is looked up every time, so a new key works at once), and the
    /// secret is still checked against the kept hash on every request.
    live_keys: Mutex<HashMap<String, (repo::ApiKeyRow, i64)>>,
    /// `auth.api_key_cache_ms`.
    key_cache_ms: i64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("kid", &self.keys.active_kid())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Loads the signing key (configured PEM, or the stored/generated one) and builds the
    /// limiter (Redis when `REDIS_URL` is set).
    pub async fn load(db: &Db, settings: &Settings) -> anyhow::Result<Self> {
        let a = &settings.auth;
        let pem = match &a.signing_key_pem {
            Some(pem) => pem.clone(),
            None => {
                let generated = KeySet::generate()
                    .context("generating a signing key")?
                    .to_pem();
                repo::signing_key_pem(db, &generated)
                    .await
                    .context("loading the signing key")?
            }
        };
        let keys = KeySet::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("auth.signing_key_pem is not an Ed25519 PKCS#8 PEM: {e}"))?
            .with_access_ttl(Duration::from_secs(a.access_ttl_secs));
        let refresh = RefreshTokens::new(SqlRefreshStore::new(db.clone()))
            .with_ttl(Duration::from_secs(a.refresh_ttl_secs));
        let limiter = match settings.redis_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => {
                let redis =
                    RedisLimiter::connect_lazy(url, settings.rate_limits.redis_prefix.clone())
                        .context("REDIS_URL")?;
                Limiter::Redis(FallbackLimiter::new(redis))
            }
            None => Limiter::Local(LocalLimiter::new()),
        };
        let lockout = LockoutPolicy {
            max_failures: a.lockout_max_failures,
            window: Duration::from_secs(a.lockout_window_secs),
            lock_for: Duration::from_secs(a.lockout_secs),
        };
        Ok(Self {
            keys,
            refresh,
            limiter,
            lockout,
            key_touched: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            live_keys: Mutex::new(HashMap::new()),
            key_cache_ms: i64::try_from(a.api_key_cache_ms).unwrap_or(i64::MAX),
        })
    }

    /// Verifies an access token ([`KeySet::verify`]), remembering good ones until they expire.
    pub fn verify_access(&self, token: &str) -> Result<Claims, TokenError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Ok(map) = self.verified.lock()
            && let Some(c) = map.get(token)
            && c.exp.saturating_add(khaacho_auth::tokens::LEEWAY_SECS) > now
        {
            return Ok(c.clone());
        }
        let claims = self.keys.verify(token)?;
        if let Ok(mut map) = self.verified.lock() {
            if map.len() >= 10_000 {
                map.retain(|_, c| c.exp > now);
                if map.len() >= 10_000 {
                    map.clear();
                }
            }
            map.insert(token.to_string(), claims.clone());
        }
        Ok(claims)
    }

    /// The live key with this prefix as this node last looked it up, if that was less than
    /// `auth.api_key_cache_ms` before `now`.
    fn cached_key(&self, prefix: &str, now: i64) -> Option<repo::ApiKeyRow> {
        let map = self.live_keys.lock().ok()?;
        map.get(prefix)
            .filter(|(_, at)| now.saturating_sub(*at) < self.key_cache_ms)
            .map(|(row, _)| row.clone())
    }

    /// Keeps a live key just read from the database.
    fn remember_key(&self, row: &repo::ApiKeyRow, now: i64) {
        if self.key_cache_ms <= 0 {
            return;
        }
        if let Ok(mut map) = self.live_keys.lock() {
            if map.len() >= 10_000 {
                map.retain(|_, (_, at)| now.saturating_sub(*at) < self.key_cache_ms);
                if map.len() >= 10_000 {
                    map.clear();
                }
            }
            map.insert(row.prefix.clone(), (row.clone(), now));
        }
    }

    /// Drops a revoked key from this node's memory, so its next request here is refused.
    pub fn forget_key(&self, id: Uuid) {
        if let Ok(mut map) = self.live_keys.lock() {
            map.retain(|_, (row, _)| row.id != id);
        }
    }

    /// Whether this node should write the key's last-used time now (at most once a minute).
    fn should_touch(&self, key: Uuid, now: i64) -> bool {
        let Ok(mut map) = self.key_touched.lock() else {
            return false;
        };
        match map.get(&key) {
            Some(at) if now - at < 60_000 => false,
            _ => {
                if map.len() > 10_000 {
                    map.clear();
                }
                map.insert(key, now);
                true
            }
        }
    }
}
