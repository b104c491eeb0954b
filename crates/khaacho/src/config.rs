//! Layered configuration: compiled-in defaults < optional `khaacho.toml` < `KHAACHO_*`
//! environment variables (nested keys with `__`, e.g. `KHAACHO_QUEUE__LEASE_MS`), plus the
//! conventional `DATABASE_URL`. Validated once at start-up.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

pub use crate::queue::QueueSettings;

/// The whole configuration of one process.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `postgres://…` or `sqlite://…`; `None` means the embedded default `sqlite://khaacho.db`.
    pub database_url: Option<String>,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// `json` (default, for machines) or `pretty` (for people at a terminal).
    pub log_format: LogFormat,
    /// `tracing` filter directive, e.g. `info,khaacho=debug`.
    pub log_level: String,
    /// Maximum database connections of this process.
    pub db_max_connections: u32,
    /// Threads of the work runtime, which runs what holds a database transaction open —
    /// the queue consumers, the recurring schedules and the group commits — apart from the
    /// threads that serve HTTP (`base::work`); 0 runs them among the HTTP requests. Unset:
    /// one per CPU on SQLite, 0 on PostgreSQL (measured in bench/README, "The work
    /// runtime").
    pub work_threads: Option<usize>,
    /// Job queue tuning.
    pub queue: QueueSettings,
    /// Order pipeline rules.
    pub pipeline: PipelineSettings,
    /// Credit accounts, bands and order risk.
    pub credit: crate::credit::CreditConfig,
    /// Routing orders to vendors (eligibility distance, volume share, split penalty, score
    /// weights; DOMAIN.md "Routing to vendors").
    pub routing: khaacho_vendors::RoutingSettings,
    /// Vendor offers and what follows routing: offer deadline, reassignments, automatic
    /// completion.
    pub fulfilment: FulfilmentSettings,
    /// HTTP limits.
    pub http: HttpSettings,
    /// Recurring job schedules (cron with seconds, evaluated in Nepal time).
    pub schedules: ScheduleSettings,
    /// Order-text parser agents: provider chain, LLM switch, resilience.
    pub agents: khaacho_agents::AgentsConfig,
    /// `REDIS_URL`: shared rate limits across processes (unset: in-process).
    pub redis_url: Option<String>,
    /// Tokens and login protection.
    pub auth: crate::auth::settings::AuthSettings,
    /// Rate limits.
    pub rate_limits: crate::auth::settings::RateLimitSettings,
    /// Audit log retention.
    pub audit: crate::auth::settings::AuditSettings,
    /// Intake back-pressure when the pipeline falls behind.
    pub backpressure: BackpressureSettings,
    /// WhatsApp/SMS conversations through Twilio: webhook verification and the outbox sender.
    pub channels: ChannelsSettings,
    /// Operations alert thresholds.
    pub ops: OpsSettings,
    /// Signed outbound webhooks to vendor systems.
    pub webhooks: WebhookSettings,
    /// Live updates over WebSocket (`/api/v1/ws`).
    pub live: LiveSettings,
    /// Traces exported over OTLP (off unless a collector is named).
    pub traces: TraceSettings,
}

/// Traces exported over OTLP/HTTP (protobuf) to a collector (Jaeger, Tempo, the
/// OpenTelemetry Collector). A request's trace continues into the jobs it enqueued
/// (`base::trace`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct TraceSettings {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318` (spans go to
    /// `<base>/v1/traces`). Unset: `OTEL_EXPORTER_OTLP_ENDPOINT` if that is set, else no
    /// export.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces kept, 0.0–1.0. A request that arrives with a `traceparent`
    /// follows its caller's decision instead.
    pub sample_ratio: f64,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Time budget of one export.
    pub export_timeout_ms: u64,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            // Enough to see where time goes at thousands of orders a second without
            // exporting every span of every order.
            sample_ratio: 0.1,
            service_name: "khaacho".into(),
            export_timeout_ms: 10_000,
        }
    }
}

impl TraceSettings {
    /// Where spans are sent, if anywhere: `<base>/v1/traces`.
    pub fn traces_url(&self) -> Option<String> {
        let base = self
            .otlp_endpoint
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| {
                std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .ok()
                    .filter(|s| !s.trim().is_empty())
            })?;
        Some(format!("{}/v1/traces", base.trim().trim_end_matches('/')))
    }
}

