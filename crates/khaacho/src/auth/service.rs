//! Login (with lockout), token refresh and logout, users and API keys.

use khaacho_auth::lockout::LockoutStatus;
use khaacho_auth::refresh::RefreshError;
use khaacho_auth::{Role, apikey, password};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::repo::{self, ApiKeyRow, UserRow};
use crate::app::App;
use crate::base::audit::{self, Entry};
use crate::base::db::is_unique_violation;
use crate::base::time::now_ms;
use crate::base::wire::error::FieldError;

/// Why an identity operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad or missing credentials; the message is safe to show.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The input is invalid; every problem is listed by field.
    #[error("{} problem(s) in the input", .0.len())]
    Invalid(Vec<FieldError>),
    /// No such record.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
    /// Anything else (key material, hashing): logged, opaque to clients.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Tokens answered by login and refresh.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenPair {
    /// EdDSA JWT; send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque refresh token: single use, rotated by `POST /api/v1/auth/refresh`.
    pub refresh_token: String,
}

const INVALID_LOGIN: AuthError = AuthError::Unauthorized("invalid username or password");

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuthError::Internal(e.into()))
}

/// Checks a password and answers tokens. Unknown users, disabled users, locked accounts and
/// wrong passwords all get the same 401 after about the same time (a locked account is not
/// told apart, so the answer does not reveal which usernames exist).
pub async fn login(
    app: &App,
    login: &str,
    pw: String,
    request_id: Option<String>,
) -> Result<TokenPair, AuthError> {
    let user = repo::find_user_by_login(app.db(), login).await?;
    let anon = |action: &str| {
        let mut e = Entry::new("anonymous", None, action);
        e.request_id = request_id.clone();
        e
    };
    let Some(user) = user.filter(|u| u.active) else {
        blocking(move || password::dummy_verify(&pw)).await?;
        metrics::counter!("khaacho_login_failures_total", "reason" => "unknown_user").increment(1);
        audit::record_logged(
            app.db(),
            &anon("auth.login_failed")
                .summary(serde_json::json!({ "reason": "unknown or disabled user" })),
        )
        .await;
        return Err(INVALID_LOGIN);
    };
    let Some(role) = user.role() else {
        return Err(INVALID_LOGIN);
    };
    let user_entry = |action: &str| {
        let mut e = Entry::new(format!("user:{}", user.id), Some(role.as_str()), action)
            .on("user", user.id);
        e.request_id = request_id.clone();
        e
    };
    let policy = &app.auth().lockout;
    let now = now_ms();
    let failures = repo::failures_since(
        app.db(),
        user.id,
        now - policy.lookback().as_millis() as i64,
    )
    .await?;
    if let LockoutStatus::Locked { until_ms } = policy.evaluate(&failures, now) {
        blocking(move || password::dummy_verify(&pw)).await?;
        metrics::counter!("khaacho_login_failures_total", "reason" => "locked").increment(1);
        audit::record_logged(
            app.db(),
            &user_entry("auth.login_failed").summary(
                serde_json::json!({ "reason": "account locked", "locked_until_ms": until_ms }),
            ),
        )
        .await;
        return Err(INVALID_LOGIN);
    }
    let stored = user.password_hash.clone();
    let ok = blocking(move || password::verify(&pw, &stored))
        .await?
        .unwrap_or(false);
    if !ok {
        repo::insert_failure(app.db(), user.id, now).await?;
        metrics::counter!("khaacho_login_failures_total", "reason" => "bad_password").increment(1);
        audit::record_logged(
            app.db(),
            &user_entry("auth.login_failed")
                .summary(serde_json::json!({ "reason": "wrong password" })),
        )
        .await;
        let mut all = failures;
        all.push(now);
        if let LockoutStatus::Locked { until_ms } = policy.evaluate(&all, now) {
            metrics::counter!("khaacho_account_locks_total").increment(1);
            tracing::warn!(user_id = %user.id, "account locked after repeated failed logins");
            audit::record_logged(
                app.db(),
                &user_entry("auth.account_locked").summary(
                    serde_json::json!({ "failures": all.len(), "locked_until_ms": until_ms }),
                ),
            )
            .await;
        }
        return Err(INVALID_LOGIN);
    }
    if !failures.is_empty() {
        repo::clear_failures(app.db(), user.id).await?;
    }
    let pair = issue(app, &user, role).await?;
    audit::record_logged(app.db(), &user_entry("auth.login")).await;
    Ok(pair)
}

