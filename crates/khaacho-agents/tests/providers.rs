//! Both LLM adapters against a local mock server, through the full chain: structured output,
//! validation, fallback to the local parser, retries, timeouts, the breaker and the LLM switch.
//! Every scenario runs once per provider (see the `provider_tests!` macro at the bottom).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use khaacho_agents::{
    AgentChain, AgentError, AgentsConfig, AnthropicAgent, OpenAiAgent, OrderParserAgent,
};
use khaacho_parser::{Catalog, CatalogProduct, FlagKind, Unit};
use khaacho_resilience::BreakerState;
use khaacho_resilience::testing::CaptureRecorder;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MESSAGE: &str = "5 kg chini, 2 carton wai wai";

fn product(sku: &str, name: &str, aliases: &[&str], unit: Unit) -> CatalogProduct {
    CatalogProduct {
        sku: sku.into(),
        name: name.into(),
        aliases: aliases.iter().map(|a| (*a).into()).collect(),
        unit,
        pack_size: None,
        price_npr: None,
        category: "test".into(),
    }
}

fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::new(vec![
        product("SUGAR", "Sugar", &["chini", "cheeni"], Unit::Kg),
        product(
            "WAIWAI",
            "Wai Wai Noodles",
            &["wai wai", "waiwai"],
            Unit::Packet,
        ),
        product("OIL-SUN", "Sunflower Oil", &["tel"], Unit::Litre),
        product("RICE", "Mansuli Rice", &["chamal", "mansuli"], Unit::Kg),
    ]))
}

/// What a well-behaved model answers for [`MESSAGE`]. Quantities differ from the local parse
/// (6 kg instead of 5) so a test can tell who answered from the lines alone.
fn good_output() -> Value {
    json!({
        "items": [
            {"sku": "SUGAR", "qty": 6, "unit": "kg", "amount_npr": null, "text": "5 kg chini"},
            {"sku": "WAIWAI", "qty": 2, "unit": "carton", "amount_npr": null, "text": "2 carton wai wai"}
        ],
        "flags": []
    })
}

#[derive(Debug, Clone, Copy)]
enum Provider {
    OpenAi,
    Anthropic,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Provider::OpenAi => "/v1/chat/completions",
            Provider::Anthropic => "/v1/messages",
        }
    }

    /// A 200 answer carrying `output` the way this provider carries structured output.
    fn answer(self, output: &Value) -> ResponseTemplate {
        let body = match self {
            Provider::OpenAi => json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "test-model",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": output.to_string(), "refusal": null}}]
            }),
            Provider::Anthropic => json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "test-model",
                "stop_reason": "tool_use",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "record_order", "input": output}]
            }),
        };
        ResponseTemplate::new(200).set_body_json(body)
    }

    /// Chain config pointing at the mock server; `extra` overrides resilience settings.
    fn config(self, server: &MockServer, resilience: Value) -> AgentsConfig {
        let mut resilience_all = json!({
            "max_attempts": 2, "retry_base_ms": 5, "retry_cap_ms": 20,
            "consecutive_failures": 50, "min_calls": 50
        });
        for (k, v) in resilience.as_object().unwrap() {
            resilience_all[k] = v.clone();
        }
        let provider = match self {
            Provider::OpenAi => json!({"base_url": format!("{}/v1", server.uri()),
                "model": "test-model", "api_key": "sk-test-key", "timeout_ms": 1000}),
            Provider::Anthropic => json!({"base_url": server.uri(),
                "model": "test-model", "api_key": "sk-ant-test-key", "timeout_ms": 1000}),
        };
        let mut cfg = json!({
            "llm_enabled": true,
            "chain": [self.name(), "local"],
            "resilience": resilience_all,
        });
        cfg[self.name()] = provider;
        serde_json::from_value(cfg).unwrap()
    }

    async fn mount(self, server: &MockServer, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path(self.path()))
            .respond_with(response)
            .mount(server)
            .await;
    }
}

fn answers(rec: &CaptureRecorder, agent: &str) -> u64 {
    rec.counter("khaacho_parser_agent_answers_total", &[("agent", agent)])
}

