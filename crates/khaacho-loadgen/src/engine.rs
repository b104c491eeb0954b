//! The load loops (closed and open), request sending and e2e following.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use reqwest::header::AUTHORIZATION;
use reqwest::{Client, StatusCode, Url};
use serde::Deserialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout_at};
use uuid::Uuid;

use crate::Report;
use crate::catalog::{Catalog, OrderBody, endpoint, fetch_catalog};
use crate::schedule::{due_between, intended_offset};
use crate::stats::{ReportMeta, Stats};
use crate::validate::is_loopback_host;

/// Per-request timeout (connect + send + full response body).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time allowed for in-flight requests on top of their timeout.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Interval between status polls of a sampled order.
/// Status polls start every 10 ms and slow down the longer an order takes (see
/// [`poll_delay`]), so a lagging queue is measured without flooding the server with polls.
const E2E_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Give up following a sampled order this long after its 202.
const E2E_CAP: Duration = Duration::from_secs(30);
/// Wait at most this long for outstanding e2e polls after the load stops.
const E2E_DRAIN: Duration = Duration::from_secs(30);
/// Fraction of POSTs that carry an `Idempotency-Key`.
const IDEMPOTENCY_FRACTION: f64 = 0.1;
/// Closed loop: pause after a connection error so a dead server does not
/// turn the workers into a busy loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Open loop: a request sent at most this late is timed from its actual
/// send time (tokio timers have ~1 ms granularity); later requests are timed
/// from `intended + TIMER_SLACK`, which keeps the coordinated-omission
/// correction without charging timer jitter to the server.
const TIMER_SLACK: Duration = Duration::from_millis(1);
/// Open loop: stop scheduling if the generator itself falls this far behind
/// after the end of the window (e.g. an unreachable rate).
const SCHEDULER_OVERRUN: Duration = Duration::from_secs(1);

/// How load is offered.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// N workers, each sending the next request when the previous answered.
    Closed {
        /// Number of workers.
        connections: usize,
    },
    /// Constant rate regardless of responses.
    Open {
        /// Requests per second.
        rate: f64,
        /// Bound on outstanding requests.
        max_in_flight: usize,
    },
}

/// A validated run configuration.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) base: Url,
    pub(crate) mode: Mode,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    /// Follow every n-th accepted order (0 = never).
    pub(crate) e2e_every: u64,
    /// Statuses that mean "not there yet" for the e2e sample (default: `received`).
    pub(crate) e2e_waiting: Vec<String>,
    /// Share of the orders sent for one hot retailer (0 = none); those are not followed.
    pub(crate) hot_share: f64,
    /// Full `Authorization` header value.
    pub(crate) auth: Option<String>,
    /// Told `(start, end)` of the measured window once the load starts (for observers that
    /// sample the server during it, e.g. the capacity search).
    pub(crate) window: Option<Arc<WindowTx>>,
}

/// Where the engine announces `(start, end)` of the measured window.
pub(crate) type WindowTx = watch::Sender<Option<(Instant, Instant)>>;

/// Stop signal: `Some(instant)` once a stop was requested.
#[derive(Debug, Clone)]
pub(crate) struct Stop(pub(crate) watch::Receiver<Option<Instant>>);

impl Stop {
    fn is_set(&self) -> bool {
        self.0.borrow().is_some()
    }

    fn at(&self) -> Option<Instant> {
        *self.0.borrow()
    }

