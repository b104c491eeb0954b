//! The circuit breaker state machine.
//!
//! Kept free of I/O and async so every transition is a plain method call under one short-lived
//! mutex; the caller ([`crate::Resilient`]) supplies the clock reading. The clock is
//! `tokio::time::Instant` so tests drive it with `tokio::time::pause`/`advance`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// When the breaker opens and how it recovers (DESIGN §5).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Length of the rolling window over which the failure rate is computed.
    pub window: Duration,
    /// The failure rate is only trusted once the window holds at least this many calls, so two
    /// failures out of three right after start-up do not open the breaker.
    pub min_calls: u32,
    /// Opens when failures / calls in the window reach this share (0..=1).
    pub failure_rate: f64,
    /// Opens after this many failures in a row, whatever the window says: a dependency that
    /// has just gone down should not need `min_calls` calls to be noticed.
    pub consecutive_failures: u32,
    /// How long the breaker stays open before it lets a trial call through.
    pub open_for: Duration,
    /// Successful trial calls in a row needed to close again.
    pub close_after_successes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: Duration::from_secs(60),
            min_calls: 10,
            failure_rate: 0.5,
            consecutive_failures: 5,
            open_for: Duration::from_secs(60),
            close_after_successes: 3,
        }
    }
}

/// The externally visible breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Trial calls go through one at a time; a failure re-opens, enough successes close.
    HalfOpen,
    /// Calls are rejected without reaching the dependency.
    Open,
}

impl BreakerState {
    /// Value of the `khaacho_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }

    /// Lowercase name for logs and dashboards.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed {
        /// (finish time, failed) of each call in the rolling window, oldest first.
        window: VecDeque<(Instant, bool)>,
        consecutive: u32,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        successes: u32,
        trial_in_flight: bool,
    },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped on every transition. A call admitted under an older generation reports into a
    /// state it never saw (e.g. a slow call from before the breaker opened): it is ignored so
    /// it cannot close or re-open the breaker by accident.
    generation: u64,
}

/// A circuit breaker for one dependency. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    name: &'static str,
    config: Arc<BreakerConfig>,
    inner: Arc<Mutex<Inner>>,
}

/// Permission to make one call. Must be completed with [`Admission::record`]; if it is dropped
/// instead (the caller's future was cancelled), a half-open trial slot is given back so the
/// breaker cannot get stuck refusing every call.
#[derive(Debug)]
pub(crate) struct Admission {
    breaker: Breaker,
    generation: u64,
    trial: bool,
    done: bool,
}

impl Admission {
    /// Reports the call's outcome to the breaker.
    pub(crate) fn record(mut self, failed: bool) {
        self.done = true;
        self.breaker
            .record(self.generation, self.trial, failed, Instant::now());
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.done && self.trial {
            let mut inner = self.breaker.lock();
            if inner.generation == self.generation
                && let Phase::HalfOpen {
                    trial_in_flight, ..
                } = &mut inner.phase
            {
                *trial_in_flight = false;
            }
        }
    }
}

