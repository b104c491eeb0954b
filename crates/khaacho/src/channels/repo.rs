//! SQL of the channels: inbound messages, conversations and the outbox (both backends).

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use uuid::Uuid;

use crate::base::db::{BuildBatch, Db, Tx, TxInner};
use crate::{with_latest, with_replica, with_tx, with_write};

/// A raw inbound message as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct InboundRow {
    /// Id.
    pub id: Uuid,
    /// `twilio`.
    pub provider: String,
    /// The provider's message id.
    pub provider_message_id: String,
    /// `whatsapp` or `sms`.
    pub channel: String,
    /// Sender in E.164.
    pub from_phone: String,
    /// The text.
    pub body: String,
    /// `received`, `processed` or `failed` (its handling went dead).
    pub status: String,
    /// Received at.
    pub received_at_ms: i64,
}

/// A new inbound message.
#[derive(Debug)]
pub struct NewInbound {
    /// Id.
    pub id: Uuid,
    /// The provider's message id (unique per provider).
    pub provider_message_id: String,
    /// Channel.
    pub channel: &'static str,
    /// Sender in E.164.
    pub from_phone: String,
    /// The number written to.
    pub to_address: Option<String>,
    /// The text.
    pub body: String,
    /// Attachments announced.
    pub num_media: i32,
    /// Every form parameter.
    pub params: serde_json::Value,
    /// Received at.
    pub at_ms: i64,
}

/// Stores inbound messages with one statement (per chunk); returns the ids of those stored
/// now — a provider message id stored before (a retried webhook) is skipped.
pub async fn insert_inbound(tx: &mut Tx, rows: &[&NewInbound]) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut stored = Vec::with_capacity(rows.len());
    // Ten parameters a row; both backends allow far more than 100 × 10.
    for chunk in rows.chunks(100) {
        let ids: Vec<(Uuid,)> = with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO inbound_messages (id, provider, provider_message_id, channel, from_phone, \
                 to_address, body, num_media, params, received_at_ms) ");
            qb.push_values(chunk, |mut b, m| {
                b.push_bind(m.id)
                    .push_bind("twilio")
                    .push_bind(&m.provider_message_id)
                    .push_bind(m.channel)
                    .push_bind(&m.from_phone)
                    .push_bind(m.to_address.as_deref())
                    .push_bind(&m.body)
                    .push_bind(m.num_media)
                    .push_bind(Json(&m.params))
                    .push_bind(m.at_ms);
            });
            qb.push(" ON CONFLICT (provider, provider_message_id) DO NOTHING RETURNING id");
            qb.build_batch_as().fetch_all(&mut *c).await
        })?;
        stored.extend(ids.into_iter().map(|r| r.0));
    }
    Ok(stored)
}

/// Inbound message `id` (`None` when it does not exist) and the messages of the same phone
/// that arrived before it (UUIDv7: arrival order) and are not handled yet, oldest first (at
/// most 20), in one read.
pub async fn inbound_with_earlier(
    db: &Db,
    id: Uuid,
) -> Result<(Option<InboundRow>, Vec<InboundRow>), sqlx::Error> {
    const SQL: &str = "SELECT id, provider, provider_message_id, channel, from_phone, body, status, \
        received_at_ms FROM inbound_messages WHERE id = $1 UNION ALL \
        SELECT * FROM (SELECT id, provider, provider_message_id, channel, from_phone, body, status, \
        received_at_ms FROM inbound_messages WHERE status = 'received' AND id < $1 \
        AND from_phone = (SELECT from_phone FROM inbound_messages WHERE id = $1) ORDER BY id LIMIT 20) e";
    let rows: Vec<InboundRow> = with_latest!(db, c => sqlx::query_as::<_, InboundRow>(SQL)
        .bind(id).fetch_all(c).await)?;
    let (mut this, mut earlier): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.id == id);
    earlier.sort_by_key(|r| r.id);
    Ok((this.pop(), earlier))
}

/// Marks an inbound message handled; `false` when another run already did.
pub async fn mark_processed(tx: &mut Tx, id: Uuid, at_ms: i64) -> Result<bool, sqlx::Error> {
    let n = with_tx!(tx, c => sqlx::query(
        "UPDATE inbound_messages SET status = 'processed', processed_at_ms = $2 WHERE id = $1 AND status = 'received'")
        .bind(id).bind(at_ms).execute(c).await?.rows_affected());
    Ok(n == 1)
}

