//! The credit ledger in SQL (DESIGN §11, TigerBeetle's model): accounts carry counters, a
//! limit is checked at the moment money is reserved, and a reservation (hold) is later
//! posted, voided or reversed. Every function here takes the caller's transaction, so the
//! order's transition and its money move together, and each is idempotent per order.
//!
//! Invariants (checked by [`reconcile`] and the property test):
//! - `held == Σ pending holds`;
//! - `outstanding == Σ open_paisa of debits`;
//! - `outstanding − credit_balance == Σ entry amounts == the newest entry's running balance`.

use uuid::Uuid;

use super::repo::{self, AccountRow, LedgerRow};
use crate::base::db::Tx;
use crate::base::time::now_ms;
use crate::with_tx;

/// Days in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// Why a posting was refused.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The account is blocked.
    #[error("the credit account is blocked")]
    Blocked,
    /// The order has no hold to post or reverse.
    #[error("the order has no credit hold")]
    NoHold,
    /// The hold is not in a state that allows this.
    #[error("the credit hold is {0}")]
    HoldState(String),
    /// More than was reserved (or posted) was asked for.
    #[error("{0}")]
    TooMuch(String),
    /// An amount was zero or negative.
    #[error("the amount must be greater than zero")]
    NonPositive,
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// What became of a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserve {
    /// The hold was placed now.
    Reserved,
    /// The order already had a hold (a retried step): nothing changed.
    AlreadyHeld,
    /// The order does not fit in the available credit: nothing changed.
    OverLimit,
    /// The account is blocked: nothing changed.
    Blocked,
}

/// Reserves `amount` of `retailer`'s credit for `order`: [`reserve_many`] for one order,
/// on the account locked first, so concurrent orders serialise on the account row and can
/// never pass the limit together. A retailer without an account has no credit to reserve.
pub async fn reserve(
    tx: &mut Tx,
    retailer: Uuid,
    order: Uuid,
    amount: i64,
) -> Result<Reserve, LedgerError> {
    let accounts: std::collections::HashMap<Uuid, AccountRow> =
        repo::accounts_for_update(tx, &[retailer])
            .await?
            .into_iter()
            .map(|a| (a.retailer_id, a))
            .collect();
    if amount > 0 && accounts.is_empty() {
        return Ok(Reserve::OverLimit);
    }
    let wanted = Wanted {
        order,
        retailer,
        amount,
    };
    let results = reserve_many(tx, &accounts, &[wanted]).await?;
    Ok(results.first().map_or(Reserve::OverLimit, |r| r.0))
}

/// One order's reservation in [`reserve_many`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The order.
    pub order: Uuid,
    /// Its retailer.
    pub retailer: Uuid,
    /// Its total.
    pub amount: i64,
}

/// Reserves many orders at once (the pipeline's batch): the caller has locked the accounts
/// (`repo::accounts_for_update`, in retailer order) and passes them in; each order is judged
/// against its account as the earlier orders of the batch left it ([`plan_reservations`]),
/// then every hold is written with one INSERT and every account moved with one UPDATE, which
/// re-checks the limit as a guard ([`write_reservations`]). Returns, per order, what happened
/// and the credit still available at that moment.
pub async fn reserve_many(
    tx: &mut Tx,
    accounts: &std::collections::HashMap<Uuid, AccountRow>,
    wanted: &[Wanted],
) -> Result<Vec<(Reserve, i64)>, LedgerError> {
    let existing = repo::holds_of(tx, &wanted.iter().map(|w| w.order).collect::<Vec<_>>()).await?;
    let (out, plan) = plan_reservations(accounts, wanted, &existing)?;
    write_reservations(tx, &plan).await?;
    Ok(out)
}

/// The holds a batch's reservations write and what they add to each account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reservations {
    holds: Vec<Wanted>,
    /// `(retailer, held delta, orders, value)`, in retailer order.
    deltas: Vec<(Uuid, i64, i64, i64)>,
}

