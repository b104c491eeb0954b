//! SQL of credit accounts, holds, ledger entries, payments and changes. Scoped reads take the
//! retailer first.

use uuid::Uuid;

use crate::base::db::{BuildBatch, Db, KeyFilter, Tx, TxInner, push_ids};
use crate::base::time::now_ms;
use crate::{with_keyed, with_latest, with_replica, with_tx};

/// A credit account row.
#[derive(Clone, Debug, serde::Deserialize, sqlx::FromRow)]
pub struct AccountRow {
    /// The retailer.
    pub retailer_id: Uuid,
    /// Credit limit.
    pub limit_paisa: i64,
    /// Sum of pending holds.
    pub held_paisa: i64,
    /// Posted, unpaid debits.
    pub outstanding_paisa: i64,
    /// Paid beyond what was owed.
    pub credit_balance_paisa: i64,
    /// `active` or `blocked`.
    pub status: String,
    /// Payment terms in days.
    pub terms_days: i32,
    /// Credit score, once scored.
    pub score: Option<i32>,
    /// Band, once scored.
    pub band: Option<String>,
    /// Limit before automatic cuts.
    pub original_limit_paisa: i64,
    /// Consecutive late payments since the last cut.
    pub late_streak: i32,
    /// Last automatic limit change.
    pub limit_changed_at_ms: Option<i64>,
    /// Newest ledger sequence number.
    pub last_seq: i64,
    /// Credit orders reserved.
    pub order_count: i64,
    /// Their total value.
    pub order_value_paisa: i64,
    /// Opened.
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
}

const ACCOUNT_COLS: &str = "retailer_id, limit_paisa, held_paisa, outstanding_paisa, credit_balance_paisa, status, \
     terms_days, score, band, original_limit_paisa, late_streak, limit_changed_at_ms, last_seq, order_count, \
     order_value_paisa, created_at_ms, updated_at_ms";

/// A hold row.
#[derive(Clone, Debug, sqlx::FromRow, serde::Deserialize)]
pub struct HoldRow {
    /// The order.
    pub order_id: Uuid,
    /// The retailer.
    pub retailer_id: Uuid,
    /// Reserved amount.
    pub amount_paisa: i64,
    /// `pending`, `posted`, `voided`, `expired`.
    pub status: String,
    /// Who approved it past the limit.
    pub override_by: Option<String>,
    /// Delivered amount, once posted.
    pub posted_paisa: Option<i64>,
}

/// A ledger entry row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LedgerRow {
    /// Id.
    pub id: Uuid,
    /// The retailer.
    pub retailer_id: Uuid,
    /// Per-account sequence, from 1.
    pub seq: i64,
    /// Entry kind.
    pub kind: String,
    /// Signed amount: debits positive.
    pub amount_paisa: i64,
    /// Running balance after this entry.
    pub balance_paisa: i64,
    /// Order concerned.
    pub order_id: Option<Uuid>,
    /// Payment concerned.
    pub payment_id: Option<Uuid>,
    /// Debits: due date.
    pub due_at_ms: Option<i64>,
    /// Debits: unpaid rest.
    pub open_paisa: Option<i64>,
    /// Debits: when fully paid.
    pub paid_at_ms: Option<i64>,
    /// Free note (payment method, reversal reason).
    pub note: Option<String>,
    /// Time.
    pub at_ms: i64,
}

const ENTRY_COLS: &str = "id, retailer_id, seq, kind, amount_paisa, balance_paisa, order_id, payment_id, due_at_ms, \
     open_paisa, paid_at_ms, note, at_ms";

/// Opens accounts with `limit` for the retailers that have none. On PostgreSQL one statement
/// over an array of the retailers (one text whatever their number, planned once per
/// connection); on SQLite a multi-row `VALUES`. Pass only retailers believed to have no
/// account: on PostgreSQL a key that exists waits for any transaction updating its row.
pub async fn ensure_accounts(
    tx: &mut Tx,
    retailers: &[Uuid],
    limit: i64,
) -> Result<(), sqlx::Error> {
    if retailers.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    if let TxInner::Pg(c) = tx.inner_mut() {
        sqlx::query(
            "INSERT INTO credit_accounts (retailer_id, limit_paisa, original_limit_paisa, created_at_ms, updated_at_ms) \
             SELECT r, $2, $2, $3, $3 FROM unnest($1::uuid[]) AS r ON CONFLICT (retailer_id) DO NOTHING",
        )
        .bind(retailers)
        .bind(limit)
        .bind(now)
        .execute(&mut **c)
        .await?;
        return Ok(());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO credit_accounts (retailer_id, limit_paisa, original_limit_paisa, created_at_ms, updated_at_ms) ");
        qb.push_values(retailers, |mut b, r| {
            b.push_bind(*r).push_bind(limit).push_bind(limit).push_bind(now).push_bind(now);
        });
        qb.push(" ON CONFLICT (retailer_id) DO NOTHING");
        qb.build_batch().execute(&mut *c).await?;
    });
    Ok(())
}

