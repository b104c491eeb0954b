//! `khaacho chat`: talk to a local server as a phone would through WhatsApp, offline. Each
//! line read is posted to the inbound webhook exactly as Twilio would post it (form-encoded,
//! `X-Twilio-Signature` computed with the configured auth token over the configured public
//! URL), then the outbox is polled for the replies to that phone, which are printed.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use uuid::Uuid;

use super::phone;
use super::routes::{MESSAGES_PATH, public_url};
use crate::config::Settings;

/// How long to wait for the first reply to a line.
const FIRST_REPLY: Duration = Duration::from_secs(15);
/// After a reply, how long to wait for more before reading the next line.
const QUIET: Duration = Duration::from_millis(1500);
const POLL: Duration = Duration::from_millis(250);

/// A chat session with the server at `url` as `phone`; `staff_token` reads the outbox.
pub struct Chat<'a> {
    /// Settings shared with the server (auth token, public URL).
    pub settings: &'a Settings,
    /// Base URL of the running server.
    pub url: &'a str,
    /// The sender, E.164.
    pub phone: String,
    /// A staff access token for `GET /api/v1/channels/messages`.
    pub staff_token: String,
    http: reqwest::Client,
}

impl<'a> Chat<'a> {
    /// A session; refuses a phone that is no phone number and settings without a token.
    pub fn new(
        settings: &'a Settings,
        url: &'a str,
        phone: &str,
        staff_token: String,
    ) -> anyhow::Result<Self> {
        let Some(phone) = phone::e164(phone) else {
            bail!("--phone {phone} is not a phone number (e.g. +9779800000001)");
        };
        if settings.channels.twilio_auth_token.is_none() {
            bail!(
                "set channels.twilio_auth_token (KHAACHO_CHANNELS__TWILIO_AUTH_TOKEN) to the server's value: \
                 messages are signed with it"
            );
        }
        Ok(Self {
            settings,
            url: url.trim_end_matches('/'),
            phone,
            staff_token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// Reads lines from `input` until it ends, printing the replies to `out`.
    pub async fn run(
        &self,
        input: impl AsyncBufRead + Unpin,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        let mut last = self.latest().await?;
        writeln!(
            out,
            "chatting as whatsapp:{} with {} (Ctrl-D to stop)",
            self.phone, self.url
        )?;
        let mut lines = input.lines();
        while let Some(line) = lines.next_line().await.context("reading stdin")? {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            self.send(line).await?;
            let started = Instant::now();
            let mut heard: Option<Instant> = None;
            loop {
                let new = self.since(last).await?;
                for m in &new {
                    let body = m["body"]
                        .as_str()
                        .unwrap_or_default()
                        .replace('\n', "\n          ");
                    writeln!(out, "khaacho > {body}")?;
                    last = m["id"].as_str().and_then(|s| s.parse().ok()).or(last);
                }
                out.flush()?;
                if !new.is_empty() {
                    heard = Some(Instant::now());
                }
                let done = match heard {
                    Some(at) => at.elapsed() >= QUIET,
                    None => started.elapsed() >= FIRST_REPLY,
                };
                if done {
                    if heard.is_none() {
                        writeln!(
                            out,
                            "(no reply yet: is a worker running? `khaacho serve` runs one)"
                        )?;
                    }
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    /// Posts one line as Twilio would.
    async fn send(&self, text: &str) -> anyhow::Result<()> {
        let sid = format!("SMchat{}", Uuid::now_v7().simple());
        let from = format!("whatsapp:{}", self.phone);
        let params = [
            ("MessageSid", sid.as_str()),
            ("From", from.as_str()),
            ("To", "whatsapp:khaacho"),
            ("Body", text),
            ("NumMedia", "0"),
        ];
        let token = self
            .settings
            .channels
            .twilio_auth_token
            .as_deref()
            .unwrap_or_default();
        let signed_url = public_url(self.settings, MESSAGES_PATH);
        let signature = khaacho_auth::webhook::twilio_signature(token, &signed_url, &params);
        let resp = self
            .http
            .post(format!("{}{MESSAGES_PATH}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(khaacho_auth::webhook::TWILIO_SIGNATURE_HEADER, signature)
            .body(serde_urlencoded::to_string(params)?)
            .send()
            .await
            .with_context(|| format!("posting to {}", self.url))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!(
                "the server answered {status}: {body} (same channels.public_url and auth token as the server?)"
            );
        }
        Ok(())
    }

    async fn list(&self, query: &str) -> anyhow::Result<Vec<Value>> {
        let recipient = self.phone.replace('+', "%2B");
        let resp = self
            .http
            .get(format!(
                "{}/api/v1/channels/messages?recipient={recipient}&{query}",
                self.url
            ))
            .bearer_auth(&self.staff_token)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await.context("reading the outbox")?;
        if !status.is_success() {
            bail!("listing the outbox: {status} {body}");
        }
        Ok(body["items"].as_array().cloned().unwrap_or_default())
    }

    /// The newest message to this phone so far.
    async fn latest(&self) -> anyhow::Result<Option<Uuid>> {
        Ok(self
            .list("limit=1")
            .await?
            .first()
            .and_then(|m| m["id"].as_str())
            .and_then(|s| s.parse().ok()))
    }

    /// Messages to this phone after `last`, oldest first.
    async fn since(&self, last: Option<Uuid>) -> anyhow::Result<Vec<Value>> {
        match last {
            Some(id) => self.list(&format!("after={id}&limit=50")).await,
            None => {
                let mut all = self.list("limit=50").await?;
                all.reverse();
                Ok(all)
            }
        }
    }
}
