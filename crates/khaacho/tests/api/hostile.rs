//! Hostile input, driven by the API document so that a new route is covered without being
//! listed here: NUL and other control characters through every string input (JSON body
//! fields at any depth, query parameters, path parameters, catalogue CSV cells, login) must
//! answer a 4xx problem naming the field, never a 5xx, on both backends. Every answer is
//! recorded with its operation and must be a status the document declares for it.
//! Plus the transport edge: a body that never finishes (408), a handler that is too slow
//! (503), an oversized CSV (413), and the one rule for bad parameters (400 naming them).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use khaacho::auth::Role;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, assert_problem, sample};

/// Characters no body string may hold (tab, LF and CR are allowed in free text).
const BODY_CONTROLS: &[char] = &['\u{0}', '\u{1}', '\u{1b}', '\u{7f}', '\u{85}'];
/// Characters no parameter or CSV cell may hold.
const VALUE_CONTROLS: &[char] = &['\u{0}', '\u{1}', '\t', '\n', '\u{1b}', '\u{7f}', '\u{85}'];

/// A seeded app, an admin client (every route lets an admin in, so the input checks are
/// reached), the API document, and the answers seen so far.
struct Probe {
    t: TestApp,
    admin: reqwest::Client,
    doc: Value,
    order: String,
    retailer: String,
    vendor: String,
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl Probe {
    async fn new() -> Self {
        // Hundreds of requests from one principal: the rate limits are not under test here.
        let t = TestApp::spawn_with(|s| s.rate_limits.enabled = false).await;
        t.seed().await;
        let retailer = t.retailer().await;
        let vendor = t.get_json("/api/v1/vendors?limit=1").await["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let order = t
            .order(
                &retailer,
                json!([{ "sku": "RICE-JEERA-25", "qty": 1, "unit": "kg" }]),
            )
            .await["order_id"]
            .as_str()
            .unwrap()
            .to_string();
        let doc = t.get_json("/api/v1/openapi.json").await;
        let admin = t.client_as(Role::Admin, None);
        Self {
            t,
            admin,
            doc,
            order,
            retailer,
            vendor,
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// Every documented operation: `(method, path template, operation)`.
    fn operations(&self) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    out.push((method.clone(), path.clone(), op.clone()));
                }
            }
        }
        out
    }

    /// A value for a path parameter that names something that exists where possible.
    fn path_value(&self, path: &str, name: &str) -> String {
        match name {
            "sku" => "RICE-JEERA-25".into(),
            _ if path.starts_with("/api/v1/orders") => self.order.clone(),
            _ if path.starts_with("/api/v1/retailers") => self.retailer.clone(),
            _ if path.starts_with("/api/v1/vendors") => self.vendor.clone(),
            _ => uuid::Uuid::now_v7().to_string(),
        }
    }

    /// `path` with every parameter filled in, `hostile` (name, raw value) overriding one.
    fn concrete(&self, path: &str, hostile: Option<(&str, &str)>) -> String {
        let mut out = String::new();
        for segment in path.split('/').skip(1) {
            out.push('/');
            match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let value = match hostile {
                        Some((h, v)) if h == name => v.to_string(),
                        _ => self.path_value(path, name),
                    };
                    out.push_str(&encode(&value));
                }
                None => out.push_str(segment),
            }
        }
        out
    }

    /// Sends a request for the operation `method template` and records its answer.
    async fn send(
        &self,
        method: &str,
        template: &str,
        url_path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> reqwest::Response {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = self.admin.request(m, self.t.url(url_path));
        if let Some((ct, bytes)) = body {
            req = req.header("content-type", ct).body(bytes);
        }
        let resp = req.send().await.unwrap();
        self.seen.lock().unwrap().insert((
            method.to_string(),
            template.to_string(),
            resp.status().as_u16(),
        ));
        resp
    }

    /// Resolves a `$ref` to its schema in the document.
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r.trim_start_matches("#/components/schemas/");
                self.resolve(&self.doc["components"]["schemas"][name])
            }
            None => schema,
        }
    }

    /// A value of `schema` with every property present and one item in every array, so
    /// that every string the body can hold is there to be made hostile.
    fn example(&self, schema: &Value) -> Value {
        let s = self.resolve(schema);
        if let Some(e) = s["enum"].as_array().and_then(|e| e.first()) {
            return e.clone();
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            if let Some(alts) = s[key].as_array() {
                let alt = alts
                    .iter()
                    .find(|a| self.resolve(a)["type"] != "null")
                    .unwrap_or(&alts[0]);
                return self.example(alt);
            }
        }
        let ty = match &s["type"] {
            Value::Array(types) => types
                .iter()
                .find(|t| *t != "null")
                .cloned()
                .unwrap_or(Value::Null),
            other => other.clone(),
        };
        match ty.as_str() {
            Some("object") => {
                let mut m = Map::new();
                for (name, prop) in s["properties"].as_object().into_iter().flatten() {
                    m.insert(name.clone(), self.example(prop));
                }
                Value::Object(m)
            }
            Some("array") => json!([self.example(&s["items"])]),
            Some("string") if s["format"] == "uuid" => json!(self.retailer),
            Some("string") => json!("sample"),
            Some("integer" | "number") => json!(1),
            Some("boolean") => json!(true),
            _ => Value::Null,
        }
    }

    /// Asserts every recorded answer is a status its operation documents.
    fn assert_documented(&self) {
        let seen = self.seen.lock().unwrap();
        assert!(!seen.is_empty());
        for (method, template, status) in seen.iter() {
            let responses = &self.doc["paths"][template][method]["responses"];
            assert!(
                responses.get(status.to_string()).is_some() || responses.get("default").is_some(),
                "{} {template} answered {status}, which its document omits (documents {:?})",
                method.to_uppercase(),
                responses.as_object().unwrap().keys().collect::<Vec<_>>()
            );
        }
    }
}

