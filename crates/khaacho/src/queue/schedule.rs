//! Recurring jobs. Every node runs the scheduler; a tick fires once across all of them
//! because the tick row `(name, fire_at_ms)` is inserted in the same transaction as the job
//! and its primary key refuses the second insert.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use crate::base::time::nepal;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::{EnqueueOptions, Job, QueueHost, enqueue};
use crate::base::db::Tx;
use crate::base::time::now_ms;
use crate::with_tx;

/// Prefix of the dedupe key of a scheduled job (`schedule:{name}:{fire_at_ms}`).
pub const DEDUPE_PREFIX: &str = "schedule:";

/// Parses a cron expression with an optional leading seconds field.
pub fn parse_cron(expr: &str) -> anyhow::Result<Cron> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| anyhow::anyhow!("invalid cron expression {expr:?}: {e}"))
}

type FireFn = Arc<
    dyn Fn(&mut Tx, i64) -> futures::future::BoxFuture<'_, Result<bool, sqlx::Error>> + Send + Sync,
>;

/// One recurring job: a name, a cron expression and the job it enqueues.
#[derive(Clone)]
pub struct Schedule {
    name: &'static str,
    cron: Cron,
    fire: FireFn,
}

impl Schedule {
    /// A schedule enqueueing `J::default()` on every tick of `cron`.
    pub fn new<J: Job + Default>(name: &'static str, cron: &str) -> anyhow::Result<Self> {
        let cron = parse_cron(cron)?;
        let fire: FireFn = Arc::new(move |tx: &mut Tx, fire_at_ms: i64| {
            Box::pin(async move {
                let opts = EnqueueOptions {
                    dedupe_key: Some(format!("{DEDUPE_PREFIX}{name}:{fire_at_ms}")),
                    ..EnqueueOptions::default()
                };
                let Some(job_id) = enqueue(tx, &J::default(), opts).await? else {
                    return Ok(false);
                };
                let inserted = with_tx!(tx, c => sqlx::query(
                    "INSERT INTO schedule_ticks (name, fire_at_ms, job_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(name)
                    .bind(fire_at_ms)
                    .bind(job_id)
                    .execute(c)
                    .await?
                    .rows_affected());
                Ok(inserted == 1)
            })
        });
        Ok(Self { name, cron, fire })
    }

    /// The schedule's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn next_after(&self, ms: i64) -> Option<i64> {
        let at: DateTime<FixedOffset> =
            DateTime::from_timestamp_millis(ms)?.with_timezone(&nepal());
        self.cron
            .find_next_occurrence(&at, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// Fires the tick at `fire_at_ms` unless another node already did; returns whether this
    /// call fired it.
    pub async fn fire<H: QueueHost>(&self, app: &H, fire_at_ms: i64) -> Result<bool, sqlx::Error> {
        let mut tx = app.db().begin().await?;
        let fired = (self.fire)(&mut tx, fire_at_ms).await?;
        if fired {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(fired)
    }
}

/// Runs the scheduler until shutdown: sleeps to each schedule's next tick and fires it.
pub async fn run<H: QueueHost>(app: H, schedules: Vec<Schedule>, shutdown: CancellationToken) {
    let start = now_ms();
    let mut next: Vec<Option<i64>> = schedules.iter().map(|s| s.next_after(start)).collect();
    info!(schedules = ?schedules.iter().map(Schedule::name).collect::<Vec<_>>(), "scheduler starting");
    loop {
        let now = now_ms();
        for (s, slot) in schedules.iter().zip(next.iter_mut()) {
            let Some(at) = *slot else { continue };
            if at > now {
                continue;
            }
            match s.fire(&app, at).await {
                Ok(true) => info!(schedule = s.name, fire_at_ms = at, "recurring job enqueued"),
                Ok(false) => {}
                Err(e) => {
                    error!(schedule = s.name, error = %e, "firing a schedule failed; retrying");
                    continue;
                }
            }
            *slot = s.next_after(now.max(at));
        }
        let wait = next
            .iter()
            .flatten()
            .min()
            .map(|at| (at - now_ms()).clamp(10, 1_000))
            .unwrap_or(1_000);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_tick_is_in_nepal_time() {
        let cron = parse_cron("0 0 2 * * *").unwrap();
        let s = Schedule {
            name: "t",
            cron,
            fire: Arc::new(|_, _| Box::pin(async { Ok(false) })),
        };
        // 2026-11-23T00:00:00Z is 05:45 NPT; the next 02:00 NPT is 2026-11-23T20:15:00Z.
        let from = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        let want = DateTime::parse_from_rfc3339("2026-11-23T20:15:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(s.next_after(from), Some(want));
    }

    #[test]
    fn rejects_bad_cron() {
        assert!(parse_cron("not a cron").is_err());
        assert!(parse_cron("*/2 * * * * *").is_ok());
    }
}
