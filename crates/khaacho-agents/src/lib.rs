//! The order parser agent port (DESIGN §5) and its adapters.
//!
//! [`OrderParserAgent`] turns a retailer's chat message into order lines against the catalogue.
//! Three adapters implement it:
//! - [`LocalAgent`]: the pure `khaacho-parser` crate. Offline, ~25 µs a message, always answers.
//! - [`OpenAiAgent`]: any OpenAI-compatible `/chat/completions` server, with JSON-schema
//!   structured output (OpenAI itself, or local model servers that speak the same API).
//! - [`AnthropicAgent`]: the Anthropic Messages API, forcing one tool call whose input schema is
//!   the output schema.
//!
//! LLM output is never trusted: [`output::validate_output`] checks its shape, maps every SKU to
//! the catalogue (an unknown one becomes an `unknown_item` flag, never a line), and checks units
//! and quantities. Anything malformed is [`AgentError::BadOutput`], and the chain falls back.
//!
//! [`AgentChain`] tries the configured remote providers in order, each behind its own
//! [`khaacho_resilience::Resilient`] stack, and ends with the local parser, so parsing always
//! produces an answer. A run-time switch ([`LlmSwitch`]) turns LLM parsing off entirely.
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

mod anthropic;
mod chain;
mod config;
mod http;
mod local;
mod openai;
pub mod output;
mod prompt;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use khaacho_parser::{Catalog, ParseOutcome};
use khaacho_resilience::Classify;

pub use anthropic::{AnthropicAgent, AnthropicConfig};
pub use chain::{AgentChain, ChainAnswer, LlmSwitch};
pub use config::{AgentsConfig, ApiKey, ResilienceSettings};
pub use local::{LocalAgent, SPAWN_BLOCKING_ABOVE_BYTES};
pub use openai::{OpenAiAgent, OpenAiConfig};

/// Registers help text for the metrics of this crate and of the resilience stack it uses.
/// Call once after installing the global recorder.
pub fn describe_metrics() {
    khaacho_resilience::describe_metrics();
    metrics::describe_counter!(
        "khaacho_parser_agent_answers_total",
        "Parsed messages by the agent whose answer was used (openai, anthropic, local)"
    );
}

/// The boxed future every agent returns. Boxed (rather than `async fn` in the trait) so the
/// trait stays dyn-compatible and the chain can hold `Arc<dyn OrderParserAgent>`.
pub type AgentFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ParseOutcome, AgentError>> + Send + 'a>>;

/// Port: message text + catalogue → order lines and flags.
///
/// The catalogue comes as `&Arc<Catalog>` rather than `&Catalog` so an agent can move the
/// CPU-bound work of a long message onto a blocking thread (which needs `'static` data) without
/// copying the catalogue.
pub trait OrderParserAgent: Send + Sync {
    /// Short stable name: the `agent` metric label and the chain's config name.
    fn name(&self) -> &'static str;

    /// Parses one message. Must not block the async runtime for long.
    fn parse<'a>(&'a self, catalog: &'a Arc<Catalog>, text: &'a str) -> AgentFuture<'a>;
}

/// Why an agent produced no outcome.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentError {
    /// The provider answered with an HTTP error status.
    #[error("provider answered HTTP {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Start of the response body, for the log.
        body: String,
    },
    /// The provider could not be reached or the connection failed mid-way (connect error,
    /// reset, client-side timeout).
    #[error("provider unreachable: {0}")]
    Transport(String),
    /// The provider answered, but not with a valid result (malformed JSON, wrong shape, a
    /// quantity or unit that cannot be right).
    #[error("provider output rejected: {0}")]
    BadOutput(String),
    /// The local parser task failed (it panicked on a blocking thread).
    #[error("local parser failed: {0}")]
    Internal(String),
}

impl Classify for AgentError {
    /// 429 and 5xx are transient overload or outage, and a dropped connection may work the next
    /// time; parsing has no side effects, so repeating it is safe. Bad output is not retried:
    /// the same prompt tends to produce the same mistake, and the local parser is waiting.
    fn is_retryable(&self) -> bool {
        match self {
            AgentError::Status { status, .. } => *status == 429 || *status >= 500,
            AgentError::Transport(_) => true,
            AgentError::BadOutput(_) | AgentError::Internal(_) => false,
        }
    }

    /// A 4xx other than 429 (bad key, bad request, unknown model) is a configuration problem,
    /// not an outage: it is logged loudly by the chain but does not open the breaker.
    fn counts_as_failure(&self) -> bool {
        match self {
            AgentError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => true,
        }
    }
}
