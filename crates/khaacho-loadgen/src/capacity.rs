//! `khaacho loadtest --find-capacity`: the highest offered rate the server sustains.
//!
//! Throughput at saturation says little about what a server can take: past its capacity an
//! open system's backlog and latency grow without end. So the search offers **open-loop**
//! load (requests due at a fixed rate whatever the server does) in steps of rising rate, with
//! status polls on a sample of orders as a user's client would, and judges each step:
//!
//! * **queue flat**: between the start and the end of the measured window, the ready backlog
//!   (`khaacho_queue_depth`, summed over queues, from `/metrics`) grew by at most
//!   `rate × tolerance` jobs and the oldest ready job (`khaacho_queue_oldest_ready_age_seconds`)
//!   got at most `tolerance` older;
//! * **end-to-end p95** (202 → the order's first status after `received`, `validated` for
//!   line orders) below the bound, over at least a few samples;
//! * **the load was carried**: at most 0.1% errors (a `503` of back-pressure, a `429`, a
//!   timeout), every due request sent, and 90% of the offered rate answered with a 202 within the
//!   window (a slow intake shows here, since e2e time starts at the 202).
//!
//! The capacity is the rate of the last passing step before the first failing one; the
//! search stops at that first failure (or at `--max-rate`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::engine::{self, Stop};
use crate::{LoadtestArgs, Report, login, plan};

/// Most steps of one search (a runaway --step-add against a huge --max-rate).
const MAX_STEPS: usize = 60;
/// Timeout of one `/metrics` scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a step must meet to pass.
#[derive(Clone, Debug, Serialize)]
pub struct Criteria {
    /// End-to-end p95 must be below this, ms.
    pub e2e_p95_ms: f64,
    /// Fewest end-to-end samples a verdict rests on.
    pub min_e2e_samples: u64,
    /// Queue growth allowed over a step, as time: the backlog may grow by `rate ×` this many
    /// seconds of arrivals and its oldest job may age by this much.
    pub queue_tolerance_s: f64,
    /// Largest share of failed requests (errors ÷ requests).
    pub max_error_ratio: f64,
    /// Smallest share of the offered rate that must be accepted within the window.
    pub min_accepted_ratio: f64,
}

impl Criteria {
    /// The defaults with the given e2e bound.
    pub fn with_e2e_p95_ms(e2e_p95_ms: f64) -> Self {
        Self {
            e2e_p95_ms,
            min_e2e_samples: 5,
            // The e2e target again: a backlog that grows by less than that over a whole step
            // is noise, not a trend.
            queue_tolerance_s: e2e_p95_ms / 1000.0,
            max_error_ratio: 0.001,
            // Below 100%: answers still in flight at the end of the window are not counted.
            min_accepted_ratio: 0.9,
        }
    }
}

/// The pipeline backlog as `/metrics` shows it at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct QueueSample {
    /// Ready jobs over every queue.
    pub depth: f64,
    /// Age of the oldest ready job of any queue, seconds.
    pub oldest_ready_age_s: f64,
}

/// One step of the search.
#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    /// Offered rate, requests per second.
    pub rate: f64,
    /// 202s per second within the measured window.
    pub accepted_per_s: f64,
    /// Requests sent in the window.
    pub requests: u64,
    /// Errors by kind (`http_503`, `timeout`, `e2e_timeout`, …).
    pub errors: BTreeMap<String, u64>,
    /// 202 latency p99, ms.
    pub latency_p99_ms: Option<f64>,
    /// End-to-end p95, ms.
    pub e2e_p95_ms: Option<f64>,
    /// End-to-end samples.
    pub e2e_samples: u64,
    /// Backlog at the start of the measured window.
    pub queue_start: Option<QueueSample>,
    /// Backlog at its end.
    pub queue_end: Option<QueueSample>,
    /// Whether the step met every criterion.
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub reasons: Vec<String>,
}

/// The result of a search.
#[derive(Clone, Debug, Serialize)]
pub struct CapacityReport {
    /// Highest passing rate before the first failing step (`None`: even the first failed).
    pub capacity_per_s: Option<f64>,
    /// Why the search ended.
    pub stopped: String,
    /// The target.
    pub url: String,
    /// Measured length of each step, seconds (after `warmup_s`).
    pub step_duration_s: f64,
    /// Unmeasured load before each step's window, seconds.
    pub warmup_s: f64,
    /// What a step had to meet.
    pub criteria: Criteria,
    /// Every step, in order.
    pub steps: Vec<StepResult>,
}

