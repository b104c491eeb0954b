//! GCRA rate limiting: in-process ([`LocalLimiter`]), shared across nodes through Redis
//! ([`RedisLimiter`]), and Redis with a local fallback ([`FallbackLimiter`]).
//!
//! GCRA (the "generic cell rate algorithm", a leaky bucket that stores one timestamp per key):
//! every request advances the key's *theoretical arrival time* (TAT) by the emission interval
//! `T = period / per_period`; a request is allowed while the new TAT is at most `burst · T`
//! ahead of now. So a client may make `burst` requests at once and then `per_period` requests
//! per `period`, evenly spaced. A key whose TAT lies in the past is the same as a fresh key,
//! which is what makes eviction (locally) and TTLs (in Redis) exact.
//!
//! The same arithmetic runs in Rust ([`LocalLimiter`]) and in a Lua script ([`RedisLimiter`],
//! clocked by Redis' `TIME` so all nodes share one clock). A [`Decision`] maps onto the
//! `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `Retry-After` headers.
//!
//! Keys are the caller's: namespace them per dimension and quota, e.g. `ip:203.0.113.9`,
//! `user:<uuid>`, `key:<prefix>`, and use one quota per namespace.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use tokio::time::Instant;

/// A rate: `per_period` requests per `period`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Sustained number of requests per `period` (0 is treated as 1).
    pub per_period: u32,
    /// The period of the sustained rate (sub-microsecond periods are treated as 1 µs).
    pub period: Duration,
    /// How many requests may be made at once from an idle state (0 is treated as 1).
    pub burst: u32,
}

impl Quota {
    /// `n` per second, burst `n`.
    pub const fn per_second(n: u32) -> Self {
        Self {
            per_period: n,
            period: Duration::from_secs(1),
            burst: n,
        }
    }

    /// `n` per minute, burst `n`.
    pub const fn per_minute(n: u32) -> Self {
        Self {
            per_period: n,
            period: Duration::from_secs(60),
            burst: n,
        }
    }

    /// Sets the burst.
    #[must_use]
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// The emission interval `T` and the tolerance `burst · T`, in microseconds.
    fn params_us(&self) -> (u64, u64) {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        let t = (period / u64::from(self.per_period.max(1))).max(1);
        (t, t.saturating_mul(u64::from(self.burst.max(1))))
    }

    fn limit(&self) -> u32 {
        self.burst.max(1)
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether to serve the request (otherwise answer `429`).
    pub allowed: bool,
    /// The burst size: requests possible at once from idle (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests that could still be made right now (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Time until the key is back to a full burst (`RateLimit-Reset`).
    pub reset_after: Duration,
    /// When refused: time until one request would be allowed (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// `reset_after` in whole seconds, rounded up (header value).
    pub fn reset_secs(&self) -> u64 {
        ceil_secs(self.reset_after)
    }

    /// `retry_after` in whole seconds, rounded up and at least 1 (header value).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| ceil_secs(d).max(1))
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// One GCRA step. Returns the decision and, if allowed, the TAT to store.
fn gcra(stored_tat: Option<u64>, now: u64, quota: &Quota) -> (Decision, Option<u64>) {
    let (t, tau) = quota.params_us();
    let tat = stored_tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(t);
    let allow_at = new_tat.saturating_sub(tau);
    if now < allow_at {
        let decision = Decision {
            allowed: false,
            limit: quota.limit(),
            remaining: 0,
            reset_after: Duration::from_micros(tat - now),
            retry_after: Some(Duration::from_micros(allow_at - now)),
        };
        return (decision, None);
    }
    let ahead = new_tat - now;
    let decision = Decision {
        allowed: true,
        limit: quota.limit(),
        remaining: u32::try_from((tau - ahead) / t).unwrap_or(u32::MAX),
        reset_after: Duration::from_micros(ahead),
        retry_after: None,
    };
    (decision, Some(new_tat))
}

// ---------------------------------------------------------------- local

const SHARDS: usize = 16;
/// Every this many checks, one shard (round robin) drops its idle keys.
const EVICT_EVERY: u64 = 256;

#[derive(Default)]
struct Shard {
    tats: HashMap<String, u64>,
}

/// An in-process GCRA limiter: sharded `Mutex<HashMap>`, one `u64` per active key. Idle keys
/// (whose bucket has refilled) are dropped periodically, so memory follows the number of
/// *recently active* keys. Limits are per process: behind several nodes, use
/// [`FallbackLimiter`].
pub struct LocalLimiter {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    origin: Instant,
    ops: AtomicU64,
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("keys", &self.len())
            .finish()
    }
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalLimiter {
    /// An empty limiter. Its clock is `tokio::time::Instant`, so tests can pause time.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            origin: Instant::now(),
            ops: AtomicU64::new(0),
        }
    }

