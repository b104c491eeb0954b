//! The inbound webhook's writes: every concurrent webhook's message joins one group-commit
//! transaction ([`GroupCommit`]) that stores the raw rows and enqueues their handling, so a
//! burst of messages costs a few commits, not one each (DESIGN §10, §13).

use std::collections::HashSet;

use uuid::Uuid;

use super::repo::{self, NewInbound};
use super::service::conversation::HandleInbound;
use crate::base::db::Db;
use crate::base::group_commit::BatchWriter;
use crate::queue::{EnqueueOptions, enqueue_batch};

/// One webhook's message and the `traceparent` of the request that carried it.
#[derive(Debug)]
pub struct Received {
    /// The row to store.
    pub message: NewInbound,
    /// The request's span, continued by the handling job (while traces are exported).
    pub trace_parent: Option<String>,
}

/// Stores inbound messages for the [`GroupCommit`](crate::base::group_commit::GroupCommit)
/// and enqueues one `channels.inbound` job for each message stored now (a `MessageSid`
/// stored before — Twilio retrying — is skipped), in one transaction.
#[derive(Debug)]
pub struct InboundWriter {
    db: Db,
}

impl InboundWriter {
    /// A writer over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

impl BatchWriter for InboundWriter {
    type Item = Received;
    type Output = ();

    async fn write(&self, items: &[Received]) -> Result<Vec<()>, sqlx::Error> {
        let rows: Vec<&NewInbound> = items.iter().map(|r| &r.message).collect();
        let mut tx = self.db.begin().await?;
        let stored: HashSet<Uuid> = repo::insert_inbound(&mut tx, &rows)
            .await?
            .into_iter()
            .collect();
        let new: Vec<&Received> = items
            .iter()
            .filter(|r| stored.contains(&r.message.id))
            .collect();
        let jobs: Vec<HandleInbound> = new
            .iter()
            .map(|r| HandleInbound { id: r.message.id })
            .collect();
        let batch: Vec<(&HandleInbound, EnqueueOptions)> = jobs
            .iter()
            .zip(&new)
            .map(|(job, r)| {
                let opts = EnqueueOptions {
                    trace_parent: r.trace_parent.clone(),
                    ..EnqueueOptions::default()
                };
                (job, opts)
            })
            .collect();
        enqueue_batch(&mut tx, &batch).await?;
        tx.commit().await?;
        for r in new {
            metrics::counter!("khaacho_messages_received_total", "channel" => r.message.channel)
                .increment(1);
        }
        Ok(vec![(); items.len()])
    }

    fn max_in_flight(&self) -> usize {
        if self.db.is_postgres() { 2 } else { 1 }
    }

    fn name(&self) -> &'static str {
        "inbound_messages"
    }
}
