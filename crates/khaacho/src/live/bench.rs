//! `khaacho loadtest-ws`: the live-updates benchmark against a running server (loopback
//! only). Opens `--subscribers` sockets (with the `Authorization` header: ticketed upgrades
//! carry no credential, so they fall under the anonymous per-IP rate limit, which one
//! machine opening 1,000 sockets would hit),
//! subscribes each to `orders`, then places `--events` orders one after another over HTTP
//! and times, for every socket, from just before the `POST /api/v1/orders` to the arrival of
//! that order's `received` event. The path timed is the whole one: intake commit, the
//! `order.changed` job, the feed, the hub, the socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::app::App;
use crate::base::principal::Role;

/// Arguments of `khaacho loadtest-ws`.
#[derive(Debug, clap::Args)]
pub struct WsBenchArgs {
    /// The running server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Sockets to open, all subscribed to `orders`.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Orders to place, one at a time; each one's `received` event is timed on every socket.
    #[arg(long, default_value_t = 20)]
    pub events: usize,
    /// Pause between two orders, in milliseconds.
    #[arg(long, default_value_t = 250)]
    pub interval_ms: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What one run measured.
#[derive(Debug, Default, serde::Serialize)]
pub struct WsBenchReport {
    /// Sockets opened and subscribed.
    pub subscribers: usize,
    /// Time to open and subscribe all of them, ms.
    pub connect_ms: f64,
    /// Orders placed.
    pub events: usize,
    /// Deliveries timed (subscribers × events when nothing is missing).
    pub delivered: usize,
    /// Deliveries that did not come within 10 s.
    pub missing: usize,
    /// POST → event on a socket, ms: p50, p95, p99, max.
    pub latency_ms: [f64; 4],
    /// The same for the slowest socket of each order, ms: p50, max.
    pub last_socket_ms: [f64; 2],
}

/// Runs the benchmark.
pub async fn run(app: &App, args: &WsBenchArgs) -> anyhow::Result<WsBenchReport> {
    let base = khaacho_loadgen::ensure_loopback(&args.url)?;
    let base = base.as_str().trim_end_matches('/').to_string();
    if args.subscribers == 0 || args.events == 0 {
        bail!("--subscribers and --events must be positive");
    }
    let (token, _) = app
        .auth()
        .keys
        .issue(Uuid::now_v7(), Role::Operator, None)
        .context("issuing a token")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let auth = format!("Bearer {token}");
    let retailers: Value = http
        .get(format!("{base}/api/v1/retailers?limit=1"))
        .header("authorization", &auth)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let Some(retailer) = retailers["items"][0]["id"].as_str().map(str::to_string) else {
        bail!("no retailers: seed the demo (`khaacho seed --demo`) first");
    };

    // Open and subscribe every socket (64 at a time).
    let ws_base = base.replacen("http", "ws", 1);
    let (arrivals, mut arrived) = mpsc::unbounded_channel::<(String, Instant)>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<anyhow::Result<()>>();
    let slots = Arc::new(Semaphore::new(64));
    let started = Instant::now();
    for _ in 0..args.subscribers {
        let permit = slots.clone().acquire_owned().await?;
        let (auth, ws_base) = (auth.clone(), ws_base.clone());
        let (arrivals, ready_tx) = (arrivals.clone(), ready_tx.clone());
        tokio::spawn(async move {
            let ws = open(&auth, &ws_base).await;
            drop(permit);
            let mut ws = match ws {
                Ok(ws) => {
                    let _ = ready_tx.send(Ok(()));
                    ws
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(text) = msg {
                    let now = Instant::now();
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if v["type"] == "event" && v["to"] == "received" {
                        let id = v["order_id"].as_str().unwrap_or_default().to_string();
                        if arrivals.send((id, now)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(ready_tx);
    let mut opened = 0;
    while opened < args.subscribers {
        match ready_rx.recv().await {
            Some(Ok(())) => opened += 1,
            Some(Err(e)) => return Err(e.context("opening a socket")),
            None => bail!("sockets failed to open"),
        }
    }
    let connect_ms = started.elapsed().as_secs_f64() * 1000.0;

    let mut pending: HashMap<String, Vec<Instant>> = HashMap::new();
    let mut latencies: Vec<f64> = Vec::with_capacity(args.subscribers * args.events);
    let mut last_socket: Vec<f64> = Vec::new();
    let mut missing = 0;
    for _ in 0..args.events {
        let t0 = Instant::now();
        let resp: Value = http
            .post(format!("{base}/api/v1/orders"))
            .header("authorization", &auth)
            .json(&json!({ "retailer_id": retailer,
                "lines": [{ "sku": "RICE-JEERA-25", "qty": 1, "unit": "kg" }] }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let order = resp["order_id"].as_str().unwrap_or_default().to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while pending.get(&order).map_or(0, Vec::len) < args.subscribers {
            match tokio::time::timeout_at(deadline, arrived.recv()).await {
                Ok(Some((id, at))) => pending.entry(id).or_default().push(at),
                Ok(None) | Err(_) => break,
            }
        }
        let times = pending.remove(&order).unwrap_or_default();
        missing += args.subscribers.saturating_sub(times.len());
        let ms: Vec<f64> = times
            .iter()
            .map(|at| at.saturating_duration_since(t0).as_secs_f64() * 1000.0)
            .collect();
        if let Some(max) = ms.iter().copied().reduce(f64::max) {
            last_socket.push(max);
        }
        latencies.extend(ms);
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    latencies.sort_by(f64::total_cmp);
    last_socket.sort_by(f64::total_cmp);
    Ok(WsBenchReport {
        subscribers: opened,
        connect_ms,
        events: args.events,
        delivered: latencies.len(),
        missing,
        latency_ms: [
            pct(&latencies, 50.0),
            pct(&latencies, 95.0),
            pct(&latencies, 99.0),
            latencies.last().copied().unwrap_or(0.0),
        ],
        last_socket_ms: [
            pct(&last_socket, 50.0),
            last_socket.last().copied().unwrap_or(0.0),
        ],
    })
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The socket and its subscription (through `caught_up`).
async fn open(auth: &str, ws_base: &str) -> anyhow::Result<Socket> {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{ws_base}/api/v1/ws").into_client_request()?;
    req.headers_mut().insert("authorization", auth.parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let subscribe = json!({ "type": "subscribe", "topics": ["orders"] }).to_string();
    ws.send(Message::Text(subscribe.into())).await?;
    while let Some(msg) = ws.next().await {
        if let Message::Text(text) = msg? {
            let v: Value = serde_json::from_str(text.as_str())?;
            match v["type"].as_str() {
                Some("caught_up") => return Ok(ws),
                Some("error") => bail!("subscribe refused: {v}"),
                _ => {}
            }
        }
    }
    bail!("the socket closed before caught_up")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Prints the report (a table, or JSON).
pub fn print(r: &WsBenchReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    println!(
        "{} sockets subscribed in {:.0} ms; {} orders, {} deliveries timed, {} missing",
        r.subscribers, r.connect_ms, r.events, r.delivered, r.missing
    );
    println!(
        "POST → event on a socket: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        r.latency_ms[0], r.latency_ms[1], r.latency_ms[2], r.latency_ms[3]
    );
    println!(
        "last socket per order: p50 {:.1} ms, max {:.1} ms",
        r.last_socket_ms[0], r.last_socket_ms[1]
    );
}
