//! The webhook sender: posts a delivery's JSON body to its subscription's URL with
//! `Khaacho-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! (`khaacho_auth::webhook::sign`), `Khaacho-Event-Id`, `Khaacho-Event-Type` and
//! `Khaacho-Delivery-Id`, behind the resilience stack (timeout → breaker → bulkhead, one
//! breaker per subscription so one dead receiver does not stop the others; no in-call
//! retry). A 2xx answer delivers it; anything else is retried after 1, 5, 15, 30 and 60
//! minutes, then `dead` (listed with its log, retryable by its owner). Every attempt is
//! logged (`webhook_attempts`: status code, latency, error). Each attempt first claims the
//! delivery (`queued` → `sending`), so two sender runs never post it at once; a `sending`
//! row older than 10 minutes (the process died mid-call) goes `dead`.
//!
//! Time is the app's clock ([`App::clock`]): the schedule and the signature's timestamp.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use khaacho_resilience::{CallError, Classify, Policy, Resilient};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::repo::{self, Outcome};
use super::urls;
use crate::app::{App, JobContext};
use crate::config::WebhookSettings;
use crate::queue::{Job, JobError, Priority, RetryPolicy};

/// Waits after failed attempts 1–5; a sixth failure is final (`dead`).
pub const RETRY_MINUTES: [i64; 5] = [1, 5, 15, 30, 60];

/// A `sending` delivery older than this never finished: `dead`.
pub const STUCK_SENDING_MS: i64 = 10 * 60_000;

/// Deliveries one sweep posts at most; the next sweep takes the rest.
const SWEEP: i64 = 200;

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The receiver answered, but not 2xx.
    #[error("the receiver answered {status}: {body}")]
    Answered {
        /// HTTP status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// No answer (connection refused, reset, DNS).
    #[error("{0}")]
    Network(String),
}

impl Classify for PostError {
    fn is_retryable(&self) -> bool {
        false // No in-call retry: the schedule retries.
    }

    fn counts_as_failure(&self) -> bool {
        // A 4xx (other than 408/429) says the receiver is up.
        match self {
            PostError::Answered { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            PostError::Network(_) => true,
        }
    }
}

/// The HTTP client and one resilience stack per subscription (one per process).
#[derive(Clone)]
pub struct Deliverer {
    http: reqwest::Client,
    timeout: Duration,
    stacks: Arc<Mutex<HashMap<Uuid, Resilient>>>,
}

impl Deliverer {
    /// A deliverer with the configured time budget. It follows no redirects (a redirect
    /// could lead past the URL rule), and unless insecure URLs are allowed it connects only
    /// to the public addresses its own resolver found ([`urls::PublicOnly`]).
    pub fn new(settings: &WebhookSettings) -> Self {
        let timeout = Duration::from_millis(settings.send_timeout_ms);
        let mut http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Khaacho-Webhooks/1");
        if !settings.allow_insecure_urls {
            // Directly: through a proxy, the proxy would resolve the name, past the rule.
            http = http.dns_resolver(urls::PublicOnly).no_proxy();
        }
        Self {
            http: http.build().unwrap_or_default(),
            timeout,
            stacks: Default::default(),
        }
    }

    fn stack(&self, subscription: Uuid) -> Resilient {
        let mut stacks = self.stacks.lock().unwrap_or_else(|e| e.into_inner());
        stacks
            .entry(subscription)
            .or_insert_with(|| Resilient::new(Policy::new("webhooks", self.timeout)))
            .clone()
    }

    async fn post(
        &self,
        d: &repo::DeliveryRow,
        url: &str,
        signature: String,
    ) -> Result<u16, CallError<PostError>> {
        let stack = self.stack(d.subscription_id);
        stack
            .call(|| {
                let req = self
                    .http
                    .post(url)
                    .header("content-type", "application/json")
                    .header(khaacho_auth::webhook::SIGNATURE_HEADER, signature.clone())
                    .header("Khaacho-Event-Id", d.event_id.to_string())
                    .header("Khaacho-Event-Type", d.event_type.clone())
                    .header("Khaacho-Delivery-Id", d.id.to_string())
                    .body(d.payload.clone());
                async move {
                    let resp = req
                        .send()
                        .await
                        .map_err(|e| PostError::Network(e.to_string()))?;
                    let status = resp.status();
                    if status.is_success() {
                        return Ok(status.as_u16());
                    }
                    let text = resp.text().await.unwrap_or_default();
                    Err(PostError::Answered {
                        status: status.as_u16(),
                        body: text.chars().take(300).collect(),
                    })
                }
            })
            .await
    }
}

/// What one attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// The receiver answered 2xx (its status).
    Delivered(u16),
    /// Failed; due again then.
    RetryAt(i64),
    /// Failed for good.
    Dead,
    /// Not due, already handled, or claimed by another run.
    Skipped,
}

