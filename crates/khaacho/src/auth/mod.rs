//! Identity and security (DESIGN.md §8): who is calling ([`Principal`], from a Bearer access
//! token or an API key), what they may do ([`Principal::require`], declared in each handler),
//! which rows they may see ([`Principal::order_scope`] and friends), rate limits, login
//! lockout and the audit log. The cryptography lives in the `khaacho-auth` crate.

pub mod audit;
pub mod cli;
pub mod middleware;
pub mod repo;
pub mod routes;
pub mod service;
pub mod settings;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
pub use khaacho_auth::Role;
use khaacho_auth::lockout::LockoutPolicy;
use khaacho_auth::ratelimit::{FallbackLimiter, Limiter, LocalLimiter, RedisLimiter};
use khaacho_auth::refresh::RefreshTokens;
use khaacho_auth::tokens::{Claims, KeySet, TokenError};
use uuid::Uuid;

use self::audit::Entry;
use self::repo::SqlRefreshStore;
use crate::config::Settings;
use crate::db::Db;
use crate::http::error::ApiError;
use crate::orders::repo::Scope;

/// Every role, in the order of the docs' role matrix.
pub const ALL_ROLES: &[Role] = &[Role::Admin, Role::Operator, Role::Vendor, Role::Retailer];
/// Platform staff.
pub const STAFF: &[Role] = &[Role::Admin, Role::Operator];
/// Admins only.
pub const ADMIN: &[Role] = &[Role::Admin];

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

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A user with an access token.
    User,
    /// An API key.
    ApiKey,
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Principal {
    /// User or API key.
    pub kind: PrincipalKind,
    /// The user's or the key's id.
    pub id: Uuid,
    /// The role it acts in.
    pub role: Role,
    /// The retailer or vendor it belongs to (`None` for staff).
    pub tenant: Option<Uuid>,
    /// The request's id (for audit rows).
    pub request_id: Option<String>,
}

impl Principal {
    /// The audit-log actor: `user:<id>` or `apikey:<id>`.
    pub fn actor(&self) -> String {
        match self.kind {
            PrincipalKind::User => format!("user:{}", self.id),
            PrincipalKind::ApiKey => format!("apikey:{}", self.id),
        }
    }

    /// Refuses the request (403, audited) unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not do this",
                self.role
            )))
        }
    }

    /// Whether the caller is platform staff (admin or operator).
    pub fn is_staff(&self) -> bool {
        STAFF.contains(&self.role)
    }

    /// The retailer this caller is limited to (retailer role).
    pub fn retailer(&self) -> Option<Uuid> {
        (self.role == Role::Retailer).then(|| self.tenant.unwrap_or(Uuid::nil()))
    }

    /// The vendor this caller is limited to (vendor role).
    pub fn vendor(&self) -> Option<Uuid> {
        (self.role == Role::Vendor).then(|| self.tenant.unwrap_or(Uuid::nil()))
    }

    /// Which orders the caller may see. A tenant role without a tenant sees nothing.
    pub fn order_scope(&self) -> Scope {
        match self.role {
            Role::Admin | Role::Operator => Scope::All,
            Role::Retailer => Scope::Retailer(self.tenant.unwrap_or(Uuid::nil())),
            Role::Vendor => Scope::Vendor(self.tenant.unwrap_or(Uuid::nil())),
        }
    }

    /// An audit entry by this caller.
    pub fn audit(&self, action: &str) -> Entry {
        let mut e = Entry::new(self.actor(), Some(self.role.as_str()), action);
        e.request_id = self.request_id.clone();
        e
    }
}

/// The authentication outcome the middleware leaves in the request's extensions.
#[derive(Clone, Debug)]
pub enum AuthState {
    /// No credentials were presented.
    Anonymous,
    /// Valid credentials.
    Authenticated(Principal),
    /// Credentials were presented and refused (the reason is not sent to the client).
    Invalid(&'static str),
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<AuthState>() {
            Some(AuthState::Authenticated(p)) => Ok(p.clone()),
            Some(AuthState::Invalid(_)) => {
                Err(ApiError::Unauthorized("invalid or expired credentials"))
            }
            _ => Err(ApiError::Unauthorized(
                "authentication required: send `Authorization: Bearer <token>`",
            )),
        }
    }
}
