//! The fallback chain: remote providers in order, each behind its own resilience stack, then
//! the local parser.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use khaacho_parser::{Catalog, ParseOutcome};
use khaacho_resilience::{BreakerState, Resilient};

use crate::config::AgentsConfig;
use crate::{AnthropicAgent, LocalAgent, OpenAiAgent, OrderParserAgent};

/// Run-time feature flag for LLM parsing. Clones share the flag: hand one to the admin API and
/// flip it without a restart. Off means no request leaves the process.
#[derive(Debug, Clone)]
pub struct LlmSwitch(Arc<AtomicBool>);

impl LlmSwitch {
    /// A new flag.
    pub fn new(enabled: bool) -> LlmSwitch {
        LlmSwitch(Arc::new(AtomicBool::new(enabled)))
    }

    /// Turns LLM parsing on or off for every message parsed from now on.
    pub fn set(&self, enabled: bool) {
        // Relaxed is enough: the flag guards no other memory, and a message already being
        // parsed may finish either way.
        self.0.store(enabled, Ordering::Relaxed);
        tracing::info!(enabled, "LLM order parsing switched");
    }

    /// Whether LLM parsing is on.
    pub fn is_enabled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The chain's answer and who gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainAnswer {
    /// Order lines and flags.
    pub outcome: ParseOutcome,
    /// Name of the agent that answered (`"openai"`, `"anthropic"`, `"local"`): store it with the
    /// parse result so a reviewer knows where the lines came from.
    pub agent: &'static str,
}

struct Remote {
    agent: Arc<dyn OrderParserAgent>,
    resilient: Resilient,
}

/// Ordered parser agents ending with the local parser, which always answers.
pub struct AgentChain {
    remotes: Vec<Remote>,
    local: LocalAgent,
    switch: LlmSwitch,
}

impl std::fmt::Debug for AgentChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.remotes.iter().map(|r| r.agent.name()).collect();
        f.debug_struct("AgentChain")
            .field("remotes", &names)
            .field("llm_enabled", &self.switch.is_enabled())
            .finish()
    }
}

/// The names `chain` may contain.
const KNOWN: [&str; 3] = [OpenAiAgent::NAME, AnthropicAgent::NAME, LocalAgent::NAME];

impl AgentChain {
    /// Only the local parser.
    pub fn local_only() -> AgentChain {
        AgentChain::new(Vec::new(), LlmSwitch::new(false))
    }

    /// A chain of remote agents, each with its resilience stack, tried in order before the
    /// local parser. The stack's `name` should be the agent's name (it labels the metrics).
    pub fn new(
        remotes: Vec<(Arc<dyn OrderParserAgent>, Resilient)>,
        switch: LlmSwitch,
    ) -> AgentChain {
        AgentChain {
            remotes: remotes
                .into_iter()
                .map(|(agent, resilient)| Remote { agent, resilient })
                .collect(),
            local: LocalAgent,
            switch,
        }
    }

    /// Builds the chain the configuration describes. Errors name the problem: an unknown
    /// provider, a provider without its config table, a duplicate, or `local` before the end.
    pub fn from_config(config: &AgentsConfig) -> anyhow::Result<AgentChain> {
        let mut remotes: Vec<(Arc<dyn OrderParserAgent>, Resilient)> = Vec::new();
        let mut seen = HashSet::new();
        for (pos, name) in config.chain.iter().enumerate() {
            let name = name.trim();
            if !seen.insert(name) {
                bail!("agents.chain names {name:?} twice");
            }
            let (agent, timeout): (Arc<dyn OrderParserAgent>, _) = match name {
                LocalAgent::NAME if pos + 1 == config.chain.len() => break,
                LocalAgent::NAME => bail!(
                    "agents.chain: \"local\" must be last (it always answers, so {:?} would never run)",
                    &config.chain[pos + 1..]
                ),
                OpenAiAgent::NAME => {
                    let cfg = config.openai.clone().context(
                        "agents.chain names \"openai\" but there is no [agents.openai] table",
                    )?;
                    let timeout = cfg.timeout();
                    (Arc::new(OpenAiAgent::new(cfg)?), timeout)
                }
                AnthropicAgent::NAME => {
                    let cfg = config.anthropic.clone().context(
                        "agents.chain names \"anthropic\" but there is no [agents.anthropic] table",
                    )?;
                    let timeout = cfg.timeout();
                    (Arc::new(AnthropicAgent::new(cfg)?), timeout)
                }
                other => bail!("agents.chain: unknown agent {other:?} (known: {KNOWN:?})"),
            };
            let policy = config.resilience.policy(agent.name(), timeout);
            remotes.push((agent, Resilient::new(policy)));
        }
        Ok(AgentChain::new(remotes, LlmSwitch::new(config.llm_enabled)))
    }

