//! One database handle over the two supported backends.
//!
//! PostgreSQL is the production system of record and job queue; SQLite (WAL, one writer
//! connection) is the embedded default. Repositories write their SQL once with `$N`
//! placeholders and run it through [`with_latest!`](crate::with_latest),
//! [`with_replica!`](crate::with_replica) or [`with_tx!`](crate::with_tx), which expand the
//! same body for each backend; where the
//! dialects differ (SKIP LOCKED, partitions), the repository matches on [`Db::is_postgres`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, Sqlite, Transaction};
use tokio::sync::Notify;

/// The connection pools of one backend.
#[derive(Clone, Debug)]
pub enum Backend {
    /// PostgreSQL: one pool on the primary.
    Pg(PgPool),
    /// SQLite: a single-connection writer pool (so writers never race for the lock inside
    /// this process) and a reader pool for queries.
    Sqlite {
        /// The only connection that writes.
        write: SqlitePool,
        /// Readers (WAL lets them run beside the writer).
        read: SqlitePool,
    },
}

/// Cheap-to-clone database handle shared by the API, the workers and the CLI.
#[derive(Clone, Debug)]
pub struct Db {
    backend: Backend,
    /// Wakes in-process queue consumers after a commit that enqueued jobs (per queue).
    wake: Arc<Wakes>,
    /// PostgreSQL: tells the other processes' queue consumers (see [`Announcer`]).
    announce: Option<Arc<Announcer>>,
    /// PostgreSQL without autovacuum: dead rows stay until someone vacuums (see
    /// [`Db::needs_own_vacuum`]).
    own_vacuum: bool,
    /// PostgreSQL: a few connections that plan each statement once (see [`Db::keyed_pool`]).
    keyed: Option<PgPool>,
}

/// The `LISTEN`/`NOTIFY` channel on which job enqueues are announced to other processes.
/// Payload: `<process token>|<queue>,<queue>…` (see [`Wakes::from_notification`]).
pub const JOBS_CHANNEL: &str = "khaacho_jobs";

/// The in-process wake-up signals of the queue consumers, one per queue: a commit wakes only
/// the consumers of the queues it enqueued into. (One signal for all made every commit wake
/// every queue's consumer, each claiming with an `UPDATE` that mostly found nothing: 11.6
/// claims per order on PostgreSQL, the most frequent statement of the whole pipeline.)
#[derive(Debug)]
pub struct Wakes {
    by_queue: std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>,
    /// Identifies this process in `NOTIFY` payloads, so it skips its own announcements (its
    /// consumers were woken at commit).
    token: String,
}

impl Wakes {
    fn new() -> Self {
        Self {
            by_queue: Default::default(),
            token: uuid::Uuid::now_v7().simple().to_string(),
        }
    }

    /// The signal of `queue`'s consumers.
    pub fn of(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.by_queue.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(queue.to_string()).or_default().clone()
    }

    /// Wakes the waiting consumers of `queue`.
    pub fn wake(&self, queue: &str) {
        self.of(queue).notify_waiters();
    }

    /// Wakes the waiting consumers of every queue (safe mode off, jobs taken back).
    pub fn wake_all(&self) {
        let map = self.by_queue.lock().unwrap_or_else(|e| e.into_inner());
        for n in map.values() {
            n.notify_waiters();
        }
    }

    /// Handles a `NOTIFY` on [`JOBS_CHANNEL`]: wakes the queues it names, nothing when this
    /// process sent it, every queue when it names none (an older sender, a manual `NOTIFY`).
    pub fn from_notification(&self, payload: &str) {
        let (token, queues) = payload.split_once('|').unwrap_or(("", payload));
        if token == self.token {
            return;
        }
        let mut any = false;
        for q in queues.split(',').map(str::trim).filter(|q| !q.is_empty()) {
            self.wake(q);
            any = true;
        }
        if !any {
            self.wake_all();
        }
    }

    /// The `NOTIFY` payload announcing `queues` from this process.
    pub fn payload(&self, queues: &[&str]) -> String {
        format!("{}|{}", self.token, queues.join(","))
    }
}

