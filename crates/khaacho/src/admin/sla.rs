//! The HTTP API's service levels from this process's own measurements
//! ([`crate::base::sla::SlaRecorder`], recorded by the HTTP middleware): `GET /sla` (staff),
//! and the minute check [`CheckSla`] (`schedules.sla_check`) that raises operator alerts
//! through the alert inbox, each kind once while an unacknowledged one is open:
//!
//! - critical `sla_violation`: over the last 5 minutes the error rate, p99 or availability
//!   misses its objective;
//! - critical `breaker_open`: a parser agent's circuit breaker is open (one per provider);
//! - critical `dead_letters`: more dead jobs than `ops.dead_letters_alert`;
//! - warning `latency_p95`: p95 over the last 5 minutes above its objective;
//! - warning `queue_age`: the oldest ready job waited longer than `ops.queue_age_alert_secs`.
//!
//! The same check sets the degradation level (`admin::mode::evaluate`).
//!
//! Measurements are per process: the check run by a process judges the requests that
//! process served (run the workers inside the API process, or read each API's `/sla`).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::{App, JobContext};
use crate::base::alerts::{self, NewAlert};
use crate::base::principal::{Principal, STAFF};
use crate::base::sla::WindowStats;
use crate::base::time::fmt_time;
use crate::base::wire::error::ApiError;
use crate::queue::{Job, JobError, Priority, RetryPolicy};

/// Objective: p95 latency below this (ms).
pub const P95_OBJECTIVE_MS: u64 = 500;
/// Objective: p99 latency below this (ms).
pub const P99_OBJECTIVE_MS: u64 = 1_000;
/// Objective: share of requests answered 5xx below this.
pub const ERROR_RATE_OBJECTIVE: f64 = 0.01;
/// Objective: share of good minutes (at most 1% 5xx) at least this.
pub const AVAILABILITY_OBJECTIVE: f64 = 0.999;
/// The windows reported, in seconds, with their names.
pub const WINDOWS: [(&str, i64); 2] = [("5m", 300), ("1h", 3_600)];

/// Routes of the SLA report.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(get_sla))
}

/// One measure against its objective.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Measure {
    /// The measured value (`null` without traffic for latencies).
    pub value: Option<f64>,
    /// The objective.
    pub objective: f64,
    /// Whether the value meets the objective (no traffic meets every objective).
    pub met: bool,
}

/// The API's service levels over one window.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SlaWindow {
    /// `5m` or `1h`.
    pub window: String,
    /// Requests answered in the window.
    pub requests: u64,
    /// Of them answered 5xx.
    pub server_errors: u64,
    /// Of the 5xx, the server's own refusals (`503` + `Retry-After` when the process was
    /// full, new orders pushed back, customers refused at `critical`); the degradation level
    /// is judged on the other 5xx.
    pub refused: u64,
    /// Share of the window's minutes with at most 1% 5xx (≥ objective).
    pub availability: Measure,
    /// p95 latency, ms: the upper bound of its histogram bucket (< objective).
    pub p95_ms: Measure,
    /// p99 latency, ms (< objective).
    pub p99_ms: Measure,
    /// Share of requests answered 5xx (< objective).
    pub error_rate: Measure,
    /// Every objective met.
    pub met: bool,
}

/// The SLA report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SlaReport {
    /// When measured (Nepal time).
    pub at: String,
    /// Per window, shortest first.
    pub windows: Vec<SlaWindow>,
}

fn latency(q: Option<u64>, objective: u64) -> Measure {
    Measure {
        value: q.map(|v| v as f64),
        objective: objective as f64,
        met: q.is_none_or(|v| v < objective),
    }
}

/// Judges one window's figures against the objectives.
pub fn judge(name: &str, w: &WindowStats) -> SlaWindow {
    let availability = w.availability();
    let error_rate = w.error_rate();
    let availability = Measure {
        value: Some(availability),
        objective: AVAILABILITY_OBJECTIVE,
        met: availability >= AVAILABILITY_OBJECTIVE,
    };
    let error_rate = Measure {
        value: Some(error_rate),
        objective: ERROR_RATE_OBJECTIVE,
        met: error_rate < ERROR_RATE_OBJECTIVE,
    };
    let p95_ms = latency(w.quantile_ms(0.95), P95_OBJECTIVE_MS);
    let p99_ms = latency(w.quantile_ms(0.99), P99_OBJECTIVE_MS);
    let met = availability.met && error_rate.met && p95_ms.met && p99_ms.met;
    SlaWindow {
        window: name.to_string(),
        requests: w.total,
        server_errors: w.errors,
        refused: w.refused,
        availability,
        p95_ms,
        p99_ms,
        error_rate,
        met,
    }
}

/// The report at `now` (epoch ms).
pub fn report(app: &App, now: i64) -> SlaReport {
    SlaReport {
        at: fmt_time(now),
        windows: WINDOWS
            .iter()
            .map(|(name, secs)| judge(name, &app.sla().window(now, *secs)))
            .collect(),
    }
}

/// The HTTP API's availability, p95/p99 latency and error rate over the last 5 minutes and
/// hour, each against its objective (staff; this process's measurements).
#[utoipa::path(get, path = "/sla", tag = "admin", responses((status = 200, body = SlaReport)))]
async fn get_sla(
    State(app): State<App>,
    principal: Principal,
) -> Result<axum::Json<SlaReport>, ApiError> {
    principal.require(STAFF)?;
    Ok(axum::Json(report(&app, app.clock().now_ms())))
}

/// Job: the minute check of service levels, breakers, dead letters and queue age.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CheckSla {}

impl Job for CheckSla {
    type Host = App;
    const KIND: &'static str = "ops.sla_check";
    const QUEUE: &'static str = "maintenance";
    const PRIORITY: Priority = Priority::Low;