async fn issue(app: &App, user: &UserRow, role: Role) -> Result<TokenPair, AuthError> {
    let (access_token, claims) = app
        .auth()
        .keys
        .issue(user.id, role, user.tenant())
        .map_err(|e| AuthError::Internal(e.into()))?;
    let (refresh_token, _) = app
        .auth()
        .refresh
        .issue(user.id)
        .await
        .map_err(|e| AuthError::Internal(anyhow::anyhow!("{e}")))?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer".into(),
        expires_in: claims.exp.saturating_sub(claims.iat),
        refresh_token,
    })
}

/// Rotates a refresh token. Reusing a spent one revokes its whole family (audited).
pub async fn refresh(
    app: &App,
    presented: &str,
    request_id: Option<String>,
) -> Result<TokenPair, AuthError> {
    let refused = |action: &str, summary: serde_json::Value, actor: String| {
        let mut e = Entry::new(actor, None, action).summary(summary);
        e.request_id = request_id.clone();
        e
    };
    let record = match app.auth().refresh.rotate(presented).await {
        Ok((token, record)) => (token, record),
        Err(RefreshError::ReuseDetected { family_id, user_id }) => {
            tracing::warn!(%user_id, "refresh token reuse detected; family revoked");
            let e = refused(
                "auth.refresh_reuse",
                serde_json::json!({ "family_id": family_id }),
                format!("user:{user_id}"),
            )
            .on("user", user_id);
            audit::record_logged(app.db(), &e).await;
            return Err(AuthError::Unauthorized(
                "refresh token reuse detected; sign in again",
            ));
        }
        Err(RefreshError::Store(e)) => {
            return Err(AuthError::Internal(anyhow::anyhow!("refresh store: {e}")));
        }
        Err(other) => {
            let e = refused(
                "auth.refresh_failed",
                serde_json::json!({ "reason": other.to_string() }),
                "anonymous".into(),
            );
            audit::record_logged(app.db(), &e).await;
            return Err(AuthError::Unauthorized("invalid refresh token"));
        }
    };
    let (refresh_token, rec) = record;
    let user = repo::find_user(app.db(), rec.user_id)
        .await?
        .filter(|u| u.active);
    let Some((user, role)) = user.and_then(|u| u.role().map(|r| (u, r))) else {
        let _ = app.auth().refresh.revoke(&refresh_token).await;
        return Err(AuthError::Unauthorized("invalid refresh token"));
    };
    let (access_token, claims) = app
        .auth()
        .keys
        .issue(user.id, role, user.tenant())
        .map_err(|e| AuthError::Internal(e.into()))?;
    let mut e = Entry::new(
        format!("user:{}", user.id),
        Some(role.as_str()),
        "auth.refresh",
    )
    .on("user", user.id);
    e.request_id = request_id;
    audit::record_logged(app.db(), &e).await;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer".into(),
        expires_in: claims.exp.saturating_sub(claims.iat),
        refresh_token,
    })
}

/// Revokes the family of a refresh token (idempotent).
pub async fn logout(
    app: &App,
    presented: &str,
    request_id: Option<String>,
) -> Result<(), AuthError> {
    let hash = khaacho_auth::refresh::hash_token(presented);
    use khaacho_auth::refresh::RefreshStore;
    let who = app
        .auth()
        .refresh
        .store()
        .find_by_hash(&hash)
        .await
        .ok()
        .flatten()
        .map(|r| r.user_id);
    app.auth()
        .refresh
        .revoke(presented)
        .await
        .map_err(|e| AuthError::Internal(anyhow::anyhow!("{e}")))?;
    if let Some(user_id) = who {
        let mut e = Entry::new(format!("user:{user_id}"), None, "auth.logout").on("user", user_id);
        e.request_id = request_id;
        audit::record_logged(app.db(), &e).await;
    }
    Ok(())
}

/// A new user (`POST /api/v1/users`, `khaacho admin create-user`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: 3–64 characters of `a-z 0-9 . _ -`.
    pub username: String,
    /// Optional e-mail, also accepted at login.
    #[serde(default)]
    pub email: Option<String>,
    /// At least 10 characters.
    pub password: String,
    /// `admin`, `operator`, `vendor` or `retailer`.
    #[schema(value_type = String)]
    pub role: Role,
    /// Required for (and only for) retailer users.
    #[serde(default)]
    pub retailer_id: Option<Uuid>,
    /// Required for (and only for) vendor users.
    #[serde(default)]
    pub vendor_id: Option<Uuid>,
}

