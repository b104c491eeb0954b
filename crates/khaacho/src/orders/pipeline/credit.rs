//! The credit step: reserve each credit order's total on its retailer's account (one hold per
//! order, never past the limit however many orders arrive at once), or say why not. Cash
//! orders reserve nothing. Runs in the pipeline's batch transaction after validation.
//!
//! Band rules apply once an account has been scored (an unrated account — a new retailer
//! before its first daily scoring — is judged on its limit and the risk rules alone): a
//! cash-only band refuses credit orders, a band's order cap holds a larger order for a
//! person, a band that needs approval holds every credit order (its hold already placed).

use std::collections::HashMap;

use khaacho_credit::Band;
use serde_json::json;
use uuid::Uuid;

use super::Verdict;
use crate::base::db::Tx;
use crate::credit::CreditConfig;
use crate::credit::ledger::{self, Reserve};
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
        repo::ensure_accounts(tx, &retailers, cfg.default_limit_paisa()).await?;
        let accounts = repo::accounts_tx(tx, &retailers)
            .await?
            .into_iter()
            .map(|a| (a.retailer_id, a))
            .collect();
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

/// Decides and reserves credit for each of `orders` (validated, priced), in order.
pub async fn run(
    tx: &mut Tx,
    cfg: &CreditConfig,
    orders: &[&OrderRow],
    facts: &Facts,
) -> Result<Vec<Verdict>, JobError> {
    let mut out = Vec::with_capacity(orders.len());
    for o in orders {
        out.push(decide(tx, cfg, o, facts).await?);
    }
    Ok(out)
}

async fn decide(
    tx: &mut Tx,
    cfg: &CreditConfig,
    o: &OrderRow,
    facts: &Facts,
) -> Result<Verdict, JobError> {
    if o.payment_mode == PaymentMode::Cash.as_str() {
        return Ok(Verdict::Pass);
    }
    let total = o.total_paisa.unwrap_or(0);
    let Some(account) = facts.accounts.get(&o.retailer_id) else {
        return Err(JobError::Retryable(anyhow::anyhow!(
            "no credit account for {}",
            o.retailer_id
        )));
    };
    if account.status == "blocked" {
        return Ok(Verdict::Reject(
            "credit_blocked",
            json!({ "detail": "the retailer's credit is blocked; order cash on delivery" }),
        ));
    }
    let band = facts.band(o.retailer_id);
    if let Some(b) = band.filter(|b| b.cash_only()) {
        return Ok(Verdict::Reject(
            "cash_only_band",
            json!({ "band": b.as_str(), "detail": "this band may order cash on delivery only" }),
        ));
    }
    if let Some(cap) = band
        .and_then(|b| b.order_cap_paisa(&cfg.rules))
        .filter(|cap| total > *cap)
    {
        return Ok(Verdict::Hold(
            "credit_band_cap",
            json!({ "band": band.map(Band::as_str), "cap_paisa": cap, "total_paisa": total }),
        ));
    }
    match ledger::reserve(tx, o.retailer_id, o.id, total)
        .await
        .map_err(|e| JobError::Retryable(e.into()))?
    {
        Reserve::Reserved | Reserve::AlreadyHeld => {
            if let Some(b) = band.filter(|b| b.requires_approval()) {
                return Ok(Verdict::Hold(
                    "credit_approval",
                    json!({ "band": b.as_str() }),
                ));
            }
            Ok(Verdict::Pass)
        }
        Reserve::OverLimit => {
            // Read again: earlier orders of this batch may have taken part of the limit.
            let now = repo::account_tx(tx, o.retailer_id)
                .await?
                .unwrap_or_else(|| account.clone());
            let available = now.limit_paisa - now.held_paisa - now.outstanding_paisa;
            Ok(Verdict::Hold(
                "credit_limit",
                json!({ "total_paisa": total, "available_paisa": available.max(0), "limit_paisa": now.limit_paisa }),
            ))
        }
        Reserve::Blocked => Ok(Verdict::Reject(
            "credit_blocked",
            json!({ "detail": "the retailer's credit is blocked" }),
        )),
    }
}
