//! The outbox: every reply and notification is a row of `outbound_messages`, written in
//! the transaction of the change that caused it, with a `channels.send` job. The sender
//! posts it to the Twilio REST API behind the resilience stack (timeout → breaker →
//! bulkhead; no in-call retry, since a repeated POST would send the message twice), at most
//! one message per recipient every 2 s, retrying after 1, 5, 15, 30 and 60 minutes, then
//! `dead` (listed and retryable by staff). WhatsApp takes free text only within 24 hours
//! of the phone's last message; outside that window a reply goes as its approved template
//! (`channels.whatsapp_content_sids`) or not at all (`dead`, with the reason). A WhatsApp
//! message that fails for good (refused, or that closed window) is sent once more by SMS
//! (`bury`), and its dead row says so. Each attempt first claims the row
//! (`queued` → `sending`), so a retried or concurrent sender run never sends it twice.
//! Without Twilio credentials nothing is sent: rows stay `queued`, visible to staff.
//!
//! E-mail is a third channel of the same outbox (`email`: the recipient is the address),
//! sent by the same job path to a SendGrid-style API (`channels.email_api_url`,
//! `email_api_key`, `email_from`) behind its own resilience stack, with the same claim,
//! throttle and retry schedule (no 24-hour window, no SMS fallback). Without its key the
//! rows are recorded and stay `queued`.
//!
//! Time is the app's clock ([`App::clock`]), so tests drive the schedule without sleeping.

use std::time::Duration;

use khaacho_resilience::{CallError, Classify, Policy, Resilient};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use uuid::Uuid;

use super::phone::MessageChannel;
use super::repo::{self, OutboundRow};
use super::templates::{Language, render};
use crate::app::{App, JobContext};
use crate::base::db::Tx;
use crate::config::ChannelsSettings;
use crate::queue::{EnqueueOptions, Job, JobError, Priority, RetryPolicy, enqueue, enqueue_batch};

/// At most one message per recipient this often.
pub const THROTTLE_MS: i64 = 2_000;

/// Waits after failed attempts 1–5; a sixth failure is final (`dead`).
pub const RETRY_MINUTES: [i64; 5] = [1, 5, 15, 30, 60];

/// WhatsApp takes free text only this long after the phone's last message.
pub const WHATSAPP_WINDOW_MS: i64 = 24 * 3_600_000;

/// Messages one sweep sends at most; the next sweep takes the rest.
const SWEEP: i64 = 200;

/// A reply to write: a template and its variables.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Template name (`templates/{en,ne}/messages.txt`).
    pub template: &'static str,
    /// Its variables.
    pub vars: serde_json::Value,
}

/// A row of `reply` to `recipient`, rendered in `lang`, due now.
fn new_row(
    recipient: &str,
    channel: &str,
    lang: Language,
    reply: &Reply,
    inbound_id: Option<Uuid>,
    now_ms: i64,
) -> OutboundRow {
    OutboundRow {
        id: Uuid::now_v7(),
        recipient: recipient.to_string(),
        channel: channel.into(),
        template: reply.template.into(),
        vars: Json(reply.vars.clone()),
        language: lang.as_str().into(),
        body: render(lang, reply.template, &reply.vars),
        status: "queued".into(),
        attempts: 0,
        next_attempt_at_ms: now_ms,
        last_attempt_at_ms: None,
        last_error: None,
        provider_sid: None,
        inbound_id,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    }
}

/// Like [`queue`], at most once per `key`: a second call with the same key (a retried
/// consumer) writes nothing and returns `None`.
#[allow(clippy::too_many_arguments)]
pub async fn queue_once(
    tx: &mut Tx,
    recipient: &str,
    channel: MessageChannel,
    lang: Language,
    reply: &Reply,
    key: &str,
    now_ms: i64,
    send: bool,
) -> Result<Option<Uuid>, sqlx::Error> {
    let row = new_row(recipient, channel.as_str(), lang, reply, None, now_ms);
    if !repo::insert_outbound_once(tx, &row, key).await? {
        return Ok(None);
    }
    if send {
        enqueue(tx, &SendMessage { id: row.id }, EnqueueOptions::default()).await?;
    }
    Ok(Some(row.id))
}

/// One message for [`queue_once_many`].
#[derive(Debug)]
pub struct Keyed {
    /// E.164.
    pub recipient: String,
    /// The channel.
    pub channel: MessageChannel,
    /// The language it is rendered in.
    pub lang: Language,
    /// What to say.
    pub reply: Reply,
    /// Written at most once per key.
    pub key: String,
}

