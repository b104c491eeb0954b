//! One small, general resilience stack for every call Khaacho makes to something outside the
//! process (LLM providers now; Twilio, webhooks and vendor systems later), per DESIGN §5:
//!
//! ```text
//! fallback ( retry ( breaker → bulkhead → timeout → the call ) )
//! ```
//!
//! Each attempt asks the circuit breaker for permission (rejected at once while open), takes a
//! bulkhead slot (rejected at once when the dependency already has `max_concurrent` calls in
//! flight, so one slow provider cannot tie up every worker), and runs under the timeout. Its
//! outcome feeds the breaker. A failed attempt is retried, with exponential backoff and full
//! jitter, only when the policy has a [`RetryConfig`] (the caller's statement that the call is
//! idempotent) and the error says it is retryable. What the caller does when everything failed
//! is the fallback: [`Resilient::call_with_fallback`] or the caller's own code plus
//! [`Resilient::record_fallback`].
//!
//! The circuit breaker is written here (about 200 lines) rather than taken from `recloser`, and
//! backoff rather than from `backon`: DESIGN §5 asks for a rolling *time* window combined with a
//! consecutive-failure trip, one trial call at a time when half-open, several successes to close,
//! and metrics plus a log line on every transition. recloser counts a ring of the last N calls
//! (no time window, no consecutive trip, no transition hook), so it would need wrapping anyway;
//! owning the state machine also lets it run on `tokio::time::Instant`, which makes every test
//! deterministic under paused time. Backoff with full jitter is five lines.
//!
//! Metrics (all labelled `dependency`):
//! - `khaacho_dependency_calls_total{outcome=success|failure|timeout|rejected_open|rejected_full}`,
//!   one per attempt;
//! - `khaacho_dependency_call_duration_seconds`, a histogram of attempts that reached the
//!   dependency;
//! - `khaacho_breaker_state`, 0 closed, 1 half-open, 2 open;
//! - `khaacho_fallback_total`, answers that came from the fallback instead.
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

mod breaker;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use breaker::{Admission, Breaker};
pub use breaker::{BreakerConfig, BreakerState};

/// Everything that decides how calls to one dependency are protected.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Dependency name: the `dependency` label of the metrics and the log field.
    pub name: &'static str,
    /// Limit for one attempt.
    pub timeout: Duration,
    /// When the breaker opens and closes.
    pub breaker: BreakerConfig,
    /// Bulkhead size: attempts in flight at once; more are rejected with [`CallError::Full`].
    pub max_concurrent: usize,
    /// `Some` only when the call is idempotent and may be repeated.
    pub retry: Option<RetryConfig>,
}

impl Policy {
    /// A policy with the DESIGN §5 breaker defaults, 16 concurrent calls and no retry.
    pub fn new(name: &'static str, timeout: Duration) -> Policy {
        Policy {
            name,
            timeout,
            breaker: BreakerConfig::default(),
            max_concurrent: 16,
            retry: None,
        }
    }
}

/// Exponential backoff with full jitter: before retry `n` (1-based) wait a uniformly random
/// time in `[0, min(cap, base · 2^(n-1))]`. Full jitter spreads the retries of many callers
/// that failed together, so they do not hit the recovering dependency in lock step.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Attempts in total, the first included; 1 means no retry.
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry.
    pub base: Duration,
    /// Upper bound of any single backoff.
    pub cap: Duration,
}

impl RetryConfig {
    /// The random wait before retry number `retry` (1-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2f64.powi(retry.saturating_sub(1).min(30) as i32);
        let ceiling = self.base.mul_f64(factor).min(self.cap);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// What the caller's error says about itself.
pub trait Classify {
    /// Worth trying again (a 429, a 5xx, a dropped connection), given the call is idempotent.
    fn is_retryable(&self) -> bool;

    /// Evidence that the dependency is unhealthy. A 400 for a bad request is the caller's fault
    /// and says the dependency answered: the breaker records it as a success (it also counts
    /// towards closing a half-open breaker), so it can never open the breaker.
    fn counts_as_failure(&self) -> bool {
        true
    }
}

/// Why a protected call did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError<E> {
    /// The last attempt took longer than the policy's timeout.
    Timeout,
    /// Rejected without calling because the breaker is open (or half-open with its trial
    /// slot taken).
    Open,
    /// Rejected without calling because the bulkhead is full.
    Full,
    /// The dependency's own error from the last attempt.
    Inner(E),
}

impl<E> CallError<E> {
    /// Short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::Open => "rejected_open",
            CallError::Full => "rejected_full",
            CallError::Inner(_) => "failure",
        }
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout => f.write_str("call timed out"),
            CallError::Open => f.write_str("circuit breaker open"),
            CallError::Full => f.write_str("too many calls in flight"),
            CallError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Inner(e) => Some(e),
            _ => None,
        }
    }
}

/// Which side of [`Resilient::call_with_fallback`] produced the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The protected dependency.
    Primary,
    /// The fallback.
    Fallback,
}

