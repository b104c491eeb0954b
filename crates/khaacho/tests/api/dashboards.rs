//! The Grafana dashboard and Prometheus alert rules shipped in `deploy/` parse, and every
//! metric they query exists in `/metrics` of a running app after some traffic.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::TestApp;

fn deploy(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `khaacho_…` metric name in a PromQL expression.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(i) = rest.find("khaacho_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        into.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
}

#[tokio::test]
async fn dashboard_and_alert_rules_parse_and_name_only_exported_metrics() {
    let dashboard: Value = serde_json::from_str(&deploy("grafana/khaacho.json")).unwrap();
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&deploy("prometheus/alerts.yml")).unwrap();

    let mut names = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(
        panels.len() >= 9,
        "intake, latency, queue, dead letters, orders, breakers, HTTP"
    );
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            metric_names(target["expr"].as_str().unwrap(), &mut names);
        }
    }
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            assert!(rule["alert"].as_str().is_some(), "{rule:?}");
            assert!(
                ["critical", "warning"].contains(&rule["labels"]["severity"].as_str().unwrap())
            );
            metric_names(rule["expr"].as_str().unwrap(), &mut names);
            alerts += 1;
        }
    }
    assert_eq!(alerts, 7);

    // Traffic that makes every metric appear: an open LLM breaker, an order through the
    // pipeline, a dead job.
    let t = TestApp::spawn_with(|s| {
        s.agents.llm_enabled = true;
        s.agents.chain = vec!["openai".into(), "local".into()];
        s.agents.openai = Some(khaacho_agents::OpenAiConfig {
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
    for _ in 0..3 {
        t.post_json("/api/v1/orders/parse", &json!({ "text": "chini 5 kg" }))
            .await;
    }
    let retailer = t.retailer().await;
    let product = t.get_json("/api/v1/products?limit=1").await["items"][0].clone();
    t.order(
        &retailer,
        json!([{ "sku": product["sku"], "qty": 1, "unit": product["unit"] }]),
    )
    .await;
    t.run_jobs().await;
    let now = khaacho::base::time::now_ms();
    khaacho::with_write!(t.app.db(), c => sqlx::query(
        "INSERT INTO jobs (id, queue, kind, payload, priority, status, attempts, max_attempts, \
         run_at_ms, created_at_ms, updated_at_ms, errors) VALUES \
         ($1, 'maintenance', 'test.dead', '{}', 1, 'dead', 3, 3, $2, $2, $2, '[]')")
        .bind(uuid::Uuid::now_v7()).bind(now)
        .execute(c).await.map(|r| r.rows_affected()))
    .unwrap();
    let text = t.metrics().await;
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for name in &names {
        assert!(
            exported.contains(name.as_str()),
            "{name} is not in /metrics:\n{text}"
        );
    }
    assert!(names.len() >= 9, "{names:?}");

    // promtool, where installed, checks the rules' syntax too.
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../deploy/prometheus/alerts.yml"),
        )
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
