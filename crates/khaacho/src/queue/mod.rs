//! The job queue: rows in the `jobs` table of the system of record.
//!
//! Work is enqueued in the caller's transaction ([`enqueue`]), so a business write and the
//! job that carries it on commit together or not at all. Workers claim jobs with
//! `FOR UPDATE SKIP LOCKED` (PostgreSQL) or an atomic `UPDATE … RETURNING` (SQLite), hold a
//! lease extended by heartbeats, and either delete the job (success), schedule a retry with
//! capped exponential backoff and full jitter, or move it to the dead-letter state with its
//! whole error history. See `runtime` for the worker loop and `schedule` for recurring jobs.

pub mod admin;
pub(crate) mod liveness;
pub mod runtime;
pub mod schedule;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::base::db::{Db, JobRow, Tx, insert_job_rows, push_ids};
use crate::base::time::now_ms;
use crate::base::trace;
use crate::with_tx;

/// The PostgreSQL channel that carries wake-ups (announced after commit by the database
/// handle; the payload is empty).
pub const NOTIFY_CHANNEL: &str = crate::base::db::JOBS_CHANNEL;

/// Job priority within a queue; higher runs first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Background chores.
    Low = 0,
    /// The default.
    Normal = 1,
    /// Latency-sensitive work.
    High = 2,
}

/// How a job type is retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Claims before the job is declared dead.
    pub max_attempts: i32,
    /// Time budget of one run; exceeding it counts as a retryable failure.
    pub timeout: std::time::Duration,
}

impl RetryPolicy {
    /// For a recurring job that walks a whole table (every account, vendor, product) in
    /// short transactions: time for a large book, a few attempts.
    pub fn sweep() -> Self {
        Self {
            max_attempts: 5,
            timeout: std::time::Duration::from_secs(30 * 60),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Why a job run failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (after backoff) if attempts remain.
    #[error("{0:#}")]
    Retryable(anyhow::Error),
    /// Retrying cannot help (bad payload, a rule that will not change): dead at once.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Retryable(e)
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Retryable(e.into())
    }
}

/// What the queue needs from the application its jobs run with. The queue is generic over
/// it so that it imports nothing above the floor; the application's handle implements it
/// (`crate::app::App`) and every job names it as its [`Job::Host`].
pub trait QueueHost: Clone + Send + Sync + 'static {
    /// The database holding the `jobs` table.
    fn db(&self) -> &Db;
    /// Leases, polling, backoff and drain settings.
    fn queue_settings(&self) -> &QueueSettings;
    /// Whether `queue` is paused: its consumers claim nothing until it is not (its jobs
    /// wait, in their order).
    fn paused(&self, _queue: &str) -> bool {
        false
    }
}

/// Job queue tuning knobs.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default)]
pub struct QueueSettings {
    /// Jobs one worker process runs at once (per queue).
    pub concurrency: usize,
    /// Lease length; a job whose worker stops heart-beating is re-queued after it at the
    /// latest.
    pub lease_ms: i64,
    /// How often a running job extends its lease. A job whose worker process is gone (its
    /// liveness token is free, see `liveness`) is re-queued once it missed two heartbeats.
    pub heartbeat_ms: u64,
    /// How often the reaper looks for jobs of gone workers and expired leases.
    pub reaper_interval_ms: u64,
    /// Fallback polling interval (wake-ups normally come by LISTEN/NOTIFY or in-process).
    pub poll_interval_ms: u64,
    /// A queue whose jobs run in batches, woken after its last claim found it empty, waits
    /// this long before claiming, so the jobs arriving together run as one batch (0: claim
    /// at once). A batch costs about the same few statements whatever its size: claimed one
    /// at a time, as they arrive at a few hundred orders a second, the pipeline's steps and
    /// the order-change consumers cost several times the database work per order that they
    /// cost under a backlog. A queue with a backlog never waits.
    pub linger_ms: u64,
    /// First retry delay ceiling.
    pub backoff_base_ms: i64,
    /// Largest retry delay ceiling.
    pub backoff_cap_ms: i64,
    /// On SIGTERM, how long in-flight jobs may run before they are released.
    pub shutdown_grace_ms: u64,
    /// PostgreSQL without autovacuum: how often each worker process vacuums `jobs` (0:
    /// never). Every step inserts and deletes job rows; unvacuumed, their dead index
    /// entries slow every claim (measured: capacity 805/s instead of 1,224/s).
    pub vacuum_interval_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            // A crashed worker's jobs come back through its liveness token within about
            // 2 heartbeats + 1 reaper pass; the lease is the fallback when that cannot tell
            // (a worker without a token, a hung process).
            lease_ms: 10_000,
            heartbeat_ms: 2_000,
            reaper_interval_ms: 1_000,
            poll_interval_ms: 1_000,
            linger_ms: 20,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 600_000,
            shutdown_grace_ms: 10_000,
            vacuum_interval_ms: 5_000,
        }
    }
}