/// Dates `retailer`'s account back to `opened_at_ms` (the demo seed opens accounts with a
/// past history; account age counts in the credit score).
pub async fn set_opened_at(
    tx: &mut Tx,
    retailer: Uuid,
    opened_at_ms: i64,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query("UPDATE credit_accounts SET created_at_ms = $1 WHERE retailer_id = $2")
        .bind(opened_at_ms).bind(retailer).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// The accounts of `retailers` inside a transaction.
pub async fn accounts_tx(tx: &mut Tx, retailers: &[Uuid]) -> Result<Vec<AccountRow>, sqlx::Error> {
    if retailers.is_empty() {
        return Ok(Vec::new());
    }
    accounts_where(tx, retailers, "").await
}

/// The accounts of `retailers` (sorted), locked for update in that order on PostgreSQL
/// (SQLite's transaction already holds the write lock).
pub async fn accounts_for_update(
    tx: &mut Tx,
    retailers: &[Uuid],
) -> Result<Vec<AccountRow>, sqlx::Error> {
    if retailers.is_empty() {
        return Ok(Vec::new());
    }
    let lock = if tx.is_postgres() {
        " ORDER BY retailer_id FOR UPDATE"
    } else {
        ""
    };
    accounts_where(tx, retailers, lock).await
}

/// The query of the accounts of `retailers`.
pub fn push_accounts<DB: KeyFilter>(qb: &mut sqlx::QueryBuilder<DB>, retailers: &[Uuid]) {
    qb.push(format_args!(
        "SELECT {ACCOUNT_COLS} FROM credit_accounts WHERE"
    ));
    push_ids(qb, "retailer_id", retailers);
}

/// The query of those of `orders` that have a credit hold (`order_id`), whatever its state.
pub fn push_holds_of<DB: KeyFilter>(qb: &mut sqlx::QueryBuilder<DB>, orders: &[Uuid]) {
    qb.push("SELECT order_id FROM credit_holds WHERE");
    push_ids(qb, "order_id", orders);
}

/// The accounts of `retailers`, with `suffix` (ordering, locking) after the condition.
async fn accounts_where(
    tx: &mut Tx,
    retailers: &[Uuid],
    suffix: &str,
) -> Result<Vec<AccountRow>, sqlx::Error> {
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new("");
        push_accounts(&mut qb, retailers);
        qb.push(suffix);
        qb.build_query_as::<AccountRow>().fetch_all(c).await
    })
}

/// One account inside a transaction.
pub async fn account_tx(tx: &mut Tx, retailer: Uuid) -> Result<Option<AccountRow>, sqlx::Error> {
    Ok(accounts_tx(tx, &[retailer]).await?.into_iter().next())
}

/// One account, locked for update (PostgreSQL; SQLite's transaction holds the write lock).
pub async fn account_for_update_opt(
    tx: &mut Tx,
    retailer: Uuid,
) -> Result<Option<AccountRow>, sqlx::Error> {
    let lock = if tx.is_postgres() { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {ACCOUNT_COLS} FROM credit_accounts WHERE retailer_id = $1{lock}");
    with_tx!(tx, c => sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(sql)).bind(retailer).fetch_optional(c).await)
}

/// [`account_for_update_opt`] for an account that must exist (it has a hold or an entry).
pub async fn account_for_update(tx: &mut Tx, retailer: Uuid) -> Result<AccountRow, sqlx::Error> {
    account_for_update_opt(tx, retailer)
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

/// One account, as last committed.
pub async fn account(db: &Db, retailer: Uuid) -> Result<Option<AccountRow>, sqlx::Error> {
    let sql = format!("SELECT {ACCOUNT_COLS} FROM credit_accounts WHERE retailer_id = $1");
    with_latest!(db, c => sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(sql)).bind(retailer).fetch_optional(c).await)
}

