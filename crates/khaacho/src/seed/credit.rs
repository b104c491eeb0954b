//! Demo credit histories: every demo retailer gets a credit account with a limit between
//! NPR 50,000 and 1,000,000 and a past of orders delivered and paid, written through the real
//! ledger ([`ledger::reserve`], [`ledger::post_delivery`], [`payments::record_at`]) at past
//! times, so balances, due dates, late-payment streaks and ledger entries are genuine and the
//! reconciliation stays clean. Each retailer's profile (table below) is chosen by its row in
//! `retailers.csv`, so the demo is the same on every machine and every band and rule can be
//! seen: on-time payers, occasional and frequent late payers, a streak of late payments, a
//! debit 35 days overdue (block), one 16 days overdue (warning), a very poor payer (cash
//! only) and brand-new accounts. Scores and bands are left for the scoring job.
//!
//! Idempotent: a retailer whose account exists already (from an earlier seed or real orders)
//! is left alone.

use anyhow::Context;
use khaacho_credit::CreditSettings;
use uuid::Uuid;

use super::{RETAILERS, RetailerRow, spread};
use crate::app::App;
use crate::base::db::Tx;
use crate::base::time::now_ms;
use crate::credit::ledger::{self, Reserve};
use crate::credit::payments::{self, Method};
use crate::credit::repo;
use crate::parties::repo as parties;

const DAY_MS: i64 = 86_400_000;
/// Payment terms of a new account (the `terms_days` default), days.
const TERMS_DAYS: i64 = 30;
/// How late each payment of a streak is made, days after due (the grace is 7).
const STREAK_LATE_DAYS: i64 = 12;
/// Who the seeded payments are recorded by.
const ACTOR: &str = "seed:demo";

/// One kind of credit history.
#[derive(Debug)]
pub(crate) struct Profile {
    /// What the demo shows with it.
    pub label: &'static str,
    /// The credit limit, NPR.
    pub limit_npr: i64,
    /// Months since the account was opened; 0 opens it today with no history.
    pub months: i64,
    /// Days between orders.
    pub every_days: i64,
    /// Order value, percent of the limit (varied ±15% per order).
    pub order_pct: i64,
    /// Days after due each payment is made, in turn (more than 7 is late; negative: early).
    pub lateness: &'static [i64],
    /// The newest this many payments are all [`STREAK_LATE_DAYS`] late, and the retailer has
    /// ordered nothing since (a streak of late payments).
    pub late_streak: usize,
    /// The retailer stopped paying: its newest order, unpaid, is now this many days overdue.
    pub overdue_days: Option<i64>,
    /// The band the history aims at once scored (checked against `khaacho-credit`'s score).
    pub aims_at: &'static str,
}

const fn regular(
    label: &'static str,
    limit_npr: i64,
    months: i64,
    every_days: i64,
    order_pct: i64,
    lateness: &'static [i64],
    aims_at: &'static str,
) -> Profile {
    Profile {
        label,
        limit_npr,
        months,
        every_days,
        order_pct,
        lateness,
        late_streak: 0,
        overdue_days: None,
        aims_at,
    }
}

