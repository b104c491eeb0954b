//! SQL of the webhooks: subscriptions, deliveries and the attempt log (both backends).

use sqlx::types::Json;
use uuid::Uuid;

use crate::base::db::{BuildBatch, Db, Tx, push_rows_by};
use crate::{with_latest, with_replica, with_tx};

/// A subscription as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SubscriptionRow {
    /// Id.
    pub id: Uuid,
    /// The vendor whose parts it hears of; `None`: staff-wide.
    pub vendor_id: Option<Uuid>,
    /// Where deliveries are posted.
    pub url: String,
    /// Event types, or `*`.
    pub events: Json<Vec<String>>,
    /// The signing secret.
    pub secret: String,
    /// Receives new events.
    pub active: bool,
    /// Who created it.
    pub created_by: String,
    /// Created at.
    pub created_at_ms: i64,
    /// Deleted at (kept for its delivery log).
    pub deleted_at_ms: Option<i64>,
}

impl SubscriptionRow {
    /// Whether it wants events of `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.0.iter().any(|e| e == "*" || e == event_type)
    }
}

const SUB_COLS: &str =
    "id, vendor_id, url, events, secret, active, created_by, created_at_ms, deleted_at_ms";

/// Stores a new subscription.
pub async fn insert_subscription(tx: &mut Tx, s: &SubscriptionRow) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO webhook_subscriptions (id, vendor_id, url, events, secret, active, created_by, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(s.id).bind(s.vendor_id).bind(&s.url).bind(&s.events).bind(&s.secret).bind(s.active)
        .bind(&s.created_by).bind(s.created_at_ms)
        .execute(c).await.map(|_| ()))
}

/// One subscription that is not deleted, within `vendor` when given.
pub async fn find_subscription(
    db: &Db,
    id: Uuid,
    vendor: Option<Uuid>,
) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {SUB_COLS} FROM webhook_subscriptions WHERE id = $1 AND deleted_at_ms IS NULL \
         AND ($2 IS NULL OR vendor_id = $2)"
    );
    with_latest!(db, c => sqlx::query_as::<_, SubscriptionRow>(sqlx::AssertSqlSafe(sql))
        .bind(id).bind(vendor).fetch_optional(c).await)
}

/// A page of subscriptions (newest first, before `before`), within `vendor` when given.
pub async fn list_subscriptions(
    db: &Db,
    vendor: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<SubscriptionRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {SUB_COLS} FROM webhook_subscriptions WHERE deleted_at_ms IS NULL \
         AND ($1 IS NULL OR vendor_id = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    );
    with_replica!(db, c => sqlx::query_as::<_, SubscriptionRow>(sqlx::AssertSqlSafe(sql))
        .bind(vendor).bind(before).bind(limit).fetch_all(c).await)
}

/// Every active subscription (the consumer's one read per batch).
pub async fn active_subscriptions(tx: &mut Tx) -> Result<Vec<SubscriptionRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {SUB_COLS} FROM webhook_subscriptions WHERE active = $1 AND deleted_at_ms IS NULL"
    );
    with_tx!(tx, c => sqlx::query_as::<_, SubscriptionRow>(sqlx::AssertSqlSafe(sql))
        .bind(true).fetch_all(&mut *c).await)
}

/// Deletes a subscription (kept, with its log, but hears of nothing more); `false` when it
/// was already gone.
pub async fn delete_subscription(tx: &mut Tx, id: Uuid, now_ms: i64) -> Result<bool, sqlx::Error> {
    let n = with_tx!(tx, c => sqlx::query(
        "UPDATE webhook_subscriptions SET active = $2, deleted_at_ms = $3 WHERE id = $1 AND deleted_at_ms IS NULL")
        .bind(id).bind(false).bind(now_ms).execute(c).await?.rows_affected());
    Ok(n == 1)
}

