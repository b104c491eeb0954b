//! Intake back-pressure: refuse new orders while the pipeline is too far behind.
//!
//! Past its capacity an open system collapses: orders keep arriving faster than they are
//! validated, the backlog and every order's wait grow without end, and memory with them. So
//! the intake watches the age of the oldest ready job of the pipeline queues and, above
//! `backpressure.max_ready_age_ms`, answers `503` with `Retry-After` — clients slow down, the
//! backlog drains, and latency stays bounded. Orders already accepted are never dropped.
//!
//! The age is sampled, not queried per request: at most one request per process and per
//! `sample_interval_ms` runs the (index-only, constant-cost) query; every other request reads
//! the last sample from an atomic.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Instant;

use tracing::warn;

use crate::base::db::Db;
use crate::config::BackpressureSettings;
use crate::queue::admin::oldest_ready_age_ms;

/// The shared sample of one process.
pub struct Backpressure {
    settings: BackpressureSettings,
    /// Base of the monotonic clock below.
    epoch: Instant,
    /// When the last sample was taken, in µs since `epoch` (`-1`: never).
    sampled_at_us: AtomicI64,
    /// The last sampled age of the oldest ready pipeline job, ms.
    age_ms: AtomicI64,
    /// Set while one request refreshes the sample, so the others do not pile onto the query.
    refreshing: AtomicBool,
}

/// The pipeline is behind: the caller should come back after `retry_after_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overloaded {
    /// Age of the oldest waiting pipeline job, ms.
    pub oldest_ready_age_ms: i64,
    /// Suggested wait before retrying.
    pub retry_after_secs: u64,
}

impl Backpressure {
    /// A gate with no sample yet (the first check takes one).
    pub fn new(settings: BackpressureSettings) -> Self {
        Self {
            settings,
            epoch: Instant::now(),
            sampled_at_us: AtomicI64::new(-1),
            age_ms: AtomicI64::new(0),
            refreshing: AtomicBool::new(false),
        }
    }

    /// `Err` when new orders should be refused now.
    pub async fn check(&self, db: &Db) -> Result<(), Overloaded> {
        if !self.settings.enabled {
            return Ok(());
        }
        self.refresh_if_due(db).await;
        decide(
            self.age_ms.load(Ordering::Relaxed),
            self.settings.max_ready_age_ms,
            self.settings.retry_after_secs,
        )
    }

    async fn refresh_if_due(&self, db: &Db) {
        let now_us = self.epoch.elapsed().as_micros() as i64;
        let last = self.sampled_at_us.load(Ordering::Acquire);
        let every_us = self.settings.sample_interval_ms as i64 * 1_000;
        if last >= 0 && now_us - last < every_us {
            return;
        }
        if self
            .refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return; // another request is taking the sample; use the last one
        }
        // Cleared even if this request is cancelled mid-query (its client went away).
        let _clear = ClearOnDrop(&self.refreshing);
        match oldest_ready_age_ms(db, &self.settings.queues).await {
            Ok(age) => {
                self.age_ms.store(age, Ordering::Relaxed);
                metrics::gauge!("khaacho_intake_backpressure_age_seconds").set(age as f64 / 1000.0);
            }
            // Keep the last sample: a failing database shows up in the intake's own writes.
            Err(e) => warn!(error = %e, "sampling the pipeline backlog failed"),
        }
        self.sampled_at_us
            .store(self.epoch.elapsed().as_micros() as i64, Ordering::Release);
    }
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The decision (pure): refuse when the oldest ready job waited longer than `max_age_ms`.
pub fn decide(age_ms: i64, max_age_ms: i64, retry_after_secs: u64) -> Result<(), Overloaded> {
    if age_ms > max_age_ms {
        Err(Overloaded {
            oldest_ready_age_ms: age_ms,
            retry_after_secs: retry_after_secs.max(1),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_only_above_the_bound() {
        assert_eq!(decide(0, 5_000, 2), Ok(()));
        assert_eq!(decide(5_000, 5_000, 2), Ok(()));
        assert_eq!(
            decide(5_001, 5_000, 2),
            Err(Overloaded {
                oldest_ready_age_ms: 5_001,
                retry_after_secs: 2
            })
        );
        assert_eq!(decide(10, 0, 0).map_err(|o| o.retry_after_secs), Err(1));
    }
}
