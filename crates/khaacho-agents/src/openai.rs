//! Adapter for OpenAI-compatible `POST {base_url}/chat/completions` servers (OpenAI, and local
//! model servers such as llama.cpp, vLLM or Ollama that speak the same API).

use std::sync::Arc;
use std::time::Duration;

use khaacho_parser::Catalog;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ApiKey;
use crate::http::{client, parse_model_json, send_json};
use crate::output::{output_schema, validate_output};
use crate::prompt::{CandidateCache, SYSTEM_PROMPT, user_message};
use crate::{AgentError, AgentFuture, OrderParserAgent};

/// Connection settings for an OpenAI-compatible server. `Debug` redacts the key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OpenAiConfig {
    /// API root including the version, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:8080/v1`; `/chat/completions` is appended.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Model name, e.g. `gpt-4o-mini`.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when not empty.
    #[serde(default)]
    pub api_key: ApiKey,
    /// Limit for one request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_base_url() -> String {
    "https://api.openai.com/v1".to_owned()
}

pub(crate) fn default_timeout_ms() -> u64 {
    10_000
}

/// Name of the structured-output schema in the request.
const SCHEMA_NAME: &str = "order_lines";

/// The OpenAI-compatible adapter.
#[derive(Debug)]
pub struct OpenAiAgent {
    config: OpenAiConfig,
    url: String,
    client: reqwest::Client,
    candidates: CandidateCache,
}

impl OpenAiAgent {
    /// The config and metric name.
    pub const NAME: &'static str = "openai";

    /// Builds the HTTP client; fails on an unusable base URL.
    pub fn new(config: OpenAiConfig) -> anyhow::Result<OpenAiAgent> {
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        reqwest::Url::parse(&url)
            .map_err(|e| anyhow::anyhow!("openai.base_url {:?}: {e}", config.base_url))?;
        Ok(OpenAiAgent {
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
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_message(catalog, &candidates, text)}
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "strict": true, "schema": output_schema()}
            }
        })
    }
}

impl OpenAiConfig {
    /// The per-request timeout as a `Duration`.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
    refusal: Option<String>,
}

/// Extracts the model's JSON text from a completion.
fn content(response: Value) -> Result<String, AgentError> {
    let completion: Completion = serde_json::from_value(response)
        .map_err(|e| AgentError::BadOutput(format!("not a chat completion: {e}")))?;
    let message = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| AgentError::BadOutput("no choices".into()))?
        .message;
    if let Some(refusal) = message.refusal {
        return Err(AgentError::BadOutput(format!("model refused: {refusal}")));
    }
    message
        .content
        .ok_or_else(|| AgentError::BadOutput("empty message".into()))
}

impl OrderParserAgent for OpenAiAgent {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn parse<'a>(&'a self, catalog: &'a Arc<Catalog>, text: &'a str) -> AgentFuture<'a> {
        Box::pin(async move {
            let mut request = self.client.post(&self.url).json(&self.body(catalog, text));
            if !self.config.api_key.is_empty() {
                request = request.bearer_auth(self.config.api_key.expose());
            }
            let response = send_json(request, &self.config.api_key).await?;
            let output = parse_model_json(&content(response)?)?;
            validate_output(catalog, text, &output)
        })
    }
}
