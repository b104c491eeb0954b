//! The risk step: every order that passed validation gets a risk score 0–100 with its
//! components and reasons (DOMAIN weights and signals, thresholds in `credit.risk`), stored
//! with the order: ≥ reject threshold → rejected, the review band → held for a person,
//! below → passes. Runs in the pipeline's batch transaction after the credit step.

use super::Verdict;
use super::credit::Facts;
use crate::base::db::Tx;
use crate::credit::CreditConfig;
use crate::credit::risk::{self, Behaviour};
use crate::orders::model::OrderRow;
use crate::queue::JobError;

/// Assesses each of `orders` (before the credit step, on the batch's account snapshot).
pub async fn run(
    tx: &mut Tx,
    cfg: &CreditConfig,
    orders: &[&OrderRow],
    facts: &Facts,
    now: i64,
) -> Result<Vec<Verdict>, JobError> {
    let none = Behaviour::default();
    let mut out = Vec::with_capacity(orders.len());
    let mut assessed = Vec::with_capacity(orders.len());
    for o in orders {
        let Some(account) = facts.accounts.get(&o.retailer_id) else {
            out.push(Verdict::Pass);
            continue;
        };
        let behaviour = facts.behaviour.get(&o.retailer_id).unwrap_or(&none);
        let cap = facts
            .band(o.retailer_id)
            .and_then(|b| b.order_cap_paisa(&cfg.rules));
        let inputs = risk::inputs(account, behaviour, o.total_paisa.unwrap_or(0), cap, now);
        let a = khaacho_credit::assess(&inputs, &cfg.risk);
        let detail = serde_json::json!({ "score": a.score, "reasons": a.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>() });
        out.push(match a.decision {
            khaacho_credit::Decision::Pass => Verdict::Pass,
            khaacho_credit::Decision::Review => Verdict::Hold("risk_review", detail),
            khaacho_credit::Decision::Reject => Verdict::Reject("risk_rejected", detail),
        });
        assessed.push((o.id, o.retailer_id, a));
    }
    risk::save_many(tx, &assessed, now).await?;
    Ok(out)
}
