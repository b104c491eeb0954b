//! Adapter for the Anthropic Messages API, `POST {base_url}/v1/messages`.
//!
//! Structured output is forced with a single tool whose `input_schema` is the output schema and
//! `tool_choice` naming it: the model must answer with one `tool_use` block whose `input` is
//! the order.

use std::sync::Arc;
use std::time::Duration;

use khaacho_parser::Catalog;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ApiKey;
use crate::http::{client, send_json};
use crate::openai::default_timeout_ms;
use crate::output::{output_schema, validate_output};
use crate::prompt::{CandidateCache, SYSTEM_PROMPT, user_message};
use crate::{AgentError, AgentFuture, OrderParserAgent};

/// The API version header the request and response shapes here follow.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The one tool the model is made to call.
const TOOL_NAME: &str = "record_order";

/// Connection settings for the Anthropic API. `Debug` redacts the key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AnthropicConfig {
    /// API root without the version, e.g. `https://api.anthropic.com`; `/v1/messages` is
    /// appended.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// Sent as `x-api-key`.
    pub api_key: ApiKey,
    /// Limit for one request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Output token limit; an order rarely needs more than a few hundred.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
}

fn default_base_url() -> String {
    "https://api.anthropic.com".to_owned()
}

fn default_max_tokens() -> u32 {
    2_048
}

impl AnthropicConfig {
    /// The per-request timeout as a `Duration`.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The Anthropic adapter.
#[derive(Debug)]
pub struct AnthropicAgent {
    config: AnthropicConfig,
    url: String,
    /// The key as a header value marked sensitive, so reqwest/hyper never print it.
    key_header: reqwest::header::HeaderValue,
    client: reqwest::Client,
    candidates: CandidateCache,
}

impl AnthropicAgent {
    /// The config and metric name.
    pub const NAME: &'static str = "anthropic";

    /// Builds the HTTP client; fails on an unusable base URL.
    pub fn new(config: AnthropicConfig) -> anyhow::Result<AnthropicAgent> {
        let url = format!("{}/v1/messages", config.base_url.trim_end_matches('/'));
        reqwest::Url::parse(&url)
            .map_err(|e| anyhow::anyhow!("anthropic.base_url {:?}: {e}", config.base_url))?;
        let mut key_header = reqwest::header::HeaderValue::from_str(config.api_key.expose())
            .map_err(|_| {
                anyhow::anyhow!("anthropic.api_key contains characters not allowed in a header")
            })?;
        key_header.set_sensitive(true);
        Ok(AnthropicAgent {
            key_header,
            client: client(config.timeout())?,
            url,
            config,
            candidates: CandidateCache::default(),
        })
    }

    /// The configured per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.config.timeout()
    }

    fn body(&self, catalog: &Arc<Catalog>, text: &str) -> Value {
        let candidates = self.candidates.candidates(catalog, text);
        json!({
            "model": self.config.model,
            "max_tokens": self.config.max_tokens,
            "temperature": 0,
            "system": SYSTEM_PROMPT,
            "messages": [
                {"role": "user", "content": user_message(catalog, &candidates, text)}
            ],
            "tools": [{
                "name": TOOL_NAME,
                "description": "Record the order lines and flags read from the retailer's message.",
                "input_schema": output_schema()
            }],
            "tool_choice": {"type": "tool", "name": TOOL_NAME}
        })
    }
}

#[derive(Deserialize)]
struct MessageResponse {
    content: Vec<Block>,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    input: Option<Value>,
}

/// Extracts the forced tool call's input.
fn tool_input(response: Value) -> Result<Value, AgentError> {
    let message: MessageResponse = serde_json::from_value(response)
        .map_err(|e| AgentError::BadOutput(format!("not a messages response: {e}")))?;
    if message.stop_reason.as_deref() == Some("max_tokens") {
        // The tool input was cut off mid-way; part of an order is worse than the local parse.
        return Err(AgentError::BadOutput(
            "output truncated at max_tokens".into(),
        ));
    }
    message
        .content
        .into_iter()
        .find(|b| b.kind == "tool_use" && b.name.as_deref() == Some(TOOL_NAME))
        .and_then(|b| b.input)
        .ok_or_else(|| AgentError::BadOutput(format!("no {TOOL_NAME} tool_use block")))
}

impl OrderParserAgent for AnthropicAgent {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn parse<'a>(&'a self, catalog: &'a Arc<Catalog>, text: &'a str) -> AgentFuture<'a> {
        Box::pin(async move {
            let request = self
                .client
                .post(&self.url)
                .header("x-api-key", self.key_header.clone())
                .header("anthropic-version", ANTHROPIC_VERSION)
                .json(&self.body(catalog, text));
            let response = send_json(request, &self.config.api_key).await?;
            validate_output(catalog, text, &tool_input(response)?)
        })
    }
}
