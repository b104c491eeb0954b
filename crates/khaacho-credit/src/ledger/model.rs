//! The in-memory reference model of one credit account (DESIGN.md §11).
//!
//! Counters (`held`, `outstanding`, `credit_balance`) move only together with a hold change or
//! an appended entry, exactly as the SQL transaction does, so [`AccountModel::check_invariants`]
//! can re-derive them and prove the bookkeeping.

mod invariants;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Allocation, LedgerError, OpenDebit, allocate_fifo, hold_fits};
use crate::band::decrease_floor_paisa;
use crate::settings::CreditSettings;
use crate::{DAY_MS, Paisa};

/// Lifecycle of a hold: `pending → posted | voided | expired`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// Reserved, counted in `held`.
    Pending,
    /// Delivered: the delivered part became an order debit, the rest was released.
    Posted,
    /// Cancelled or rejected before delivery: released.
    Voided,
    /// Stuck past its expiry: released.
    Expired,
}

impl HoldState {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Pending => "pending",
            HoldState::Posted => "posted",
            HoldState::Voided => "voided",
            HoldState::Expired => "expired",
        }
    }
}

impl fmt::Display for HoldState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One order's reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Amount reserved.
    pub amount_paisa: Paisa,
    /// Where it is in its lifecycle.
    pub state: HoldState,
    /// Amount charged at delivery (0 until posted).
    pub posted_paisa: Paisa,
    /// Amount refunded after delivery so far.
    pub refunded_paisa: Paisa,
}

/// Kind of a ledger entry (the subset of DOMAIN's kinds the model exercises).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Delivery charge; positive amount.
    OrderDebit,
    /// Payment received; negative amount.
    PaymentCredit,
    /// Reversal after delivery; negative amount.
    RefundCredit,
}

/// An append-only ledger entry; only `remaining_paisa` of debits changes afterwards, as
/// payments are allocated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Position in the ledger, from 1; also the debit id for allocation.
    pub seq: u64,
    /// Kind.
    pub kind: EntryKind,
    /// Order the entry belongs to (debits and refunds).
    pub order_id: Option<u64>,
    /// Signed amount: debits positive, credits negative.
    pub amount_paisa: Paisa,
    /// Running balance after this entry: Σ signed amounts so far.
    pub balance_after_paisa: Paisa,
    /// When it was booked.
    pub at_ms: i64,
    /// Due date of a debit (`at_ms` + terms).
    pub due_at_ms: Option<i64>,
    /// Unpaid part of a debit; 0 for credits.
    pub remaining_paisa: Paisa,
}

/// One retailer's credit account with its holds and ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountModel {
    limit_paisa: Paisa,
    held_paisa: Paisa,
    outstanding_paisa: Paisa,
    /// Money received beyond every open debit (overpayment, refund of a paid order). It is
    /// applied to the next debit at posting, so it is non-zero only while nothing is owed.
    credit_balance_paisa: Paisa,
    blocked: bool,
    terms_days: i64,
    holds: BTreeMap<u64, Hold>,
    entries: Vec<LedgerEntry>,
}

impl AccountModel {
    /// An active account with `limit_paisa` and payment terms of `terms_days` (use
    /// `CreditSettings::default_terms_days` for a new account).
    pub fn new(limit_paisa: Paisa, terms_days: i64) -> Result<Self, LedgerError> {
        if limit_paisa < 0 {
            return Err(LedgerError::NegativeLimit(limit_paisa));
        }
        Ok(Self {
            limit_paisa,
            held_paisa: 0,
            outstanding_paisa: 0,
            credit_balance_paisa: 0,
            blocked: false,
            terms_days,
            holds: BTreeMap::new(),
            entries: Vec::new(),
        })
    }

    /// The credit limit.
    pub fn limit_paisa(&self) -> Paisa {
        self.limit_paisa
    }
    /// Σ pending holds.
    pub fn held_paisa(&self) -> Paisa {
        self.held_paisa
    }
    /// Delivered and unpaid.
    pub fn outstanding_paisa(&self) -> Paisa {
        self.outstanding_paisa
    }
    /// Unapplied credit in the retailer's favour.
    pub fn credit_balance_paisa(&self) -> Paisa {
        self.credit_balance_paisa
    }
    /// limit − outstanding − held (DOMAIN's "available").
    pub fn available_paisa(&self) -> Paisa {
        self.limit_paisa - self.outstanding_paisa - self.held_paisa
    }
    /// Whether new holds are refused.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }
    /// Holds by order id.
    pub fn holds(&self) -> &BTreeMap<u64, Hold> {
        &self.holds
    }
    /// The ledger, oldest first.
    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    /// Blocks or unblocks credit orders (the overdue control).
    pub fn set_blocked(&mut self, blocked: bool) {
        self.blocked = blocked;
    }