    /// Counts one request for `key` under `quota`.
    pub fn check(&self, key: &str, quota: &Quota) -> Decision {
        let now = self.now_us();
        let n = self.ops.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(EVICT_EVERY) {
            // Sweep before taking the key's shard: the swept shard may be the same one.
            let i = usize::try_from((n / EVICT_EVERY) % SHARDS as u64).unwrap_or(0);
            lock(&self.shards[i]).tats.retain(|_, tat| *tat > now);
        }
        let mut shard = self.shard(key);
        let (decision, new_tat) = gcra(shard.tats.get(key).copied(), now, quota);
        if let Some(tat) = new_tat {
            match shard.tats.get_mut(key) {
                Some(slot) => *slot = tat,
                None => {
                    shard.tats.insert(key.to_owned(), tat);
                }
            }
        }
        decision
    }

    /// Drops every key whose bucket has fully refilled (they behave exactly like unknown keys).
    /// Called automatically now and then; call it from a periodic task to bound memory sooner.
    pub fn evict_idle(&self) {
        let now = self.now_us();
        for shard in &self.shards {
            lock(shard).tats.retain(|_, tat| *tat > now);
        }
    }

    /// Number of keys currently held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).tats.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let i = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        lock(&self.shards[i])
    }

    fn now_us(&self) -> u64 {
        // +1 so that "no stored TAT" and "TAT at the origin" never coincide in meaning.
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX) + 1
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a half-written u64; keep going.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------- Redis

/// The GCRA step of [`gcra`] in Lua, on one key that expires when its bucket is full.
/// KEYS[1] = key; ARGV[1] = T (µs); ARGV[2] = burst · T (µs).
/// Returns {allowed, remaining, reset_after_us, retry_after_us}.
const GCRA_LUA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tau
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, math.floor((tau - (new_tat - now)) / interval), new_tat - now, 0}
";

/// A GCRA limiter whose state lives in Redis, so every node shares one limit per key.
///
/// Uses `EVALSHA` (falling back to loading the script once) through a
/// [`ConnectionManager`], which reconnects by itself. Clone freely.
#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Uses an existing connection (e.g. the app's shared cache connection). Every Redis key is
    /// `prefix` + the caller's key, e.g. prefix `khaacho:rl:`.
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            script: Script::new(GCRA_LUA),
            prefix: prefix.into(),
        }
    }

    /// Creates its own connection manager without connecting yet (connection happens on first
    /// use, so start-up does not fail while Redis is down). Fails only on a malformed URL.
    pub fn connect_lazy(url: &str, prefix: impl Into<String>) -> Result<Self, RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self::new(conn, prefix))
    }

    /// Counts one request for `key` under `quota`, atomically on the Redis server.
    pub async fn check(&self, key: &str, quota: &Quota) -> Result<Decision, RedisError> {
        let (t, tau) = quota.params_us();
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(t)
            .arg(tau)
            .invoke_async(&mut conn)
            .await?;
        let [allowed, remaining, reset_us, retry_us] = reply[..] else {
            return Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "rate-limit script returned an unexpected shape",
            )));
        };
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Decision {
            allowed: allowed == 1,
            limit: quota.limit(),
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset_after: us(reset_us),
            retry_after: (allowed != 1).then(|| us(retry_us)),
        })
    }
}

// ---------------------------------------------------------------- fallback

/// Default time budget for one Redis check before falling back.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
/// Default time to skip Redis after it failed, so an outage does not add the timeout to every
/// request.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);

