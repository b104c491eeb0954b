//! HTTP plumbing shared by the LLM adapters: client set-up and error mapping.

use std::time::Duration;

use serde_json::Value;

use crate::AgentError;
use crate::config::ApiKey;

/// Characters of an error body kept for the log: enough for the provider's message.
const BODY_EXCERPT: usize = 300;

/// A client for one provider. The request timeout matches the resilience timeout so an agent
/// used on its own (outside a chain) is bounded too.
pub(crate) fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()?)
}

/// Sends the request and returns the JSON body of a 2xx answer.
///
/// Error bodies are scrubbed of the API key before they can reach a log: some providers echo
/// (part of) a rejected key in their error message.
pub(crate) async fn send_json(
    request: reqwest::RequestBuilder,
    key: &ApiKey,
) -> Result<Value, AgentError> {
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let mut body: String = body.chars().take(BODY_EXCERPT).collect();
        if !key.is_empty() {
            body = body.replace(key.expose(), "<redacted>");
        }
        return Err(AgentError::Status {
            status: status.as_u16(),
            body,
        });
    }
    let bytes = response.bytes().await.map_err(transport)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AgentError::BadOutput(format!("response body is not JSON: {e}")))
}

fn transport(e: reqwest::Error) -> AgentError {
    AgentError::Transport(e.without_url().to_string())
}

/// Parses the JSON text a model wrote, tolerating the Markdown code fence some local model
/// servers wrap around it even in JSON mode.
pub(crate) fn parse_model_json(text: &str) -> Result<Value, AgentError> {
    let mut t = text.trim();
    if let Some(rest) = t.strip_prefix("```") {
        t = rest
            .trim_start_matches("json")
            .trim_end_matches("```")
            .trim();
    }
    serde_json::from_str(t)
        .map_err(|e| AgentError::BadOutput(format!("model output is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_json_with_or_without_fence() {
        assert_eq!(parse_model_json(" {\"a\":1} ").unwrap()["a"], 1);
        assert_eq!(parse_model_json("```json\n{\"a\":1}\n```").unwrap()["a"], 1);
        assert!(matches!(
            parse_model_json("{\"a\":"),
            Err(AgentError::BadOutput(_))
        ));
    }
}
