//! Text orders: parse preview, the parse step, review holds and corrected approvals.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};

async fn text_order(t: &TestApp, text: &str) -> String {
    let retailer = t.retailer().await;
    t.place(&json!({ "retailer_id": retailer, "text": text }))
        .await
}

#[tokio::test]
async fn parse_preview_understands_mixed_scripts_and_creates_nothing() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let r = t
        .post_json(
            "/api/v1/orders/parse",
            &json!({ "text": "maida 3 kilo, wai wai 2 peti ra चिनी ५ केजी" }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["agent"], "local");
    let items: Vec<(String, f64, String)> = p["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["sku"].as_str().unwrap().into(),
                i["qty"].as_f64().unwrap(),
                i["unit"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        items,
        [
            ("MAIDA-50".to_string(), 3.0, "kg".to_string()),
            ("WAIWAI-CHICKEN-75G".into(), 2.0, "carton".into()),
            ("SUGAR-50".into(), 5.0, "kg".into())
        ]
    );
    assert_eq!(p["needs_review"], false);
    assert_eq!(t.count("orders").await, 0);
    assert_problem(
        t.post_json("/api/v1/orders/parse", &json!({ "text": "  " }))
            .await,
        422,
    )
    .await;
    assert_problem(t.post_json("/api/v1/orders/parse", &json!({})).await, 422).await;
}

#[tokio::test]
async fn a_clear_text_order_is_parsed_then_validated() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let id = text_order(&t, "namaste dai, chini 5 kg ra wai wai 1 carton pathaidinu").await;
    assert_eq!(
        t.run_jobs().await,
        4,
        "parse, validate (routing in its run), and the order.changed of the intake and of the validation run"
    );
    let order = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(order["status"], "routed", "{order}");
    let skus: Vec<_> = order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["SUGAR-50", "WAIWAI-CHICKEN-75G"]);
    assert!(order["totals"]["total_npr"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn unclear_text_is_held_for_review_and_approved_with_corrections() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let id = text_order(&t, "chini 5 kg, 3 packet zorblax masala").await;
    t.run_jobs().await;
    let path = format!("/api/v1/orders/{id}");
    let held = t.get_json(&path).await;
    assert_eq!(held["status"], "on_hold");
    assert_eq!(held["hold_reason"], "parse_review");
    let hold = held["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(hold["detail"]["flags"][0]["type"], "unknown_item", "{hold}");
    assert_eq!(
        held["lines"][0]["sku"], "SUGAR-50",
        "what was understood is kept"
    );

    // Corrections are checked like an intake.
    let bad = t
        .post_json(
            &format!("{path}/approve"),
            &json!({ "lines": [{ "sku": "NOPE", "qty": 1, "unit": "kg" }] }),
        )
        .await;
    assert_problem(bad, 422).await;
    let fixed = json!({ "reason": "called the shop", "lines": [
        { "sku": "SUGAR-50", "qty": 5, "unit": "kg" },
        { "sku": "MAIDA-50", "qty": 3, "unit": "kg" }
    ]});
    let r = t.post_json(&format!("{path}/approve"), &fixed).await;
    assert_eq!(r.status(), 200);
    // The validation (routing in its run), and the order.changed of the approval and of
    // the validation run (its validation and routing together).
    assert_eq!(t.run_jobs().await, 3);
    let order = t.get_json(&path).await;
    assert_eq!(order["status"], "routed");
    let skus: Vec<_> = order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["SUGAR-50", "MAIDA-50"]);
    let path_to: Vec<_> = order["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        path_to,
        ["received", "on_hold", "received", "validated", "routed"]
    );
}

#[tokio::test]
async fn text_nobody_understands_needs_lines_to_be_approved() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let id = text_order(&t, "hello, how are you?").await;
    t.run_jobs().await;
    let path = format!("/api/v1/orders/{id}");
    assert_eq!(t.get_json(&path).await["status"], "on_hold");
    let r = t.post_json(&format!("{path}/approve"), &json!({})).await;
    let p = assert_problem(r, 422).await;
    assert_eq!(p["errors"][0]["field"], "lines");
    let r = t
        .post_json(
            &format!("{path}/reject"),
            &json!({ "reason": "not an order" }),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn text_and_lines_are_exclusive() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let both = json!({ "retailer_id": retailer, "text": "chini 5 kg", "lines": [{ "sku": "SUGAR-50", "qty": 1, "unit": "kg" }] });
    assert_problem(t.post_json("/api/v1/orders", &both).await, 422).await;
    let neither = json!({ "retailer_id": retailer });
    assert_problem(t.post_json("/api/v1/orders", &neither).await, 422).await;
    let long = json!({ "retailer_id": retailer, "text": "x".repeat(5000) });
    assert_problem(t.post_json("/api/v1/orders", &long).await, 422).await;
    assert_eq!(t.count("orders").await, 0);
}

#[test]
fn parse_cli_reads_a_catalogue_and_messages() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.csv");
    std::fs::write(&catalog, "sku,name,aliases,unit,pack_size,price_npr,category\nSUG-1,Sugar,chini|चिनी,kg,50,95,sugar_salt\n").unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"1\",\"text\":\"चिनी ५ केजी\"}\n{\"id\":\"2\",\"text\":\"thank you!\"}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_khaacho"))
        .args([
            "parse",
            "--catalog",
            catalog.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        json!({ "id": "1", "items": [{ "sku": "SUG-1", "qty": 5.0, "unit": "kg" }], "flags": [] })
    );
    assert_eq!(lines[1], json!({ "id": "2", "items": [], "flags": [] }));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_khaacho"))
        .args(["parse", "--catalog", catalog.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("chini 2 kilo".as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["items"][0],
        json!({ "sku": "SUG-1", "qty": 2.0, "unit": "kg" })
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_khaacho"))
        .args(["parse", "--catalog", "/nonexistent.csv"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.csv"));
}

#[tokio::test]
async fn an_unreachable_llm_falls_back_to_the_offline_parser_and_admins_switch_it() {
    let t = TestApp::spawn_with(|s| {
        s.agents.llm_enabled = true;
        s.agents.chain = vec!["openai".into(), "local".into()];
        s.agents.openai = Some(khaacho_agents::OpenAiConfig {
            // Nothing listens on port 1: every call fails fast.
            base_url: "http://127.0.0.1:1/v1".into(),
            model: "test-model".into(),
            api_key: khaacho_agents::ApiKey::new("sk-test"),
            timeout_ms: 500,
        });
        s.agents.resilience.max_attempts = 1;
        s.agents.resilience.consecutive_failures = 2;
    })
    .await;
    t.seed().await;
    let admin = t.client_as(khaacho::auth::Role::Admin, None);
    let agents: Value = admin
        .get(t.url("/api/v1/admin/agents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        agents,
        json!({ "llm_enabled": true, "providers": [{ "name": "openai", "breaker": "closed" }] })
    );
    for _ in 0..3 {
        let r = t
            .post_json("/api/v1/orders/parse", &json!({ "text": "chini 5 kg" }))
            .await;
        let p: Value = r.json().await.unwrap();
        assert_eq!(
            p["agent"], "local",
            "the offline parser answers when the LLM cannot"
        );
        assert_eq!(p["items"][0]["sku"], "SUGAR-50");
    }
    let agents: Value = admin
        .get(t.url("/api/v1/admin/agents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        agents["providers"][0]["breaker"], "open",
        "repeated failures open the breaker"
    );
    let r = admin
        .put(t.url("/api/v1/admin/agents"))
        .json(&json!({ "llm_enabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["llm_enabled"], false);
    let r = t
        .client
        .put(t.url("/api/v1/admin/agents"))
        .json(&json!({ "llm_enabled": true }))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    let audit: Value = admin
        .get(t.url("/api/v1/audit?action=agents.switch"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
}