/// Percent-encodes everything but unreserved characters (so control characters, as UTF-8
/// bytes, go over the wire as `%00`, `%1B`, `%C2%85`).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The JSON path (as the API names fields) and pointer of every string in `v`.
fn string_leaves(v: &Value, path: &str, pointer: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(_) => out.push((path.to_string(), pointer.to_string())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(
                    item,
                    &format!("{path}[{i}]"),
                    &format!("{pointer}/{i}"),
                    out,
                );
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                string_leaves(item, &p, &format!("{pointer}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// Asserts a `status` problem (never a 5xx) whose `errors[]` names `field`.
async fn assert_named(resp: reqwest::Response, status: u16, field: &str, what: &str) {
    let got = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    assert!(got < 500, "{what}: {got} {text}");
    assert_eq!(got, status, "{what}: {text}");
    assert_eq!(ct, "application/problem+json", "{what}");
    let p: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(p["status"], status, "{what}");
    let named: Vec<&str> = p["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors[] in {p}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        named.contains(&field),
        "{what}: {named:?} does not name {field}"
    );
}

const CSV_HEADER: &str = "sku,name,aliases,unit,pack_size,price_npr,category";
const CSV_ROW: [&str; 7] = ["HOSTILE-1", "Hostile", "a|b", "kg", "1", "10", "grain"];

#[tokio::test]
async fn control_characters_in_every_string_input_are_refused_and_named() {
    let p = Probe::new().await;
    let (mut bodies, mut queries, mut paths, mut cells) = (0, 0, 0, 0);
    for (method, template, op) in p.operations() {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let valid_path = p.concrete(&template, None);
        // Path parameters: 400 naming the parameter.
        for param in params.iter().filter(|x| x["in"] == "path") {
            let name = param["name"].as_str().unwrap();
            for c in VALUE_CONTROLS {
                let url = p.concrete(&template, Some((name, &format!("A{c}B"))));
                let what = format!("{method} {template} path {name} {c:?}");
                let body = op["requestBody"]
                    .is_object()
                    .then(|| ("application/json", b"{}".to_vec()));
                assert_named(
                    p.send(&method, &template, &url, body).await,
                    400,
                    name,
                    &what,
                )
                .await;
                paths += 1;
            }
        }
        // Query parameters (names too): 400 naming the parameter.
        for param in params.iter().filter(|x| x["in"] == "query") {
            let name = param["name"].as_str().unwrap();
            for c in VALUE_CONTROLS {
                let url = format!("{valid_path}?{name}={}", encode(&format!("A{c}B")));
                let what = format!("{method} {template} query {name} {c:?}");
                assert_named(
                    p.send(&method, &template, &url, None).await,
                    400,
                    name,
                    &what,
                )
                .await;
                queries += 1;
            }
            let url = format!("{valid_path}?{}=1", encode(&format!("{name}\u{0}")));
            let resp = p.send(&method, &template, &url, None).await;
            assert_named(
                resp,
                400,
                &format!("{name}\\u{{0}}"),
                &format!("{template} query name"),
            )
            .await;
        }
        let content = &op["requestBody"]["content"];
        // JSON bodies: every string at any depth, 422 naming its JSON path.
        if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
            let example = p.example(schema);
            let mut leaves = Vec::new();
            string_leaves(&example, "", "", &mut leaves);
            assert!(
                !leaves.is_empty() || template.contains("agents"),
                "{template}: no strings in {example}"
            );
            for (field, pointer) in leaves {
                for c in BODY_CONTROLS {
                    let mut body = example.clone();
                    *body.pointer_mut(&pointer).unwrap() = json!(format!("A{c}B"));
                    let what = format!("{method} {template} body {field} {c:?}");
                    let bytes = serde_json::to_vec(&body).unwrap();
                    let resp = p
                        .send(
                            &method,
                            &template,
                            &valid_path,
                            Some(("application/json", bytes)),
                        )
                        .await;
                    assert_named(resp, 422, &field, &what).await;
                    bodies += 1;
                }
            }
            // A hostile key is named as well (escaped).
            let mut body = example.clone();
            if let Value::Object(m) = &mut body {
                m.insert("sur\u{0}prise".into(), json!(1));
            }
            let resp = p
                .send(
                    &method,
                    &template,
                    &valid_path,
                    Some(("application/json", serde_json::to_vec(&body).unwrap())),
                )
                .await;
            assert_named(
                resp,
                422,
                "sur\\u{0}prise",
                &format!("{template} hostile key"),
            )
            .await;
        }
        // CSV bodies: every cell, 422 naming `row N.column`.
        if content.get("text/csv").is_some() {
            for (i, column) in CSV_HEADER.split(',').enumerate() {
                for c in VALUE_CONTROLS {
                    let mut row = CSV_ROW.map(str::to_string);
                    row[i] = format!("A{c}B");
                    // Quoted, so a line feed stays inside its cell.
                    let quoted: Vec<String> = row.iter().map(|v| format!("\"{v}\"")).collect();
                    let csv = format!("{CSV_HEADER}\n{}\n", quoted.join(","));
                    let what = format!("{template} cell {column} {c:?}");
                    let resp = p
                        .send(
                            &method,
                            &template,
                            &valid_path,
                            Some(("text/csv", csv.into_bytes())),
                        )
                        .await;
                    assert_named(resp, 422, &format!("row 2.{column}"), &what).await;
                    cells += 1;
                }
            }
        }
    }
    // The document drives the test: make sure it found what is known to be there.
    assert!(
        bodies >= 100 && queries >= 50 && paths >= 50 && cells == 49,
        "{bodies} {queries} {paths} {cells}"
    );
    assert_eq!(p.t.count("products WHERE sku = 'HOSTILE-1'").await, 0);
    p.assert_documented();
}

#[tokio::test]
async fn login_refuses_control_characters_before_any_lookup() {
    let t = TestApp::spawn().await;
    let before = t.count("audit_log").await;
    for c in BODY_CONTROLS {
        for field in ["username", "email", "password"] {
            let mut body = json!({ "username": "admin", "password": "demo-admin-password" });
            body[field] = json!(format!("admin{c}"));
            let r = t
                .anonymous
                .post(t.url("/api/v1/auth/login"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_named(r, 422, field, &format!("login {field} {c:?}")).await;
        }
    }
    // No failed login was recorded: the refusal came before the user lookup.
    assert_eq!(t.count("audit_log").await, before);
}

#[tokio::test]
async fn every_list_route_names_its_bad_parameters_with_400() {
    let p = Probe::new().await;
    let mut lists = 0;
    for (method, template, op) in p.operations() {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let path = p.concrete(&template, None);
        for param in params.iter().filter(|x| x["in"] == "query") {
            let name = param["name"].as_str().unwrap();
            let schema = p.resolve(&param["schema"]);
            let bad: &[&str] = match name {
                // Invalid for every kind of cursor: keyset, id and SKU.
                "cursor" => &["not a cursor!", ""],
                "limit" => &["0", "201", "-1", "abc", ""],
                "from" | "to" => &["yesterday", "2026-13-45"],
                "status" => &["bogus"],
                _ if schema["enum"].is_array() || schema["oneOf"].is_array() => &["bogus"],
                _ if schema["format"] == "uuid" => &["not-a-uuid"],
                _ => &[],
            };
            for value in bad {
                let url = format!("{path}?{name}={}", encode(value));
                let what = format!("{method} {template}?{name}={value}");
                assert_named(
                    p.send(&method, &template, &url, None).await,
                    400,
                    name,
                    &what,
                )
                .await;
            }
            if name == "cursor" {
                lists += 1;
            }
        }
        // An unknown parameter is named too.
        if !params.is_empty() && params.iter().any(|x| x["in"] == "query") {
            let url = format!("{path}?surprise=1");
            assert_named(
                p.send(&method, &template, &url, None).await,
                400,
                "surprise",
                &template,
            )
            .await;
        }
    }
    assert_eq!(lists, 15, "every list route has a cursor");
    p.assert_documented();
}

/// An admin's `POST /api/v1/retailers` that promises a 100-byte body and sends 10: the server
/// waits for the rest until its request time limit.
async fn unfinished_post(t: &TestApp) -> tokio::net::TcpStream {
    let token = t.token(Role::Admin, None);
    let mut conn = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/retailers HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\":\"",
        t.addr
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn
}

#[tokio::test]
async fn a_body_that_never_finishes_is_408_and_a_slow_handler_503() {
    let t = TestApp::spawn_with(|s| s.http.request_timeout_ms = 400).await;
    // Promise 100 bytes, send 10, then wait.
    let mut conn = unfinished_post(&t).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("urn:khaacho:problem:request-timeout"),
        "{answer}"
    );

    // A whole body but a handler stuck behind a lock: the server's fault, 503.
    let mut tx = t.app.db().begin().await.unwrap();
    if t.database_url.starts_with("postgres") {
        khaacho::with_tx!(tx, c => sqlx::query("LOCK TABLE retailers IN ACCESS EXCLUSIVE MODE").execute(c).await.map(drop)).unwrap();
    }
    let body = json!({ "name": "Slow Shop", "phone": "+9779800000001", "district": "Kathmandu" });
    let r = t
        .client_as(Role::Admin, None)
        .post(t.url("/api/v1/retailers"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 503).await;
    assert_eq!(p["type"], "urn:khaacho:problem:timeout");
    drop(tx);
}

#[tokio::test]
async fn every_413_is_problem_json() {
    let t = TestApp::spawn().await;
    let big_csv = format!("{CSV_HEADER}\n{}", "X-1,Name,,kg,,,grain\n".repeat(20_000));
    let r = t
        .client
        .post(t.url("/api/v1/catalog/import"))
        .header("content-type", "text/csv")
        .body(big_csv)
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 413).await;
    assert!(
        p["detail"].as_str().unwrap().contains("length limit"),
        "{p}"
    );
    let big_json = format!("{{\"text\":\"{}\"}}", "x".repeat(300 * 1024));
    let r = t
        .client
        .post(t.url("/api/v1/orders/parse"))
        .header("content-type", "application/json")
        .body(big_json)
        .send()
        .await
        .unwrap();
    assert_problem(r, 413).await;
}

#[tokio::test]
async fn the_document_lists_the_common_problems_by_what_each_operation_has() {
    let t = TestApp::spawn().await;
    let doc = t.get_json("/api/v1/openapi.json").await;
    let statuses = |method: &str, path: &str| -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}"))
            .keys()
            .cloned()
            .collect()
    };
    // Protected, with a path id: credentials, parameters, not found.
    assert_eq!(
        statuses("get", "/api/v1/orders/{id}"),
        ["200", "400", "401", "403", "404", "429", "503"]
    );
    // Protected, with a JSON body and a path id; its own 409 kept.
    assert_eq!(
        statuses("post", "/api/v1/orders/{id}/approve"),
        [
            "200", "400", "401", "403", "404", "408", "409", "413", "415", "422", "429", "503"
        ]
    );
    // Public with a body: no 401/403 added.
    assert_eq!(
        statuses("post", "/api/v1/auth/logout"),
        ["204", "400", "408", "413", "415", "422", "429", "503"]
    );
    // Declared answers are not replaced: login's own 401 and 429 descriptions stay.
    assert!(
        doc["paths"]["/api/v1/auth/login"]["post"]["responses"]["401"]["description"]
            .as_str()
            .unwrap()
            .contains("locked")
    );
    // Operations outside the API are not rate-limited and need no credentials.
    assert_eq!(statuses("get", "/health"), ["200", "503"]);
    let problem = &doc["paths"]["/api/v1/orders/{id}"]["get"]["responses"]["401"]["content"]["application/problem+json"]
        ["schema"]["$ref"];
    assert_eq!(problem, "#/components/schemas/Problem");
}

/// A full process shares its slots out by what a request does: with four slots, two held,
/// a read (half the slots) is turned away while a status poll (the writes' three quarters)
/// still gets in; with three held, a new order and a status poll are turned away, while the
/// actions that carry accepted orders forward still get in, each counted by class.
#[tokio::test]
async fn a_full_process_keeps_its_last_slots_for_the_actions_that_finish_orders() {
    let t = TestApp::spawn_with(|s| s.http.max_in_flight = 4).await;
    let mut held = Vec::new();
    let admin = t.client_as(Role::Admin, None);
    let id = uuid::Uuid::new_v4();
    let poll = || async {
        admin
            .get(t.url(&format!("/api/v1/orders/{id}/status")))
            .send()
            .await
            .unwrap()
    };
    for holding in [2, 3] {
        while held.len() < holding {
            held.push(unfinished_post(&t).await);
        }
        // The held requests reach the server at their own pace: wait until all hold a slot.
        let mut in_flight = None;
        for _ in 0..500 {
            in_flight = t.metric("khaacho_http_in_flight").await;
            if in_flight == Some(holding as f64) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(in_flight, Some(holding as f64));
        if holding == 2 {
            let read = admin.get(t.url("/api/v1/retailers")).send().await.unwrap();
            let p = assert_problem(read, 503).await;
            assert_eq!(p["type"], "urn:khaacho:problem:overloaded");
            // Admitted: answered by the handler, which finds no such order.
            assert_problem(poll().await, 404).await;
        }
    }
    let order = json!({ "retailer_id": uuid::Uuid::new_v4(), "payment_mode": "credit",
        "lines": [{ "sku": "X", "quantity": 1 }] });
    let new_order = admin
        .post(t.url("/api/v1/orders"))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_problem(new_order, 503).await;
    assert_problem(poll().await, 503).await;
    // Admitted (the fourth slot): answered by the handler, which finds no such order.
    let cancel = admin
        .post(t.url(&format!("/api/v1/orders/{id}/cancel")))
        .json(&json!({ "reason": "changed my mind" }))
        .send()
        .await
        .unwrap();
    assert_problem(cancel, 404).await;
    let metrics = t.metrics().await;
    for class in ["read", "write", "poll"] {
        let series = format!("khaacho_http_shed_total{{class=\"{class}\"}}");
        assert_eq!(
            sample(&metrics, &series),
            Some(1.0),
            "{series} in\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("class=\"progress\""),
        "no action was shed"
    );
    drop(held);
}

/// Past `http.max_in_flight` requests at once, a request is turned away at once with a `503`
/// problem and `Retry-After` (memory does not follow the number of waiting clients); the
/// probes still answer; once a slot frees, requests get through again.
#[tokio::test]
async fn requests_past_the_in_flight_bound_are_turned_away_at_once() {
    let t = TestApp::spawn_with(|s| s.http.max_in_flight = 1).await;
    // Hold the one slot: a request whose body has not finished arriving.
    let conn = unfinished_post(&t).await;
    let client = t.client_as(Role::Admin, None);
    // The held request reaches the server at its own pace: ask until it is turned away.
    let mut turned_away = None;
    for _ in 0..500 {
        let r = client.get(t.url("/api/v1/retailers")).send().await.unwrap();
        if r.status() == 503 {
            turned_away = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let r = turned_away.expect("a second request while the slot is held is turned away");
    assert_eq!(r.headers()["retry-after"], "1");
    let p = assert_problem(r, 503).await;
    assert_eq!(p["type"], "urn:khaacho:problem:overloaded");
    let health = t.client.get(t.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "probes are never turned away");
    let metrics = t.client.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    // The client gives up: its slot frees and requests get through again.
    drop(conn);
    let mut ok = false;
    for _ in 0..500 {
        if client
            .get(t.url("/api/v1/retailers"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ok = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(ok, "the slot is released when the held request goes away");
}
