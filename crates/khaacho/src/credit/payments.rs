//! Payments and account changes: a payment is allocated to the oldest due debits first
//! (partial payments allowed, an overpayment becomes credit balance); limit and status
//! changes are recorded with actor and reason. Each takes the caller's transaction.

use khaacho_credit::CreditSettings;
use uuid::Uuid;

use super::ledger::{Entry, LedgerError, append};
use super::repo::{self, AccountRow, LedgerRow};
use crate::base::db::{Tx, is_unique_violation};
use crate::base::time::now_ms;

/// How a payment was made.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Cash handed over.
    Cash,
    /// Bank transfer.
    Bank,
    /// Mobile wallet (eSewa, Khalti…).
    Wallet,
    /// Cheque.
    Cheque,
}

impl Method {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Cash => "cash",
            Method::Bank => "bank",
            Method::Wallet => "wallet",
            Method::Cheque => "cheque",
        }
    }
}

/// Why a payment or change was refused.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The retailer has no credit account.
    #[error("no credit account for this retailer")]
    NoAccount,
    /// The amount is zero or negative.
    #[error("the amount must be greater than zero")]
    NonPositive,
    /// This reference was recorded before with another amount.
    #[error("this reference was already recorded with a different amount")]
    ReferenceReused,
    /// A limit below what the rules allow.
    #[error("{0}")]
    LimitTooLow(String),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
    /// A posting failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A recorded payment and where it went.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The payment's id.
    pub payment_id: Uuid,
    /// Its ledger entry.
    pub entry: LedgerRow,
    /// `(debit entry id, amount)` applied, oldest due first.
    pub applied: Vec<(Uuid, i64)>,
    /// Paid beyond what was owed (now credit balance).
    pub unapplied: i64,
    /// False when the same reference and amount were recorded before (a replay).
    pub new: bool,
    /// The account as the payment left it (locked until the commit); `None` for a replay,
    /// which reads nothing of the account.
    pub account: Option<AccountRow>,
}

/// Records a payment of `amount` paisa and allocates it FIFO to open debits. The reference is
/// unique per retailer: the same reference and amount again is a replay, another amount is
/// refused. Returns whether the payment made the retailer's streak of late payments longer.
pub async fn record(
    tx: &mut Tx,
    retailer: Uuid,
    amount: i64,
    method: Method,
    reference: &str,
    actor: &str,
    settings: &CreditSettings,
) -> Result<Recorded, PaymentError> {
    record_at(
        tx,
        retailer,
        amount,
        method,
        reference,
        actor,
        settings,
        now_ms(),
    )
    .await
}

