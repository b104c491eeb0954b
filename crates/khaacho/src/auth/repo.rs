//! SQL of users, API keys, refresh tokens, failed logins and the signing key (both backends).

use khaacho_auth::Role;
use khaacho_auth::refresh::{RefreshRecord, RefreshStore, StoreError};
use uuid::Uuid;

use crate::base::db::{Db, Tx};
use crate::base::time::now_ms;
use crate::{with_keyed, with_latest, with_replica, with_tx, with_write};

/// A user row (the password hash never leaves the auth module).
#[derive(Clone, sqlx::FromRow)]
pub struct UserRow {
    /// Id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// Optional e-mail (also accepted at login).
    pub email: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// `admin`, `operator`, `vendor` or `retailer`.
    pub role: String,
    /// Tenant of a retailer user.
    pub retailer_id: Option<Uuid>,
    /// Tenant of a vendor user.
    pub vendor_id: Option<Uuid>,
    /// Disabled users cannot log in.
    pub active: bool,
    /// Creation time.
    pub created_at_ms: i64,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl UserRow {
    /// The parsed role (an unknown value cannot pass the table's CHECK).
    pub fn role(&self) -> Option<Role> {
        self.role.parse().ok()
    }

    /// The retailer or vendor the user belongs to.
    pub fn tenant(&self) -> Option<Uuid> {
        self.retailer_id.or(self.vendor_id)
    }
}

const USER_COLS: &str =
    "id, username, email, password_hash, role, retailer_id, vendor_id, active, created_at_ms";

/// Splits a tenant into the `(retailer_id, vendor_id)` columns for `role`.
pub fn tenant_columns(role: Role, tenant: Option<Uuid>) -> (Option<Uuid>, Option<Uuid>) {
    match role {
        Role::Retailer => (tenant, None),
        Role::Vendor => (None, tenant),
        Role::Admin | Role::Operator => (None, None),
    }
}

/// Inserts a user.
pub async fn insert_user(tx: &mut Tx, u: &UserRow) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO users (id, username, email, password_hash, role, retailer_id, vendor_id, active, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(u.id).bind(&u.username).bind(u.email.as_deref()).bind(&u.password_hash).bind(&u.role)
        .bind(u.retailer_id).bind(u.vendor_id).bind(u.active).bind(u.created_at_ms)
        .execute(c).await.map(|_| ()))
}

/// A user by username or e-mail (case-sensitive username, case-insensitive e-mail).
pub async fn find_user_by_login(db: &Db, login: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {USER_COLS} FROM users WHERE username = $1 OR LOWER(email) = LOWER($1) ORDER BY username = $1 DESC LIMIT 1"
    );
    with_latest!(db, c => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql)).bind(login).fetch_optional(c).await)
}

/// A user by id.
pub async fn find_user(db: &Db, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
    with_latest!(db, c => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(c).await)
}

/// Number of users (seed checks).
pub async fn count_users(db: &Db) -> Result<i64, sqlx::Error> {
    with_latest!(db, c => sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(c).await)
}

/// Records a failed login.
pub async fn insert_failure(db: &Db, user_id: Uuid, at_ms: i64) -> Result<(), sqlx::Error> {
    with_write!(db, c => sqlx::query("INSERT INTO login_failures (user_id, at_ms) VALUES ($1, $2)")
        .bind(user_id).bind(at_ms).execute(c).await.map(|_| ()))
}

/// Failed logins of a user since `since_ms`, oldest first.
pub async fn failures_since(
    db: &Db,
    user_id: Uuid,
    since_ms: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    with_latest!(db, c => sqlx::query_scalar("SELECT at_ms FROM login_failures WHERE user_id = $1 AND at_ms >= $2 ORDER BY at_ms")
        .bind(user_id).bind(since_ms).fetch_all(c).await)
}

/// Forgets a user's failures after a successful login.
pub async fn clear_failures(db: &Db, user_id: Uuid) -> Result<(), sqlx::Error> {
    with_write!(db, c => sqlx::query("DELETE FROM login_failures WHERE user_id = $1").bind(user_id).execute(c).await.map(|_| ()))
}

