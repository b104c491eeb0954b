//! Traces: exported over OTLP/HTTP to a (mock) collector; a request's trace — the caller's
//! own, when it sends `traceparent` — continues into the jobs it enqueued and the jobs those
//! enqueued.

use std::collections::{HashMap, HashSet};

use khaacho::config::Settings;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::TestApp;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[derive(Debug)]
struct Exported {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    links: Vec<String>,
    attributes: HashMap<String, String>,
}

async fn exported(collector: &MockServer) -> Vec<Exported> {
    let mut spans = Vec::new();
    for request in collector.received_requests().await.unwrap_or_default() {
        assert_eq!(
            request.headers.get("content-type").unwrap(),
            "application/x-protobuf"
        );
        let body = ExportTraceServiceRequest::decode(request.body.as_slice()).unwrap();
        for resource in body.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .map(|a| format!("{:?}", a.value));
            assert!(service.unwrap().contains("khaacho"), "service.name is set");
            for scope in resource.scope_spans {
                for s in scope.spans {
                    spans.push(Exported {
                        name: s.name,
                        trace_id: hex::encode(&s.trace_id),
                        span_id: hex::encode(&s.span_id),
                        parent: hex::encode(&s.parent_span_id),
                        links: s.links.iter().map(|l| hex::encode(&l.trace_id)).collect(),
                        attributes: s
                            .attributes
                            .iter()
                            .filter_map(|a| {
                                use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
                                match a.value.as_ref()?.value.as_ref()? {
                                    V::StringValue(v) => Some((a.key.clone(), v.clone())),
                                    V::IntValue(v) => Some((a.key.clone(), v.to_string())),
                                    _ => None,
                                }
                            })
                            .collect(),
                    });
                }
            }
        }
    }
    spans
}

#[tokio::test]
async fn a_requests_trace_continues_into_its_jobs_and_is_exported_over_otlp() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let mut settings = Settings::default();
    settings.traces.otlp_endpoint = Some(collector.uri());
    settings.traces.sample_ratio = 1.0;
    settings.log_level = "warn".into();
    let telemetry = khaacho::telemetry::init_logging(&settings).unwrap();
    assert!(
        telemetry.exporting(),
        "this test process installs the exporter first"
    );

    let t = TestApp::spawn().await;
    t.seed().await;
    let retailer = t.retailer().await;
    let r = t
        .client
        .post(t.url("/api/v1/orders"))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({ "retailer_id": retailer,
                       "lines": [{ "sku": "MAIDA-50", "qty": 3, "unit": "kg" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let order: Value = r.json().await.unwrap();
    // A malformed traceparent is ignored: the request is served and starts a trace of its own.
    let r = t
        .client
        .post(t.url("/api/v1/orders"))
        .header("traceparent", "00-not-a-trace-01")
        .json(&json!({ "retailer_id": retailer,
                       "lines": [{ "sku": "MAIDA-50", "qty": 1, "unit": "kg" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // The queued first steps carry their request's trace; the operator sees which.
    let queued = t
        .get_json("/api/v1/admin/jobs?status=queued&kind=order.validate")
        .await;
    let parents: Vec<&str> = queued["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["trace_parent"].as_str().expect("a traced job"))
        .collect();
    assert_eq!(parents.len(), 2);
    assert_eq!(
        parents.iter().filter(|p| p.contains(CALLER_TRACE)).count(),
        1,
        "{parents:?}"
    );

    t.run_jobs().await;
    let detail = t
        .get_json(&format!(
            "/api/v1/orders/{}",
            order["order_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        detail["status"], "routed",
        "the order went through validation and routing"
    );
    telemetry.flush().await;

    let spans = exported(&collector).await;
    let ours: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.trace_id == CALLER_TRACE)
        .collect();
    let http = ours
        .iter()
        .find(|s| {
            s.name == "http" && s.attributes.get("method").map(String::as_str) == Some("POST")
        })
        .unwrap_or_else(|| panic!("the request's span is in the caller's trace: {ours:#?}"));
    assert_eq!(http.parent, CALLER_SPAN, "a child of the caller's span");
    let jobs: Vec<&&Exported> = ours.iter().filter(|s| s.name == "job").collect();
    let kinds: HashSet<&str> = jobs
        .iter()
        .filter_map(|s| s.attributes.get("kind").map(String::as_str))
        .collect();
    assert!(
        kinds.contains("order.validate"),
        "the validation ran in the caller's trace: {kinds:?}"
    );
    // Routing ran in the validation's run: in the trace of a batch that links to the request.
    let batches: HashSet<&str> = spans
        .iter()
        .filter(|s| s.name == "job_batch" && s.links.iter().any(|l| l == CALLER_TRACE))
        .map(|s| s.trace_id.as_str())
        .collect();
    assert!(
        spans
            .iter()
            .any(|s| s.name == "route" && batches.contains(s.trace_id.as_str())),
        "the routing ran in a batch of the request's validation: {spans:#?}"
    );
    // One tree: every span of the trace but the request's hangs from another exported span
    // of it, and the batches that ran the jobs link to the trace.
    let ids: HashSet<&str> = ours.iter().map(|s| s.span_id.as_str()).collect();
    for s in &ours {
        if s.span_id != http.span_id {
            assert!(ids.contains(s.parent.as_str()), "orphan span {s:#?}");
        }
    }
    assert!(
        spans
            .iter()
            .any(|s| s.name == "job_batch" && s.links.iter().any(|l| l == CALLER_TRACE)),
        "a batch links to the request's trace"
    );
    // The other request's trace is its own.
    assert!(
        spans
            .iter()
            .any(|s| s.name == "http" && s.trace_id != CALLER_TRACE)
    );
}