/// Profiles taken in turn by the retailers not named in [`SPECIAL`] or [`NEW`]: retailer `i`
/// gets `REGULAR[i % REGULAR.len()]`. The first two (the first retailers, whom the README's
/// walkthrough and the tests order for) are long on-time payers with ample available credit.
// Columns: what it shows, limit NPR, months open, days between orders, order % of the limit,
// days after due each payment is made in turn (> 7 is late), band aimed at.
#[rustfmt::skip]
const REGULAR: [Profile; 9] = [
    // Pays a day or more before the due date (nothing is ever overdue), weekly, for years.
    regular("on time, long history", 1_000_000, 30, 7, 3, &[-1, -2, -3], "excellent"),
    regular("on time, long history",   500_000, 26, 8, 4, &[-2, -1], "excellent"),
    // Mostly on time, one payment in three or four a little late.
    regular("mostly on time",          300_000, 14, 12, 8, &[2, 10, 0], "good"),
    // Half the payments a week or two late, much of the limit in use.
    regular("occasionally late",       200_000, 12, 10, 16, &[3, 10, 0, 12], "fair"),
    regular("mostly on time",          150_000,  9, 10, 14, &[0, 5, 11, 1], "good"),
    // Three payments in four late, most of the limit in use.
    regular("often late",              100_000, 10, 9, 14, &[10, 13, 2, 9], "poor"),
    regular("on time, long history",   750_000, 24, 6, 3, &[0, 1, -3], "excellent"),
    regular("occasionally late",       250_000, 18, 14, 25, &[1, 12, 4, 9], "fair"),
    regular("often late",               80_000,  6, 11, 15, &[12, 9, 15, 3], "poor"),
];

/// Profiles of particular retailers (row in `retailers.csv`, from 0), each shown once. Kept
/// away from the first rows so the first retailers stay healthy.
#[rustfmt::skip]
const SPECIAL: [(usize, Profile); 4] = [
    // Four late payments in a row since its last on-time one, no order since: the hourly
    // control cuts the limit by 25%.
    (20, Profile {
        late_streak: 4,
        ..regular("late-payment streak", 400_000, 16, 10, 6, &[0, 2, 9], "good")
    }),
    // Stopped paying 65 days ago: its newest debit is 35 days overdue, credit is blocked.
    (30, Profile {
        overdue_days: Some(35),
        ..regular("35 days overdue", 120_000, 11, 12, 12, &[3, 8, 1], "fair")
    }),
    // Its newest debit is 16 days overdue: a warning.
    (40, Profile {
        overdue_days: Some(16),
        ..regular("16 days overdue", 180_000, 13, 9, 10, &[0, 4, 9, 2], "good")
    }),
    // Every payment one to two weeks late and the limit mostly used up (some orders did not
    // fit): cash only.
    (50, regular("very poor", 50_000, 8, 14, 32, &[9, 12, 14, 10], "very_poor")),
];

/// The last retailers of `retailers.csv`: accounts opened yesterday, no history (unrated).
#[rustfmt::skip]
const NEW: [Profile; 4] = [
    regular("brand new",  50_000, 0, 0, 0, &[], "unrated"),
    regular("brand new",  75_000, 0, 0, 0, &[], "unrated"),
    regular("brand new", 100_000, 0, 0, 0, &[], "unrated"),
    regular("brand new",  60_000, 0, 0, 0, &[], "unrated"),
];

/// The profile of the retailer on row `index` of `total`.
pub(crate) fn profile_for(index: usize, total: usize) -> &'static Profile {
    if index + NEW.len() >= total {
        return &NEW[(index + NEW.len()).saturating_sub(total).min(NEW.len() - 1)];
    }
    SPECIAL
        .iter()
        .find(|(i, _)| *i == index)
        .map(|(_, p)| p)
        .unwrap_or(&REGULAR[index % REGULAR.len()])
}

/// One step of a history, in time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Order `order` (numbered from 0) reserved and delivered in full at `at_ms`.
    Deliver {
        order: usize,
        at_ms: i64,
        amount: i64,
    },
    /// Order `order`'s debit paid in full at `at_ms`.
    Pay {
        order: usize,
        at_ms: i64,
        amount: i64,
    },
}

/// A planned history.
#[derive(Debug)]
pub(crate) struct History {
    /// When the account was opened.
    pub opened_at_ms: i64,
    /// Deliveries and payments, oldest first.
    pub events: Vec<Event>,
}