/// Judges one step (pure): the reasons it fails, empty when it passes.
pub(crate) fn judge(
    rate: f64,
    report: &Report,
    start: Option<QueueSample>,
    end: Option<QueueSample>,
    c: &Criteria,
) -> Vec<String> {
    let mut why = Vec::new();
    let errors: u64 = report.errors.values().sum();
    #[allow(clippy::cast_precision_loss)]
    let error_ratio = if report.requests == 0 {
        1.0
    } else {
        errors as f64 / report.requests as f64
    };
    if error_ratio > c.max_error_ratio {
        why.push(format!(
            "{:.2}% errors ({})",
            error_ratio * 100.0,
            short_errors(&report.errors)
        ));
    }
    if report.unsent > 0 {
        why.push(format!(
            "{} requests could not be sent (in-flight limit)",
            report.unsent
        ));
    }
    if report.accepted_per_s < rate * c.min_accepted_ratio {
        why.push(format!(
            "accepted {:.0}/s of {rate:.0}/s offered",
            report.accepted_per_s
        ));
    }
    match report.e2e_ms.p95 {
        _ if report.e2e_samples < c.min_e2e_samples => why.push(format!(
            "only {} end-to-end samples (need {})",
            report.e2e_samples, c.min_e2e_samples
        )),
        Some(p95) if p95 >= c.e2e_p95_ms => {
            why.push(format!("e2e p95 {p95:.0} ms ≥ {:.0} ms", c.e2e_p95_ms));
        }
        Some(_) => {}
        None => why.push("no end-to-end samples".to_owned()),
    }
    match (start, end) {
        (Some(a), Some(b)) => {
            let allowed = rate * c.queue_tolerance_s;
            if b.depth - a.depth > allowed {
                why.push(format!(
                    "queue grew {:.0} → {:.0} jobs (allowed +{allowed:.0})",
                    a.depth, b.depth
                ));
            }
            if b.oldest_ready_age_s - a.oldest_ready_age_s > c.queue_tolerance_s {
                why.push(format!(
                    "oldest ready job aged {:.2} → {:.2} s",
                    a.oldest_ready_age_s, b.oldest_ready_age_s
                ));
            }
        }
        _ => why.push("queue metrics unavailable at /metrics".to_owned()),
    }
    why
}

