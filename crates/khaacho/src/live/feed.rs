//! The commit-ordered feed of order events: what the WebSocket hub tails and what a resuming
//! client is replayed from. `order_events` stays the source of truth; the feed only gives each
//! committed event a number, `seq`, in commit order.
//!
//! Why a number of its own: event ids are UUIDv7 made before their transaction commits, and
//! concurrent transactions commit out of id order, so "every event with id > the last one
//! seen" can miss an event that commits after a later id was already read. The consumer of
//! `order.changed` (`orders::transition::consume`) calls [`append`] last in its transaction:
//! `UPDATE live_feed_counter … RETURNING` takes the one counter row's lock and holds it to
//! the commit, so numbers are handed out in commit order on both backends, and reading
//! `seq > n` after `n` was seen misses nothing and repeats nothing.
//!
//! This file imports nothing from `orders`: the consumer hands it plain ids.

use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::base::db::{BuildBatch, Db, Tx, TxInner, push_rows_at};
use crate::{with_latest, with_tx, with_write};

/// The `LISTEN`/`NOTIFY` channel on which a commit to the feed is announced (PostgreSQL).
pub const CHANNEL: &str = "khaacho_live";

/// One committed change to number: `(order id, order creation time, event id)`.
pub type Committed = (Uuid, i64, Uuid);

