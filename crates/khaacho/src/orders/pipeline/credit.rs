//! The credit step: reserve each credit order's total on its retailer's account (one hold per
//! order, never past the limit however many orders arrive at once), or say why not. Cash
//! orders reserve nothing. Runs in the pipeline's batch transaction after validation.
//!
//! Band rules apply once an account has been scored (an unrated account — a new retailer
//! before its first daily scoring — is judged on its limit and the risk rules alone): a
//! cash-only band refuses credit orders, a band's order cap holds a larger order for a
//! person, a band that needs approval holds every credit order (its hold already placed).

use std::collections::{HashMap, HashSet};

use khaacho_credit::Band;
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use super::Verdict;
use crate::base::db::{Tx, TxInner};
use crate::credit::CreditConfig;
use crate::credit::ledger::{self, Reservations, Reserve, Wanted};
use crate::credit::repo::{self, AccountRow};
use crate::credit::risk::{self, Behaviour};
use crate::orders::model::{OrderRow, PaymentMode};
use crate::queue::JobError;

/// The accounts and recent behaviour of a batch's retailers, read once for both the credit
/// and the risk step (as they were before this batch's holds), with the holds its orders
/// already have.
pub struct Facts {
    /// Accounts by retailer.
    pub accounts: HashMap<Uuid, AccountRow>,
    /// Behaviour by retailer.
    pub behaviour: HashMap<Uuid, Behaviour>,
    /// The orders that held credit before the run (a retried run): locked by the run, so
    /// nothing else places or releases their holds meanwhile.
    existing: HashSet<Uuid>,
}

impl Facts {
    /// Opens missing accounts and reads the facts of `orders`' retailers. On PostgreSQL the
    /// accounts, the week's order counts, the debits of the history window and the orders'
    /// holds are one statement (each table's rows aggregated as JSON, each subquery the read
    /// it replaces), one round trip where four were; SQLite reads them one by one.
    pub async fn load(
        tx: &mut Tx,
        cfg: &CreditConfig,
        orders: &[&OrderRow],
        now: i64,
    ) -> Result<Self, sqlx::Error> {
        let mut retailers: Vec<Uuid> = orders.iter().map(|o| o.retailer_id).collect();
        retailers.sort_unstable();
        retailers.dedup();
        let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
        // Read without locking: the risk step runs on this snapshot first; the credit step
        // locks the accounts last (see `run`), so their row locks are held only for the end
        // of the transaction.
        let Read {
            mut accounts,
            counts,
            debits,
            holds,
        } = match tx.inner_mut() {
            TxInner::Pg(c) if !retailers.is_empty() => read_pg(c, &retailers, &ids, now).await?,
            _ => read_each(tx, &retailers, &ids, now).await?,
        };
        if accounts.len() < retailers.len() {
            // Only the retailers without an account: on PostgreSQL an insert that meets an
            // existing key waits for any transaction updating that row (a concurrent run
            // holding credit for the same shop) before it can do nothing.
            let have: HashSet<Uuid> = accounts.iter().map(|a| a.retailer_id).collect();
            let missing: Vec<Uuid> = retailers
                .iter()
                .copied()
                .filter(|r| !have.contains(r))
                .collect();
            repo::ensure_accounts(tx, &missing, cfg.default_limit_paisa()).await?;
            accounts.extend(repo::accounts_tx(tx, &missing).await?);
        }
        let accounts = accounts.into_iter().map(|a| (a.retailer_id, a)).collect();
        let behaviour = risk::behaviour_of(&retailers, counts, debits, now);
        Ok(Self {
            accounts,
            behaviour,
            existing: holds,
        })
    }

    /// The band of `retailer`'s account, once scored.
    pub fn band(&self, retailer: Uuid) -> Option<Band> {
        self.accounts.get(&retailer)?.band.as_deref()?.parse().ok()
    }
}

/// What [`Facts::load`] reads.
struct Read {
    accounts: Vec<AccountRow>,
    counts: Vec<risk::OrderDays>,
    debits: Vec<risk::Debit>,
    holds: HashSet<Uuid>,
}