fn fallbacks(rec: &CaptureRecorder, p: Provider) -> u64 {
    rec.counter("khaacho_fallback_total", &[("dependency", p.name())])
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// The local parser's reading of [`MESSAGE`]: 5 kg sugar.
fn assert_local_answer(answer: &khaacho_agents::ChainAnswer) {
    assert_eq!(answer.agent, "local");
    assert_eq!(answer.outcome.items[0].sku, "SUGAR");
    assert_eq!(answer.outcome.items[0].qty, Some(5.0));
}

async fn success(p: Provider) {
    let rec = CaptureRecorder::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let server = MockServer::start().await;
    let auth = match p {
        Provider::OpenAi => Mock::given(header("authorization", "Bearer sk-test-key")).and(
            body_partial_json(json!({"model": "test-model", "response_format": {
                "type": "json_schema", "json_schema": {"name": "order_lines", "strict": true}}})),
        ),
        Provider::Anthropic => Mock::given(header("x-api-key", "sk-ant-test-key"))
            .and(header("anthropic-version", "2023-06-01"))
            .and(body_partial_json(json!({"model": "test-model",
                "tool_choice": {"type": "tool", "name": "record_order"}}))),
    };
    auth.and(method("POST"))
        .and(path(p.path()))
        .respond_with(p.answer(&good_output()))
        .expect(1)
        .mount(&server)
        .await;
    let chain = AgentChain::from_config(&p.config(&server, json!({}))).unwrap();

    let answer = chain.parse(&catalog(), MESSAGE).await;

    assert_eq!(answer.agent, p.name());
    let lines: Vec<_> = answer
        .outcome
        .items
        .iter()
        .map(|i| (i.sku.as_str(), i.qty, i.unit))
        .collect();
    assert_eq!(
        lines,
        [
            ("SUGAR", Some(6.0), Some(Unit::Kg)),
            ("WAIWAI", Some(2.0), Some(Unit::Carton))
        ]
    );
    assert_eq!(answer.outcome.items[1].span, (12, 28));
    assert_eq!(answers(&rec, p.name()), 1);
    assert_eq!(fallbacks(&rec, p), 0);

    // The prompt carries the message and the pre-selected candidates, not the whole catalogue.
    let sent = &server.received_requests().await.unwrap()[0];
    let body = String::from_utf8_lossy(&sent.body);
    assert!(body.contains("SUGAR | Sugar | kg"), "{body}");
    assert!(body.contains("2 carton wai wai"));
    assert!(
        !body.contains("OIL-SUN"),
        "unrelated products stay out of the prompt"
    );
}

async fn unknown_sku_becomes_flag(p: Provider) {
    let server = MockServer::start().await;
    let output = json!({"items": [
        {"sku": "SUGAR", "qty": 5, "unit": "kg", "amount_npr": null, "text": "5 kg chini"},
        {"sku": "MAGGI-NEW", "qty": 2, "unit": "carton", "amount_npr": null, "text": "2 carton wai wai"}
    ], "flags": []});
    p.mount(&server, p.answer(&output)).await;
    let chain = AgentChain::from_config(&p.config(&server, json!({}))).unwrap();

    let answer = chain.parse(&catalog(), MESSAGE).await;

    assert_eq!(answer.agent, p.name());
    assert_eq!(
        answer.outcome.items.len(),
        1,
        "invented SKU never becomes a line"
    );
    assert_eq!(answer.outcome.flags[0].kind, FlagKind::UnknownItem);
    assert_eq!(answer.outcome.flags[0].text, "2 carton wai wai");
}

/// Broken answers fall back to the local parser at once (bad output is not retried) and are
/// metered as fallbacks.
async fn bad_output_falls_back(p: Provider) {
    let broken_body = ResponseTemplate::new(200).set_body_string("{\"id\": \"x\", \"cho");
    let negative = json!({"items": [{"sku": "SUGAR", "qty": -5, "unit": "kg", "amount_npr": null, "text": "x"}], "flags": []});
    let missing_sku = json!({"items": [{"qty": 5, "unit": "kg", "text": "x"}], "flags": []});
    let bad_unit = json!({"items": [{"sku": "SUGAR", "qty": 5, "unit": "bucket", "amount_npr": null, "text": "x"}], "flags": []});
    let no_items = json!({"lines": []});
    let mut cases = vec![
        ("malformed body", broken_body),
        ("negative qty", p.answer(&negative)),
        ("missing sku", p.answer(&missing_sku)),
        ("unit outside the set", p.answer(&bad_unit)),
        ("missing items", p.answer(&no_items)),
    ];
    if let Provider::OpenAi = p {
        let completion = json!({"choices": [{"message": {"role": "assistant", "content": "{\"items\": [", "refusal": null}}]});
        cases.push((
            "malformed model JSON",
            ResponseTemplate::new(200).set_body_json(completion),
        ));
    }
    for (what, response) in cases {
        let rec = CaptureRecorder::new();
        let _guard = metrics::set_default_local_recorder(&rec);
        let server = MockServer::start().await;
        p.mount(&server, response).await;
        let chain = AgentChain::from_config(&p.config(&server, json!({}))).unwrap();

        let answer = chain.parse(&catalog(), MESSAGE).await;

        assert_local_answer(&answer);
        assert_eq!(
            requests(&server).await,
            1,
            "{what}: bad output is not retried"
        );
        assert_eq!(fallbacks(&rec, p), 1, "{what}");
        assert_eq!(answers(&rec, "local"), 1, "{what}");
        assert_eq!(answers(&rec, p.name()), 0, "{what}");
    }
}

async fn overload_and_outage_are_retried_then_fall_back(p: Provider) {
    for status in [429, 500, 503] {
        let rec = CaptureRecorder::new();
        let _guard = metrics::set_default_local_recorder(&rec);
        let server = MockServer::start().await;
        p.mount(&server, ResponseTemplate::new(status)).await;
        let chain =
            AgentChain::from_config(&p.config(&server, json!({"max_attempts": 3}))).unwrap();

        let answer = chain.parse(&catalog(), MESSAGE).await;

        assert_local_answer(&answer);
        assert_eq!(
            requests(&server).await,
            3,
            "HTTP {status} retried up to max_attempts"
        );
        assert_eq!(fallbacks(&rec, p), 1);
        let failures = rec.counter(
            "khaacho_dependency_calls_total",
            &[("dependency", p.name()), ("outcome", "failure")],
        );
        assert_eq!(failures, 3);
    }
}

async fn retry_recovers_from_one_503(p: Provider) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(p.path()))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    p.mount(&server, p.answer(&good_output())).await;
    let chain = AgentChain::from_config(&p.config(&server, json!({}))).unwrap();

    let answer = chain.parse(&catalog(), MESSAGE).await;

    assert_eq!(answer.agent, p.name());
    assert_eq!(requests(&server).await, 2);
}

