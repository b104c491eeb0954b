//! Opaque, rotating refresh tokens with reuse detection.
//!
//! A refresh token is 32 random bytes, base64url encoded (43 characters). Only its SHA-256 is
//! stored, so a leaked table cannot be replayed. Every login starts a *family*; each rotation
//! spends the presented token and issues its successor in the same family. Presenting an
//! already-spent token means two parties hold the same token (one of them stole it), so the
//! whole family is revoked and [`RefreshError::ReuseDetected`] is returned: the legitimate user
//! must log in again, and the thief's copy is dead too.
//!
//! Storage is the app's: implement [`RefreshStore`] over a `refresh_tokens` table (see the crate
//! README). [`MemoryRefreshStore`] is an in-process implementation for tests and the embedded
//! single-node mode.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::util::{random_bytes, sha256, unix_now};

/// Default lifetime of a refresh token (each rotation restarts it).
pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// One stored refresh token. Times are Unix epoch **milliseconds** (BIGINT columns; see
/// STACK.md on sortable time columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// Row id.
    pub id: Uuid,
    /// The user the token belongs to.
    pub user_id: Uuid,
    /// The login session this token descends from; revoked as a whole on reuse or logout.
    pub family_id: Uuid,
    /// SHA-256 of the token string (unique index; the lookup key).
    pub token_hash: [u8; 32],
    /// When it was issued.
    pub issued_at_ms: i64,
    /// When it stops being accepted.
    pub expires_at_ms: i64,
    /// When it was rotated (spent); `None` while current.
    pub spent_at_ms: Option<i64>,
    /// Set when the family was revoked (reuse detected, logout, password change).
    pub revoked: bool,
}