fn short_errors(errors: &BTreeMap<String, u64>) -> String {
    errors
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rate after `rate` (pure): `rate + add`, or `rate × factor`; capped at `max`, and
/// `None` once `max` was offered.
pub(crate) fn next_rate(rate: f64, factor: f64, add: Option<f64>, max: Option<f64>) -> Option<f64> {
    let next = add.map_or(rate * factor, |a| rate + a);
    match max {
        Some(m) if rate >= m => None,
        Some(m) => Some(next.min(m)),
        None => Some(next),
    }
}

/// The capacity of a run of steps (pure): the last passing rate before the first failure.
pub(crate) fn capacity_of(steps: &[StepResult]) -> Option<f64> {
    steps.iter().take_while(|s| s.passed).map(|s| s.rate).last()
}

/// Reads the queue gauges out of a Prometheus text exposition (pure): `None` when it has
/// none (not a Khaacho server, or metrics without queues).
pub(crate) fn parse_queue_metrics(text: &str) -> Option<QueueSample> {
    let (mut depth, mut age, mut seen) = (0.0_f64, 0.0_f64, false);
    for line in text.lines() {
        let value = |l: &str| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if line.starts_with("khaacho_queue_depth") {
            if let Some(v) = value(line) {
                depth += v;
                seen = true;
            }
        } else if line.starts_with("khaacho_queue_oldest_ready_age_seconds")
            && let Some(v) = value(line)
        {
            age = age.max(v);
            seen = true;
        }
    }
    seen.then_some(QueueSample {
        depth,
        oldest_ready_age_s: age,
    })
}

async fn sample_queue(client: &reqwest::Client, url: &reqwest::Url) -> Option<QueueSample> {
    let resp = client
        .get(url.clone())
        .timeout(SCRAPE_TIMEOUT)
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    parse_queue_metrics(&resp.text().await.ok()?)
}

fn check(args: &LoadtestArgs) -> anyhow::Result<()> {
    if args.step_duration.is_zero() {
        bail!("--step-duration must be greater than zero");
    }
    if args.step_add.is_none() && !(args.step_factor.is_finite() && args.step_factor > 1.0) {
        bail!("--step-factor must be greater than 1 (or give --step-add)");
    }
    if args.e2e_sample == 0 {
        bail!("--find-capacity judges end-to-end latency: --e2e-sample must be at least 1");
    }
    if !(args.e2e_p95_ms.is_finite() && args.e2e_p95_ms > 0.0) {
        bail!("--e2e-p95-ms must be a positive number");
    }
    if args.max_rate.is_some_and(|m| m < args.start_rate) {
        bail!("--max-rate must be at least --start-rate");
    }
    Ok(())
}

/// Runs the search described by `args` (see the module docs). Ctrl-C ends it after the
/// current step, which does not count.
pub async fn find_capacity(args: LoadtestArgs) -> anyhow::Result<CapacityReport> {
    check(&args)?;
    let criteria = Criteria::with_e2e_p95_ms(args.e2e_p95_ms);
    let mut step_args = args.clone();
    step_args.rate = Some(args.start_rate);
    step_args.duration = args.step_duration;
    let mut base_plan = plan(&step_args)?;
    if base_plan.auth.is_none() {
        base_plan.auth = login(&base_plan.base, &args.username, &args.password).await?;
    }
    crate::prepare_market(&base_plan, &args.market).await?;
    let metrics_url = base_plan.base.join("metrics")?;
    let scraper = reqwest::Client::builder().no_proxy().build()?;
    let (stop_tx, stop_rx) = watch::channel(None);
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(Some(Instant::now()));
        }
        std::future::pending::<()>().await;
    });
    let mut steps = Vec::new();
    let mut rate = args.start_rate;
    let stopped = loop {
        eprintln!("khaacho loadtest --find-capacity: step at {rate:.0}/s");
        let (window_tx, mut window_rx) = watch::channel(None);
        let mut step_plan = base_plan.clone();
        if let engine::Mode::Open { rate: r, .. } = &mut step_plan.mode {
            *r = rate;
        }
        step_plan.window = Some(Arc::new(window_tx));
        let sampler = {
            let (client, url) = (scraper.clone(), metrics_url.clone());
            tokio::spawn(async move {
                let window = window_rx
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|w| *w);
                let (start, end): (Instant, Instant) = window?;
                sleep_until(start).await;
                let a = sample_queue(&client, &url).await;
                sleep_until(end).await;
                let b = sample_queue(&client, &url).await;
                Some((a, b))
            })
        };
        let report = match engine::execute(step_plan, Stop(stop_rx.clone())).await {
            Ok(r) => r,
            Err(e) => {
                sampler.abort();
                return Err(e);
            }
        };
        // The last scrape was taken at the end of the window; it may still be in flight
        // when the run returns early (nothing left to drain).
        let samples = match tokio::time::timeout(SCRAPE_TIMEOUT, sampler).await {
            Ok(Ok(s)) => s,
            _ => None,
        };
        if report.interrupted || stop_rx.borrow().is_some() {
            break "interrupted".to_owned();
        }
        let (start, end) = samples.unwrap_or((None, None));
        let reasons = judge(rate, &report, start, end, &criteria);
        let passed = reasons.is_empty();
        steps.push(StepResult {
            rate,
            accepted_per_s: report.accepted_per_s,
            requests: report.requests,
            errors: report.errors.clone(),
            latency_p99_ms: report.latency_ms.p99,
            e2e_p95_ms: report.e2e_ms.p95,
            e2e_samples: report.e2e_samples,
            queue_start: start,
            queue_end: end,
            passed,
            reasons,
        });
        if !passed {
            break format!("the step at {rate:.0}/s failed");
        }
        match next_rate(rate, args.step_factor, args.step_add, args.max_rate) {
            Some(next) if steps.len() < MAX_STEPS => rate = next,
            Some(_) => break format!("{MAX_STEPS} steps"),
            None => break format!("--max-rate {rate:.0}/s passed"),
        }
    };
    interrupt.abort();
    Ok(CapacityReport {
        capacity_per_s: capacity_of(&steps),
        stopped,
        url: base_plan.base.to_string(),
        step_duration_s: args.step_duration.as_secs_f64(),
        warmup_s: base_plan.warmup.as_secs_f64(),
        criteria,
        steps,
    })
}

