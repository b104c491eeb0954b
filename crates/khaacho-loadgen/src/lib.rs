//! `khaacho loadtest`: a load generator for the Khaacho order API.
//!
//! It fetches products and retailers from a running API, then POSTs random
//! orders to `/api/v1/orders` and measures:
//!
//! * latency of `202 Accepted` answers (HDR histogram, µs resolution, ≤ 60 s),
//! * accepted orders per second over the measured window,
//! * errors by kind (`http_<status>`, `timeout`, `connect`, `io`,
//!   `bad_response`, `e2e_timeout`, other `e2e_*`),
//! * end-to-end latency (202 → status no longer `received`) on a sample of
//!   orders, by polling their status URL every 10 ms.
//!
//! Two ways to offer load:
//!
//! * **closed loop** (default): `--connections N` workers, each sending its
//!   next request when the previous one was answered;
//! * **open loop** (`--rate R`): requests are due at a constant rate whatever
//!   the server does, with at most `--max-in-flight` outstanding; latency is
//!   timed from each request's *intended* send time, so server stalls are not
//!   hidden (coordinated omission).
//!
//! Only loopback targets are accepted (127.0.0.0/8, `localhost`, `[::1]`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     loadtest: khaacho_loadgen::LoadtestArgs,
//! }
//!
//! let cli = Cli::parse_from(["x", "--url", "http://127.0.0.1:8080", "--duration", "10s"]);
//! let json = cli.loadtest.json;
//! let report = khaacho_loadgen::run(cli.loadtest).await?;
//! khaacho_loadgen::print_report(&report, json)?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod capacity;
mod catalog;
mod engine;
pub mod market;
mod schedule;
pub mod simulate;
mod stats;
mod validate;

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use tokio::sync::watch;
use tokio::time::Instant;

pub use capacity::{
    CapacityReport, Criteria, QueueSample, StepResult, find_capacity, format_capacity_table,
    print_capacity, print_capacity_table,
};
pub use stats::{E2eMs, LatencyMs, Report, format_table, print_report, print_table};
pub use validate::{ensure_loopback, parse_duration};

use engine::{Mode, Plan, Stop};

/// Options of `khaacho loadtest`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadtestArgs {
    /// Base URL of the Khaacho API; loopback only (127.0.0.0/8, localhost, [::1])
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// How long to measure, e.g. 30s, 2m, 500ms (after the warm-up)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Closed loop: number of concurrent workers, each sending its next
    /// request when the previous one was answered (ignored with --rate)
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub connections: usize,

    /// Open loop: offer R requests per second regardless of responses;
    /// latency is timed from each request's intended send time
    #[arg(long, value_name = "R", value_parser = validate::parse_rate)]
    pub rate: Option<f64>,

    /// Open loop: maximum number of requests in flight
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_in_flight: usize,

    /// Follow every Nth accepted order until its status is no longer
    /// "received" and record the end-to-end latency (0 disables)
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub e2e_sample: u64,

    /// Statuses the e2e sample waits through (comma-separated): the default times 202 → the
    /// order's first state past `received` (`routed` when the validation run routes it, else
    /// `validated`; or held/rejected); `received,validated` times 202 → routed either way
    #[arg(
        long,
        value_name = "STATUSES",
        value_delimiter = ',',
        default_value = "received"
    )]
    pub e2e_waiting: Vec<String>,

    /// API key, sent as `Authorization: Bearer KEY` (without it the load generator signs in
    /// with --username/--password)
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,

    /// User to sign in as when no --api-key is given (default: the demo operator of
    /// `khaacho seed --demo`)
    #[arg(long, value_name = "NAME", default_value = "operator")]
    pub username: String,

    /// Password of --username (default: the demo operator's)
    #[arg(
        long,
        value_name = "PASSWORD",
        default_value = "demo-operator-password",
        hide_default_value = true
    )]
    pub password: String,

    /// The market to set up before the load: every vendor's capacity and hours, how many
    /// retailers (as the signed-in operator; the orders are spread over up to 20,000 listed
    /// retailers)
    #[command(flatten)]
    pub market: market::MarketArgs,

    /// Print the report as JSON instead of a table
    #[arg(long)]
    pub json: bool,

    /// Send load for this long before measuring (not recorded), e.g. 2s
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Find the capacity: offer open-loop load in steps of rising rate and report the highest
    /// rate whose queue stayed flat and whose end-to-end p95 met --e2e-p95-ms (stops at the
    /// first failing step; --duration and --rate are not used)
    #[arg(long)]
    pub find_capacity: bool,

    /// Capacity search: rate of the first step
    #[arg(long, value_name = "R", default_value_t = 500.0, value_parser = validate::parse_rate)]
    pub start_rate: f64,

    /// Capacity search: each step offers this many times the previous rate
    #[arg(long, value_name = "F", default_value_t = 1.25)]
    pub step_factor: f64,

    /// Capacity search: add R per step instead of multiplying by --step-factor
    #[arg(long, value_name = "R", value_parser = validate::parse_rate)]
    pub step_add: Option<f64>,

    /// Capacity search: measured length of each step (--warmup runs before each step)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub step_duration: Duration,

    /// Capacity search: stop after the step at this rate even if it passes
    #[arg(long, value_name = "R", value_parser = validate::parse_rate)]
    pub max_rate: Option<f64>,

    /// Capacity search: end-to-end (202 → first status after `received`) p95 bound of a
    /// passing step, in ms
    #[arg(long, value_name = "MS", default_value_t = 250.0)]
    pub e2e_p95_ms: f64,

    /// Hot account: send this percentage of the orders (0–90) for one retailer (the first
    /// listed) and the rest for the others; the end-to-end figures then follow only the
    /// other retailers' orders, to show whether one busy account holds everyone else up
    #[arg(long, value_name = "PCT", default_value_t = 0)]
    pub hot_share: u8,
}