/// A delivery as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeliveryRow {
    /// Id.
    pub id: Uuid,
    /// Its subscription.
    pub subscription_id: Uuid,
    /// The event (`Khaacho-Event-Id`).
    pub event_id: Uuid,
    /// The event type.
    pub event_type: String,
    /// The exact JSON body that is signed and posted.
    pub payload: String,
    /// `queued`, `sending`, `delivered`, `dead`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// When the next attempt is due.
    pub next_attempt_at_ms: i64,
    /// When the last attempt started.
    pub last_attempt_at_ms: Option<i64>,
    /// The receiver's last answer.
    pub last_status_code: Option<i32>,
    /// How long the last attempt took.
    pub last_latency_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Written at.
    pub created_at_ms: i64,
}

const DEL_COLS: &str = "id, subscription_id, event_id, event_type, payload, status, attempts, next_attempt_at_ms, \
     last_attempt_at_ms, last_status_code, last_latency_ms, last_error, created_at_ms";

/// A new delivery for [`insert_deliveries`].
pub struct NewDelivery {
    /// Id.
    pub id: Uuid,
    /// Its subscription.
    pub subscription_id: Uuid,
    /// The event.
    pub event_id: Uuid,
    /// The event type.
    pub event_type: String,
    /// The body.
    pub payload: String,
}

/// Writes deliveries, once per (subscription, event): a rerun of the same changes writes
/// nothing again. Returns the ids written. One statement per 200 rows.
pub async fn insert_deliveries(
    tx: &mut Tx,
    rows: &[NewDelivery],
    now_ms: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut written = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(200) {
        let ids: Vec<Uuid> = with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type, payload, status, attempts, \
                 next_attempt_at_ms, created_at_ms, updated_at_ms) ");
            qb.push_values(chunk, |mut b, d| {
                b.push_bind(d.id).push_bind(d.subscription_id).push_bind(d.event_id).push_bind(&d.event_type)
                    .push_bind(&d.payload).push_bind("queued").push_bind(0_i32).push_bind(now_ms)
                    .push_bind(now_ms).push_bind(now_ms);
            });
            qb.push(" ON CONFLICT (subscription_id, event_id) DO NOTHING RETURNING id");
            qb.build_batch_scalar::<Uuid>().fetch_all(&mut *c).await?
        });
        written.extend(ids);
    }
    Ok(written)
}

/// One delivery.
pub async fn find_delivery(db: &Db, id: Uuid) -> Result<Option<DeliveryRow>, sqlx::Error> {
    let sql = format!("SELECT {DEL_COLS} FROM webhook_deliveries WHERE id = $1");
    with_latest!(db, c => sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(c).await)
}

/// A page of a subscription's deliveries, newest first.
pub async fn list_deliveries(
    db: &Db,
    subscription: Uuid,
    status: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {DEL_COLS} FROM webhook_deliveries WHERE subscription_id = $1 AND ($2 IS NULL OR status = $2) \
         AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
    );
    with_replica!(db, c => sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql))
        .bind(subscription).bind(status).bind(before).bind(limit).fetch_all(c).await)
}

/// One attempt of the delivery log.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AttemptRow {
    /// The delivery.
    pub delivery_id: Uuid,
    /// 1, 2, …
    pub attempt: i32,
    /// Started at.
    pub at_ms: i64,
    /// The receiver's answer, if it answered.
    pub status_code: Option<i32>,
    /// How long it took.
    pub latency_ms: i64,
    /// Why it failed (`None`: delivered).
    pub error: Option<String>,
}

/// The attempts of `deliveries` (one read), in order. Each delivery's attempts are probed by
/// its key (`push_rows_by`): a page of deliveries must not scan every attempt ever made.
pub async fn attempts_of(db: &Db, deliveries: &[Uuid]) -> Result<Vec<AttemptRow>, sqlx::Error> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    with_replica!(db, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT a.delivery_id, a.attempt, a.at_ms, a.status_code, a.latency_ms, a.error FROM");
        push_rows_by(&mut qb, "webhook_attempts", "a", "delivery_id", deliveries, None);
        qb.push(" ORDER BY a.delivery_id, a.id");
        qb.build_query_as::<AttemptRow>().fetch_all(c).await
    })
}

/// Ids of queued deliveries due at `now_ms`, oldest first.
pub async fn due(db: &Db, now_ms: i64, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    with_latest!(db, c => sqlx::query_scalar(
        "SELECT id FROM webhook_deliveries WHERE status = 'queued' AND next_attempt_at_ms <= $1 \
         ORDER BY next_attempt_at_ms, id LIMIT $2")
        .bind(now_ms).bind(limit).fetch_all(c).await)
}