/// Redis first; if Redis errors or does not answer within the timeout, the local limiter
/// decides and [`FallbackLimiter::fallbacks`] is incremented (meter it, e.g. as
/// `khaacho_rate_limit_fallbacks_total`). During a fallback limits are per node, i.e. up to
/// N times looser with N nodes — availability over precision.
pub struct FallbackLimiter {
    redis: RedisLimiter,
    local: LocalLimiter,
    timeout: Duration,
    cooldown: Duration,
    fallbacks: AtomicU64,
    redis_down_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for FallbackLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackLimiter")
            .field("redis", &self.redis)
            .field("timeout", &self.timeout)
            .field("fallbacks", &self.fallbacks())
            .finish_non_exhaustive()
    }
}

impl FallbackLimiter {
    /// Redis with a fresh local fallback, [`DEFAULT_REDIS_TIMEOUT`] and [`DEFAULT_COOLDOWN`].
    pub fn new(redis: RedisLimiter) -> Self {
        Self {
            redis,
            local: LocalLimiter::new(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            cooldown: DEFAULT_COOLDOWN,
            fallbacks: AtomicU64::new(0),
            redis_down_until: Mutex::new(None),
        }
    }

    /// Sets the per-check Redis time budget.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long Redis is skipped after a failure (zero: try Redis on every request).
    #[must_use]
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Counts one request for `key` under `quota`. Never fails.
    pub async fn check(&self, key: &str, quota: &Quota) -> Decision {
        if !self.in_cooldown() {
            match tokio::time::timeout(self.timeout, self.redis.check(key, quota)).await {
                Ok(Ok(decision)) => return decision,
                Ok(Err(_)) | Err(_) => self.mark_down(),
            }
        }
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        self.local.check(key, quota)
    }

    /// How many decisions were made locally because Redis failed or was too slow.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// The local fallback (e.g. to call [`LocalLimiter::evict_idle`] periodically).
    pub fn local(&self) -> &LocalLimiter {
        &self.local
    }

    fn in_cooldown(&self) -> bool {
        let guard = self
            .redis_down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        guard.is_some_and(|until| Instant::now() < until)
    }

    fn mark_down(&self) {
        let mut guard = self
            .redis_down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *guard = Some(Instant::now() + self.cooldown);
    }
}

/// The limiter the app holds: local only (embedded mode) or Redis with local fallback.
#[derive(Debug)]
pub enum Limiter {
    /// One process, no Redis.
    Local(LocalLimiter),
    /// Several nodes sharing limits through Redis.
    Redis(FallbackLimiter),
}

impl Limiter {
    /// Counts one request for `key` under `quota`.
    pub async fn check(&self, key: &str, quota: &Quota) -> Decision {
        match self {
            Limiter::Local(l) => l.check(key, quota),
            Limiter::Redis(r) => r.check(key, quota).await,
        }
    }

