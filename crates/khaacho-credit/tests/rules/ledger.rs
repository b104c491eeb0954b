use khaacho_credit::{
    AccountModel, Allocation, CreditSettings, EntryKind, HoldState, LedgerError, OpenDebit,
    allocate_fifo, hold_fits,
};

use crate::{days, npr};

fn debit(id: u64, due_day: i64, remaining: i64) -> OpenDebit {
    OpenDebit {
        id,
        due_at_ms: days(due_day),
        remaining_paisa: remaining,
    }
}

#[test]
fn fifo_pays_oldest_due_first_ties_by_id() {
    let debits = [
        debit(3, 10, 500),
        debit(1, 20, 700),
        debit(2, 10, 300),
        debit(4, 5, 0),
    ];
    let a = allocate_fifo(900, &debits).unwrap();
    assert_eq!(
        a,
        Allocation {
            applied: vec![(2, 300), (3, 500), (1, 100)],
            unapplied_credit_paisa: 0
        }
    );
    let a = allocate_fifo(2_000, &debits).unwrap();
    assert_eq!(a.applied, [(2, 300), (3, 500), (1, 700)]);
    assert_eq!(a.unapplied_credit_paisa, 500);
    assert_eq!(allocate_fifo(0, &debits).unwrap().applied, []);
    assert_eq!(
        allocate_fifo(-1, &debits),
        Err(LedgerError::NonPositiveAmount(-1))
    );
}

#[test]
fn hold_fits_the_reserving_update() {
    assert!(hold_fits(1_000, 300, 500, 200));
    assert!(!hold_fits(1_000, 300, 500, 201));
    assert!(!hold_fits(1_000, 0, 0, 0));
    assert!(!hold_fits(i64::MAX, i64::MAX, i64::MAX, 1));
}

#[test]
fn hold_post_short_delivery_releases_the_rest() {
    let mut m = AccountModel::new(npr(100_000), 30).unwrap();
    m.hold(1, npr(60_000)).unwrap();
    assert_eq!(
        m.hold(2, npr(40_001)),
        Err(LedgerError::LimitExceeded {
            requested: npr(40_001),
            available: npr(40_000)
        })
    );
    assert_eq!(m.hold(1, 5), Err(LedgerError::DuplicateHold(1)));
    m.hold(2, npr(40_000)).unwrap();
    let seq = m.post(1, npr(50_000), days(10)).unwrap();
    assert_eq!(
        (m.held_paisa(), m.outstanding_paisa(), m.available_paisa()),
        (npr(40_000), npr(50_000), npr(10_000))
    );
    let e = &m.entries()[(seq - 1) as usize];
    assert_eq!(
        (e.kind, e.due_at_ms, e.balance_after_paisa),
        (EntryKind::OrderDebit, Some(days(40)), npr(50_000))
    );
    assert_eq!(m.holds()[&1].state, HoldState::Posted);
    assert_eq!(
        m.post(1, 1, 0),
        Err(LedgerError::WrongHoldState {
            order_id: 1,
            actual: HoldState::Posted,
            expected: HoldState::Pending
        })
    );
    assert_eq!(
        m.post(2, npr(40_001), 0),
        Err(LedgerError::DeliveredExceedsHold {
            delivered: npr(40_001),
            held: npr(40_000)
        })
    );
    m.void(2).unwrap();
    assert_eq!(m.held_paisa(), 0);
    assert_eq!(
        m.void(2),
        Err(LedgerError::WrongHoldState {
            order_id: 2,
            actual: HoldState::Voided,
            expected: HoldState::Pending
        })
    );
    m.check_invariants().unwrap();
}

#[test]
fn payments_and_refunds_settle_debits_and_keep_overpayment_as_credit() {
    let mut m = AccountModel::new(npr(100_000), 30).unwrap();
    m.hold(1, npr(10_000)).unwrap();
    m.hold(2, npr(20_000)).unwrap();
    let d1 = m.post(1, npr(10_000), days(1)).unwrap();
    let d2 = m.post(2, npr(20_000), days(2)).unwrap();
    let a = m.pay(npr(15_000), days(5)).unwrap();
    assert_eq!(a.applied, [(d1, npr(10_000)), (d2, npr(5_000))]);
    assert_eq!(m.outstanding_paisa(), npr(15_000));
    // Refund of a paid order: settles the other open debit, the rest is credit.
    m.reverse_after_delivery(1, npr(10_000), days(6)).unwrap();
    assert_eq!(
        m.reverse_after_delivery(1, 1, days(6)),
        Err(LedgerError::RefundExceedsPosted {
            requested: 1,
            refundable: 0
        })
    );
    assert_eq!(
        (m.outstanding_paisa(), m.credit_balance_paisa()),
        (npr(5_000), 0)
    );
    m.pay(npr(8_000), days(7)).unwrap();
    assert_eq!(
        (m.outstanding_paisa(), m.credit_balance_paisa()),
        (0, npr(3_000))
    );
    assert_eq!(m.entries().last().unwrap().balance_after_paisa, -npr(3_000));
    // The credit settles the next delivery.
    m.hold(3, npr(5_000)).unwrap();
    m.post(3, npr(5_000), days(8)).unwrap();
    assert_eq!(
        (m.outstanding_paisa(), m.credit_balance_paisa()),
        (npr(2_000), 0)
    );
    m.check_invariants().unwrap();
}

#[test]
fn set_limit_refuses_decreases_below_the_floors() {
    let s = CreditSettings::default();
    let mut m = AccountModel::new(npr(100_000), 30).unwrap();
    m.hold(1, npr(50_000)).unwrap();
    m.post(1, npr(50_000), 0).unwrap();
    assert_eq!(
        m.set_limit(npr(59_999), &s),
        Err(LedgerError::LimitBelowOutstandingFloor {
            requested: npr(59_999),
            floor: npr(60_000)
        })
    );
    m.set_limit(npr(60_000), &s).unwrap();
    m.hold(2, npr(10_000)).unwrap();
    m.set_limit(npr(80_000), &s).unwrap(); // an increase is always allowed
    assert_eq!(
        m.set_limit(npr(59_000), &s),
        Err(LedgerError::LimitBelowOutstandingFloor {
            requested: npr(59_000),
            floor: npr(60_000)
        })
    );
    m.set_limit(npr(65_000), &s).unwrap();
    m.hold(3, npr(5_000)).unwrap();
    assert_eq!(
        m.set_limit(npr(64_000), &s),
        Err(LedgerError::LimitBelowCommitted {
            requested: npr(64_000),
            committed: npr(65_000)
        })
    );
    assert_eq!(m.set_limit(-1, &s), Err(LedgerError::NegativeLimit(-1)));
    m.check_invariants().unwrap();
}

#[test]
fn blocked_accounts_take_no_holds() {
    let mut m = AccountModel::new(npr(1_000), 30).unwrap();
    m.set_blocked(true);
    assert_eq!(m.hold(1, 100), Err(LedgerError::AccountBlocked));
    m.set_blocked(false);
    m.hold(1, 100).unwrap();
    m.expire(1).unwrap();
    assert_eq!(m.holds()[&1].state, HoldState::Expired);
    assert_eq!(m.hold(2, 0), Err(LedgerError::NonPositiveAmount(0)));
    assert_eq!(m.void(9), Err(LedgerError::UnknownHold(9)));
    m.check_invariants().unwrap();
}