/// Numbers `events` (in the order given) in the caller's transaction. Call it last in the
/// transaction: the counter row stays locked until the commit.
pub async fn append(tx: &mut Tx, events: &[Committed], now_ms: i64) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let n = events.len() as i64;
    if let TxInner::Pg(c) = tx.inner_mut() {
        // One statement, one text whatever the number of events: the counter's move and the
        // rows it numbers (`WITH ORDINALITY` numbers them in the order given, from 1).
        use crate::base::db::column as col;
        sqlx::query(
            "WITH c AS (UPDATE live_feed_counter SET last = last + $1 WHERE id = 1 RETURNING last) \
             INSERT INTO order_event_feed (seq, event_id, order_id, order_created_at_ms, at_ms) \
             SELECT c.last - $1 + v.ord, v.event_id, v.order_id, v.created, $5 \
             FROM c, unnest($2::uuid[], $3::uuid[], $4::bigint[]) WITH ORDINALITY AS v(event_id, order_id, created, ord) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(n)
        .bind(col(events, |e| e.2))
        .bind(col(events, |e| e.0))
        .bind(col(events, |e| e.1))
        .bind(now_ms)
        .execute(&mut **c)
        .await?;
        return Ok(());
    }
    with_tx!(tx, c => {
        let last: i64 = sqlx::query_scalar(
            "UPDATE live_feed_counter SET last = last + $1 WHERE id = 1 RETURNING last")
            .bind(n).fetch_one(&mut *c).await?;
        let first = last - n + 1;
        let numbered: Vec<(i64, &Committed)> = (first..).zip(events.iter()).collect();
        for chunk in numbered.chunks(500) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO order_event_feed (seq, event_id, order_id, order_created_at_ms, at_ms) ");
            qb.push_values(chunk, |mut b, (seq, (order, created, event))| {
                b.push_bind(*seq).push_bind(*event).push_bind(*order).push_bind(*created).push_bind(now_ms);
            });
            // A change is consumed once (its job completes in this transaction); the guard
            // only keeps a replayed consumer from failing on its own rows.
            qb.push(" ON CONFLICT (event_id) DO NOTHING");
            qb.build_batch().execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// One numbered event with what scoping needs.
#[derive(Clone, Debug)]
pub struct FeedEvent {
    /// Commit-ordered number.
    pub seq: i64,
    /// The `order_events` id.
    pub event_id: Uuid,
    /// The order.
    pub order_id: Uuid,
    /// Its buyer.
    pub retailer_id: Uuid,
    /// Vendors with lines in the order (as the lines are now).
    pub vendors: Vec<Uuid>,
    /// Previous status.
    pub from: Option<String>,
    /// New status.
    pub to: String,
    /// Why.
    pub reason: Option<String>,
    /// Structured detail (full; scoped per reader).
    pub detail: Option<Value>,
    /// When (epoch ms).
    pub at_ms: i64,
    /// The frame as every caller with full visibility gets it, rendered once for all their
    /// sockets (by the first one that sends it).
    pub full_frame: std::sync::OnceLock<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    event_id: Uuid,
    order_id: Uuid,
    order_created_at_ms: i64,
    retailer_id: Uuid,
    from_status: Option<String>,
    to_status: String,
    reason: Option<String>,
    detail: Option<Json<Value>>,
    at_ms: i64,
}

/// Up to `limit` events with `after < seq <= upto` (`upto`: no bound when `None`), in order.
pub async fn read(
    db: &Db,
    after: i64,
    upto: Option<i64>,
    limit: i64,
) -> Result<Vec<FeedEvent>, sqlx::Error> {
    let rows: Vec<Row> = with_latest!(db, c => sqlx::query_as::<_, Row>(
        "SELECT f.seq, f.event_id, f.order_id, f.order_created_at_ms, o.retailer_id, e.from_status, e.to_status, \
                e.reason, e.detail, e.at_ms \
         FROM order_event_feed f \
         JOIN order_events e ON e.order_id = f.order_id AND e.order_created_at_ms = f.order_created_at_ms AND e.id = f.event_id \
         JOIN orders o ON o.id = f.order_id AND o.created_at_ms = f.order_created_at_ms \
         WHERE f.seq > $1 AND ($2 IS NULL OR f.seq <= $2) ORDER BY f.seq LIMIT $3")
        .bind(after).bind(upto).bind(limit).fetch_all(c).await)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys: Vec<(Uuid, i64)> = rows
        .iter()
        .map(|r| (r.order_id, r.order_created_at_ms))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let vendors: Vec<(Uuid, Uuid)> = with_latest!(db, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT DISTINCT l.order_id, l.vendor_id FROM");
        push_rows_at(&mut qb, "order_lines", "l", ("order_id", "order_created_at_ms"), &keys, None);
        qb.push(" WHERE l.vendor_id IS NOT NULL");
        qb.build_query_as::<(Uuid, Uuid)>().fetch_all(c).await
    })?;
    Ok(rows
        .into_iter()
        .map(|r| FeedEvent {
            seq: r.seq,
            event_id: r.event_id,
            order_id: r.order_id,
            retailer_id: r.retailer_id,
            vendors: vendors
                .iter()
                .filter(|(o, _)| *o == r.order_id)
                .map(|(_, v)| *v)
                .collect(),
            from: r.from_status,
            to: r.to_status,
            reason: r.reason,
            detail: r.detail.map(|d| d.0),
            at_ms: r.at_ms,
            full_frame: std::sync::OnceLock::new(),
        })
        .collect())
}

/// The last number handed out and committed (0 for an empty feed).
pub async fn last_seq(db: &Db) -> Result<i64, sqlx::Error> {
    with_latest!(db, c => sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(seq), 0) FROM order_event_feed")
        .fetch_one(c).await)
}

/// The number of the event `event_id`, if it was numbered.
pub async fn seq_of(db: &Db, event_id: Uuid) -> Result<Option<i64>, sqlx::Error> {
    with_latest!(db, c => sqlx::query_scalar::<_, i64>("SELECT seq FROM order_event_feed WHERE event_id = $1")
        .bind(event_id).fetch_optional(c).await)
}

/// Rows one pruning statement deletes at most (a long delete would hold SQLite's one writer).
const PRUNE_CHUNK: i64 = 10_000;

/// Forgets the numbers of events numbered before `before_ms` (`live.history_hours`): the
/// oldest rows in number order up to the first one numbered at or after it. A client that
/// resumes after a forgotten event gets the `404` error frame and reads the orders over HTTP
/// (the events themselves stay in `order_events`). Returns how many were forgotten.
pub async fn prune(db: &Db, before_ms: i64) -> Result<u64, sqlx::Error> {
    // Numbers follow commit order and each row's `at_ms` is the clock at its numbering, so
    // the rows to forget are a prefix in `seq` order: found by walking the primary key from
    // the oldest, never by a scan of the whole feed (rows of processes whose clocks disagree
    // by a little at the edge wait for the next run).
    let keep_from: Option<i64> = with_latest!(db, c => sqlx::query_scalar(
        "SELECT seq FROM order_event_feed WHERE at_ms >= $1 ORDER BY seq LIMIT 1")
        .bind(before_ms).fetch_optional(c).await)?;
    let keep_from = match keep_from {
        Some(seq) => seq,
        None => last_seq(db).await? + 1,
    };
    let mut removed = 0;
    loop {
        let n = with_write!(db, c => sqlx::query(
            "DELETE FROM order_event_feed WHERE seq < $1 \
             AND seq < (SELECT MIN(seq) FROM order_event_feed) + $2")
            .bind(keep_from).bind(PRUNE_CHUNK).execute(c).await.map(|r| r.rows_affected()))?;
        removed += n;
        if n == 0 {
            return Ok(removed);
        }
    }
}