/// The hold of `order`, if any.
pub async fn hold(tx: &mut Tx, order: Uuid) -> Result<Option<HoldRow>, sqlx::Error> {
    with_tx!(tx, c => sqlx::query_as::<_, HoldRow>(
        "SELECT order_id, retailer_id, amount_paisa, status, override_by, posted_paisa FROM credit_holds WHERE order_id = $1")
        .bind(order).fetch_optional(c).await)
}

/// The hold of `order` as last committed (for the order detail; by key: planned once).
pub async fn hold_of(db: &Db, order: Uuid) -> Result<Option<HoldRow>, sqlx::Error> {
    with_keyed!(db, c => sqlx::query_as::<_, HoldRow>(
        "SELECT order_id, retailer_id, amount_paisa, status, override_by, posted_paisa FROM credit_holds WHERE order_id = $1")
        .bind(order).fetch_optional(c).await)
}

/// Writes a pending hold.
pub async fn insert_hold(
    tx: &mut Tx,
    order: Uuid,
    retailer: Uuid,
    amount: i64,
    override_by: Option<&str>,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO credit_holds (order_id, retailer_id, amount_paisa, status, override_by, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, 'pending', $4, $5, $5)")
        .bind(order).bind(retailer).bind(amount).bind(override_by).bind(now)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Moves a hold to `status` (and records the posted amount).
pub async fn set_hold_status(
    tx: &mut Tx,
    order: Uuid,
    status: &str,
    posted: Option<i64>,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "UPDATE credit_holds SET status = $1, posted_paisa = COALESCE($2, posted_paisa), updated_at_ms = $3 WHERE order_id = $4")
        .bind(status).bind(posted).bind(now_ms()).bind(order)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Writes a ledger entry.
pub async fn insert_entry(tx: &mut Tx, e: &LedgerRow) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO ledger_entries ({ENTRY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    );
    with_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(e.id).bind(e.retailer_id).bind(e.seq).bind(&e.kind).bind(e.amount_paisa).bind(e.balance_paisa)
        .bind(e.order_id).bind(e.payment_id).bind(e.due_at_ms).bind(e.open_paisa).bind(e.paid_at_ms)
        .bind(e.note.as_deref()).bind(e.at_ms)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// The entry of `kind` for `order`, if posted.
pub async fn entry_for_order(
    tx: &mut Tx,
    order: Uuid,
    kind: &str,
) -> Result<Option<LedgerRow>, sqlx::Error> {
    let sql = format!("SELECT {ENTRY_COLS} FROM ledger_entries WHERE order_id = $1 AND kind = $2");
    with_tx!(tx, c => sqlx::query_as::<_, LedgerRow>(sqlx::AssertSqlSafe(sql)).bind(order).bind(kind).fetch_optional(c).await)
}

/// The entry of a payment.
pub async fn entry_for_payment(
    tx: &mut Tx,
    payment: Uuid,
) -> Result<Option<LedgerRow>, sqlx::Error> {
    let sql = format!("SELECT {ENTRY_COLS} FROM ledger_entries WHERE payment_id = $1");
    with_tx!(tx, c => sqlx::query_as::<_, LedgerRow>(sqlx::AssertSqlSafe(sql)).bind(payment).fetch_optional(c).await)
}

/// Open debits of `retailer`, oldest due first, locked for allocation.
pub async fn open_debits(tx: &mut Tx, retailer: Uuid) -> Result<Vec<LedgerRow>, sqlx::Error> {
    let lock = if tx.is_postgres() { " FOR UPDATE" } else { "" };
    let sql = format!(
        "SELECT {ENTRY_COLS} FROM ledger_entries WHERE retailer_id = $1 AND open_paisa > 0 ORDER BY due_at_ms, seq{lock}"
    );
    with_tx!(tx, c => sqlx::query_as::<_, LedgerRow>(sqlx::AssertSqlSafe(sql)).bind(retailer).fetch_all(c).await)
}

/// Lowers a debit's open amount; returns whether it is now fully paid.
pub async fn pay_down(
    tx: &mut Tx,
    debit: Uuid,
    amount: i64,
    at_ms: i64,
) -> Result<bool, sqlx::Error> {
    let open: i64 = with_tx!(tx, c => sqlx::query_scalar(
        "UPDATE ledger_entries SET open_paisa = open_paisa - $1, \
         paid_at_ms = CASE WHEN open_paisa - $1 = 0 THEN $2 ELSE paid_at_ms END WHERE id = $3 RETURNING open_paisa")
        .bind(amount).bind(at_ms).bind(debit)
        .fetch_one(c).await)?;
    Ok(open == 0)
}

/// The payment with `reference` of `retailer`: `(id, amount)`.
pub async fn payment_by_reference(
    tx: &mut Tx,
    retailer: Uuid,
    reference: &str,
) -> Result<Option<(Uuid, i64)>, sqlx::Error> {
    with_tx!(tx, c => sqlx::query_as(
        "SELECT id, amount_paisa FROM payments WHERE retailer_id = $1 AND reference = $2")
        .bind(retailer).bind(reference).fetch_optional(c).await)
}

/// Writes a payment.
#[allow(clippy::too_many_arguments)]
pub async fn insert_payment(
    tx: &mut Tx,
    id: Uuid,
    retailer: Uuid,
    amount: i64,
    method: &str,
    reference: &str,
    actor: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO payments (id, retailer_id, amount_paisa, method, reference, recorded_by, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(id).bind(retailer).bind(amount).bind(method).bind(reference).bind(actor).bind(at_ms)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Sets the late-payment streak.
pub async fn set_late_streak(tx: &mut Tx, retailer: Uuid, streak: i32) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query("UPDATE credit_accounts SET late_streak = $1 WHERE retailer_id = $2")
        .bind(streak).bind(retailer).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Sets the score and band of `retailer`'s account (the band `None` while unrated) and
/// returns the account as updated: the UPDATE takes the row's lock, so what it returns stays
/// as it is until the commit.
pub async fn set_score(
    tx: &mut Tx,
    retailer: Uuid,
    score: u16,
    band: Option<&str>,
    now: i64,
) -> Result<Option<AccountRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE credit_accounts SET score = $1, band = $2, updated_at_ms = $3 WHERE retailer_id = $4 \
         RETURNING {ACCOUNT_COLS}"
    );
    with_tx!(tx, c => sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(sql))
        .bind(i32::from(score)).bind(band).bind(now).bind(retailer)
        .fetch_optional(c).await)
}

/// Sets the limit.
pub async fn set_limit(tx: &mut Tx, retailer: Uuid, limit: i64) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query("UPDATE credit_accounts SET limit_paisa = $1, updated_at_ms = $2 WHERE retailer_id = $3")
        .bind(limit).bind(now_ms()).bind(retailer).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Sets the status.
pub async fn set_status(tx: &mut Tx, retailer: Uuid, status: &str) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query("UPDATE credit_accounts SET status = $1, updated_at_ms = $2 WHERE retailer_id = $3")
        .bind(status).bind(now_ms()).bind(retailer).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Records a change of limit or status.
pub async fn record_change(
    tx: &mut Tx,
    retailer: Uuid,
    field: &str,
    old: &str,
    new: &str,
    reason: &str,
    actor: &str,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "INSERT INTO credit_changes (id, retailer_id, field, old_value, new_value, reason, actor, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(Uuid::now_v7()).bind(retailer).bind(field).bind(old).bind(new).bind(reason).bind(actor).bind(now_ms())
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// A page of `retailer`'s ledger, newest first, before sequence `before`.
pub async fn ledger(
    db: &Db,
    retailer: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<LedgerRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ENTRY_COLS} FROM ledger_entries WHERE retailer_id = $1 AND ($2 IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3"
    );
    with_replica!(db, c => sqlx::query_as::<_, LedgerRow>(sqlx::AssertSqlSafe(sql))
        .bind(retailer).bind(before).bind(limit).fetch_all(c).await)
}

/// One account's counters next to what its holds and ledger say.
#[derive(Debug, sqlx::FromRow)]
pub struct ReconRow {
    /// The retailer.
    pub retailer_id: Uuid,
    /// `held` counter.
    pub held: i64,
    /// `outstanding` counter.
    pub outstanding: i64,
    /// `credit_balance` counter.
    pub credit_balance: i64,
    /// Σ pending holds.
    pub pending_holds: i64,
    /// Σ open debits.
    pub open_debits: i64,
    /// Σ entry amounts.
    pub entries_sum: i64,
    /// The newest entry's running balance (0 without entries).
    pub last_balance: i64,
}

/// Every account with the sums that must match its counters.
pub async fn reconciliation(db: &Db) -> Result<Vec<ReconRow>, sqlx::Error> {
    with_latest!(db, c => sqlx::query_as::<_, ReconRow>(
        "SELECT a.retailer_id, a.held_paisa AS held, a.outstanding_paisa AS outstanding, a.credit_balance_paisa AS credit_balance, \
           CAST(COALESCE((SELECT SUM(h.amount_paisa) FROM credit_holds h WHERE h.retailer_id = a.retailer_id AND h.status = 'pending'), 0) AS BIGINT) AS pending_holds, \
           CAST(COALESCE((SELECT SUM(e.open_paisa) FROM ledger_entries e WHERE e.retailer_id = a.retailer_id AND e.kind = 'order_debit'), 0) AS BIGINT) AS open_debits, \
           CAST(COALESCE((SELECT SUM(e.amount_paisa) FROM ledger_entries e WHERE e.retailer_id = a.retailer_id), 0) AS BIGINT) AS entries_sum, \
           COALESCE((SELECT e.balance_paisa FROM ledger_entries e WHERE e.retailer_id = a.retailer_id ORDER BY e.seq DESC LIMIT 1), 0) AS last_balance \
         FROM credit_accounts a ORDER BY a.retailer_id")
        .fetch_all(c).await)
}

/// Every retailer with a credit account.
pub async fn all_retailers_with_accounts(db: &Db) -> Result<Vec<Uuid>, sqlx::Error> {
    with_latest!(db, c => sqlx::query_scalar("SELECT retailer_id FROM credit_accounts ORDER BY retailer_id").fetch_all(c).await)
}

/// The orders among `orders` that already have a hold.
pub async fn holds_of(
    tx: &mut Tx,
    orders: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
    if orders.is_empty() {
        return Ok(Default::default());
    }
    let found: Vec<Uuid> = with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new("");
        push_holds_of(&mut qb, orders);
        qb.build_query_scalar().fetch_all(c).await
    })?;
    Ok(found.into_iter().collect())
}