/// A typed job: a serde payload with a kind, a queue, a priority and a retry policy.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What the job runs with (the application handle).
    type Host: QueueHost;
    /// Stable name stored in `jobs.kind`.
    const KIND: &'static str;
    /// Queue the job is consumed from.
    const QUEUE: &'static str = "default";
    /// Default priority.
    const PRIORITY: Priority = Priority::Normal;
    /// Most runs (single jobs, or batches of a [`BatchJob`]) of this kind at once in one
    /// process; the queue's consumer takes the lowest of its kinds (and `queue.concurrency`
    /// still applies when lower). Kinds whose batches write the same rows (accounts,
    /// counters) wait on each other's row locks when run side by side: a low bound lets
    /// their batches grow under load instead, one long transaction doing the work of many
    /// short ones that would queue behind each other. Background kinds bounded this way
    /// also leave the CPU to the requests the process answers.
    const CONCURRENCY: usize = usize::MAX;

    /// Retry policy of this kind.
    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// Does the work. Must be idempotent: a retried run finds its own earlier effect.
    fn run(self, ctx: JobContext<Self::Host>) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Called once, in its own transaction, when the job has gone dead, so the business
    /// object it carried can record the failure.
    fn on_dead(
        self,
        _ctx: JobContext<Self::Host>,
        _error: String,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }
}

/// A job kind whose ready jobs a worker may run several at a time in one call, so one
/// transaction carries many of them. If a batch fails, the runtime runs each of its jobs
/// alone (through [`Job::run`]), so one bad job cannot hold back the others and retries and
/// dead-lettering stay per job.
pub trait BatchJob: Job {
    /// Most jobs per call.
    const MAX_BATCH: usize;

    /// Whether the queue's consumer, woken after it caught up, waits `queue.linger_ms` for
    /// more jobs before claiming (see `QueueSettings::linger_ms`). `false` for a step whose
    /// jobs are enqueued together by the batch of the step before it: they arrive as a
    /// batch already, and waiting would only add the linger to every order's way.
    const LINGER: bool = true;

    /// Runs `jobs` (all of this kind); like `run`, it must be idempotent and should end with
    /// [`JobContext::complete_in`].
    fn run_batch(
        jobs: Vec<Self>,
        ctx: JobContext<Self::Host>,
    ) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// What a running job may use: the application services, plus the job's own metadata.
#[derive(Clone)]
pub struct JobContext<H> {
    /// The application (database, settings, caches).
    pub app: H,
    /// Id of the job row (the first one, for a batch).
    pub job_id: Uuid,
    /// Every job this run carries (one, or a batch of one kind).
    pub(crate) job_ids: Vec<Uuid>,
    /// Request id of the HTTP call that caused this work, if any.
    pub correlation_id: Option<String>,
    /// 1 on the first run.
    pub attempt: i32,
    /// The worker holding the lease.
    pub(crate) worker_id: String,
    /// Set once the job row was deleted inside the handler's own transaction.
    pub(crate) completed: Arc<std::sync::atomic::AtomicBool>,
    /// The kinds the running worker runs (none for a dead-letter hook): see [`Self::runs`].
    pub(crate) registry: Option<Arc<Registry<H>>>,
}

impl<H> JobContext<H> {
    /// Whether the worker running this job runs jobs of kind `J` too. A step whose next step
    /// needs no outside call may then do that step's work itself, in its own transaction,
    /// instead of enqueuing it for a later run; a worker without `J` (a deployment that
    /// runs it elsewhere, a test that stops before it) gets the job enqueued as before.
    pub fn runs<J: Job<Host = H>>(&self) -> bool {
        self.registry
            .as_ref()
            .is_some_and(|r| r.handlers.contains_key(J::KIND))
    }

