//! The spine: one transition service, a floor that imports nothing above it, batch statements
//! built to be kept prepared only while small, who placed an order, and what a vendor may see
//! of one.

use std::path::{Path, PathBuf};

use khaacho::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_problem, bearer_client};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The SQL statements in `text` that write an order's status: an UPDATE of `orders` whose SET
/// list names `status`, or an INSERT into `orders` (a new order's first status).
fn status_writes(text: &str) -> Vec<String> {
    let folded = text.to_ascii_lowercase();
    let folded = folded.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut found = Vec::new();
    for (i, _) in folded.match_indices("update orders set") {
        let set_list = &folded[i..];
        let end = set_list.find(" where ").unwrap_or(set_list.len().min(400));
        if set_list[..end].contains("status") {
            found.push(set_list[..end.min(120)].to_string());
        }
    }
    for pattern in ["insert into orders ", "insert into orders("] {
        for (i, _) in folded.match_indices(pattern) {
            found.push(folded[i..(i + 80).min(folded.len())].to_string());
        }
    }
    found
}

#[test]
fn only_the_transition_service_writes_an_orders_status() {
    let allowed = src().join("orders").join("transition.rs");
    let mut offenders = Vec::new();
    for file in sources(&src()) {
        let text = std::fs::read_to_string(&file).unwrap();
        let writes = status_writes(&text);
        if file == allowed {
            assert_eq!(
                writes.len(),
                4,
                "the scan must find the transition service's own UPDATEs (one order, a batch) \
                 and INSERTs (a transaction's, the PostgreSQL intake's one statement): {writes:?}"
            );
        } else {
            offenders.extend(
                writes
                    .into_iter()
                    .map(|w| format!("{}: {w}", file.display())),
            );
        }
    }
    assert!(
        offenders.is_empty(),
        "only orders/transition.rs may write an order's status:\n{}",
        offenders.join("\n")
    );
}

/// The call that builds the first statement at or after line `from` of `lines`: one of
/// `base::db::BuildBatch`'s (`build_batch…`) or a plain `QueryBuilder` build.
fn next_build(lines: &[&str], from: usize) -> Option<&'static str> {
    lines[from..].iter().find_map(|l| {
        [
            "build_batch",
            ".build()",
            ".build_query_as",
            ".build_query_scalar",
        ]
        .into_iter()
        .find(|b| l.contains(b))
    })
}

