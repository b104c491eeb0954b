//! The job queue: retries and dead letters, leases, priorities, schedules, admin API.

use std::sync::Mutex;
use std::time::Duration;

use khaacho::app::App;
use khaacho::base::time::now_ms;
use khaacho::orders::pipeline::ProcessOrders;
use khaacho::queue::runtime::{drain, reap_expired};
use khaacho::queue::schedule::Schedule;
use khaacho::queue::{
    EnqueueOptions, Job, JobContext, JobError, Priority, Registry, RetryPolicy, enqueue,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, audit_rows, sample};

#[derive(Serialize, Deserialize)]
struct AlwaysFails {}

impl Job for AlwaysFails {
    type Host = App;
    const KIND: &'static str = "test.always_fails";
    const QUEUE: &'static str = "test";
    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            timeout: Duration::from_secs(5),
        }
    }
    async fn run(self, ctx: JobContext<App>) -> Result<(), JobError> {
        Err(JobError::Retryable(anyhow::anyhow!(
            "boom on attempt {}",
            ctx.attempt
        )))
    }
}

static RAN: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[derive(Serialize, Deserialize, Default)]
struct Record {
    tag: String,
}

impl Job for Record {
    type Host = App;
    const KIND: &'static str = "test.record";
    const QUEUE: &'static str = "test";
    async fn run(self, _ctx: JobContext<App>) -> Result<(), JobError> {
        RAN.lock().unwrap().push(self.tag);
        Ok(())
    }
}

fn test_registry() -> Registry<App> {
    khaacho::jobs::registry()
        .register::<AlwaysFails>()
        .register::<Record>()
}

async fn add<J: Job>(t: &TestApp, job: &J, opts: EnqueueOptions) -> uuid::Uuid {
    let mut tx = t.app.db().begin().await.unwrap();
    let id = enqueue(&mut tx, job, opts).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    id
}

