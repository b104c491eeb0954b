//! Configuration the application embeds (e.g. as the `[agents]` table of its TOML file).

use std::fmt;
use std::time::Duration;

use khaacho_resilience::{BreakerConfig, Policy, RetryConfig};
use serde::Deserialize;

use crate::anthropic::AnthropicConfig;
use crate::openai::OpenAiConfig;

/// A provider API key. Its `Debug` output is redacted so a logged config or error never leaks
/// it; [`ApiKey::expose`] is the one way to read it, used only to build request headers.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no key is configured (local model servers often need none).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("ApiKey(<empty>)")
        } else {
            f.write_str("ApiKey(<redacted>)")
        }
    }
}

/// Which agents run and how they are protected. Every field has a default: an absent table
/// means "local parser only".
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AgentsConfig {
    /// Start-up value of the run-time LLM switch ([`crate::LlmSwitch`]); off by default so a
    /// fresh install never sends order text to a third party without a decision.
    pub llm_enabled: bool,
    /// Provider names in the order they are tried: `"openai"`, `"anthropic"`, `"local"`.
    /// The local parser always ends the chain, named or not; naming it anywhere but last is an
    /// error because the providers after it could never run.
    pub chain: Vec<String>,
    /// Needed when `chain` names `"openai"`.
    pub openai: Option<OpenAiConfig>,
    /// Needed when `chain` names `"anthropic"`.
    pub anthropic: Option<AnthropicConfig>,
    /// Breaker, bulkhead and retry settings applied to each remote provider.
    #[serde(alias = "breaker")]
    pub resilience: ResilienceSettings,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            llm_enabled: false,
            chain: vec!["local".to_owned()],
            openai: None,
            anthropic: None,
            resilience: ResilienceSettings::default(),
        }
    }
}

/// Resilience settings for each remote provider, in config-friendly integer milliseconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ResilienceSettings {
    /// Calls in flight per provider; more fall through to the next provider at once.
    pub max_concurrent: usize,
    /// Attempts per message, the first included (parsing is idempotent, so retry is safe).
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry.
    pub retry_base_ms: u64,
    /// Largest backoff. Small: the local parser is a fine answer, waiting long is not.
    pub retry_cap_ms: u64,
    /// Breaker rolling window.
    pub window_ms: u64,
    /// Calls in the window before the failure rate counts.
    pub min_calls: u32,
    /// Failure share that opens the breaker.
    pub failure_rate: f64,
    /// Failures in a row that open the breaker.
    pub consecutive_failures: u32,
    /// How long an open breaker waits before a trial call.
    pub open_for_ms: u64,
    /// Successful trial calls that close it again.
    pub close_after_successes: u32,
}

impl Default for ResilienceSettings {
    fn default() -> Self {
        let b = BreakerConfig::default();
        ResilienceSettings {
            max_concurrent: 8,
            max_attempts: 2,
            retry_base_ms: 100,
            retry_cap_ms: 1_000,
            window_ms: b.window.as_millis() as u64,
            min_calls: b.min_calls,
            failure_rate: b.failure_rate,
            consecutive_failures: b.consecutive_failures,
            open_for_ms: b.open_for.as_millis() as u64,
            close_after_successes: b.close_after_successes,
        }
    }
}

impl ResilienceSettings {
    /// The policy for one provider.
    pub fn policy(&self, name: &'static str, timeout: Duration) -> Policy {
        Policy {
            name,
            timeout,
            breaker: BreakerConfig {
                window: Duration::from_millis(self.window_ms),
                min_calls: self.min_calls,
                failure_rate: self.failure_rate,
                consecutive_failures: self.consecutive_failures,
                open_for: Duration::from_millis(self.open_for_ms),
                close_after_successes: self.close_after_successes,
            },
            max_concurrent: self.max_concurrent,
            retry: Some(RetryConfig {
                max_attempts: self.max_attempts,
                base: Duration::from_millis(self.retry_base_ms),
                cap: Duration::from_millis(self.retry_cap_ms),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_local_only_and_keys_are_redacted() {
        let cfg: AgentsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, AgentsConfig::default());
        assert!(!cfg.llm_enabled);

        let cfg: AgentsConfig = serde_json::from_value(serde_json::json!({
            "llm_enabled": true,
            "chain": ["openai", "anthropic"],
            "openai": {"model": "gpt-4o-mini", "api_key": "sk-secret-1"},
            "anthropic": {"model": "claude-haiku", "api_key": "sk-ant-secret-2"},
            "breaker": {"open_for_ms": 5000}
        }))
        .unwrap();
        let shown = format!("{cfg:?} {cfg:#?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(cfg.resilience.open_for_ms, 5000);
        assert_eq!(cfg.resilience.min_calls, 10);
        let openai = cfg.openai.unwrap();
        assert_eq!(openai.api_key.expose(), "sk-secret-1");
        assert_eq!(openai.timeout_ms, 10_000);
    }
}