/// [`queue_once`] for many messages with one statement (and one for their send jobs).
pub async fn queue_once_many(
    tx: &mut Tx,
    messages: &[Keyed],
    now_ms: i64,
    send: bool,
) -> Result<usize, sqlx::Error> {
    if messages.is_empty() {
        return Ok(0);
    }
    let rows: Vec<(OutboundRow, String)> = messages
        .iter()
        .map(|m| {
            let row = new_row(
                &m.recipient,
                m.channel.as_str(),
                m.lang,
                &m.reply,
                None,
                now_ms,
            );
            (row, m.key.clone())
        })
        .collect();
    write_keyed(tx, &rows, send).await
}

/// Writes keyed rows (each at most once per key) with one statement, and the send jobs of
/// those written with one more when `send`. Returns how many were written.
async fn write_keyed(
    tx: &mut Tx,
    rows: &[(OutboundRow, String)],
    send: bool,
) -> Result<usize, sqlx::Error> {
    let written = repo::insert_outbound_many(tx, rows).await?;
    if send && !written.is_empty() {
        let jobs: Vec<SendMessage> = written.iter().map(|&id| SendMessage { id }).collect();
        let batch: Vec<(&SendMessage, EnqueueOptions)> = jobs
            .iter()
            .map(|j| (j, EnqueueOptions::default()))
            .collect();
        enqueue_batch(tx, &batch).await?;
    }
    Ok(written.len())
}

/// The outbox channel of e-mails (the recipient is the address).
pub const EMAIL: &str = "email";

/// One e-mail for [`queue_email_once_many`].
#[derive(Debug)]
pub struct Email {
    /// The address.
    pub to: String,
    /// The language it is rendered in.
    pub lang: Language,
    /// What to say.
    pub reply: Reply,
    /// Written at most once per key.
    pub key: String,
}

/// E-mails on the outbox's `email` channel, at most once per key, with one statement (and
/// one for their send jobs when `send`: the e-mail API is [`email_configured`]).
pub async fn queue_email_once_many(
    tx: &mut Tx,
    emails: &[Email],
    now_ms: i64,
    send: bool,
) -> Result<usize, sqlx::Error> {
    if emails.is_empty() {
        return Ok(0);
    }
    let rows: Vec<(OutboundRow, String)> = emails
        .iter()
        .map(|e| {
            (
                new_row(&e.to, EMAIL, e.lang, &e.reply, None, now_ms),
                e.key.clone(),
            )
        })
        .collect();
    write_keyed(tx, &rows, send).await
}

/// Writes `reply` to `recipient` in the caller's transaction, rendered in `lang`, with the
/// job that sends it when `send` (Twilio is [`configured`]). Without credentials the row is
/// only recorded: no job per message that could do nothing; once credentials are set, the
/// outbox sweep sends the queued rows.
#[allow(clippy::too_many_arguments)]
pub async fn queue(
    tx: &mut Tx,
    recipient: &str,
    channel: MessageChannel,
    lang: Language,
    reply: &Reply,
    inbound_id: Option<Uuid>,
    now_ms: i64,
    send: bool,
) -> Result<Uuid, sqlx::Error> {
    let row = new_row(recipient, channel.as_str(), lang, reply, inbound_id, now_ms);
    repo::insert_outbound(tx, &row).await?;
    if send {
        enqueue(tx, &SendMessage { id: row.id }, EnqueueOptions::default()).await?;
    }
    Ok(row.id)
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Twilio refused the message itself (4xx other than 429): retrying cannot help.
    #[error("refused by Twilio ({status}): {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Twilio's answer (its error code and message).
        body: String,
    },
    /// Twilio or the network failed (5xx, 429, timeout, connection): worth retrying later.
    #[error("{0}")]
    Transient(String),
}

impl Classify for SendError {
    fn is_retryable(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }

    fn counts_as_failure(&self) -> bool {
        // A refused message says Twilio is up.
        matches!(self, SendError::Transient(_))
    }
}

/// The Twilio REST client behind its resilience stack (one per process).
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    stack: Resilient,
    email: Resilient,
}

