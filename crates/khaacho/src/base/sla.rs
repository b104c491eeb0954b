//! The process's own view of its HTTP API: a rolling record of the last hour of requests,
//! one slot per second (request count, server errors, a latency histogram), from which
//! `GET /api/v1/sla` and the minute check read availability, p95/p99 latency and error rate
//! over a window. Recording takes one uncontended lock of the current second's slot and
//! allocates nothing; a slot is reused an hour later.

use std::sync::Mutex;

/// Upper bounds (ms) of the latency buckets; a request slower than the last bound counts in
/// an overflow bucket reported as [`OVERFLOW_MS`].
pub const BOUNDS_MS: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 750, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];
/// What a latency in the overflow bucket is reported as.
pub const OVERFLOW_MS: u64 = 60_000;
const BUCKETS: usize = BOUNDS_MS.len() + 1;
/// Seconds kept: the longest window.
pub const KEPT_SECS: i64 = 3_600;

#[derive(Clone, Copy, Default)]
struct Slot {
    second: i64,
    total: u64,
    errors: u64,
    refused: u64,
    buckets: [u64; BUCKETS],
}

/// The rolling record (one per process).
pub struct SlaRecorder {
    slots: Box<[Mutex<Slot>]>,
}

impl Default for SlaRecorder {
    fn default() -> Self {
        Self {
            slots: (0..KEPT_SECS)
                .map(|_| {
                    Mutex::new(Slot {
                        second: i64::MIN,
                        ..Slot::default()
                    })
                })
                .collect(),
        }
    }
}

/// Requests of a window, summed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Requests answered.
    pub total: u64,
    /// Of them answered 5xx.
    pub errors: u64,
    /// Of the 5xx, the server's own refusals: a request turned away because the process was
    /// full, new orders pushed back while the pipeline is behind, a customer's request refused
    /// in `critical` mode (`503` + `Retry-After`).
    pub refused: u64,
    /// Minutes of the window (whole minutes, the current one included).
    pub minutes: u64,
    /// Minutes in which more than 1% of the requests were answered 5xx.
    pub bad_minutes: u64,
    buckets: [u64; BUCKETS],
}

impl WindowStats {
    /// Latency at quantile `q` (0–1) in ms: the upper bound of the bucket holding it, so a
    /// conservative figure, over the requests served (refusals left out). `None` without any.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        // Over the requests served: a refusal is answered at once, and counting it would
        // make a shedding server's latency look better the more it turns away.
        let served = self.total.saturating_sub(self.refused);
        if served == 0 {
            return None;
        }
        let rank = ((q * served as f64).ceil() as u64).clamp(1, served);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(BOUNDS_MS.get(i).copied().unwrap_or(OVERFLOW_MS));
            }
        }
        Some(OVERFLOW_MS)
    }

    /// Share of requests answered 5xx (0 without traffic).
    pub fn error_rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.errors as f64 / self.total as f64
        }
    }

    /// Share of requests that failed (5xx) other than by the server's own refusals (0 without
    /// traffic): what the degradation level is judged on. A refusal is the server protecting
    /// itself; counted as a failure, the refusals of `critical` mode would keep the level
    /// `critical` for as long as customers keep asking.
    pub fn failure_rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.errors.saturating_sub(self.refused) as f64 / self.total as f64
        }
    }

    /// Share of the window's minutes that were good (no traffic, or at most 1% 5xx).
    pub fn availability(&self) -> f64 {
        if self.minutes == 0 {
            1.0
        } else {
            (self.minutes - self.bad_minutes) as f64 / self.minutes as f64
        }
    }
}

fn bucket_of(ms: u64) -> usize {
    BOUNDS_MS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(BOUNDS_MS.len())
}

impl SlaRecorder {
    /// Records one answered request at `now_ms` that took `duration_ms` with `status`.
    pub fn record(&self, now_ms: i64, duration_ms: u64, status: u16) {
        self.add(now_ms, duration_ms, status, false);
    }

    /// Records one request the server refused itself (`503`: full, behind, or `critical`):
    /// an error for availability, not a failure for the degradation level, and no latency
    /// (the quantiles are of the requests served).
    pub fn record_refused(&self, now_ms: i64, duration_ms: u64) {
        self.add(now_ms, duration_ms, 503, true);
    }

    fn add(&self, now_ms: i64, duration_ms: u64, status: u16, refused: bool) {
        let second = now_ms.div_euclid(1000);
        let Some(slot) = self.slots.get(second.rem_euclid(KEPT_SECS) as usize) else {
            return;
        };
        let mut s = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.second != second {
            *s = Slot {
                second,
                ..Slot::default()
            };
        }
        s.total += 1;
        if status >= 500 {
            s.errors += 1;
        }
        if refused {
            s.refused += 1;
        } else if let Some(b) = s.buckets.get_mut(bucket_of(duration_ms)) {
            *b += 1;
        }
    }

    /// The last `secs` seconds up to `now_ms` (at most [`KEPT_SECS`]), summed; minutes are
    /// whole minutes back from the current one, judged over their recorded seconds.
    pub fn window(&self, now_ms: i64, secs: i64) -> WindowStats {
        let secs = secs.clamp(1, KEPT_SECS);
        let now = now_ms.div_euclid(1000);
        let first = now - secs + 1;
        let mut w = WindowStats {
            minutes: ((now.div_euclid(60) - first.div_euclid(60)) + 1) as u64,
            ..WindowStats::default()
        };
        let mut per_minute = std::collections::BTreeMap::<i64, (u64, u64)>::new();
        for slot in self.slots.iter() {
            let s = *slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if s.second < first || s.second > now || s.total == 0 {
                continue;
            }
            w.total += s.total;
            w.errors += s.errors;
            w.refused += s.refused;
            for (acc, n) in w.buckets.iter_mut().zip(s.buckets) {
                *acc += n;
            }
            let m = per_minute.entry(s.second.div_euclid(60)).or_default();
            m.0 += s.total;
            m.1 += s.errors;
        }
        w.bad_minutes = per_minute
            .values()
            .filter(|(total, errors)| *errors * 100 > *total)
            .count() as u64;
        w
    }
}