/// Signed outbound webhooks (`/api/v1/webhooks`): the sender's time budget and the rule for
/// subscriber URLs.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Time budget of one delivery (connect, send, answer).
    pub send_timeout_ms: u64,
    /// Allow `http://` URLs and loopback/private/link-local addresses (development and
    /// tests only). Off: a subscriber URL must be `https://` to a public host name or
    /// address, checked when it is created, again before each delivery and by the sender's
    /// resolver as it connects (no proxy then).
    pub allow_insecure_urls: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            send_timeout_ms: 10_000,
            allow_insecure_urls: false,
        }
    }
}

/// Live updates over WebSocket (`/api/v1/ws`, DESIGN.md §14).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct LiveSettings {
    /// How long a ticket from `POST /api/v1/ws/tickets` may be used (once).
    pub ticket_ttl_ms: i64,
    /// The server pings every socket this often.
    pub heartbeat_ms: u64,
    /// A socket from which nothing (not even a pong) arrived for this long is closed.
    pub idle_timeout_ms: u64,
    /// Largest frame or message a client may send; larger closes the socket with 1009.
    pub max_frame_bytes: usize,
    /// Events buffered per socket.
    pub buffer: usize,
    /// How long the hub waits for a socket whose buffer is full before dropping it (1013;
    /// it may resume with `after`).
    pub slow_grace_ms: u64,
    /// The hub reads the feed at least this often (it is also woken by every commit of this
    /// process and, on PostgreSQL, by `NOTIFY` from the other processes).
    pub poll_ms: u64,
    /// How long a socket can resume after an event (`after`): the maintenance job forgets
    /// the feed's numbers older than this; resuming after one answers the `404` error frame
    /// (read the orders over HTTP and subscribe afresh).
    pub history_hours: i64,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            ticket_ttl_ms: 60_000,
            heartbeat_ms: 15_000,
            idle_timeout_ms: 45_000,
            max_frame_bytes: 16 * 1024,
            buffer: 256,
            slow_grace_ms: 1_000,
            poll_ms: 1_000,
            history_hours: 24,
        }
    }
}

/// WhatsApp/SMS through Twilio (DOMAIN.md "Channels"). Without `twilio_auth_token` inbound
/// webhooks are refused (nothing can be verified); without `twilio_account_sid` the outbox
/// still records every reply (status `queued`, listed at `GET /api/v1/channels/messages`)
/// and nothing is sent.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct ChannelsSettings {
    /// The public base URL Twilio calls (e.g. `https://khaacho.example`), without a trailing
    /// slash. Signatures are checked against it, not against the request's `Host`, so a
    /// TLS-terminating proxy does not break them. Unset: `http://{listen}`.
    pub public_url: Option<String>,
    /// Twilio auth token: verifies `X-Twilio-Signature` and authenticates the REST API.
    pub twilio_auth_token: Option<String>,
    /// Twilio account SID (`AC…`); unset: nothing is sent, the outbox only records.
    pub twilio_account_sid: Option<String>,
    /// Twilio REST API base URL.
    pub twilio_api_base: String,
    /// Sender number for WhatsApp, e.g. `whatsapp:+14155238886`.
    pub whatsapp_from: Option<String>,
    /// Sender number for SMS, e.g. `+15005550006`.
    pub sms_from: Option<String>,
    /// Approved WhatsApp templates by reply template name (e.g. `order_placed = "HX…"`, a
    /// Twilio Content SID). WhatsApp takes free text only within 24 hours of the phone's
    /// last message; outside that window a reply is sent as its approved template (its
    /// variables numbered 1, 2, … in the alphabetical order of their names), or, without
    /// one, not sent (`dead`, with the reason).
    pub whatsapp_content_sids: std::collections::BTreeMap<String, String>,
    /// Largest accepted webhook body.
    pub max_body_bytes: usize,
    /// How long an order draft waits for YES (and a clarification for its answer).
    pub draft_ttl_minutes: i64,
    /// Time budget of one call to the Twilio REST API (and to the e-mail API).
    pub send_timeout_ms: u64,
    /// E-mail API base URL (SendGrid's v3 mail send: `POST {url}/v3/mail/send`).
    pub email_api_url: String,
    /// E-mail API key; unset: e-mails are recorded in the outbox (channel `email`) and not sent.
    pub email_api_key: Option<String>,
    /// Sender address of e-mails, e.g. `orders@khaacho.example`; unset: nothing is sent.
    pub email_from: Option<String>,
    /// Messages (inbound and the outbox: phones and what they said) finished this many days
    /// ago are deleted by the maintenance job; one still waiting (not handled, not sent) is
    /// kept whatever its age. 0 keeps all.
    pub retention_days: u32,
}