impl Breaker {
    pub(crate) fn new(name: &'static str, config: BreakerConfig) -> Breaker {
        let breaker = Breaker {
            name,
            config: Arc::new(config),
            inner: Arc::new(Mutex::new(Inner {
                phase: Phase::Closed {
                    window: VecDeque::new(),
                    consecutive: 0,
                },
                generation: 0,
            })),
        };
        metrics::gauge!("khaacho_breaker_state", "dependency" => name)
            .set(BreakerState::Closed.gauge_value());
        breaker
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state half-updated in a way that
        // matters more than refusing every call would, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current state; an open breaker whose wait is over reports (and becomes) half-open.
    pub(crate) fn state(&self) -> BreakerState {
        let mut inner = self.lock();
        self.expire_open(&mut inner, Instant::now());
        match inner.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call: `None` means reject without calling.
    pub(crate) fn admit(&self) -> Option<Admission> {
        let mut inner = self.lock();
        self.expire_open(&mut inner, Instant::now());
        let generation = inner.generation;
        let trial = match &mut inner.phase {
            Phase::Closed { .. } => false,
            Phase::Open { .. } => return None,
            Phase::HalfOpen {
                trial_in_flight, ..
            } => {
                if *trial_in_flight {
                    return None;
                }
                *trial_in_flight = true;
                true
            }
        };
        Some(Admission {
            breaker: self.clone(),
            generation,
            trial,
            done: false,
        })
    }

    fn expire_open(&self, inner: &mut Inner, now: Instant) {
        if let Phase::Open { until } = inner.phase
            && now >= until
        {
            self.transition(
                inner,
                Phase::HalfOpen {
                    successes: 0,
                    trial_in_flight: false,
                },
            );
        }
    }

    fn record(&self, generation: u64, trial: bool, failed: bool, now: Instant) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let cfg = &*self.config;
        let next = match &mut inner.phase {
            Phase::Closed {
                window,
                consecutive,
            } => {
                window.push_back((now, failed));
                while window
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > cfg.window)
                {
                    window.pop_front();
                }
                *consecutive = if failed { *consecutive + 1 } else { 0 };
                let calls = window.len();
                let failures = window.iter().filter(|(_, f)| *f).count();
                let rate_trips = calls >= cfg.min_calls as usize
                    && calls > 0
                    && failures as f64 / calls as f64 >= cfg.failure_rate;
                let streak_trips = *consecutive >= cfg.consecutive_failures;
                if failed && (rate_trips || streak_trips) {
                    Some(Phase::Open {
                        until: now + cfg.open_for,
                    })
                } else {
                    None
                }
            }
            // Only a call admitted in this generation gets here, and Open admits none.
            Phase::Open { .. } => None,
            Phase::HalfOpen {
                successes,
                trial_in_flight,
            } => {
                if trial {
                    *trial_in_flight = false;
                }
                if failed {
                    Some(Phase::Open {
                        until: now + cfg.open_for,
                    })
                } else {
                    *successes += 1;
                    (*successes >= cfg.close_after_successes).then(|| Phase::Closed {
                        window: VecDeque::new(),
                        consecutive: 0,
                    })
                }
            }
        };
        if let Some(phase) = next {
            self.transition(&mut inner, phase);
        }
    }

    fn transition(&self, inner: &mut Inner, phase: Phase) {
        inner.generation += 1;
        inner.phase = phase;
        let state = match inner.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        metrics::gauge!("khaacho_breaker_state", "dependency" => self.name)
            .set(state.gauge_value());
        match state {
            BreakerState::Open => tracing::warn!(
                dependency = self.name,
                open_for_ms = self.config.open_for.as_millis() as u64,
                "circuit breaker opened"
            ),
            BreakerState::HalfOpen => {
                tracing::info!(dependency = self.name, "circuit breaker half-open")
            }
            BreakerState::Closed => {
                tracing::info!(dependency = self.name, "circuit breaker closed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(60),
            min_calls: 4,
            failure_rate: 0.5,
            consecutive_failures: 3,
            open_for: Duration::from_secs(10),
            close_after_successes: 2,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stale_outcome_from_before_opening_is_ignored() {
        let b = Breaker::new("t", cfg());
        let slow = b.admit().unwrap();
        for _ in 0..3 {
            b.admit().unwrap().record(true);
        }
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // The slow call from the closed era succeeds now: it must not count as a trial.
        slow.record(false);
        let t = b.admit().unwrap();
        t.record(false);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_trial_gives_its_slot_back() {
        let b = Breaker::new("t", cfg());
        for _ in 0..3 {
            b.admit().unwrap().record(true);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        let trial = b.admit().unwrap();
        assert!(b.admit().is_none(), "one trial at a time");
        drop(trial);
        assert!(b.admit().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn old_calls_leave_the_window() {
        let b = Breaker::new("t", cfg());
        // Two failures, then a minute later two more with successes between: never 3 in a
        // row, and the early failures have left the window by the time it holds 4 calls.
        b.admit().unwrap().record(true);
        b.admit().unwrap().record(true);
        tokio::time::advance(Duration::from_secs(61)).await;
        b.admit().unwrap().record(false);
        b.admit().unwrap().record(true);
        b.admit().unwrap().record(false);
        b.admit().unwrap().record(false);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