/// Judges `wanted` in order against `accounts` as the batch's earlier orders left them
/// (`existing`: the orders that already hold credit), writing nothing: per order, what would
/// happen and the credit available at that moment, and the writes that make it so.
pub fn plan_reservations(
    accounts: &std::collections::HashMap<Uuid, AccountRow>,
    wanted: &[Wanted],
    existing: &std::collections::HashSet<Uuid>,
) -> Result<(Vec<(Reserve, i64)>, Reservations), LedgerError> {
    if wanted.iter().any(|w| w.amount <= 0) {
        return Err(LedgerError::NonPositive);
    }
    // (held delta, orders, value) per retailer, in retailer order.
    let mut deltas: std::collections::BTreeMap<Uuid, (i64, i64, i64)> = Default::default();
    let mut out = Vec::with_capacity(wanted.len());
    let mut holds = Vec::new();
    for w in wanted {
        let Some(a) = accounts.get(&w.retailer) else {
            return Err(LedgerError::Storage(sqlx::Error::RowNotFound));
        };
        let d = deltas.entry(w.retailer).or_default();
        let available = a.limit_paisa - a.held_paisa - d.0 - a.outstanding_paisa;
        let outcome = if existing.contains(&w.order) {
            Reserve::AlreadyHeld
        } else if a.status == "blocked" {
            Reserve::Blocked
        } else if w.amount <= available {
            *d = (d.0 + w.amount, d.1 + 1, d.2 + w.amount);
            holds.push(*w);
            Reserve::Reserved
        } else {
            Reserve::OverLimit
        };
        out.push((outcome, available.max(0)));
    }
    let deltas = deltas
        .into_iter()
        .filter(|(_, d)| d.1 > 0)
        .map(|(r, d)| (r, d.0, d.1, d.2))
        .collect();
    Ok((out, Reservations { holds, deltas }))
}

/// Writes what [`plan_reservations`] planned, on accounts the caller has locked: the holds
/// with one INSERT, the accounts moved with one UPDATE whose guard re-checks each limit.
pub async fn write_reservations(tx: &mut Tx, plan: &Reservations) -> Result<(), LedgerError> {
    if plan.deltas.is_empty() {
        return Ok(());
    }
    repo::insert_holds(
        tx,
        &plan
            .holds
            .iter()
            .map(|w| (w.order, w.retailer, w.amount))
            .collect::<Vec<_>>(),
    )
    .await?;
    let moved = repo::add_held(tx, &plan.deltas).await?;
    if moved != plan.deltas.len() as u64 {
        // The guard refused: an account changed without the caller's lock. Nothing may stand.
        return Err(LedgerError::HoldState(
            "an account changed during the reservation".into(),
        ));
    }
    Ok(())
}

/// Reserves past the limit because a person approved it (`actor`, recorded on the hold).
/// A blocked account still refuses. Idempotent per order.
pub async fn reserve_override(
    tx: &mut Tx,
    retailer: Uuid,
    order: Uuid,
    amount: i64,
    actor: &str,
) -> Result<Reserve, LedgerError> {
    if amount <= 0 {
        return Err(LedgerError::NonPositive);
    }
    if repo::hold(tx, order).await?.is_some() {
        return Ok(Reserve::AlreadyHeld);
    }
    let changed = with_tx!(tx, c => sqlx::query(
        "UPDATE credit_accounts SET held_paisa = held_paisa + $1, order_count = order_count + 1, \
         order_value_paisa = order_value_paisa + $1, updated_at_ms = $2 WHERE retailer_id = $3 AND status = 'active'")
        .bind(amount).bind(now_ms()).bind(retailer)
        .execute(&mut *c).await?.rows_affected());
    if changed != 1 {
        return Err(LedgerError::Blocked);
    }
    repo::insert_hold(tx, order, retailer, amount, Some(actor)).await?;
    Ok(Reserve::Reserved)
}

/// Releases `order`'s pending hold (rejection, cancellation before delivery). Returns whether
/// a hold was released; a second call finds none and changes nothing.
pub async fn void(tx: &mut Tx, order: Uuid) -> Result<bool, LedgerError> {
    let Some(hold) = repo::hold(tx, order).await? else {
        return Ok(false);
    };
    if hold.status != "pending" {
        return Ok(false);
    }
    repo::set_hold_status(tx, order, "voided", None).await?;
    move_held(tx, hold.retailer_id, -hold.amount_paisa).await?;
    Ok(true)
}