/// Announces enqueued jobs to the other processes with `NOTIFY`, after commit and coalesced:
/// one statement in flight per process, however many transactions committed meanwhile.
///
/// Not inside the enqueuing transaction: a transaction that has issued `NOTIFY` takes a
/// database-wide lock at commit and holds it through its WAL flush, so every enqueuing
/// commit would queue behind the others (seen as `Lock:object` waits on `COMMIT` under the
/// lifecycle benchmark). Consumers only need a hint that work may be ready — they claim from
/// the table, and poll as a fallback — so a notification a moment after commit loses nothing.
#[derive(Debug)]
pub struct Announcer {
    pending: Arc<Notify>,
    /// Queues named since the last `NOTIFY` (job announcements only).
    queues: Arc<std::sync::Mutex<Vec<&'static str>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Announcer {
    /// `wakes`: announce the queues named with [`Announcer::announce_queues`] in the
    /// payload, signed with this process's token; `None`: an empty payload.
    fn spawn(pool: PgPool, channel: &'static str, wakes: Option<Arc<Wakes>>) -> Self {
        let pending = Arc::new(Notify::new());
        let queues: Arc<std::sync::Mutex<Vec<&'static str>>> = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let (p, q, s) = (pending.clone(), queues.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = p.notified() => {}
                    _ = s.cancelled() => return,
                }
                if pool.is_closed() {
                    return;
                }
                let named = std::mem::take(&mut *q.lock().unwrap_or_else(|e| e.into_inner()));
                let payload = wakes
                    .as_ref()
                    .map_or_else(String::new, |w| w.payload(&named));
                if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel)
                    .bind(payload)
                    .execute(&pool)
                    .await
                {
                    // The consumers' polling picks the jobs up meanwhile.
                    tracing::debug!(error = %e, channel, "announcing after commit failed");
                }
            }
        });
        Self {
            pending,
            queues,
            stop,
        }
    }

    /// Asks for one `NOTIFY` on this announcer's channel (coalesced with any pending one).
    pub fn announce(&self) {
        self.pending.notify_one();
    }

    /// Like [`Announcer::announce`], naming `queues` (coalesced with pending ones).
    pub fn announce_queues(&self, queues: &[&'static str]) {
        {
            let mut pending = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            for q in queues {
                if !pending.contains(q) {
                    pending.push(q);
                }
            }
        }
        self.pending.notify_one();
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An open write transaction on either backend.
pub struct Tx {
    inner: TxInner,
    wake: Arc<Wakes>,
    announce: Option<Arc<Announcer>>,
    /// Queues this transaction enqueued into.
    enqueued: Vec<&'static str>,
    /// Jobs without a dedupe key, inserted together right before the commit
    /// (`queue::enqueue_batch`).
    pending_jobs: Vec<JobRow>,
}

/// The backend transaction inside a [`Tx`]; use it through [`with_tx!`](crate::with_tx).
pub enum TxInner {
    /// PostgreSQL transaction.
    Pg(Transaction<'static, Postgres>),
    /// SQLite transaction (`BEGIN IMMEDIATE` on the writer connection).
    Sqlite(Transaction<'static, Sqlite>),
}

/// Runs `$body` with `$c` bound to a read connection that sees every committed write: for
/// reads whose caller just wrote or must not act on old data (a status poll right after the
/// 202, a job reading what the step before it wrote, credentials, idempotency keys).
///
/// Every read says which consistency it needs, with this macro or [`with_replica!`]. On one
/// database both read the same pool (SQLite's readers see every commit of the writer in WAL
/// mode); with read replicas, only `with_replica!` reads may be sent to them.
#[macro_export]
macro_rules! with_latest {
    ($db:expr, $c:ident => $body:expr) => {
        match $db.backend() {
            $crate::base::db::Backend::Pg(pool) => {
                let $c = pool;
                $body
            }
            $crate::base::db::Backend::Sqlite { read, .. } => {
                let $c = read;
                $body
            }
        }
    };
}

/// Runs `$body` with `$c` bound to a connection for a read of **the rows of one key**: one row
/// by its whole primary key (an order by id and creation time), or the rows an index finds by
/// equality on its leading columns (an order's lines and events, a part's offers; several
/// keys only as `KeyFilter::push_rows_by`'s probe, one index lookup per key). On PostgreSQL
/// that is the keyed-read pool, whose statements are planned once and never as a scan
/// ([`Db::keyed_pool`]); elsewhere as [`with_latest!`]. The statement may filter the rows the
/// key found, nothing else: no ranges, no optional (`$1 IS NULL OR …`) filters, no
/// `IN (SELECT unnest(…))` of a list, no ORDER BY that an index other than the key's could
/// serve (sort those few rows in Rust).
#[macro_export]
macro_rules! with_keyed {
    ($db:expr, $c:ident => $body:expr) => {
        match $db.keyed_pool() {
            Some(pool) => {
                let $c = pool;
                $body
            }
            None => $crate::with_latest!($db, $c => $body),
        }
    };
}

/// Runs `$body` with `$c` bound to a read connection that may be slightly stale: lists,
/// counts, reports and dashboards, where a change a moment old may be missing. See
/// [`with_latest!`].
#[macro_export]
macro_rules! with_replica {
    ($db:expr, $c:ident => $body:expr) => {
        // One database today: the same pool as `with_latest!`. Read replicas plug in here.
        $crate::with_latest!($db, $c => $body)
    };
}

/// Runs `$body` with `$c` bound to the pool that writes (single statements outside a [`Tx`](crate::base::db::Tx)).
#[macro_export]
macro_rules! with_write {
    ($db:expr, $c:ident => $body:expr) => {
        match $db.backend() {
            $crate::base::db::Backend::Pg(pool) => {
                let $c = pool;
                $body
            }
            $crate::base::db::Backend::Sqlite { write, .. } => {
                let $c = write;
                $body
            }
        }
    };
}

/// Where a read that may take a moment-old copy runs: the pool, or the connection of a
/// transaction the caller holds. Work that holds a transaction reads through it: waiting for
/// a second connection from the pool while holding one stalls the process once every
/// connection is held by such work (each waits for a connection only another can free, until
/// the pool's acquire timeout). Read it with [`with_reader!`](crate::with_reader).
pub enum Reader<'a> {
    /// The pool, as [`with_replica!`](crate::with_replica) reads it.
    Pool(&'a Db),
    /// The caller's open transaction (sees what it wrote, and every commit before each
    /// statement).
    Tx(&'a mut Tx),
}

/// Runs `$body` with `$c` bound to the connection a [`Reader`](crate::base::db::Reader)
/// names.
#[macro_export]
macro_rules! with_reader {
    ($r:expr, $c:ident => $body:expr) => {
        match $r {
            $crate::base::db::Reader::Pool(db) => $crate::with_replica!(db, $c => $body),
            $crate::base::db::Reader::Tx(tx) => $crate::with_tx!(tx, $c => $body),
        }
    };
}

/// Runs `$body` with `$c` bound to the connection of an open [`Tx`](crate::base::db::Tx).
#[macro_export]
macro_rules! with_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx.inner_mut() {
            $crate::base::db::TxInner::Pg(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::base::db::TxInner::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite:…`), creating a SQLite file when missing.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let mut own_vacuum = false;
        let mut keyed = None;
        let backend = if url.starts_with("postgres") {
            let opts = PgConnectOptions::from_str(url).context("parsing DATABASE_URL")?;
            let (opts, mode, reason) = super::pg_tls::apply(url, opts);
            tracing::info!(sslmode = ?mode, why = reason.as_str(), "PostgreSQL TLS mode");
            let refreshes = statistics_refresh(&opts).await;
            tracing::info!(
                autovacuum = refreshes,
                "PostgreSQL statistics refresh by themselves"
            );
            let opts = plan_mode(no_jit(opts), refreshes);
            own_vacuum = !refreshes;
            keyed = Some(keyed_pool(&opts, max_connections));
            Backend::Pg(pg_pool(opts, max_connections).await?)
        } else {
            let opts = SqliteConnectOptions::from_str(url)
                .context("parsing DATABASE_URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts.clone())
                .await
                .context("opening the SQLite database")?;
            let read = SqlitePoolOptions::new()
                .max_connections(max_connections.clamp(1, 8))
                .connect_with(opts.read_only(true))
                .await
                .context("opening the SQLite database for reading")?;
            Backend::Sqlite { write, read }
        };
        let wake = Arc::new(Wakes::new());
        let announce = match &backend {
            Backend::Pg(pool) => Some(Arc::new(Announcer::spawn(
                pool.clone(),
                JOBS_CHANNEL,
                Some(wake.clone()),
            ))),
            Backend::Sqlite { .. } => None,
        };
        Ok(Self {
            backend,
            wake,
            announce,
            own_vacuum,
            keyed,
        })
    }

    /// PostgreSQL: the pool for reads of the rows of one key (see
    /// [`with_keyed!`](crate::with_keyed)) and the intake's one statement (see
    /// [`keyed_pool`]); `None` on SQLite.
    pub fn keyed_pool(&self) -> Option<&PgPool> {
        self.keyed.as_ref()
    }

    /// This process's connection pools as `(name, open, idle, most)`: on PostgreSQL `main`
    /// and `keyed` ([`Db::keyed_pool`]), on SQLite `write` and `read`.
    pub fn pool_use(&self) -> Vec<(&'static str, u32, usize, u32)> {
        fn of<DB: sqlx::Database>(
            name: &'static str,
            p: &sqlx::Pool<DB>,
        ) -> (&'static str, u32, usize, u32) {
            (
                name,
                p.size(),
                p.num_idle(),
                p.options().get_max_connections(),
            )
        }
        match &self.backend {
            Backend::Pg(main) => {
                let mut pools = vec![of("main", main)];
                pools.extend(self.keyed.as_ref().map(|k| of("keyed", k)));
                pools
            }
            Backend::Sqlite { write, read } => vec![of("write", write), of("read", read)],
        }
    }

    /// Whether this is a PostgreSQL server without autovacuum (or without the statistics it
    /// works from): nothing there removes the dead rows the queue leaves behind, so the
    /// worker runtime vacuums `jobs` itself (`queue.vacuum_interval_ms`).
    pub fn needs_own_vacuum(&self) -> bool {
        self.own_vacuum
    }

    /// The pools behind this handle.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Whether this is PostgreSQL (for the few places where SQL differs).
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Pg(_))
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        if self.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// PostgreSQL: an [`Announcer`] on `channel`, for a feature whose other processes must
    /// hear of its commits (call it once and keep it; it owns a task). SQLite: `None`.
    pub fn announcer(&self, channel: &'static str) -> Option<Announcer> {
        match &self.backend {
            Backend::Pg(pool) => Some(Announcer::spawn(pool.clone(), channel, None)),
            Backend::Sqlite { .. } => None,
        }
    }

    /// The in-process wake-up signals of the queue consumers.
    pub fn wake(&self) -> &Arc<Wakes> {
        &self.wake
    }

    /// What a [`Tx`]'s commit does once jobs it enqueued into `queues` are committed: wakes
    /// this process's consumers of those queues and announces them to the other processes.
    /// For a write that committed jobs without a `Tx` (one statement on its own).
    pub fn after_commit(&self, queues: &[&'static str]) {
        wake_after_commit(&self.wake, self.announce.as_deref(), queues);
    }

    /// Begins a write transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.begin_planned(false).await
    }

    /// Begins a write transaction whose statements are planned without sequential scans on
    /// PostgreSQL (`SET LOCAL enable_seqscan = off`, sent with the `BEGIN`: no round trip
    /// more), for transactions that only read and write rows by their keys — the validation
    /// run, the part actions' batches. On a partition never analysed (no autovacuum; a new
    /// month) PostgreSQL prices a scan of the young partition below a probe per key, and a
    /// batched UPDATE read every line of the month to change sixty (1.2–1.9 ms a statement
    /// against 0.6 probed, growing with the month; `bench/README.md`, "Batched UPDATEs by
    /// key"). A table with no index for a statement is still scanned. SQLite: [`Db::begin`].
    pub async fn begin_indexed(&self) -> Result<Tx, sqlx::Error> {
        self.begin_planned(true).await
    }

    async fn begin_planned(&self, indexed: bool) -> Result<Tx, sqlx::Error> {
        let inner = match &self.backend {
            Backend::Pg(pool) if indexed => TxInner::Pg(
                pool.begin_with("BEGIN; SET LOCAL enable_seqscan = off")
                    .await?,
            ),
            Backend::Pg(pool) => TxInner::Pg(pool.begin().await?),
            // IMMEDIATE takes the write lock up front, so a transaction that reads and then
            // writes cannot fail half-way when another process wrote in between.
            Backend::Sqlite { write, .. } => {
                TxInner::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?)
            }
        };
        Ok(Tx {
            inner,
            wake: self.wake.clone(),
            announce: self.announce.clone(),
            enqueued: Vec::new(),
            pending_jobs: Vec::new(),
        })
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Pg(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
            Backend::Sqlite { write, .. } => sqlx::migrate!("./migrations/sqlite").run(write).await,
        }
        .context("applying database migrations")
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_latest!(self, c => sqlx::query("SELECT 1").execute(c).await.map(|_| ()))
    }

    /// Closes every pool.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Pg(pool) => {
                if let Some(keyed) = &self.keyed {
                    keyed.close().await;
                }
                pool.close().await
            }
            Backend::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
        }
    }
}

/// Whether the server's statistics refresh by themselves (autovacuum and `track_counts`
/// on), asked on a connection of its own at start-up; `false` when it cannot be asked (the
/// pool's own connect then reports the error).
async fn statistics_refresh(opts: &PgConnectOptions) -> bool {
    let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect_with(opts).await else {
        return false;
    };
    let on: Result<bool, _> = sqlx::query_scalar(
        "SELECT current_setting('autovacuum') = 'on' AND current_setting('track_counts') = 'on'",
    )
    .fetch_one(&mut c)
    .await;
    let _ = sqlx::Connection::close(c).await;
    on.unwrap_or(false)
}

/// How PostgreSQL plans our prepared statements: per call (`plan_cache_mode=
/// force_custom_plan`) on a server whose statistics never refresh by themselves (autovacuum
/// or `track_counts` off), the server's own choice (`auto`) where they do; a
/// `plan_cache_mode` in the URL wins.
///
/// Our statements are prepared once per connection and run for the life of the process,
/// while the tables under them grow from empty. Under `auto` a prepared statement switches
/// to one generic plan after five runs and keeps it until the table's statistics change;
/// without autovacuum they never do, and a plan made on a near-empty table (a sequential
/// scan) stays while the table grows: batch lookups by key went from microseconds to 7 ms
/// each (`bench/README.md`, "Plans"). Custom plans always see the table as it is, but cost a
/// plan per call: about 40% of PostgreSQL's statement time when vendors and retailers act
/// on single rows. Where autovacuum runs, its ANALYZE replaces stale generic plans, and
/// `auto` keeps the cheap ones (the whole order life carried more work in the same CPU).
fn plan_mode(opts: PgConnectOptions, statistics_refresh: bool) -> PgConnectOptions {
    if options_set(&opts, "plan_cache_mode") || statistics_refresh {
        return opts;
    }
    opts.options([("plan_cache_mode", "force_custom_plan")])
}

/// Our connections run without JIT compilation (`jit=off`); a `jit` the URL's `options` set
/// wins.
///
/// PostgreSQL compiles a statement to machine code when its estimated cost passes
/// `jit_above_cost` (100,000 by default; with inlining and optimisation past 500,000), a
/// bet that pays for analytical queries over millions of rows. Ours read and write a few rows
/// by key, and the only ones priced that high were priced so by `enable_seqscan=off` (the
/// keyed pool, [`Db::begin_indexed`]), which adds 10¹⁰ to a scan that has to happen anyway:
/// the read of the webhook subscriptions, a table of a handful of rows with no index for its
/// filter, was compiled on each of its 762 runs in a 500 orders/s benchmark, 0.41 ms each,
/// for a statement that executes in 0.02 ms (`bench/README.md`, "The offers as columns; no
/// JIT").
fn no_jit(opts: PgConnectOptions) -> PgConnectOptions {
    if options_set(&opts, "jit") {
        return opts;
    }
    opts.options([("jit", "off")])
}

/// Whether the connection's options (the URL's `options`, or `PGOPTIONS`) set `name`:
/// `-c name=…`, `-cname=…` or `--name=…`. A setting whose name merely starts with `name`
/// (`jit_above_cost` for `jit`), or the name elsewhere in the URL, does not count.
fn options_set(opts: &PgConnectOptions, name: &str) -> bool {
    let sets = |t: &str| {
        t.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('='))
    };
    opts.get_options().is_some_and(|o| {
        o.split_whitespace().any(|t| {
            let t = t.trim_start_matches('-');
            sets(t) || t.strip_prefix('c').is_some_and(sets)
        })
    })
}

/// The keyed-read pool: a sixth of the main pool's size (at least one connection), opened
/// on first use, on connections that plan each prepared statement once
/// (`plan_cache_mode=force_generic_plan`, after whatever the URL set) and never as a
/// sequential scan (`enable_seqscan=off`).
///
/// Only reads of the rows of one key go there ([`with_keyed!`](crate::with_keyed)): a
/// lookup's one plan is made once per connection and saves planning on every call (on the
/// partitioned `orders`, 0.06–0.11 ms against 0.006 ms: `bench/README.md`, "Keyed reads").
/// A plan made once must suit the table at any size: made on tables whose statistics say
/// they are nearly empty (an ANALYZE soon after set-up, with no autovacuum to refresh it),
/// PostgreSQL chose a sequential scan even for a primary key and would keep it while the
/// table grew; with sequential scans off it is the key's index lookup whatever the
/// statistics (tested: `keyed_reads_plan_index_lookups_whatever_the_statistics`).
/// Statements with optional filters or ranges stay on the main pool, planned per call: a
/// generic plan cannot drop an `$1 IS NULL OR …` branch and would scan. One write runs
/// there too, the intake's one statement ([`create_at_once`](crate::orders::transition::create_at_once)):
/// it only inserts rows from arrays, so its one plan is the only plan, and planned per
/// batch it cost 0.23 ms a call (six CTEs) against 0.6 ms of execution.
fn keyed_pool(opts: &PgConnectOptions, max_connections: u32) -> PgPool {
    let opts = opts.clone().options([
        ("plan_cache_mode", "force_generic_plan"),
        ("enable_seqscan", "off"),
    ]);
    PgPoolOptions::new()
        .max_connections((max_connections / 6).max(1))
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(opts)
}

async fn pg_pool(opts: PgConnectOptions, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await
        .context("connecting to PostgreSQL")
}

impl Tx {
    /// The backend transaction, for [`with_tx!`](crate::with_tx).
    pub fn inner_mut(&mut self) -> &mut TxInner {
        &mut self.inner
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner, TxInner::Pg(_))
    }

    /// From here on, plans this transaction's statements once per connection (generic plans,
    /// `SET LOCAL plan_cache_mode = force_generic_plan`) or, with `false`, again as the
    /// connection plans them (`SET LOCAL plan_cache_mode TO DEFAULT`: what the URL or
    /// `plan_mode` asked for). PostgreSQL only; nothing on SQLite.
    ///
    /// For the statements of an indexed transaction ([`Db::begin_indexed`]) that touch no
    /// partitioned table (`orders`, `order_lines`, `order_events`): with sequential scans off,
    /// the one plan is the probe of each key whatever the statistics when it was made, and
    /// the validation run's reads of the market and of the shops' credit, and routing's
    /// write, cost more to plan than to run when planned per call (`bench/README.md`,
    /// "Planned once"). Not for the partitioned tables: a generic plan of one is pruned only
    /// when it runs, after every partition (a month each) was locked.
    pub async fn plan_generic(&mut self, generic: bool) -> Result<(), sqlx::Error> {
        if let TxInner::Pg(c) = &mut self.inner {
            let sql = if generic {
                "SET LOCAL plan_cache_mode = force_generic_plan"
            } else {
                "SET LOCAL plan_cache_mode TO DEFAULT"
            };
            sqlx::raw_sql(sql).execute(&mut **c).await?;
        }
        Ok(())
    }

    /// Records that this transaction enqueued work into `queue`, so that queue's consumers
    /// wake on commit (in-process at once, other processes through the [`Announcer`]).
    pub fn mark_enqueued(&mut self, queue: &'static str) {
        if !self.enqueued.contains(&queue) {
            self.enqueued.push(queue);
        }
    }

    /// Holds jobs to insert right before the commit (dropped with the transaction).
    pub(crate) fn defer_jobs(&mut self, rows: Vec<JobRow>) {
        self.pending_jobs.extend(rows);
    }

    /// Inserts the jobs it holds, commits, then wakes the in-process consumers when jobs were
    /// enqueued.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        if !self.pending_jobs.is_empty() {
            let rows = std::mem::take(&mut self.pending_jobs);
            insert_job_rows(&mut self, &rows).await?;
        }
        match self.inner {
            TxInner::Pg(t) => t.commit().await?,
            TxInner::Sqlite(t) => t.commit().await?,
        }
        wake_after_commit(&self.wake, self.announce.as_deref(), &self.enqueued);
        Ok(())
    }

    /// Rolls back explicitly (dropping a `Tx` also rolls back).
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.inner {
            TxInner::Pg(t) => t.rollback().await,
            TxInner::Sqlite(t) => t.rollback().await,
        }
    }
}

fn wake_after_commit(wake: &Wakes, announce: Option<&Announcer>, queues: &[&'static str]) {
    if queues.is_empty() {
        return;
    }
    for q in queues {
        wake.wake(q);
    }
    if let Some(a) = announce {
        a.announce_queues(queues);
    }
}

/// Most bind parameters a statement may carry and still be kept prepared on its connection.
///
/// sqlx keeps the last 100 statements each connection ran prepared (its statement cache),
/// with each one's text and a description of every parameter. A batch INSERT's text grows
/// with its batch (a `VALUES` row per item, hence a text per batch size), and over capacity
/// the batches grow to hundreds of rows: kept, a few dozen of those per connection held over
/// 100 MB of the server's memory on PostgreSQL at twice its capacity (peak RSS 268 MB against 150 MB
/// with the cache held to 20 statements; `bench/README.md`, "Batch statements not kept
/// prepared"), and the database's sessions held their parsed copies too. Such a text is rarely
/// run again anyway; a statement this small, the batch of a quiet hour, is.
pub const MAX_PREPARED_BINDS: usize = 64;

/// Whether the statement `qb` built is small enough to keep prepared: its bind parameters,
/// PostgreSQL's `$n` or SQLite's `?`, counted in its text (a `$` or `?` elsewhere in a text
/// would only count it larger, and leave it unkept).
fn keep_prepared<DB: sqlx::Database>(qb: &sqlx::QueryBuilder<DB>) -> bool {
    let binds = qb
        .sql()
        .as_str()
        .bytes()
        .filter(|b| matches!(b, b'$' | b'?'))
        .count();
    binds <= MAX_PREPARED_BINDS
}

/// Building a statement whose text grows with its batch (see [`MAX_PREPARED_BINDS`]).
pub trait BuildBatch<DB: sqlx::Database + sqlx::database::HasStatementCache> {
    /// [`sqlx::QueryBuilder::build`], kept prepared on the connection only while it has at
    /// most [`MAX_PREPARED_BINDS`] parameters; a larger one is parsed for this run alone and
    /// closed after it.
    fn build_batch(&mut self) -> sqlx::query::Query<'_, DB, <DB as sqlx::Database>::Arguments>;

    /// [`sqlx::QueryBuilder::build_query_as`], kept prepared as [`Self::build_batch`] says.
    fn build_batch_as<'q, T: sqlx::FromRow<'q, DB::Row>>(
        &'q mut self,
    ) -> sqlx::query::QueryAs<'q, DB, T, <DB as sqlx::Database>::Arguments>;

    /// [`sqlx::QueryBuilder::build_query_scalar`], kept prepared as [`Self::build_batch`] says.
    fn build_batch_scalar<'q, T>(
        &'q mut self,
    ) -> sqlx::query::QueryScalar<'q, DB, T, <DB as sqlx::Database>::Arguments>
    where
        (T,): for<'r> sqlx::FromRow<'r, DB::Row>;
}

impl<DB: sqlx::Database + sqlx::database::HasStatementCache> BuildBatch<DB>
    for sqlx::QueryBuilder<DB>
{
    fn build_batch(&mut self) -> sqlx::query::Query<'_, DB, <DB as sqlx::Database>::Arguments> {
        let keep = keep_prepared(self);
        self.build().persistent(keep)
    }

    fn build_batch_as<'q, T: sqlx::FromRow<'q, DB::Row>>(
        &'q mut self,
    ) -> sqlx::query::QueryAs<'q, DB, T, <DB as sqlx::Database>::Arguments> {
        let keep = keep_prepared(self);
        self.build_query_as().persistent(keep)
    }

    fn build_batch_scalar<'q, T>(
        &'q mut self,
    ) -> sqlx::query::QueryScalar<'q, DB, T, <DB as sqlx::Database>::Arguments>
    where
        (T,): for<'r> sqlx::FromRow<'r, DB::Row>,
    {
        let keep = keep_prepared(self);
        self.build_query_scalar().persistent(keep)
    }
}