    /// Deletes this run's jobs inside the handler's transaction, so the step's effect and the
    /// end of the job commit together (one commit per step instead of two). Call it anywhere
    /// in the transaction (early keeps it out of any row locks the handler takes later); if
    /// the transaction rolls back the jobs stay leased and run again. Scheduled jobs (with a dedupe key) are left to the runtime, which marks their tick.
    pub async fn complete_in(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        // A generic plan made while `jobs` was nearly empty would scan the whole table on
        // every completion once a backlog had built up: hence statements planned per call
        // on a server without autovacuum (`base::db::plan_mode`); with it, its ANALYZE of
        // the busy `jobs` table replaces the plan.
        let deleted = with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new("DELETE FROM jobs WHERE locked_by = ");
            qb.push_bind(&self.worker_id).push(" AND dedupe_key IS NULL AND");
            push_ids(&mut qb, "id", &self.job_ids);
            qb.build().execute(&mut *c).await?.rows_affected()
        });
        if deleted == self.job_ids.len() as u64 {
            self.completed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }
}

/// Options of one enqueue beyond the job's defaults.
#[derive(Clone, Debug, Default)]
pub struct EnqueueOptions {
    /// Run no earlier than this time (epoch ms).
    pub run_at_ms: Option<i64>,
    /// Overrides the job kind's priority.
    pub priority: Option<Priority>,
    /// A second enqueue with the same key is ignored while the first job exists.
    pub dedupe_key: Option<String>,
    /// Request id to carry into the job's logs.
    pub correlation_id: Option<String>,
    /// The W3C `traceparent` the job's span continues; unset, the enqueue takes it from
    /// `crate::base::trace::parent_for` (the request's span in this task, else the
    /// current span) while traces are exported.
    pub trace_parent: Option<String>,
}

/// Adds a job in the caller's transaction. Returns `None` when a job with the same dedupe
/// key already exists.
pub async fn enqueue<J: Job>(
    tx: &mut Tx,
    job: &J,
    opts: EnqueueOptions,
) -> Result<Option<Uuid>, sqlx::Error> {
    let (ids, inserted) = enqueue_batch(tx, &[(job, opts)]).await?;
    Ok(ids.into_iter().next().filter(|_| inserted == 1))
}

/// Adds many jobs of one kind in the caller's transaction. Returns the generated ids and how
/// many rows were inserted (dedupe conflicts are skipped).
///
/// Jobs without a dedupe key cannot conflict (their ids are new), so they wait in the
/// transaction and are inserted just before it commits, with every other such job it
/// enqueued, in one statement (per 1,000 jobs): a transaction that enqueues several kinds —
/// an intake batch's validations and its `order.changed` — pays one round trip for them, not
/// one per kind. Jobs with a key are inserted at once, so the caller learns whether the key
/// was free.
pub async fn enqueue_batch<J: Job>(
    tx: &mut Tx,
    jobs: &[(&J, EnqueueOptions)],
) -> Result<(Vec<Uuid>, u64), sqlx::Error> {
    let now = now_ms();
    let rows = jobs
        .iter()
        .map(|(job, opts)| job_row(*job, opts, now))
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let inserted = if rows.iter().all(|r| r.dedupe_key.is_none()) {
        let n = rows.len() as u64;
        tx.defer_jobs(rows);
        n
    } else {
        insert_job_rows(tx, &rows).await?
    };
    if inserted > 0 {
        // Consumers here and in other processes are woken after the commit.
        tx.mark_enqueued(J::QUEUE);
        count_enqueued(J::KIND, inserted);
    }
    Ok((ids, inserted))
}

