//! The work runtime: the threads that run what holds a database transaction open — the
//! queue consumers, the recurring schedules and the group commits — apart from the threads
//! that serve HTTP.
//!
//! Why apart: a transaction is a conversation of several statements, and between two of
//! them the task that holds it must be polled again. On the runtime that also serves HTTP,
//! that task waits in the run queues behind every request in flight, so under load a write
//! transaction spends more of its life waiting to be polled than running: SQLite's single
//! writer connection, and PostgreSQL's row locks, are held idle meanwhile, and every other
//! writer waits for them. On threads of their own, with few tasks, the holders are polled as
//! soon as their statement answers, and the operating system's scheduler, which favours a
//! thread that wakes from sleep over one that has been running, lets them in between the
//! requests (bench/README, "The work runtime").

use tokio::runtime::{Builder, Handle, Runtime};

/// The work runtime's threads when the settings name none (`work_threads`). SQLite: one
/// per CPU — every write there goes through one connection, so how soon its holder is polled
/// again bounds every writer (capacity 1,208–1,388 → 1,597–1,719 orders/s measured; with one
/// thread the whole life was slower, that thread full). PostgreSQL: none, the work shares the HTTP
/// runtime — a connection's socket is driven by the runtime that opened it, the pool hands
/// connections to both, and the whole life measured slower apart (bench/README, "The work
/// runtime").
pub fn default_threads(postgres: bool) -> usize {
    if postgres {
        0
    } else {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    }
}

/// The work runtime of one process, or the current runtime when it has no threads of its
/// own. Dropping it stops its threads without waiting (its tasks are dropped, so stop what
/// runs there first).
pub struct WorkRuntime {
    own: Option<Runtime>,
    handle: Handle,
}

impl WorkRuntime {
    /// A runtime of `threads` threads named `khaacho-work`; with 0, the current runtime
    /// (call it inside one).
    pub fn start(threads: usize) -> std::io::Result<Self> {
        if threads == 0 {
            return Ok(Self {
                own: None,
                handle: Handle::current(),
            });
        }
        let rt = Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("khaacho-work")
            .enable_all()
            .build()?;
        Ok(Self {
            handle: rt.handle().clone(),
            own: Some(rt),
        })
    }

    /// Where to spawn the work.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for WorkRuntime {
    fn drop(&mut self) {
        // Not `drop(rt)`: that blocks, which a runtime refuses inside another's task.
        if let Some(rt) = self.own.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for WorkRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkRuntime")
            .field("own_threads", &self.own.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn thread_name(on: &Handle) -> Option<String> {
        on.spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .expect("the task ran")
    }

    #[tokio::test]
    async fn work_runs_on_its_own_threads_and_stops_inside_a_runtime() {
        let work = WorkRuntime::start(2).expect("a runtime");
        assert_eq!(
            thread_name(work.handle()).await.as_deref(),
            Some("khaacho-work")
        );
        // Dropped inside another runtime's task, as `server::run` drops it: a plain drop of
        // a runtime would panic here.
        drop(work);

        let shared = WorkRuntime::start(0).expect("the current runtime");
        assert_ne!(
            thread_name(shared.handle()).await.as_deref(),
            Some("khaacho-work")
        );
    }
}