/// A row of `jobs` as `queue::enqueue_batch` inserts it.
#[derive(Debug)]
pub(crate) struct JobRow {
    pub(crate) id: uuid::Uuid,
    pub(crate) queue: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) payload: serde_json::Value,
    pub(crate) priority: i32,
    pub(crate) run_at_ms: i64,
    pub(crate) max_attempts: i32,
    pub(crate) dedupe_key: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) trace_parent: Option<String>,
    pub(crate) at_ms: i64,
}

/// Inserts `rows` (a row whose dedupe key is taken is skipped); returns how many were.
pub(crate) async fn insert_job_rows(tx: &mut Tx, rows: &[JobRow]) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for chunk in rows.chunks(1000) {
        inserted += with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO jobs (id, queue, kind, payload, priority, run_at_ms, max_attempts, dedupe_key, \
                 correlation_id, trace_parent, created_at_ms, updated_at_ms) ");
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(r.queue)
                    .push_bind(r.kind)
                    .push_bind(sqlx::types::Json(&r.payload))
                    .push_bind(r.priority)
                    .push_bind(r.run_at_ms)
                    .push_bind(r.max_attempts)
                    .push_bind(r.dedupe_key.as_deref())
                    .push_bind(r.correlation_id.as_deref())
                    .push_bind(r.trace_parent.as_deref())
                    .push_bind(r.at_ms)
                    .push_bind(r.at_ms);
            });
            qb.push(" ON CONFLICT DO NOTHING");
            qb.build_batch().execute(&mut *c).await?.rows_affected()
        });
    }
    Ok(inserted)
}

