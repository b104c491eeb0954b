//! Behaviour of the whole stack under paused tokio time: no real sleeping, exact transitions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::testing::CaptureRecorder;
use crate::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum TestError {
    /// A 503-like error.
    Retryable,
    /// A failure that repeating will not fix.
    Fatal,
    /// A 400-like error: the dependency is fine.
    BadRequest,
}

impl Classify for TestError {
    fn is_retryable(&self) -> bool {
        matches!(self, TestError::Retryable)
    }
    fn counts_as_failure(&self) -> bool {
        !matches!(self, TestError::BadRequest)
    }
}

const DEP: &str = "test_dep";

fn policy() -> Policy {
    Policy {
        name: DEP,
        timeout: Duration::from_secs(1),
        breaker: BreakerConfig {
            window: Duration::from_secs(60),
            min_calls: 4,
            failure_rate: 0.5,
            consecutive_failures: 3,
            open_for: Duration::from_secs(30),
            close_after_successes: 3,
        },
        max_concurrent: 4,
        retry: None,
    }
}

/// A dependency stub that counts how often it was really called.
#[derive(Clone, Default)]
struct Stub {
    calls: Arc<AtomicU32>,
}

impl Stub {
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn call(
    res: &Resilient,
    stub: &Stub,
    r: Result<u32, TestError>,
) -> Result<u32, CallError<TestError>> {
    res.call(|| {
        stub.calls.fetch_add(1, Ordering::SeqCst);
        async move { r }
    })
    .await
}

fn outcome(rec: &CaptureRecorder, outcome: &str) -> u64 {
    rec.counter(
        "khaacho_dependency_calls_total",
        &[("dependency", DEP), ("outcome", outcome)],
    )
}

fn gauge(rec: &CaptureRecorder) -> Option<f64> {
    rec.gauge("khaacho_breaker_state", &[("dependency", DEP)])
}

#[tokio::test(start_paused = true)]
async fn opens_on_failure_rate_over_min_calls() {
    let res = Resilient::new(Policy {
        breaker: BreakerConfig {
            consecutive_failures: 100,
            ..policy().breaker
        },
        ..policy()
    });
    let stub = Stub::default();
    for r in [Ok(1), Err(TestError::Fatal), Ok(1)] {
        let _ = call(&res, &stub, r).await;
    }
    assert_eq!(res.state(), BreakerState::Closed, "too few calls to judge");
    let _ = call(&res, &stub, Err(TestError::Fatal)).await;
    assert_eq!(res.state(), BreakerState::Open, "2 of 4 failed = 50%");
}

#[tokio::test(start_paused = true)]
async fn opens_on_consecutive_failures() {
    let res = Resilient::new(Policy {
        breaker: BreakerConfig {
            min_calls: 100,
            ..policy().breaker
        },
        ..policy()
    });
    let stub = Stub::default();
    for _ in 0..5 {
        let _ = call(&res, &stub, Ok(1)).await;
    }
    for _ in 0..2 {
        let _ = call(&res, &stub, Err(TestError::Fatal)).await;
    }
    assert_eq!(res.state(), BreakerState::Closed);
    let _ = call(&res, &stub, Err(TestError::Fatal)).await;
    assert_eq!(res.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn rejects_while_open_without_calling() {
    let rec = CaptureRecorder::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let res = Resilient::new(policy());
    let stub = Stub::default();
    for _ in 0..3 {
        let _ = call(&res, &stub, Err(TestError::Fatal)).await;
    }
    assert_eq!(stub.calls(), 3);
    for _ in 0..5 {
        assert_eq!(call(&res, &stub, Ok(1)).await, Err(CallError::Open));
    }
    assert_eq!(stub.calls(), 3, "no call reaches the dependency while open");
    assert_eq!(outcome(&rec, "rejected_open"), 5);
    assert_eq!(gauge(&rec), Some(2.0));
}

#[tokio::test(start_paused = true)]
async fn half_opens_after_wait_then_closes_after_three_successes() {
    let rec = CaptureRecorder::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let res = Resilient::new(policy());
    let stub = Stub::default();
    for _ in 0..3 {
        let _ = call(&res, &stub, Err(TestError::Fatal)).await;
    }
    tokio::time::advance(Duration::from_secs(30) - Duration::from_millis(1)).await;
    assert_eq!(res.state(), BreakerState::Open);
    assert_eq!(call(&res, &stub, Ok(1)).await, Err(CallError::Open));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(res.state(), BreakerState::HalfOpen);
    assert_eq!(gauge(&rec), Some(1.0));
    for _ in 0..2 {
        assert_eq!(call(&res, &stub, Ok(7)).await, Ok(7));
        assert_eq!(res.state(), BreakerState::HalfOpen);
    }
    assert_eq!(call(&res, &stub, Ok(7)).await, Ok(7));
    assert_eq!(res.state(), BreakerState::Closed);
    assert_eq!(gauge(&rec), Some(0.0));
    assert_eq!(stub.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn half_open_failure_reopens_for_another_full_wait() {
    let res = Resilient::new(policy());
    let stub = Stub::default();
    for _ in 0..3 {
        let _ = call(&res, &stub, Err(TestError::Fatal)).await;
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    let _ = call(&res, &stub, Ok(1)).await;
    let _ = call(&res, &stub, Err(TestError::Fatal)).await;
    assert_eq!(res.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(call(&res, &stub, Ok(1)).await, Err(CallError::Open));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(res.state(), BreakerState::HalfOpen);
    // The success count starts again from zero after re-opening.
    for _ in 0..2 {
        let _ = call(&res, &stub, Ok(1)).await;
    }
    assert_eq!(res.state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_one_trial_through_at_a_time() {
    let res = Resilient::new(policy());
    let stub = Stub::default();
    for _ in 0..3 {
        let _ = call(&res, &stub, Err(TestError::Fatal)).await;
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    let gate = Arc::new(Notify::new());
    let trial = tokio::spawn({
        let (res, gate) = (res.clone(), gate.clone());
        async move {
            res.call(|| {
                let gate = gate.clone();
                async move {
                    gate.notified().await;
                    Ok::<_, TestError>(1)
                }
            })
            .await
        }
    });
    tokio::task::yield_now().await;
    assert_eq!(call(&res, &stub, Ok(1)).await, Err(CallError::Open));
    gate.notify_one();
    assert_eq!(trial.await.unwrap(), Ok(1));
    assert_eq!(call(&res, &stub, Ok(1)).await, Ok(1), "slot free again");
}

#[tokio::test(start_paused = true)]
async fn errors_that_are_not_failures_keep_the_breaker_closed() {
    let res = Resilient::new(policy());
    let stub = Stub::default();
    for _ in 0..10 {
        assert_eq!(
            call(&res, &stub, Err(TestError::BadRequest)).await,
            Err(CallError::Inner(TestError::BadRequest))
        );
    }
    assert_eq!(res.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn timeout_ends_a_slow_call_and_counts_as_failure() {
    let rec = CaptureRecorder::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let res = Resilient::new(policy());
    let started = tokio::time::Instant::now();
    let r = res
        .call(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, TestError>(1)
        })
        .await;
    assert_eq!(r, Err(CallError::Timeout));
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(outcome(&rec, "timeout"), 1);
    let durations = rec.histogram(
        "khaacho_dependency_call_duration_seconds",
        &[("dependency", DEP)],
    );
    assert_eq!(durations, vec![1.0]);
}

#[tokio::test(start_paused = true)]
async fn bulkhead_rejects_when_full_without_calling() {
    let rec = CaptureRecorder::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let res = Resilient::new(Policy {
        max_concurrent: 1,
        ..policy()
    });
    let gate = Arc::new(Notify::new());
    let busy = tokio::spawn({
        let (res, gate) = (res.clone(), gate.clone());
        async move {
            res.call(|| {
                let gate = gate.clone();
                async move {
                    gate.notified().await;
                    Ok::<_, TestError>(1)
                }
            })
            .await
        }
    });
    tokio::task::yield_now().await;
    let stub = Stub::default();
    assert_eq!(call(&res, &stub, Ok(1)).await, Err(CallError::Full));
    assert_eq!(stub.calls(), 0);
    assert_eq!(outcome(&rec, "rejected_full"), 1);
    gate.notify_one();
    assert_eq!(busy.await.unwrap(), Ok(1));
    assert_eq!(call(&res, &stub, Ok(2)).await, Ok(2));
}

fn retrying() -> Policy {
    Policy {
        retry: Some(RetryConfig {
            max_attempts: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        }),
        breaker: BreakerConfig {
            consecutive_failures: 100,
            min_calls: 100,
            ..policy().breaker
        },
        ..policy()
    }
}

#[tokio::test(start_paused = true)]
async fn retries_retryable_errors_up_to_max_attempts() {
    let rec = CaptureRecorder::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let res = Resilient::new(retrying());
    let stub = Stub::default();
    assert_eq!(
        call(&res, &stub, Err(TestError::Retryable)).await,
        Err(CallError::Inner(TestError::Retryable))
    );
    assert_eq!(stub.calls(), 3);
    assert_eq!(outcome(&rec, "failure"), 3);
}

#[tokio::test(start_paused = true)]
async fn does_not_retry_fatal_errors_or_without_retry_config() {
    let stub = Stub::default();
    let res = Resilient::new(retrying());
    let _ = call(&res, &stub, Err(TestError::Fatal)).await;
    assert_eq!(stub.calls(), 1, "fatal error is not retried");
    let _ = call(&res, &stub, Err(TestError::BadRequest)).await;
    assert_eq!(stub.calls(), 2, "bad request is not retried");
    let plain = Resilient::new(policy());
    let _ = call(&plain, &stub, Err(TestError::Retryable)).await;
    assert_eq!(
        stub.calls(),
        3,
        "no retry config means the call is not idempotent"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_stops_at_first_success_and_retries_timeouts() {
    let res = Resilient::new(retrying());
    let attempts = AtomicU32::new(0);
    let r = res
        .call(|| {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        Ok(0)
                    }
                    1 => Err(TestError::Retryable),
                    _ => Ok(n),
                }
            }
        })
        .await;
    assert_eq!(r, Ok(2));
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_does_not_hammer_an_open_breaker() {
    let res = Resilient::new(Policy {
        breaker: policy().breaker,
        ..retrying()
    });
    let stub = Stub::default();
    // Consecutive-failure limit is 3 and max attempts 3: the first call opens the breaker on
    // its last attempt, the second is rejected at once.
    let _ = call(&res, &stub, Err(TestError::Retryable)).await;
    assert_eq!(res.state(), BreakerState::Open);
    assert_eq!(
        call(&res, &stub, Err(TestError::Retryable)).await,
        Err(CallError::Open)
    );
    assert_eq!(stub.calls(), 3);
}

#[test]
fn backoff_is_bounded_by_exponential_ceiling_and_cap() {
    let r = RetryConfig {
        max_attempts: 10,
        base: Duration::from_millis(100),
        cap: Duration::from_millis(500),
    };
    for _ in 0..200 {
        assert!(r.backoff(1) <= Duration::from_millis(100));
        assert!(r.backoff(2) <= Duration::from_millis(200));
        assert!(r.backoff(3) <= Duration::from_millis(400));
        assert!(r.backoff(9) <= Duration::from_millis(500));
        assert!(r.backoff(u32::MAX) <= Duration::from_millis(500));
    }
}

#[tokio::test(start_paused = true)]
async fn success_metrics_and_fallback_are_recorded() {
    let rec = CaptureRecorder::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let res = Resilient::new(policy());
    let stub = Stub::default();
    assert_eq!(call(&res, &stub, Ok(1)).await, Ok(1));
    assert_eq!(outcome(&rec, "success"), 1);
    assert_eq!(gauge(&rec), Some(0.0));

    let (v, who) = res
        .call_with_fallback(
            || async { Err::<u32, _>(TestError::Fatal) },
            |e| async move {
                assert_eq!(e, CallError::Inner(TestError::Fatal));
                99
            },
        )
        .await;
    assert_eq!((v, who), (99, Answered::Fallback));
    let (v, who) = res
        .call_with_fallback(|| async { Ok::<u32, TestError>(5) }, |_| async { 0 })
        .await;
    assert_eq!((v, who), (5, Answered::Primary));
    assert_eq!(
        rec.counter("khaacho_fallback_total", &[("dependency", DEP)]),
        1
    );
    assert_eq!(outcome(&rec, "failure"), 1);
    assert_eq!(
        rec.histogram(
            "khaacho_dependency_call_duration_seconds",
            &[("dependency", DEP)]
        )
        .len(),
        3
    );
}
