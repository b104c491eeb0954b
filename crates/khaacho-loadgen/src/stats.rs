//! Counters and histograms collected during a run, and the final [`Report`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Histograms track microseconds from 1 µs up to 60 s (3 significant digits);
/// larger values are clamped to 60 s.
const HIST_MAX_US: u64 = 60_000_000;

/// Mutable statistics of a run (only requests sent after the warm-up).
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    /// Requests sent (recorded, i.e. intended send time in the measured window).
    pub(crate) requests: u64,
    /// 202 responses with a well-formed body.
    pub(crate) accepted: u64,
    /// 202 responses that arrived before the end of the measured window.
    pub(crate) accepted_in_window: u64,
    /// Open loop only: requests that were due in the window but never sent
    /// because the in-flight limit was still exhausted at the end.
    pub(crate) unsent: u64,
    /// Errors by kind (`http_429`, `timeout`, `connect`, `e2e_timeout`, ...).
    pub(crate) errors: BTreeMap<String, u64>,
    /// Latency of 202 responses, µs.
    pub(crate) latency: Histogram<u64>,
    /// 202 → final status, µs, for sampled orders.
    pub(crate) e2e: Histogram<u64>,
}

impl Stats {
    /// Empty statistics.
    pub(crate) fn new() -> anyhow::Result<Self> {
        let hist = || {
            Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3)
                .map_err(|e| anyhow::anyhow!("cannot create histogram: {e:?}"))
        };
        Ok(Self {
            requests: 0,
            accepted: 0,
            accepted_in_window: 0,
            unsent: 0,
            errors: BTreeMap::new(),
            latency: hist()?,
            e2e: hist()?,
        })
    }

    /// Records a 202 with the given latency.
    pub(crate) fn record_accepted(&mut self, latency: Duration, in_window: bool) {
        self.requests += 1;
        self.accepted += 1;
        if in_window {
            self.accepted_in_window += 1;
        }
        self.latency.saturating_record(micros(latency));
    }

    /// Records a failed request of the given kind.
    pub(crate) fn record_request_error(&mut self, kind: &str) {
        self.requests += 1;
        self.add_error(kind, 1);
    }

    /// Counts `n` errors of `kind` that are not requests of their own (e.g.
    /// e2e poll failures).
    pub(crate) fn add_error(&mut self, kind: &str, n: u64) {
        if n > 0 {
            *self.errors.entry(kind.to_owned()).or_insert(0) += n;
        }
    }

    /// Records one end-to-end sample.
    pub(crate) fn record_e2e(&mut self, latency: Duration) {
        self.e2e.saturating_record(micros(latency));
    }

    /// Builds the final report.
    pub(crate) fn report(&self, meta: ReportMeta) -> Report {
        let secs = meta.measured.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let accepted_per_s = if secs > 0.0 {
            self.accepted_in_window as f64 / secs
        } else {
            0.0
        };
        Report {
            accepted_per_s: round3(accepted_per_s),
            errors: self.errors.clone(),
            latency_ms: LatencyMs {
                p50: quantile_ms(&self.latency, 0.50),
                p95: quantile_ms(&self.latency, 0.95),
                p99: quantile_ms(&self.latency, 0.99),
                max: max_ms(&self.latency),
            },
            e2e_ms: E2eMs {
                p50: quantile_ms(&self.e2e, 0.50),
                p95: quantile_ms(&self.e2e, 0.95),
                p99: quantile_ms(&self.e2e, 0.99),
                max: max_ms(&self.e2e),
            },
            requests: self.requests,
            accepted: self.accepted,
            duration_s: round3(secs),
            e2e_samples: self.e2e.len(),
            unsent: self.unsent,
            mode: meta.mode,
            connections: meta.connections,
            offered_rate: meta.offered_rate,
            max_in_flight: meta.max_in_flight,
            warmup_s: round3(meta.warmup.as_secs_f64()),
            url: meta.url,
            products: meta.products,
            retailers: meta.retailers,
            interrupted: meta.interrupted,
        }
    }
}

/// Run facts that are not statistics, for [`Stats::report`].
#[derive(Debug, Clone)]
pub(crate) struct ReportMeta {
    pub(crate) url: String,
    pub(crate) mode: String,
    pub(crate) connections: Option<usize>,
    pub(crate) offered_rate: Option<f64>,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) measured: Duration,
    pub(crate) warmup: Duration,
    pub(crate) products: usize,
    pub(crate) retailers: usize,
    pub(crate) interrupted: bool,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[allow(clippy::cast_precision_loss)]
