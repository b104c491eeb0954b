//! `khaacho loadtest-messages`: the inbound benchmark of the channels. Offers signed Twilio
//! webhooks open loop (each timed from its intended send time, so a slow server cannot slow
//! the offered rate down) from the registered retailers' phones, with a mix of order lines in
//! the three scripts, greetings and status questions; then follows the messages into the
//! database until every one is handled, and reports the intake (answered rate, statuses,
//! latency percentiles) and the processing (handled rate, lag from arrival to handled).
//!
//! It talks to a running server over loopback like `khaacho chat` (same auth token and public
//! URL) and reads the server's database (`DATABASE_URL`) to follow the processing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::routes::{MESSAGES_PATH, public_url};
use crate::app::App;
use crate::base::time::now_ms;
use crate::with_latest;

/// What the retailers write, in turn.
const TEXTS: [&str; 8] = [
    "5 kg chini, 2 carton wai wai",
    "तेल ३ लिटर",
    "namaste",
    "10 kg chamal ra 2 litre tel",
    "status",
    "chini 3 kg",
    "धन्यवाद",
    "help",
];

/// Options of `khaacho loadtest-messages`.
#[derive(clap::Args, Debug, Clone)]
pub struct FloodArgs {
    /// The running server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Webhooks offered per second.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// How long to offer them, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = 2048)]
    pub max_in_flight: usize,
    /// How long to wait for the processing to finish, in seconds.
    #[arg(long, default_value_t = 600)]
    pub drain_seconds: u64,
}

/// The benchmark's report.
#[derive(Debug, Default)]
pub struct FloodReport {
    /// Webhooks offered.
    pub offered: usize,
    /// Answered 200.
    pub ok: usize,
    /// Other answers and failures, by status (0: no answer).
    pub other: Vec<(u16, usize)>,
    /// 200s per second of the offering.
    pub answered_per_s: f64,
    /// Latency percentiles of the answers, ms: p50, p95, p99, max.
    pub latency_ms: [f64; 4],
    /// Messages of this run handled by the workers.
    pub handled: i64,
    /// Still unhandled when the wait ended.
    pub left: i64,
    /// Handled per second, from the first arrival to the last handled.
    pub handled_per_s: f64,
    /// Arrival → handled, ms: p50, p95, max.
    pub lag_ms: [f64; 3],
}

/// Runs the benchmark against `args.url` with `app`'s settings and database.
pub async fn run(app: &App, args: &FloodArgs) -> anyhow::Result<FloodReport> {
    let base = khaacho_loadgen::ensure_loopback(&args.url)?;
    let base = base.as_str().trim_end_matches('/').to_string();
    if !(args.rate.is_finite() && args.rate > 0.0) || args.seconds == 0 {
        bail!("--rate and --seconds must be positive");
    }
    let settings = app.settings();
    let Some(token) = settings.channels.twilio_auth_token.clone() else {
        bail!(
            "set channels.twilio_auth_token (KHAACHO_CHANNELS__TWILIO_AUTH_TOKEN) to the server's value"
        );
    };
    let phones: Vec<String> = with_latest!(app.db(), c =>
        sqlx::query_scalar("SELECT phone FROM retailers WHERE active = TRUE ORDER BY id LIMIT 500")
            .fetch_all(c).await)?;
    if phones.is_empty() {
        bail!("no retailers to write as: seed the demo (`khaacho serve --demo`) first");
    }
    let signed_url = public_url(settings, MESSAGES_PATH);
    let target = format!("{base}{MESSAGES_PATH}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(args.max_in_flight)
        .build()?;
    let run_id = Uuid::now_v7().simple().to_string();
    let started_ms = now_ms();
    let total = (args.rate * args.seconds as f64).round() as usize;
    let slots = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u16, f64)>();
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let permit = slots.clone().acquire_owned().await?;
        let phone = &phones[i % phones.len()];
        let from = format!("whatsapp:{phone}");
        let sid = format!("SMflood{run_id}{i:08}");
        let text = TEXTS[(i / phones.len()) % TEXTS.len()];
        let params = [
            ("MessageSid", sid.as_str()),
            ("From", from.as_str()),
            ("To", "whatsapp:khaacho"),
            ("Body", text),
            ("NumMedia", "0"),
        ];
        let signature = khaacho_auth::webhook::twilio_signature(&token, &signed_url, &params);
        let body = serde_urlencoded::to_string(params)?;
        let (http, target, tx) = (http.clone(), target.clone(), tx.clone());
        tokio::spawn(async move {
            let status = http
                .post(&target)
                .header("content-type", "application/x-www-form-urlencoded")
                .header(khaacho_auth::webhook::TWILIO_SIGNATURE_HEADER, signature)
                .body(body)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            let _ = tx.send((status, due.elapsed().as_secs_f64() * 1000.0));
            drop(permit);
        });
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(total);
    let mut report = FloodReport {
        offered: total,
        ..Default::default()
    };
    let mut other = std::collections::BTreeMap::<u16, usize>::new();
    while let Some((status, ms)) = rx.recv().await {
        if status == 200 {
            report.ok += 1;
            latencies.push(ms);
        } else {
            *other.entry(status).or_default() += 1;
        }
    }
    report.other = other.into_iter().collect();
    report.answered_per_s = report.ok as f64 / args.seconds as f64;
    latencies.sort_by(f64::total_cmp);
    report.latency_ms = [
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    ];

    // Follow the processing until every message of this run is handled.
    let pattern = format!("SMflood{run_id}%");
    let deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
    loop {
        let left: i64 = with_latest!(app.db(), c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM inbound_messages WHERE provider_message_id LIKE $1 AND status = 'received'")
            .bind(&pattern).fetch_one(c).await)?;
        report.left = left;
        if left == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rows: Vec<(i64, Option<i64>)> = with_latest!(app.db(), c => sqlx::query_as(
        "SELECT received_at_ms, processed_at_ms FROM inbound_messages WHERE provider_message_id LIKE $1 \
         AND received_at_ms >= $2")
        .bind(&pattern).bind(started_ms).fetch_all(c).await)
    .context("reading the run's messages")?;
    let mut lags: Vec<f64> = rows
        .iter()
        .filter_map(|(r, p)| p.map(|p| (p - r) as f64))
        .collect();
    lags.sort_by(f64::total_cmp);
    report.handled = lags.len() as i64;
    let first = rows.iter().map(|r| r.0).min();
    let last = rows.iter().filter_map(|r| r.1).max();
    if let (Some(first), Some(last)) = (first, last)
        && last > first
    {
        report.handled_per_s = report.handled as f64 * 1000.0 / (last - first) as f64;
    }
    report.lag_ms = [
        percentile(&lags, 0.50),
        percentile(&lags, 0.95),
        lags.last().copied().unwrap_or_default(),
    ];
    Ok(report)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The report as people read it.
pub fn print(r: &FloodReport, args: &FloodArgs) {
    println!(
        "offered {} webhooks at {}/s for {} s",
        r.offered, args.rate, args.seconds
    );
    println!(
        "answered 200: {} ({:.0}/s); other: {:?}",
        r.ok, r.answered_per_s, r.other
    );
    println!(
        "latency ms: p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        r.latency_ms[0], r.latency_ms[1], r.latency_ms[2], r.latency_ms[3]
    );
    println!(
        "handled: {} ({:.0}/s from first arrival to last handled), left unhandled: {}",
        r.handled, r.handled_per_s, r.left
    );
    println!(
        "arrival → handled ms: p50 {:.0}  p95 {:.0}  max {:.0}",
        r.lag_ms[0], r.lag_ms[1], r.lag_ms[2]
    );
}
