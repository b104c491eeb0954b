//! The offline adapter: the pure parser crate.

use std::sync::Arc;

use khaacho_parser::{Catalog, parse};

use crate::{AgentError, AgentFuture, OrderParserAgent};

/// Messages longer than this (bytes) are parsed on tokio's blocking pool.
///
/// A typical chat order is under 200 bytes and parses in about 25 µs, far less than the cost of
/// handing work to another thread (a wake-up and a context switch), so it runs inline. Parse time
/// grows with the text, and a pasted price list of tens of kilobytes would hold a runtime worker
/// for milliseconds; above 2 KB the work moves to `spawn_blocking`, so no async task waits
/// behind it.
pub const SPAWN_BLOCKING_ABOVE_BYTES: usize = 2 * 1024;

/// The local parser as an agent. Always answers (the parser never fails), which is why it ends
/// every chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalAgent;

impl LocalAgent {
    /// The config and metric name.
    pub const NAME: &'static str = "local";
}

impl OrderParserAgent for LocalAgent {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn parse<'a>(&'a self, catalog: &'a Arc<Catalog>, text: &'a str) -> AgentFuture<'a> {
        Box::pin(async move {
            if text.len() <= SPAWN_BLOCKING_ABOVE_BYTES {
                return Ok(parse(catalog, text));
            }
            let (catalog, text) = (Arc::clone(catalog), text.to_owned());
            tokio::task::spawn_blocking(move || parse(&catalog, &text))
                .await
                .map_err(|e| AgentError::Internal(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::catalog;

    #[tokio::test]
    async fn short_and_long_messages_give_the_parser_result() {
        let cat = Arc::new(catalog());
        let short = "chini 5 kg";
        let out = LocalAgent.parse(&cat, short).await.unwrap();
        assert_eq!(out, parse(&cat, short));
        assert_eq!(out.items[0].sku, "SUGAR");

        let long = format!("{}\nchini 5 kg", "namaste dai, ".repeat(300));
        assert!(long.len() > SPAWN_BLOCKING_ABOVE_BYTES);
        let out = LocalAgent.parse(&cat, &long).await.unwrap();
        assert_eq!(out, parse(&cat, &long));
        assert_eq!(out.items.len(), 1);
    }
}