/// Writes pending holds `(order, retailer, amount)` with one statement (on PostgreSQL over an
/// array per column: one text whatever the number of holds).
pub async fn insert_holds(tx: &mut Tx, holds: &[(Uuid, Uuid, i64)]) -> Result<(), sqlx::Error> {
    if holds.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    if let TxInner::Pg(c) = tx.inner_mut() {
        use crate::base::db::column as col;
        sqlx::query(
            "INSERT INTO credit_holds (order_id, retailer_id, amount_paisa, status, created_at_ms, updated_at_ms) \
             SELECT o, r, a, 'pending', $4, $4 FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS v(o, r, a)",
        )
        .bind(col(holds, |h| h.0))
        .bind(col(holds, |h| h.1))
        .bind(col(holds, |h| h.2))
        .bind(now)
        .execute(&mut **c)
        .await?;
        return Ok(());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO credit_holds (order_id, retailer_id, amount_paisa, status, created_at_ms, updated_at_ms) ");
        qb.push_values(holds, |mut b, (o, r, a)| {
            b.push_bind(*o).push_bind(*r).push_bind(*a).push_bind("pending").push_bind(now).push_bind(now);
        });
        qb.build_batch().execute(&mut *c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Adds `(retailer, held delta, orders, value)` to accounts with one statement, each only
/// while it stays within the limit and the account is active; returns the accounts moved.
/// On PostgreSQL the rows are an array per column (one text whatever their number).
pub async fn add_held(tx: &mut Tx, deltas: &[(Uuid, i64, i64, i64)]) -> Result<u64, sqlx::Error> {
    if deltas.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    if let TxInner::Pg(c) = tx.inner_mut() {
        use crate::base::db::column as col;
        return sqlx::query(sqlx::AssertSqlSafe(ADD_HELD_PG.as_str()))
            .bind(col(deltas, |d| d.0))
            .bind(col(deltas, |d| d.1))
            .bind(col(deltas, |d| d.2))
            .bind(col(deltas, |d| d.3))
            .bind(now)
            .execute(&mut **c)
            .await
            .map(|r| r.rows_affected());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new("WITH v(retailer_id, held, n, value) AS (");
        qb.push_values(deltas, |mut b, (r, h, n, v)| {
            b.push_bind(*r).push_bind(*h).push_bind(*n).push_bind(*v);
        });
        qb.push(") ").push(ADD_HELD_SET).push_bind(now).push(ADD_HELD_WHERE);
        qb.build_batch().execute(&mut *c).await.map(|r| r.rows_affected())
    })
}

/// [`add_held`]'s change, from the rows `v`, up to the update time.
const ADD_HELD_SET: &str = "UPDATE credit_accounts SET held_paisa = credit_accounts.held_paisa + v.held, \
     order_count = credit_accounts.order_count + v.n, order_value_paisa = credit_accounts.order_value_paisa + v.value, \
     updated_at_ms = ";
/// [`add_held`]'s condition: active accounts that stay within their limit.
const ADD_HELD_WHERE: &str = " FROM v WHERE credit_accounts.retailer_id = v.retailer_id \
     AND credit_accounts.status = 'active' \
     AND credit_accounts.held_paisa + credit_accounts.outstanding_paisa + v.held <= credit_accounts.limit_paisa";
/// [`add_held`]'s statement on PostgreSQL.
static ADD_HELD_PG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH v(retailer_id, held, n, value) AS (SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], \
         $4::bigint[])) {ADD_HELD_SET}$5{ADD_HELD_WHERE}"
    )
});