/// Marks a message whose handling went dead (so the phone's later messages do not wait on it).
pub async fn mark_failed(db: &Db, id: Uuid, at_ms: i64) -> Result<(), sqlx::Error> {
    crate::with_write!(db, c => sqlx::query(
        "UPDATE inbound_messages SET status = 'failed', processed_at_ms = $2 WHERE id = $1 AND status = 'received'")
        .bind(id).bind(at_ms).execute(c).await.map(|_| ()))
}

/// A conversation row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ConversationRow {
    /// E.164.
    pub phone: String,
    /// `en` or `ne`.
    pub language: String,
    /// Pending draft and questions.
    pub state: Option<Json<serde_json::Value>>,
    /// The state is void after this.
    pub expires_at_ms: Option<i64>,
    /// When the one unknown-sender alert was raised.
    pub unknown_alerted_at_ms: Option<i64>,
    /// Version for the conditional save.
    pub updated_at_ms: i64,
}

/// The conversation with `phone`, if any.
pub async fn conversation(db: &Db, phone: &str) -> Result<Option<ConversationRow>, sqlx::Error> {
    with_latest!(db, c => sqlx::query_as::<_, ConversationRow>(
        "SELECT phone, language, state, expires_at_ms, unknown_alerted_at_ms, updated_at_ms FROM conversations WHERE phone = $1")
        .bind(phone).fetch_optional(c).await)
}

/// Saves a conversation if nobody changed it since `seen` (its `updated_at_ms` when read,
/// `None` when there was no row); `false` when someone did (the caller retries).
pub async fn save_conversation(
    tx: &mut Tx,
    row: &ConversationRow,
    seen: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let n = match seen {
        None => with_tx!(tx, c => sqlx::query(
            "INSERT INTO conversations (phone, language, state, expires_at_ms, unknown_alerted_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (phone) DO NOTHING")
            .bind(&row.phone).bind(&row.language).bind(&row.state).bind(row.expires_at_ms)
            .bind(row.unknown_alerted_at_ms).bind(row.updated_at_ms)
            .execute(c).await?.rows_affected()),
        Some(seen) => with_tx!(tx, c => sqlx::query(
            "UPDATE conversations SET language = $2, state = $3, expires_at_ms = $4, unknown_alerted_at_ms = $5, \
             updated_at_ms = $6 WHERE phone = $1 AND updated_at_ms = $7")
            .bind(&row.phone).bind(&row.language).bind(&row.state).bind(row.expires_at_ms)
            .bind(row.unknown_alerted_at_ms).bind(row.updated_at_ms).bind(seen)
            .execute(c).await?.rows_affected()),
    };
    Ok(n == 1)
}

/// An outbound message as stored.
#[derive(Clone, Debug, Serialize, Deserialize, sqlx::FromRow)]
pub struct OutboundRow {
    /// Id.
    pub id: Uuid,
    /// E.164.
    pub recipient: String,
    /// `whatsapp` or `sms`.
    pub channel: String,
    /// Template name.
    pub template: String,
    /// Its variables.
    pub vars: Json<serde_json::Value>,
    /// `en` or `ne`.
    pub language: String,
    /// Rendered text.
    pub body: String,
    /// `queued`, `sending`, `sent`, `delivered`, `failed`, `dead`.
    pub status: String,
    /// Send attempts so far.
    pub attempts: i32,
    /// Not before.
    pub next_attempt_at_ms: i64,
    /// The last attempt.
    pub last_attempt_at_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Twilio's SID.
    pub provider_sid: Option<String>,
    /// The inbound message it answers.
    pub inbound_id: Option<Uuid>,
    /// Created at.
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
}

const OUT_COLS: &str = "id, recipient, channel, template, vars, language, body, status, attempts, next_attempt_at_ms, \
     last_attempt_at_ms, last_error, provider_sid, inbound_id, created_at_ms, updated_at_ms";

/// Writes an outbound message (status `queued`, due at `row.next_attempt_at_ms`).
pub async fn insert_outbound(tx: &mut Tx, row: &OutboundRow) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO outbound_messages (id, recipient, channel, template, vars, language, body, status, attempts, \
         next_attempt_at_ms, inbound_id, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8, $9, $10, $10)")
        .bind(row.id).bind(&row.recipient).bind(&row.channel).bind(&row.template).bind(&row.vars)
        .bind(&row.language).bind(&row.body).bind(row.next_attempt_at_ms).bind(row.inbound_id).bind(row.created_at_ms)
        .execute(c).await.map(|_| ()))
}