/// An API key row (the key itself is never stored).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ApiKeyRow {
    /// Id.
    pub id: Uuid,
    /// Visible lookup prefix.
    pub prefix: String,
    /// SHA-256 of the whole key.
    pub key_hash: Vec<u8>,
    /// Role the key acts as.
    pub role: String,
    /// Retailer tenant.
    pub retailer_id: Option<Uuid>,
    /// Vendor tenant.
    pub vendor_id: Option<Uuid>,
    /// Label.
    pub name: String,
    /// Audit actor that created it.
    pub created_by: String,
    /// Creation time.
    pub created_at_ms: i64,
    /// Last authenticated use (to about a minute).
    pub last_used_at_ms: Option<i64>,
    /// When revoked.
    pub revoked_at_ms: Option<i64>,
}

const KEY_COLS: &str = "id, prefix, key_hash, role, retailer_id, vendor_id, name, created_by, created_at_ms, last_used_at_ms, revoked_at_ms";

/// Inserts an API key.
pub async fn insert_api_key(tx: &mut Tx, k: &ApiKeyRow) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO api_keys (id, prefix, key_hash, role, retailer_id, vendor_id, name, created_by, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(k.id).bind(&k.prefix).bind(&k.key_hash).bind(&k.role).bind(k.retailer_id).bind(k.vendor_id)
        .bind(&k.name).bind(&k.created_by).bind(k.created_at_ms)
        .execute(c).await.map(|_| ()))
}

/// The live (not revoked) key with this prefix (read on a request when this node has not
/// read it within `auth.api_key_cache_ms`).
pub async fn find_live_api_key(db: &Db, prefix: &str) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let sql =
        format!("SELECT {KEY_COLS} FROM api_keys WHERE prefix = $1 AND revoked_at_ms IS NULL");
    with_keyed!(db, c => sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(sql)).bind(prefix).fetch_optional(c).await)
}

/// Keys, newest first.
pub async fn list_api_keys(
    db: &Db,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {KEY_COLS} FROM api_keys WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
    );
    with_replica!(db, c => sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(sql)).bind(before).bind(limit).fetch_all(c).await)
}

/// A key by name (seed idempotency).
pub async fn find_api_key_by_name(db: &Db, name: &str) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {KEY_COLS} FROM api_keys WHERE name = $1 AND revoked_at_ms IS NULL LIMIT 1"
    );
    with_latest!(db, c => sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(c).await)
}

/// Revokes a key; `false` when there is no live key with this id.
pub async fn revoke_api_key(tx: &mut Tx, id: Uuid) -> Result<bool, sqlx::Error> {
    with_tx!(tx, c => sqlx::query("UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL")
        .bind(now_ms()).bind(id).execute(c).await.map(|r| r.rows_affected() == 1))
}

/// Records a key's use.
pub async fn touch_api_key(db: &Db, id: Uuid, at_ms: i64) -> Result<(), sqlx::Error> {
    with_write!(db, c => sqlx::query("UPDATE api_keys SET last_used_at_ms = $1 WHERE id = $2")
        .bind(at_ms).bind(id).execute(c).await.map(|_| ()))
}