/// The row of `job` enqueued with `opts` at `now`: a new id, the kind's queue and policy,
/// the request's trace continued. For [`enqueue_batch`] and for writers that insert the rows
/// themselves inside a statement of their own (the PostgreSQL intake); those count them in
/// [`count_enqueued`] and wake the queue after their commit
/// ([`Db::after_commit`](crate::base::db::Db::after_commit)).
pub(crate) fn job_row<J: Job>(
    job: &J,
    opts: &EnqueueOptions,
    now: i64,
) -> Result<JobRow, sqlx::Error> {
    let payload = serde_json::to_value(job).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let trace_parent = opts
        .trace_parent
        .clone()
        .or_else(|| trace::parent_for(opts.correlation_id.as_deref()));
    Ok(JobRow {
        id: Uuid::now_v7(),
        queue: J::QUEUE,
        kind: J::KIND,
        payload,
        priority: opts.priority.unwrap_or(J::PRIORITY) as i32,
        run_at_ms: opts.run_at_ms.unwrap_or(now),
        max_attempts: J::policy().max_attempts,
        dedupe_key: opts.dedupe_key.clone(),
        correlation_id: opts.correlation_id.clone(),
        trace_parent,
        at_ms: now,
    })
}

/// Counts `n` jobs of `kind` as enqueued (`khaacho_jobs_enqueued_total`).
pub(crate) fn count_enqueued(kind: &'static str, n: u64) {
    metrics::counter!("khaacho_jobs_enqueued_total", "kind" => kind).increment(n);
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type RunFn<H> =
    Arc<dyn Fn(JobContext<H>, serde_json::Value) -> BoxFut<Result<(), JobError>> + Send + Sync>;
type BatchFn<H> = Arc<
    dyn Fn(JobContext<H>, Vec<serde_json::Value>) -> BoxFut<Result<(), JobError>> + Send + Sync,
>;
type DeadFn<H> = Arc<
    dyn Fn(JobContext<H>, serde_json::Value, String) -> BoxFut<anyhow::Result<()>> + Send + Sync,
>;

/// How the runtime runs one kind.
pub struct Handler<H> {
    pub(crate) queue: &'static str,
    pub(crate) policy: RetryPolicy,
    pub(crate) run: RunFn<H>,
    pub(crate) on_dead: DeadFn<H>,
    /// `(most jobs per call, the batch runner)` for [`BatchJob`] kinds.
    pub(crate) batch: Option<(usize, BatchFn<H>)>,
    /// Most runs of this kind at once in one process ([`Job::CONCURRENCY`]).
    pub(crate) concurrency: usize,
    /// Whether its queue may linger before claiming ([`BatchJob::LINGER`]; single jobs do
    /// not batch, so they never ask to).
    pub(crate) linger: bool,
}

impl<H> Clone for Handler<H> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue,
            policy: self.policy,
            run: self.run.clone(),
            on_dead: self.on_dead.clone(),
            batch: self.batch.clone(),
            concurrency: self.concurrency,
            linger: self.linger,
        }
    }
}

/// Every job kind the workers know, registered in one place (`crate::jobs::registry`).
pub struct Registry<H> {
    handlers: HashMap<&'static str, Handler<H>>,
}

impl<H> Clone for Registry<H> {
    fn clone(&self) -> Self {
        Self {
            handlers: self.handlers.clone(),
        }
    }
}

impl<H> Default for Registry<H> {
    fn default() -> Self {
        Self {
            handlers: HashMap::new(),
        }
    }
}