/// Renders a search as a table for people.
pub fn format_capacity_table(r: &CapacityReport) -> String {
    let mut out = String::new();
    let c = &r.criteria;
    let _ = writeln!(
        out,
        "capacity search against {}: open-loop steps of {:.1} s (+{:.1} s warm-up); a step passes with e2e p95 < {:.0} ms, a flat queue (±{:.2} s of arrivals) and ≤ {:.1}% errors",
        r.url,
        r.step_duration_s,
        r.warmup_s,
        c.e2e_p95_ms,
        c.queue_tolerance_s,
        c.max_error_ratio * 100.0
    );
    let _ = writeln!(
        out,
        "{:>10} {:>11} {:>8} {:>11} {:>11} {:>15} {:>17}  verdict",
        "offered/s",
        "accepted/s",
        "errors",
        "202 p99 ms",
        "e2e p95 ms",
        "queue depth",
        "oldest ready s"
    );
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.1}"));
    for s in &r.steps {
        let errors: u64 = s.errors.values().sum();
        let (depth, age) = match (s.queue_start, s.queue_end) {
            (Some(a), Some(b)) => (
                format!("{:.0} → {:.0}", a.depth, b.depth),
                format!("{:.2} → {:.2}", a.oldest_ready_age_s, b.oldest_ready_age_s),
            ),
            _ => ("-".to_owned(), "-".to_owned()),
        };
        let verdict = if s.passed {
            "pass".to_owned()
        } else {
            format!("FAIL: {}", s.reasons.join("; "))
        };
        let _ = writeln!(
            out,
            "{:>10.0} {:>11.1} {:>8} {:>11} {:>11} {:>15} {:>17}  {verdict}",
            s.rate,
            s.accepted_per_s,
            errors,
            ms(s.latency_p99_ms),
            ms(s.e2e_p95_ms),
            depth,
            age
        );
    }
    match r.capacity_per_s {
        Some(c) => {
            let _ = writeln!(out, "capacity: {c:.0} orders/s ({})", r.stopped);
        }
        None => {
            let _ = writeln!(out, "capacity: below the first step ({})", r.stopped);
        }
    }
    out
}

/// Prints a search as a table.
pub fn print_capacity_table(r: &CapacityReport) {
    print!("{}", format_capacity_table(r));
}