impl Sender {
    /// A sender with the configured time budget.
    pub fn new(settings: &ChannelsSettings) -> Self {
        let timeout = Duration::from_millis(settings.send_timeout_ms);
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            stack: Resilient::new(Policy::new("twilio", timeout)),
            email: Resilient::new(Policy::new("email", timeout)),
        }
    }

    /// Posts one e-mail to the SendGrid-style API (`POST {url}/v3/mail/send`, bearer key,
    /// JSON); returns the provider's message id (`X-Message-Id`) or `accepted`.
    async fn post_email(
        &self,
        s: &ChannelsSettings,
        m: &OutboundRow,
    ) -> Result<String, CallError<SendError>> {
        let (Some(key), Some(from)) = (&s.email_api_key, &s.email_from) else {
            return Err(CallError::Inner(SendError::Refused {
                status: 0,
                body: "e-mail is not configured".into(),
            }));
        };
        let url = format!("{}/v3/mail/send", s.email_api_url.trim_end_matches('/'));
        let body = serde_json::json!({
            "personalizations": [{ "to": [{ "email": m.recipient }] }],
            "from": { "email": from, "name": "Khaacho" },
            "subject": subject(&m.body),
            "content": [{ "type": "text/plain", "value": m.body }],
            "custom_args": { "khaacho_message_id": m.id.to_string() },
        })
        .to_string();
        self.email
            .call(|| {
                let req = self
                    .http
                    .post(&url)
                    .bearer_auth(key)
                    .header("content-type", "application/json")
                    .body(body.clone());
                async move {
                    let resp = req
                        .send()
                        .await
                        .map_err(|e| SendError::Transient(e.to_string()))?;
                    let status = resp.status();
                    let id = resp
                        .headers()
                        .get("x-message-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let text: String = resp
                        .text()
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect();
                    if status.is_success() {
                        Ok(id.unwrap_or_else(|| "accepted".into()))
                    } else if status.as_u16() == 429 || status.is_server_error() {
                        Err(SendError::Transient(format!(
                            "the e-mail API answered {status}: {text}"
                        )))
                    } else {
                        Err(SendError::Refused {
                            status: status.as_u16(),
                            body: text,
                        })
                    }
                }
            })
            .await
    }

    /// Posts one message (as free text, or as the approved template `content`: its Content
    /// SID and variables); returns Twilio's message SID.
    async fn post(
        &self,
        s: &ChannelsSettings,
        m: &OutboundRow,
        content: Option<(String, String)>,
    ) -> Result<String, CallError<SendError>> {
        let (Some(sid), Some(token)) = (&s.twilio_account_sid, &s.twilio_auth_token) else {
            return Err(CallError::Inner(SendError::Refused {
                status: 0,
                body: "Twilio is not configured".into(),
            }));
        };
        let channel = MessageChannel::parse(&m.channel).unwrap_or(MessageChannel::Sms);
        let from = match channel {
            MessageChannel::Whatsapp => s.whatsapp_from.clone(),
            MessageChannel::Sms => s.sms_from.clone(),
        }
        .unwrap_or_default();
        let url = format!(
            "{}/2010-04-01/Accounts/{sid}/Messages.json",
            s.twilio_api_base.trim_end_matches('/')
        );
        let mut form = vec![("To", channel.address(&m.recipient)), ("From", from)];
        match content {
            Some((sid, vars)) => {
                form.push(("ContentSid", sid));
                form.push(("ContentVariables", vars));
            }
            None => form.push(("Body", m.body.clone())),
        }
        if let Some(base) = &s.public_url {
            form.push((
                "StatusCallback",
                format!(
                    "{}{}",
                    base.trim_end_matches('/'),
                    super::routes::STATUS_PATH
                ),
            ));
        }
        let body = serde_urlencoded::to_string(&form).unwrap_or_default();
        self.stack
            .call(|| {
                let req = self
                    .http
                    .post(&url)
                    .basic_auth(sid, Some(token))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone());
                async move {
                    let resp = req
                        .send()
                        .await
                        .map_err(|e| SendError::Transient(e.to_string()))?;
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    if status.is_success() {
                        #[derive(Deserialize)]
                        struct Created {
                            sid: String,
                        }
                        return serde_json::from_str::<Created>(&text)
                            .map(|c| c.sid)
                            .map_err(|_| {
                                SendError::Transient("Twilio's answer has no sid".into())
                            });
                    }
                    let body: String = text.chars().take(300).collect();
                    if status.as_u16() == 429 || status.is_server_error() {
                        Err(SendError::Transient(format!(
                            "Twilio answered {status}: {body}"
                        )))
                    } else {
                        Err(SendError::Refused {
                            status: status.as_u16(),
                            body,
                        })
                    }
                }
            })
            .await
    }
}

/// What one attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Posted; Twilio's SID.
    Sent(String),
    /// Failed; due again then.
    RetryAt(i64),
    /// Failed for good.
    Dead,
    /// Held back by the per-recipient throttle until then.
    Throttled(i64),
    /// Not due, already handled, or nothing is configured to send it.
    Skipped,
}