/// Drains repeatedly (retries are scheduled a few ms ahead) until `done` holds.
async fn drain_until(t: &TestApp, registry: &Registry<App>, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        drain(&t.app, registry).await.unwrap();
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn failing_job_goes_dead_with_every_error_and_can_be_retried_or_discarded() {
    let t = TestApp::spawn().await;
    let reg = test_registry();
    let id = add(&t, &AlwaysFails {}, EnqueueOptions::default()).await;
    let path = format!("/api/v1/admin/jobs/{id}");
    drain_until(&t, &reg, async || {
        t.get_json(&path).await["status"] == "dead"
    })
    .await;
    let job = t.get_json(&path).await;
    assert_eq!(job["attempts"], 3);
    let errors: Vec<_> = job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        errors,
        [
            "boom on attempt 1",
            "boom on attempt 2",
            "boom on attempt 3"
        ]
    );
    assert_eq!(job["last_error"], "boom on attempt 3");
    let dead = t.get_json("/api/v1/admin/jobs?status=dead").await;
    assert_eq!(dead["items"].as_array().unwrap().len(), 1);

    let r = t
        .client
        .post(t.url(&format!("{path}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let retried: Value = r.json().await.unwrap();
    assert_eq!(
        (retried["status"].as_str(), retried["attempts"].as_u64()),
        (Some("queued"), Some(0))
    );
    assert_eq!(
        retried["errors"].as_array().unwrap().len(),
        3,
        "history is kept"
    );
    drain_until(&t, &reg, async || {
        t.get_json(&path).await["status"] == "dead"
    })
    .await;
    assert_eq!(
        t.get_json(&path).await["errors"].as_array().unwrap().len(),
        6
    );

    let r = t.client.delete(t.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_problem(t.get(&path).await, 404).await;
    let r = t
        .client
        .post(t.url(&format!("{path}/retry")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    assert_problem(t.get("/api/v1/admin/jobs?status=bogus").await, 400).await;
    // Each change audited once, in its own transaction; the refused retry left nothing.
    for action in ["job.retry", "job.discard"] {
        let rows = audit_rows(&t, &format!("action={action}")).await;
        assert_eq!(rows.len(), 1, "{action}: {rows:?}");
        assert_eq!(rows[0]["entity_id"], id.to_string());
    }
}

#[tokio::test]
async fn exhausted_order_job_fails_the_order_and_a_retry_processes_it() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let sku = t.get_json("/api/v1/products?limit=1").await["items"][0]["sku"]
        .as_str()
        .unwrap()
        .to_string();
    let unit = t.get_json(&format!("/api/v1/products/{sku}")).await["unit"]
        .as_str()
        .unwrap()
        .to_string();
    let a = t
        .order(&retailer, json!([{ "sku": sku, "qty": 1, "unit": unit }]))
        .await;
    let order_id = a["order_id"].as_str().unwrap().to_string();
    // Simulate a worker that kept dying: the job's last claim used its final attempt.
    khaacho::with_write!(t.app.db(), c => sqlx::query(
        "UPDATE jobs SET status = 'running', attempts = max_attempts, locked_by = 'gone', locked_until_ms = $1 \
         WHERE kind = 'order.validate'")
        .bind(now_ms() - 1)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
    .unwrap();
    assert_eq!(
        reap_expired(&t.app, &khaacho::jobs::registry())
            .await
            .unwrap(),
        1
    );
    let failed = t.get_json(&format!("/api/v1/orders/{order_id}")).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["reject_reason"], "processing_failed");
    let dead = t
        .get_json("/api/v1/admin/jobs?status=dead&kind=order.validate")
        .await;
    let job_id = dead["items"][0]["id"].as_str().unwrap().to_string();
    assert!(
        dead["items"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("lease")
    );
    let r = t
        .client
        .post(t.url(&format!("/api/v1/admin/jobs/{job_id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The retried validation (routing in its run), and the order.changed of the intake, of
    // the failure and of that run (failed → received → validated → routed, written at once).
    assert_eq!(t.run_jobs().await, 4);
    let order = t.get_json(&format!("/api/v1/orders/{order_id}")).await;
    assert_eq!(order["status"], "routed");
    let path: Vec<_> = order["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        path,
        ["received", "failed", "received", "validated", "routed"]
    );
}

#[tokio::test]
async fn a_dead_workers_job_is_rerun_after_its_lease_and_the_order_processed_once() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let page = t.get_json("/api/v1/products?limit=3").await;
    let lines: Vec<Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!({ "sku": p["sku"], "qty": 1, "unit": p["unit"] }))
        .collect();
    let a = t.order(&retailer, json!(lines)).await;
    let order_id = a["order_id"].as_str().unwrap().to_string();
    // A worker claimed the job just now (a fresh lease: 2 s in the test settings, heartbeats
    // every 0.5 s), then died: nobody finishes it.
    khaacho::with_write!(t.app.db(), c => sqlx::query(
        "UPDATE jobs SET status = 'running', attempts = 1, locked_by = 'crashed-worker', locked_until_ms = $1 \
         WHERE kind = 'order.validate'")
        .bind(now_ms() + 2_000)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
    .unwrap();
    assert_eq!(
        t.run_jobs().await,
        1,
        "only the intake's order.changed runs: a leased job is not claimed again"
    );
    let reap = || async {
        reap_expired(&t.app, &khaacho::jobs::registry())
            .await
            .unwrap()
    };
    assert_eq!(reap().await, 0, "heartbeat fresh, lease valid");
    // Two heartbeats missed, lease still valid.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    if t.app.db().is_postgres() {
        // No session holds the worker's liveness lock: it is gone, take the job back now.
        assert_eq!(reap().await, 1, "taken back before its lease ran out");
    } else {
        // No lock file names this worker, so nothing says it is gone: its lease decides.
        assert_eq!(reap().await, 0, "lease still valid");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(reap().await, 1);
    }
    assert_eq!(
        t.run_jobs().await,
        2,
        "the validation (routing in its run) and the one order.changed of its changes"
    );
    // The step's effect committed but the job row survived (e.g. the worker died between
    // commit and delete): running it again must change nothing.
    let order_uuid: uuid::Uuid = order_id.parse().unwrap();
    add(
        &t,
        &ProcessOrders {
            order_id: order_uuid,
        },
        EnqueueOptions::default(),
    )
    .await;
    assert_eq!(t.run_jobs().await, 1);
    let order = t.get_json(&format!("/api/v1/orders/{order_id}")).await;
    let to: Vec<_> = order["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(order["status"], "routed", "{order}");
    assert_eq!(
        to,
        ["received", "validated", "routed"],
        "processed exactly once"
    );
    assert_eq!(t.count("jobs").await, 0);
}

#[tokio::test]
async fn priorities_and_run_at_decide_the_order_of_work() {
    let t = TestApp::spawn().await;
    let reg = test_registry();
    let tag = |s: &str| format!("{}-{s}", t.addr.port());
    let now = now_ms();
    let low = EnqueueOptions {
        priority: Some(Priority::Low),
        ..Default::default()
    };
    let high = EnqueueOptions {
        priority: Some(Priority::High),
        ..Default::default()
    };
    let later = EnqueueOptions {
        run_at_ms: Some(now + 400),
        priority: Some(Priority::High),
        ..Default::default()
    };
    add(&t, &Record { tag: tag("low") }, low).await;
    add(
        &t,
        &Record { tag: tag("normal") },
        EnqueueOptions::default(),
    )
    .await;
    add(&t, &Record { tag: tag("later") }, later).await;
    add(&t, &Record { tag: tag("high") }, high).await;
    let mine = || -> Vec<String> {
        let prefix = format!("{}-", t.addr.port());
        RAN.lock()
            .unwrap()
            .iter()
            .filter(|s| s.starts_with(&prefix))
            .cloned()
            .collect()
    };
    assert_eq!(drain(&t.app, &reg).await.unwrap(), 3);
    assert_eq!(mine(), [tag("high"), tag("normal"), tag("low")]);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(drain(&t.app, &reg).await.unwrap(), 1);
    assert_eq!(mine().last().unwrap(), &tag("later"));
    // A dedupe key makes a second enqueue a no-op while the first job exists.
    let keyed = || EnqueueOptions {
        dedupe_key: Some(tag("once")),
        ..Default::default()
    };
    let mut tx = t.app.db().begin().await.unwrap();
    assert!(
        enqueue(&mut tx, &Record { tag: tag("dup") }, keyed())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        enqueue(&mut tx, &Record { tag: tag("dup") }, keyed())
            .await
            .unwrap()
            .is_none()
    );
    tx.commit().await.unwrap();
    assert_eq!(drain(&t.app, &reg).await.unwrap(), 1);
}

#[tokio::test]
async fn a_schedule_tick_fires_once_however_many_nodes_try() {
    let t = TestApp::spawn().await;
    let other_node = khaacho::app::App::connect(crate::helpers::test_settings(&t.database_url))
        .await
        .unwrap();
    let s = Schedule::new::<Record>("test-tick", "*/5 * * * * *").unwrap();
    let tick = 1_800_000_000_000;
    let (a, b) = tokio::join!(s.fire(&t.app, tick), s.fire(&other_node, tick));
    assert_eq!(
        u8::from(a.unwrap()) + u8::from(b.unwrap()),
        1,
        "exactly one node fires the tick"
    );
    assert!(!s.fire(&t.app, tick).await.unwrap());
    assert!(
        s.fire(&t.app, tick + 5_000).await.unwrap(),
        "the next tick fires"
    );
    assert_eq!(t.count("schedule_ticks").await, 2);
    drain(&t.app, &test_registry()).await.unwrap();
    let done = khaacho::with_latest!(t.app.db(), c => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM schedule_ticks WHERE done_at_ms IS NOT NULL").fetch_one(c).await)
    .unwrap();
    assert_eq!(done, 2);
}

#[tokio::test]
async fn a_failing_batch_falls_back_to_one_job_at_a_time() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let a = t
        .order(
            &retailer,
            json!([{ "sku": "SUGAR-50", "qty": 2, "unit": "kg" }]),
        )
        .await;
    let b = t
        .order(
            &retailer,
            json!([{ "sku": "MAIDA-50", "qty": 3, "unit": "kg" }]),
        )
        .await;
    // A job whose order does not exist makes the batch fail; alone it is final (dead), and the
    // other two orders of the batch are still validated.
    let ghost = add(
        &t,
        &ProcessOrders {
            order_id: uuid::Uuid::now_v7(),
        },
        EnqueueOptions::default(),
    )
    .await;
    // Three validations (run alone after the batch failed, each routing its order), and the
    // order.changed of two intakes and of two validation runs (each run's validation and
    // routing in one).
    assert_eq!(t.run_jobs().await, 7);
    for a in [&a, &b] {
        let id = a["order_id"].as_str().unwrap();
        assert_eq!(
            t.get_json(&format!("/api/v1/orders/{id}/status")).await["status"],
            "routed"
        );
    }
    let job = t.get_json(&format!("/api/v1/admin/jobs/{ghost}")).await;
    assert_eq!(job["status"], "dead");
    assert!(
        job["last_error"].as_str().unwrap().contains("do not exist"),
        "{job}"
    );
    let metrics = t.metrics().await;
    assert!(metrics.contains("khaacho_job_batch_fallbacks_total{kind=\"order.validate\"}"));
}

/// PostgreSQL: a commit that enqueued jobs is announced on the jobs channel to the other
/// processes (a `LISTEN` on another connection hears it), once it committed.
#[tokio::test]
async fn an_enqueue_is_announced_to_other_processes_after_commit() {
    let t = TestApp::spawn().await;
    let khaacho::base::db::Backend::Pg(pool) = t.app.db().backend() else {
        return; // SQLite: one process owns the file; wake-ups are in-process.
    };
    let mut listener = sqlx::postgres::PgListener::connect_with(pool)
        .await
        .unwrap();
    listener
        .listen(khaacho::base::db::JOBS_CHANNEL)
        .await
        .unwrap();
    let mut tx = t.app.db().begin().await.unwrap();
    khaacho::queue::enqueue(&mut tx, &AlwaysFails {}, Default::default())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await;
    assert!(
        matches!(heard, Ok(Ok(_))),
        "announced after commit: {heard:?}"
    );
}

/// PostgreSQL plans our prepared statements per call where its statistics never refresh by
/// themselves (autovacuum off, as on the test machines), and by its own choice where they
/// do: every pooled connection says which; reads by a key are planned once, on their own
/// connections. Where statistics never refresh, the workers vacuum `jobs` themselves.
#[tokio::test]
async fn postgres_plans_and_vacuums_by_whether_statistics_refresh() {
    let t = TestApp::spawn().await;
    if !t.app.db().is_postgres() {
        return;
    }
    let (mode, refreshes): (String, bool) = khaacho::with_latest!(t.app.db(), c => sqlx::query_as(
        "SELECT current_setting('plan_cache_mode'), \
         current_setting('autovacuum') = 'on' AND current_setting('track_counts') = 'on'")
        .fetch_one(c)
        .await)
    .unwrap();
    let want = if refreshes {
        "auto"
    } else {
        "force_custom_plan"
    };
    assert_eq!(mode, want, "autovacuum and track_counts on: {refreshes}");
    // Reads by a key go to a few connections of their own, in the same schema, that plan
    // each statement once and never as a sequential scan.
    let (keyed_mode, seqscan, keyed_schema): (String, String, String) =
        khaacho::with_keyed!(t.app.db(), c => sqlx::query_as(
        "SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan'), current_schema()")
        .fetch_one(c)
        .await)
        .unwrap();
    let schema: String = khaacho::with_latest!(t.app.db(), c => sqlx::query_scalar(
        "SELECT current_schema()").fetch_one(c).await)
    .unwrap();
    assert_eq!(
        (keyed_mode.as_str(), seqscan.as_str(), keyed_schema.as_str()),
        ("force_generic_plan", "off", schema.as_str())
    );
    // Nothing is compiled to machine code, not even a scan priced at 10^10 with sequential
    // scans off (JIT's threshold is a cost of 100,000): the subscriptions' read has no index
    // for its filter.
    let mut tx = t.app.db().begin_indexed().await.unwrap();
    let plan: serde_json::Value = khaacho::with_tx!(&mut tx, c => sqlx::query_scalar(
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM webhook_subscriptions \
         WHERE active AND deleted_at_ms IS NULL")
        .fetch_one(c)
        .await)
    .unwrap();
    // The statements of an indexed transaction between `plan_generic(true)` and
    // `plan_generic(false)` are planned once per connection; after it, as the connection plans.
    let setting = "SELECT current_setting('plan_cache_mode')";
    let mut modes = Vec::new();
    for generic in [true, false] {
        tx.plan_generic(generic).await.unwrap();
        let m: String =
            khaacho::with_tx!(&mut tx, c => sqlx::query_scalar(setting).fetch_one(c).await)
                .unwrap();
        modes.push(m);
    }
    assert_eq!(modes, ["force_generic_plan", want]);
    tx.rollback().await.unwrap();
    let after: String = khaacho::with_latest!(t.app.db(), c => sqlx::query_scalar(setting)
        .fetch_one(c)
        .await)
    .unwrap();
    assert_eq!(after, want, "a transaction's setting ends with it");
    let top = &plan[0];
    assert!(
        top["Plan"]["Total Cost"].as_f64().unwrap() > 100_000.0,
        "priced past JIT's threshold: {plan}"
    );
    assert!(top.get("JIT").is_none(), "not compiled: {plan}");
    // Without autovacuum the workers vacuum the queue's table themselves.
    assert_eq!(t.app.db().needs_own_vacuum(), !refreshes);
    khaacho::queue::runtime::vacuum_jobs(t.app.db())
        .await
        .unwrap();
    let vacuumed: bool = khaacho::with_latest!(t.app.db(), c => sqlx::query_scalar(
        "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables \
         WHERE relname = 'jobs' AND schemaname = current_schema()")
        .fetch_one(c)
        .await)
    .unwrap();
    assert!(vacuumed, "jobs vacuumed");
}

/// A batch's rows by a column that is not unique (the lines of parts, the parts of orders)
/// are found by one index probe per key whatever the table's statistics: on a table that was
/// never analyzed (no autovacuum), `col IN (SELECT unnest(…))` was planned as a scan of the
/// whole table, a cost that grew with the history.
#[tokio::test]
async fn rows_by_a_non_unique_key_are_probed_per_key_without_statistics() {
    let t = TestApp::spawn().await;
    let khaacho::base::db::Backend::Pg(pool) = t.app.db().backend() else {
        return; // SQLite: no planner to mislead, no partitions.
    };
    for sql in [
        "CREATE TABLE probe_rows (k uuid NOT NULL, n integer NOT NULL, v text NOT NULL, PRIMARY KEY (k, n))",
        "INSERT INTO probe_rows SELECT md5(i::text)::uuid, n, repeat('x', 40) \
         FROM generate_series(1, 6000) i, generate_series(1, 4) n",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    let mut keys: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT DISTINCT k FROM probe_rows ORDER BY k DESC LIMIT 60")
            .fetch_all(pool)
            .await
            .unwrap();
    keys.push(keys[0]); // a key named twice is read once
    keys.push(uuid::Uuid::now_v7()); // a key with no rows
    // Every row of each key, or (`filter`) each key's rows that pass it, narrowed inside the
    // probe.
    let query = |explain: bool, filter: &str| {
        let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(if explain {
            "EXPLAIN SELECT r.k, r.n FROM"
        } else {
            "SELECT r.k, r.n FROM"
        });
        if filter.is_empty() {
            khaacho::base::db::push_rows_by(&mut qb, "probe_rows", "r", "k", &keys, None);
        } else {
            khaacho::base::db::push_rows_where(&mut qb, "probe_rows", "r", "k", &keys, filter);
        }
        qb.push(" ORDER BY r.k, r.n");
        qb
    };
    for filter in ["", "n = 2"] {
        let plan: Vec<String> = query(true, filter)
            .build_query_scalar()
            .fetch_all(pool)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan on probe_rows"), "{filter}: {plan}");
    }
    let rows: Vec<(uuid::Uuid, i32)> = query(false, "")
        .build_query_as()
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 60 * 4, "each key's rows once");
    let mut want = keys[..60].to_vec();
    want.sort_unstable();
    let got: Vec<uuid::Uuid> = rows.iter().step_by(4).map(|r| r.0).collect();
    assert_eq!(got, want);
    // Locked for update, key by key: the same rows.
    let mut tx = pool.begin().await.unwrap();
    let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT r.k, r.n FROM");
    khaacho::base::db::push_rows_by(&mut qb, "probe_rows", "r", "k", &keys, Some("n"));
    qb.push(" ORDER BY r.k, r.n");
    let locked: Vec<(uuid::Uuid, i32)> = qb.build_query_as().fetch_all(&mut *tx).await.unwrap();
    assert_eq!(locked, rows);
    tx.rollback().await.unwrap();
    // Filtered: each key's one row that passes.
    let rows: Vec<(uuid::Uuid, i32)> = query(false, "n = 2")
        .build_query_as()
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), want);
    assert!(rows.iter().all(|r| r.1 == 2));
}

/// A batch's rows named by (id, creation time) — the orders of a batch of changes, their
/// lines — are read one index probe per key, whatever the spread of the creation times and
/// the statistics: the semi-join with the batch's creation-time range beside it (for
/// partition pruning) was planned, on a partition never analysed, as a read of every row
/// created in that range. The range still prunes: one partition is planned.
#[tokio::test]
async fn rows_by_id_and_creation_time_are_probed_per_key_whatever_the_range() {
    let t = TestApp::spawn().await;
    let khaacho::base::db::Backend::Pg(pool) = t.app.db().backend() else {
        return; // SQLite: no planner to mislead, no partitions.
    };
    for sql in [
        "CREATE TABLE probe_at (id uuid NOT NULL, at bigint NOT NULL, v text NOT NULL, \
         PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
        "CREATE TABLE probe_at_old PARTITION OF probe_at FOR VALUES FROM (0) TO (1000000)",
        "CREATE TABLE probe_at_now PARTITION OF probe_at FOR VALUES FROM (1000000) TO (2000000)",
        "CREATE INDEX ON probe_at (at, id)",
        "INSERT INTO probe_at SELECT md5(i::text)::uuid, 1000000 + i * 10, repeat('x', 40) \
         FROM generate_series(1, 20000) i",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    // Sixty keys spread over the whole partition, one named twice, one that is not there.
    let mut keys: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT id, at FROM probe_at WHERE (at / 10) % 333 = 0 ORDER BY at LIMIT 60",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(keys.len(), 60);
    keys.push(keys[7]);
    keys.push((uuid::Uuid::now_v7(), 1_500_000));
    let query = |explain: bool, lock: Option<&str>| {
        let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(if explain {
            "EXPLAIN SELECT p.id, p.at FROM"
        } else {
            "SELECT p.id, p.at FROM"
        });
        khaacho::base::db::push_rows_at(&mut qb, "probe_at", "p", ("id", "at"), &keys, lock);
        qb.push(" ORDER BY p.id");
        qb
    };
    let plan: Vec<String> = query(true, None)
        .build_query_scalar()
        .fetch_all(pool)
        .await
        .unwrap();
    let plan = plan.join("\n");
    for scan in ["Seq Scan", "Bitmap Heap Scan"] {
        assert!(!plan.contains(scan), "{scan}: {plan}");
    }
    assert!(!plan.contains("probe_at_old"), "pruned: {plan}");
    let rows: Vec<(uuid::Uuid, i64)> = query(false, None)
        .build_query_as()
        .fetch_all(pool)
        .await
        .unwrap();
    let mut want = keys[..60].to_vec();
    want.sort_unstable();
    assert_eq!(rows, want, "each key's row once");
    // Locked for update, key by key: the same rows.
    let mut tx = pool.begin().await.unwrap();
    let locked: Vec<(uuid::Uuid, i64)> = query(false, Some("FOR UPDATE"))
        .build_query_as()
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(locked, want);
    tx.rollback().await.unwrap();
}

/// A batched UPDATE of rows by their keys, in a transaction begun with `begin_indexed`, is
/// one index probe per key on a partition never analysed, the partitions kept to those
/// holding the batch's creation times; begun plainly, PostgreSQL prices a read of the whole
/// young partition below the probes. The setting lasts for the transaction only.
#[tokio::test]
async fn batched_updates_by_key_probe_each_key_in_an_indexed_transaction() {
    use khaacho::base::db::TxInner;
    let t = TestApp::spawn().await;
    let khaacho::base::db::Backend::Pg(pool) = t.app.db().backend() else {
        return; // SQLite: no partitions, no planner setting.
    };
    for sql in [
        "CREATE TABLE probe_lines (id uuid NOT NULL, at bigint NOT NULL, n integer NOT NULL, \
         v text NOT NULL, PRIMARY KEY (id, at, n)) PARTITION BY RANGE (at)",
        "CREATE TABLE probe_lines_old PARTITION OF probe_lines FOR VALUES FROM (0) TO (1000000)",
        "CREATE TABLE probe_lines_now PARTITION OF probe_lines FOR VALUES FROM (1000000) TO (2000000)",
        "INSERT INTO probe_lines SELECT md5(i::text)::uuid, 1000000 + i * 10, n, repeat('x', 40) \
         FROM generate_series(1, 2000) i, generate_series(1, 3) n",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    let keys: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT DISTINCT id, at FROM probe_lines WHERE (at / 10) % 13 = 0 ORDER BY at LIMIT 150",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(keys.len(), 150);
    let update = |explain: bool| {
        let mut qb =
            sqlx::QueryBuilder::<sqlx::Postgres>::new(if explain { "EXPLAIN " } else { "" });
        qb.push("UPDATE probe_lines SET v = 'y' FROM unnest(")
            .push_bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
            .push("::uuid[], ")
            .push_bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
            .push("::bigint[]) AS k(id, at) WHERE probe_lines.id = k.id AND probe_lines.at = k.at AND");
        khaacho::base::db::push_created_in(&mut qb, "probe_lines.at", keys.iter().map(|k| k.1));
        qb
    };
    async fn plan_in(
        tx: &mut khaacho::base::db::Tx,
        qb: &mut sqlx::QueryBuilder<sqlx::Postgres>,
    ) -> String {
        let TxInner::Pg(c) = tx.inner_mut() else {
            unreachable!()
        };
        let lines: Vec<String> = qb.build_query_scalar().fetch_all(&mut **c).await.unwrap();
        lines.join("\n")
    }
    let mut plain = t.app.db().begin().await.unwrap();
    let plan = plan_in(&mut plain, &mut update(true)).await;
    assert!(
        plan.contains("Seq Scan on probe_lines_now"),
        "the young partition read whole: {plan}"
    );
    plain.rollback().await.unwrap();

    let mut tx = t.app.db().begin_indexed().await.unwrap();
    let plan = plan_in(&mut tx, &mut update(true)).await;
    for scan in ["Seq Scan", "Bitmap Heap Scan"] {
        assert!(!plan.contains(scan), "{scan}: {plan}");
    }
    assert!(!plan.contains("probe_lines_old"), "pruned: {plan}");
    let TxInner::Pg(c) = tx.inner_mut() else {
        unreachable!()
    };
    let done = update(false).build().execute(&mut **c).await.unwrap();
    assert_eq!(
        done.rows_affected(),
        150 * 3,
        "every line of every key, once"
    );
    tx.commit().await.unwrap();
    // SET LOCAL: the connection is back to its own setting for whoever takes it next.
    let mut conns = Vec::new();
    for _ in 0..4 {
        let mut c = pool.acquire().await.unwrap();
        let on: String = sqlx::query_scalar("SHOW enable_seqscan")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(on, "on");
        conns.push(c);
    }
}

/// Orders placed one after another, while the validation queue has nothing else to do, are
/// validated together: the consumer woken by the first waits `queue.linger_ms` for the
/// others and runs them as one batch (without it, each would be claimed, and its statements
/// paid, alone).
#[tokio::test]
async fn jobs_arriving_together_on_an_idle_queue_run_as_one_batch() {
    // Long enough that three requests in a row fit in it on a busy test machine.
    let t = TestApp::spawn_working(|s| s.queue.linger_ms = 2_000).await;
    t.seed().await;
    let retailer = t.retailer().await;
    let mut ids = Vec::new();
    for sku in ["SUGAR-50", "MAIDA-50", "SUGAR-50"] {
        let placed = t
            .order(&retailer, json!([{ "sku": sku, "qty": 2, "unit": "kg" }]))
            .await;
        ids.push(placed["order_id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let mut status = Value::Null;
        for _ in 0..300 {
            status = t.get_json(&format!("/api/v1/orders/{id}/status")).await["status"].clone();
            if status != "received" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_ne!(status, "received", "order {id} was never validated");
    }
    let metrics = t.metrics().await;
    let value = |name: &str| sample(&metrics, &format!("{name}{{kind=\"order.validate\"}}"));
    assert_eq!(
        (
            value("khaacho_job_batch_size_count"),
            value("khaacho_job_batch_size_sum")
        ),
        (Some(1.0), Some(3.0)),
        "one validation batch of the three orders"
    );
}

/// Every process makes sure of the months' partitions as it starts, and a deploy starts
/// several together: run at once, none fails and each missing partition is made once (two
/// sessions' `CREATE TABLE IF NOT EXISTS` of one table can both pass the check and one then
/// fails on the catalog's unique index).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_make_each_partition_once() {
    let t = TestApp::spawn().await;
    let khaacho::base::db::Backend::Pg(pool) = t.app.db().backend() else {
        return; // SQLite: no partitions.
    };
    let tables = khaacho::maintenance::PARTITIONED;
    let months = khaacho::maintenance::month_ranges(now_ms(), khaacho::maintenance::MONTHS_AHEAD);
    let (last, _, _) = months.last().unwrap();
    for round in 0..3 {
        // The farthest month's partitions (empty) are missing again, as when a new month began.
        for table in tables {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}_{last}")))
                .execute(pool)
                .await
                .unwrap();
        }
        let runs: Vec<_> = (0..8)
            .map(|_| {
                let db = t.app.db().clone();
                tokio::spawn(async move { khaacho::maintenance::ensure_partitions(&db).await })
            })
            .collect();
        let mut made = 0;
        for run in runs {
            made += run.await.unwrap().expect("no run fails");
        }
        assert_eq!(made, 3, "round {round}: each partition made once");
        for table in tables {
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(format!("{table}_{last}"))
                .fetch_one(pool)
                .await
                .unwrap();
            assert!(exists, "{table}_{last}");
        }
    }
}