/// Whether an error is a unique-constraint violation (same on both backends).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Conditions "this row is one of these keys", written so that each backend answers them
/// from the primary-key index whatever its statistics say. A PostgreSQL table that has not
/// been analysed yet (a new month's partition, a new install, a server without autovacuum)
/// has no statistics on its key columns; the planner then guesses that `id IN ($1, …, $128)`
/// matches half the table and scans all of it, so a batch's lookups cost the whole table. A
/// semi-join against `unnest` of an array is planned as one index probe per key, and its SQL
/// text is the same whatever the number of keys (one prepared statement instead of one per
/// batch size). SQLite's planner probes the index for an `IN` list by itself.
///
/// One key (an action on one order or part, the most frequent case) is a plain equality on
/// PostgreSQL instead: planning a semi-join costs several times more than the lookup itself
/// when every statement is planned for its parameters, and an equality is answered from the
/// index without statistics too.
pub trait KeyFilter: sqlx::Database {
    /// A FROM item named `alias`: the rows of `table` whose (`a`, `b`) — an id and its
    /// creation time, the partition key — is one of `keys` (each once). `lock` (`FOR UPDATE`,
    /// `FOR UPDATE SKIP LOCKED`) locks them on PostgreSQL key by key in key order.
    fn push_rows_at(
        qb: &mut sqlx::QueryBuilder<Self>,
        table: &str,
        alias: &str,
        cols: (&str, &str),
        keys: &[(uuid::Uuid, i64)],
        lock: Option<&str>,
    );
    /// ` col` is one of a batch's creation times (`col`: a partition key): PostgreSQL
    /// keeps only the partitions holding them.
    fn push_created_in(qb: &mut sqlx::QueryBuilder<Self>, col: &str, created: Vec<i64>);
    /// ` col IN (ids)`.
    fn push_ids(qb: &mut sqlx::QueryBuilder<Self>, col: &str, ids: &[uuid::Uuid]);
    /// ` col IN (texts)`.
    fn push_texts(qb: &mut sqlx::QueryBuilder<Self>, col: &str, texts: &[String]);
    /// A FROM item named `alias`: the rows of `table` whose `col` — a column that is not
    /// unique, such as the lines of parts or the parts of orders — is one of `ids` (each
    /// once). With `lock_order`, the rows are locked `FOR UPDATE` (PostgreSQL) key by key in
    /// key order, each key's rows in `lock_order`. `filter` (SQL without parameters, or
    /// empty) narrows each key's rows inside the probe, so a partial index on `col` that it
    /// implies can serve it.
    fn push_rows_by(
        qb: &mut sqlx::QueryBuilder<Self>,
        table: &str,
        alias: &str,
        col: &str,
        ids: &[uuid::Uuid],
        filter: &str,
        lock_order: Option<&str>,
    );
}