/// One attempt at delivery `id` at `now` (see the module docs).
#[tracing::instrument(skip(app), fields(delivery_id = %id))]
pub async fn deliver_one(app: &App, id: Uuid, now: i64) -> anyhow::Result<Delivered> {
    let Some(d) = repo::find_delivery(app.db(), id).await? else {
        return Ok(Delivered::Skipped);
    };
    if d.status != "queued" || d.next_attempt_at_ms > now {
        return Ok(Delivered::Skipped);
    }
    if !repo::claim(app.db(), id, now).await? {
        return Ok(Delivered::Skipped);
    }
    let attempt = d.attempts + 1;
    let settings = &app.settings().webhooks;
    let sub = repo::find_subscription(app.db(), d.subscription_id, None).await?;
    let started = Instant::now();
    let result: Result<u16, (Option<u16>, String)> = match sub {
        None => Err((None, "the subscription was deleted".into())),
        Some(sub) => {
            let checked = match urls::check(&sub.url, settings.allow_insecure_urls) {
                Ok(url) => urls::check_resolved(&url, settings.allow_insecure_urls)
                    .await
                    .map(|_| url),
                Err(e) => Err(e),
            };
            match checked {
                Err(refusal) => Err((None, format!("not sent: {refusal}"))),
                Ok(url) => {
                    let t = (now / 1000).max(0) as u64;
                    let signature =
                        khaacho_auth::webhook::sign(sub.secret.as_bytes(), t, d.payload.as_bytes());
                    match app.webhooks().post(&d, url.as_str(), signature).await {
                        Ok(status) => Ok(status),
                        Err(CallError::Inner(PostError::Answered { status, body })) => Err((
                            Some(status),
                            format!("the receiver answered {status}: {body}"),
                        )),
                        Err(e) => Err((None, e.to_string())),
                    }
                }
            }
        }
    };
    let latency_ms = started.elapsed().as_millis() as i64;
    let (status_code, error) = match &result {
        Ok(s) => (Some(*s as i32), None),
        Err((s, e)) => (s.map(i32::from), Some(e.as_str())),
    };
    let retryable = !matches!(&result, Err((None, e)) if e.starts_with("the subscription was deleted") || e.starts_with("not sent"));
    let next = match &result {
        Ok(_) => None,
        Err(_) if !retryable => None,
        Err(_) => RETRY_MINUTES
            .get((attempt - 1) as usize)
            .map(|m| now + m * 60_000),
    };
    let outcome = Outcome {
        attempt,
        status_code,
        latency_ms,
        error,
        next,
    };
    repo::finish_attempt(app.db(), id, &outcome, now).await?;
    Ok(match (&result, next) {
        (Ok(s), _) => {
            metrics::counter!("khaacho_webhook_deliveries_total", "outcome" => "delivered")
                .increment(1);
            Delivered::Delivered(*s)
        }
        (Err((_, e)), Some(at)) => {
            tracing::warn!(attempt, error = %e, retry_at = at, "a webhook delivery failed");
            Delivered::RetryAt(at)
        }
        (Err((_, e)), None) => {
            tracing::warn!(attempt, error = %e, "a webhook delivery went dead");
            metrics::counter!("khaacho_webhook_deliveries_total", "outcome" => "dead").increment(1);
            Delivered::Dead
        }
    })
}

/// Posts every queued delivery due at `now` (retries that came due); buries stuck ones.
pub async fn sweep(app: &App, now: i64) -> anyhow::Result<Vec<Delivered>> {
    let buried = repo::bury_stuck(app.db(), now - STUCK_SENDING_MS, now).await?;
    if buried > 0 {
        tracing::error!(
            buried,
            "webhook deliveries stuck in sending went dead; check them and retry"
        );
    }
    let mut out = Vec::new();
    for id in repo::due(app.db(), now, SWEEP).await? {
        out.push(deliver_one(app, id, now).await?);
    }
    Ok(out)
}

/// Job: post one delivery (enqueued with it).
#[derive(Debug, Serialize, Deserialize)]
pub struct DeliverWebhook {
    /// The delivery.
    pub id: Uuid,
}

impl Job for DeliverWebhook {
    type Host = App;
    const KIND: &'static str = "webhooks.deliver";
    const QUEUE: &'static str = "webhooks";
    const PRIORITY: Priority = Priority::Normal;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            timeout: Duration::from_secs(60),
        }
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        let now = ctx.app.clock().now_ms();
        deliver_one(&ctx.app, self.id, now).await?;
        Ok(())
    }
}

/// Recurring job: [`sweep`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WebhookSweep {}

impl Job for WebhookSweep {
    type Host = App;
    const KIND: &'static str = "webhooks.sweep";
    const QUEUE: &'static str = "webhooks";
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener on loopback that counts the connections it accepts.
    async fn listener() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        (port, seen)
    }

    #[tokio::test]
    async fn the_sender_connects_only_where_its_own_resolver_found_public_addresses() {
        let (port, seen) = listener().await;
        // A name that resolves inside — what a rebinding name answers after the check.
        let url = format!("http://localhost:{port}/hook");
        let strict = Deliverer::new(&WebhookSettings::default());
        let err = strict.http.post(&url).send().await.unwrap_err();
        let mut why = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            why.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert!(why.contains("non-public address"), "{why}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
        // With the rule lifted (development, tests), the same name is reached.
        let open = Deliverer::new(&WebhookSettings {
            allow_insecure_urls: true,
            ..WebhookSettings::default()
        });
        let r = open.http.post(&url).send().await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
