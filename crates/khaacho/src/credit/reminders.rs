//! Payment reminders (DOMAIN "Channels": 3 days before a due date, on it, and 7 days after
//! while still unpaid), as a daily job in Nepal time (`schedules.payment_reminders`). Each
//! open delivery debit (`ledger_entries`, `order_debit` with `open_paisa > 0`) gets at most
//! one reminder of each kind (the outbox's key `<entry id>:reminder:<kind>`), so a second
//! run the same day, or a run on a later day, writes nothing twice. A day the job did not
//! run is caught up: "soon" is sent for a due date 1–3 days ahead, "overdue" 7–14 days
//! after; "due today" only on the day itself.
//!
//! One read of the open debits in that window with their retailers, one transaction for the
//! messages (`channels::credit_notices`).

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::app::{App, JobContext};
use crate::base::time::{nepal, nepal_day};
use crate::channels::credit_notices::{self, Notice, order_ref};
use crate::queue::{Job, JobError, Priority, RetryPolicy};
use crate::with_latest;

const DAY_MS: i64 = 86_400_000;

/// A reminder's kind: its template and where its due date lies from today (Nepal days).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Due in 1–3 days.
    Soon,
    /// Due today.
    Today,
    /// Due 7–14 days ago and still unpaid.
    Overdue,
}

impl Kind {
    /// The kind for a due date `due_day` seen on `today` (Nepal days), if any.
    pub fn of(due_day: i64, today: i64) -> Option<Kind> {
        match due_day - today {
            1..=3 => Some(Kind::Soon),
            0 => Some(Kind::Today),
            -14..=-7 => Some(Kind::Overdue),
            _ => None,
        }
    }

    /// Template name.
    pub fn template(self) -> &'static str {
        match self {
            Kind::Soon => "payment_due_soon",
            Kind::Today => "payment_due_today",
            Kind::Overdue => "payment_overdue",
        }
    }
}

/// A date as Nepal shows it (Gregorian, Nepal time): `2026-12-06`.
pub fn nepal_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&nepal())
        .format("%Y-%m-%d")
        .to_string()
}

/// Queues the reminders due on `now`'s Nepal day; returns how many were new.
pub async fn run(app: &App, now: i64) -> anyhow::Result<usize> {
    let today = nepal_day(now);
    // Wide enough for every kind (a day either side for the time zone).
    let from = now - 15 * DAY_MS;
    let to = now + 4 * DAY_MS;
    type Row = (Uuid, Uuid, Option<Uuid>, i64, i64);
    let rows: Vec<Row> = with_latest!(app.db(), c => sqlx::query_as(
        "SELECT id, retailer_id, order_id, due_at_ms, open_paisa FROM ledger_entries \
         WHERE kind = 'order_debit' AND open_paisa > 0 AND due_at_ms >= $1 AND due_at_ms < $2 ORDER BY id")
        .bind(from).bind(to).fetch_all(c).await)?;
    let block_days = app.settings().credit.rules.overdue_block_days;
    let notices: Vec<Notice> = rows
        .into_iter()
        .filter_map(|(id, retailer, order, due, open)| {
            let kind = Kind::of(nepal_day(due), today)?;
            Some(Notice {
                retailer_id: retailer,
                template: kind.template(),
                vars: json!({
                    "ref": order.map(order_ref).unwrap_or_default(),
                    "amount": khaacho_credit::npr(open),
                    "date": nepal_date(due),
                    "block_days": block_days,
                }),
                key: format!("{id}:reminder:{}", kind.template()),
            })
        })
        .collect();
    if notices.is_empty() {
        return Ok(0);
    }
    let channels = &app.settings().channels;
    let send = crate::channels::outbox::configured(channels);
    let email = crate::channels::outbox::email_configured(channels);
    let mut tx = app.db().begin().await?;
    let n = credit_notices::queue(&mut tx, &notices, now, send, email).await?;
    tx.commit().await?;
    Ok(n)
}

/// Job: the daily payment reminders.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PaymentReminders {}

impl Job for PaymentReminders {
    type Host = App;
    const KIND: &'static str = "credit.payment_reminders";
    const QUEUE: &'static str = "maintenance";
    const PRIORITY: Priority = Priority::Low;

    fn policy() -> RetryPolicy {
        RetryPolicy::sweep()
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        let now = ctx.app.clock().now_ms();
        let n = run(&ctx.app, now).await?;
        tracing::info!(reminders = n, "payment reminders queued");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_days_to_the_due_date() {
        assert_eq!(Kind::of(14, 10), None);
        assert_eq!(Kind::of(13, 10), Some(Kind::Soon));
        assert_eq!(Kind::of(11, 10), Some(Kind::Soon));
        assert_eq!(Kind::of(10, 10), Some(Kind::Today));
        assert_eq!(Kind::of(9, 10), None);
        assert_eq!(Kind::of(4, 10), None);
        assert_eq!(Kind::of(3, 10), Some(Kind::Overdue));
        assert_eq!(Kind::of(-4, 10), Some(Kind::Overdue));
        assert_eq!(Kind::of(-5, 10), None);
    }
}
