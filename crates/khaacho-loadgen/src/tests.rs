//! End-to-end tests of `run()` against a tiny hand-written HTTP/1.1 server.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const RETAILER: &str = "0190f5a0-0000-7000-8000-000000000001";

/// Behaviour of the mock API.
#[derive(Clone, Default)]
struct MockConfig {
    /// List no products.
    empty_products: bool,
    /// Answer POSTs with this status instead of 202.
    post_status: Option<u16>,
    /// Require `Authorization: Bearer <key>`.
    api_key: Option<String>,
}

/// Counters the mock keeps.
#[derive(Default)]
struct MockState {
    posts: AtomicU64,
    invalid_orders: AtomicU64,
    idempotency_keys: AtomicU64,
    product_pages: AtomicU64,
    polls: Mutex<HashMap<String, u32>>,
    /// `PATCH /api/v1/vendors/{id}`: (path, body).
    vendor_patches: Mutex<Vec<(String, Value)>>,
    /// `POST /api/v1/retailers` bodies.
    registered: Mutex<Vec<Value>>,
}

struct Mock {
    url: String,
    state: Arc<MockState>,
}

async fn spawn_mock(config: MockConfig) -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let state = Arc::new(MockState::default());
    let st = Arc::clone(&state);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let st = Arc::clone(&st);
            let config = config.clone();
            tokio::spawn(async move {
                let _ = serve_connection(stream, &config, &st).await;
            });
        }
    });
    Mock {
        url: format!("http://{addr}"),
        state,
    }
}

/// Serves keep-alive HTTP/1.1 requests on one connection.
async fn serve_connection(
    stream: TcpStream,
    config: &MockConfig,
    st: &MockState,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await?;
        let (code, reply) = route(config, st, &method, &target, &headers, &body);
        let reply = reply.to_string();
        let reason = match code {
            200 => "OK",
            202 => "Accepted",
            400 => "Bad Request",
            401 => "Unauthorized",
            429 => "Too Many Requests",
            _ => "Other",
        };
        let response = format!(
            "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        write.write_all(response.as_bytes()).await?;
    }
}

fn route(
    config: &MockConfig,
    st: &MockState,
    method: &str,
    target: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, Value) {
    if let Some(key) = &config.api_key
        && headers.get("authorization") != Some(&format!("Bearer {key}"))
    {
        return (401, json!({"error": "unauthorized"}));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/api/v1/products") => {
            st.product_pages.fetch_add(1, Ordering::Relaxed);
            assert!(query.contains("limit=200"), "{query}");
            if config.empty_products {
                (200, json!({"items": [], "next_cursor": null}))
            } else if query.contains("cursor=page2") {
                (
                    200,
                    json!({"items": [
                        {"sku": "OIL-1L", "unit": "litre", "pack_size": null,
                         "min_order_qty": null, "max_order_qty": 3}
                    ], "next_cursor": null}),
                )
            } else {
                (
                    200,
                    json!({"items": [
                        {"sku": "RICE-25", "unit": "kg", "pack_size": 25,
                         "min_order_qty": 2, "max_order_qty": 4},
                        {"sku": "SOAP", "unit": "piece", "pack_size": null,
                         "min_order_qty": "1.000", "max_order_qty": null}
                    ], "next_cursor": "page2"}),
                )
            }
        }
        ("GET", "/api/v1/retailers") => (
            200,
            json!({"items": [{"id": RETAILER, "name": "Shop", "phone": "+9779800000001",
                              "district": "Lalitpur", "lat": 27.67, "lng": 85.32}],
                   "next_cursor": null}),
        ),
        ("GET", "/api/v1/vendors") => (
            200,
            json!({"items": [{"id": "v-1"}, {"id": "v-2"}], "next_cursor": null}),
        ),
        ("PATCH", p) if p.starts_with("/api/v1/vendors/") => {
            let body = serde_json::from_slice(body).unwrap_or(Value::Null);
            let mut patches = st.vendor_patches.lock().expect("lock");
            patches.push((p.to_owned(), body));
            (200, json!({}))
        }
        ("POST", "/api/v1/retailers") => {
            let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            st.registered.lock().expect("lock").push(body);
            (201, json!({"id": uuid::Uuid::now_v7().to_string()}))
        }
        ("POST", "/api/v1/orders") => {
            st.posts.fetch_add(1, Ordering::Relaxed);
            if headers.contains_key("idempotency-key") {
                st.idempotency_keys.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(code) = config.post_status {
                return (code, json!({"error": "nope"}));
            }
            if !valid_order(body) {
                st.invalid_orders.fetch_add(1, Ordering::Relaxed);
                return (400, json!({"error": "invalid order"}));
            }
            let id = uuid::Uuid::now_v7().to_string();
            (
                202,
                json!({"order_id": id, "status": "received",
                       "status_url": format!("/api/v1/orders/{id}/status")}),
            )
        }
        ("GET", p) if p.starts_with("/api/v1/orders/") && p.ends_with("/status") => {
            // First poll still says "received", then the order is validated.
            let mut polls = st.polls.lock().expect("lock");
            let n = polls.entry(p.to_owned()).or_insert(0);
            *n += 1;
            let status = if *n == 1 { "received" } else { "validated" };
            (200, json!({"status": status}))
        }
        _ => (404, json!({"error": "not found"})),
    }
}

