//! Open-loop schedule: when each request is *intended* to be sent.
//!
//! At a constant rate `R`, request `i` (0-based) is due `i / R` seconds after
//! the start. Latency in open-loop mode is measured from that intended time,
//! so a stalled server cannot hide its stall by slowing the generator down
//! (coordinated omission).

use std::time::Duration;

/// Offset from the start of the run at which request `i` is due at `rate`
/// requests per second. Saturates at [`Duration::MAX`] instead of panicking.
pub(crate) fn intended_offset(i: u64, rate: f64) -> Duration {
    // u64 -> f64 loses precision only beyond 2^53 requests.
    #[allow(clippy::cast_precision_loss)]
    let secs = i as f64 / rate;
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// Number of requests whose intended offset lies in `[0, t)` at `rate`: exactly the `i` with
/// [`intended_offset`]`(i) < t`, the sender's own test. `t × rate` is only the first guess:
/// a product such as 5,724.000000000001 counts a request whose offset, rounded to the
/// nanosecond, is `t` itself and is never sent.
pub(crate) fn due_before(t: Duration, rate: f64) -> u64 {
    let guess = (t.as_secs_f64() * rate).ceil();
    if !(guess.is_finite() && guess > 0.0) {
        return 0;
    }
    // Truncation is intended: the guess is a non-negative integer-valued float.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mut n = guess as u64;
    while n > 0 && intended_offset(n - 1, rate) >= t {
        n -= 1;
    }
    while intended_offset(n, rate) < t {
        n += 1;
    }
    n
}

/// Number of requests whose intended offset lies in `[from, to)` at `rate`.
pub(crate) fn due_between(from: Duration, to: Duration, rate: f64) -> u64 {
    due_before(to, rate).saturating_sub(due_before(from, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_evenly_spaced_at_rate() {
        let offsets: Vec<Duration> = (0..5).map(|i| intended_offset(i, 100.0)).collect();
        assert_eq!(
            offsets,
            vec![
                Duration::ZERO,
                Duration::from_millis(10),
                Duration::from_millis(20),
                Duration::from_millis(30),
                Duration::from_millis(40),
            ]
        );
        assert_eq!(intended_offset(100, 100.0), Duration::from_secs(1));
        assert_eq!(intended_offset(3, 2.0), Duration::from_millis(1500));
        // Fractional rates work too: one request every 4 s.
        assert_eq!(intended_offset(2, 0.25), Duration::from_secs(8));
    }

    #[test]
    fn offsets_are_monotonic_and_saturate() {
        let mut last = Duration::ZERO;
        for i in 0..10_000 {
            let o = intended_offset(i, 7_777.0);
            assert!(o >= last);
            last = o;
        }
        assert_eq!(intended_offset(u64::MAX, 1e-300), Duration::MAX);
    }

    #[test]
    fn counts_requests_due_in_window() {
        assert_eq!(due_before(Duration::from_secs(1), 100.0), 100);
        assert_eq!(due_before(Duration::from_millis(1005), 100.0), 101);
        assert_eq!(due_before(Duration::ZERO, 100.0), 0);
        assert_eq!(due_before(Duration::from_secs(2), 0.5), 1);
        // 2 s warm-up, then 3 s measured at 10/s: requests 20..=49.
        assert_eq!(
            due_between(Duration::from_secs(2), Duration::from_secs(5), 10.0),
            30
        );
        // Consistent with intended_offset: exactly the i with offset < t.
        let t = Duration::from_millis(1234);
        let by_scan = (0..10_000)
            .take_while(|&i| intended_offset(i, 333.0) < t)
            .count() as u64;
        assert_eq!(due_before(t, 333.0), by_scan);
    }

    /// The capacity search's steps multiply rates by a factor, so a step's requests due in
    /// its window can come out as 5,724.000000000001 (530/s × 1.08 × 10 s) while the sender,
    /// comparing offsets rounded to the nanosecond, sends 5,724: counted as due and never
    /// sent, one request failed the step as "could not be sent (in-flight limit)".
    #[test]
    fn counts_requests_due_exactly_as_the_sender_schedules_them() {
        for rate in [
            530.0 * 1.08,
            400.0 * 1.15 * 1.15,
            460.0 * 1.08 * 1.08,
            333.3,
            1e3 / 7.0,
        ] {
            for t in [
                Duration::from_secs(2),
                Duration::from_secs(10),
                Duration::from_millis(8_001),
            ] {
                let by_scan = (0..100_000)
                    .take_while(|&i| intended_offset(i, rate) < t)
                    .count() as u64;
                assert_eq!(due_before(t, rate), by_scan, "{rate}/s before {t:?}");
            }
        }
    }
}