/// A user as served (never the password hash).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// Id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// E-mail.
    pub email: Option<String>,
    /// Role.
    pub role: String,
    /// Retailer tenant.
    pub retailer_id: Option<Uuid>,
    /// Vendor tenant.
    pub vendor_id: Option<Uuid>,
    /// Whether the user may log in.
    pub active: bool,
}

impl From<&UserRow> for UserView {
    fn from(u: &UserRow) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            email: u.email.clone(),
            role: u.role.clone(),
            retailer_id: u.retailer_id,
            vendor_id: u.vendor_id,
            active: u.active,
        }
    }
}

/// Checks that `role` has exactly the tenant it needs and that the tenant exists.
async fn check_tenant(
    app: &App,
    role: Role,
    retailer_id: Option<Uuid>,
    vendor_id: Option<Uuid>,
    errors: &mut Vec<FieldError>,
) -> Result<Option<Uuid>, AuthError> {
    match (role, retailer_id, vendor_id) {
        (Role::Retailer, Some(r), None) => {
            if crate::parties::repo::find_retailer(app.db(), r)
                .await?
                .is_none()
            {
                errors.push(FieldError::new("retailer_id", "no such retailer"));
            }
            Ok(Some(r))
        }
        (Role::Vendor, None, Some(v)) => {
            if crate::parties::repo::find_vendor(app.db(), v)
                .await?
                .is_none()
            {
                errors.push(FieldError::new("vendor_id", "no such vendor"));
            }
            Ok(Some(v))
        }
        (Role::Admin | Role::Operator, None, None) => Ok(None),
        (Role::Retailer, ..) => {
            errors.push(FieldError::new(
                "retailer_id",
                "a retailer user needs retailer_id and no vendor_id",
            ));
            Ok(None)
        }
        (Role::Vendor, ..) => {
            errors.push(FieldError::new(
                "vendor_id",
                "a vendor user needs vendor_id and no retailer_id",
            ));
            Ok(None)
        }
        _ => {
            errors.push(FieldError::new(
                "role",
                "admins and operators belong to no retailer or vendor",
            ));
            Ok(None)
        }
    }
}

/// Creates a user. Only admins reach this (route and CLI), so nobody can make themselves admin.
pub async fn create_user(app: &App, u: NewUser, audit_entry: Entry) -> Result<UserRow, AuthError> {
    let mut errors = Vec::new();
    let username = u.username.trim().to_string();
    if !(3..=64).contains(&username.len())
        || !username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        errors.push(FieldError::new(
            "username",
            "username must be 3 to 64 characters of a-z 0-9 . _ -",
        ));
    }
    if u.email
        .as_deref()
        .is_some_and(|e| !e.contains('@') || e.len() > 254)
    {
        errors.push(FieldError::new("email", "not an e-mail address"));
    }
    if u.password.chars().count() < 10 || u.password.len() > password::MAX_PASSWORD_BYTES {
        errors.push(FieldError::new(
            "password",
            "password must be at least 10 characters",
        ));
    }
    let tenant = check_tenant(app, u.role, u.retailer_id, u.vendor_id, &mut errors).await?;
    if !errors.is_empty() {
        return Err(AuthError::Invalid(errors));
    }
    let pw = u.password;
    let hash = blocking(move || password::hash(&pw))
        .await?
        .map_err(|e| AuthError::Internal(anyhow::anyhow!("{e}")))?;
    let (retailer_id, vendor_id) = repo::tenant_columns(u.role, tenant);
    let row = UserRow {
        id: Uuid::now_v7(),
        username,
        email: u.email.map(|e| e.trim().to_string()),
        password_hash: hash,
        role: u.role.as_str().to_string(),
        retailer_id,
        vendor_id,
        active: true,
        created_at_ms: now_ms(),
    };
    let mut tx = app.db().begin().await?;
    repo::insert_user(&mut tx, &row).await.map_err(|e| {
        if is_unique_violation(&e) {
            AuthError::Invalid(vec![FieldError::new(
                "username",
                "username or e-mail already taken",
            )])
        } else {
            e.into()
        }
    })?;
    let entry = audit_entry.on("user", row.id).summary(serde_json::json!({
        "username": row.username, "role": row.role, "retailer_id": row.retailer_id, "vendor_id": row.vendor_id }));
    audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(row)
}