impl KeyFilter for Postgres {
    /// Each key probes the key's index by itself, as [`push_rows_by`](Self::push_rows_by):
    /// `unnest` of the sorted keys joined `LATERAL` to one key's row. The semi-join `(a, b)
    /// IN (SELECT * FROM unnest(…))` this replaced carried the batch's creation-time range
    /// beside it for partition pruning, and on a partition without statistics PostgreSQL
    /// took that range for a selective condition (it guesses 1/200 of the rows for any
    /// range) and read every order created in it through the creation-time index into a
    /// hash join: a batch of 70 order changes spread over 30 s read 7,000 orders, 5.3 ms a
    /// call at 300 orders/s, against 0.4 ms probed. Inside the probe the range still prunes
    /// the partitions at planning, and the key's equalities make the unique index the only
    /// sensible path.
    fn push_rows_at(
        qb: &mut sqlx::QueryBuilder<Self>,
        table: &str,
        alias: &str,
        (a, b): (&str, &str),
        keys: &[(uuid::Uuid, i64)],
        lock: Option<&str>,
    ) {
        let tail = match lock {
            Some(lock) => format!(" {lock}"),
            None => " OFFSET 0".to_string(),
        };
        if let [(id, at)] = keys {
            qb.push(format_args!(" (SELECT * FROM {table} WHERE {a} = "))
                .push_bind(*id)
                .push(format_args!(" AND {b} = "))
                .push_bind(*at)
                .push(format_args!("{tail}) AS {alias}"));
            return;
        }
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let span = created_span(keys.iter().map(|(_, at)| *at));
        let (ids, ats): (Vec<uuid::Uuid>, Vec<i64>) = keys.into_iter().unzip();
        qb.push(" unnest(")
            .push_bind(ids)
            .push("::uuid[], ")
            .push_bind(ats)
            .push(format_args!(
                "::bigint[]) AS {alias}_probe(probe_key, probe_at) CROSS JOIN LATERAL \
                 (SELECT * FROM {table} WHERE {a} = {alias}_probe.probe_key \
                 AND {b} = {alias}_probe.probe_at AND {b} BETWEEN "
            ))
            .push_bind(span.0)
            .push(" AND ")
            .push_bind(span.1)
            .push(format_args!("{tail}) AS {alias}"));
    }