/// Writes `row` unless a message with `key` exists already; whether it was written.
pub async fn insert_outbound_once(
    tx: &mut Tx,
    row: &OutboundRow,
    key: &str,
) -> Result<bool, sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO outbound_messages (id, recipient, channel, template, vars, language, body, status, attempts, \
         next_attempt_at_ms, inbound_id, created_at_ms, updated_at_ms, dedup_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8, $9, $10, $10, $11) ON CONFLICT (dedup_key) DO NOTHING")
        .bind(row.id).bind(&row.recipient).bind(&row.channel).bind(&row.template).bind(&row.vars)
        .bind(&row.language).bind(&row.body).bind(row.next_attempt_at_ms).bind(row.inbound_id).bind(row.created_at_ms)
        .bind(key).execute(c).await.map(|r| r.rows_affected() == 1))
}

/// [`insert_outbound_once`] for many rows: returns the ids of the rows written (those whose
/// key was not there yet). On PostgreSQL one statement over an array per column (one text
/// whatever the number of rows, so prepared and planned once per connection, where a
/// `VALUES` list was a text per size); on SQLite one statement per 200 rows.
pub async fn insert_outbound_many(
    tx: &mut Tx,
    rows: &[(OutboundRow, String)],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    if let TxInner::Pg(t) = tx.inner_mut() {
        use crate::base::db::column as col;
        return sqlx::query_scalar(
            "INSERT INTO outbound_messages (id, recipient, channel, template, vars, language, body, status, attempts, \
             next_attempt_at_ms, inbound_id, created_at_ms, updated_at_ms, dedup_key) \
             SELECT id, recipient, channel, template, vars, language, body, 'queued', 0, next_attempt_at_ms, \
             inbound_id, created_at_ms, created_at_ms, dedup_key \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[], \
             $8::bigint[], $9::uuid[], $10::bigint[], $11::text[]) \
             AS v(id, recipient, channel, template, vars, language, body, next_attempt_at_ms, inbound_id, \
             created_at_ms, dedup_key) \
             ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
        )
        .bind(col(rows, |(r, _)| r.id))
        .bind(col(rows, |(r, _)| r.recipient.as_str()))
        .bind(col(rows, |(r, _)| r.channel.as_str()))
        .bind(col(rows, |(r, _)| r.template.as_str()))
        .bind(col(rows, |(r, _)| Json(&r.vars.0)))
        .bind(col(rows, |(r, _)| r.language.as_str()))
        .bind(col(rows, |(r, _)| r.body.as_str()))
        .bind(col(rows, |(r, _)| r.next_attempt_at_ms))
        .bind(col(rows, |(r, _)| r.inbound_id))
        .bind(col(rows, |(r, _)| r.created_at_ms))
        .bind(col(rows, |(_, key)| key.as_str()))
        .fetch_all(&mut **t)
        .await;
    }
    let mut written = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(200) {
        let ids: Vec<Uuid> = with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO outbound_messages (id, recipient, channel, template, vars, language, body, status, attempts, \
                 next_attempt_at_ms, inbound_id, created_at_ms, updated_at_ms, dedup_key) ");
            qb.push_values(chunk, |mut b, (row, key)| {
                b.push_bind(row.id).push_bind(&row.recipient).push_bind(&row.channel).push_bind(&row.template)
                    .push_bind(&row.vars).push_bind(&row.language).push_bind(&row.body).push_bind("queued")
                    .push_bind(0_i32).push_bind(row.next_attempt_at_ms).push_bind(row.inbound_id)
                    .push_bind(row.created_at_ms).push_bind(row.created_at_ms).push_bind(key);
            });
            qb.push(" ON CONFLICT (dedup_key) DO NOTHING RETURNING id");
            qb.build_batch_scalar::<Uuid>().fetch_all(&mut *c).await?
        });
        written.extend(ids);
    }
    Ok(written)
}

/// Filters of [`list_outbound`].
#[derive(Debug, Default)]
pub struct OutboundFilter<'a> {
    /// Only to this phone.
    pub recipient: Option<&'a str>,
    /// Only in this status.
    pub status: Option<&'a str>,
    /// Only newer than this id (UUIDv7, so: created later), oldest first (for polling).
    pub after: Option<Uuid>,
    /// Only older than this id, newest first (the next page of the default listing).
    pub before: Option<Uuid>,
    /// Page size.
    pub limit: i64,
}

