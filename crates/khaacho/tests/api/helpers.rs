//! Spawning the app for black-box tests on the backend chosen by `KHAACHO_TEST_DATABASE_URL`
//! (a `postgres://` URL runs every test in a fresh schema; unset means a fresh SQLite file).

use std::net::SocketAddr;

use khaacho::app::App;
use khaacho::auth::Role;
use khaacho::config::Settings;
use khaacho::server::{self, Roles};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A running API on a random port over a fresh database; jobs run only when asked.
/// `client` sends an operator's access token with every request; [`TestApp::client_as`]
/// and [`TestApp::token`] act as other roles, [`TestApp::anonymous`] as nobody.
pub struct TestApp {
    pub addr: SocketAddr,
    pub app: App,
    pub client: reqwest::Client,
    pub anonymous: reqwest::Client,
    pub database_url: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// A fresh database URL: a new PostgreSQL schema or a new SQLite file in `dir`.
pub async fn fresh_database(dir: &std::path::Path) -> String {
    match std::env::var("KHAACHO_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let schema = format!("t_{}", Uuid::now_v7().simple());
            let pool = sqlx::PgPool::connect(&url)
                .await
                .expect("PostgreSQL for tests");
            drop_old_schemas(&pool).await;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}options=-c%20search_path%3D{schema}")
        }
        _ => format!("sqlite://{}", dir.join("test.db").display()),
    }
}

/// Drops the test schemas (`t_<uuidv7>`, the UUID carrying its creation time) made more than
/// an hour ago, which runs that did not go through `scripts/test` leave behind (hundreds
/// pile up, and slow the server's checkpoints and any benchmark after them). One test
/// process at a time sweeps (an advisory lock; the others go on at once).
async fn drop_old_schemas(pool: &sqlx::PgPool) {
    const SWEEP_LOCK: i64 = 0x6b68_6163_686f; // "khacho"
    let Ok(mut c) = pool.acquire().await else {
        return;
    };
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(SWEEP_LOCK)
        .fetch_one(&mut *c)
        .await
        .unwrap_or(false);
    if !locked {
        return;
    }
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname ~ '^t_[0-9a-f]{32}$' \
         AND ('x' || substr(nspname, 3, 12))::bit(48)::bigint < (extract(epoch FROM now()) * 1000)::bigint - 3600000",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap_or_default();
    for schema in old {
        let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&mut *c)
            .await;
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(SWEEP_LOCK)
        .execute(&mut *c)
        .await;
}