/// The holds of `orders` inside a transaction.
pub async fn holds_tx(tx: &mut Tx, orders: &[Uuid]) -> Result<Vec<HoldRow>, sqlx::Error> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT order_id, retailer_id, amount_paisa, status, override_by, posted_paisa FROM credit_holds WHERE");
        push_ids(&mut qb, "order_id", orders);
        qb.build_query_as::<HoldRow>().fetch_all(c).await
    })
}

/// The entries of `kind` for `orders` (those posted).
pub async fn entries_for_orders(
    tx: &mut Tx,
    orders: &[Uuid],
    kind: &str,
) -> Result<Vec<LedgerRow>, sqlx::Error> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(format!("SELECT {ENTRY_COLS} FROM ledger_entries WHERE kind = "));
        qb.push_bind(kind).push(" AND");
        push_ids(&mut qb, "order_id", orders);
        qb.build_query_as::<LedgerRow>().fetch_all(c).await
    })
}

/// Moves the holds `(order, delivered)` to `posted` at their delivered amounts, with one
/// statement.
pub async fn post_holds(tx: &mut Tx, posted: &[(Uuid, i64)]) -> Result<u64, sqlx::Error> {
    if posted.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new("WITH v(order_id, posted) AS (");
        qb.push_values(posted, |mut b, (o, p)| {
            b.push_bind(*o).push_bind(*p);
        });
        qb.push(") UPDATE credit_holds SET status = 'posted', posted_paisa = v.posted, updated_at_ms = ")
            .push_bind(now)
            .push(" FROM v WHERE credit_holds.order_id = v.order_id");
        qb.build_batch().execute(&mut *c).await.map(|r| r.rows_affected())
    })
}

