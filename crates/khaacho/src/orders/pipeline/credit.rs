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
use uuid::Uuid;

use super::Verdict;
use crate::base::db::Tx;
use crate::credit::CreditConfig;
use crate::credit::ledger::{self, Reservations, Reserve, Wanted};
use crate::credit::repo::{self, AccountRow};
use crate::credit::risk::{self, Behaviour};
use crate::orders::model::{OrderRow, PaymentMode};
use crate::queue::JobError;

/// The accounts and recent behaviour of a batch's retailers, read once for both the credit
/// and the risk step (as they were before this batch's holds).
pub struct Facts {
    /// Accounts by retailer.
    pub accounts: HashMap<Uuid, AccountRow>,
    /// Behaviour by retailer.
    pub behaviour: HashMap<Uuid, Behaviour>,
}

impl Facts {
    /// Opens missing accounts and reads the facts of `orders`' retailers.
    pub async fn load(
        tx: &mut Tx,
        cfg: &CreditConfig,
        orders: &[&OrderRow],
        now: i64,
    ) -> Result<Self, sqlx::Error> {
        let mut retailers: Vec<Uuid> = orders.iter().map(|o| o.retailer_id).collect();
        retailers.sort_unstable();
        retailers.dedup();
        // Read without locking: the risk step runs on this snapshot first; the credit step
        // locks the accounts last (see `run`), so their row locks are held only for the end
        // of the transaction.
        let mut accounts = repo::accounts_tx(tx, &retailers).await?;
        if accounts.len() < retailers.len() {
            repo::ensure_accounts(tx, &retailers, cfg.default_limit_paisa()).await?;
            accounts = repo::accounts_tx(tx, &retailers).await?;
        }
        let accounts = accounts.into_iter().map(|a| (a.retailer_id, a)).collect();
        let behaviour = risk::behaviour(tx, &retailers, now).await?;
        Ok(Self {
            accounts,
            behaviour,
        })
    }

    /// The band of `retailer`'s account, once scored.
    pub fn band(&self, retailer: Uuid) -> Option<Band> {
        self.accounts.get(&retailer)?.band.as_deref()?.parse().ok()
    }
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
    let existing = existing_holds(tx, orders).await?;
    let judged = judge(cfg, orders, facts, &locked, &existing, skip)?;
    write(tx, &judged).await?;
    Ok(judged)
}

/// What [`confirm`] needs to judge a batch again on its accounts once locked: the batch as
/// [`judge_unlocked`] judged it.
pub struct Unlocked {
    orders: Vec<OrderRow>,
    facts: Facts,
    skip: Vec<bool>,
    /// The orders that held credit before the step (locked by the run, so as read).
    existing: HashSet<Uuid>,
}

/// The first half of the credit step taken last in its transaction: what it decides on the
/// accounts as `facts` read them, unlocked, writing nothing. [`confirm`] then locks the
/// accounts at the end of the transaction and writes it if the locked accounts decide the
/// same (see `pipeline::process`).
pub async fn judge_unlocked(
    tx: &mut Tx,
    cfg: &CreditConfig,
    orders: &[&OrderRow],
    facts: Facts,
    skip: &[bool],
) -> Result<(Judged, Unlocked), JobError> {
    let existing = existing_holds(tx, orders).await?;
    let judged = judge(cfg, orders, &facts, &facts.accounts, &existing, skip)?;
    let unlocked = Unlocked {
        orders: orders.iter().map(|o| (*o).clone()).collect(),
        facts,
        skip: skip.to_vec(),
        existing,
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
    let again = judge(cfg, &orders, &u.facts, &locked, &u.existing, &u.skip)?;
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

async fn existing_holds(tx: &mut Tx, orders: &[&OrderRow]) -> Result<HashSet<Uuid>, JobError> {
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    Ok(repo::holds_of(tx, &ids).await?)
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