#[test]
fn every_batch_statement_is_kept_prepared_only_while_small() {
    // A multi-row VALUES statement has a text per batch size; kept prepared at any size, such
    // texts held over 100 MB of sqlx's statement caches over capacity (base::db::BuildBatch).
    let mut offenders = Vec::new();
    let mut batches = 0;
    for file in sources(&src()) {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            // A batch macro's own body (`$qb.push_values`) is judged where the macro is used.
            let batch = (t.contains(".push_values(") && !t.starts_with("$qb"))
                || (t.starts_with("push_") && t.contains("!("));
            if t.starts_with("//") || !batch {
                continue;
            }
            batches += 1;
            if next_build(&lines, n) != Some("build_batch") {
                offenders.push(format!("{}:{}: {t}", file.display(), n + 1));
            }
        }
    }
    assert!(
        batches >= 20,
        "the scan must find the batch statements ({batches})"
    );
    assert!(
        offenders.is_empty(),
        "a batch statement built without `build_batch` (base::db::BuildBatch):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_floor_imports_nothing_above_it() {
    // The floor (base/) may use only itself; the queue only itself and the floor.
    let rules: [(&str, &[&str]); 2] = [("base", &["base"]), ("queue", &["base", "queue"])];
    let mut offenders = Vec::new();
    for (floor, may_use) in rules {
        for file in sources(&src().join(floor)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for (i, _) in line.match_indices("crate::") {
                    let module: String = line[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    // `crate::with_tx!` and friends are the floor's own macros, exported at
                    // the crate root.
                    let is_macro = module.starts_with("with_");
                    if !module.is_empty() && !is_macro && !may_use.contains(&module.as_str()) {
                        offenders.push(format!("{}:{}: {line}", file.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the floor imports from above it:\n{}",
        offenders.join("\n")
    );
}

/// The first event of the order `id`.
async fn first_event(t: &TestApp, id: &str) -> Value {
    let order = t.get_json(&format!("/api/v1/orders/{id}")).await;
    order["events"][0].clone()
}

#[tokio::test]
async fn the_first_event_records_who_placed_the_order_and_through_what() {
    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer: Uuid = t.retailer().await.parse().unwrap();
    let line = json!([{ "sku": "SUGAR-50", "qty": 2, "unit": "kg" }]);

    // A retailer's own user orders without naming its retailer.
    let user = Uuid::now_v7();
    let token = t
        .app
        .auth()
        .keys
        .issue(user, Role::Retailer, Some(retailer))
        .unwrap()
        .0;
    let r = bearer_client(&token)
        .post(t.url("/api/v1/orders"))
        .json(&json!({ "lines": line }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    let order = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(order["retailer_id"], json!(retailer));
    let event = first_event(&t, &id).await;
    assert_eq!(event["actor"], format!("user:{user}"));
    assert_eq!(event["role"], "retailer");
    assert_eq!(event["detail"]["channel"], "api");

    // An API key of the retailer is recorded as that key.
    let key = t
        .client_as(Role::Admin, None)
        .post(t.url("/api/v1/auth/api-keys"))
        .json(&json!({ "name": "pos", "role": "retailer", "retailer_id": retailer }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let r = bearer_client(key["key"].as_str().unwrap())
        .post(t.url("/api/v1/orders"))
        .json(&json!({ "lines": line }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    let event = first_event(&t, &id).await;
    assert_eq!(
        event["actor"],
        format!("apikey:{}", key["id"].as_str().unwrap())
    );
    assert_eq!(event["role"], "retailer");

    // Staff name the retailer, and are recorded as themselves.
    let placed = t.order(&retailer.to_string(), line.clone()).await;
    let event = first_event(&t, placed["order_id"].as_str().unwrap()).await;
    assert_eq!(event["role"], "operator");
    assert!(event["actor"].as_str().unwrap().starts_with("user:"));
    let missing = t
        .post_json("/api/v1/orders", &json!({ "lines": line }))
        .await;
    let problem = assert_problem(missing, 422).await;
    assert_eq!(problem["errors"][0]["field"], "retailer_id");
}

/// Every route that returns an order, as each role sees it: a vendor never sees order
/// totals or amounts in event details; staff and the buying retailer do.
#[tokio::test]
async fn a_vendor_sees_no_order_money_on_any_route() {
    // Every order is held for review, so its history carries the order total.
    let t = TestApp::spawn_with(|s| s.pipeline.review_above_npr = 0).await;
    t.seed().await;
    let retailer: Uuid = t.retailer().await.parse().unwrap();
    let placed = t
        .order(
            &retailer.to_string(),
            json!([{ "sku": "RICE-JEERA-25", "qty": 1, "unit": "kg" }]),
        )
        .await;
    let id = placed["order_id"].as_str().unwrap().to_string();
    t.run_jobs().await;
    let full = t.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(full["status"], "on_hold");
    assert!(full["totals"]["total_npr"].as_f64().unwrap() > 0.0);
    let held = &full["events"].as_array().unwrap().last().unwrap()["detail"];
    assert!(held.to_string().contains("\"total_paisa\":"), "{held}");
    let vendor: Uuid = full["lines"][0]["vendor_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let has_money = |v: &Value| {
        let text = v.to_string();
        text.contains("_paisa") || text.contains("\"totals\":{")
    };
    for (role, tenant, sees_money) in [
        (Role::Admin, None, true),
        (Role::Operator, None, true),
        (Role::Retailer, Some(retailer), true),
        (Role::Vendor, Some(vendor), false),
    ] {
        let c = t.client_as(role, tenant);
        let detail: Value = c
            .get(t.url(&format!("/api/v1/orders/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(has_money(&detail), sees_money, "{role:?} detail: {detail}");
        let list: Value = c
            .get(t.url("/api/v1/orders?limit=50"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "{role:?}");
        assert_eq!(has_money(&list), sees_money, "{role:?} list: {list}");
        let status: Value = c
            .get(t.url(&format!("/api/v1/orders/{id}/status")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status["status"], "on_hold");
        assert!(!has_money(&status), "the status answer carries no money");
        if role == Role::Vendor {
            // The actions answer with the order too; a vendor may not use them at all.
            for action in ["approve", "reject", "cancel"] {
                let r = c
                    .post(t.url(&format!("/api/v1/orders/{id}/{action}")))
                    .json(&json!({ "reason": "checking visibility" }))
                    .send()
                    .await
                    .unwrap();
                assert_problem(r, 403).await;
            }
        }
    }
}
