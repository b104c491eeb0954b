//! The reconciliation check of the reference model, kept apart from the operations so each
//! file reads as one concern: how money moves, and how we prove it moved correctly.

use super::{AccountModel, EntryKind, HoldState};
use crate::Paisa;
use crate::ledger::LedgerError;

impl AccountModel {
    /// Re-derives every counter from holds and entries and reports the first drift, like the
    /// reconciliation job: held == Σ pending holds; outstanding == Σ debits' remaining;
    /// outstanding − credit balance == Σ entries == last running balance; held + outstanding
    /// ≤ limit; no negative counter; credit balance only while nothing is owed.
    pub fn check_invariants(&self) -> Result<(), LedgerError> {
        let fail = |what: String| Err(LedgerError::InvariantViolated(what));
        let pending: Paisa = self
            .holds
            .values()
            .filter(|h| h.state == HoldState::Pending)
            .map(|h| h.amount_paisa)
            .sum();
        if pending != self.held_paisa {
            return fail(format!(
                "held {} != Σ pending holds {pending}",
                self.held_paisa
            ));
        }
        let open: Paisa = self.entries.iter().map(|e| e.remaining_paisa).sum();
        if open != self.outstanding_paisa {
            return fail(format!(
                "outstanding {} != Σ remaining {open}",
                self.outstanding_paisa
            ));
        }
        let mut balance: Paisa = 0;
        for e in &self.entries {
            balance += e.amount_paisa;
            if e.balance_after_paisa != balance {
                return fail(format!(
                    "entry {} running balance {} != {balance}",
                    e.seq, e.balance_after_paisa
                ));
            }
            let debit_ok = e.kind == EntryKind::OrderDebit
                && (0..=e.amount_paisa).contains(&e.remaining_paisa);
            let credit_ok =
                e.kind != EntryKind::OrderDebit && e.amount_paisa < 0 && e.remaining_paisa == 0;
            if !(debit_ok || credit_ok) {
                return fail(format!(
                    "entry {} has remaining {} of {}",
                    e.seq, e.remaining_paisa, e.amount_paisa
                ));
            }
        }
        if balance != self.outstanding_paisa - self.credit_balance_paisa {
            return fail(format!(
                "Σ entries {balance} != outstanding − credit balance"
            ));
        }
        if self.held_paisa < 0
            || self.outstanding_paisa < 0
            || self.credit_balance_paisa < 0
            || self.limit_paisa < 0
        {
            return fail("negative counter".to_owned());
        }
        if self.held_paisa + self.outstanding_paisa > self.limit_paisa {
            return fail(format!(
                "held + outstanding above limit {}",
                self.limit_paisa
            ));
        }
        if self.credit_balance_paisa > 0 && self.outstanding_paisa > 0 {
            return fail("credit balance left unapplied while debits are open".to_owned());
        }
        self.check_holds()
    }

    fn check_holds(&self) -> Result<(), LedgerError> {
        for (order_id, h) in &self.holds {
            let posted_ok = h.posted_paisa >= 0 && h.posted_paisa <= h.amount_paisa;
            let refund_ok = h.refunded_paisa >= 0 && h.refunded_paisa <= h.posted_paisa;
            let state_ok =
                h.state == HoldState::Posted || (h.posted_paisa == 0 && h.refunded_paisa == 0);
            if !(h.amount_paisa > 0 && posted_ok && refund_ok && state_ok) {
                return Err(LedgerError::InvariantViolated(format!(
                    "hold of order {order_id} inconsistent: {h:?}"
                )));
            }
        }
        Ok(())
    }
}