/// A new API key request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// What the key is for (1–100 characters).
    pub name: String,
    /// The role the key acts as.
    #[schema(value_type = String)]
    pub role: Role,
    /// Tenant of a retailer key.
    #[serde(default)]
    pub retailer_id: Option<Uuid>,
    /// Tenant of a vendor key.
    #[serde(default)]
    pub vendor_id: Option<Uuid>,
}

/// An API key as listed (never the key or its hash).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyView {
    /// Id.
    pub id: Uuid,
    /// Visible prefix: the key starts `kh_live_<prefix>_`.
    pub prefix: String,
    /// Label.
    pub name: String,
    /// Role.
    pub role: String,
    /// Retailer tenant.
    pub retailer_id: Option<Uuid>,
    /// Vendor tenant.
    pub vendor_id: Option<Uuid>,
    /// Who created it.
    pub created_by: String,
    /// Created (Nepal time).
    pub created_at: String,
    /// Last used (Nepal time, to about a minute).
    pub last_used_at: Option<String>,
    /// Revoked (Nepal time).
    pub revoked_at: Option<String>,
}

impl From<&ApiKeyRow> for ApiKeyView {
    fn from(k: &ApiKeyRow) -> Self {
        use crate::base::time::fmt_time;
        Self {
            id: k.id,
            prefix: k.prefix.clone(),
            name: k.name.clone(),
            role: k.role.clone(),
            retailer_id: k.retailer_id,
            vendor_id: k.vendor_id,
            created_by: k.created_by.clone(),
            created_at: fmt_time(k.created_at_ms),
            last_used_at: k.last_used_at_ms.map(fmt_time),
            revoked_at: k.revoked_at_ms.map(fmt_time),
        }
    }
}

/// A created key: the only time the whole key is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    /// The key; store it now, it cannot be shown again.
    pub key: String,
    /// The stored record.
    #[serde(flatten)]
    pub info: ApiKeyView,
}

/// Creates an API key scoped to a role and tenant.
pub async fn create_api_key(
    app: &App,
    k: NewApiKey,
    audit_entry: Entry,
) -> Result<(String, ApiKeyRow), AuthError> {
    let mut errors = Vec::new();
    let name = k.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        errors.push(FieldError::new("name", "name must be 1 to 100 characters"));
    }
    let tenant = check_tenant(app, k.role, k.retailer_id, k.vendor_id, &mut errors).await?;
    if !errors.is_empty() {
        return Err(AuthError::Invalid(errors));
    }
    let generated = apikey::generate();
    let (retailer_id, vendor_id) = repo::tenant_columns(k.role, tenant);
    let row = ApiKeyRow {
        id: Uuid::now_v7(),
        prefix: generated.prefix.clone(),
        key_hash: generated.hash.to_vec(),
        role: k.role.as_str().to_string(),
        retailer_id,
        vendor_id,
        name,
        created_by: audit_entry.actor.clone(),
        created_at_ms: now_ms(),
        last_used_at_ms: None,
        revoked_at_ms: None,
    };
    let mut tx = app.db().begin().await?;
    repo::insert_api_key(&mut tx, &row).await?;
    let entry = audit_entry.on("api_key", row.id).summary(serde_json::json!({
        "prefix": row.prefix, "name": row.name, "role": row.role, "retailer_id": row.retailer_id, "vendor_id": row.vendor_id }));
    audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok((generated.key, row))
}

/// Revokes an API key: its next request to this node is refused, to any other node once
/// that node's memory of the key is older than `auth.api_key_cache_ms`.
pub async fn revoke_api_key(app: &App, id: Uuid, audit_entry: Entry) -> Result<(), AuthError> {
    let mut tx = app.db().begin().await?;
    if !repo::revoke_api_key(&mut tx, id).await? {
        return Err(AuthError::NotFound("api key"));
    }
    audit::record_tx(&mut tx, &audit_entry.on("api_key", id)).await?;
    tx.commit().await?;
    app.auth().forget_key(id);
    Ok(())
}