/// Whether this process can send WhatsApp and SMS (Twilio).
pub fn configured(s: &ChannelsSettings) -> bool {
    s.twilio_account_sid.is_some() && s.twilio_auth_token.is_some()
}

/// Whether this process can send e-mail.
pub fn email_configured(s: &ChannelsSettings) -> bool {
    s.email_api_key.is_some() && s.email_from.is_some()
}

/// An e-mail's subject: the first line of its text, at most 78 characters.
fn subject(body: &str) -> String {
    let first = body.lines().next().unwrap_or_default().trim();
    let mut out: String = first.chars().take(78).collect();
    if first.chars().count() > 78 {
        out.pop();
        out.push('…');
    }
    format!("Khaacho: {out}")
}

/// One attempt at message `id` at `now` (see the module docs).
#[tracing::instrument(skip(app), fields(message_id = %id))]
pub async fn send_one(app: &App, id: Uuid, now: i64) -> anyhow::Result<Sent> {
    let s = &app.settings().channels;
    if !configured(s) && !email_configured(s) {
        return Ok(Sent::Skipped);
    }
    let Some(m) = repo::find_outbound(app.db(), id).await? else {
        return Ok(Sent::Skipped);
    };
    let email = m.channel == EMAIL;
    if (email && !email_configured(s)) || (!email && !configured(s)) {
        return Ok(Sent::Skipped);
    }
    if m.status != "queued" || m.next_attempt_at_ms > now {
        return Ok(Sent::Skipped);
    }
    if let Some(last) = repo::last_attempt_to(app.db(), &m.recipient).await?
        && now < last + THROTTLE_MS
    {
        repo::defer(app.db(), id, last + THROTTLE_MS).await?;
        return Ok(Sent::Throttled(last + THROTTLE_MS));
    }
    let content = match whatsapp_window(app, &m, now).await? {
        Window::Open => None,
        Window::Template(sid, vars) => Some((sid, vars)),
        Window::Closed(reason) => {
            if repo::claim(app.db(), id, now).await? {
                tracing::warn!(%reason, "not sent");
                bury(app, &m, &reason, now).await?;
                return Ok(Sent::Dead);
            }
            return Ok(Sent::Skipped);
        }
    };
    if !repo::claim(app.db(), id, now).await? {
        return Ok(Sent::Skipped);
    }
    let attempt = m.attempts + 1;
    let outcome = if email {
        app.outbox().post_email(s, &m).await
    } else {
        app.outbox().post(s, &m, content).await
    };
    let result = match outcome {
        Ok(sid) => {
            repo::finish_attempt(app.db(), id, Ok(&sid), now).await?;
            metrics::counter!("khaacho_messages_sent_total", "channel" => m.channel.clone())
                .increment(1);
            Sent::Sent(sid)
        }
        Err(e) => {
            let error = e.to_string();
            let next = match &e {
                CallError::Inner(SendError::Refused { .. }) => None,
                _ => RETRY_MINUTES
                    .get((attempt - 1) as usize)
                    .map(|m| now + m * 60_000),
            };
            tracing::warn!(attempt, error = %error, retry_at = ?next, "sending a message failed");
            if next.is_none() && matches!(&e, CallError::Inner(SendError::Refused { .. })) {
                bury(app, &m, &error, now).await?;
            } else {
                repo::finish_attempt(app.db(), id, Err((&error, next)), now).await?;
            }
            match next {
                Some(at) => Sent::RetryAt(at),
                None => {
                    metrics::counter!("khaacho_messages_dead_total").increment(1);
                    Sent::Dead
                }
            }
        }
    };
    Ok(result)
}