/// The resilience stack for one dependency. Create one per dependency at start-up and clone it
/// freely: clones share the breaker and the bulkhead.
#[derive(Debug, Clone)]
pub struct Resilient {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    policy: Policy,
    breaker: Breaker,
    bulkhead: Arc<Semaphore>,
}

impl Resilient {
    /// Builds the stack; the breaker starts closed.
    pub fn new(policy: Policy) -> Resilient {
        let breaker = Breaker::new(policy.name, policy.breaker.clone());
        let bulkhead = Arc::new(Semaphore::new(policy.max_concurrent.max(1)));
        Resilient {
            inner: Arc::new(Shared {
                policy,
                breaker,
                bulkhead,
            }),
        }
    }

    /// The dependency name.
    pub fn name(&self) -> &'static str {
        self.inner.policy.name
    }

    /// The policy this stack was built with.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Current breaker state, for dashboards and readiness checks.
    pub fn state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Runs `f` under the stack. `f` is called once per attempt and must build a fresh future
    /// each time. Rejections (`Open`, `Full`) are never retried: retrying into an open breaker
    /// or a full bulkhead only adds load where there is already too much.
    pub async fn call<T, E, F, Fut>(&self, mut f: F) -> Result<T, CallError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let max_attempts = self
            .inner
            .policy
            .retry
            .as_ref()
            .map_or(1, |r| r.max_attempts.max(1));
        let mut attempt = 1;
        loop {
            let err = match self.attempt(&mut f).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retryable = match &err {
                CallError::Timeout => true,
                CallError::Inner(e) => e.is_retryable(),
                CallError::Open | CallError::Full => false,
            };
            if !retryable || attempt >= max_attempts {
                return Err(err);
            }
            if let Some(retry) = &self.inner.policy.retry {
                let wait = retry.backoff(attempt);
                tracing::debug!(
                    dependency = self.name(),
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    error = err.kind(),
                    "retrying call"
                );
                tokio::time::sleep(wait).await;
            }
            attempt += 1;
        }
    }

    /// One attempt: breaker, bulkhead, timeout, metrics.
    async fn attempt<T, E, F, Fut>(&self, f: &mut F) -> Result<T, CallError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let name = self.name();
        let Some(admission) = self.inner.breaker.admit() else {
            count(name, "rejected_open");
            return Err(CallError::Open);
        };
        let Ok(_permit) = self.inner.bulkhead.clone().try_acquire_owned() else {
            // Dropping the admission un-reserves a half-open trial slot: nothing was called.
            drop(admission);
            count(name, "rejected_full");
            return Err(CallError::Full);
        };
        let started = Instant::now();
        let result = tokio::time::timeout(self.inner.policy.timeout, f()).await;
        metrics::histogram!("khaacho_dependency_call_duration_seconds", "dependency" => name)
            .record(started.elapsed().as_secs_f64());
        finish(name, admission, result)
    }

    /// Runs `primary` under the stack and, if it fails for any reason, `fallback` with the
    /// error. Counts `khaacho_fallback_total` when the fallback answers.
    pub async fn call_with_fallback<T, E, F, Fut, G, GFut>(
        &self,
        primary: F,
        fallback: G,
    ) -> (T, Answered)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
        G: FnOnce(CallError<E>) -> GFut,
        GFut: Future<Output = T>,
    {
        match self.call(primary).await {
            Ok(v) => (v, Answered::Primary),
            Err(e) => {
                self.record_fallback();
                (fallback(e).await, Answered::Fallback)
            }
        }
    }

    /// Counts one answer served by a fallback instead of this dependency, for callers that
    /// chain dependencies themselves.
    pub fn record_fallback(&self) {
        metrics::counter!("khaacho_fallback_total", "dependency" => self.name()).increment(1);
    }
}

fn finish<T, E: Classify>(
    name: &'static str,
    admission: Admission,
    result: Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> Result<T, CallError<E>> {
    match result {
        Ok(Ok(v)) => {
            admission.record(false);
            count(name, "success");
            Ok(v)
        }
        Ok(Err(e)) => {
            admission.record(e.counts_as_failure());
            count(name, "failure");
            Err(CallError::Inner(e))
        }
        Err(_) => {
            admission.record(true);
            count(name, "timeout");
            Err(CallError::Timeout)
        }
    }
}

/// Registers help text and units for the metrics this crate emits, so the Prometheus page
/// explains them. Call once after installing the global recorder; harmless to repeat.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "khaacho_dependency_calls_total",
        "Attempts to call an outside dependency, by outcome \
         (success, failure, timeout, rejected_open, rejected_full)"
    );
    metrics::describe_histogram!(
        "khaacho_dependency_call_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of attempts that reached an outside dependency"
    );
    metrics::describe_gauge!(
        "khaacho_breaker_state",
        "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open"
    );
    metrics::describe_counter!(
        "khaacho_fallback_total",
        "Answers served by a fallback because the dependency failed or was rejected"
    );
}

fn count(dependency: &'static str, outcome: &'static str) {
    metrics::counter!(
        "khaacho_dependency_calls_total",
        "dependency" => dependency,
        "outcome" => outcome
    )
    .increment(1);
}
