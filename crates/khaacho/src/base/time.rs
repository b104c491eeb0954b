//! Time at the edges: storage keeps UTC epoch milliseconds; people see Nepal time
//! (Asia/Kathmandu, UTC+05:45, no daylight saving).

use chrono::FixedOffset;

/// Milliseconds since the Unix epoch, the storage format of every timestamp.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Nepal time, UTC+05:45 (fixed: Nepal has no daylight saving).
pub fn nepal() -> FixedOffset {
    #[allow(clippy::expect_used)]
    FixedOffset::east_opt(5 * 3600 + 45 * 60).expect("+05:45 is a valid UTC offset")
}

/// The Nepal calendar day of epoch milliseconds `ms`: days since 1970-01-01 in Nepal time,
/// the key of per-day counts.
pub fn nepal_day(ms: i64) -> i64 {
    const OFFSET_MS: i64 = (5 * 3600 + 45 * 60) * 1000;
    (ms + OFFSET_MS).div_euclid(86_400_000)
}

/// Formats epoch milliseconds as RFC 3339 in Nepal time.
pub fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&nepal())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Formats epoch milliseconds for a person reading a phone message, in Nepal time: the day,
/// the month's short name and the time of day, e.g. `6 Dec 14:05`.
pub fn fmt_short(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&nepal())
        .format("%-d %b %H:%M")
        .to_string()
}

/// The application's clock: wall time plus an offset that only tests move. Everything that
/// judges deadlines (vendor offers, automatic completion) reads it, so a test can jump past a
/// deadline instead of sleeping.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl Clock {
    /// Now, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Moves this clock `ms` forward (tests and simulations only).
    pub fn advance(&self, ms: i64) {
        self.offset_ms
            .fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}