/// The debit written for a delivery.
#[derive(Clone, Debug)]
pub struct Posted {
    /// The ledger entry.
    pub entry: LedgerRow,
    /// False when an earlier call already posted it (nothing changed now).
    pub new: bool,
}

/// Posts `order`'s hold at delivery: the delivered amount becomes a debit due `terms_days`
/// after `delivered_at_ms`, and the rest of the hold is released. A credit balance (paid in
/// advance) settles the debit first. Idempotent: a second call returns the first debit.
/// [`post_deliveries`] for one order.
pub async fn post_delivery(
    tx: &mut Tx,
    order: Uuid,
    delivered: i64,
    delivered_at_ms: i64,
) -> Result<Posted, LedgerError> {
    let mut posted = post_deliveries(tx, &[(order, delivered)], delivered_at_ms).await?;
    posted.pop().ok_or(LedgerError::NoHold)
}

/// Posts many orders' holds at delivery (`(order, delivered amount)`, each order once), as
/// [`post_delivery`] would one after the other in the order given, with one statement per
/// step for all of them (the part actions' batch delivers many orders in one transaction):
/// read the holds; move them to `posted`; lock the accounts in retailer order (as every
/// account locker does); work out each debit against its account as the earlier ones left it
/// (sequence, running balance, credit balance settled first); then one UPDATE of the accounts
/// and one INSERT of the entries. All or nothing: the first order refused (no hold, a hold
/// no longer pending, a non-positive amount or more than was reserved) fails the whole call,
/// and the caller rolls back. An order already posted returns its debit (`new: false`).
pub async fn post_deliveries(
    tx: &mut Tx,
    deliveries: &[(Uuid, i64)],
    delivered_at_ms: i64,
) -> Result<Vec<Posted>, LedgerError> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let orders: Vec<Uuid> = deliveries.iter().map(|d| d.0).collect();
    let holds: std::collections::HashMap<Uuid, repo::HoldRow> = repo::holds_tx(tx, &orders)
        .await?
        .into_iter()
        .map(|h| (h.order_id, h))
        .collect();
    // A hold no longer pending may have been posted before (a repeated call): its debit.
    let settled: Vec<Uuid> = holds
        .values()
        .filter(|h| h.status != "pending")
        .map(|h| h.order_id)
        .collect();
    let earlier: std::collections::HashMap<Uuid, LedgerRow> =
        repo::entries_for_orders(tx, &settled, "order_debit")
            .await?
            .into_iter()
            .filter_map(|e| e.order_id.map(|o| (o, e)))
            .collect();
    // Judge every order before anything is written.
    let mut todo: Vec<(&repo::HoldRow, i64)> = Vec::with_capacity(deliveries.len());
    let mut named = std::collections::HashSet::with_capacity(deliveries.len());
    for &(order, delivered) in deliveries {
        // An order named twice is posted once (the second is a repeat, as a second call).
        if earlier.contains_key(&order) || !named.insert(order) {
            continue;
        }
        let hold = holds.get(&order).ok_or(LedgerError::NoHold)?;
        if hold.status != "pending" {
            return Err(LedgerError::HoldState(hold.status.clone()));
        }
        if delivered <= 0 {
            return Err(LedgerError::NonPositive);
        }
        if delivered > hold.amount_paisa {
            return Err(LedgerError::TooMuch(format!(
                "delivered {delivered} paisa is more than the {} paisa reserved",
                hold.amount_paisa
            )));
        }
        todo.push((hold, delivered));
    }
    let entries = post_pending(tx, &todo, delivered_at_ms).await?;
    // Each order's debit: posted before, or now (a repeat in this call is not new).
    let mut answered = std::collections::HashSet::with_capacity(deliveries.len());
    deliveries
        .iter()
        .map(|(order, _)| {
            if let Some(entry) = earlier.get(order) {
                return Ok(Posted {
                    entry: entry.clone(),
                    new: false,
                });
            }
            let entry = entries
                .iter()
                .find(|e| e.order_id == Some(*order))
                .ok_or(LedgerError::NoHold)?;
            Ok(Posted {
                entry: entry.clone(),
                new: answered.insert(*order),
            })
        })
        .collect()
}

