//! Live updates over WebSocket (`/api/v1/ws`): tickets, tenant scope and money, resume
//! without gaps or repeats, forbidden topics, oversized frames, slow clients, heartbeats, and
//! a change consumed by another process. Both backends.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use khaacho::app::App;
use khaacho::auth::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_problem, audit_rows, test_settings};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Longest wait for one frame: generous for a loaded machine, never a sleep.
const FRAME_WAIT: Duration = Duration::from_secs(20);

const RICE: &str = "RICE-JEERA-25";

async fn ticket(t: &TestApp, client: &reqwest::Client) -> String {
    let r = client
        .post(t.url("/api/v1/ws/tickets"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in_secs"], 60);
    assert!(
        v["url"]
            .as_str()
            .unwrap()
            .ends_with(v["ticket"].as_str().unwrap())
    );
    v["ticket"].as_str().unwrap().to_string()
}

fn ws_url(t: &TestApp, ticket: &str) -> String {
    format!("ws://{}/api/v1/ws?ticket={ticket}", t.addr)
}

async fn connect(t: &TestApp, client: &reqwest::Client) -> Ws {
    let tk = ticket(t, client).await;
    tokio_tungstenite::connect_async(ws_url(t, &tk))
        .await
        .expect("socket opens")
        .0
}

/// The HTTP answer to an upgrade that was refused.
async fn refused(t: &TestApp, ticket: &str) -> (u16, Value) {
    match tokio_tungstenite::connect_async(ws_url(t, ticket)).await {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(tungstenite::Error::Http(resp)) => {
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            (resp.status().as_u16(), body)
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// The next JSON frame (pings and pongs skipped).
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(FRAME_WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame reads");
        match msg {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until the socket closes; the close code and reason, and the events before it.
async fn until_closed(ws: &mut Ws) -> (u16, String, Vec<Value>) {
    let mut events = Vec::new();
    loop {
        let msg = tokio::time::timeout(FRAME_WAIT, ws.next())
            .await
            .expect("a frame in time");
        match msg {
            Some(Ok(Message::Text(text))) => {
                events.push(serde_json::from_str(text.as_str()).unwrap())
            }
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string(), events);
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// Subscribes (first time) and returns the replayed events up to `caught_up`.
async fn subscribe(ws: &mut Ws, topics: &[&str], after: Option<&str>) -> Vec<Value> {
    let mut frame = json!({ "type": "subscribe", "topics": topics });
    if let Some(a) = after {
        frame["after"] = json!(a);
    }
    send(ws, frame).await;
    let ok = next(ws).await;
    assert_eq!(ok["type"], "subscribed", "{ok}");
    let mut replayed = Vec::new();
    loop {
        let f = next(ws).await;
        match f["type"].as_str().unwrap() {
            "caught_up" => return replayed,
            "event" => replayed.push(f),
            other => panic!("unexpected {other}: {f}"),
        }
    }
}

/// Reads event frames until one satisfies `last`; returns them all (that one included).
async fn events_until(ws: &mut Ws, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let f = next(ws).await;
        assert_eq!(f["type"], "event", "{f}");
        let done = last(&f);
        out.push(f);
        if done {
            return out;
        }
    }
}

async fn order(t: &TestApp, client: &reqwest::Client, retailer: &str) -> String {
    let r = client
        .post(t.url("/api/v1/orders"))
        .json(&json!({ "retailer_id": retailer,
            "lines": [{ "sku": RICE, "qty": 1, "unit": "kg" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn retailers(t: &TestApp) -> (String, String) {
    let v = t.get_json("/api/v1/retailers?limit=2").await;
    (
        v["items"][0]["id"].as_str().unwrap().to_string(),
        v["items"][1]["id"].as_str().unwrap().to_string(),
    )
}

/// Every numbered event id after `after_seq`, in order (what a staff socket must receive).
async fn feed_after(app: &App, after_seq: i64) -> Vec<String> {
    let ids: Vec<Uuid> = khaacho::with_latest!(app.db(), c => sqlx::query_scalar(
        "SELECT event_id FROM order_event_feed WHERE seq > $1 ORDER BY seq")
        .bind(after_seq).fetch_all(c).await)
    .unwrap();
    ids.into_iter().map(|i| i.to_string()).collect()
}

/// Reads exactly the events `expected` (ids, in order) and returns them.
async fn all_of(ws: &mut Ws, expected: Vec<String>) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let f = next(ws).await;
        assert_eq!(f["type"], "event", "{f}");
        got.push(f);
    }
    assert_eq!(ids(&got), expected);
    got
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn has_money(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| k.ends_with("_paisa") || k.ends_with("_npr") || has_money(v)),
        Value::Array(items) => items.iter().any(has_money),
        _ => false,
    }
}

#[tokio::test]
async fn a_retailer_gets_only_its_own_orders_and_a_vendor_no_money() {
    // Every order is held for review, so its hold event names the order total.
    let t = TestApp::spawn_with(|s| s.pipeline.review_above_npr = 1).await;
    t.seed().await;
    let (a, b) = retailers(&t).await;
    let as_a = t.client_as(Role::Retailer, Some(a.parse().unwrap()));
    let as_b = t.client_as(Role::Retailer, Some(b.parse().unwrap()));
    let mut ws_a = connect(&t, &as_a).await;
    let mut staff = connect(&t, &t.client).await;
    assert!(subscribe(&mut ws_a, &["orders"], None).await.is_empty());
    subscribe(&mut staff, &["orders"], None).await;

    let of_b = order(&t, &as_b, &b).await;
    let of_a = order(&t, &as_a, &a).await;
    t.run_jobs().await;
    // B's order was made and held first; then a last order of A's marks the end.
    let last_a = order(&t, &as_a, &a).await;
    t.run_jobs().await;
    let seen = events_until(&mut ws_a, |e| {
        e["order_id"] == last_a.as_str() && e["to"] == "on_hold"
    })
    .await;
    assert!(
        seen.iter().all(|e| e["order_id"] != of_b.as_str()),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| e["order_id"] == of_a.as_str() && e["to"] == "received")
    );
    // The buyer sees the money of its own order.
    let hold = seen
        .iter()
        .find(|e| e["order_id"] == of_a.as_str() && e["to"] == "on_hold")
        .unwrap();
    assert!(has_money(hold), "{hold}");
    assert!(hold["at"].is_string() && hold["seq"].is_i64());

    // Staff saw everything, in commit order.
    let all = all_of(&mut staff, feed_after(&t.app, 0).await).await;

    // The vendor whose offer priced B's order follows it: the hold is there, its money not.
    let o = t.get_json(&format!("/api/v1/orders/{of_b}")).await;
    let vendor = o["lines"][0]["vendor_id"]
        .as_str()
        .expect("a priced line")
        .to_string();
    let as_v = t.client_as(Role::Vendor, Some(vendor.parse().unwrap()));
    let mut ws_v = connect(&t, &as_v).await;
    let received_b = all
        .iter()
        .find(|e| e["order_id"] == of_b.as_str() && e["to"] == "received")
        .unwrap();
    let replayed = subscribe(
        &mut ws_v,
        &[&format!("order:{of_b}")],
        received_b["id"].as_str(),
    )
    .await;
    let hold = replayed
        .iter()
        .find(|e| e["to"] == "on_hold")
        .expect("the hold replayed");
    assert_eq!(hold["reason"], "large_order_review");
    assert!(!has_money(hold), "{hold}");
    assert!(replayed.iter().all(|e| e["order_id"] == of_b.as_str()));
    let staff_hold = all
        .iter()
        .find(|e| e["order_id"] == of_b.as_str() && e["to"] == "on_hold")
        .unwrap();
    assert!(has_money(staff_hold), "{staff_hold}");
    assert_eq!(hold["id"], staff_hold["id"]);
}

#[tokio::test]
async fn resuming_after_a_disconnect_misses_nothing_and_repeats_nothing() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let mut ws = connect(&t, &t.client).await;
    subscribe(&mut ws, &["orders"], None).await;
    let first = order(&t, &t.client, &retailer).await;
    t.run_jobs().await;
    let before = all_of(&mut ws, feed_after(&t.app, 0).await).await;
    assert!(before.iter().any(|e| e["order_id"] == first.as_str()));
    let last = before.last().unwrap()["id"].as_str().unwrap().to_string();
    let last_seq = before.last().unwrap()["seq"].as_i64().unwrap();
    ws.close(None).await.unwrap();
    drop(ws);

    // While disconnected: more orders, more changes.
    for _ in 0..3 {
        order(&t, &t.client, &retailer).await;
    }
    t.run_jobs().await;
    let missed = feed_after(&t.app, last_seq).await;
    assert!(missed.len() >= 6, "{missed:?}");

    let mut ws = connect(&t, &t.client).await;
    let replayed = subscribe(&mut ws, &["orders"], Some(&last)).await;
    assert_eq!(
        ids(&replayed),
        missed,
        "exactly the missed events, in order"
    );
    // Then live, with nothing repeated at the seam.
    let next_order = order(&t, &t.client, &retailer).await;
    t.run_jobs().await;
    let seam = replayed.last().unwrap()["seq"].as_i64().unwrap();
    let live = all_of(&mut ws, feed_after(&t.app, seam).await).await;
    assert!(live.iter().any(|e| e["order_id"] == next_order.as_str()));

    // An unknown `after` is an error frame; the socket stays.
    let mut other = connect(&t, &t.client).await;
    send(
        &mut other,
        json!({ "type": "subscribe", "topics": ["orders"], "after": Uuid::now_v7() }),
    )
    .await;
    let e = next(&mut other).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["problem"]["status"], 404);
    assert!(subscribe(&mut other, &["orders"], None).await.is_empty());
}

#[tokio::test]
async fn missing_forged_expired_and_reused_tickets_are_401_and_audited() {
    let t = TestApp::spawn().await;
    // No ticket; a plain GET; no credentials for a ticket.
    assert_problem(
        t.anonymous.get(t.url("/api/v1/ws")).send().await.unwrap(),
        401,
    )
    .await;
    let r = t
        .anonymous
        .post(t.url("/api/v1/ws/tickets"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401).await;

    // Forged: the right shape, never issued; and the wrong shape.
    let forged = format!("kwt_{}", "ab".repeat(32));
    let (status, body) = refused(&t, &forged).await;
    assert_eq!((status, body["status"].as_i64()), (401, Some(401)));
    assert_eq!(refused(&t, "kwt_nope").await.0, 401);

    // A plain GET with a good ticket is 426 and does not use it up.
    let tk = ticket(&t, &t.client).await;
    let r = t
        .anonymous
        .get(t.url(&format!("/api/v1/ws?ticket={tk}")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 426).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&t, &tk))
        .await
        .unwrap();
    ws.close(None).await.unwrap();
    // Reused.
    assert_eq!(refused(&t, &tk).await.0, 401);

    // Expired: 60 s on the app's clock.
    let tk = ticket(&t, &t.client).await;
    t.app.clock().advance(61_000);
    assert_eq!(refused(&t, &tk).await.0, 401);

    // A client that can send headers needs no ticket; a bad header is refused like anywhere.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let bearer = |token: String| {
        let mut req = format!("ws://{}/api/v1/ws", t.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        req
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(bearer(t.token(Role::Operator, None)))
        .await
        .unwrap();
    subscribe(&mut ws, &["alerts"], None).await;
    match tokio_tungstenite::connect_async(bearer("forged".into())).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }

    let rows = audit_rows(&t, "action=auth.invalid_credentials").await;
    let reasons: Vec<&str> = rows
        .iter()
        .map(|r| r["summary"]["reason"].as_str().unwrap())
        .collect();
    for reason in [
        "unknown ws ticket",
        "malformed ws ticket",
        "reused ws ticket",
        "expired ws ticket",
    ] {
        assert!(reasons.contains(&reason), "{reason} not in {reasons:?}");
    }
}

#[tokio::test]
async fn forbidden_and_bad_subscriptions_get_error_frames_and_the_socket_stays() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let (a, b) = retailers(&t).await;
    let as_a = t.client_as(Role::Retailer, Some(a.parse().unwrap()));
    let of_b = order(&t, &t.client, &b).await;
    let mut ws = connect(&t, &as_a).await;

    let cases = [
        (json!({ "type": "subscribe", "topics": ["alerts"] }), 403),
        (
            json!({ "type": "subscribe", "topics": ["orders", format!("order:{of_b}")] }),
            404,
        ),
        (
            json!({ "type": "subscribe", "topics": ["everything"] }),
            422,
        ),
        (json!({ "type": "subscribe", "topics": [] }), 422),
        (
            json!({ "type": "subscribe", "topics": ["orders"], "after": "not-an-id" }),
            422,
        ),
        (json!({ "type": "dance" }), 422),
    ];
    for (frame, status) in cases {
        send(&mut ws, frame.clone()).await;
        let e = next(&mut ws).await;
        assert_eq!(e["type"], "error", "{frame} → {e}");
        assert_eq!(e["problem"]["status"], status, "{frame} → {e}");
        assert!(
            e["problem"]["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:khaacho:problem:")
        );
    }
    ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(next(&mut ws).await["problem"]["status"], 422);
    // Nothing was subscribed by the refused frames: B's order made no event here. The socket
    // still works.
    assert!(subscribe(&mut ws, &["orders"], None).await.is_empty());
    let mine = order(&t, &as_a, &a).await;
    t.run_jobs().await;
    let seen = events_until(&mut ws, |e| {
        e["order_id"] == mine.as_str() && e["to"] == "validated"
    })
    .await;
    assert!(
        seen.iter().all(|e| e["order_id"] == mine.as_str()),
        "{seen:?}"
    );

    // Staff may follow alerts.
    let mut staff = connect(&t, &t.client).await;
    subscribe(&mut staff, &["alerts"], None).await;
}

#[tokio::test]
async fn an_oversized_frame_closes_the_socket_with_1009() {
    let t = TestApp::spawn().await;
    let mut ws = connect(&t, &t.client).await;
    let big = format!(
        r#"{{"type":"subscribe","topics":["{}"]}}"#,
        "x".repeat(20 * 1024)
    );
    ws.send(Message::Text(big.into())).await.unwrap();
    let (code, reason, _) = until_closed(&mut ws).await;
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("16384"), "{reason}");
    // The server and its other sockets are fine.
    let mut other = connect(&t, &t.client).await;
    subscribe(&mut other, &["orders"], None).await;
}

/// A socket whose kernel receive buffer is tiny, so a client that stops reading backs the
/// server up quickly.
async fn connect_small(t: &TestApp, client: &reqwest::Client) -> Ws {
    let tk = ticket(t, client).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let stream = socket.connect(t.addr).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    tokio_tungstenite::client_async(ws_url(t, &tk), stream)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn a_slow_client_is_dropped_while_another_keeps_receiving() {
    // Small kernel buffers on both ends (accepted sockets inherit the listener's), so a
    // client that stops reading backs the server up after a few dozen events.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(128).unwrap();
    let t = TestApp::spawn_on(listener, |s| {
        s.live.buffer = 4;
        s.live.slow_grace_ms = 300;
        s.rate_limits.enabled = false;
    })
    .await;
    t.seed().await;
    let retailer = t.retailer().await;
    let mut slow = connect_small(&t, &t.client).await;
    let mut fast = connect(&t, &t.client).await;
    subscribe(&mut slow, &["orders"], None).await;
    subscribe(&mut fast, &["orders"], None).await;
    assert_eq!(t.app.live().subscribers().await, 2);

    // The slow one reads nothing. Rounds of orders until the hub drops it; the fast one
    // gets every event of every round meanwhile.
    let mut fast_seen: Vec<Value> = Vec::new();
    let mut rounds = 0;
    while t.app.live().subscribers().await == 2 {
        rounds += 1;
        assert!(rounds <= 40, "the slow client was never dropped");
        let mut last = String::new();
        for _ in 0..25 {
            last = order(&t, &t.client, &retailer).await;
        }
        t.run_jobs().await;
        let seen = fast_seen.last().map_or(0, |e| e["seq"].as_i64().unwrap());
        let round = all_of(&mut fast, feed_after(&t.app, seen).await).await;
        assert!(round.iter().any(|e| e["order_id"] == last.as_str()));
        fast_seen.extend(round);
    }
    assert_eq!(ids(&fast_seen), feed_after(&t.app, 0).await);
    // The fast one keeps receiving after the drop.
    let seen = fast_seen.last().unwrap()["seq"].as_i64().unwrap();
    let after_drop = order(&t, &t.client, &retailer).await;
    t.run_jobs().await;
    let more = all_of(&mut fast, feed_after(&t.app, seen).await).await;
    assert!(more.iter().any(|e| e["order_id"] == after_drop.as_str()));

    // The slow one gets what was buffered, then 1013 naming where to resume; resuming from
    // there misses nothing.
    let (code, reason, got) = until_closed(&mut slow).await;
    assert_eq!(code, 1013, "{reason}");
    let last_id = got.last().expect("some events before the close")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.ends_with(&format!("after={last_id}")), "{reason}");
    let mut again = connect(&t, &t.client).await;
    let rest = subscribe(&mut again, &["orders"], Some(&last_id)).await;
    let mut all = ids(&got);
    all.extend(ids(&rest));
    assert_eq!(all, feed_after(&t.app, 0).await);
}

#[tokio::test]
async fn heartbeats_keep_a_reading_client_and_close_a_silent_one() {
    let t = TestApp::spawn_with(|s| {
        s.live.heartbeat_ms = 50;
        s.live.idle_timeout_ms = 300;
    })
    .await;
    let mut silent = connect(&t, &t.client).await;
    subscribe(&mut silent, &["orders"], None).await;
    let mut reader = connect(&t, &t.client).await;
    assert_eq!(t.app.live().sockets(), 2);
    // The reader answers every ping (the client library pongs as it reads); its pings are
    // the test's clock until the silent socket is gone.
    let mut pings = 0;
    while t.app.live().sockets() > 1 {
        let msg = tokio::time::timeout(FRAME_WAIT, reader.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(matches!(msg, Message::Ping(_)), "{msg:?}");
        pings += 1;
        assert!(pings < 400, "the silent socket was never closed");
    }
    assert!(pings >= 5, "closed after {pings} pings: too early");
    // The silent client finds the socket closed: the close frame (1008) if it reads it before
    // its library fails answering the queued pings on the closed connection.
    loop {
        match tokio::time::timeout(FRAME_WAIT, silent.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Ping(_))) => {}
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
                break;
            }
            Some(Ok(other)) => panic!("unexpected {other:?}"),
            Some(Err(_)) | None => break,
        }
    }
    assert_eq!(t.app.live().sockets(), 1);
    // The reader, quiet in frames but answering pings, is still served.
    subscribe(&mut reader, &["orders"], None).await;
}

#[tokio::test]
async fn a_change_consumed_by_another_process_reaches_the_socket() {
    // On PostgreSQL the hub polls only once a minute here: the event must come by NOTIFY.
    let pg = std::env::var("KHAACHO_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"));
    let t = TestApp::spawn_with(|s| s.live.poll_ms = if pg { 60_000 } else { 50 }).await;
    t.seed().await;
    let retailer = t.retailer().await;
    let mut ws = connect(&t, &t.client).await;
    subscribe(&mut ws, &["orders"], None).await;
    // A second process (another App on the same database) consumes the changes.
    let worker = App::connect(test_settings(&t.database_url)).await.unwrap();
    let id = order(&t, &t.client, &retailer).await;
    khaacho::queue::runtime::drain(&worker, &khaacho::jobs::registry())
        .await
        .unwrap();
    let seen = all_of(&mut ws, feed_after(&t.app, 0).await).await;
    assert!(
        seen.iter()
            .any(|e| e["order_id"] == id.as_str() && e["to"] == "validated")
    );
}

#[tokio::test]
async fn the_feed_forgets_past_its_history_and_a_late_resume_is_told_to_read_afresh() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    order(&t, &t.client, &retailer).await;
    t.run_jobs().await;
    let old = feed_after(&t.app, 0).await;
    assert!(!old.is_empty());

    // A day and an hour on (the default history is 24 h), more changes; then the
    // maintenance job runs.
    t.app.clock().advance(25 * 3_600_000);
    order(&t, &t.client, &retailer).await;
    t.run_jobs().await;
    let all = feed_after(&t.app, 0).await;
    let recent = all[old.len()..].to_vec();
    assert!(recent.len() >= 2, "{recent:?}");
    t.run_maintenance().await;
    assert_eq!(
        feed_after(&t.app, 0).await,
        recent,
        "only the old ones forgotten"
    );
    assert_eq!(t.count("order_event_feed").await, recent.len() as i64);
    // The events themselves stay in the order's history.
    assert!(t.count("order_events").await >= all.len() as i64);

    // Resuming after a forgotten event: the error frame that says to read afresh.
    let mut ws = connect(&t, &t.client).await;
    send(
        &mut ws,
        json!({ "type": "subscribe", "topics": ["orders"], "after": old.last().unwrap() }),
    )
    .await;
    let e = next(&mut ws).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["problem"]["status"], 404, "{e}");
    // After a kept one: the rest of the kept ones, in order.
    let mut ws = connect(&t, &t.client).await;
    let replayed = subscribe(&mut ws, &["orders"], Some(&recent[0])).await;
    assert_eq!(ids(&replayed), recent[1..].to_vec());
}