async fn client_errors_are_neither_retried_nor_breaker_failures(p: Provider) {
    let server = MockServer::start().await;
    p.mount(
        &server,
        ResponseTemplate::new(401).set_body_string("invalid key sk-test-key sk-ant-test-key"),
    )
    .await;
    let chain = AgentChain::from_config(&p.config(
        &server,
        json!({"consecutive_failures": 2, "max_attempts": 3}),
    ))
    .unwrap();

    for _ in 0..4 {
        assert_local_answer(&chain.parse(&catalog(), MESSAGE).await);
    }

    assert_eq!(
        requests(&server).await,
        4,
        "one request per message, no retry"
    );
    assert_eq!(chain.breakers(), [(p.name(), BreakerState::Closed)]);
}

async fn timeout_falls_back(p: Provider) {
    let rec = CaptureRecorder::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let server = MockServer::start().await;
    p.mount(
        &server,
        p.answer(&good_output())
            .set_delay(Duration::from_millis(800)),
    )
    .await;
    let mut cfg = p.config(&server, json!({"max_attempts": 1}));
    match p {
        Provider::OpenAi => cfg.openai.as_mut().unwrap().timeout_ms = 100,
        Provider::Anthropic => cfg.anthropic.as_mut().unwrap().timeout_ms = 100,
    }
    let chain = AgentChain::from_config(&cfg).unwrap();
    let started = Instant::now();

    let answer = chain.parse(&catalog(), MESSAGE).await;

    assert_local_answer(&answer);
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fallbacks(&rec, p), 1);
    // Whichever fires first, the stack's timer or reqwest's, it is a timeout-class failure.
    let timeouts = rec.counter(
        "khaacho_dependency_calls_total",
        &[("dependency", p.name()), ("outcome", "timeout")],
    ) + rec.counter(
        "khaacho_dependency_calls_total",
        &[("dependency", p.name()), ("outcome", "failure")],
    );
    assert_eq!(timeouts, 1);
}