/// Writes the postings [`post_deliveries`] judged good (`(pending hold, delivered amount)`,
/// each order once) and returns their debits, in that order. Nothing to post: no statement.
async fn post_pending(
    tx: &mut Tx,
    todo: &[(&repo::HoldRow, i64)],
    delivered_at_ms: i64,
) -> Result<Vec<LedgerRow>, LedgerError> {
    repo::post_holds(
        tx,
        &todo
            .iter()
            .map(|(h, d)| (h.order_id, *d))
            .collect::<Vec<_>>(),
    )
    .await?;
    let mut retailers: Vec<Uuid> = todo.iter().map(|(h, _)| h.retailer_id).collect();
    retailers.sort_unstable();
    retailers.dedup();
    let mut accounts: std::collections::HashMap<Uuid, (AccountRow, i64)> =
        repo::accounts_for_update(tx, &retailers)
            .await?
            .into_iter()
            .map(|a| (a.retailer_id, (a, 0)))
            .collect();
    let mut entries = Vec::with_capacity(todo.len());
    for &(hold, delivered) in todo {
        let (account, released) = accounts
            .get_mut(&hold.retailer_id)
            .ok_or(LedgerError::Storage(sqlx::Error::RowNotFound))?;
        *released += hold.amount_paisa;
        // Money paid in advance settles the new debit first.
        let settled = account.credit_balance_paisa.min(delivered);
        let open = delivered - settled;
        let due = delivered_at_ms + i64::from(account.terms_days) * DAY_MS;
        let entry = next_entry(
            account,
            Entry {
                kind: "order_debit",
                amount: delivered,
                outstanding_delta: open,
                credit_delta: -settled,
                order_id: Some(hold.order_id),
                payment_id: None,
                due_at_ms: Some(due),
                open_paisa: Some(open),
                paid_at_ms: (open == 0).then_some(delivered_at_ms),
                note: None,
                at_ms: delivered_at_ms,
            },
        );
        entries.push(entry);
    }
    let moved: Vec<(&AccountRow, i64)> = retailers
        .iter()
        .filter_map(|r| accounts.get(r).map(|(a, released)| (a, *released)))
        .collect();
    if repo::save_counters(tx, &moved).await? != moved.len() as u64 {
        return Err(LedgerError::Storage(sqlx::Error::RowNotFound));
    }
    repo::insert_entries(tx, &entries).await?;
    Ok(entries)
}

/// Reverses `amount` of a delivered order (cancelled or returned after delivery): a refund
/// credit that first clears what is still open of the order's own debit, then becomes credit
/// balance. Idempotent per order: a second call returns the first reversal.
pub async fn reverse_after_delivery(
    tx: &mut Tx,
    order: Uuid,
    amount: i64,
    reason: &str,
) -> Result<Posted, LedgerError> {
    if let Some(entry) = repo::entry_for_order(tx, order, "refund_credit").await? {
        return Ok(Posted { entry, new: false });
    }
    if amount <= 0 {
        return Err(LedgerError::NonPositive);
    }
    let debit = repo::entry_for_order(tx, order, "order_debit")
        .await?
        .ok_or(LedgerError::NoHold)?;
    if amount > debit.amount_paisa {
        return Err(LedgerError::TooMuch(format!(
            "a reversal of {amount} paisa is more than the {} paisa posted",
            debit.amount_paisa
        )));
    }
    let mut account = repo::account_for_update(tx, debit.retailer_id).await?;
    let applied = debit.open_paisa.unwrap_or(0).min(amount);
    let now = now_ms();
    if applied > 0 {
        repo::pay_down(tx, debit.id, applied, now).await?;
    }
    let entry = append(
        tx,
        &mut account,
        Entry {
            kind: "refund_credit",
            amount: -amount,
            outstanding_delta: -applied,
            credit_delta: amount - applied,
            order_id: Some(order),
            payment_id: None,
            due_at_ms: None,
            open_paisa: None,
            paid_at_ms: None,
            note: Some(reason),
            at_ms: now,
        },
    )
    .await?;
    Ok(Posted { entry, new: true })
}

