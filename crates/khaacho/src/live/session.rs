//! One WebSocket: the protocol (README "Live updates"; ARCHITECTURE.md "Live updates").
//!
//! Client → server (JSON text frames, at most `live.max_frame_bytes`, else close 1009):
//! `{"type":"subscribe","topics":["orders" | "order:<uuid>" | "alerts", …],"after":"<event id>"}`.
//! Server → client: `subscribed`, then (first subscribe) the events after `after` from the
//! table, `caught_up`, then live `event` frames; an `error` frame (a problem body) for a bad
//! or forbidden subscribe, the socket staying open. Pings every `live.heartbeat_ms`; nothing
//! heard for `live.idle_timeout_ms` → close 1008. Dropped by the hub for falling behind →
//! close 1013 (resume with `after` = the last event id received).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use super::feed::{self, FeedEvent};
use super::hub::{Subscription, visible};
use crate::app::App;
use crate::base::principal::Principal;
use crate::base::time::fmt_time;
use crate::orders::visibility::Visibility;

/// Most topics one socket may follow.
const MAX_TOPICS: usize = 100;
/// Replay page.
const REPLAY_PAGE: i64 = 500;

/// What a client may send.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Subscribe {
        topics: Vec<String>,
        #[serde(default)]
        after: Option<String>,
    },
}

/// What the socket follows.
#[derive(Default)]
struct Topics {
    orders: bool,
    order: HashSet<Uuid>,
    alerts: bool,
}

impl Topics {
    fn matches(&self, e: &FeedEvent) -> bool {
        self.orders || self.order.contains(&e.order_id)
    }

    fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.orders {
            out.push("orders".into());
        }
        if self.alerts {
            out.push("alerts".into());
        }
        let mut ids: Vec<&Uuid> = self.order.iter().collect();
        ids.sort();
        out.extend(ids.into_iter().map(|id| format!("order:{id}")));
        out
    }
}

/// A refused subscribe, sent as an `error` frame.
struct Refusal {
    status: u16,
    kind: &'static str,
    detail: String,
    topic: Option<String>,
}

impl Refusal {
    fn new(status: u16, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            topic: None,
        }
    }

    fn on(mut self, topic: &str) -> Self {
        self.topic = Some(topic.to_string());
        self
    }

    fn frame(&self) -> Value {
        let title = axum::http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        json!({ "type": "error", "topic": self.topic, "problem": {
            "type": format!("urn:khaacho:problem:{}", self.kind), "title": title,
            "status": self.status, "detail": self.detail } })
    }
}

/// Serves one upgraded socket for `principal` until it closes.
pub async fn run(app: App, principal: Principal, mut socket: WebSocket) {
    let _open = app.live().open_socket();
    let mut session = Session {
        visibility: Visibility::of(&principal),
        app,
        principal,
        topics: Topics::default(),
        last_seq: 0,
        last_id: None,
    };
    let mut sub: Option<Subscription> = None;
    session.serve(&mut socket, &mut sub).await;
    drop(sub);
}

struct Session {
    app: App,
    principal: Principal,
    visibility: Visibility,
    topics: Topics,
    /// The last event number handed to this socket's filter (replayed or live).
    last_seq: i64,
    /// The id of the last event sent (what the client resumes with).
    last_id: Option<Uuid>,
}