/// [`record`] of a payment made at `at_ms` (imports of past payments, demo histories, tests
/// with a controlled clock).
#[allow(clippy::too_many_arguments)]
pub async fn record_at(
    tx: &mut Tx,
    retailer: Uuid,
    amount: i64,
    method: Method,
    reference: &str,
    actor: &str,
    settings: &CreditSettings,
    at_ms: i64,
) -> Result<Recorded, PaymentError> {
    if amount <= 0 {
        return Err(PaymentError::NonPositive);
    }
    if let Some(existing) = repo::payment_by_reference(tx, retailer, reference).await? {
        if existing.1 != amount {
            return Err(PaymentError::ReferenceReused);
        }
        let entry = repo::entry_for_payment(tx, existing.0)
            .await?
            .ok_or(PaymentError::NoAccount)?;
        return Ok(Recorded {
            payment_id: existing.0,
            entry,
            applied: Vec::new(),
            unapplied: 0,
            new: false,
            account: None,
        });
    }
    let account = repo::account_for_update_opt(tx, retailer)
        .await?
        .ok_or(PaymentError::NoAccount)?;
    let now = at_ms;
    let payment_id = Uuid::now_v7();
    repo::insert_payment(
        tx,
        payment_id,
        retailer,
        amount,
        method.as_str(),
        reference,
        actor,
        now,
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            PaymentError::ReferenceReused
        } else {
            e.into()
        }
    })?;
    let open = repo::open_debits(tx, retailer).await?;
    let debits: Vec<khaacho_credit::OpenDebit<(i64, Uuid)>> = open
        .iter()
        .map(|d| khaacho_credit::OpenDebit {
            id: (d.seq, d.id),
            due_at_ms: d.due_at_ms.unwrap_or(d.at_ms),
            remaining_paisa: d.open_paisa.unwrap_or(0),
        })
        .collect();
    let allocation =
        khaacho_credit::allocate_fifo(amount, &debits).map_err(|_| PaymentError::NonPositive)?;
    let mut late = account.late_streak;
    let mut applied = Vec::with_capacity(allocation.applied.len());
    for ((_, id), paid) in &allocation.applied {
        let debit = open.iter().find(|d| d.id == *id);
        let now_settled = repo::pay_down(tx, *id, *paid, now).await?;
        if now_settled && let Some(d) = debit {
            // A debit settled more than the grace after its due date is a late payment.
            let due = d.due_at_ms.unwrap_or(d.at_ms);
            late = if khaacho_credit::payment_is_late(due, now, settings) {
                late + 1
            } else {
                0
            };
        }
        applied.push((*id, *paid));
    }
    let paid_total: i64 = applied.iter().map(|a| a.1).sum();
    // The streak is written with the counters, in `append`'s one UPDATE of the account.
    let mut account = AccountRow {
        late_streak: late,
        ..account
    };
    let entry = append(
        tx,
        &mut account,
        Entry {
            kind: "payment_credit",
            amount: -amount,
            outstanding_delta: -paid_total,
            credit_delta: allocation.unapplied_credit_paisa,
            order_id: None,
            payment_id: Some(payment_id),
            due_at_ms: None,
            open_paisa: None,
            paid_at_ms: None,
            note: Some(method.as_str()),
            at_ms: now,
        },
    )
    .await?;
    Ok(Recorded {
        payment_id,
        entry,
        applied,
        unapplied: allocation.unapplied_credit_paisa,
        new: true,
        account: Some(account),
    })
}

/// Sets `retailer`'s limit. A decrease never goes below 1.2 × outstanding (DOMAIN), nor
/// below what is already committed (held + outstanding). Recorded with actor and reason.
pub async fn set_limit(
    tx: &mut Tx,
    retailer: Uuid,
    new_limit: i64,
    reason: &str,
    actor: &str,
    settings: &CreditSettings,
) -> Result<AccountRow, PaymentError> {
    if new_limit < 0 {
        return Err(PaymentError::LimitTooLow(
            "a limit cannot be negative".into(),
        ));
    }
    let account = repo::account_for_update_opt(tx, retailer)
        .await?
        .ok_or(PaymentError::NoAccount)?;
    if new_limit < account.limit_paisa {
        let floor = khaacho_credit::decrease_floor_paisa(account.outstanding_paisa, settings)
            .max(account.held_paisa + account.outstanding_paisa);
        if new_limit < floor {
            return Err(PaymentError::LimitTooLow(format!(
                "the limit may not go below NPR {:.2} (1.2 × outstanding, and at least what is held and owed)",
                floor as f64 / 100.0
            )));
        }
    }
    repo::set_limit(tx, retailer, new_limit).await?;
    repo::record_change(
        tx,
        retailer,
        "limit",
        &account.limit_paisa.to_string(),
        &new_limit.to_string(),
        reason,
        actor,
    )
    .await?;
    Ok(AccountRow {
        limit_paisa: new_limit,
        ..account
    })
}

/// Blocks or unblocks `retailer`'s credit, recorded with actor and reason. A blocked account
/// refuses new credit orders; holds already placed stay.
pub async fn set_blocked(
    tx: &mut Tx,
    retailer: Uuid,
    blocked: bool,
    reason: &str,
    actor: &str,
) -> Result<AccountRow, PaymentError> {
    let account = repo::account_for_update_opt(tx, retailer)
        .await?
        .ok_or(PaymentError::NoAccount)?;
    let status = if blocked { "blocked" } else { "active" };
    if account.status != status {
        repo::set_status(tx, retailer, status).await?;
        repo::record_change(
            tx,
            retailer,
            "status",
            &account.status,
            status,
            reason,
            actor,
        )
        .await?;
    }
    Ok(AccountRow {
        status: status.to_string(),
        ..account
    })
}