/// Plans `p`'s history as of `now` (`salt`, the retailer's phone, varies the amounts). Pure.
///
/// Orders come every `every_days` from the opening; each is paid in full `TERMS_DAYS` plus
/// its lateness after delivery, payments in order (so FIFO allocation pays exactly that
/// order's debit) and only in the past; an order that would pass the limit is not placed,
/// as the ledger would refuse it.
pub(crate) fn plan(p: &Profile, salt: &str, now: i64) -> History {
    if p.months == 0 {
        return History {
            opened_at_ms: now - DAY_MS,
            events: Vec::new(),
        };
    }
    let opened = now - p.months * 30 * DAY_MS;
    let max_late = p.lateness.iter().copied().max().unwrap_or(0);
    // The newest regular order: yesterday, or early enough that its payment is behind us
    // before the streak ends or the retailer stops paying.
    let stopped_at = p.overdue_days.map(|d| now - (TERMS_DAYS + d) * DAY_MS);
    let last = match (stopped_at, p.late_streak) {
        (Some(stop), _) => stop - (TERMS_DAYS + max_late + 5) * DAY_MS,
        (None, n) if n > 0 => now - (TERMS_DAYS + STREAK_LATE_DAYS + 10) * DAY_MS,
        _ => now - DAY_MS,
    };
    let mut orders: Vec<(i64, i64, Option<i64>)> = Vec::new(); // (delivered, amount, paid)
    let mut at = opened + 2 * DAY_MS;
    while at <= last {
        orders.push((at, 0, None));
        at += p.every_days.max(1) * DAY_MS;
    }
    let count = orders.len();
    let mut previous_payment = i64::MIN;
    for (k, (delivered, amount, paid)) in orders.iter_mut().enumerate() {
        // Whole NPR, 85%–115% of the profile's share of the limit.
        let jitter = 850 + spread(salt, &k.to_string()) as i64 * 300 / 1000;
        *amount = (p.limit_npr * p.order_pct * jitter / 100_000).max(1) * 100;
        let late = if k + p.late_streak >= count {
            STREAK_LATE_DAYS
        } else {
            p.lateness
                .get(k % p.lateness.len().max(1))
                .copied()
                .unwrap_or(0)
        };
        // A few hours into the day, and never before the previous payment.
        let at = (*delivered + (TERMS_DAYS + late) * DAY_MS + 3_600_000 * (1 + k as i64 % 6))
            .max(previous_payment + 3_600_000);
        if at < now {
            *paid = Some(at);
            previous_payment = at;
        }
    }
    if let Some(stop) = stopped_at {
        orders.push((stop, p.limit_npr * p.order_pct, None));
    }
    let mut steps: Vec<Event> = Vec::with_capacity(orders.len() * 2);
    for (order, (delivered, amount, paid)) in orders.iter().enumerate() {
        steps.push(Event::Deliver {
            order,
            at_ms: *delivered,
            amount: *amount,
        });
        if let Some(at_ms) = paid {
            steps.push(Event::Pay {
                order,
                at_ms: *at_ms,
                amount: *amount,
            });
        }
    }
    steps.sort_by_key(|e| match e {
        Event::Deliver { at_ms, order, .. } => (*at_ms, 0, *order),
        Event::Pay { at_ms, order, .. } => (*at_ms, 1, *order),
    });
    // The ledger refuses an order that passes the limit: so does the plan (and drops its
    // payment).
    let limit = p.limit_npr * 100;
    let (mut open, mut refused) = (0_i64, Vec::new());
    let events = steps
        .into_iter()
        .filter(|e| match *e {
            Event::Deliver { order, amount, .. } if open + amount > limit => {
                refused.push(order);
                false
            }
            Event::Deliver { amount, .. } => {
                open += amount;
                true
            }
            Event::Pay { order, amount, .. } if !refused.contains(&order) => {
                open -= amount;
                true
            }
            Event::Pay { .. } => false,
        })
        .collect();
    History {
        opened_at_ms: opened,
        events,
    }
}

