//! The worker side of the queue: claim, run with a lease and heartbeats, finish or retry,
//! re-queue the jobs of dead workers, and drain gracefully on shutdown.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::json;
use sqlx::types::Json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};
use uuid::Uuid;

use super::{Handler, JobContext, JobError, NOTIFY_CHANNEL, QueueHost, Registry, backoff_ms};
use crate::base::db::{Backend, Db};
use crate::base::time::now_ms;
use crate::base::trace;
use crate::with_write;

/// A job row as claimed by a worker.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    id: Uuid,
    kind: String,
    payload: Json<serde_json::Value>,
    attempts: i32,
    max_attempts: i32,
    errors: Json<Vec<serde_json::Value>>,
    dedupe_key: Option<String>,
    correlation_id: Option<String>,
    trace_parent: Option<String>,
    run_at_ms: i64,
}

const CLAIM_PG: &str = "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, \
     locked_until_ms = $2, updated_at_ms = $3 \
     WHERE id IN (SELECT id FROM jobs WHERE queue = $4 AND status = 'queued' AND run_at_ms <= $3 \
                  ORDER BY priority DESC, run_at_ms LIMIT $5 FOR UPDATE SKIP LOCKED) \
     RETURNING id, kind, payload, attempts, max_attempts, errors, dedupe_key, correlation_id, trace_parent, run_at_ms";

// SQLite has one writer at a time, so the statement is atomic without row locks.
const CLAIM_SQLITE: &str = "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, \
     locked_until_ms = $2, updated_at_ms = $3 \
     WHERE id IN (SELECT id FROM jobs WHERE queue = $4 AND status = 'queued' AND run_at_ms <= $3 \
                  ORDER BY priority DESC, run_at_ms LIMIT $5) \
     RETURNING id, kind, payload, attempts, max_attempts, errors, dedupe_key, correlation_id, trace_parent, run_at_ms";

/// A running set of queue consumers in this process.
pub struct Workers<H> {
    app: H,
    registry: Arc<Registry<H>>,
    worker_id: String,
    tracker: TaskTracker,
}

impl<H: QueueHost> Workers<H> {
    /// Prepares consumers for every queue in `registry`.
    pub fn new(app: H, registry: Registry<H>) -> Self {
        let worker_id = format!("{}-{}", hostname(), Uuid::now_v7().simple());
        Self {
            app,
            registry: Arc::new(registry),
            worker_id,
            tracker: TaskTracker::new(),
        }
    }

    /// Runs until `shutdown` fires, then stops claiming, waits for in-flight jobs up to the
    /// configured grace period and releases whatever is still running.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let settings = self.app.queue_settings().clone();
        info!(worker_id = %self.worker_id, queues = ?self.registry.queues(), "workers starting");
        // Held until this function returns (or the process dies): other workers' reapers take
        // back this process's jobs as soon as it is gone.
        let _alive = super::liveness::register(self.app.db(), &self.worker_id).await;
        let mut loops = Vec::new();
        if let Backend::Pg(pool) = self.app.db().backend() {
            loops.push(tokio::spawn(listen_pg(
                pool.clone(),
                self.app.db().wake().clone(),
                shutdown.clone(),
            )));
        }
        loops.push(tokio::spawn(reaper(
            self.app.clone(),
            self.registry.clone(),
            shutdown.clone(),
        )));
        if self.app.db().needs_own_vacuum() && settings.vacuum_interval_ms > 0 {
            loops.push(tokio::spawn(vacuum(
                self.app.db().clone(),
                Duration::from_millis(settings.vacuum_interval_ms),
                shutdown.clone(),
            )));
        }
        for queue in self.registry.queues() {
            let consumer = Consumer {
                app: self.app.clone(),
                registry: self.registry.clone(),
                worker_id: self.worker_id.clone(),
                queue,
                slots: Arc::new(Semaphore::new(
                    self.registry.concurrency(queue, settings.concurrency),
                )),
                tracker: self.tracker.clone(),
            };
            loops.push(tokio::spawn(consumer.run(shutdown.clone())));
        }
        shutdown.cancelled().await;
        for l in loops {
            let _ = l.await;
        }
        self.tracker.close();
        let grace = Duration::from_millis(settings.shutdown_grace_ms);
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            let released = release_own(&self.app, &self.worker_id).await?;
            warn!(
                released,
                "shutdown grace period over: released in-flight jobs"
            );
        }
        info!(worker_id = %self.worker_id, "workers stopped");
        Ok(())
    }
}