/// Marks a claimed message `dead` for `reason`. A WhatsApp message that failed for good
/// (refused by Twilio, or outside the 24-hour window without an approved template) goes
/// out once more by SMS when `channels.sms_from` is set: a copy on the `sms` channel (key
/// `<id>:sms_fallback`, so never twice) with its send job, in the transaction that buries
/// the original, whose `last_error` says so.
async fn bury(app: &App, m: &OutboundRow, reason: &str, now: i64) -> anyhow::Result<()> {
    let s = &app.settings().channels;
    if m.channel != MessageChannel::Whatsapp.as_str() {
        repo::finish_attempt(app.db(), m.id, Err((reason, None)), now).await?;
        return Ok(());
    }
    if s.sms_from.is_none() {
        let note = format!("{reason}; no SMS fallback (channels.sms_from is not set)");
        repo::finish_attempt(app.db(), m.id, Err((&note, None)), now).await?;
        return Ok(());
    }
    let copy = OutboundRow {
        id: Uuid::now_v7(),
        channel: MessageChannel::Sms.as_str().into(),
        status: "queued".into(),
        attempts: 0,
        next_attempt_at_ms: now,
        last_attempt_at_ms: None,
        last_error: None,
        provider_sid: None,
        created_at_ms: now,
        updated_at_ms: now,
        ..m.clone()
    };
    let mut tx = app.db().begin().await?;
    let written =
        repo::insert_outbound_once(&mut tx, &copy, &format!("{}:sms_fallback", m.id)).await?;
    let note = if written {
        enqueue(
            &mut tx,
            &SendMessage { id: copy.id },
            EnqueueOptions::default(),
        )
        .await?;
        metrics::counter!("khaacho_messages_sms_fallback_total").increment(1);
        format!("{reason}; sent again by SMS (message {})", copy.id)
    } else {
        format!("{reason}; already sent again by SMS once")
    };
    repo::finish_dead_tx(&mut tx, m.id, &note, now).await?;
    tx.commit().await?;
    Ok(())
}

/// How a message may go out on WhatsApp now.
enum Window {
    /// Free text (SMS, or within 24 hours of the phone's last WhatsApp message).
    Open,
    /// Outside the window: as this approved template (Content SID, variables JSON).
    Template(String, String),
    /// Outside the window and no approved template: not sent, for this reason.
    Closed(String),
}

async fn whatsapp_window(app: &App, m: &OutboundRow, now: i64) -> Result<Window, sqlx::Error> {
    if m.channel != MessageChannel::Whatsapp.as_str() {
        return Ok(Window::Open);
    }
    let last = repo::last_whatsapp_from(app.db(), &m.recipient).await?;
    if last.is_some_and(|at| now - at <= WHATSAPP_WINDOW_MS) {
        return Ok(Window::Open);
    }
    let s = &app.settings().channels;
    Ok(match s.whatsapp_content_sids.get(&m.template) {
        Some(sid) => {
            // `serde_json::Map` iterates its keys in alphabetical order.
            let vars: serde_json::Map<String, serde_json::Value> = m
                .vars
                .0
                .as_object()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, (_, v))| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    ((i + 1).to_string(), serde_json::Value::String(text))
                })
                .collect();
            Window::Template(sid.clone(), serde_json::Value::Object(vars).to_string())
        }
        None => Window::Closed(format!(
            "outside WhatsApp's 24-hour window and no approved template for {} (channels.whatsapp_content_sids)",
            m.template
        )),
    })
}

/// Sends every queued message due at `now` (retries and throttled ones). Returns what each
/// attempt did.
pub async fn sweep(app: &App, now: i64) -> anyhow::Result<Vec<Sent>> {
    let s = &app.settings().channels;
    if !configured(s) && !email_configured(s) {
        return Ok(Vec::new());
    }
    let buried = repo::bury_stuck(app.db(), now - STUCK_SENDING_MS, now).await?;
    if buried > 0 {
        tracing::error!(
            buried,
            "messages stuck in sending went dead; check them and retry"
        );
    }
    let mut out = Vec::new();
    for id in repo::due(app.db(), now, SWEEP, configured(s), email_configured(s)).await? {
        out.push(send_one(app, id, now).await?);
    }
    Ok(out)
}

/// Job: send one outbound message (enqueued with it).
#[derive(Debug, Serialize, Deserialize)]
pub struct SendMessage {
    /// The message.
    pub id: Uuid,
}

impl Job for SendMessage {
    type Host = App;
    const KIND: &'static str = "channels.send";
    const QUEUE: &'static str = "channels";
    const PRIORITY: Priority = Priority::Normal;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            timeout: Duration::from_secs(60),
        }
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        let now = ctx.app.clock().now_ms();
        send_one(&ctx.app, self.id, now).await?;
        Ok(())
    }
}

/// Recurring job: [`sweep`] (retries that came due, throttled messages).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OutboxSweep {}

impl Job for OutboxSweep {
    type Host = App;
    const KIND: &'static str = "channels.outbox";
    const QUEUE: &'static str = "channels";
    const PRIORITY: Priority = Priority::Normal;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            timeout: Duration::from_secs(120),
        }
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        let now = ctx.app.clock().now_ms();
        sweep(&ctx.app, now).await?;
        Ok(())
    }
}

/// The stale-`sending` rule: a message whose attempt never finished (the process died
/// between the claim and the answer) is not sent again blindly; after this long it goes
/// `dead` for a person to check and retry.
pub const STUCK_SENDING_MS: i64 = 10 * 60_000;