/// Writes the counters of accounts read `FOR UPDATE` and moved in memory (`(account as it
/// now is, held released)`: outstanding, credit balance and sequence as given, held lowered
/// by the amount released), with one statement; returns the accounts written.
pub async fn save_counters(tx: &mut Tx, moved: &[(&AccountRow, i64)]) -> Result<u64, sqlx::Error> {
    if moved.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "WITH v(retailer_id, released, outstanding, credit, last_seq) AS (");
        qb.push_values(moved, |mut b, (a, released)| {
            b.push_bind(a.retailer_id).push_bind(*released).push_bind(a.outstanding_paisa)
                .push_bind(a.credit_balance_paisa).push_bind(a.last_seq);
        });
        qb.push(") UPDATE credit_accounts SET held_paisa = credit_accounts.held_paisa - v.released, \
                 outstanding_paisa = v.outstanding, credit_balance_paisa = v.credit, last_seq = v.last_seq, \
                 updated_at_ms = ").push_bind(now).push(" FROM v WHERE credit_accounts.retailer_id = v.retailer_id");
        qb.build_batch().execute(&mut *c).await.map(|r| r.rows_affected())
    })
}

/// Writes ledger entries with one statement.
pub async fn insert_entries(tx: &mut Tx, entries: &[LedgerRow]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(format!("INSERT INTO ledger_entries ({ENTRY_COLS}) "));
        qb.push_values(entries, |mut b, e| {
            b.push_bind(e.id).push_bind(e.retailer_id).push_bind(e.seq).push_bind(&e.kind)
                .push_bind(e.amount_paisa).push_bind(e.balance_paisa).push_bind(e.order_id)
                .push_bind(e.payment_id).push_bind(e.due_at_ms).push_bind(e.open_paisa)
                .push_bind(e.paid_at_ms).push_bind(e.note.as_deref()).push_bind(e.at_ms);
        });
        qb.build_batch().execute(&mut *c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}