fn quantile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| round3(h.value_at_quantile(q) as f64 / 1000.0))
}

#[allow(clippy::cast_precision_loss)]
fn max_ms(h: &Histogram<u64>) -> Option<f64> {
    (!h.is_empty()).then(|| round3(h.max() as f64 / 1000.0))
}

/// 202 latency percentiles in milliseconds (`null` when nothing was accepted).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyMs {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
}

/// End-to-end (202 → status no longer `received`) percentiles in
/// milliseconds over the sampled orders (`null` when there were no samples).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct E2eMs {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
}

/// Result of a load test; serializes to the `--json` output.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// 202 responses received inside the measured window, per second of it.
    pub accepted_per_s: f64,
    /// Error counts by kind: `http_<status>` (any non-202 answer to a POST),
    /// `timeout`, `connect`, `io` (connection dropped mid-request),
    /// `bad_response` (202 with an unusable body), `e2e_timeout` and other
    /// `e2e_*` kinds from status polling.
    pub errors: BTreeMap<String, u64>,
    /// 202 latency percentiles in ms (open loop: from the intended send time).
    pub latency_ms: LatencyMs,
    /// End-to-end latency percentiles in ms over the sampled orders.
    pub e2e_ms: E2eMs,
    /// Requests sent during the measured window (warm-up excluded).
    pub requests: u64,
    /// Requests answered 202 Accepted with a well-formed body.
    pub accepted: u64,
    /// Length of the measured window in seconds (shorter if interrupted).
    pub duration_s: f64,
    /// Number of end-to-end samples behind `e2e_ms`.
    pub e2e_samples: u64,
    /// Open loop: requests due in the window that were never sent because
    /// `--max-in-flight` requests were still outstanding when it ended.
    pub unsent: u64,
    /// `"closed"` (fixed connections) or `"open"` (fixed rate).
    pub mode: String,
    /// Closed loop: number of concurrent connections.
    pub connections: Option<usize>,
    /// Open loop: offered rate in requests per second.
    pub offered_rate: Option<f64>,
    /// Open loop: in-flight request limit.
    pub max_in_flight: Option<usize>,
    /// Warm-up seconds before measuring.
    pub warmup_s: f64,
    /// Target base URL.
    pub url: String,
    /// Products used to build orders.
    pub products: usize,
    /// Retailers used to build orders.
    pub retailers: usize,
    /// True when the run was stopped early (Ctrl-C).
    pub interrupted: bool,
}

/// Formats milliseconds for the table (`-` when absent).
pub(crate) fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2}"))
}

/// Renders the human-readable report table.
pub fn format_table(report: &Report) -> String {
    let mut out = String::new();
    let mode = match (report.offered_rate, report.connections) {
        (Some(rate), _) => format!(
            "open loop, offered {rate} req/s (max {} in flight)",
            report.max_in_flight.unwrap_or_default()
        ),
        (None, Some(c)) => format!("closed loop, {c} connections"),
        (None, None) => report.mode.clone(),
    };
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "  {k:<18} {v}");
    };
    let _ = writeln!(out, "khaacho loadtest  {}", report.url);
    row(&mut out, "mode", &mode);
    let mut duration = format!("{:.2} s measured", report.duration_s);
    if report.warmup_s > 0.0 {
        let _ = write!(duration, " (+{:.2} s warm-up)", report.warmup_s);
    }
    if report.interrupted {
        duration.push_str(" [interrupted]");
    }
    row(&mut out, "duration", &duration);
    row(
        &mut out,
        "catalog",
        &format!(
            "{} products, {} retailers",
            report.products, report.retailers
        ),
    );
    row(&mut out, "requests sent", &report.requests.to_string());
    row(&mut out, "accepted (202)", &report.accepted.to_string());
    row(
        &mut out,
        "accepted/s",
        &format!("{:.1}", report.accepted_per_s),
    );
    if report.mode == "open" {
        row(&mut out, "unsent (backlog)", &report.unsent.to_string());
    }
    if report.errors.is_empty() {
        row(&mut out, "errors", "none");
    } else {
        let total: u64 = report.errors.values().sum();
        row(&mut out, "errors", &total.to_string());
        for (kind, n) in &report.errors {
            let _ = writeln!(out, "    {kind:<16} {n}");
        }
    }
    let l = &report.latency_ms;
    row(
        &mut out,
        "latency ms",
        &format!(
            "p50 {}  p95 {}  p99 {}  max {}",
            fmt_ms(l.p50),
            fmt_ms(l.p95),
            fmt_ms(l.p99),
            fmt_ms(l.max)
        ),
    );
    let e = &report.e2e_ms;
    row(
        &mut out,
        "e2e ms",
        &format!(
            "p50 {}  p95 {}  p99 {}  (n = {})",
            fmt_ms(e.p50),
            fmt_ms(e.p95),
            fmt_ms(e.p99),
            report.e2e_samples
        ),
    );
    out
}