struct Consumer<H> {
    app: H,
    registry: Arc<Registry<H>>,
    worker_id: String,
    queue: &'static str,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
}

impl<H: QueueHost> Consumer<H> {
    async fn run(self, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.app.queue_settings().poll_interval_ms);
        let wake = self.app.db().wake().of(self.queue);
        // Only a queue whose runs carry several jobs, arriving one by one, gains from waiting
        // for more.
        let linger = Some(Duration::from_millis(self.app.queue_settings().linger_ms)).filter(|l| {
            !l.is_zero()
                && self.registry.batch_size(self.queue) > 1
                && self.registry.lingers(self.queue)
        });
        // The last claim took every ready job: the next jobs arrive one by one, as work
        // trickles in, rather than from a backlog. So at start too (a backlog found then
        // waits one linger).
        let mut caught_up = true;
        while !shutdown.is_cancelled() {
            // Register for a wake-up before claiming so a commit in between is not missed.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.app.paused(self.queue) {
                tokio::select! { _ = tokio::time::sleep(poll) => {}, _ = shutdown.cancelled() => return }
                continue;
            }
            let first = tokio::select! {
                permit = self.slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
                _ = shutdown.cancelled() => return,
            };
            if let Some(linger) = linger.filter(|_| caught_up) {
                // Let the jobs arriving about now gather into one run (see
                // `QueueSettings::linger_ms`).
                tokio::select! { _ = tokio::time::sleep(linger) => {}, _ = shutdown.cancelled() => return }
            }
            // Waiting for a slot or lingering, the queue may have been paused (safe mode
            // switched on): a job enqueued since must wait, not be claimed on the word of the
            // check above.
            if self.app.paused(self.queue) {
                drop(first);
                continue;
            }
            let free = self.slots.available_permits() + 1;
            let batch = self.registry.batch_size(self.queue);
            let claimed = match claim(
                &self.app,
                &self.worker_id,
                self.queue,
                (free * batch) as i64,
            )
            .await
            {
                Ok(jobs) => jobs,
                Err(e) => {
                    error!(queue = self.queue, error = %e, "claiming jobs failed");
                    drop(first);
                    tokio::select! { _ = tokio::time::sleep(poll) => {}, _ = shutdown.cancelled() => return }
                    continue;
                }
            };
            let drained = claimed.len() < free * batch;
            caught_up = drained;
            let mut first = Some(first);
            for unit in group(claimed, batch) {
                let permit = match first.take() {
                    Some(p) => p,
                    None => match self.slots.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                let app = self.app.clone();
                let registry = self.registry.clone();
                let worker_id = self.worker_id.clone();
                self.tracker.spawn(async move {
                    run_unit(app, registry, worker_id, unit).await;
                    drop(permit);
                });
            }
            drop(first);
            if drained {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Runs ready jobs of every queue one at a time in this task until none is ready; returns
/// how many ran. For tests and one-off CLI use: deterministic, no background tasks.
pub async fn drain<H: QueueHost>(app: &H, registry: &Registry<H>) -> Result<usize, sqlx::Error> {
    let registry = Arc::new(registry.clone());
    let worker_id = format!("drain-{}", Uuid::now_v7().simple());
    let mut ran = 0;
    loop {
        let mut any = false;
        for queue in registry.queues() {
            if app.paused(queue) {
                continue;
            }
            let claimed = claim(app, &worker_id, queue, registry.batch_size(queue) as i64).await?;
            ran += claimed.len();
            any |= !claimed.is_empty();
            for unit in group(claimed, registry.batch_size(queue)) {
                run_unit(app.clone(), registry.clone(), worker_id.clone(), unit).await;
            }
        }
        if !any {
            return Ok(ran);
        }
    }
}

/// Splits claimed jobs into runs: batches of one kind (at most `batch` jobs) when the kind
/// supports batching, else one job per run.
fn group(claimed: Vec<Claimed>, batch: usize) -> Vec<Vec<Claimed>> {
    if batch <= 1 {
        return claimed.into_iter().map(|j| vec![j]).collect();
    }
    let mut by_kind: Vec<(String, Vec<Claimed>)> = Vec::new();
    for job in claimed {
        match by_kind.iter_mut().find(|(k, _)| *k == job.kind) {
            Some((_, jobs)) => jobs.push(job),
            None => by_kind.push((job.kind.clone(), vec![job])),
        }
    }
    let mut units = Vec::new();
    for (_, mut jobs) in by_kind {
        while !jobs.is_empty() {
            let rest = jobs.split_off(jobs.len().min(batch));
            units.push(std::mem::replace(&mut jobs, rest));
        }
    }
    units
}

/// Runs one unit of work: a single job, or a batch that falls back to single runs if it fails.
async fn run_unit<H: QueueHost>(
    app: H,
    registry: Arc<Registry<H>>,
    worker_id: String,
    mut unit: Vec<Claimed>,
) {
    if unit.len() == 1 {
        if let Some(job) = unit.pop() {
            execute(app, registry, worker_id, job).await;
        }
        return;
    }
    let Some((_, run_batch)) = unit
        .first()
        .and_then(|j| registry.get(&j.kind))
        .and_then(|h| h.batch.clone())
    else {
        for job in unit {
            execute(app.clone(), registry.clone(), worker_id.clone(), job).await;
        }
        return;
    };
    let kind = unit[0].kind.clone();
    let ids: Vec<Uuid> = unit.iter().map(|j| j.id).collect();
    let span = info_span!("job_batch", kind = %kind, jobs = unit.len());
    // Each job of the batch shows in its own request's trace as a span linked to the batch
    // (which links back to it); jobs the batch enqueues for a request continue from there.
    let (job_spans, parents) = job_spans_of(&unit, &span);
    let completed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ctx = JobContext {
        app: app.clone(),
        job_id: ids[0],
        job_ids: ids.clone(),
        correlation_id: None,
        attempt: unit.iter().map(|j| j.attempts).max().unwrap_or(1),
        worker_id: worker_id.clone(),
        completed: completed.clone(),
        registry: Some(registry.clone()),
    };
    metrics::counter!("khaacho_jobs_started_total", "kind" => kind.clone())
        .increment(unit.len() as u64);
    metrics::histogram!("khaacho_job_batch_size", "kind" => kind.clone()).record(unit.len() as f64);
    let started = Instant::now();
    let timeout = registry
        .get(&kind)
        .map_or(Duration::from_secs(60), |h| h.policy.timeout);
    let beat = tokio::spawn(heartbeat(app.clone(), worker_id.clone(), ids));
    let payloads = unit.iter().map(|j| j.payload.0.clone()).collect();
    let run =
        AssertUnwindSafe(trace::with_parents(parents, run_batch(ctx, payloads))).catch_unwind();
    let outcome = tokio::time::timeout(timeout, run).instrument(span).await;
    beat.abort();
    drop(job_spans);
    let ok =
        matches!(outcome, Ok(Ok(Ok(())))) && completed.load(std::sync::atomic::Ordering::Acquire);
    if ok {
        let per_job = started.elapsed().as_secs_f64() / unit.len() as f64;
        for _ in &unit {
            metrics::histogram!("khaacho_job_duration_seconds", "kind" => kind.clone())
                .record(per_job);
        }
        metrics::counter!("khaacho_jobs_succeeded_total", "kind" => kind)
            .increment(unit.len() as u64);
        return;
    }
    let why = match outcome {
        Ok(Ok(Err(e))) => e.to_string(),
        Ok(Ok(Ok(()))) => "the batch did not complete its jobs".into(),
        Ok(Err(_)) => "the batch panicked".into(),
        Err(_) => format!("the batch timed out after {timeout:?}"),
    };
    warn!(kind = %kind, jobs = unit.len(), error = %why, "batch failed; running its jobs one by one");
    metrics::counter!("khaacho_job_batch_fallbacks_total", "kind" => kind).increment(1);
    for job in unit {
        execute(app.clone(), registry.clone(), worker_id.clone(), job).await;
    }
}

/// For a batch's traced jobs: a `job` span per job, a child of the span that enqueued it and
/// linked both ways with the batch's span, and the request id → `traceparent` of those spans
/// (for [`trace::with_parents`]). Empty when traces are not exported.
fn job_spans_of(
    unit: &[Claimed],
    batch: &tracing::Span,
) -> (
    Vec<tracing::Span>,
    std::collections::HashMap<String, String>,
) {
    let mut spans = Vec::new();
    let mut parents = std::collections::HashMap::new();
    if !trace::enabled() {
        return (spans, parents);
    }
    let batch_parent = trace::traceparent_of(batch);
    for job in unit {
        let Some(parent) = job.trace_parent.as_deref() else {
            continue;
        };
        let span = info_span!(parent: None, "job", job_id = %job.id, kind = %job.kind,
            attempt = job.attempts, request_id = job.correlation_id.as_deref().unwrap_or(""));
        trace::continue_from(&span, Some(parent), None);
        if let Some(b) = &batch_parent {
            trace::link(&span, b);
        }
        trace::link(batch, parent);
        if let (Some(request), Some(own)) = (&job.correlation_id, trace::traceparent_of(&span)) {
            parents.insert(request.clone(), own);
        }
        spans.push(span);
    }
    (spans, parents)
}

async fn claim<H: QueueHost>(
    app: &H,
    worker_id: &str,
    queue: &str,
    n: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let now = now_ms();
    let lease_until = now + app.queue_settings().lease_ms;
    let sql = if app.db().is_postgres() {
        CLAIM_PG
    } else {
        CLAIM_SQLITE
    };
    with_write!(app.db(), c => sqlx::query_as::<_, Claimed>(sql)
        .bind(worker_id)
        .bind(lease_until)
        .bind(now)
        .bind(queue)
        .bind(n)
        .fetch_all(c)
        .await)
}

async fn execute<H: QueueHost>(
    app: H,
    registry: Arc<Registry<H>>,
    worker_id: String,
    job: Claimed,
) {
    let span = info_span!("job", job_id = %job.id, kind = %job.kind, attempt = job.attempts,
        request_id = job.correlation_id.as_deref().unwrap_or(""));
    trace::continue_from(&span, job.trace_parent.as_deref(), None);
    async move {
        let kind = job.kind.clone();
        let Some(handler) = registry.get(&kind).cloned() else {
            let err = JobError::Permanent(anyhow::anyhow!("no handler registered for job kind {kind}"));
            finish_failed(&app, &worker_id, job, None, err).await;
            return;
        };
        let metric_kind = kind.clone();
        metrics::counter!("khaacho_jobs_started_total", "kind" => metric_kind.clone()).increment(1);
        let waited = (now_ms() - job.run_at_ms).max(0) as f64 / 1000.0;
        metrics::histogram!("khaacho_job_wait_seconds", "kind" => metric_kind.clone()).record(waited);
        let ctx = JobContext {
            app: app.clone(),
            job_id: job.id,
            job_ids: vec![job.id],
            correlation_id: job.correlation_id.clone(),
            attempt: job.attempts,
            worker_id: worker_id.clone(),
            completed: Arc::default(),
            registry: Some(registry.clone()),
        };
        let started = Instant::now();
        let heartbeat = tokio::spawn(heartbeat(app.clone(), worker_id.clone(), vec![job.id]));
        let completed = ctx.completed.clone();
        let run = AssertUnwindSafe((handler.run)(ctx, job.payload.0.clone())).catch_unwind();
        let outcome = match tokio::time::timeout(handler.policy.timeout, run).await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => Err(JobError::Retryable(anyhow::anyhow!("job panicked: {}", panic_message(&panic)))),
            Err(_) => Err(JobError::Retryable(anyhow::anyhow!("job timed out after {:?}", handler.policy.timeout))),
        };
        heartbeat.abort();
        metrics::histogram!("khaacho_job_duration_seconds", "kind" => metric_kind.clone())
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => {
                metrics::counter!("khaacho_jobs_succeeded_total", "kind" => metric_kind).increment(1);
                if completed.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                if let Err(e) = finish_ok(&app, &worker_id, &job).await {
                    error!(error = %e, "could not mark job done; it will run again after its lease");
                }
            }
            Err(err) => finish_failed(&app, &worker_id, job, Some(&handler), err).await,
        }
    }
    .instrument(span)
    .await
}

async fn heartbeat<H: QueueHost>(app: H, worker_id: String, ids: Vec<Uuid>) {
    let every = Duration::from_millis(app.queue_settings().heartbeat_ms);
    let lease = app.queue_settings().lease_ms;
    loop {
        tokio::time::sleep(every).await;
        let now = now_ms();
        let res = with_write!(app.db(), c => {
            let mut qb = sqlx::QueryBuilder::new("UPDATE jobs SET locked_until_ms = ");
            qb.push_bind(now + lease).push(" WHERE locked_by = ").push_bind(&worker_id);
            qb.push(" AND status = 'running' AND");
            crate::base::db::push_ids(&mut qb, "id", &ids);
            qb.build().execute(c).await.map(|r| r.rows_affected())
        });
        if let Err(e) = res {
            warn!(jobs = ids.len(), error = %e, "heartbeat failed");
        }
    }
}

async fn finish_ok<H: QueueHost>(
    app: &H,
    worker_id: &str,
    job: &Claimed,
) -> Result<(), sqlx::Error> {
    let mut tx = app.db().begin().await?;
    crate::with_tx!(tx, c => sqlx::query("DELETE FROM jobs WHERE id = $1 AND locked_by = $2")
        .bind(job.id)
        .bind(worker_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    if job
        .dedupe_key
        .as_deref()
        .is_some_and(|k| k.starts_with(super::schedule::DEDUPE_PREFIX))
    {
        crate::with_tx!(tx, c => sqlx::query("UPDATE schedule_ticks SET done_at_ms = $1 WHERE job_id = $2")
            .bind(now_ms())
            .bind(job.id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
    }
    tx.commit().await
}

async fn finish_failed<H: QueueHost>(
    app: &H,
    worker_id: &str,
    job: Claimed,
    handler: Option<&Handler<H>>,
    err: JobError,
) {
    let message = err.to_string();
    let permanent = matches!(err, JobError::Permanent(_));
    let dead = permanent || job.attempts >= job.max_attempts;
    let now = now_ms();
    let mut history = job.errors.0.clone();
    history.push(json!({ "attempt": job.attempts, "at_ms": now, "error": message }));
    let q = app.queue_settings().clone();
    let (status, run_at) = if dead {
        ("dead", now)
    } else {
        (
            "queued",
            now + backoff_ms(job.attempts, q.backoff_base_ms, q.backoff_cap_ms),
        )
    };
    let res = with_write!(app.db(), c => sqlx::query(
        "UPDATE jobs SET status = $1, run_at_ms = $2, locked_by = NULL, locked_until_ms = NULL, \
         last_error = $3, errors = $4, updated_at_ms = $5 WHERE id = $6 AND locked_by = $7")
        .bind(status)
        .bind(run_at)
        .bind(&message)
        .bind(Json(&history))
        .bind(now)
        .bind(job.id)
        .bind(worker_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()));
    let kind = job.kind.clone();
    match res {
        Ok(1) => {}
        Ok(_) => {
            warn!(error = %message, "job failed after its lease was taken over; leaving it to the new owner");
            return;
        }
        Err(e) => {
            error!(error = %e, job_error = %message, "could not record job failure; the lease will expire");
            return;
        }
    }
    metrics::counter!("khaacho_jobs_failed_total", "kind" => kind.clone()).increment(1);
    if dead {
        metrics::counter!("khaacho_jobs_dead_total", "kind" => kind.clone()).increment(1);
        error!(error = %message, attempts = job.attempts, "job is dead");
        if let Some(h) = handler {
            run_on_dead(app, h, &job, message).await;
        }
    } else {
        metrics::counter!("khaacho_jobs_retried_total", "kind" => kind).increment(1);
        warn!(error = %message, retry_at_ms = run_at, "job failed; will retry");
    }
}

async fn run_on_dead<H: QueueHost>(app: &H, handler: &Handler<H>, job: &Claimed, message: String) {
    let ctx = JobContext {
        app: app.clone(),
        job_id: job.id,
        job_ids: vec![job.id],
        correlation_id: job.correlation_id.clone(),
        attempt: job.attempts,
        worker_id: String::new(),
        completed: Arc::default(),
        registry: None,
    };
    if let Err(e) = (handler.on_dead)(ctx, job.payload.0.clone(), message).await {
        error!(error = %e, "dead-letter hook failed");
    }
}

/// Re-queues the jobs of dead workers (see [`reap_expired`]), or declares them dead when
/// they used up their attempts.
async fn reaper<H: QueueHost>(app: H, registry: Arc<Registry<H>>, shutdown: CancellationToken) {
    let every = Duration::from_millis(app.queue_settings().reaper_interval_ms);
    loop {
        tokio::select! { _ = tokio::time::sleep(every) => {}, _ = shutdown.cancelled() => return }
        match reap_expired(&app, &registry).await {
            Ok(0) => {}
            Ok(n) => warn!(count = n, "re-queued jobs with expired leases"),
            Err(e) => error!(error = %e, "reaper failed"),
        }
    }
}

/// On a PostgreSQL server without autovacuum, vacuums `jobs` every `every`: each step
/// inserts and deletes job rows, and nothing else would clear their dead index entries,
/// which every claim then walks. `SKIP_LOCKED`: when another worker is vacuuming it, this
/// pass is skipped rather than queued behind it.
async fn vacuum(db: Db, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! { _ = tokio::time::sleep(every) => {}, _ = shutdown.cancelled() => return }
        if let Err(e) = vacuum_jobs(&db).await {
            warn!(error = %e, "vacuuming jobs failed");
        }
    }
}

/// One pass of the vacuum (PostgreSQL; nothing on SQLite, whose deleted pages are reused).
pub async fn vacuum_jobs(db: &Db) -> Result<(), sqlx::Error> {
    if let Backend::Pg(pool) = db.backend() {
        // VACUUM cannot run in a transaction block: the simple protocol, one statement.
        // TRUNCATE false: giving the table's empty end back to the filesystem needs an
        // exclusive lock, which stops every claim while it is held and, when busy workers
        // keep it from being taken, is retried for 5 s per pass; the queue reuses the space.
        sqlx::raw_sql("VACUUM (SKIP_LOCKED, TRUNCATE false) jobs")
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// One pass of the reaper; returns how many jobs it took back: first the jobs of worker
/// processes that are gone (their liveness token is free and their heartbeats stopped), at
/// once, then any job whose lease expired.
pub async fn reap_expired<H: QueueHost>(
    app: &H,
    registry: &Registry<H>,
) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    let q = app.queue_settings();
    // A live worker beats every heartbeat_ms, moving locked_until_ms to now + lease_ms; a job
    // whose last beat is two intervals old belongs to a worker that stopped beating.
    let stale_below = now + q.lease_ms - 2 * q.heartbeat_ms as i64;
    let mut taken = 0;
    let silent: Vec<String> = with_write!(app.db(), c => sqlx::query_scalar(
        "SELECT DISTINCT locked_by FROM jobs WHERE status = 'running' AND locked_until_ms < $1 \
         AND locked_by IS NOT NULL")
        .bind(stale_below)
        .fetch_all(c)
        .await)?;
    for worker in super::liveness::gone(app.db(), silent).await? {
        let jobs = with_write!(app.db(), c => sqlx::query_as::<_, Claimed>(
            "SELECT id, kind, payload, attempts, max_attempts, errors, dedupe_key, correlation_id, trace_parent, run_at_ms \
             FROM jobs WHERE status = 'running' AND locked_by = $1 AND locked_until_ms < $2 LIMIT 500")
            .bind(&worker)
            .bind(stale_below)
            .fetch_all(c)
            .await)?;
        let n = requeue(app, registry, jobs, Taken::WorkerGone(&worker, stale_below)).await?;
        if n > 0 {
            warn!(worker = %worker, count = n, "re-queued the jobs of a worker process that is gone");
        }
        taken += n;
        super::liveness::forget(app.db(), &worker);
    }
    let expired = with_write!(app.db(), c => sqlx::query_as::<_, Claimed>(
        "SELECT id, kind, payload, attempts, max_attempts, errors, dedupe_key, correlation_id, trace_parent, run_at_ms \
         FROM jobs WHERE status = 'running' AND locked_until_ms < $1 LIMIT 500")
        .bind(now)
        .fetch_all(c)
        .await)?;
    taken += requeue(app, registry, expired, Taken::LeaseExpired(now)).await?;
    if taken > 0 {
        app.db().wake().wake_all();
    }
    Ok(taken)
}

/// Why the reaper takes a job back, and the condition that must still hold when it does.
enum Taken<'a> {
    /// The lease ran out before this time.
    LeaseExpired(i64),
    /// The worker is gone and its last heartbeat moved the lease below this bound.
    WorkerGone(&'a str, i64),
}

/// Re-queues (or declares dead, when their attempts are used up) `jobs`, each only if it is
/// still as the reaper saw it (so a job finished or taken over meanwhile is left alone).
async fn requeue<H: QueueHost>(
    app: &H,
    registry: &Registry<H>,
    jobs: Vec<Claimed>,
    why: Taken<'_>,
) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    let (message, worker, bound) = match why {
        Taken::LeaseExpired(at) => (
            "lease expired: the worker stopped without finishing",
            None,
            at,
        ),
        Taken::WorkerGone(w, below) => (
            "lease revoked: the worker process is gone (its liveness lock was released)",
            Some(w),
            below,
        ),
    };
    let mut taken = 0;
    for job in jobs {
        let mut history = job.errors.0.clone();
        history.push(json!({ "attempt": job.attempts, "at_ms": now, "error": message }));
        let dead = job.attempts >= job.max_attempts;
        let res = with_write!(app.db(), c => sqlx::query(
            "UPDATE jobs SET status = $1, locked_by = NULL, locked_until_ms = NULL, last_error = $2, \
             errors = $3, updated_at_ms = $4, run_at_ms = $4 \
             WHERE id = $5 AND status = 'running' AND locked_until_ms < $6 \
             AND ($7 IS NULL OR locked_by = $7)")
            .bind(if dead { "dead" } else { "queued" })
            .bind(message)
            .bind(Json(&history))
            .bind(now)
            .bind(job.id)
            .bind(bound)
            .bind(worker)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        if res == 0 {
            continue;
        }
        taken += 1;
        metrics::counter!("khaacho_jobs_lease_expired_total", "kind" => job.kind.clone())
            .increment(1);
        if dead {
            metrics::counter!("khaacho_jobs_dead_total", "kind" => job.kind.clone()).increment(1);
            if let Some(h) = registry.get(&job.kind) {
                run_on_dead(app, h, &job, message.to_string()).await;
            }
        }
    }
    Ok(taken)
}

async fn release_own<H: QueueHost>(app: &H, worker_id: &str) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    with_write!(app.db(), c => sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = attempts - 1, locked_by = NULL, \
         locked_until_ms = NULL, run_at_ms = $1, updated_at_ms = $1 \
         WHERE locked_by = $2 AND status = 'running'")
        .bind(now)
        .bind(worker_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
}

async fn listen_pg(
    pool: sqlx::PgPool,
    wake: Arc<crate::base::db::Wakes>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "LISTEN connection failed; polling meanwhile");
                tokio::select! { _ = tokio::time::sleep(Duration::from_secs(2)) => continue, _ = shutdown.cancelled() => return }
            }
        };
        if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
            warn!(error = %e, "LISTEN failed; polling meanwhile");
            continue;
        }
        loop {
            tokio::select! {
                msg = listener.recv() => match msg {
                    Ok(n) => wake.from_notification(n.payload()),
                    Err(e) => { warn!(error = %e, "LISTEN connection lost"); break; }
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid{}", std::process::id()))
}