/// [`Facts::load`]'s four reads in one statement on PostgreSQL: a JSON object of the rows
/// each of them returns, its subqueries built by the functions that build them as
/// statements of their own (the same SQL, the same plans).
async fn read_pg(
    c: &mut sqlx::PgConnection,
    retailers: &[Uuid],
    orders: &[Uuid],
    now: i64,
) -> Result<Read, sqlx::Error> {
    #[derive(serde::Deserialize)]
    struct Rows {
        accounts: Vec<AccountRow>,
        counts: Vec<risk::OrderDays>,
        debits: Vec<risk::Debit>,
        holds: Vec<Uuid>,
    }
    let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
        "SELECT json_build_object('accounts', (SELECT COALESCE(json_agg(x), '[]') FROM (",
    );
    repo::push_accounts(&mut qb, retailers);
    qb.push(") x), 'counts', (SELECT COALESCE(json_agg(json_build_array(x.retailer_id, x.n)), '[]') FROM (");
    risk::push_order_days(&mut qb, retailers, now);
    qb.push(
        ") x), 'debits', (SELECT COALESCE(json_agg(json_build_array(x.retailer_id, x.due_at_ms, \
             x.paid_at_ms, x.open_paisa)), '[]') FROM (",
    );
    risk::push_debits(&mut qb, retailers, now);
    qb.push(") x), 'holds', (SELECT COALESCE(json_agg(x.order_id), '[]') FROM (");
    repo::push_holds_of(&mut qb, orders);
    qb.push(") x))");
    let Json(rows): Json<Rows> = qb.build_query_scalar().fetch_one(&mut *c).await?;
    Ok(Read {
        accounts: rows.accounts,
        counts: rows.counts,
        debits: rows.debits,
        holds: rows.holds.into_iter().collect(),
    })
}

/// [`Facts::load`]'s reads one by one (SQLite, where a statement is a library call; or no
/// retailers).
async fn read_each(
    tx: &mut Tx,
    retailers: &[Uuid],
    orders: &[Uuid],
    now: i64,
) -> Result<Read, sqlx::Error> {
    let (counts, debits) = risk::history(tx, retailers, now).await?;
    Ok(Read {
        accounts: repo::accounts_tx(tx, retailers).await?,
        counts,
        debits,
        holds: repo::holds_of(tx, orders).await?,
    })
}

/// What the credit step decided for a batch: per order its verdict and whether it holds
/// credit after the step, and the reservations that make it so.
#[derive(Debug, PartialEq)]
pub struct Judged {
    /// Per order.
    pub verdicts: Vec<Verdict>,
    /// Per order: holds credit once the step's writes are made.
    pub held: Vec<bool>,
    /// Per order: held credit before the step (a retried run); the rest of `held` is written
    /// by [`write`] or [`confirm`].
    pub held_before: Vec<bool>,
    reservations: Reservations,
}

/// Decides and reserves credit for each of `orders` (validated, priced), in order, on their
/// accounts locked first: the rules that need no reservation, then every reservation of the
/// batch at once. Orders marked in `skip` (already rejected by an earlier step) reserve
/// nothing. Returns what it decided, written.
pub async fn run(
    tx: &mut Tx,
    cfg: &CreditConfig,
    orders: &[&OrderRow],
    facts: &Facts,
    skip: &[bool],
) -> Result<Judged, JobError> {
    let locked = lock(tx, facts).await?;
    let judged = judge(cfg, orders, facts, &locked, &facts.existing, skip)?;
    write(tx, &judged).await?;
    Ok(judged)
}

/// What [`confirm`] needs to judge a batch again on its accounts once locked: the batch as
/// [`judge_unlocked`] judged it.
pub struct Unlocked {
    orders: Vec<OrderRow>,
    facts: Facts,
    skip: Vec<bool>,
}

/// The first half of the credit step taken last in its transaction: what it decides on the
/// accounts as `facts` read them, unlocked, writing nothing. [`confirm`] then locks the
/// accounts at the end of the transaction and writes it if the locked accounts decide the
/// same (see `pipeline::process`).
pub fn judge_unlocked(
    cfg: &CreditConfig,
    orders: &[&OrderRow],
    facts: Facts,
    skip: &[bool],
) -> Result<(Judged, Unlocked), JobError> {
    let judged = judge(cfg, orders, &facts, &facts.accounts, &facts.existing, skip)?;
    let unlocked = Unlocked {
        orders: orders.iter().map(|o| (*o).clone()).collect(),
        facts,
        skip: skip.to_vec(),
    };
    Ok((judged, unlocked))
}

/// The second half of [`judge_unlocked`]: locks the accounts in retailer order, decides
/// again on them, and writes the reservations if every verdict is the one `judged` holds
/// (true); otherwise writes nothing and answers false, and the caller rolls its transaction
/// back — what was settled on the snapshot does not stand.
pub async fn confirm(
    tx: &mut Tx,
    cfg: &CreditConfig,
    unlocked: &Unlocked,
    judged: &Judged,
) -> Result<bool, JobError> {
    let u = unlocked;
    let orders: Vec<&OrderRow> = u.orders.iter().collect();
    let locked = lock(tx, &u.facts).await?;
    let again = judge(cfg, &orders, &u.facts, &locked, &u.facts.existing, &u.skip)?;
    if again != *judged {
        return Ok(false);
    }
    write(tx, &again).await?;
    Ok(true)
}