/// Opens a credit account with a past history for every demo retailer that has none yet.
/// Returns how many accounts were opened.
pub async fn seed_credit_histories(app: &App) -> anyhow::Result<usize> {
    let rows: Vec<RetailerRow> = csv::Reader::from_reader(RETAILERS.as_bytes())
        .deserialize()
        .collect::<Result<_, _>>()?;
    let settings = &app.settings().credit.rules;
    let now = now_ms();
    let mut opened = 0;
    for (index, row) in rows.iter().enumerate() {
        let Some(retailer) = parties::find_retailer_by_phone(app.db(), &row.phone).await? else {
            continue;
        };
        let mut tx = app.db().begin().await?;
        if repo::account_tx(&mut tx, retailer.id).await?.is_some() {
            tx.rollback().await?;
            continue;
        }
        let profile = profile_for(index, rows.len());
        let history = plan(profile, &row.phone, now);
        repo::ensure_accounts(&mut tx, &[retailer.id], profile.limit_npr * 100).await?;
        repo::set_opened_at(&mut tx, retailer.id, history.opened_at_ms).await?;
        write(&mut tx, retailer.id, &history, settings)
            .await
            .with_context(|| {
                format!(
                    "demo credit history ({}) of {} ({})",
                    profile.label, row.name, row.phone
                )
            })?;
        tx.commit().await?;
        tracing::debug!(
            retailer = %retailer.id,
            profile = profile.label,
            aims_at = profile.aims_at,
            entries = history.events.len(),
            "demo credit history written"
        );
        opened += 1;
    }
    Ok(opened)
}