/// One ledger entry to append, with its effect on the account's counters.
pub(super) struct Entry<'a> {
    pub kind: &'static str,
    /// Signed: debits positive, credits negative.
    pub amount: i64,
    pub outstanding_delta: i64,
    pub credit_delta: i64,
    pub order_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub due_at_ms: Option<i64>,
    pub open_paisa: Option<i64>,
    pub paid_at_ms: Option<i64>,
    pub note: Option<&'a str>,
    pub at_ms: i64,
}

/// Appends `e` with the next sequence number and running balance, and moves the account's
/// counters in the same transaction — with its late-payment streak as `account` holds it, so
/// a payment that changed the streak writes it in the same statement. `account` must have
/// been read `FOR UPDATE`; it is left as written.
pub(super) async fn append(
    tx: &mut Tx,
    account: &mut AccountRow,
    e: Entry<'_>,
) -> Result<LedgerRow, LedgerError> {
    let row = next_entry(account, e);
    account.updated_at_ms = now_ms();
    with_tx!(tx, c => sqlx::query(
        "UPDATE credit_accounts SET outstanding_paisa = $1, credit_balance_paisa = $2, last_seq = $3, late_streak = $4, \
         updated_at_ms = $5 WHERE retailer_id = $6")
        .bind(account.outstanding_paisa).bind(account.credit_balance_paisa).bind(account.last_seq)
        .bind(account.late_streak).bind(account.updated_at_ms).bind(account.retailer_id)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    repo::insert_entry(tx, &row).await?;
    Ok(row)
}

/// The entry `e` makes on `account` (next sequence number, running balance), with the
/// account's counters moved in memory to match; writing both is the caller's.
fn next_entry(account: &mut AccountRow, e: Entry<'_>) -> LedgerRow {
    account.last_seq += 1;
    account.outstanding_paisa += e.outstanding_delta;
    account.credit_balance_paisa += e.credit_delta;
    LedgerRow {
        id: Uuid::now_v7(),
        retailer_id: account.retailer_id,
        seq: account.last_seq,
        kind: e.kind.to_string(),
        amount_paisa: e.amount,
        balance_paisa: account.outstanding_paisa - account.credit_balance_paisa,
        order_id: e.order_id,
        payment_id: e.payment_id,
        due_at_ms: e.due_at_ms,
        open_paisa: e.open_paisa,
        paid_at_ms: e.paid_at_ms,
        note: e.note.map(str::to_string),
        at_ms: e.at_ms,
    }
}

async fn move_held(tx: &mut Tx, retailer: Uuid, delta: i64) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "UPDATE credit_accounts SET held_paisa = held_paisa + $1, updated_at_ms = $2 WHERE retailer_id = $3")
        .bind(delta).bind(now_ms()).bind(retailer)
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// One account whose counters disagree with its holds or ledger.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Drift {
    /// The retailer.
    pub retailer_id: Uuid,
    /// What disagrees, e.g. `held 500 != pending holds 400`.
    pub problems: Vec<String>,
}

/// Proves every account against its holds and ledger; returns the ones that drift.
pub async fn reconcile(db: &crate::base::db::Db) -> Result<Vec<Drift>, sqlx::Error> {
    let rows = repo::reconciliation(db).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let mut problems = Vec::new();
            if r.held != r.pending_holds {
                problems.push(format!(
                    "held {} != pending holds {}",
                    r.held, r.pending_holds
                ));
            }
            if r.outstanding != r.open_debits {
                problems.push(format!(
                    "outstanding {} != open debits {}",
                    r.outstanding, r.open_debits
                ));
            }
            if r.outstanding - r.credit_balance != r.entries_sum {
                problems.push(format!(
                    "outstanding − credit balance {} != ledger sum {}",
                    r.outstanding - r.credit_balance,
                    r.entries_sum
                ));
            }
            if r.entries_sum != r.last_balance {
                problems.push(format!(
                    "ledger sum {} != running balance {}",
                    r.entries_sum, r.last_balance
                ));
            }
            (!problems.is_empty()).then_some(Drift {
                retailer_id: r.retailer_id,
                problems,
            })
        })
        .collect())
}