impl<H: QueueHost> Registry<H> {
    /// Registers job type `J`.
    pub fn register<J: Job<Host = H>>(mut self) -> Self {
        let run: RunFn<H> = Arc::new(|ctx, payload| {
            Box::pin(async move {
                let job: J = serde_json::from_value(payload).map_err(|e| {
                    JobError::Permanent(anyhow::anyhow!("bad payload for {}: {e}", J::KIND))
                })?;
                job.run(ctx).await
            })
        });
        let on_dead: DeadFn<H> = Arc::new(|ctx, payload, error| {
            Box::pin(async move {
                match serde_json::from_value::<J>(payload) {
                    Ok(job) => job.on_dead(ctx, error).await,
                    Err(_) => Ok(()),
                }
            })
        });
        self.handlers.insert(
            J::KIND,
            Handler {
                queue: J::QUEUE,
                policy: J::policy(),
                run,
                on_dead,
                batch: None,
                concurrency: J::CONCURRENCY.max(1),
                linger: false,
            },
        );
        self
    }

    /// Registers batch-capable job type `J`.
    pub fn register_batch<J: BatchJob<Host = H>>(mut self) -> Self {
        self = self.register::<J>();
        let batch: BatchFn<H> = Arc::new(|ctx, payloads| {
            Box::pin(async move {
                let jobs = payloads
                    .into_iter()
                    .map(serde_json::from_value::<J>)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        JobError::Permanent(anyhow::anyhow!("bad payload for {}: {e}", J::KIND))
                    })?;
                J::run_batch(jobs, ctx).await
            })
        });
        if let Some(h) = self.handlers.get_mut(J::KIND) {
            h.batch = Some((J::MAX_BATCH.max(1), batch));
            h.linger = J::LINGER;
        }
        self
    }

    /// How many jobs of `queue` one run may carry: the smallest batch of its kinds (1 when
    /// any kind runs alone).
    pub fn batch_size(&self, queue: &str) -> usize {
        self.handlers
            .values()
            .filter(|h| h.queue == queue)
            .map(|h| h.batch.as_ref().map_or(1, |b| b.0))
            .min()
            .unwrap_or(1)
    }

    /// Whether `queue`'s consumer lingers before claiming: every kind of it runs in batches
    /// and asks to ([`BatchJob::LINGER`]).
    pub fn lingers(&self, queue: &str) -> bool {
        let mut kinds = self
            .handlers
            .values()
            .filter(|h| h.queue == queue)
            .peekable();
        kinds.peek().is_some() && kinds.all(|h| h.linger)
    }

    /// How many runs of `queue` one process may have going at once: `configured`, or less
    /// when a kind of the queue asks for fewer ([`Job::CONCURRENCY`]).
    pub fn concurrency(&self, queue: &str, configured: usize) -> usize {
        self.handlers
            .values()
            .filter(|h| h.queue == queue)
            .map(|h| h.concurrency)
            .min()
            .unwrap_or(usize::MAX)
            .min(configured)
            .max(1)
    }

    /// The handler of a kind.
    pub fn get(&self, kind: &str) -> Option<&Handler<H>> {
        self.handlers.get(kind)
    }

    /// The distinct queues of the registered kinds.
    pub fn queues(&self) -> Vec<&'static str> {
        let mut q: Vec<_> = self.handlers.values().map(|h| h.queue).collect();
        q.sort_unstable();
        q.dedup();
        q
    }
}

/// Delay before retry number `attempt` (1-based): full jitter over `min(cap, base·2^(attempt-1))`.
pub fn backoff_ms(attempt: i32, base_ms: i64, cap_ms: i64) -> i64 {
    let exp = attempt.saturating_sub(1).clamp(0, 30) as u32;
    let ceiling = base_ms.saturating_mul(1_i64 << exp).min(cap_ms).max(1);
    rand::random_range(0..=ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 1..40 {
            let d = backoff_ms(attempt, 1_000, 60_000);
            assert!((0..=60_000).contains(&d), "attempt {attempt}: {d}");
        }
        let ceiling_first = (0..200)
            .map(|_| backoff_ms(1, 1_000, 60_000))
            .max()
            .unwrap_or(0);
        assert!(ceiling_first <= 1_000);
        let spread: std::collections::HashSet<_> =
            (0..50).map(|_| backoff_ms(5, 1_000, 60_000)).collect();
        assert!(spread.len() > 10, "jitter should spread retries");
    }
}
