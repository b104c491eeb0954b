//! Group commit: concurrent writers hand their items to one collector, which writes them
//! together, many per transaction, because write throughput is bound by commits
//! (DESIGN §10). Generic over what it batches ([`BatchWriter`]) and over what each caller
//! gets back ([`BatchWriter::Output`]); the order intake, the inbound messages and the
//! vendors' part actions use it.
//!
//! Each caller waits for the outcome of the transaction that carried its item, so it can
//! answer only after that commit. While a batch commits, the next items queue up and form
//! the next batch, so batches grow with load and a lone item is written at once (no timer).
//! If a batch fails (one bad item: an unknown foreign key, a racing unique key), its items
//! are retried one per transaction so one bad item never fails the others.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// What a [`GroupCommit`] writes: a batch of items in one transaction.
pub trait BatchWriter: Send + Sync + 'static {
    /// One caller's item.
    type Item: Send + 'static;

    /// What each caller gets back once the transaction that carried its item committed
    /// (`()` when the commit is all there is to say; a per-item outcome when the writer may
    /// refuse one item and write the others).
    type Output: Send + 'static;

    /// Writes `items` in one transaction and returns one output per item, in order; `Err`
    /// means nothing was written.
    fn write(
        &self,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Output>, sqlx::Error>> + Send;

    /// How many batches may commit at once (1 for a single-writer database).
    fn max_in_flight(&self) -> usize;

    /// Most items in one batch: a larger batch holds its locks, and its callers, longer.
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// A metrics label naming what is written.
    fn name(&self) -> &'static str;
}

/// Most items in one transaction (a writer may ask for fewer).
const MAX_BATCH: usize = 256;

type Reply<O> = oneshot::Sender<Result<O, sqlx::Error>>;

/// Handle of the collector task.
pub struct GroupCommit<W: BatchWriter> {
    tx: mpsc::Sender<(W::Item, Reply<W::Output>)>,
}

impl<W: BatchWriter> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<W: BatchWriter> std::fmt::Debug for GroupCommit<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<W: BatchWriter> GroupCommit<W> {
    /// Starts the collector, and the commits it starts, on the runtime of `on` (the
    /// process's work runtime, `base::work`).
    pub fn start_on(writer: W, on: &tokio::runtime::Handle) -> Self {
        let in_flight = writer.max_in_flight().max(1);
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        on.spawn(collect(
            Arc::new(writer),
            rx,
            Arc::new(Semaphore::new(in_flight)),
        ));
        Self { tx }
    }

    /// Writes `item` in the next batch and returns its output once that transaction
    /// committed.
    pub async fn write(&self, item: W::Item) -> Result<W::Output, sqlx::Error> {
        let (reply, outcome) = oneshot::channel();
        self.tx
            .send((item, reply))
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        outcome.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

async fn collect<W: BatchWriter>(
    writer: Arc<W>,
    mut rx: mpsc::Receiver<(W::Item, Reply<W::Output>)>,
    in_flight: Arc<Semaphore>,
) {
    while let Some(first) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Everything that arrived while we waited for a commit slot joins this batch.
        let mut batch = vec![first];
        let most = writer.max_batch().clamp(1, MAX_BATCH);
        while batch.len() < most {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let writer = writer.clone();
        tokio::spawn(async move {
            commit(&*writer, batch).await;
            drop(permit);
        });
    }
}

async fn commit<W: BatchWriter>(writer: &W, batch: Vec<(W::Item, Reply<W::Output>)>) {
    metrics::histogram!("khaacho_group_commit_batch_size", "writer" => writer.name())
        .record(batch.len() as f64);
    let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let started = std::time::Instant::now();
    let written = writer.write(&items).await;
    metrics::histogram!("khaacho_group_commit_seconds", "writer" => writer.name())
        .record(started.elapsed().as_secs_f64());
    match written {
        Ok(outputs) => {
            debug_assert_eq!(outputs.len(), replies.len(), "one output per item");
            for (r, out) in replies.into_iter().zip(outputs) {
                let _ = r.send(Ok(out));
            }
        }
        Err(e) if items.len() == 1 => {
            if let Some(r) = replies.into_iter().next() {
                let _ = r.send(Err(e));
            }
        }
        Err(_) => {
            metrics::counter!("khaacho_group_commit_batch_retries_total", "writer" => writer.name())
                .increment(1);
            for (item, reply) in items.into_iter().zip(replies) {
                let result = writer.write(std::slice::from_ref(&item)).await;
                let _ = reply.send(result.and_then(|mut out| {
                    out.pop()
                        .ok_or(sqlx::Error::Protocol("no output for the item".into()))
                }));
            }
        }
    }
}