/// A page of outbound messages.
pub async fn list_outbound(
    db: &Db,
    f: &OutboundFilter<'_>,
) -> Result<Vec<OutboundRow>, sqlx::Error> {
    let order = if f.after.is_some() { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT {OUT_COLS} FROM outbound_messages WHERE ($1 IS NULL OR recipient = $1) AND ($2 IS NULL OR status = $2) \
         AND ($3 IS NULL OR id > $3) AND ($4 IS NULL OR id < $4) ORDER BY id {order} LIMIT $5"
    );
    with_replica!(db, c => sqlx::query_as::<_, OutboundRow>(sqlx::AssertSqlSafe(sql))
        .bind(f.recipient).bind(f.status).bind(f.after).bind(f.before).bind(f.limit).fetch_all(c).await)
}

/// One outbound message.
pub async fn find_outbound(db: &Db, id: Uuid) -> Result<Option<OutboundRow>, sqlx::Error> {
    let sql = format!("SELECT {OUT_COLS} FROM outbound_messages WHERE id = $1");
    with_latest!(db, c => sqlx::query_as::<_, OutboundRow>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(c).await)
}

/// Ids of queued messages due at `now_ms`, oldest first: e-mails when `email`, WhatsApp and
/// SMS when `twilio` (rows of a channel that cannot be sent never crowd out the others).
pub async fn due(
    db: &Db,
    now_ms: i64,
    limit: i64,
    twilio: bool,
    email: bool,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let rows: Vec<(Uuid,)> = with_latest!(db, c => sqlx::query_as(
        "SELECT id FROM outbound_messages WHERE status = 'queued' AND next_attempt_at_ms <= $1 \
         AND ((channel = 'email' AND $3) OR (channel <> 'email' AND $4)) \
         ORDER BY next_attempt_at_ms, id LIMIT $2")
        .bind(now_ms).bind(limit).bind(email).bind(twilio).fetch_all(c).await)?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// The last send attempt to `recipient` (any message), for the per-recipient throttle.
pub async fn last_attempt_to(db: &Db, recipient: &str) -> Result<Option<i64>, sqlx::Error> {
    with_latest!(db, c => sqlx::query_scalar(
        "SELECT MAX(last_attempt_at_ms) FROM outbound_messages WHERE recipient = $1")
        .bind(recipient).fetch_one(c).await)
}

/// When `phone` last wrote on WhatsApp (the start of its 24-hour window).
pub async fn last_whatsapp_from(db: &Db, phone: &str) -> Result<Option<i64>, sqlx::Error> {
    with_latest!(db, c => sqlx::query_scalar(
        "SELECT MAX(received_at_ms) FROM inbound_messages WHERE from_phone = $1 AND channel = 'whatsapp'")
        .bind(phone).fetch_one(c).await)
}

/// Moves a due message to `later` (held back by the throttle).
pub async fn defer(db: &Db, id: Uuid, later: i64) -> Result<(), sqlx::Error> {
    crate::with_write!(db, c => sqlx::query(
        "UPDATE outbound_messages SET next_attempt_at_ms = $2 WHERE id = $1 AND status = 'queued'")
        .bind(id).bind(later).execute(c).await.map(|_| ()))
}

/// Claims a queued message for one attempt (`sending`, attempts + 1): `false` when it is not
/// queued any more, so two sender runs never send one message twice.
pub async fn claim(db: &Db, id: Uuid, now_ms: i64) -> Result<bool, sqlx::Error> {
    let n = crate::with_write!(db, c => sqlx::query(
        "UPDATE outbound_messages SET status = 'sending', attempts = attempts + 1, last_attempt_at_ms = $2, \
         updated_at_ms = $2 WHERE id = $1 AND status = 'queued'")
        .bind(id).bind(now_ms).execute(c).await?.rows_affected());
    Ok(n == 1)
}

/// Records an attempt's outcome on a `sending` message: `sent` with the provider's SID, or
/// back to `queued` for `next` (or `dead` without one) with the error.
pub async fn finish_attempt(
    db: &Db,
    id: Uuid,
    outcome: Result<&str, (&str, Option<i64>)>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let (status, sid, error, next) = match outcome {
        Ok(sid) => ("sent", Some(sid), None, None),
        Err((e, Some(next))) => ("queued", None, Some(e), Some(next)),
        Err((e, None)) => ("dead", None, Some(e), None),
    };
    crate::with_write!(db, c => sqlx::query(
        "UPDATE outbound_messages SET status = $2, provider_sid = COALESCE($3, provider_sid), last_error = $4, \
         next_attempt_at_ms = COALESCE($5, next_attempt_at_ms), updated_at_ms = $6 WHERE id = $1 AND status = 'sending'")
        .bind(id).bind(status).bind(sid).bind(error).bind(next).bind(now_ms)
        .execute(c).await.map(|_| ()))
}

/// Marks a `sending` message `dead` with `error`, in the caller's transaction.
pub async fn finish_dead_tx(
    tx: &mut Tx,
    id: Uuid,
    error: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "UPDATE outbound_messages SET status = 'dead', last_error = $2, updated_at_ms = $3 WHERE id = $1 AND status = 'sending'")
        .bind(id).bind(error).bind(now_ms).execute(c).await.map(|_| ()))
}