    /// Reserves `amount_paisa` for `order_id` if it fits under the limit.
    pub fn hold(&mut self, order_id: u64, amount_paisa: Paisa) -> Result<(), LedgerError> {
        if amount_paisa <= 0 {
            return Err(LedgerError::NonPositiveAmount(amount_paisa));
        }
        if self.blocked {
            return Err(LedgerError::AccountBlocked);
        }
        if self.holds.contains_key(&order_id) {
            return Err(LedgerError::DuplicateHold(order_id));
        }
        if !hold_fits(
            self.limit_paisa,
            self.held_paisa,
            self.outstanding_paisa,
            amount_paisa,
        ) {
            let available = self.available_paisa();
            return Err(LedgerError::LimitExceeded {
                requested: amount_paisa,
                available,
            });
        }
        self.held_paisa += amount_paisa;
        let hold = Hold {
            amount_paisa,
            state: HoldState::Pending,
            posted_paisa: 0,
            refunded_paisa: 0,
        };
        self.holds.insert(order_id, hold);
        Ok(())
    }

    /// Delivery: charges `delivered_paisa` (≤ the hold) as an order debit due after the
    /// terms, releases the whole hold. Returns the debit's `seq`.
    pub fn post(
        &mut self,
        order_id: u64,
        delivered_paisa: Paisa,
        delivered_at_ms: i64,
    ) -> Result<u64, LedgerError> {
        if delivered_paisa <= 0 {
            return Err(LedgerError::NonPositiveAmount(delivered_paisa));
        }
        let hold = self.pending_hold(order_id)?;
        if delivered_paisa > hold.amount_paisa {
            return Err(LedgerError::DeliveredExceedsHold {
                delivered: delivered_paisa,
                held: hold.amount_paisa,
            });
        }
        let due_at_ms = delivered_at_ms.saturating_add(self.terms_days.saturating_mul(DAY_MS));
        let released = hold.amount_paisa;
        let seq = self.append(
            EntryKind::OrderDebit,
            Some(order_id),
            delivered_paisa,
            delivered_at_ms,
            Some(due_at_ms),
        )?;
        self.held_paisa -= released;
        self.outstanding_paisa += delivered_paisa;
        if let Some(hold) = self.holds.get_mut(&order_id) {
            hold.state = HoldState::Posted;
            hold.posted_paisa = delivered_paisa;
        }
        // A credit balance exists only while nothing is owed; settle the new debit from it.
        let credit = self.credit_balance_paisa;
        if credit > 0 {
            self.credit_balance_paisa = 0;
            self.apply_credit(credit, None);
        }
        Ok(seq)
    }

    /// Cancellation or rejection before delivery: releases the hold.
    pub fn void(&mut self, order_id: u64) -> Result<(), LedgerError> {
        self.release(order_id, HoldState::Voided)
    }

    /// A hold stuck past its expiry: releases it.
    pub fn expire(&mut self, order_id: u64) -> Result<(), LedgerError> {
        self.release(order_id, HoldState::Expired)
    }

    /// Cancellation after delivery: a refund credit of `amount_paisa` (≤ charged − refunded),
    /// settling the order's own debit first, then other debits oldest due first; any rest
    /// becomes credit balance. Returns the entry's `seq`.
    pub fn reverse_after_delivery(
        &mut self,
        order_id: u64,
        amount_paisa: Paisa,
        at_ms: i64,
    ) -> Result<u64, LedgerError> {
        if amount_paisa <= 0 {
            return Err(LedgerError::NonPositiveAmount(amount_paisa));
        }
        let hold = self
            .holds
            .get(&order_id)
            .ok_or(LedgerError::UnknownHold(order_id))?;
        if hold.state != HoldState::Posted {
            let (actual, expected) = (hold.state, HoldState::Posted);
            return Err(LedgerError::WrongHoldState {
                order_id,
                actual,
                expected,
            });
        }
        let refundable = hold.posted_paisa - hold.refunded_paisa;
        if amount_paisa > refundable {
            return Err(LedgerError::RefundExceedsPosted {
                requested: amount_paisa,
                refundable,
            });
        }
        self.credit_balance_paisa
            .checked_add(amount_paisa)
            .ok_or(LedgerError::Overflow)?;
        let own_debit = self
            .entries
            .iter()
            .find(|e| e.kind == EntryKind::OrderDebit && e.order_id == Some(order_id))
            .map(|e| e.seq);
        let seq = self.append(
            EntryKind::RefundCredit,
            Some(order_id),
            -amount_paisa,
            at_ms,
            None,
        )?;
        if let Some(hold) = self.holds.get_mut(&order_id) {
            hold.refunded_paisa += amount_paisa;
        }
        self.apply_credit(amount_paisa, own_debit);
        Ok(seq)
    }