impl Default for ChannelsSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            twilio_auth_token: None,
            twilio_account_sid: None,
            twilio_api_base: "https://api.twilio.com".into(),
            whatsapp_from: None,
            sms_from: None,
            whatsapp_content_sids: Default::default(),
            max_body_bytes: 16 * 1024,
            draft_ttl_minutes: 10,
            send_timeout_ms: 10_000,
            email_api_url: "https://api.sendgrid.com".into(),
            email_api_key: None,
            email_from: None,
            retention_days: 400,
        }
    }
}

impl fmt::Debug for ChannelsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelsSettings")
            .field("public_url", &self.public_url)
            .field(
                "twilio_auth_token",
                &self.twilio_auth_token.as_ref().map(|_| "***"),
            )
            .field("twilio_account_sid", &self.twilio_account_sid)
            .field("twilio_api_base", &self.twilio_api_base)
            .field("whatsapp_from", &self.whatsapp_from)
            .field("sms_from", &self.sms_from)
            .field("whatsapp_content_sids", &self.whatsapp_content_sids)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("draft_ttl_minutes", &self.draft_ttl_minutes)
            .field("send_timeout_ms", &self.send_timeout_ms)
            .field("email_api_url", &self.email_api_url)
            .field("email_api_key", &self.email_api_key.as_ref().map(|_| "***"))
            .field("email_from", &self.email_from)
            .field("retention_days", &self.retention_days)
            .finish()
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Rules of the order pipeline that an operator may want to tune.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct PipelineSettings {
    /// Orders whose total (with VAT) exceeds this many NPR are held for an operator's review.
    pub review_above_npr: i64,
    /// Largest quantity accepted on one line, in the unit the retailer wrote.
    pub max_line_qty: i64,
    /// Most lines one order may carry.
    pub max_lines: usize,
}

/// Vendor offers and the life of an order after routing (DOMAIN.md "Routing to vendors").
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct FulfilmentSettings {
    /// How long a vendor has to accept or reject an offer.
    pub offer_timeout_minutes: i64,
    /// Times a part moves to the next vendor (after a rejection or an expiry) before the
    /// order is held for an operator (`vendor_unavailable`).
    pub max_reassignments: i32,
    /// A delivered order completes by itself this long after delivery unless the retailer
    /// confirmed or reported an issue first.
    pub auto_complete_hours: i64,
}

impl Default for FulfilmentSettings {
    fn default() -> Self {
        Self {
            offer_timeout_minutes: 30,
            max_reassignments: 3,
            auto_complete_hours: 48,
        }
    }
}

/// HTTP server limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Time budget of one request.
    pub request_timeout_ms: u64,
    /// Served behind TLS (a terminating proxy): send `Strict-Transport-Security`.
    pub behind_tls: bool,
    /// Origins allowed by CORS, e.g. `["https://ops.khaacho.example"]`; empty: no CORS.
    pub cors_allow_origins: Vec<String>,
    /// Most requests one process works on at once; past it a request is answered `503` +
    /// `Retry-After` at once, so memory does not grow with the number of waiting clients.
    /// `/health`, `/ready` and `/metrics` are never turned away.
    pub max_in_flight: usize,
    /// Share of `max_in_flight`, in percent, that reads (`GET`) may take; they are shed first
    /// (apart from the status poll after a `202`, which takes the writes' share).
    pub read_share_percent: u8,
    /// Share that writes other than the actions that carry accepted orders and money forward
    /// (new orders among them), and status polls, may take; the rest is kept for those actions (a vendor's
    /// accept, reject, dispatch and delivery, confirm, cancel, report, approve, reject, a
    /// payment), so past capacity orders already taken keep moving.
    pub write_share_percent: u8,
}