/// The batch's accounts, locked in retailer order, so concurrent batches that share
/// retailers queue behind each other instead of deadlocking.
async fn lock(tx: &mut Tx, facts: &Facts) -> Result<HashMap<Uuid, AccountRow>, JobError> {
    let mut retailers: Vec<Uuid> = facts.accounts.keys().copied().collect();
    retailers.sort_unstable();
    Ok(repo::accounts_for_update(tx, &retailers)
        .await?
        .into_iter()
        .map(|a| (a.retailer_id, a))
        .collect())
}

async fn write(tx: &mut Tx, judged: &Judged) -> Result<(), JobError> {
    ledger::write_reservations(tx, &judged.reservations)
        .await
        .map_err(|e| JobError::Retryable(e.into()))
}

/// The credit step's decisions on `accounts`, in order, writing nothing.
fn judge(
    cfg: &CreditConfig,
    orders: &[&OrderRow],
    facts: &Facts,
    accounts: &HashMap<Uuid, AccountRow>,
    existing: &HashSet<Uuid>,
    skip: &[bool],
) -> Result<Judged, JobError> {
    let mut out: Vec<Option<Verdict>> = orders
        .iter()
        .zip(skip)
        .map(|(o, skip)| {
            if *skip {
                Some(Verdict::Pass)
            } else {
                precheck(cfg, o, facts, accounts)
            }
        })
        .collect();
    let mut held = vec![false; orders.len()];
    let mut held_before = vec![false; orders.len()];
    let wanted: Vec<(usize, Wanted)> = orders
        .iter()
        .enumerate()
        .filter(|(i, _)| out[*i].is_none())
        .map(|(i, o)| {
            (
                i,
                Wanted {
                    order: o.id,
                    retailer: o.retailer_id,
                    amount: o.total_paisa.unwrap_or(0),
                },
            )
        })
        .collect();
    let batch: Vec<Wanted> = wanted.iter().map(|(_, w)| *w).collect();
    let (results, reservations) = ledger::plan_reservations(accounts, &batch, existing)
        .map_err(|e| JobError::Retryable(e.into()))?;
    for ((i, w), (outcome, available)) in wanted.iter().zip(results) {
        let band = facts.band(w.retailer);
        held[*i] = matches!(outcome, Reserve::Reserved | Reserve::AlreadyHeld);
        held_before[*i] = outcome == Reserve::AlreadyHeld;
        out[*i] = Some(match outcome {
            Reserve::Reserved | Reserve::AlreadyHeld => {
                match band.filter(|b| b.requires_approval()) {
                    Some(b) => Verdict::Hold("credit_approval", json!({ "band": b.as_str() })),
                    None => Verdict::Pass,
                }
            }
            Reserve::OverLimit => {
                let limit = accounts.get(&w.retailer).map_or(0, |a| a.limit_paisa);
                Verdict::Hold(
                    "credit_limit",
                    json!({ "total_paisa": w.amount, "available_paisa": available, "limit_paisa": limit }),
                )
            }
            Reserve::Blocked => Verdict::Reject(
                "credit_blocked",
                json!({ "detail": "the retailer's credit is blocked" }),
            ),
        });
    }
    let verdicts = out
        .into_iter()
        .map(|v| v.unwrap_or(Verdict::Pass))
        .collect();
    Ok(Judged {
        verdicts,
        held,
        held_before,
        reservations,
    })
}

/// The verdict of the rules that need no reservation, or `None` when the order is to be
/// reserved.
fn precheck(
    cfg: &CreditConfig,
    o: &OrderRow,
    facts: &Facts,
    accounts: &HashMap<Uuid, AccountRow>,
) -> Option<Verdict> {
    if o.payment_mode == PaymentMode::Cash.as_str() {
        return Some(Verdict::Pass);
    }
    let total = o.total_paisa.unwrap_or(0);
    let account = accounts.get(&o.retailer_id)?;
    if account.status == "blocked" {
        return Some(Verdict::Reject(
            "credit_blocked",
            json!({ "detail": "the retailer's credit is blocked; order cash on delivery" }),
        ));
    }
    let band = facts.band(o.retailer_id);
    if let Some(b) = band.filter(|b| b.cash_only()) {
        return Some(Verdict::Reject(
            "cash_only_band",
            json!({ "band": b.as_str(), "detail": "this band may order cash on delivery only" }),
        ));
    }
    let cap = band
        .and_then(|b| b.order_cap_paisa(&cfg.rules))
        .filter(|cap| total > *cap)?;
    Some(Verdict::Hold(
        "credit_band_cap",
        json!({ "band": band.map(Band::as_str), "cap_paisa": cap, "total_paisa": total }),
    ))
}