    /// Resolves once a stop was requested (never, if the sender is gone).
    async fn wait(&mut self) {
        if self.0.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// State shared by all request tasks.
struct Shared {
    client: Client,
    base: Url,
    orders_url: Url,
    auth: Option<String>,
    catalog: Catalog,
    stats: Mutex<Stats>,
    measure_start: Instant,
    measure_end: Instant,
    e2e_every: u64,
    e2e_waiting: Vec<String>,
    accepted_seq: AtomicU64,
    e2e_tasks: Mutex<JoinSet<()>>,
}

/// Locks a mutex, ignoring poisoning (stats stay usable after a panic).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The body of a 202 answer.
#[derive(Debug, Deserialize)]
struct AcceptedBody {
    #[allow(dead_code)]
    order_id: serde_json::Value,
    status_url: String,
}

/// The body of a status poll.
#[derive(Debug, Deserialize)]
struct StatusBody {
    status: String,
}

impl Shared {
    /// Records the outcome of one order POST whose latency clock started at
    /// `sent`; `measured` is false for warm-up requests (ignored).
    /// A hot retailer's order (`follow` false) is counted but never followed.
    fn record(
        self: &Arc<Self>,
        sent: Instant,
        measured: bool,
        follow: bool,
        result: Result<String, String>,
    ) {
        let done = Instant::now();
        if !measured {
            return;
        }
        match result {
            Ok(status_url) => {
                lock(&self.stats).record_accepted(
                    done.saturating_duration_since(sent),
                    done <= self.measure_end,
                );
                if follow && self.e2e_every > 0 {
                    let n = self.accepted_seq.fetch_add(1, Ordering::Relaxed);
                    if n.is_multiple_of(self.e2e_every) {
                        self.start_follow(&status_url, done);
                    }
                }
            }
            Err(kind) => lock(&self.stats).record_request_error(&kind),
        }
    }

    /// Starts polling a sampled order's status URL.
    fn start_follow(self: &Arc<Self>, status_url: &str, accepted_at: Instant) {
        let url = match self.base.join(status_url) {
            Ok(u) if u.host_str().is_some_and(is_loopback_host) => u,
            // Never follow a status URL off this machine.
            _ => {
                lock(&self.stats).add_error("e2e_bad_status_url", 1);
                return;
            }
        };
        let me = Arc::clone(self);
        let mut tasks = lock(&self.e2e_tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(follow(me, url, accepted_at));
    }

    fn with_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(a) => req.header(AUTHORIZATION, a),
            None => req,
        }
    }
}

/// Maps a transport error to an error kind.
fn classify(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_decode() {
        "bad_response"
    } else {
        "io"
    }
    .to_owned()
}

/// POSTs one order; `Ok(status_url)` on a well-formed 202, else the error kind.
async fn send_order(
    shared: &Shared,
    body: &OrderBody,
    idempotency_key: Option<Uuid>,
) -> Result<String, String> {
    let mut req = shared.with_auth(shared.client.post(shared.orders_url.clone()).json(body));
    if let Some(key) = idempotency_key {
        req = req.header("Idempotency-Key", key.to_string());
    }
    let resp = req.send().await.map_err(|e| classify(&e))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| classify(&e))?;
    if status != StatusCode::ACCEPTED {
        return Err(format!("http_{}", status.as_u16()));
    }
    match serde_json::from_slice::<AcceptedBody>(&bytes) {
        Ok(a) if !a.status_url.is_empty() => Ok(a.status_url),
        _ => Err("bad_response".to_owned()),
    }
}

/// Delay before the next status poll of an order accepted `waited` ago: 10 ms for the first
/// 250 ms (the resolution that matters for a p95 target in that range), then a tenth of the
/// time waited so far, at most 500 ms. The resolution error stays within about 10%.
pub(crate) fn poll_delay(waited: Duration) -> Duration {
    if waited < Duration::from_millis(250) {
        E2E_POLL_INTERVAL
    } else {
        (waited / 10).min(Duration::from_millis(500))
    }
}

/// Polls `url` (see [`poll_delay`]) until the status is none of the waiting ones, then
/// records 202 → that moment. Gives up (`e2e_timeout`) 30 s after the 202.
async fn follow(shared: Arc<Shared>, url: Url, accepted_at: Instant) {
    let deadline = accepted_at + E2E_CAP;
    loop {
        tokio::time::sleep(poll_delay(accepted_at.elapsed())).await;
        let now = Instant::now();
        if now >= deadline {
            lock(&shared.stats).add_error("e2e_timeout", 1);
            return;
        }
        let req = shared
            .with_auth(shared.client.get(url.clone()))
            .timeout(REQUEST_TIMEOUT.min(deadline - now));
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => continue, // the deadline check decides
            Err(e) => {
                lock(&shared.stats).add_error(&format!("e2e_{}", classify(&e)), 1);
                return;
            }
        };
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            continue; // back-pressure on polls: keep trying until the cap
        }
        if !status.is_success() {
            lock(&shared.stats).add_error(&format!("e2e_http_{}", status.as_u16()), 1);
            return;
        }
        match resp.json::<StatusBody>().await {
            Ok(b) if shared.e2e_waiting.contains(&b.status) => {}
            Ok(_) => {
                lock(&shared.stats)
                    .record_e2e(Instant::now().saturating_duration_since(accepted_at));
                return;
            }
            Err(e) if e.is_timeout() => {}
            Err(_) => {
                lock(&shared.stats).add_error("e2e_bad_response", 1);
                return;
            }
        }
    }
}