/// Applies a provider status callback. `allowed_from` are the statuses it may overwrite
/// (never a terminal one). Returns whether a row changed.
pub async fn apply_callback(
    db: &Db,
    sid: &str,
    status: &str,
    allowed_from: &[&str],
    error: Option<&str>,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let list = allowed_from
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE outbound_messages SET status = $2, last_error = COALESCE($3, last_error), updated_at_ms = $4 \
         WHERE provider_sid = $1 AND status IN ({list})"
    );
    let n = crate::with_write!(db, c => sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(sid).bind(status).bind(error).bind(now_ms).execute(c).await?.rows_affected());
    Ok(n > 0)
}

/// Puts a `dead` or `failed` message back in the queue, due at `now_ms`, with a fresh
/// attempt count; `false` when it is in another state.
pub async fn requeue(tx: &mut Tx, id: Uuid, now_ms: i64) -> Result<bool, sqlx::Error> {
    let n = with_tx!(tx, c => sqlx::query(
        "UPDATE outbound_messages SET status = 'queued', attempts = 0, next_attempt_at_ms = $2, updated_at_ms = $2 \
         WHERE id = $1 AND status IN ('dead', 'failed')")
        .bind(id).bind(now_ms).execute(c).await?.rows_affected());
    Ok(n == 1)
}

/// Messages whose attempt started before `before` and never finished go `dead` (their
/// outcome is unknown: sending again could send twice). Returns how many.
pub async fn bury_stuck(db: &Db, before: i64, now_ms: i64) -> Result<u64, sqlx::Error> {
    crate::with_write!(db, c => sqlx::query(
        "UPDATE outbound_messages SET status = 'dead', last_error = 'the attempt never finished; it may or may not have been sent', \
         updated_at_ms = $2 WHERE status = 'sending' AND last_attempt_at_ms < $1")
        .bind(before).bind(now_ms).execute(c).await.map(|r| r.rows_affected()))
}

/// Rows one retention statement deletes at most (a long delete would hold SQLite's one writer).
const PURGE_CHUNK: i64 = 5_000;

/// Deletes the messages finished before `before_ms` (`channels.retention_days`): inbound ones
/// handled (or given up on) by then, outbox rows sent, delivered, failed or dead by then. A
/// message still waiting — not handled yet, or not sent yet — stays whatever its age: nothing
/// accepted is lost to the retention. Returns how many were deleted.
pub async fn purge_messages(db: &Db, before_ms: i64) -> Result<u64, sqlx::Error> {
    let mut removed = 0;
    for sql in [
        "DELETE FROM inbound_messages WHERE id IN (SELECT id FROM inbound_messages \
         WHERE status <> 'received' AND COALESCE(processed_at_ms, received_at_ms) < $1 LIMIT $2)",
        "DELETE FROM outbound_messages WHERE id IN (SELECT id FROM outbound_messages \
         WHERE status NOT IN ('queued', 'sending') AND updated_at_ms < $1 LIMIT $2)",
    ] {
        loop {
            let n = with_write!(db, c => sqlx::query(sql)
                .bind(before_ms).bind(PURGE_CHUNK).execute(c).await.map(|r| r.rows_affected()))?;
            removed += n;
            if n < PURGE_CHUNK as u64 {
                break;
            }
        }
    }
    Ok(removed)
}