    /// ` col = ANY(the times)`, not their range: it prunes the partitions at planning just
    /// as well, and where the range, beside a batched UPDATE's join, was taken for the
    /// selective condition on a partition without statistics (PostgreSQL guesses 1/200 of
    /// the rows for any range) and read every row created in it, the list of times leaves
    /// the key's index the way in — in a transaction begun with [`Db::begin_indexed`]; with
    /// sequential scans allowed a young partition is still read whole (`bench/README.md`,
    /// "Batched UPDATEs by key").
    fn push_created_in(qb: &mut sqlx::QueryBuilder<Self>, col: &str, created: Vec<i64>) {
        qb.push(format_args!(" {col} = ANY("))
            .push_bind(distinct_created(created))
            .push("::bigint[])");
    }

    fn push_ids(qb: &mut sqlx::QueryBuilder<Self>, col: &str, ids: &[uuid::Uuid]) {
        if let [id] = ids {
            qb.push(format_args!(" {col} = ")).push_bind(*id);
            return;
        }
        qb.push(format_args!(" {col} IN (SELECT unnest("))
            .push_bind(ids.to_vec())
            .push("::uuid[]))");
    }

    fn push_texts(qb: &mut sqlx::QueryBuilder<Self>, col: &str, texts: &[String]) {
        if let [text] = texts {
            qb.push(format_args!(" {col} = ")).push_bind(text.clone());
            return;
        }
        qb.push(format_args!(" {col} IN (SELECT unnest("))
            .push_bind(texts.to_vec())
            .push("::text[]))");
    }