/// Prints a search as JSON (`json`) or as a table.
pub fn print_capacity(r: &CapacityReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        print_capacity_table(r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{E2eMs, LatencyMs};

    fn report(rate: f64, errors: &[(&str, u64)], e2e_p95: Option<f64>, samples: u64) -> Report {
        Report {
            accepted_per_s: rate,
            errors: errors.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            latency_ms: LatencyMs {
                p50: Some(1.0),
                p95: Some(2.0),
                p99: Some(3.0),
                max: Some(4.0),
            },
            e2e_ms: E2eMs {
                p50: e2e_p95,
                p95: e2e_p95,
                p99: e2e_p95,
                max: e2e_p95,
            },
            requests: (rate * 10.0) as u64,
            accepted: (rate * 10.0) as u64,
            duration_s: 10.0,
            e2e_samples: samples,
            unsent: 0,
            mode: "open".to_owned(),
            connections: None,
            offered_rate: Some(rate),
            max_in_flight: Some(4096),
            warmup_s: 2.0,
            url: "http://127.0.0.1:8080/".to_owned(),
            products: 3,
            retailers: 2,
            interrupted: false,
        }
    }

    fn q(depth: f64, age: f64) -> Option<QueueSample> {
        Some(QueueSample {
            depth,
            oldest_ready_age_s: age,
        })
    }

    fn c() -> Criteria {
        Criteria::with_e2e_p95_ms(250.0)
    }

    #[test]
    fn a_healthy_step_passes() {
        let r = report(1000.0, &[], Some(40.0), 200);
        assert!(judge(1000.0, &r, q(0.0, 0.0), q(3.0, 0.01), &c()).is_empty());
        // Growth within the tolerance (250 ms of arrivals at 1,000/s = 250 jobs) is noise.
        assert!(judge(1000.0, &r, q(10.0, 0.05), q(250.0, 0.2), &c()).is_empty());
    }

    #[test]
    fn a_growing_queue_fails() {
        let r = report(1000.0, &[], Some(40.0), 200);
        let why = judge(1000.0, &r, q(0.0, 0.0), q(2_000.0, 0.1), &c());
        assert!(why.iter().any(|w| w.contains("queue grew")), "{why:?}");
        let why = judge(1000.0, &r, q(0.0, 0.0), q(10.0, 1.5), &c());
        assert!(why.iter().any(|w| w.contains("oldest ready")), "{why:?}");
    }

    #[test]
    fn slow_end_to_end_or_too_few_samples_fails() {
        let why = judge(
            1000.0,
            &report(1000.0, &[], Some(250.0), 200),
            q(0.0, 0.0),
            q(0.0, 0.0),
            &c(),
        );
        assert!(why.iter().any(|w| w.contains("e2e p95")), "{why:?}");
        let why = judge(
            1000.0,
            &report(1000.0, &[], Some(10.0), 2),
            q(0.0, 0.0),
            q(0.0, 0.0),
            &c(),
        );
        assert!(why.iter().any(|w| w.contains("samples")), "{why:?}");
    }

    #[test]
    fn errors_unsent_or_a_short_fall_fail_and_missing_metrics_fail() {
        let r = report(1000.0, &[("http_503", 50)], Some(10.0), 200);
        let why = judge(1000.0, &r, q(0.0, 0.0), q(0.0, 0.0), &c());
        assert!(why.iter().any(|w| w.contains("http_503")), "{why:?}");
        let mut r = report(1000.0, &[], Some(10.0), 200);
        r.unsent = 3;
        r.accepted_per_s = 800.0;
        let why = judge(1000.0, &r, None, q(0.0, 0.0), &c());
        assert_eq!(why.len(), 3, "{why:?}");
        // One error in 10,000 requests is within 0.1%.
        let r = report(1000.0, &[("timeout", 1)], Some(10.0), 200);
        assert!(judge(1000.0, &r, q(0.0, 0.0), q(0.0, 0.0), &c()).is_empty());
    }

    #[test]
    fn steps_rise_by_factor_or_increment_up_to_the_max() {
        assert_eq!(next_rate(500.0, 1.25, None, None), Some(625.0));
        assert_eq!(next_rate(500.0, 1.25, Some(250.0), None), Some(750.0));
        assert_eq!(next_rate(900.0, 1.25, None, Some(1000.0)), Some(1000.0));
        assert_eq!(next_rate(1000.0, 1.25, None, Some(1000.0)), None);
    }

    #[test]
    fn capacity_is_the_last_pass_before_the_first_failure() {
        let step = |rate: f64, passed: bool| StepResult {
            rate,
            accepted_per_s: rate,
            requests: 0,
            errors: BTreeMap::new(),
            latency_p99_ms: None,
            e2e_p95_ms: None,
            e2e_samples: 0,
            queue_start: None,
            queue_end: None,
            passed,
            reasons: Vec::new(),
        };
        assert_eq!(capacity_of(&[]), None);
        assert_eq!(capacity_of(&[step(500.0, false)]), None);
        assert_eq!(
            capacity_of(&[step(500.0, true), step(625.0, true), step(781.0, false)]),
            Some(625.0)
        );
        let table = format_capacity_table(&CapacityReport {
            capacity_per_s: Some(625.0),
            stopped: "the step at 781/s failed".to_owned(),
            url: "http://127.0.0.1:8080/".to_owned(),
            step_duration_s: 10.0,
            warmup_s: 2.0,
            criteria: c(),
            steps: vec![step(500.0, true), step(625.0, true), step(781.0, false)],
        });
        assert!(table.contains("capacity: 625 orders/s"), "{table}");
    }

    #[test]
    fn reads_queue_gauges_from_prometheus_text() {
        let text = "# TYPE khaacho_queue_depth gauge\n\
            khaacho_queue_depth{queue=\"validate\"} 12\n\
            khaacho_queue_depth{queue=\"events\"} 3\n\
            khaacho_queue_oldest_ready_age_seconds{queue=\"validate\"} 0.25\n\
            khaacho_queue_oldest_ready_age_seconds{queue=\"events\"} 1.5\n\
            khaacho_http_requests_total{route=\"x\"} 99\n";
        assert_eq!(
            parse_queue_metrics(text),
            Some(QueueSample {
                depth: 15.0,
                oldest_ready_age_s: 1.5
            })
        );
        assert_eq!(parse_queue_metrics("up 1\n"), None);
    }
}