/// Upper bound for `--connections`.
const MAX_CONNECTIONS: usize = 100_000;
/// Upper bound for `--max-in-flight`.
const MAX_IN_FLIGHT: usize = 1_000_000;
/// Upper bound for `--duration` and `--warmup`.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Checks the arguments and turns them into a [`Plan`] (no I/O).
fn plan(args: &LoadtestArgs) -> anyhow::Result<Plan> {
    let base = ensure_loopback(&args.url)?;
    if args.duration.is_zero() {
        bail!("--duration must be greater than zero");
    }
    if args.duration > MAX_DURATION || args.warmup > MAX_DURATION {
        bail!("--duration and --warmup must each be at most 24h");
    }
    let mode = match args.rate {
        Some(rate) => {
            if !rate.is_finite() || rate <= 0.0 {
                bail!("--rate must be a positive number of requests per second");
            }
            if args.max_in_flight == 0 || args.max_in_flight > MAX_IN_FLIGHT {
                bail!("--max-in-flight must be between 1 and {MAX_IN_FLIGHT}");
            }
            Mode::Open {
                rate,
                max_in_flight: args.max_in_flight,
            }
        }
        None => {
            if args.connections == 0 || args.connections > MAX_CONNECTIONS {
                bail!("--connections must be between 1 and {MAX_CONNECTIONS}");
            }
            Mode::Closed {
                connections: args.connections,
            }
        }
    };
    if args.hot_share > 90 {
        bail!("--hot-share must be between 0 and 90 (percent of the orders)");
    }
    let auth = match args.api_key.as_deref().map(str::trim) {
        Some("") => bail!("--api-key is empty"),
        Some(key) => Some(format!("Bearer {key}")),
        None => None,
    };
    Ok(Plan {
        base,
        mode,
        duration: args.duration,
        warmup: args.warmup,
        e2e_every: args.e2e_sample,
        e2e_waiting: args.e2e_waiting.clone(),
        hot_share: f64::from(args.hot_share) / 100.0,
        auth,
        window: None,
    })
}

/// Runs the load test described by `args` and returns its report.
///
/// Ctrl-C stops the load early; requests in flight still finish (each is
/// bounded by the 10 s request timeout) and the partial report is returned.
/// Non-loopback URLs are refused before any request is sent.
pub async fn run(args: LoadtestArgs) -> anyhow::Result<Report> {
    run_until(args, async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling available: never stop early.
            std::future::pending::<()>().await;
        }
    })
    .await
}

/// Like [`run`], but stops early when `shutdown` resolves instead of on
/// Ctrl-C (for embedding in a process that handles signals itself).
pub async fn run_until<F>(args: LoadtestArgs, shutdown: F) -> anyhow::Result<Report>
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut plan = plan(&args)?;
    if plan.auth.is_none() {
        plan.auth = login(&plan.base, &args.username, &args.password).await?;
    }
    prepare_market(&plan, &args.market).await?;
    let (tx, rx) = watch::channel(None);
    let watcher = tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(Some(Instant::now()));
        // Keep the sender alive so receivers never see it closed.
        std::future::pending::<()>().await;
    });
    let result = engine::execute(plan, Stop(rx)).await;
    watcher.abort();
    result
}

/// Sets the market up as `market` says (nothing when it says nothing), as the run's operator.
async fn prepare_market(plan: &Plan, market: &market::MarketArgs) -> anyhow::Result<()> {
    if !market.is_set() {
        return Ok(());
    }
    let Some(auth) = plan.auth.as_deref() else {
        bail!(
            "--vendor-capacity, --vendor-hours and --retailers set the market up as an operator, \
             and the server has no login route: pass --api-key"
        );
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let m = market::prepare(&client, &plan.base, auth, market).await?;
    if m.registered > 0 {
        eprintln!("khaacho loadtest: registered {} retailers", m.registered);
    }
    Ok(())
}

/// Signs in at `POST /api/v1/auth/login` and returns the `Authorization` header value; `None`
/// when the server has no login route (it answers 404), so it is tried without credentials.
/// Access tokens last 15 minutes: runs longer than that need `--api-key`.
async fn login(
    base: &reqwest::Url,
    username: &str,
    password: &str,
) -> anyhow::Result<Option<String>> {
    let url = base.join("api/v1/auth/login")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let resp = client
        .post(url)
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {base}: {e}"))?;
    match resp.status() {
        reqwest::StatusCode::OK => {
            let body: serde_json::Value = resp.json().await?;
            let token = body["access_token"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("login answer has no access_token"))?;
            Ok(Some(format!("Bearer {token}")))
        }
        reqwest::StatusCode::NOT_FOUND => Ok(None),
        status => bail!(
            "signing in as {username} failed ({status}); pass --username/--password of an operator,              or --api-key (run `khaacho seed --demo` for the demo operator)"
        ),
    }
}

#[cfg(test)]
mod tests;