/// Opens after 3 failures in a row, rejects without calling while open, half-opens after
/// 300 ms (long enough that the rejection phase cannot outlast it on a busy machine), and
/// closes after 2 successful trials.
async fn breaker_opens_rejects_half_opens_and_closes(p: Provider) {
    let rec = CaptureRecorder::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let server = MockServer::start().await;
    p.mount(&server, ResponseTemplate::new(500)).await;
    let chain = AgentChain::from_config(&p.config(
        &server,
        json!({"max_attempts": 1, "consecutive_failures": 3, "open_for_ms": 300,
               "close_after_successes": 2}),
    ))
    .unwrap();
    let state = || chain.breakers()[0].1;
    let gauge = || rec.gauge("khaacho_breaker_state", &[("dependency", p.name())]);

    for _ in 0..3 {
        assert_local_answer(&chain.parse(&catalog(), MESSAGE).await);
    }
    assert_eq!(state(), BreakerState::Open);
    assert_eq!(gauge(), Some(2.0));
    assert_eq!(requests(&server).await, 3);

    for _ in 0..5 {
        assert_local_answer(&chain.parse(&catalog(), MESSAGE).await);
    }
    assert_eq!(
        requests(&server).await,
        3,
        "no request reaches the server while open"
    );
    let rejected = rec.counter(
        "khaacho_dependency_calls_total",
        &[("dependency", p.name()), ("outcome", "rejected_open")],
    );
    assert_eq!(rejected, 5);
    assert_eq!(fallbacks(&rec, p), 8);

    // The provider recovers; after the wait the breaker lets trial calls through.
    server.reset().await;
    p.mount(&server, p.answer(&good_output())).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(state(), BreakerState::HalfOpen);
    assert_eq!(gauge(), Some(1.0));

    assert_eq!(chain.parse(&catalog(), MESSAGE).await.agent, p.name());
    assert_eq!(state(), BreakerState::HalfOpen, "one success is not enough");
    assert_eq!(chain.parse(&catalog(), MESSAGE).await.agent, p.name());
    assert_eq!(state(), BreakerState::Closed);
    assert_eq!(gauge(), Some(0.0));
    assert_eq!(requests(&server).await, 2);
}

async fn half_open_failure_reopens(p: Provider) {
    let server = MockServer::start().await;
    p.mount(&server, ResponseTemplate::new(503)).await;
    let chain = AgentChain::from_config(&p.config(
        &server,
        json!({"max_attempts": 1, "consecutive_failures": 2, "open_for_ms": 300}),
    ))
    .unwrap();
    for _ in 0..2 {
        chain.parse(&catalog(), MESSAGE).await;
    }
    assert_eq!(chain.breakers()[0].1, BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(350)).await;

    assert_local_answer(&chain.parse(&catalog(), MESSAGE).await);

    assert_eq!(requests(&server).await, 3, "one trial call went through");
    assert_eq!(chain.breakers()[0].1, BreakerState::Open);
}

async fn switch_off_sends_nothing(p: Provider) {
    let rec = CaptureRecorder::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let server = MockServer::start().await;
    p.mount(&server, p.answer(&good_output())).await;
    let chain = AgentChain::from_config(&p.config(&server, json!({}))).unwrap();
    let switch = chain.llm_switch();

    switch.set(false);
    assert_local_answer(&chain.parse(&catalog(), MESSAGE).await);
    assert_eq!(
        requests(&server).await,
        0,
        "LLM off: no HTTP request at all"
    );
    assert_eq!(fallbacks(&rec, p), 0, "switched off is not a fallback");

    switch.set(true);
    assert_eq!(chain.parse(&catalog(), MESSAGE).await.agent, p.name());
    assert_eq!(requests(&server).await, 1);
}

/// `llm_enabled: false` in the config (the default) means the same as the switch off.
async fn disabled_by_config_sends_nothing(p: Provider) {
    let server = MockServer::start().await;
    p.mount(&server, p.answer(&good_output())).await;
    let mut cfg = p.config(&server, json!({}));
    cfg.llm_enabled = false;
    let chain = AgentChain::from_config(&cfg).unwrap();

    assert_local_answer(&chain.parse(&catalog(), MESSAGE).await);
    assert_eq!(requests(&server).await, 0);
}