    /// Redis fallbacks so far (always 0 for [`Limiter::Local`]).
    pub fn fallbacks(&self) -> u64 {
        match self {
            Limiter::Local(_) => 0,
            Limiter::Redis(r) => r.fallbacks(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::time::advance;

    const MS: Duration = Duration::from_millis(1);

    // 10 per second (T = 100 ms), burst 5.
    const Q: Quota = Quota {
        per_period: 10,
        period: Duration::from_secs(1),
        burst: 5,
    };

    #[test]
    fn gcra_math_pure() {
        let (d, tat) = gcra(None, 1_000_000, &Q);
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (5, 4));
        assert_eq!(d.reset_after, 100 * MS);
        assert_eq!(tat, Some(1_100_000));
        // TAT 500 ms ahead = burst exhausted.
        let (d, tat) = gcra(Some(1_500_000), 1_000_000, &Q);
        assert!(!d.allowed);
        assert_eq!(tat, None);
        assert_eq!(d.retry_after, Some(100 * MS));
        assert_eq!(d.reset_after, 500 * MS);
        // A TAT in the past is the same as no TAT.
        assert_eq!(gcra(Some(10), 1_000_000, &Q), gcra(None, 1_000_000, &Q));
    }

    #[test]
    fn quota_edge_values_do_not_panic() {
        let zero = Quota {
            per_period: 0,
            period: Duration::ZERO,
            burst: 0,
        };
        let (d, _) = gcra(None, 5, &zero);
        assert!(d.allowed);
        assert_eq!(d.limit, 1);
        let huge = Quota {
            per_period: 1,
            period: Duration::MAX,
            burst: u32::MAX,
        };
        let (d, _) = gcra(None, 5, &huge);
        assert!(d.allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn local_burst_then_steady_rate() {
        let l = LocalLimiter::new();
        for expected_remaining in (0..5).rev() {
            let d = l.check("ip:1", &Q);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
        }
        let d = l.check("ip:1", &Q);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, Some(100 * MS));
        assert_eq!(d.retry_after_secs(), Some(1));
        assert_eq!(d.reset_after, 500 * MS);
        assert_eq!(d.reset_secs(), 1);

        // Steady state: exactly one request per 100 ms.
        for _ in 0..20 {
            advance(100 * MS).await;
            assert!(l.check("ip:1", &Q).allowed);
            assert!(!l.check("ip:1", &Q).allowed);
        }
        // 99 ms is not enough.
        advance(99 * MS).await;
        let d = l.check("ip:1", &Q);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(MS));
        // After 500 ms idle the full burst is back.
        advance(501 * MS).await;
        let allowed = (0..10).filter(|_| l.check("ip:1", &Q).allowed).count();
        assert_eq!(allowed, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn local_keys_are_independent_and_idle_keys_evicted() {
        let l = LocalLimiter::new();
        for _ in 0..5 {
            assert!(l.check("a", &Q).allowed);
        }
        assert!(!l.check("a", &Q).allowed);
        assert!(l.check("b", &Q).allowed);
        assert_eq!(l.len(), 2);
        l.evict_idle();
        assert_eq!(l.len(), 2, "buckets not yet refilled");
        advance(Duration::from_secs(1)).await;
        l.evict_idle();
        assert!(l.is_empty());
        // Eviction did not change behaviour: full burst again.
        assert_eq!((0..10).filter(|_| l.check("a", &Q).allowed).count(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn local_automatic_eviction_bounds_memory() {
        let l = LocalLimiter::new();
        let q = Quota::per_second(1000);
        for i in 0..5000 {
            l.check(&format!("k{i}"), &q);
        }
        advance(Duration::from_secs(2)).await;
        // Enough further checks to trigger each shard's periodic sweep.
        for _ in 0..(EVICT_EVERY as usize * SHARDS + 1) {
            l.check("hot", &q);
            advance(Duration::from_millis(1)).await;
        }
        assert!(l.len() < 100, "{}", l.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_concurrent_checks_allow_exactly_burst() {
        let l = Arc::new(LocalLimiter::new());
        let q = Quota {
            per_period: 1,
            period: Duration::from_secs(3600),
            burst: 50,
        };
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let l = Arc::clone(&l);
                tokio::spawn(
                    async move { (0..100).filter(|_| l.check("shared", &q).allowed).count() },
                )
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, 50);
    }

    // ------------------------------------------------------------ Redis (real server)

    fn redis_url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    fn unique_prefix() -> String {
        format!("khaacho-auth-test:{}:", uuid::Uuid::now_v7())
    }

    async fn redis_limiter(prefix: &str) -> RedisLimiter {
        let client = redis::Client::open(redis_url()).unwrap();
        let conn = ConnectionManager::new(client)
            .await
            .expect("Redis must run at REDIS_URL (default redis://127.0.0.1:6379)");
        RedisLimiter::new(conn, prefix)
    }

    #[tokio::test]
    async fn redis_gcra_matches_local_math() {
        let r = redis_limiter(&unique_prefix()).await;
        let q = Quota {
            per_period: 1,
            period: Duration::from_secs(60),
            burst: 3,
        };
        let d = r.check("u", &q).await.unwrap();
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (3, 2));
        assert!(d.reset_after <= Duration::from_secs(60));
        assert!(r.check("u", &q).await.unwrap().allowed);
        let d = r.check("u", &q).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let d = r.check("u", &q).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        let retry = d.retry_after.unwrap();
        assert!(
            retry > Duration::from_secs(59) && retry <= Duration::from_secs(60),
            "{retry:?}"
        );
        assert!(d.reset_after > Duration::from_secs(179));
    }

    #[tokio::test]
    async fn redis_two_nodes_share_one_limit() {
        let prefix = unique_prefix();
        let node_a = redis_limiter(&prefix).await;
        let node_b = redis_limiter(&prefix).await;
        let q = Quota {
            per_period: 1,
            period: Duration::from_secs(3600),
            burst: 5,
        };
        let mut allowed = 0;
        for i in 0..10 {
            let node = if i % 2 == 0 { &node_a } else { &node_b };
            if node.check("user:42", &q).await.unwrap().allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 5, "the limit is global, not per node");
        // A different key is unaffected.
        assert!(node_b.check("user:43", &q).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn redis_key_expires_when_bucket_full() {
        let prefix = unique_prefix();
        let r = redis_limiter(&prefix).await;
        let q = Quota::per_second(10); // T = 100 ms
        assert!(r.check("ttl", &q).await.unwrap().allowed);
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let pttl: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}ttl"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=100).contains(&pttl), "pttl {pttl}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let exists: i64 = redis::cmd("EXISTS")
            .arg(format!("{prefix}ttl"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(exists, 0);
    }

    #[tokio::test]
    async fn redis_concurrent_nodes_allow_exactly_burst() {
        let prefix = unique_prefix();
        let q = Quota {
            per_period: 1,
            period: Duration::from_secs(3600),
            burst: 20,
        };
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let r = redis_limiter(&prefix).await;
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                for _ in 0..15 {
                    if r.check("hot", &q).await.unwrap().allowed {
                        n += 1;
                    }
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, 20);
    }

    #[tokio::test]
    async fn fallback_uses_redis_when_healthy() {
        let f = FallbackLimiter::new(redis_limiter(&unique_prefix()).await)
            .with_timeout(Duration::from_secs(2));
        let q = Quota::per_minute(2);
        assert!(f.check("k", &q).await.allowed);
        assert!(f.check("k", &q).await.allowed);
        assert!(!f.check("k", &q).await.allowed);
        assert_eq!(f.fallbacks(), 0);
        assert!(f.local().is_empty());
    }

    #[tokio::test]
    async fn fallback_when_redis_unreachable() {
        let redis = RedisLimiter::connect_lazy("redis://127.0.0.1:1", "x:").unwrap();
        let f = Limiter::Redis(FallbackLimiter::new(redis));
        let q = Quota::per_minute(2);
        assert!(f.check("k", &q).await.allowed);
        assert!(f.check("k", &q).await.allowed);
        let d = f.check("k", &q).await;
        assert!(!d.allowed, "the local limiter still enforces the quota");
        assert_eq!(f.fallbacks(), 3);
    }

    #[tokio::test]
    async fn fallback_when_redis_hangs() {
        // A server that accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let redis = RedisLimiter::connect_lazy(&format!("redis://{addr}"), "x:").unwrap();
        let f = FallbackLimiter::new(redis).with_cooldown(Duration::ZERO);
        let started = std::time::Instant::now();
        let d = f.check("k", &Quota::per_second(5)).await;
        assert!(d.allowed);
        assert_eq!(f.fallbacks(), 1);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        // With cooldown zero, Redis is tried (and times out) again.
        f.check("k", &Quota::per_second(5)).await;
        assert_eq!(f.fallbacks(), 2);
        hold.abort();
    }

    #[tokio::test]
    async fn fallback_cooldown_skips_redis() {
        let redis = RedisLimiter::connect_lazy("redis://127.0.0.1:1", "x:").unwrap();
        let f = FallbackLimiter::new(redis).with_cooldown(Duration::from_secs(60));
        f.check("k", &Quota::per_second(100)).await;
        let started = std::time::Instant::now();
        for _ in 0..50 {
            f.check("k", &Quota::per_second(100)).await;
        }
        assert_eq!(f.fallbacks(), 51);
        assert!(started.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_local_variant() {
        let l = Limiter::Local(LocalLimiter::new());
        assert!(l.check("k", &Quota::per_second(1)).await.allowed);
        assert!(!l.check("k", &Quota::per_second(1)).await.allowed);
        assert_eq!(l.fallbacks(), 0);
    }
}