/// Mirrors the catalog the mock lists.
fn valid_order(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    if v["retailer_id"] != RETAILER {
        return false;
    }
    let Some(lines) = v["lines"].as_array() else {
        return false;
    };
    if lines.is_empty() || lines.len() > 5 {
        return false;
    }
    let mut skus = HashSet::new();
    lines.iter().all(|l| {
        let qty = l["qty"].as_u64().unwrap_or(0);
        let ok = match (l["sku"].as_str(), l["unit"].as_str()) {
            (Some("RICE-25"), Some("kg")) => (2..=4).contains(&qty),
            (Some("SOAP"), Some("piece")) => (1..=10).contains(&qty),
            (Some("OIL-1L"), Some("litre")) => (1..=3).contains(&qty),
            _ => false,
        };
        ok && skus.insert(l["sku"].to_string())
    })
}

fn args(url: &str) -> LoadtestArgs {
    LoadtestArgs {
        url: url.to_owned(),
        duration: Duration::from_secs(1),
        connections: 4,
        rate: None,
        max_in_flight: 64,
        e2e_sample: 5,
        e2e_waiting: vec!["received".to_owned()],
        api_key: None,
        username: "operator".to_owned(),
        password: "demo-operator-password".to_owned(),
        market: Default::default(),
        json: false,
        warmup: Duration::ZERO,
        find_capacity: false,
        start_rate: 500.0,
        step_factor: 1.25,
        step_add: None,
        step_duration: Duration::from_secs(10),
        max_rate: None,
        e2e_p95_ms: 250.0,
        hot_share: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_run_against_mock() -> anyhow::Result<()> {
    let mock = spawn_mock(MockConfig {
        api_key: Some("secret".to_owned()),
        ..MockConfig::default()
    })
    .await;
    let mut a = args(&mock.url);
    a.api_key = Some("secret".to_owned());
    let report = run(a).await?;
    eprintln!("{}", format_table(&report));

    assert!(report.accepted > 0, "{report:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.requests, report.accepted);
    assert_eq!(report.products, 3, "second product page followed");
    assert_eq!(report.retailers, 1);
    assert_eq!(report.mode, "closed");
    assert!(report.accepted_per_s > 0.0);
    assert!(
        (report.duration_s - 1.0).abs() < 1e-6,
        "{}",
        report.duration_s
    );
    assert!(report.latency_ms.p50.is_some() && report.latency_ms.max.is_some());
    assert!(report.e2e_samples > 0, "{report:?}");
    // The first poll answers "received", so e2e covers at least one 10 ms tick.
    assert!(
        report.e2e_ms.p50.is_some_and(|p| p >= 5.0),
        "{:?}",
        report.e2e_ms
    );
    assert_eq!(mock.state.invalid_orders.load(Ordering::Relaxed), 0);
    assert_eq!(mock.state.product_pages.load(Ordering::Relaxed), 2);
    let posts = mock.state.posts.load(Ordering::Relaxed);
    assert!(posts >= report.requests);
    // ~10% carry an Idempotency-Key.
    let keys = mock.state.idempotency_keys.load(Ordering::Relaxed);
    if posts >= 200 {
        assert!(keys > 0 && keys < posts / 2, "{keys} of {posts}");
    }

    let v = serde_json::to_value(&report)?;
    assert!(v["latency_ms"]["p99"].is_f64());
    assert!(v["e2e_ms"]["p95"].is_f64());
    assert!(format_table(&report).contains("closed loop, 4 connections"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_market_is_set_up_before_the_load() -> anyhow::Result<()> {
    let secret = || MockConfig {
        api_key: Some("secret".to_owned()),
        ..MockConfig::default()
    };
    let mock = spawn_mock(secret()).await;
    let mut a = args(&mock.url);
    a.api_key = Some("secret".to_owned());
    a.duration = Duration::from_millis(200);
    a.market = market::MarketArgs {
        vendor_capacity: Some(1_000),
        vendor_hours: Some(("00:00".into(), "24:00".into())),
        retailers: Some(3),
    };
    let report = run(a).await?;
    assert!(report.accepted > 0, "{report:?}");

    let patches = mock.state.vendor_patches.lock().expect("lock").clone();
    let want =
        json!({"max_active": 1000, "max_awaiting": 1000, "opens": "00:00", "closes": "24:00"});
    assert_eq!(
        patches,
        vec![
            ("/api/v1/vendors/v-1".to_owned(), want.clone()),
            ("/api/v1/vendors/v-2".to_owned(), want)
        ]
    );
    // One shop listed, three wanted: two registered, in the listed shop's district.
    let mut registered = mock.state.registered.lock().expect("lock").clone();
    registered.sort_by_key(|r| r["phone"].as_str().map(str::to_owned));
    let phones: Vec<&str> = registered
        .iter()
        .filter_map(|r| r["phone"].as_str())
        .collect();
    assert_eq!(phones, ["+9779700000000", "+9779700000001"]);
    assert!(
        registered.iter().all(|r| r["district"] == "Lalitpur"),
        "{registered:?}"
    );

    // Without the options nothing is touched.
    let mock = spawn_mock(secret()).await;
    let mut a = args(&mock.url);
    a.api_key = Some("secret".to_owned());
    a.duration = Duration::from_millis(200);
    run(a).await?;
    assert!(mock.state.vendor_patches.lock().expect("lock").is_empty());
    assert!(mock.state.registered.lock().expect("lock").is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_run_against_mock() -> anyhow::Result<()> {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut a = args(&mock.url);
    a.rate = Some(200.0);
    a.warmup = Duration::from_millis(200);
    a.e2e_sample = 0;
    let report = run(a).await?;
    eprintln!("{}", serde_json::to_string_pretty(&report)?);

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.mode, "open");
    assert_eq!(report.offered_rate, Some(200.0));
    assert_eq!(report.unsent, 0);
    // 1 s measured at 200/s (warm-up requests are not counted).
    assert!((190..=201).contains(&report.requests), "{report:?}");
    assert_eq!(report.accepted, report.requests);
    assert!(report.accepted_per_s > 150.0, "{report:?}");
    assert_eq!(report.e2e_samples, 0);
    assert!(report.e2e_ms.p50.is_none());
    let posts = mock.state.posts.load(Ordering::Relaxed);
    assert!(posts >= report.requests + 30, "warm-up sent too: {posts}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_counted_by_kind() -> anyhow::Result<()> {
    let mock = spawn_mock(MockConfig {
        post_status: Some(429),
        ..MockConfig::default()
    })
    .await;
    let mut a = args(&mock.url);
    a.duration = Duration::from_millis(300);
    a.connections = 2;
    let report = run(a).await?;
    assert_eq!(report.accepted, 0);
    assert!(report.errors.get("http_429").is_some_and(|&n| n > 0));
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.latency_ms.p50.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_catalog_asks_for_seed() {
    let mock = spawn_mock(MockConfig {
        empty_products: true,
        ..MockConfig::default()
    })
    .await;
    let err = run(args(&mock.url)).await.expect_err("must fail");
    assert!(
        format!("{err:#}").contains("khaacho seed --demo"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_api_key_is_explained() {
    let mock = spawn_mock(MockConfig {
        api_key: Some("secret".to_owned()),
        ..MockConfig::default()
    })
    .await;
    let err = run(args(&mock.url)).await.expect_err("must fail");
    assert!(format!("{err:#}").contains("--api-key"), "{err:#}");
}

#[tokio::test]
async fn refuses_non_loopback_before_sending() {
    for url in [
        "http://10.0.0.1:8080",
        "http://example.com",
        "http://192.168.1.1",
    ] {
        let err = run(args(url)).await.expect_err("must refuse");
        assert!(format!("{err:#}").contains("loopback"), "{err:#}");
    }
}

#[tokio::test]
async fn stops_early_on_shutdown() -> anyhow::Result<()> {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut a = args(&mock.url);
    a.duration = Duration::from_secs(60);
    let started = std::time::Instant::now();
    let report = run_until(a, tokio::time::sleep(Duration::from_millis(300))).await?;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.interrupted);
    assert!(
        report.duration_s < 5.0 && report.duration_s > 0.1,
        "{report:?}"
    );
    Ok(())
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    loadtest: LoadtestArgs,
}

#[test]
fn cli_defaults_and_parsing() -> anyhow::Result<()> {
    let cli = Cli::try_parse_from(["x", "--url", "http://127.0.0.1:8080"])?;
    let a = cli.loadtest;
    assert_eq!(a.duration, Duration::from_secs(30));
    assert_eq!(a.connections, 64);
    assert_eq!(a.rate, None);
    assert_eq!(a.max_in_flight, 4096);
    assert_eq!(a.e2e_sample, 50);
    assert_eq!(a.warmup, Duration::ZERO);
    assert!(!a.json);
    assert!(!a.market.is_set());

    let cli = Cli::try_parse_from([
        "x",
        "--url",
        "http://localhost:8080",
        "--retailers",
        "20000",
        "--vendor-hours",
        "00:00-24:00",
        "--vendor-capacity",
        "1000000",
        "--duration",
        "2m",
        "--rate",
        "1500",
        "--warmup",
        "500ms",
        "--json",
        "--api-key",
        "k",
    ])?;
    let a = cli.loadtest;
    assert_eq!(a.duration, Duration::from_secs(120));
    assert_eq!(a.rate, Some(1500.0));
    assert_eq!(a.warmup, Duration::from_millis(500));
    assert!(a.json);
    assert_eq!(plan(&a)?.auth.as_deref(), Some("Bearer k"));
    assert_eq!(a.market.retailers, Some(20_000));
    assert_eq!(a.market.vendor_capacity, Some(1_000_000));
    assert_eq!(
        a.market.vendor_hours,
        Some(("00:00".to_owned(), "24:00".to_owned()))
    );

    assert!(Cli::try_parse_from(["x"]).is_err(), "--url is required");
    assert!(Cli::try_parse_from(["x", "--url", "u", "--duration", "10x"]).is_err());
    assert!(Cli::try_parse_from(["x", "--url", "u", "--rate", "0"]).is_err());
    Ok(())
}

#[test]
fn plan_validates_arguments() {
    let mut a = args("http://127.0.0.1:1");
    assert!(plan(&a).is_ok());
    a.connections = 0;
    assert!(plan(&a).is_err());
    a.rate = Some(10.0); // connections are ignored in open loop
    assert!(plan(&a).is_ok());
    a.max_in_flight = 0;
    assert!(plan(&a).is_err());
    let mut a = args("http://127.0.0.1:1");
    a.duration = Duration::ZERO;
    assert!(plan(&a).is_err());
    let mut a = args("http://127.0.0.1:1");
    a.api_key = Some("  ".to_owned());
    assert!(plan(&a).is_err());
    let mut a = args("http://127.0.0.1:1");
    a.hot_share = 90;
    assert!((plan(&a).expect("90% is allowed").hot_share - 0.9).abs() < 1e-9);
    a.hot_share = 91;
    assert!(plan(&a).is_err());
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn run_future_is_send() {
    // The CLI may spawn `run()` on a multi-threaded runtime.
    let fut = run(args("http://127.0.0.1:1"));
    assert_send(&fut);
}