    /// A payment of `amount_paisa`, allocated oldest due first; any rest becomes credit
    /// balance. Returns the allocation by debit `seq`.
    pub fn pay(&mut self, amount_paisa: Paisa, at_ms: i64) -> Result<Allocation<u64>, LedgerError> {
        if amount_paisa <= 0 {
            return Err(LedgerError::NonPositiveAmount(amount_paisa));
        }
        self.credit_balance_paisa
            .checked_add(amount_paisa)
            .ok_or(LedgerError::Overflow)?;
        self.append(EntryKind::PaymentCredit, None, -amount_paisa, at_ms, None)?;
        Ok(self.apply_credit(amount_paisa, None))
    }

    /// Sets the limit. A decrease is refused below `decrease_floor_outstanding_pct` of
    /// outstanding (DOMAIN) and below held + outstanding (the database CHECK); an increase is
    /// always allowed.
    pub fn set_limit(
        &mut self,
        new_limit_paisa: Paisa,
        s: &CreditSettings,
    ) -> Result<(), LedgerError> {
        if new_limit_paisa < 0 {
            return Err(LedgerError::NegativeLimit(new_limit_paisa));
        }
        if new_limit_paisa < self.limit_paisa {
            let floor = decrease_floor_paisa(self.outstanding_paisa, s);
            if new_limit_paisa < floor {
                return Err(LedgerError::LimitBelowOutstandingFloor {
                    requested: new_limit_paisa,
                    floor,
                });
            }
            let committed = self.held_paisa + self.outstanding_paisa;
            if new_limit_paisa < committed {
                return Err(LedgerError::LimitBelowCommitted {
                    requested: new_limit_paisa,
                    committed,
                });
            }
        }
        self.limit_paisa = new_limit_paisa;
        Ok(())
    }

    fn pending_hold(&self, order_id: u64) -> Result<&Hold, LedgerError> {
        let hold = self
            .holds
            .get(&order_id)
            .ok_or(LedgerError::UnknownHold(order_id))?;
        if hold.state != HoldState::Pending {
            let (actual, expected) = (hold.state, HoldState::Pending);
            return Err(LedgerError::WrongHoldState {
                order_id,
                actual,
                expected,
            });
        }
        Ok(hold)
    }

    fn release(&mut self, order_id: u64, to: HoldState) -> Result<(), LedgerError> {
        let amount = self.pending_hold(order_id)?.amount_paisa;
        self.held_paisa -= amount;
        if let Some(hold) = self.holds.get_mut(&order_id) {
            hold.state = to;
        }
        Ok(())
    }

    /// Appends an entry after checking the running balance cannot overflow; the only place
    /// entries are created, so the running balance is always consistent.
    fn append(
        &mut self,
        kind: EntryKind,
        order_id: Option<u64>,
        amount_paisa: Paisa,
        at_ms: i64,
        due_at_ms: Option<i64>,
    ) -> Result<u64, LedgerError> {
        let previous = self.entries.last().map_or(0, |e| e.balance_after_paisa);
        let balance_after_paisa = previous
            .checked_add(amount_paisa)
            .ok_or(LedgerError::Overflow)?;
        let seq = self.entries.len() as u64 + 1;
        let remaining_paisa = if kind == EntryKind::OrderDebit {
            amount_paisa
        } else {
            0
        };
        self.entries.push(LedgerEntry {
            seq,
            kind,
            order_id,
            amount_paisa,
            balance_after_paisa,
            at_ms,
            due_at_ms,
            remaining_paisa,
        });
        Ok(seq)
    }

    /// Spreads a credit over open debits (`first` before the FIFO order) and keeps the rest
    /// as credit balance, moving `outstanding` with every paisa applied.
    fn apply_credit(&mut self, amount_paisa: Paisa, first: Option<u64>) -> Allocation<u64> {
        let mut applied = Vec::new();
        let mut left = amount_paisa;
        if let Some(entry) = first.and_then(|seq| self.entries.iter_mut().find(|e| e.seq == seq)) {
            let take = left.min(entry.remaining_paisa);
            if take > 0 {
                entry.remaining_paisa -= take;
                self.outstanding_paisa -= take;
                left -= take;
                applied.push((entry.seq, take));
            }
        }
        let open: Vec<OpenDebit<u64>> = self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::OrderDebit && e.remaining_paisa > 0)
            .map(|e| OpenDebit {
                id: e.seq,
                due_at_ms: e.due_at_ms.unwrap_or(e.at_ms),
                remaining_paisa: e.remaining_paisa,
            })
            .collect();
        // `left` is never negative here, so the FIFO rule cannot refuse it.
        let fifo = allocate_fifo(left, &open).unwrap_or(Allocation {
            applied: Vec::new(),
            unapplied_credit_paisa: left,
        });
        for &(seq, take) in &fifo.applied {
            if let Some(entry) = self.entries.get_mut((seq - 1) as usize) {
                entry.remaining_paisa -= take;
                self.outstanding_paisa -= take;
            }
        }
        applied.extend(fifo.applied);
        self.credit_balance_paisa += fifo.unapplied_credit_paisa;
        Allocation {
            applied,
            unapplied_credit_paisa: fifo.unapplied_credit_paisa,
        }
    }
}