/// An error of the app's storage, passed through unchanged.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// Persistence for refresh tokens, implemented by the app (in SQL) or [`MemoryRefreshStore`].
pub trait RefreshStore: Send + Sync {
    /// Inserts a new record.
    fn insert(&self, record: &RefreshRecord)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Finds a record by its token hash.
    fn find_by_hash(
        &self,
        token_hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<RefreshRecord>, StoreError>> + Send;

    /// Atomically (one transaction): if the record `spent_id` is neither spent nor revoked, sets
    /// its `spent_at_ms` and inserts `next`, returning `true`; otherwise changes nothing and
    /// returns `false`. In SQL: `UPDATE … SET spent_at_ms = $2 WHERE id = $1 AND spent_at_ms IS
    /// NULL AND NOT revoked`, then the `INSERT` only if one row was updated. The conditional
    /// update is what turns two concurrent rotations of one token into one winner and one
    /// detected reuse.
    fn spend_and_insert(
        &self,
        spent_id: Uuid,
        spent_at_ms: i64,
        next: &RefreshRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks every record of the family revoked.
    fn revoke_family(&self, family_id: Uuid)
    -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Why a refresh token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Not a token we issued (bad shape or no such hash).
    #[error("invalid refresh token")]
    Invalid,
    /// Past its expiry.
    #[error("refresh token expired")]
    Expired,
    /// Its family was revoked earlier (logout or an earlier reuse).
    #[error("refresh token revoked")]
    Revoked,
    /// An already-spent token was presented: the family has been revoked. Log an audit event.
    #[error("refresh token reuse detected")]
    ReuseDetected {
        /// The revoked family.
        family_id: Uuid,
        /// Its user (for the audit log and a notification).
        user_id: Uuid,
    },
    /// The store failed.
    #[error("refresh token store failed")]
    Store(#[source] StoreError),
}

/// Issues and rotates refresh tokens over a [`RefreshStore`].
#[derive(Debug, Clone)]
pub struct RefreshTokens<S> {
    store: S,
    ttl: Duration,
}

impl<S: RefreshStore> RefreshTokens<S> {
    /// Uses `store`, with [`DEFAULT_REFRESH_TTL`].
    pub fn new(store: S) -> Self {
        Self {
            store,
            ttl: DEFAULT_REFRESH_TTL,
        }
    }

    /// Sets the lifetime of each issued token.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Starts a new family for a fresh login. Returns the token (give it to the client once)
    /// and the stored record.
    pub async fn issue(&self, user_id: Uuid) -> Result<(String, RefreshRecord), RefreshError> {
        self.issue_at(user_id, now_ms()).await
    }

    /// [`RefreshTokens::issue`] with an explicit clock (epoch ms), for tests.
    pub async fn issue_at(
        &self,
        user_id: Uuid,
        now_ms: i64,
    ) -> Result<(String, RefreshRecord), RefreshError> {
        let (token, record) = self.new_record(user_id, Uuid::now_v7(), now_ms);
        self.store
            .insert(&record)
            .await
            .map_err(RefreshError::Store)?;
        Ok((token, record))
    }

    /// Spends the presented token and returns its successor (same family, fresh expiry).
    pub async fn rotate(&self, presented: &str) -> Result<(String, RefreshRecord), RefreshError> {
        self.rotate_at(presented, now_ms()).await
    }

    /// [`RefreshTokens::rotate`] with an explicit clock (epoch ms), for tests.
    pub async fn rotate_at(
        &self,
        presented: &str,
        now_ms: i64,
    ) -> Result<(String, RefreshRecord), RefreshError> {
        let current = self.lookup(presented).await?;
        if current.revoked {
            return Err(RefreshError::Revoked);
        }
        if current.spent_at_ms.is_some() {
            return Err(self.reuse(&current).await);
        }
        if now_ms >= current.expires_at_ms {
            return Err(RefreshError::Expired);
        }
        let (token, next) = self.new_record(current.user_id, current.family_id, now_ms);
        let won = self
            .store
            .spend_and_insert(current.id, now_ms, &next)
            .await
            .map_err(RefreshError::Store)?;
        if !won {
            // Someone spent (or revoked) it between our read and our write.
            return Err(self.reuse(&current).await);
        }
        Ok((token, next))
    }

    /// Revokes the family of the presented token (logout). Unknown tokens are ignored so logout
    /// is idempotent.
    pub async fn revoke(&self, presented: &str) -> Result<(), RefreshError> {
        match self.lookup(presented).await {
            Ok(record) => self
                .store
                .revoke_family(record.family_id)
                .await
                .map_err(RefreshError::Store),
            Err(RefreshError::Invalid) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn lookup(&self, presented: &str) -> Result<RefreshRecord, RefreshError> {
        if !looks_like_token(presented) {
            return Err(RefreshError::Invalid);
        }
        self.store
            .find_by_hash(&hash_token(presented))
            .await
            .map_err(RefreshError::Store)?
            .ok_or(RefreshError::Invalid)
    }

    async fn reuse(&self, record: &RefreshRecord) -> RefreshError {
        match self.store.revoke_family(record.family_id).await {
            Ok(()) => RefreshError::ReuseDetected {
                family_id: record.family_id,
                user_id: record.user_id,
            },
            Err(e) => RefreshError::Store(e),
        }
    }

    fn new_record(&self, user_id: Uuid, family_id: Uuid, now_ms: i64) -> (String, RefreshRecord) {
        let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let record = RefreshRecord {
            id: Uuid::now_v7(),
            user_id,
            family_id,
            token_hash: hash_token(&token),
            issued_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
            spent_at_ms: None,
            revoked: false,
        };
        (token, record)
    }
}

/// SHA-256 of a refresh token string: the value stored in `token_hash`. A fast hash is right
/// here: the input is 256 random bits, so there is nothing to brute-force.
pub fn hash_token(token: &str) -> [u8; 32] {
    sha256(token.as_bytes())
}

fn looks_like_token(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn now_ms() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX / 1000) * 1000
}

/// An in-memory [`RefreshStore`] for tests and single-process use. Nothing survives a restart.
#[derive(Debug, Default)]
pub struct MemoryRefreshStore {
    records: Mutex<HashMap<[u8; 32], RefreshRecord>>,
}

impl MemoryRefreshStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every record (for assertions).
    pub fn records(&self) -> Vec<RefreshRecord> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], RefreshRecord>> {
        // A poisoned map is still consistent: every mutation below is a single assignment.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RefreshStore for MemoryRefreshStore {
    async fn insert(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        let mut map = self.lock();
        if map.contains_key(&record.token_hash) {
            return Err("duplicate token hash".into());
        }
        map.insert(record.token_hash, record.clone());
        Ok(())
    }

    async fn find_by_hash(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<RefreshRecord>, StoreError> {
        Ok(self.lock().get(token_hash).cloned())
    }

    async fn spend_and_insert(
        &self,
        spent_id: Uuid,
        spent_at_ms: i64,
        next: &RefreshRecord,
    ) -> Result<bool, StoreError> {
        let mut map = self.lock();
        let Some(old) = map
            .values_mut()
            .find(|r| r.id == spent_id && r.spent_at_ms.is_none() && !r.revoked)
        else {
            return Ok(false);
        };
        old.spent_at_ms = Some(spent_at_ms);
        map.insert(next.token_hash, next.clone());
        Ok(true)
    }

    async fn revoke_family(&self, family_id: Uuid) -> Result<(), StoreError> {
        for r in self.lock().values_mut() {
            if r.family_id == family_id {
                r.revoked = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const T0: i64 = 1_700_000_000_000;
    const DAY: i64 = 24 * 60 * 60 * 1000;

    fn service() -> RefreshTokens<MemoryRefreshStore> {
        RefreshTokens::new(MemoryRefreshStore::new())
    }

    #[tokio::test]
    async fn issue_stores_only_the_hash() {
        let svc = service();
        let user = Uuid::now_v7();
        let (token, record) = svc.issue_at(user, T0).await.unwrap();
        assert_eq!(token.len(), 43);
        assert_eq!(record.user_id, user);
        assert_eq!(record.expires_at_ms - record.issued_at_ms, 7 * DAY);
        assert_eq!(record.token_hash, hash_token(&token));
        let stored = svc.store().records();
        assert_eq!(stored, vec![record]);
        // The plaintext appears nowhere in the stored record.
        assert!(!format!("{stored:?}").contains(&token));
    }

    #[tokio::test]
    async fn rotation_chain_keeps_family() {
        let svc = service();
        let (t1, r1) = svc.issue_at(Uuid::now_v7(), T0).await.unwrap();
        let (t2, r2) = svc.rotate_at(&t1, T0 + DAY).await.unwrap();
        let (t3, r3) = svc.rotate_at(&t2, T0 + 2 * DAY).await.unwrap();
        assert_ne!(t1, t2);
        assert_ne!(t2, t3);
        assert_eq!(r2.family_id, r1.family_id);
        assert_eq!(r3.family_id, r1.family_id);
        assert_eq!(
            r3.expires_at_ms,
            T0 + 9 * DAY,
            "each rotation restarts the 7 days"
        );
        let spent = svc
            .store()
            .records()
            .into_iter()
            .filter(|r| r.spent_at_ms.is_some())
            .count();
        assert_eq!(spent, 2);
    }

    #[tokio::test]
    async fn expired_token_is_refused() {
        let svc = service();
        let (t1, _) = svc.issue_at(Uuid::now_v7(), T0).await.unwrap();
        assert!(matches!(
            svc.rotate_at(&t1, T0 + 7 * DAY).await,
            Err(RefreshError::Expired)
        ));
        // Just before expiry it still rotates.
        let (t1, _) = svc.issue_at(Uuid::now_v7(), T0).await.unwrap();
        assert!(svc.rotate_at(&t1, T0 + 7 * DAY - 1).await.is_ok());
    }

    #[tokio::test]
    async fn reuse_revokes_the_whole_family() {
        let svc = service();
        let user = Uuid::now_v7();
        let (t1, r1) = svc.issue_at(user, T0).await.unwrap();
        let (t2, _) = svc.rotate_at(&t1, T0 + 1000).await.unwrap();
        let (t3, _) = svc.rotate_at(&t2, T0 + 2000).await.unwrap();
        // Another login of the same user is a separate family and must survive.
        let (other, _) = svc.issue_at(user, T0).await.unwrap();

        // The thief replays t1.
        match svc.rotate_at(&t1, T0 + 3000).await {
            Err(RefreshError::ReuseDetected { family_id, user_id }) => {
                assert_eq!(family_id, r1.family_id);
                assert_eq!(user_id, user);
            }
            other => panic!("expected reuse, got {other:?}"),
        }
        // Every token of the family now fails, including the current one.
        assert!(matches!(
            svc.rotate_at(&t3, T0 + 4000).await,
            Err(RefreshError::Revoked)
        ));
        assert!(matches!(
            svc.rotate_at(&t2, T0 + 4000).await,
            Err(RefreshError::Revoked)
        ));
        assert!(matches!(
            svc.rotate_at(&t1, T0 + 4000).await,
            Err(RefreshError::Revoked)
        ));
        assert!(svc.rotate_at(&other, T0 + 4000).await.is_ok());
    }

    #[tokio::test]
    async fn unknown_and_malformed_tokens_are_invalid() {
        let svc = service();
        for bad in ["", "short", &"A".repeat(43), &"é".repeat(43)] {
            assert!(
                matches!(svc.rotate_at(bad, T0).await, Err(RefreshError::Invalid)),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn logout_revokes_family_and_is_idempotent() {
        let svc = service();
        let (t1, _) = svc.issue_at(Uuid::now_v7(), T0).await.unwrap();
        let (t2, _) = svc.rotate_at(&t1, T0 + 1).await.unwrap();
        svc.revoke(&t2).await.unwrap();
        svc.revoke(&t2).await.unwrap();
        svc.revoke("nonsense").await.unwrap();
        assert!(matches!(
            svc.rotate_at(&t2, T0 + 2).await,
            Err(RefreshError::Revoked)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_rotation_has_one_winner() {
        let svc = Arc::new(service());
        let (t1, _) = svc.issue_at(Uuid::now_v7(), T0).await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let svc = Arc::clone(&svc);
                let t1 = t1.clone();
                tokio::spawn(async move { svc.rotate_at(&t1, T0 + 1).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(RefreshError::ReuseDetected { .. } | RefreshError::Revoked) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(ok <= 1, "{ok} winners");
        // Racing on one token is reuse: the family ends revoked either way.
        assert!(svc.store().records().iter().all(|r| r.revoked));
    }
}