    /// Each key probes the index on `col` by itself: `unnest` of the sorted keys joined
    /// `LATERAL` to the rows of one key. `col IN (SELECT unnest(…))` on a column that is not
    /// unique is planned from the table's statistics, and without them (no autovacuum, no
    /// ANALYZE yet) PostgreSQL guesses 1/200 of the table per key and scans the whole table
    /// into a hash join: a cost that grew with the history (the parts' lines of 30 parts,
    /// 4.8 ms at 23,000 lines against 0.2 ms probed). `OFFSET 0` (or the lock) keeps the
    /// planner from folding the subquery back into that join.
    fn push_rows_by(
        qb: &mut sqlx::QueryBuilder<Self>,
        table: &str,
        alias: &str,
        col: &str,
        ids: &[uuid::Uuid],
        filter: &str,
        lock_order: Option<&str>,
    ) {
        let and = if filter.is_empty() {
            String::new()
        } else {
            format!(" AND {filter}")
        };
        let tail = match lock_order {
            Some(order) => format!(" ORDER BY {order} FOR UPDATE"),
            None => " OFFSET 0".to_string(),
        };
        if let [id] = ids {
            qb.push(format_args!(" (SELECT * FROM {table} WHERE {col} = "))
                .push_bind(*id)
                .push(format_args!("{and}{tail}) AS {alias}"));
            return;
        }
        let mut keys = ids.to_vec();
        keys.sort_unstable();
        keys.dedup();
        qb.push(" unnest(").push_bind(keys).push(format_args!(
            "::uuid[]) AS {alias}_probe(probe_key) CROSS JOIN LATERAL \
             (SELECT * FROM {table} WHERE {col} = {alias}_probe.probe_key{and}{tail}) AS {alias}"
        ));
    }
}

impl KeyFilter for Sqlite {
    /// The ids alone name the rows (they are unique); SQLite probes the index for an `IN`
    /// list by itself, and has no row lock (its one writer serializes the transactions).
    fn push_rows_at(
        qb: &mut sqlx::QueryBuilder<Self>,
        table: &str,
        alias: &str,
        (a, _): (&str, &str),
        keys: &[(uuid::Uuid, i64)],
        _lock: Option<&str>,
    ) {
        let ids: Vec<uuid::Uuid> = keys.iter().map(|(id, _)| *id).collect();
        qb.push(format_args!(" (SELECT * FROM {table} WHERE"));
        Self::push_ids(qb, a, &ids);
        qb.push(format_args!(") AS {alias}"));
    }

    /// No partitions: the range, which an index on the column can use.
    fn push_created_in(qb: &mut sqlx::QueryBuilder<Self>, col: &str, created: Vec<i64>) {
        let (lo, hi) = created_span(created);
        qb.push(format_args!(" {col} BETWEEN "))
            .push_bind(lo)
            .push(" AND ")
            .push_bind(hi);
    }

    fn push_ids(qb: &mut sqlx::QueryBuilder<Self>, col: &str, ids: &[uuid::Uuid]) {
        qb.push(format_args!(" {col} IN ("));
        let mut list = qb.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        qb.push(")");
    }

    fn push_texts(qb: &mut sqlx::QueryBuilder<Self>, col: &str, texts: &[String]) {
        qb.push(format_args!(" {col} IN ("));
        let mut list = qb.separated(", ");
        for t in texts {
            list.push_bind(t.clone());
        }
        qb.push(")");
    }

    /// SQLite plans an `IN` list on an indexed column as one probe per key; there is no row
    /// lock (its one writer serializes the transactions).
    fn push_rows_by(
        qb: &mut sqlx::QueryBuilder<Self>,
        table: &str,
        alias: &str,
        col: &str,
        ids: &[uuid::Uuid],
        filter: &str,
        _lock_order: Option<&str>,
    ) {
        qb.push(format_args!(" (SELECT * FROM {table} WHERE"));
        Self::push_ids(qb, col, ids);
        if !filter.is_empty() {
            qb.push(format_args!(" AND {filter}"));
        }
        qb.push(format_args!(") AS {alias}"));
    }
}

/// [`KeyFilter::push_rows_at`] for the builder's backend: the rows of `table` named by their
/// (`a`, `b`) = (id, creation time) `keys`, as the FROM item `alias`.
pub fn push_rows_at<DB: KeyFilter>(
    qb: &mut sqlx::QueryBuilder<DB>,
    table: &str,
    alias: &str,
    cols: (&str, &str),
    keys: &[(uuid::Uuid, i64)],
    lock: Option<&str>,
) {
    DB::push_rows_at(qb, table, alias, cols, keys, lock);
}

/// [`KeyFilter::push_texts`] for the builder's backend.
pub fn push_texts<DB: KeyFilter>(qb: &mut sqlx::QueryBuilder<DB>, col: &str, texts: &[String]) {
    DB::push_texts(qb, col, texts);
}

/// [`KeyFilter::push_created_in`] for the builder's backend: ` col` is one of the batch's
/// creation times, so the planner keeps only the partitions holding them (nearly always the
/// current month's) instead of planning and probing every one. Used by the batched UPDATEs of
/// partitioned tables.
pub fn push_created_in<DB: KeyFilter>(
    qb: &mut sqlx::QueryBuilder<DB>,
    col: &str,
    created: impl IntoIterator<Item = i64>,
) {
    DB::push_created_in(qb, col, created.into_iter().collect());
}

/// One column of `rows`, picked by `f`: a parameter of a statement that takes its rows as
/// an array per column (`unnest($1::uuid[], $2::bigint[], …)`, one text whatever the batch).
pub fn column<'a, T, U>(rows: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// A batch's creation times, each once and in order: the list that keeps a statement on
/// PostgreSQL to the partitions holding them (`= ANY` of it; [`push_created_in`] says why not
/// their range).
pub fn distinct_created(created: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let mut created: Vec<i64> = created.into_iter().collect();
    created.sort_unstable();
    created.dedup();
    created
}

/// The earliest and latest of `created` (`(0, 0)` for none): the bounds of a batch's
/// creation times (the probes of [`push_rows_at`], SQLite's [`push_created_in`]).
pub fn created_span(created: impl IntoIterator<Item = i64>) -> (i64, i64) {
    created
        .into_iter()
        .fold(None, |span: Option<(i64, i64)>, t| {
            Some(span.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))))
        })
        .unwrap_or((0, 0))
}