/// The stored signing key of the embedded default, created on first use. Concurrent first
/// starts agree on one key: the insert does nothing when a row exists, then everyone reads.
pub async fn signing_key_pem(db: &Db, generated_pem: &str) -> Result<String, sqlx::Error> {
    with_write!(db, c => sqlx::query(
        "INSERT INTO signing_keys (name, private_pem, created_at_ms) VALUES ('active', $1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(generated_pem).bind(now_ms()).execute(c).await.map(|_| ()))?;
    with_write!(db, c => sqlx::query_scalar("SELECT private_pem FROM signing_keys WHERE name = 'active'").fetch_one(c).await)
}

/// Deletes expired refresh tokens and old failed logins (maintenance).
pub async fn purge_expired(db: &Db, now: i64, failures_before_ms: i64) -> Result<u64, sqlx::Error> {
    let a = with_write!(db, c => sqlx::query("DELETE FROM refresh_tokens WHERE expires_at_ms < $1")
        .bind(now).execute(c).await.map(|r| r.rows_affected()))?;
    let b = with_write!(db, c => sqlx::query("DELETE FROM login_failures WHERE at_ms < $1")
        .bind(failures_before_ms).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(a + b)
}

/// Revokes every refresh token of a user (password change, disabling).
pub async fn revoke_user_refresh_tokens(tx: &mut Tx, user_id: Uuid) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query("UPDATE refresh_tokens SET revoked = $1 WHERE user_id = $2")
        .bind(true).bind(user_id).execute(c).await.map(|_| ()))
}

/// [`RefreshStore`] over the `refresh_tokens` table.
#[derive(Clone, Debug)]
pub struct SqlRefreshStore {
    db: Db,
}

impl SqlRefreshStore {
    /// A store on `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[derive(sqlx::FromRow)]
struct RefreshDbRow {
    id: Uuid,
    user_id: Uuid,
    family_id: Uuid,
    token_hash: Vec<u8>,
    issued_at_ms: i64,
    expires_at_ms: i64,
    spent_at_ms: Option<i64>,
    revoked: bool,
}

const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, issued_at_ms, expires_at_ms, spent_at_ms, revoked) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

impl RefreshStore for SqlRefreshStore {
    async fn insert(&self, r: &RefreshRecord) -> Result<(), StoreError> {
        with_write!(self.db, c => sqlx::query(INSERT_REFRESH)
            .bind(r.id).bind(r.user_id).bind(r.family_id).bind(&r.token_hash[..]).bind(r.issued_at_ms)
            .bind(r.expires_at_ms).bind(r.spent_at_ms).bind(r.revoked)
            .execute(c).await.map(|_| ()))?;
        Ok(())
    }

    async fn find_by_hash(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<RefreshRecord>, StoreError> {
        let row = with_latest!(self.db, c => sqlx::query_as::<_, RefreshDbRow>(
            "SELECT id, user_id, family_id, token_hash, issued_at_ms, expires_at_ms, spent_at_ms, revoked \
             FROM refresh_tokens WHERE token_hash = $1")
            .bind(&token_hash[..]).fetch_optional(c).await)?;
        Ok(row.and_then(|r| {
            Some(RefreshRecord {
                id: r.id,
                user_id: r.user_id,
                family_id: r.family_id,
                token_hash: r.token_hash.try_into().ok()?,
                issued_at_ms: r.issued_at_ms,
                expires_at_ms: r.expires_at_ms,
                spent_at_ms: r.spent_at_ms,
                revoked: r.revoked,
            })
        }))
    }

    async fn spend_and_insert(
        &self,
        spent_id: Uuid,
        spent_at_ms: i64,
        n: &RefreshRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let won = with_tx!(tx, c => sqlx::query(
            "UPDATE refresh_tokens SET spent_at_ms = $1 WHERE id = $2 AND spent_at_ms IS NULL AND revoked = $3")
            .bind(spent_at_ms).bind(spent_id).bind(false).execute(c).await.map(|r| r.rows_affected()))?
            == 1;
        if !won {
            return Ok(false);
        }
        with_tx!(tx, c => sqlx::query(INSERT_REFRESH)
            .bind(n.id).bind(n.user_id).bind(n.family_id).bind(&n.token_hash[..]).bind(n.issued_at_ms)
            .bind(n.expires_at_ms).bind(n.spent_at_ms).bind(n.revoked)
            .execute(c).await.map(|_| ()))?;
        tx.commit().await?;
        Ok(true)
    }

    async fn revoke_family(&self, family_id: Uuid) -> Result<(), StoreError> {
        with_write!(self.db, c => sqlx::query("UPDATE refresh_tokens SET revoked = $1 WHERE family_id = $2")
            .bind(true).bind(family_id).execute(c).await.map(|_| ()))?;
        Ok(())
    }
}
