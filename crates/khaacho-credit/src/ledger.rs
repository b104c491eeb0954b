//! Ledger rules of DESIGN.md §11: payment allocation, the hold check, and an in-memory
//! reference model of one credit account.
//!
//! The SQL implementation is the real ledger; [`AccountModel`] exists so the rules have an
//! executable specification: property tests drive it with random operation sequences, and the
//! application's repository tests can replay the same sequences against the database and
//! compare counters.

mod model;

use serde::{Deserialize, Serialize};

use crate::Paisa;

pub use model::{AccountModel, EntryKind, Hold, HoldState, LedgerEntry};

/// An unpaid (or partly paid) debit that a payment may settle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDebit<Id = u64> {
    /// The ledger entry's id; breaks ties between debits due at the same moment.
    pub id: Id,
    /// Due date (delivery + terms).
    pub due_at_ms: i64,
    /// What is still unpaid; debits at 0 or below are skipped.
    pub remaining_paisa: Paisa,
}

/// How a payment was spread over the open debits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation<Id = u64> {
    /// `(debit id, amount applied)`, oldest due first; only non-zero amounts.
    pub applied: Vec<(Id, Paisa)>,
    /// What was left after every open debit was settled: a credit in the retailer's favour.
    pub unapplied_credit_paisa: Paisa,
}

/// Errors of the ledger rules and of [`AccountModel`] operations. A failed operation leaves
/// the model unchanged, like a rolled-back transaction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Amounts of holds, deliveries, payments and refunds must be above zero.
    #[error("amount must be positive, got {0} paisa")]
    NonPositiveAmount(Paisa),
    /// A limit cannot be negative.
    #[error("limit cannot be negative, got {0} paisa")]
    NegativeLimit(Paisa),
    /// The account is blocked: no new holds.
    #[error("credit account is blocked")]
    AccountBlocked,
    /// The hold would take held + outstanding past the limit.
    #[error("hold of {requested} paisa exceeds available credit of {available} paisa")]
    LimitExceeded {
        /// Amount asked for.
        requested: Paisa,
        /// limit − held − outstanding at the time.
        available: Paisa,
    },
    /// One hold per order.
    #[error("order {0} already has a hold")]
    DuplicateHold(u64),
    /// No hold for the order.
    #[error("order {0} has no hold")]
    UnknownHold(u64),
    /// The hold is not in the state the operation needs.
    #[error("hold of order {order_id} is {actual}, expected {expected}")]
    WrongHoldState {
        /// The order.
        order_id: u64,
        /// Its hold's state.
        actual: HoldState,
        /// The state the operation needs.
        expected: HoldState,
    },
    /// A delivery cannot charge more than was reserved.
    #[error("delivered {delivered} paisa exceeds the hold of {held} paisa")]
    DeliveredExceedsHold {
        /// Amount delivered.
        delivered: Paisa,
        /// Amount held.
        held: Paisa,
    },
    /// A reversal cannot refund more than was charged and not yet refunded.
    #[error("refund of {requested} paisa exceeds the refundable {refundable} paisa")]
    RefundExceedsPosted {
        /// Amount asked for.
        requested: Paisa,
        /// Posted minus already refunded.
        refundable: Paisa,
    },
    /// A decrease below `decrease_floor_outstanding_pct` of outstanding.
    #[error("limit {requested} paisa is below the floor {floor} paisa for the outstanding balance")]
    LimitBelowOutstandingFloor {
        /// Limit asked for.
        requested: Paisa,
        /// The lowest permitted limit.
        floor: Paisa,
    },
    /// A limit below held + outstanding (the database's CHECK constraint would refuse it).
    #[error("limit {requested} paisa is below committed credit of {committed} paisa")]
    LimitBelowCommitted {
        /// Limit asked for.
        requested: Paisa,
        /// held + outstanding.
        committed: Paisa,
    },
    /// An amount so large the counters would overflow.
    #[error("amount overflows the account counters")]
    Overflow,
    /// [`AccountModel::check_invariants`] found drift.
    #[error("ledger invariant violated: {0}")]
    InvariantViolated(String),
}

/// Allocates a payment to the open debits, oldest due first, ties by id (DOMAIN: payments go
/// to the oldest due debits; partial payments allowed). Money is conserved:
/// `Σ applied + unapplied_credit_paisa == payment_paisa`.
pub fn allocate_fifo<Id: Ord + Clone>(
    payment_paisa: Paisa,
    open_debits: &[OpenDebit<Id>],
) -> Result<Allocation<Id>, LedgerError> {
    if payment_paisa < 0 {
        return Err(LedgerError::NonPositiveAmount(payment_paisa));
    }
    let mut order: Vec<&OpenDebit<Id>> = open_debits
        .iter()
        .filter(|d| d.remaining_paisa > 0)
        .collect();
    order.sort_by(|a, b| a.due_at_ms.cmp(&b.due_at_ms).then_with(|| a.id.cmp(&b.id)));
    let mut left = payment_paisa;
    let mut applied = Vec::new();
    for debit in order {
        if left == 0 {
            break;
        }
        let amount = left.min(debit.remaining_paisa);
        applied.push((debit.id.clone(), amount));
        left -= amount;
    }
    Ok(Allocation {
        applied,
        unapplied_credit_paisa: left,
    })
}

/// Whether a new hold of `amount_paisa` fits: `held + outstanding + amount ≤ limit`, the
/// condition of the reserving `UPDATE`. Non-positive amounts never fit (a hold reserves
/// something); computed in `i128` so no input overflows.
pub fn hold_fits(
    limit_paisa: Paisa,
    held_paisa: Paisa,
    outstanding_paisa: Paisa,
    amount_paisa: Paisa,
) -> bool {
    amount_paisa > 0
        && i128::from(held_paisa) + i128::from(outstanding_paisa) + i128::from(amount_paisa)
            <= i128::from(limit_paisa)
}