/// [`KeyFilter::push_rows_by`] for the builder's backend, every row of each key.
pub fn push_rows_by<DB: KeyFilter>(
    qb: &mut sqlx::QueryBuilder<DB>,
    table: &str,
    alias: &str,
    col: &str,
    ids: &[uuid::Uuid],
    lock_order: Option<&str>,
) {
    DB::push_rows_by(qb, table, alias, col, ids, "", lock_order);
}

/// [`KeyFilter::push_rows_by`] for the builder's backend, each key's rows that pass `filter`
/// (SQL without parameters), read without a lock.
pub fn push_rows_where<DB: KeyFilter>(
    qb: &mut sqlx::QueryBuilder<DB>,
    table: &str,
    alias: &str,
    col: &str,
    ids: &[uuid::Uuid],
    filter: &str,
) {
    DB::push_rows_by(qb, table, alias, col, ids, filter, None);
}

/// [`KeyFilter::push_ids`] for the builder's backend.
pub fn push_ids<DB: KeyFilter>(qb: &mut sqlx::QueryBuilder<DB>, col: &str, ids: &[uuid::Uuid]) {
    DB::push_ids(qb, col, ids);
}

#[cfg(test)]
mod wake_tests {
    use futures::FutureExt;

    use super::Wakes;

    /// Whether `queue`'s consumer, waiting since before `act`, was woken by it.
    fn woken(w: &Wakes, queue: &str, act: impl FnOnce()) -> bool {
        let signal = w.of(queue);
        let mut waiting = std::pin::pin!(signal.notified());
        waiting.as_mut().enable();
        act();
        waiting.now_or_never().is_some()
    }

    #[test]
    fn a_notification_wakes_the_queues_it_names_and_not_its_own_sender() {
        let (here, there) = (Wakes::new(), Wakes::new());
        let from_there = there.payload(&["validate", "route"]);
        assert!(woken(&here, "validate", || here.from_notification(&from_there)));
        assert!(woken(&here, "route", || here.from_notification(&from_there)));
        assert!(!woken(&here, "events", || here.from_notification(&from_there)));
        // Its own announcement: its consumers were woken at commit.
        let own = here.payload(&["validate"]);
        assert!(!woken(&here, "validate", || here.from_notification(&own)));
        // A payload naming no queue (an older sender, a manual NOTIFY) wakes every queue.
        assert!(woken(&here, "events", || here.from_notification("")));
        assert!(woken(&here, "events", || here.wake_all()));
        assert!(!woken(&here, "events", || here.wake("validate")));
    }
}

#[cfg(test)]
mod plan_tests {
    use std::str::FromStr;

    use sqlx::postgres::PgConnectOptions;

    use super::{no_jit, plan_mode};

    #[test]
    fn statements_are_planned_per_call_where_statistics_never_refresh_unless_the_url_says() {
        let url = "postgres://u@h/db?options=-c%20search_path%3Ds1";
        let opts = plan_mode(PgConnectOptions::from_str(url).unwrap(), false);
        let set = opts.get_options().unwrap_or_default();
        assert!(set.contains("search_path=s1"), "{set}");
        assert!(set.contains("plan_cache_mode=force_custom_plan"), "{set}");

        let opts = plan_mode(PgConnectOptions::from_str(url).unwrap(), true);
        assert_eq!(opts.get_options(), Some("-c search_path=s1"));

        let url = "postgres://u@h/db?options=-c%20plan_cache_mode%3Dauto";
        let opts = plan_mode(PgConnectOptions::from_str(url).unwrap(), false);
        assert_eq!(opts.get_options(), Some("-c plan_cache_mode=auto"));
    }

    #[test]
    fn statements_are_not_compiled_unless_the_url_says() {
        let no_jit = |url: &str| {
            let opts = no_jit(PgConnectOptions::from_str(url).unwrap());
            opts.get_options().unwrap_or_default().to_string()
        };
        assert_eq!(
            no_jit("postgres://u@h/db?options=-c%20search_path%3Ds1"),
            "-c search_path=s1 -c jit=off"
        );
        // A name or another setting that merely contains "jit" does not count.
        assert_eq!(
            no_jit("postgres://jit:pw@jit-host/jitdb?options=-c%20jit_above_cost%3D10"),
            "-c jit_above_cost=10 -c jit=off"
        );
        for set in ["-c%20jit%3Don", "-cjit%3Don", "--jit%3Don"] {
            let url = format!("postgres://u@h/db?options={set}");
            let got = no_jit(&url);
            assert!(!got.contains("jit=off"), "{set}: {got}");
        }
    }
}

#[cfg(test)]
mod batch_tests {
    use sqlx::{Execute, Postgres, QueryBuilder, Sqlite};

    use super::{BuildBatch, MAX_PREPARED_BINDS};

    /// An INSERT of `rows` rows of `cols` values each, as the batch writers build it.
    fn insert<DB>(rows: usize, cols: usize) -> QueryBuilder<DB>
    where
        DB: sqlx::Database,
        i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let mut qb = QueryBuilder::new("INSERT INTO t (a) ");
        qb.push_values(0..rows, |mut b, r| {
            for c in 0..cols {
                b.push_bind((r * cols + c) as i64);
            }
        });
        qb.push(" ON CONFLICT DO NOTHING");
        qb
    }

    #[test]
    fn a_batch_statement_is_kept_prepared_only_while_small() {
        let cols = 11;
        let most_rows = MAX_PREPARED_BINDS / cols;
        let kept = |rows| {
            let pg = Execute::persistent(&insert::<Postgres>(rows, cols).build_batch());
            let lite = Execute::persistent(&insert::<Sqlite>(rows, cols).build_batch());
            assert_eq!(pg, lite, "{rows} rows: both backends alike");
            pg
        };
        assert!(kept(1), "a quiet hour's batch of one is kept");
        assert!(kept(most_rows), "{most_rows} rows of {cols} fit");
        assert!(!kept(most_rows + 1), "one row more does not");
        assert!(
            !kept(256),
            "an overload's batch is parsed for its run alone"
        );
        let mut qb = insert::<Postgres>(200, 3);
        assert!(!Execute::persistent(&qb.build_batch_as::<(i64,)>()));
        let mut qb = insert::<Postgres>(2, 3);
        assert!(Execute::persistent(&qb.build_batch_scalar::<i64>()));
        // A statement built without it stays as sqlx keeps every statement.
        assert!(Execute::persistent(&insert::<Postgres>(256, cols).build()));
    }
}