/// Cron expressions (seconds field first) of the recurring jobs.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct ScheduleSettings {
    /// Creating order partitions ahead (PostgreSQL) and cleaning up old schedule ticks.
    pub maintenance: String,
    /// Credit scores, bands and automatic limit changes.
    pub credit_scores: String,
    /// Late-payment cuts, overdue warning and block, risk and spike alerts.
    pub credit_controls: String,
    /// Expiring vendor offers (with reassignment) and completing delivered orders.
    pub fulfilment: String,
    /// Stuck-order healing: retry a lost step, then alert. Default: every 5 minutes, at
    /// second 30.
    pub healing: String,
    /// Vendor scores over the last 30 days (history kept; `vendors.score` is routing's
    /// reliability). Default: hourly at minute 5.
    pub vendor_scores: String,
    /// Price-intelligence snapshots per product and abnormal-change alerts. Default: every
    /// 4 hours at minute 10.
    pub price_intelligence: String,
    /// The outbox sender's sweep: retries that came due and messages held back by the
    /// per-recipient throttle. Default: every 15 seconds.
    pub channels_outbox: String,
    /// The HTTP API's service levels, breakers, dead letters and queue age against their
    /// alert thresholds (`ops`). Default: every minute.
    pub sla_check: String,
    /// Payment reminders to retailers (3 days before a due date, on it, 7 days after),
    /// Nepal time. Default: daily at 09:00 (a message at 02:00 would wake people).
    pub payment_reminders: String,
    /// The webhook sender's sweep: deliveries whose retry came due. Default: every 15 seconds.
    pub webhooks: String,
}

/// Operations alerts raised by the minute check (`schedules.sla_check`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct OpsSettings {
    /// Raise a critical `dead_letters` alert above this many dead jobs.
    pub dead_letters_alert: i64,
    /// Raise a warning `queue_age` alert once the oldest ready job waited longer than this.
    pub queue_age_alert_secs: i64,
    /// Degraded once the oldest ready job (of a queue not paused) waited this long…
    pub degraded_queue_age_secs: i64,
    /// …or the 5-minute p95 exceeds this (ms)…
    pub degraded_p95_ms: f64,
    /// …or this share of requests answered 5xx (the server's own `503` refusals — full,
    /// behind, `critical` — are not counted: they would hold the level up by themselves).
    pub degraded_error_rate: f64,
    /// Critical at these.
    pub critical_queue_age_secs: i64,
    /// Critical p95 (ms).
    pub critical_p95_ms: f64,
    /// Critical error rate.
    pub critical_error_rate: f64,
    /// A level steps down one only after this many consecutive minute checks found it lower.
    pub calm_checks: i32,
}

impl Default for OpsSettings {
    fn default() -> Self {
        Self {
            dead_letters_alert: 10,
            queue_age_alert_secs: 300,
            degraded_queue_age_secs: 60,
            degraded_p95_ms: 1_000.0,
            degraded_error_rate: 0.02,
            critical_queue_age_secs: 300,
            critical_p95_ms: 3_000.0,
            critical_error_rate: 0.10,
            calm_checks: 3,
        }
    }
}

/// Intake back-pressure: once the pipeline is this far behind, new orders are refused with
/// `503` and `Retry-After` instead of letting the backlog, its latency and memory grow
/// without end. Orders already accepted are never dropped.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct BackpressureSettings {
    /// Refuse new orders while the oldest ready job of `queues` waited longer than this.
    pub max_ready_age_ms: i64,
    /// How often a process samples that age (one query, shared by all its requests).
    pub sample_interval_ms: u64,
    /// The pipeline queues watched.
    pub queues: Vec<String>,
    /// `Retry-After` of a refusal, in seconds.
    pub retry_after_secs: u64,
    /// Off: accept whatever the backlog (for measuring collapse, not for production).
    pub enabled: bool,
}