/// Settings for tests: fast retries, small leases.
#[allow(clippy::field_reassign_with_default)]
pub fn test_settings(database_url: &str) -> Settings {
    let mut s = Settings::default();
    s.database_url = Some(database_url.to_string());
    s.db_max_connections = 4;
    s.queue.backoff_base_ms = 1;
    s.queue.backoff_cap_ms = 5;
    s.queue.lease_ms = 2_000;
    s.queue.heartbeat_ms = 500;
    s.queue.reaper_interval_ms = 200;
    s.queue.poll_interval_ms = 50;
    // Jobs run only when a test asks, so the backlog's age means nothing here; the
    // back-pressure tests turn it on.
    s.backpressure.enabled = false;
    s
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Moves the app's clock forward (never back, less than a day) to `minute` minutes after
    /// midnight, Nepal time, for tests whose outcome depends on the time of day (working
    /// hours, Nepal days). Moved back, the clock would leave jobs queued at wall time not yet
    /// due.
    pub fn clock_to_nepal_minute(&self, minute: i64) {
        const DAY_MS: i64 = 86_400_000;
        let offset_ms = i64::from(khaacho::base::time::nepal().local_minus_utc()) * 1000;
        let nepal_ms = (self.app.clock().now_ms() + offset_ms).rem_euclid(DAY_MS);
        self.app
            .clock()
            .advance((minute * 60_000 - nepal_ms).rem_euclid(DAY_MS));
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_roles(configure, false).await
    }

    /// Like [`TestApp::spawn_with`], with the queue workers running in the background (for
    /// clients that wait on the server's work, like `khaacho chat`).
    pub async fn spawn_working(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_roles(configure, true).await
    }

    /// Like [`TestApp::spawn_with`], serving on `listener` (a socket with test-made options).
    pub async fn spawn_on(
        listener: tokio::net::TcpListener,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::spawn_listening(configure, false, Some(listener)).await
    }

    async fn spawn_roles(configure: impl FnOnce(&mut Settings), workers: bool) -> Self {
        Self::spawn_listening(configure, workers, None).await
    }

    async fn spawn_listening(
        configure: impl FnOnce(&mut Settings),
        workers: bool,
        listener: Option<tokio::net::TcpListener>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database_url = fresh_database(dir.path()).await;
        let mut settings = test_settings(&database_url);
        configure(&mut settings);
        let app = App::connect(settings).await.expect("app connects");
        let listener = match listener {
            Some(l) => l,
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(server::run(
            app.clone(),
            Roles { api: true, workers },
            Some(listener),
            shutdown.clone(),
        ));
        let anonymous = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let token = issue(&app, Role::Operator, None);
        let client = bearer_client(&token);
        Self {
            addr,
            app,
            client,
            anonymous,
            database_url,
            shutdown,
            _dir: dir,
        }
    }

    /// An access token for a (made-up) user of `role` in `tenant`, signed by this app.
    pub fn token(&self, role: Role, tenant: Option<Uuid>) -> String {
        issue(&self.app, role, tenant)
    }

    /// A client that acts as a user of `role` in `tenant`.
    pub fn client_as(&self, role: Role, tenant: Option<Uuid>) -> reqwest::Client {
        bearer_client(&self.token(role, tenant))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Imports catalogue CSV (header line included); asserts it was accepted.
    pub async fn import_catalog(&self, csv: &str) {
        let r = self
            .client
            .post(self.url("/api/v1/catalog/import"))
            .header("content-type", "text/csv")
            .body(csv.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "catalogue imported");
    }

    /// Loads the demo data set, with every demo vendor open around the clock: routing
    /// judges opening hours by the time of day, and a run at 18:30 Nepal time once found
    /// half the demo vendors closed and held orders the tests expect routed. Opening hours
    /// are tested with vendors of their own (`khaacho-vendors`, `catalog`).
    pub async fn seed(&self) {
        khaacho::seed::demo(&self.app).await.unwrap();
        // Every vendor open all day, with room for as many unanswered offers as open orders
        // (the tests give one vendor several offers at once).
        khaacho::with_write!(self.app.db(), c => sqlx::query(
            "UPDATE vendors SET opens_at_min = 0, closes_at_min = 0, max_awaiting = max_active")
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
        .unwrap();
    }

    /// Runs queued jobs until none is ready; returns how many ran.
    pub async fn run_jobs(&self) -> usize {
        khaacho::queue::runtime::drain(&self.app, &khaacho::jobs::registry())
            .await
            .unwrap()
    }

    /// The server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status(), 200, "GET /metrics");
        r.text().await.unwrap()
    }

    /// The value of one series of `/metrics` ([`sample`]).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        sample(&self.metrics().await, series)
    }

    /// Runs the maintenance job once (partitions, retention), as its schedule would.
    pub async fn run_maintenance(&self) {
        let mut tx = self.app.db().begin().await.unwrap();
        khaacho::queue::enqueue(
            &mut tx,
            &khaacho::maintenance::MaintenanceJob::default(),
            Default::default(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(self.run_jobs().await >= 1);
    }

    /// A demo retailer's id.
    pub async fn retailer(&self) -> String {
        self.get_json("/api/v1/retailers?limit=1").await["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates an order; returns the 202 body.
    pub async fn order(&self, retailer: &str, lines: Value) -> Value {
        self.place_body(&serde_json::json!({ "retailer_id": retailer, "lines": lines }))
            .await
    }

    /// Places the order `body` (any form `POST /api/v1/orders` takes); returns its id,
    /// leaving the pipeline to the caller.
    pub async fn place(&self, body: &Value) -> String {
        self.place_body(body).await["order_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn place_body(&self, body: &Value) -> Value {
        let r = self.post_json("/api/v1/orders", body).await;
        assert_eq!(r.status(), 202, "order accepted");
        r.json().await.unwrap()
    }

    /// Counts rows of a table (for "wrote nothing" checks).
    pub async fn count(&self, table: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        khaacho::with_latest!(self.app.db(), c => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await).unwrap()
    }
}

/// The value of `series` — a metric's name with its labels, exactly as exported, e.g.
/// `khaacho_orders{state="completed"}` — in the `/metrics` text `text`; `None` when no line
/// is that series. A whole series is matched: `x` is never read off `x_total`, `x{a="b"}` or
/// the `1` of `x 10`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn issue(app: &App, role: Role, tenant: Option<Uuid>) -> String {
    app.auth()
        .keys
        .issue(Uuid::now_v7(), role, tenant)
        .unwrap()
        .0
}

/// A client sending `Authorization: Bearer <token>` with every request.
pub fn bearer_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Asserts a problem+json body with `status` and returns it.
pub async fn assert_problem(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status(), status);
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(ct, "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:khaacho:problem:")
    );
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

/// Audit rows matching `query` (e.g. `action=vendor.update`), newest first, read by an admin.
pub async fn audit_rows(t: &TestApp, query: &str) -> Vec<Value> {
    let admin = t.client_as(Role::Admin, None);
    let r = admin
        .get(t.url(&format!("/api/v1/audit?limit=200&{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["items"].as_array().unwrap().clone()
}

/// PostgreSQL: commits `other` (a transaction of backend `pid` holding a row lock) once
/// another transaction waits for it, so the test knows the waiter read what was committed
/// before and gets what `other` wrote. Panics if nothing waits within ten seconds.
pub async fn commit_once_waited_for(
    pool: &sqlx::PgPool,
    other: sqlx::Transaction<'_, sqlx::Postgres>,
    pid: i32,
    waiter: &str,
) {
    for _ in 0..1000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = $1 \
             WHERE l.locktype = 'transactionid' AND NOT l.granted AND l.transactionid = a.backend_xid",
        )
        .bind(pid)
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return other.commit().await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{waiter} never waited for the other transaction");
}