/// Prints [`format_table`] to stdout.
pub fn print_table(report: &Report) {
    print!("{}", format_table(report));
}

/// Prints the report to stdout: the JSON document when `json` is true,
/// otherwise the table.
pub fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print_table(report);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(measured: Duration) -> ReportMeta {
        ReportMeta {
            url: "http://127.0.0.1:8080".to_owned(),
            mode: "closed".to_owned(),
            connections: Some(64),
            offered_rate: None,
            max_in_flight: None,
            measured,
            warmup: Duration::ZERO,
            products: 3,
            retailers: 2,
            interrupted: false,
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() <= b * 0.002 + 0.001)
    }

    #[test]
    fn percentiles_are_in_milliseconds() -> anyhow::Result<()> {
        let mut s = Stats::new()?;
        for ms in 1..=100u64 {
            s.record_accepted(Duration::from_millis(ms), ms <= 90);
        }
        s.record_request_error("http_429");
        s.record_request_error("http_429");
        s.record_request_error("timeout");
        s.add_error("e2e_timeout", 1);
        s.record_e2e(Duration::from_millis(250));
        let r = s.report(meta(Duration::from_secs(10)));
        assert_eq!(r.requests, 103);
        assert_eq!(r.accepted, 100);
        assert!(
            (r.accepted_per_s - 9.0).abs() < 1e-9,
            "{}",
            r.accepted_per_s
        );
        assert!(close(r.latency_ms.p50, 50.0), "{:?}", r.latency_ms);
        assert!(close(r.latency_ms.p95, 95.0), "{:?}", r.latency_ms);
        assert!(close(r.latency_ms.p99, 99.0), "{:?}", r.latency_ms);
        assert!(close(r.latency_ms.max, 100.0), "{:?}", r.latency_ms);
        assert!(close(r.e2e_ms.p50, 250.0), "{:?}", r.e2e_ms);
        assert_eq!(r.e2e_samples, 1);
        assert_eq!(r.errors.get("http_429"), Some(&2));
        assert_eq!(r.errors.get("timeout"), Some(&1));
        assert_eq!(r.errors.get("e2e_timeout"), Some(&1));
        Ok(())
    }

    #[test]
    fn json_shape_and_nulls() -> anyhow::Result<()> {
        let r = Stats::new()?.report(meta(Duration::ZERO));
        let v = serde_json::to_value(&r)?;
        for key in [
            "accepted_per_s",
            "errors",
            "latency_ms",
            "e2e_ms",
            "requests",
            "accepted",
            "duration_s",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["accepted_per_s"], serde_json::json!(0.0));
        assert_eq!(v["errors"], serde_json::json!({}));
        for key in ["p50", "p95", "p99"] {
            assert!(v["e2e_ms"][key].is_null());
            assert!(v["latency_ms"][key].is_null());
        }
        assert!(v["latency_ms"]["max"].is_null());
        Ok(())
    }

    #[test]
    fn table_lists_everything() -> anyhow::Result<()> {
        let mut s = Stats::new()?;
        s.record_accepted(Duration::from_micros(1_234), true);
        s.record_request_error("http_500");
        let r = s.report(meta(Duration::from_secs(2)));
        let t = format_table(&r);
        assert!(t.contains("closed loop, 64 connections"), "{t}");
        assert!(t.contains("requests sent      2"), "{t}");
        assert!(t.contains("accepted (202)     1"), "{t}");
        assert!(t.contains("accepted/s         0.5"), "{t}");
        assert!(t.contains("http_500"), "{t}");
        assert!(t.contains("p50 1.23"), "{t}");
        assert!(t.contains("(n = 0)"), "{t}");
        assert_eq!(fmt_ms(None), "-");
        assert_eq!(fmt_ms(Some(12.3456)), "12.35");
        Ok(())
    }

    #[test]
    fn huge_latencies_saturate() -> anyhow::Result<()> {
        let mut s = Stats::new()?;
        s.record_accepted(Duration::from_secs(3600), true);
        let r = s.report(meta(Duration::from_secs(1)));
        assert!(
            r.latency_ms
                .max
                .is_some_and(|m| (59_900.0..=60_100.0).contains(&m))
        );
        Ok(())
    }
}