/// The next event of the subscription, or never when there is none yet.
async fn next_event(sub: &mut Option<Subscription>) -> Option<Arc<FeedEvent>> {
    match sub {
        Some(s) => s.rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Session {
    fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.app.settings().live.idle_timeout_ms)
    }

    async fn serve(&mut self, socket: &mut WebSocket, sub: &mut Option<Subscription>) {
        let live = self.app.settings().live.clone();
        let beat = Duration::from_millis(live.heartbeat_ms);
        let idle = Duration::from_millis(live.idle_timeout_ms);
        let mut ping = tokio::time::interval_at(Instant::now() + beat, beat);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                msg = socket.recv() => match msg {
                    None | Some(Ok(Message::Close(_))) => return,
                    Some(Err(e)) => {
                        let text = e.to_string();
                        if text.contains("too long") || text.contains("Space limit") || text.contains("too big") {
                            let reason = format!("frames and messages are limited to {} bytes", live.max_frame_bytes);
                            self.close(socket, close_code::SIZE, reason).await;
                        }
                        return;
                    }
                    Some(Ok(Message::Text(text))) => {
                        heard = Instant::now();
                        if !self.on_frame(socket, sub, text.as_str()).await {
                            return;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        heard = Instant::now();
                        let r = Refusal::new(415, "unsupported-media-type", "send JSON text frames");
                        if !self.send(socket, r.frame()).await {
                            return;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => heard = Instant::now(),
                },
                event = next_event(sub) => match event {
                    Some(event) => {
                        if !self.forward(socket, &event).await {
                            return;
                        }
                    }
                    None => {
                        let slow = sub.as_ref().is_some_and(Subscription::dropped_slow);
                        if slow {
                            let after = self.last_id.map_or_else(String::new, |id| id.to_string());
                            self.close(socket, close_code::AGAIN,
                                format!("too slow: reconnect and subscribe with after={after}")).await;
                        } else {
                            self.close(socket, close_code::AWAY, "server going away".into()).await;
                        }
                        return;
                    }
                },
                _ = ping.tick() => {
                    if heard.elapsed() > idle {
                        self.close(socket, close_code::POLICY,
                            format!("nothing heard for {} ms", live.idle_timeout_ms)).await;
                        return;
                    }
                    let sent = tokio::time::timeout(self.send_timeout(), socket.send(Message::Ping(Default::default()))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return;
                    }
                }
            }
        }
    }

    /// Sends one JSON frame; false if the socket is gone or stuck.
    async fn send(&self, socket: &mut WebSocket, frame: Value) -> bool {
        let msg = Message::Text(frame.to_string().into());
        matches!(
            tokio::time::timeout(self.send_timeout(), socket.send(msg)).await,
            Ok(Ok(()))
        )
    }

    /// Sends an event frame as this caller may see it (rendered once for all full-visibility
    /// sockets).
    async fn send_event(&self, socket: &mut WebSocket, event: &FeedEvent) -> bool {
        let text = match self.visibility {
            Visibility::Full => event
                .full_frame
                .get_or_init(|| render(event, Visibility::Full))
                .clone(),
            vendor => render(event, vendor),
        };
        matches!(
            tokio::time::timeout(self.send_timeout(), socket.send(Message::Text(text.into())))
                .await,
            Ok(Ok(()))
        )
    }

    /// Sends a close frame, then reads until the client answers it (so the close frame is not
    /// lost to a reset), for at most a second.
    async fn close(&self, socket: &mut WebSocket, code: u16, reason: String) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let sent = tokio::time::timeout(
            self.send_timeout(),
            socket.send(Message::Close(Some(frame))),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, socket.recv()).await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    }

    /// An event for this socket (live or replayed), if its topics want it and it is new.
    async fn forward(&mut self, socket: &mut WebSocket, event: &FeedEvent) -> bool {
        if event.seq <= self.last_seq {
            return true;
        }
        self.last_seq = event.seq;
        if !self.topics.matches(event) {
            return true;
        }
        if !self.send_event(socket, event).await {
            return false;
        }
        self.last_id = Some(event.event_id);
        metrics::counter!("khaacho_ws_events_sent_total").increment(1);
        true
    }

    /// Handles one client frame; false when the socket should end.
    async fn on_frame(
        &mut self,
        socket: &mut WebSocket,
        sub: &mut Option<Subscription>,
        text: &str,
    ) -> bool {
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(f) => f,
            Err(e) => {
                let r = Refusal::new(
                    422,
                    "invalid-frame",
                    format!("expected {{\"type\":\"subscribe\",\"topics\":[…],\"after\":…}}: {e}"),
                );
                return self.send(socket, r.frame()).await;
            }
        };
        let ClientFrame::Subscribe { topics, after } = frame;
        match self.subscribe(socket, sub, topics, after).await {
            Ok(ok) => ok,
            Err(r) => self.send(socket, r.frame()).await,
        }
    }

    /// Checks every topic, then subscribes to all of them (or to none).
    async fn subscribe(
        &mut self,
        socket: &mut WebSocket,
        sub: &mut Option<Subscription>,
        names: Vec<String>,
        after: Option<String>,
    ) -> Result<bool, Refusal> {
        if names.is_empty() || names.len() > MAX_TOPICS {
            return Err(Refusal::new(
                422,
                "invalid-frame",
                format!("topics: 1 to {MAX_TOPICS} of orders, order:<id>, alerts"),
            ));
        }
        let mut wanted = Topics::default();
        for name in &names {
            self.check_topic(name, &mut wanted).await?;
        }
        let after_seq = match after {
            None => None,
            Some(_) if sub.is_some() => {
                return Err(Refusal::new(
                    422,
                    "invalid-frame",
                    "after is accepted on the first subscribe only; later ones add topics from now on",
                ));
            }
            Some(a) => {
                let id = Uuid::parse_str(&a).map_err(|_| {
                    Refusal::new(422, "invalid-frame", "after: the id of an event frame")
                })?;
                let seq = feed::seq_of(self.app.db(), id)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| {
                        Refusal::new(
                            404,
                            "not-found",
                            "after: no such event; read the orders over HTTP and subscribe without after",
                        )
                    })?;
                Some(seq)
            }
        };
        let first = sub.is_none();
        if first {
            let s = self
                .app
                .live()
                .subscribe(self.principal.order_scope())
                .await
                .map_err(internal)?;
            self.last_seq = s.from_seq;
            *sub = Some(s);
        }
        self.topics.orders |= wanted.orders;
        self.topics.alerts |= wanted.alerts;
        self.topics.order.extend(wanted.order);
        let frame = json!({ "type": "subscribed", "topics": self.topics.names() });
        if !self.send(socket, frame).await {
            return Ok(false);
        }
        if let Some(after) = after_seq
            && !self.replay(socket, after).await?
        {
            return Ok(false);
        }
        if first {
            let frame = json!({ "type": "caught_up", "seq": self.last_seq });
            return Ok(self.send(socket, frame).await);
        }
        Ok(true)
    }

    /// Sends the events numbered after `after` up to where the live feed took over.
    async fn replay(&mut self, socket: &mut WebSocket, after: i64) -> Result<bool, Refusal> {
        let upto = self.last_seq;
        let scope = self.principal.order_scope();
        let mut from = after;
        while from < upto {
            let page = feed::read(self.app.db(), from, Some(upto), REPLAY_PAGE)
                .await
                .map_err(internal)?;
            let Some(last) = page.last().map(|e| e.seq) else {
                break;
            };
            for event in page.iter().filter(|e| visible(scope, e)) {
                // Replayed events are at or below `last_seq`: sent without the live check.
                if !self.topics.matches(event) {
                    continue;
                }
                if !self.send_event(socket, event).await {
                    return Ok(false);
                }
                self.last_id = Some(event.event_id);
                metrics::counter!("khaacho_ws_events_sent_total").increment(1);
            }
            from = last;
        }
        Ok(true)
    }

    async fn check_topic(&self, name: &str, wanted: &mut Topics) -> Result<(), Refusal> {
        match name {
            "orders" => wanted.orders = true,
            "alerts" => {
                if !self.principal.is_staff() {
                    return Err(Refusal::new(
                        403,
                        "forbidden",
                        format!("the {} role may not follow alerts", self.principal.role),
                    )
                    .on(name));
                }
                wanted.alerts = true;
            }
            _ => {
                let Some(id) = name
                    .strip_prefix("order:")
                    .and_then(|id| Uuid::parse_str(id).ok())
                else {
                    return Err(Refusal::new(
                        422,
                        "invalid-frame",
                        "unknown topic: orders, order:<id> or alerts",
                    )
                    .on(name));
                };
                let scope = self.principal.order_scope();
                let found = crate::orders::repo::find(self.app.db(), scope, id)
                    .await
                    .map_err(internal)?;
                if found.is_none() {
                    return Err(Refusal::new(404, "not-found", "order not found").on(name));
                }
                wanted.order.insert(id);
            }
        }
        Ok(())
    }
}

/// An event frame with the details `visibility` allows.
fn render(event: &FeedEvent, visibility: Visibility) -> String {
    let detail = event.detail.clone().map(|d| visibility.event_detail(d));
    json!({ "type": "event", "id": event.event_id, "seq": event.seq,
        "order_id": event.order_id, "from": event.from, "to": event.to, "reason": event.reason,
        "at": fmt_time(event.at_ms), "at_ms": event.at_ms, "detail": detail })
    .to_string()
}

fn internal(e: sqlx::Error) -> Refusal {
    tracing::error!(error = %e, "live socket: database error");
    Refusal::new(503, "unavailable", "the database is unavailable; try again")
}