impl Default for BackpressureSettings {
    fn default() -> Self {
        Self {
            // Far above the e2e target (p95 < 250 ms) so a burst is absorbed, short enough
            // that a client hears "slow down" while its order would still be worth placing.
            max_ready_age_ms: 5_000,
            sample_interval_ms: 200,
            queues: vec!["validate".into(), "route".into(), "orders".into()],
            retry_after_secs: 2,
            enabled: true,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log_format: LogFormat::Json,
            log_level: "info".into(),
            db_max_connections: 24,
            work_threads: None,
            queue: QueueSettings::default(),
            pipeline: PipelineSettings::default(),
            credit: crate::credit::CreditConfig::default(),
            routing: khaacho_vendors::RoutingSettings::default(),
            fulfilment: FulfilmentSettings::default(),
            http: HttpSettings::default(),
            schedules: ScheduleSettings::default(),
            agents: khaacho_agents::AgentsConfig::default(),
            redis_url: None,
            auth: Default::default(),
            rate_limits: Default::default(),
            audit: Default::default(),
            backpressure: BackpressureSettings::default(),
            channels: ChannelsSettings::default(),
            ops: OpsSettings::default(),
            webhooks: WebhookSettings::default(),
            live: LiveSettings::default(),
            traces: TraceSettings::default(),
        }
    }
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            review_above_npr: 500_000,
            max_line_qty: 100_000,
            max_lines: 200,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 256 * 1024,
            request_timeout_ms: 10_000,
            behind_tls: false,
            cors_allow_origins: Vec::new(),
            max_in_flight: 256,
            read_share_percent: 50,
            write_share_percent: 75,
        }
    }
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        // Daily at 01:00 and 02:00 Nepal time; controls at the top of every hour, vendor
        // scores five minutes later; price intelligence every 4 hours (Nepal time).
        Self {
            maintenance: "0 0 1 * * *".into(),
            credit_scores: "0 0 2 * * *".into(),
            credit_controls: "0 0 * * * *".into(),
            fulfilment: "0 * * * * *".into(),
            healing: "30 */5 * * * *".into(),
            vendor_scores: "0 5 * * * *".into(),
            price_intelligence: "0 10 */4 * * *".into(),
            channels_outbox: "*/15 * * * * *".into(),
            sla_check: "0 * * * * *".into(),
            webhooks: "*/15 * * * * *".into(),
            payment_reminders: "0 0 9 * * *".into(),
        }
    }
}