/// Waits for every task in `set` until `deadline`, then aborts the rest.
/// Returns how many were aborted.
async fn drain(set: &mut JoinSet<()>, deadline: Instant) -> usize {
    let all = async { while set.join_next().await.is_some() {} };
    if timeout_at(deadline, all).await.is_ok() {
        0
    } else {
        let left = set.len();
        set.abort_all();
        left
    }
}

/// One shared HTTP/1.1 keep-alive client. Redirects and proxies are disabled
/// so requests can never leave the loopback target.
fn build_client(pool: usize) -> anyhow::Result<Client> {
    Client::builder()
        .http1_only()
        .pool_max_idle_per_host(pool)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("khaacho-loadgen/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

/// Runs a whole load test.
pub(crate) async fn execute(plan: Plan, mut stop: Stop) -> anyhow::Result<Report> {
    let pool = match plan.mode {
        Mode::Closed { connections } => connections,
        Mode::Open { max_in_flight, .. } => max_in_flight,
    };
    let client = build_client(pool)?;
    let catalog = tokio::select! {
        c = fetch_catalog(&client, &plan.base, plan.auth.as_deref()) => c?.with_hot_share(plan.hot_share),
        () = stop.wait() => bail!("interrupted before the load test started"),
    };
    let mode_text = match plan.mode {
        Mode::Closed { connections } => format!("closed loop, {connections} connections"),
        Mode::Open {
            rate,
            max_in_flight,
        } => {
            format!("open loop, {rate} req/s, max {max_in_flight} in flight")
        }
    };
    eprintln!(
        "khaacho loadtest: {} products, {} retailers; {mode_text}; {:.1} s warm-up + {:.1} s measured against {}",
        catalog.product_count(),
        catalog.retailer_count(),
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64(),
        plan.base
    );

    let start = Instant::now();
    let measure_start = start + plan.warmup;
    let end = measure_start + plan.duration;
    if let Some(window) = &plan.window {
        let _ = window.send(Some((measure_start, end)));
    }
    let shared = Arc::new(Shared {
        orders_url: endpoint(&plan.base, "/api/v1/orders"),
        client,
        base: plan.base.clone(),
        auth: plan.auth.clone(),
        stats: Mutex::new(Stats::new()?),
        catalog,
        measure_start,
        measure_end: end,
        e2e_every: plan.e2e_every,
        e2e_waiting: plan.e2e_waiting.clone(),
        accepted_seq: AtomicU64::new(0),
        e2e_tasks: Mutex::new(JoinSet::new()),
    });

    let (products, retailers) = (
        shared.catalog.product_count(),
        shared.catalog.retailer_count(),
    );
    match plan.mode {
        Mode::Closed { connections } => run_closed(&shared, connections, end, &stop).await,
        Mode::Open {
            rate,
            max_in_flight,
        } => run_open(&shared, rate, max_in_flight, start, plan.warmup, end, &stop).await,
    }

    // Sampled orders: wait (bounded) for their final status.
    let mut e2e = std::mem::take(&mut *lock(&shared.e2e_tasks));
    if !stop.is_set() {
        let e2e_deadline = Instant::now() + E2E_DRAIN;
        let left = tokio::select! {
            n = drain(&mut e2e, e2e_deadline) => n,
            () = stop.wait() => { e2e.abort_all(); 0 }
        };
        lock(&shared.stats).add_error("e2e_timeout", left as u64);
    } else {
        e2e.abort_all();
    }
    // Follows started after the take (by late responses) are dropped here.
    lock(&shared.e2e_tasks).abort_all();

    let stopped_at = stop.at();
    let interrupted = stopped_at.is_some_and(|t| t < end);
    let window_end = stopped_at.map_or(end, |t| t.min(end));
    let (mode, connections, offered_rate, max_in_flight) = match plan.mode {
        Mode::Closed { connections } => ("closed", Some(connections), None, None),
        Mode::Open {
            rate,
            max_in_flight,
        } => ("open", None, Some(rate), Some(max_in_flight)),
    };
    let stats = lock(&shared.stats).clone();
    Ok(stats.report(ReportMeta {
        url: plan.base.to_string(),
        mode: mode.to_owned(),
        connections,
        offered_rate,
        max_in_flight,
        measured: window_end.saturating_duration_since(measure_start),
        warmup: plan.warmup,
        products,
        retailers,
        interrupted,
    }))
}

/// Closed loop: `connections` workers send back-to-back until `end`.
async fn run_closed(shared: &Arc<Shared>, connections: usize, end: Instant, stop: &Stop) {
    let mut set = JoinSet::new();
    for _ in 0..connections {
        let shared = Arc::clone(shared);
        let stop = stop.clone();
        let mut rng = SmallRng::from_rng(&mut rand::rng());
        set.spawn(async move {
            while Instant::now() < end && !stop.is_set() {
                let body = shared.catalog.generate(&mut rng);
                let key = rng.random_bool(IDEMPOTENCY_FRACTION).then(Uuid::new_v4);
                let sent = Instant::now();
                let result = send_order(&shared, &body, key).await;
                let connect_failed = matches!(&result, Err(kind) if kind == "connect");
                shared.record(sent, sent >= shared.measure_start, !body.hot, result);
                if connect_failed {
                    tokio::time::sleep(CONNECT_BACKOFF).await;
                }
            }
        });
    }
    let aborted = drain(&mut set, end + REQUEST_TIMEOUT + DRAIN_GRACE).await;
    if aborted > 0 {
        eprintln!("khaacho loadtest: {aborted} workers did not finish in time");
    }
}

/// Open loop: request `i` is due at `start + i / rate`; at most
/// `max_in_flight` are outstanding. Latency counts from the due time.
async fn run_open(
    shared: &Arc<Shared>,
    rate: f64,
    max_in_flight: usize,
    start: Instant,
    warmup: Duration,
    end: Instant,
    stop: &Stop,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut set = JoinSet::new();
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut stop_wait = stop.clone();
    let mut dispatched_measured: u64 = 0;
    let mut i: u64 = 0;
    while let Some(intended) = start.checked_add(intended_offset(i, rate)) {
        if intended >= end || stop.is_set() {
            break;
        }
        tokio::select! {
            biased;
            () = stop_wait.wait() => break,
            () = sleep_until(intended) => {}
        }
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Pool exhausted: wait (the request's clock keeps running),
                // but do not keep sending a backlog after the window ends.
                let p = tokio::select! {
                    biased;
                    () = stop_wait.wait() => break,
                    p = Arc::clone(&permits).acquire_owned() => p,
                };
                match p {
                    Ok(p) if Instant::now() < end => p,
                    _ => break,
                }
            }
        };
        if Instant::now() >= end + SCHEDULER_OVERRUN {
            break;
        }
        let body = shared.catalog.generate(&mut rng);
        let key = rng.random_bool(IDEMPOTENCY_FRACTION).then(Uuid::new_v4);
        let measured = intended >= shared.measure_start;
        if measured {
            dispatched_measured += 1;
        }
        let task_shared = Arc::clone(shared);
        set.spawn(async move {
            let _permit = permit;
            let sent = Instant::now().min(intended + TIMER_SLACK);
            let result = send_order(&task_shared, &body, key).await;
            task_shared.record(sent, measured, !body.hot, result);
        });
        while set.try_join_next().is_some() {}
        i += 1;
    }
    if !stop.is_set() {
        let due = due_between(warmup, end.saturating_duration_since(start), rate);
        lock(&shared.stats).unsent = due.saturating_sub(dispatched_measured);
    }
    let aborted = drain(&mut set, Instant::now() + REQUEST_TIMEOUT + DRAIN_GRACE).await;
    if aborted > 0 {
        eprintln!("khaacho loadtest: {aborted} requests did not finish in time");
    }
}
