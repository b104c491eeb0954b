//! Group commit for the intake: concurrent order requests are written together, many orders
//! per transaction, because intake throughput is bound by commits (DESIGN §10).
//!
//! Each request hands its prepared order to one collector task and waits for the outcome of
//! the transaction that carried it; the 202 is sent only after that commit. While a batch
//! commits, the next requests queue up and form the next batch, so batches grow with load and
//! a lone request is written at once (no timer). If a batch fails (an unknown retailer, a
//! racing Idempotency-Key), its orders are retried one per transaction so one bad order
//! never fails the others.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::intake::Prepared;
use crate::base::db::Db;

/// Most orders in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<(), sqlx::Error>>;

/// Handle of the collector task.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    tx: mpsc::Sender<(Prepared, Reply)>,
}

impl GroupCommit {
    /// Starts the collector on the current runtime.
    pub fn start(db: Db) -> Self {
        // One writer on SQLite; a few overlapping commits on PostgreSQL.
        let in_flight = if db.is_postgres() { 4 } else { 1 };
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        tokio::spawn(collect(db, rx, Arc::new(Semaphore::new(in_flight))));
        Self { tx }
    }

    /// Writes `order` in the next batch and returns once that transaction committed.
    pub async fn write(&self, order: Prepared) -> Result<(), sqlx::Error> {
        let (reply, outcome) = oneshot::channel();
        self.tx
            .send((order, reply))
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        outcome.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

async fn collect(db: Db, mut rx: mpsc::Receiver<(Prepared, Reply)>, in_flight: Arc<Semaphore>) {
    while let Some(first) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Everything that arrived while we waited for a commit slot joins this batch.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let db = db.clone();
        tokio::spawn(async move {
            commit(&db, batch).await;
            drop(permit);
        });
    }
}

async fn commit(db: &Db, batch: Vec<(Prepared, Reply)>) {
    metrics::histogram!("khaacho_intake_batch_size").record(batch.len() as f64);
    let (orders, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    match super::intake::write_batch(db, &orders).await {
        Ok(()) => {
            for r in replies {
                let _ = r.send(Ok(()));
            }
        }
        Err(e) if orders.len() == 1 => {
            if let Some(r) = replies.into_iter().next() {
                let _ = r.send(Err(e));
            }
        }
        Err(_) => {
            metrics::counter!("khaacho_intake_batch_retries_total").increment(1);
            for (order, reply) in orders.into_iter().zip(replies) {
                let result = super::intake::write_batch(db, std::slice::from_ref(&order)).await;
                let _ = reply.send(result);
            }
        }
    }
}