/// Writes `history` through the ledger: each order a hold on a fresh order id, posted at its
/// delivery time; each payment recorded at its time.
async fn write(
    tx: &mut Tx,
    retailer: Uuid,
    history: &History,
    settings: &CreditSettings,
) -> anyhow::Result<()> {
    const METHODS: [Method; 4] = [Method::Bank, Method::Wallet, Method::Cash, Method::Cheque];
    for event in &history.events {
        match *event {
            Event::Deliver {
                order,
                at_ms,
                amount,
            } => {
                // A synthetic past order: holds and ledger rows need no orders row.
                let id = Uuid::now_v7();
                let reserved = ledger::reserve(tx, retailer, id, amount).await?;
                anyhow::ensure!(
                    reserved == Reserve::Reserved,
                    "order {order} was not reserved: {reserved:?}"
                );
                ledger::post_delivery(tx, id, amount, at_ms).await?;
            }
            Event::Pay {
                order,
                at_ms,
                amount,
            } => {
                let reference = format!("DEMO-{order:04}");
                payments::record_at(
                    tx,
                    retailer,
                    amount,
                    METHODS[order % METHODS.len()],
                    &reference,
                    ACTOR,
                    settings,
                    at_ms,
                )
                .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use khaacho_credit::{Band, ScoreInputs, compute_score, days_past_due, utilisation_pct};

    const NOW: i64 = 1_800_000_000_000;

    /// The score inputs a history gives as of `NOW` (6 months of orders), read the way the
    /// scoring job reads the ledger.
    fn inputs(p: &Profile, h: &History) -> (ScoreInputs, i64) {
        let mut delivered = Vec::new();
        let mut paid = Vec::new();
        for e in &h.events {
            match *e {
                Event::Deliver {
                    order,
                    at_ms,
                    amount,
                } => delivered.push((order, at_ms, amount)),
                Event::Pay { order, at_ms, .. } => paid.push((order, at_ms)),
            }
        }
        let due = |at: i64| at + TERMS_DAYS * DAY_MS;
        let mut i = ScoreInputs {
            account_age_months: p.months as u32,
            ..ScoreInputs::default()
        };
        let mut open = 0;
        let mut oldest_overdue = 0;
        for &(order, at, amount) in &delivered {
            match paid.iter().find(|(o, _)| *o == order) {
                Some((_, paid_at)) => i
                    .paid_debits_days_late
                    .push(days_past_due(due(at), *paid_at)),
                None => {
                    open += amount;
                    if due(at) < NOW {
                        let days = days_past_due(due(at), NOW);
                        oldest_overdue = oldest_overdue.max(days);
                        i.open_debits_days_overdue.push(days);
                    }
                }
            }
        }
        for m in (0..6).rev() {
            let (from, to) = (NOW - (m + 1) * 30 * DAY_MS, NOW - m * 30 * DAY_MS);
            let n = delivered.iter().filter(|d| d.1 >= from && d.1 < to).count();
            i.orders_per_month.push(n as u32);
            i.orders_total += n as u32;
        }
        i.utilisation_pct = utilisation_pct(open, p.limit_npr * 100);
        (i, oldest_overdue)
    }

    #[test]
    fn every_profile_lands_in_the_band_it_aims_at() {
        let s = CreditSettings::default();
        let profiles = REGULAR
            .iter()
            .chain(SPECIAL.iter().map(|(_, p)| p))
            .chain(NEW.iter());
        let mut misses = Vec::new();
        for p in profiles {
            let h = plan(p, "+9779800000000", NOW);
            let (i, oldest_overdue) = inputs(p, &h);
            let score = compute_score(&i, &s);
            let band = if score.has_history {
                Band::from_score(score.score, &s).as_str()
            } else {
                "unrated"
            };
            // Late payers have debits a few days past due; only the overdue profiles reach
            // the warning (15 days).
            let overdue_ok = match p.overdue_days {
                Some(days) => oldest_overdue == days,
                None => oldest_overdue < 15,
            };
            if band != p.aims_at || !overdue_ok {
                misses.push(format!(
                    "{} (NPR {}): {band} {} (aims at {}), {oldest_overdue} days overdue, {i:?}",
                    p.label, p.limit_npr, score.score, p.aims_at
                ));
            }
        }
        assert!(misses.is_empty(), "{misses:#?}");
    }

    #[test]
    fn histories_are_in_time_order_within_the_limit_and_in_the_past() {
        for p in REGULAR.iter().chain(SPECIAL.iter().map(|(_, p)| p)) {
            let h = plan(p, "+9779811111111", NOW);
            assert!(h.events.len() > 10, "{}", p.label);
            let mut open = 0;
            let mut last = h.opened_at_ms;
            for e in &h.events {
                let (at, delta) = match *e {
                    Event::Deliver { at_ms, amount, .. } => (at_ms, amount),
                    Event::Pay { at_ms, amount, .. } => (at_ms, -amount),
                };
                assert!(at >= last && at < NOW, "{}: {e:?}", p.label);
                open += delta;
                assert!((0..=p.limit_npr * 100).contains(&open), "{}", p.label);
                last = at;
            }
        }
    }

    #[test]
    fn profiles_cover_the_rules_and_keep_the_first_retailers_healthy() {
        let total = 66;
        let all: Vec<&Profile> = (0..total).map(|i| profile_for(i, total)).collect();
        for p in &all[..2] {
            assert_eq!(p.aims_at, "excellent");
            assert!(p.overdue_days.is_none() && p.late_streak == 0);
        }
        assert!(
            all.iter()
                .all(|p| (50_000..=1_000_000).contains(&p.limit_npr))
        );
        assert_eq!(all.iter().filter(|p| p.overdue_days == Some(35)).count(), 1);
        assert_eq!(all.iter().filter(|p| p.overdue_days == Some(16)).count(), 1);
        assert_eq!(all.iter().filter(|p| p.late_streak >= 3).count(), 1);
        assert_eq!(all.iter().filter(|p| p.aims_at == "very_poor").count(), 1);
        assert_eq!(all.iter().filter(|p| p.months == 0).count(), NEW.len());
        for band in ["excellent", "good", "fair", "poor"] {
            assert!(all.iter().any(|p| p.aims_at == band), "{band}");
        }
    }
}