    /// A handle on the run-time LLM flag.
    pub fn llm_switch(&self) -> LlmSwitch {
        self.switch.clone()
    }

    /// Breaker state of each remote provider, for the dashboard and `/ready` details.
    pub fn breakers(&self) -> Vec<(&'static str, BreakerState)> {
        self.remotes
            .iter()
            .map(|r| (r.agent.name(), r.resilient.state()))
            .collect()
    }

    /// Parses a message with the first agent that gives a valid answer. Never fails: the local
    /// parser is the last resort and always answers.
    pub async fn parse(&self, catalog: &Arc<Catalog>, text: &str) -> ChainAnswer {
        self.parse_within(catalog, text, true).await
    }

    /// [`parse`](Self::parse), asking the LLM providers only when `llm_allowed` (the caller's
    /// own reason to spare them, e.g. a degraded platform) and the switch is on.
    pub async fn parse_within(
        &self,
        catalog: &Arc<Catalog>,
        text: &str,
        llm_allowed: bool,
    ) -> ChainAnswer {
        if llm_allowed && self.switch.is_enabled() {
            for remote in &self.remotes {
                let name = remote.agent.name();
                match remote
                    .resilient
                    .call(|| remote.agent.parse(catalog, text))
                    .await
                {
                    Ok(outcome) => return answered(outcome, name),
                    Err(e) => {
                        tracing::warn!(agent = name, reason = e.kind(), error = %e, "parser agent failed, falling back");
                        remote.resilient.record_fallback();
                    }
                }
            }
        }
        let outcome = match self.local.parse(catalog, text).await {
            Ok(outcome) => outcome,
            // Only a failed blocking task gets here (e.g. during runtime shutdown): parse inline.
            Err(e) => {
                tracing::warn!(error = %e, "local parser task failed, parsing inline");
                khaacho_parser::parse(catalog, text)
            }
        };
        answered(outcome, LocalAgent::NAME)
    }
}

fn answered(outcome: ParseOutcome, agent: &'static str) -> ChainAnswer {
    metrics::counter!("khaacho_parser_agent_answers_total", "agent" => agent).increment(1);
    ChainAnswer { outcome, agent }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: serde_json::Value) -> AgentsConfig {
        serde_json::from_value(v).unwrap()
    }

    fn err(v: serde_json::Value) -> String {
        AgentChain::from_config(&config(v)).unwrap_err().to_string()
    }

    #[test]
    fn config_errors_are_clear() {
        assert!(err(serde_json::json!({"chain": ["openai"]})).contains("no [agents.openai] table"));
        assert!(err(serde_json::json!({"chain": ["gemini"]})).contains("unknown agent \"gemini\""));
        assert!(
            err(serde_json::json!({"chain": ["local", "openai"],
                "openai": {"model": "m"}}))
            .contains("must be last")
        );
        assert!(
            err(serde_json::json!({"chain": ["openai", "openai"],
                "openai": {"model": "m"}}))
            .contains("twice")
        );
        assert!(
            err(serde_json::json!({"chain": ["openai"],
                "openai": {"model": "m", "base_url": "not a url"}}))
            .contains("base_url")
        );
    }

    #[test]
    fn config_builds_the_named_chain() {
        let chain = AgentChain::from_config(&config(serde_json::json!({
            "llm_enabled": true,
            "chain": ["anthropic", "openai", "local"],
            "openai": {"model": "m", "base_url": "http://127.0.0.1:9/v1"},
            "anthropic": {"model": "m", "api_key": "k", "base_url": "http://127.0.0.1:9"}
        })))
        .unwrap();
        assert_eq!(
            chain.breakers(),
            [
                ("anthropic", BreakerState::Closed),
                ("openai", BreakerState::Closed)
            ]
        );
        assert!(chain.llm_switch().is_enabled());
        assert!(
            AgentChain::from_config(&AgentsConfig::default())
                .unwrap()
                .breakers()
                .is_empty()
        );
    }
}