impl Settings {
    /// Loads defaults, then `khaacho.toml` (or `config_file`) when present, then the environment.
    pub fn load(config_file: Option<&Path>) -> anyhow::Result<Self> {
        let file = config_file.unwrap_or_else(|| Path::new("khaacho.toml"));
        if config_file.is_some() && !file.exists() {
            bail!("config file {} does not exist", file.display());
        }
        let mut settings: Settings = config::Config::builder()
            .add_source(config::File::from(file).required(false))
            .add_source(
                config::Environment::with_prefix("KHAACHO")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .context("reading configuration")?
            .try_deserialize()
            .context("invalid configuration")?;
        if let Ok(url) = std::env::var("DATABASE_URL")
            && !url.is_empty()
        {
            settings.database_url = Some(url);
        }
        if let Ok(url) = std::env::var("REDIS_URL")
            && !url.is_empty()
        {
            settings.redis_url = Some(url);
        }
        settings.validate()?;
        Ok(settings)
    }

    /// The database URL in force: the configured one or the embedded SQLite default.
    pub fn database_url(&self) -> &str {
        self.database_url
            .as_deref()
            .unwrap_or("sqlite://khaacho.db")
    }

    /// Refuses settings that cannot work, with a message naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let url = self.database_url();
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            bail!(
                "database_url must start with postgres:// or sqlite: (got {})",
                redact(url)
            );
        }
        if self.http.max_in_flight == 0 {
            bail!("http.max_in_flight must be at least 1");
        }
        let (read, write) = (self.http.read_share_percent, self.http.write_share_percent);
        if !(1..=100).contains(&read) || !(1..=100).contains(&write) || read > write {
            bail!(
                "http.read_share_percent and http.write_share_percent must be 1–100, reads no \
                 more than writes (got {read} and {write})"
            );
        }
        if self.queue.concurrency == 0 {
            bail!("queue.concurrency must be at least 1");
        }
        if self.queue.heartbeat_ms as i64 >= self.queue.lease_ms {
            bail!("queue.heartbeat_ms must be shorter than queue.lease_ms");
        }
        if self.pipeline.max_lines == 0 || self.pipeline.max_line_qty <= 0 {
            bail!("pipeline.max_lines and pipeline.max_line_qty must be positive");
        }
        if self.backpressure.max_ready_age_ms < 0 || self.backpressure.sample_interval_ms == 0 {
            bail!(
                "backpressure.max_ready_age_ms must be >= 0 and backpressure.sample_interval_ms > 0"
            );
        }
        if self.live.ticket_ttl_ms <= 0
            || self.live.heartbeat_ms == 0
            || self.live.idle_timeout_ms <= self.live.heartbeat_ms
            || self.live.buffer == 0
            || self.live.poll_ms == 0
            || self.live.max_frame_bytes < 256
            || self.live.history_hours < 1
        {
            bail!(
                "live: ticket_ttl_ms, heartbeat_ms, buffer and poll_ms must be positive, \
                 idle_timeout_ms longer than heartbeat_ms, max_frame_bytes at least 256, \
                 history_hours at least 1"
            );
        }
        if !(0.0..=1.0).contains(&self.traces.sample_ratio) {
            bail!("traces.sample_ratio must be between 0.0 and 1.0");
        }
        if let Some(url) = self.traces.traces_url()
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("traces.otlp_endpoint must be an http:// or https:// URL, got {url}");
        }
        if self.channels.draft_ttl_minutes <= 0 || self.channels.max_body_bytes == 0 {
            bail!("channels.draft_ttl_minutes and channels.max_body_bytes must be positive");
        }
        crate::queue::schedule::parse_cron(&self.schedules.channels_outbox)
            .context("schedules.channels_outbox")?;
        crate::queue::schedule::parse_cron(&self.schedules.maintenance)
            .context("schedules.maintenance")?;
        crate::queue::schedule::parse_cron(&self.schedules.credit_scores)
            .context("schedules.credit_scores")?;
        crate::queue::schedule::parse_cron(&self.schedules.credit_controls)
            .context("schedules.credit_controls")?;
        crate::queue::schedule::parse_cron(&self.schedules.vendor_scores)
            .context("schedules.vendor_scores")?;
        crate::queue::schedule::parse_cron(&self.schedules.price_intelligence)
            .context("schedules.price_intelligence")?;
        crate::queue::schedule::parse_cron(&self.schedules.sla_check)
            .context("schedules.sla_check")?;
        crate::queue::schedule::parse_cron(&self.schedules.payment_reminders)
            .context("schedules.payment_reminders")?;
        crate::queue::schedule::parse_cron(&self.schedules.webhooks)
            .context("schedules.webhooks")?;
        khaacho_agents::AgentChain::from_config(&self.agents).context("agents")?;
        Ok(())
    }
}

/// Hides the password of a connection URL.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact(self.database_url()))
            .field("listen", &self.listen)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("db_max_connections", &self.db_max_connections)
            .field("work_threads", &self.work_threads)
            .field("queue", &self.queue)
            .field("pipeline", &self.pipeline)
            .field("http", &self.http)
            .field("schedules", &self.schedules)
            .field("agents", &self.agents)
            .field("redis_url", &self.redis_url.as_deref().map(redact))
            .field("auth", &self.auth)
            .field("rate_limits", &self.rate_limits)
            .field("audit", &self.audit)
            .field("backpressure", &self.backpressure)
            .field("channels", &self.channels)
            .field("ops", &self.ops)
            .field("webhooks", &self.webhooks)
            .field("live", &self.live)
            .field("traces", &self.traces)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn request_shares_are_percentages_with_reads_below_writes() {
        let mut s = Settings::default();
        s.validate().expect("the defaults hold");
        for (read, write) in [(0, 75), (50, 101), (80, 60)] {
            s.http.read_share_percent = read;
            s.http.write_share_percent = write;
            let e = s.validate().expect_err("refused").to_string();
            assert!(e.contains("http.read_share_percent"), "{e}");
        }
        (s.http.read_share_percent, s.http.write_share_percent) = (100, 100);
        s.validate()
            .expect("one budget for every request, as before the shares");
    }
}