/// The agent on its own (as the port type, outside a chain) reports the HTTP error, with the
/// API key scrubbed from the provider's error text before it can reach a log.
async fn agent_alone_reports_status_without_the_key(p: Provider) {
    let server = MockServer::start().await;
    let key = match p {
        Provider::OpenAi => "sk-test-key",
        Provider::Anthropic => "sk-ant-test-key",
    };
    let body = format!("{{\"error\": \"invalid x-api-key {key}\"}}");
    p.mount(&server, ResponseTemplate::new(401).set_body_string(body))
        .await;
    let cfg = p.config(&server, json!({}));
    let agent: Arc<dyn OrderParserAgent> = match p {
        Provider::OpenAi => Arc::new(OpenAiAgent::new(cfg.openai.unwrap()).unwrap()),
        Provider::Anthropic => Arc::new(AnthropicAgent::new(cfg.anthropic.unwrap()).unwrap()),
    };
    assert_eq!(agent.name(), p.name());

    let err = agent.parse(&catalog(), MESSAGE).await.unwrap_err();

    let AgentError::Status { status, body } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*status, 401);
    assert!(!err.to_string().contains("test-key"), "{err}");
    assert!(body.contains("<redacted>"), "{body}");
}

macro_rules! provider_tests {
    ($module:ident, $provider:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn success_matches_lines_to_the_catalogue() {
                success($provider).await;
            }
            #[tokio::test]
            async fn unknown_sku_becomes_unknown_item_flag() {
                unknown_sku_becomes_flag($provider).await;
            }
            #[tokio::test]
            async fn malformed_or_schema_violating_output_falls_back() {
                bad_output_falls_back($provider).await;
            }
            #[tokio::test]
            async fn http_429_and_5xx_are_retried_then_fall_back() {
                overload_and_outage_are_retried_then_fall_back($provider).await;
            }
            #[tokio::test]
            async fn retry_recovers_after_one_503() {
                retry_recovers_from_one_503($provider).await;
            }
            #[tokio::test]
            async fn client_errors_not_retried_and_keep_breaker_closed() {
                client_errors_are_neither_retried_nor_breaker_failures($provider).await;
            }
            #[tokio::test]
            async fn timeout_falls_back() {
                super::timeout_falls_back($provider).await;
            }
            #[tokio::test]
            async fn breaker_opens_rejects_without_calling_half_opens_and_closes() {
                breaker_opens_rejects_half_opens_and_closes($provider).await;
            }
            #[tokio::test]
            async fn failed_trial_reopens_breaker() {
                half_open_failure_reopens($provider).await;
            }
            #[tokio::test]
            async fn llm_switch_off_sends_no_request() {
                switch_off_sends_nothing($provider).await;
            }
            #[tokio::test]
            async fn agent_alone_scrubs_api_key_from_errors() {
                agent_alone_reports_status_without_the_key($provider).await;
            }
            #[tokio::test]
            async fn llm_disabled_in_config_sends_no_request() {
                disabled_by_config_sends_nothing($provider).await;
            }
        }
    };
}

provider_tests!(openai, Provider::OpenAi);
provider_tests!(anthropic, Provider::Anthropic);

/// openai → anthropic → local: the first provider's outage falls through to the second.
#[tokio::test]
async fn chain_tries_providers_in_order() {
    let rec = CaptureRecorder::new();
    let _guard = metrics::set_default_local_recorder(&rec);
    let openai = MockServer::start().await;
    let anthropic = MockServer::start().await;
    Provider::OpenAi
        .mount(&openai, ResponseTemplate::new(503))
        .await;
    Provider::Anthropic
        .mount(&anthropic, Provider::Anthropic.answer(&good_output()))
        .await;
    let mut cfg = Provider::OpenAi.config(&openai, json!({"max_attempts": 1}));
    cfg.anthropic = Provider::Anthropic.config(&anthropic, json!({})).anthropic;
    cfg.chain = vec!["openai".into(), "anthropic".into(), "local".into()];
    let chain = AgentChain::from_config(&cfg).unwrap();

    let answer = chain.parse(&catalog(), MESSAGE).await;

    assert_eq!(answer.agent, "anthropic");
    assert_eq!(answer.outcome.items[0].qty, Some(6.0));
    assert_eq!(requests(&openai).await, 1);
    assert_eq!(requests(&anthropic).await, 1);
    assert_eq!(fallbacks(&rec, Provider::OpenAi), 1);
    assert_eq!(fallbacks(&rec, Provider::Anthropic), 0);
    assert_eq!(answers(&rec, "anthropic"), 1);
}