    fn policy() -> RetryPolicy {
        RetryPolicy::sweep()
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        let now = ctx.app.clock().now_ms();
        let raised = check(&ctx.app, now).await?;
        if raised > 0 {
            tracing::warn!(raised, "sla check raised alerts");
        }
        Ok(())
    }
}

/// A stable subject id for a named thing without a row of its own (a breaker's provider):
/// FNV-1a over the name, as the UUID of those 128 bits.
fn named_subject(name: &str) -> Uuid {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in name.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    Uuid::from_u128(h)
}

/// The alerts the check would raise at `now`, before deduplication.
async fn findings(app: &App, now: i64) -> anyhow::Result<Vec<NewAlert<'static>>> {
    let mut out = Vec::new();
    let service = Uuid::nil();
    let (name, secs) = WINDOWS[0];
    let stats = app.sla().window(now, secs);
    let w = judge(name, &stats);
    if !(w.error_rate.met && w.p99_ms.met && w.availability.met) {
        out.push(NewAlert {
            kind: "sla_violation",
            severity: "critical",
            subject: "service",
            subject_id: service,
            message: format!(
                "HTTP API misses its SLA over {name}: error rate {:.2}%, p99 {} ms, availability {:.2}%",
                w.error_rate.value.unwrap_or_default() * 100.0,
                w.p99_ms.value.unwrap_or_default(),
                w.availability.value.unwrap_or_default() * 100.0
            ),
            detail: serde_json::to_value(&w)?,
            at_ms: now,
        });
    }
    if !w.p95_ms.met {
        out.push(NewAlert {
            kind: "latency_p95",
            severity: "warning",
            subject: "service",
            subject_id: service,
            message: format!(
                "HTTP API p95 latency {} ms over {name} (objective < {P95_OBJECTIVE_MS} ms)",
                w.p95_ms.value.unwrap_or_default()
            ),
            detail: json!({ "window": name, "p95_ms": w.p95_ms.value, "requests": w.requests }),
            at_ms: now,
        });
    }
    for (provider, state) in app.agents().breakers() {
        if state == khaacho_resilience::BreakerState::Open {
            out.push(NewAlert {
                kind: "breaker_open",
                severity: "critical",
                subject: "agent",
                subject_id: named_subject(provider),
                message: format!("circuit breaker of parser agent {provider} is open"),
                detail: json!({ "provider": provider }),
                at_ms: now,
            });
        }
    }
    let ops = &app.settings().ops;
    let stats = crate::queue::admin::stats(app.db()).await?;
    let dead: i64 = stats.dead.iter().map(|(_, n)| n).sum();
    if dead > ops.dead_letters_alert {
        out.push(NewAlert {
            kind: "dead_letters",
            severity: "critical",
            subject: "service",
            subject_id: service,
            message: format!(
                "{dead} dead jobs (threshold {}): see GET /api/v1/admin/jobs?status=dead",
                ops.dead_letters_alert
            ),
            detail: json!({ "dead": dead, "by_kind": stats.dead, "threshold": ops.dead_letters_alert }),
            at_ms: now,
        });
    }
    // A queue safe mode pauses is waiting on purpose, not behind.
    let oldest_ms = stats
        .ready
        .iter()
        .filter(|r| !app.mode().paused(&r.0))
        .map(|r| r.2)
        .max()
        .unwrap_or(0);
    if oldest_ms > ops.queue_age_alert_secs.saturating_mul(1000) {
        let oldest_secs = oldest_ms / 1000;
        let queue = stats
            .ready
            .iter()
            .filter(|r| !app.mode().paused(&r.0))
            .max_by_key(|r| r.2)
            .map(|r| r.0.clone())
            .unwrap_or_default();
        out.push(NewAlert {
            kind: "queue_age",
            severity: "warning",
            subject: "service",
            subject_id: service,
            message: format!(
                "oldest ready job of queue {queue} waited {oldest_secs} s (threshold {} s)",
                ops.queue_age_alert_secs
            ),
            detail: json!({ "queue": queue, "age_secs": oldest_secs, "threshold_secs": ops.queue_age_alert_secs }),
            at_ms: now,
        });
    }
    Ok(out)
}

/// Runs the check at `now`: raises each finding unless an unacknowledged alert of the same
/// kind and subject is open. Returns how many alerts were raised.
pub async fn check(app: &App, now: i64) -> anyhow::Result<usize> {
    app.mode().refresh(app.db()).await?;
    let mut raised = 0;
    for a in findings(app, now).await? {
        let mut tx = app.db().begin().await?;
        if !alerts::open_exists(&mut tx, a.kind, a.subject_id).await? {
            alerts::raise(&mut tx, &a).await?;
            raised += 1;
        }
        tx.commit().await?;
    }
    super::mode::evaluate(app, signals(app, now).await?, now).await?;
    Ok(raised)
}

/// What the degradation level is judged on at `now` (see `admin::mode`).
async fn signals(app: &App, now: i64) -> anyhow::Result<super::mode::Signals> {
    let (name, secs) = WINDOWS[0];
    let stats = app.sla().window(now, secs);
    let w = judge(name, &stats);
    let queue = crate::queue::admin::stats(app.db()).await?;
    let queue_age_ms = queue
        .ready
        .iter()
        .filter(|r| !app.mode().paused(&r.0))
        .map(|r| r.2)
        .max()
        .unwrap_or(0);
    Ok(super::mode::Signals {
        queue_age_ms,
        p95_ms: w.p95_ms.value,
        // The server's own refusals are not failures: counted, the refusals of `critical`
        // mode would hold it there while customers keep asking.
        error_rate: stats.failure_rate(),
    })
}