/// Claims a queued delivery for one attempt (`sending`, attempts + 1): `false` when it is
/// not queued any more, so two sender runs never post one delivery at once.
pub async fn claim(db: &Db, id: Uuid, now_ms: i64) -> Result<bool, sqlx::Error> {
    let n = crate::with_write!(db, c => sqlx::query(
        "UPDATE webhook_deliveries SET status = 'sending', attempts = attempts + 1, last_attempt_at_ms = $2, \
         updated_at_ms = $2 WHERE id = $1 AND status = 'queued'")
        .bind(id).bind(now_ms).execute(c).await?.rows_affected());
    Ok(n == 1)
}

/// What one attempt came to.
pub struct Outcome<'a> {
    /// The attempt's number.
    pub attempt: i32,
    /// The receiver's answer, if any.
    pub status_code: Option<i32>,
    /// How long it took.
    pub latency_ms: i64,
    /// Why it failed (`None`: delivered).
    pub error: Option<&'a str>,
    /// Due again then (`None` after a failure: dead).
    pub next: Option<i64>,
}

/// Records an attempt in the log and its outcome on the `sending` delivery, in one
/// transaction: `delivered`, back to `queued` for `next`, or `dead`.
pub async fn finish_attempt(
    db: &Db,
    id: Uuid,
    o: &Outcome<'_>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let status = match (o.error, o.next) {
        (None, _) => "delivered",
        (Some(_), Some(_)) => "queued",
        (Some(_), None) => "dead",
    };
    let mut tx = db.begin().await?;
    with_tx!(&mut tx, c => {
        sqlx::query(
            "INSERT INTO webhook_attempts (id, delivery_id, attempt, at_ms, status_code, latency_ms, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(Uuid::now_v7()).bind(id).bind(o.attempt).bind(now_ms).bind(o.status_code)
            .bind(o.latency_ms).bind(o.error).execute(&mut *c).await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, last_status_code = $3, last_latency_ms = $4, last_error = $5, \
             next_attempt_at_ms = COALESCE($6, next_attempt_at_ms), updated_at_ms = $7 WHERE id = $1 AND status = 'sending'")
            .bind(id).bind(status).bind(o.status_code).bind(o.latency_ms).bind(o.error).bind(o.next)
            .bind(now_ms).execute(&mut *c).await?;
    });
    tx.commit().await
}

/// Puts a `dead` delivery back in the queue, due at `now_ms`, with a fresh attempt count;
/// `false` when it is in another state.
pub async fn requeue(tx: &mut Tx, id: Uuid, now_ms: i64) -> Result<bool, sqlx::Error> {
    let n = with_tx!(tx, c => sqlx::query(
        "UPDATE webhook_deliveries SET status = 'queued', attempts = 0, next_attempt_at_ms = $2, updated_at_ms = $2 \
         WHERE id = $1 AND status = 'dead'")
        .bind(id).bind(now_ms).execute(c).await?.rows_affected());
    Ok(n == 1)
}

/// Deliveries whose attempt started before `before` and never finished go `dead` (the
/// receiver may or may not have it; each carries its event id, so a person can retry).
pub async fn bury_stuck(db: &Db, before: i64, now_ms: i64) -> Result<u64, sqlx::Error> {
    crate::with_write!(db, c => sqlx::query(
        "UPDATE webhook_deliveries SET status = 'dead', last_error = 'the attempt never finished; it may or may not have arrived', \
         updated_at_ms = $2 WHERE status = 'sending' AND last_attempt_at_ms < $1")
        .bind(before).bind(now_ms).execute(c).await.map(|r| r.rows_affected()))
}

/// Whether vendor `id` exists.
pub async fn vendor_exists(db: &Db, id: Uuid) -> Result<bool, sqlx::Error> {
    let n: Option<i64> = with_latest!(db, c => sqlx::query_scalar(
        "SELECT 1 FROM vendors WHERE id = $1").bind(id).fetch_optional(c).await)?;
    Ok(n.is_some())
}
