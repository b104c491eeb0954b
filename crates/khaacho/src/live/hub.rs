//! The per-process hub: one task tails the feed (`feed::read` past its cursor) and hands each
//! event to the sockets whose tenant scope may see it, through a bounded queue per socket.
//!
//! It is woken by every feed commit of this process ([`Hub::committed`]), on PostgreSQL by
//! `NOTIFY khaacho_live` from the other processes (a `khaacho worker` consuming the changes
//! while this is a `khaacho api`), and at least every `live.poll_ms` whatever happens to
//! those hints. Each socket has a bounded queue (`live.buffer` events). A burst larger than
//! the queue is fine for a socket that keeps draining it: when a queue is full the hub waits
//! for it at most `live.slow_grace_ms` (for all full queues at once, not one after another),
//! and a socket still full after that is dropped and closes with 1013; the client resumes
//! with `after`. So a stalled client costs the others at most one grace period, once, and
//! the server's memory per socket stays bounded.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, OnceCell, mpsc};

use super::feed::{self, FeedEvent};
use crate::base::db::{Announcer, Backend, Db};
use crate::base::scope::Scope;
use crate::config::LiveSettings;

/// Events read from the feed per query.
const PAGE: i64 = 500;

/// Cheap-to-clone handle on this process's hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    settings: LiveSettings,
    wake: Notify,
    state: Mutex<State>,
    started: OnceCell<()>,
    announcer: OnceLock<Option<Announcer>>,
    sockets: AtomicUsize,
}

struct State {
    /// Every event up to this number has been handed out.
    cursor: i64,
    subs: Vec<Sub>,
}

struct Sub {
    scope: Scope,
    tx: mpsc::Sender<Arc<FeedEvent>>,
    slow: Arc<AtomicBool>,
}

/// A socket's place in the hub: it receives every event numbered after `from_seq` that its
/// scope may see, until it is dropped (or drops this: the hub forgets a closed queue at its
/// next delivery).
pub struct Subscription {
    /// The hub's cursor when this subscribed: events up to it come from a replay.
    pub from_seq: i64,
    /// The events.
    pub rx: mpsc::Receiver<Arc<FeedEvent>>,
    slow: Arc<AtomicBool>,
}

impl Subscription {
    /// Whether the hub dropped this subscriber for falling behind.
    pub fn dropped_slow(&self) -> bool {
        self.slow.load(Ordering::Relaxed)
    }
}

/// Counts an open socket while it lives (see [`Hub::sockets`]).
pub struct SocketGuard(Hub);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.inner.sockets.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("khaacho_ws_connections").decrement(1.0);
    }
}

/// Whether a caller with `scope` may see `event` (the same rule as the scoped finders).
pub fn visible(scope: Scope, event: &FeedEvent) -> bool {
    match scope {
        Scope::All => true,
        Scope::Retailer(r) => event.retailer_id == r,
        Scope::Vendor(v) => event.vendors.contains(&v),
    }
}

impl Hub {
    /// A hub over `db` (its task starts with the first subscriber).
    pub fn new(db: Db, settings: LiveSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                settings,
                wake: Notify::new(),
                state: Mutex::new(State {
                    cursor: 0,
                    subs: Vec::new(),
                }),
                started: OnceCell::new(),
                announcer: OnceLock::new(),
                sockets: AtomicUsize::new(0),
            }),
        }
    }

    /// Tells this process's hub, and on PostgreSQL the other processes', that the feed grew.
    /// Call after the commit.
    pub fn committed(&self) {
        self.inner.wake.notify_one();
        if let Some(a) = self
            .inner
            .announcer
            .get_or_init(|| self.inner.db.announcer(feed::CHANNEL))
        {
            a.announce();
        }
    }

    /// Subscribed sockets the hub still delivers to (a dropped or closed one is gone by the
    /// next delivery).
    pub async fn subscribers(&self) -> usize {
        let mut state = self.inner.state.lock().await;
        state.subs.retain(|s| !s.tx.is_closed());
        state.subs.len()
    }

    /// Open sockets of this process (subscribed or not).
    pub fn sockets(&self) -> usize {
        self.inner.sockets.load(Ordering::Relaxed)
    }

    /// Counts one open socket until the guard is dropped.
    pub fn open_socket(&self) -> SocketGuard {
        self.inner.sockets.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("khaacho_ws_connections").increment(1.0);
        SocketGuard(self.clone())
    }

    /// Registers a socket of `scope`; starts the hub on first use.
    pub async fn subscribe(&self, scope: Scope) -> Result<Subscription, sqlx::Error> {
        self.inner
            .started
            .get_or_try_init(|| async {
                let cursor = feed::last_seq(&self.inner.db).await?;
                self.inner.state.lock().await.cursor = cursor;
                tokio::spawn(run(self.inner.clone()));
                if let Backend::Pg(pool) = self.inner.db.backend() {
                    tokio::spawn(listen(Arc::downgrade(&self.inner), pool.clone()));
                }
                Ok::<(), sqlx::Error>(())
            })
            .await?;
        let (tx, rx) = mpsc::channel(self.inner.settings.buffer);
        let slow = Arc::new(AtomicBool::new(false));
        let mut state = self.inner.state.lock().await;
        state.subs.push(Sub {
            scope,
            tx,
            slow: slow.clone(),
        });
        Ok(Subscription {
            from_seq: state.cursor,
            rx,
            slow,
        })
    }
}

/// The hub's loop: wait for a hint or the poll interval, then hand out everything new.
async fn run(inner: Arc<Inner>) {
    let poll = Duration::from_millis(inner.settings.poll_ms);
    loop {
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
        loop {
            let cursor = inner.state.lock().await.cursor;
            match feed::read(&inner.db, cursor, None, PAGE).await {
                Ok(events) => {
                    let full = events.len() as i64 == PAGE;
                    if events.is_empty() {
                        break;
                    }
                    deliver(&inner, events).await;
                    if !full {
                        break;
                    }
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "live hub: reading the feed failed; retrying");
                    break;
                }
            }
        }
    }
}

/// Hands `events` to every subscriber that may see them. Full queues get one grace period,
/// all together; a queue still full then is dropped. The state stays locked throughout, so a
/// socket subscribing meanwhile starts after these events (its replay covers them).
async fn deliver(inner: &Inner, events: Vec<FeedEvent>) {
    let Some(last) = events.last().map(|e| e.seq) else {
        return;
    };
    let events: Vec<Arc<FeedEvent>> = events.into_iter().map(Arc::new).collect();
    let mut state = inner.state.lock().await;
    state.subs.retain(|s| !s.tx.is_closed());
    let mut waiting = Vec::new();
    for (i, sub) in state.subs.iter().enumerate() {
        let mut mine = events.iter().filter(|e| visible(sub.scope, e));
        for event in mine.by_ref() {
            match sub.tx.try_send(event.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    let rest: Vec<Arc<FeedEvent>> = std::iter::once(event)
                        .chain(mine.by_ref().cloned())
                        .collect();
                    waiting.push((i, sub.tx.clone(), rest));
                    break;
                }
                // Closed: forgotten at the next delivery.
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    }
    if !waiting.is_empty() {
        let grace = Duration::from_millis(inner.settings.slow_grace_ms);
        let outcomes =
            futures::future::join_all(waiting.into_iter().map(|(i, tx, rest)| async move {
                let sent = tokio::time::timeout(grace, async {
                    for event in rest {
                        if tx.send(event).await.is_err() {
                            break;
                        }
                    }
                })
                .await;
                (i, sent.is_ok())
            }))
            .await;
        let slow: Vec<usize> = outcomes
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(i, _)| i)
            .collect();
        for &i in &slow {
            state.subs[i].slow.store(true, Ordering::Relaxed);
            metrics::counter!("khaacho_ws_dropped_slow_total").increment(1);
        }
        let mut index = 0;
        state.subs.retain(|_| {
            let keep = !slow.contains(&index);
            index += 1;
            keep
        });
    }
    state.cursor = last;
}

/// PostgreSQL: wakes the hub on `NOTIFY khaacho_live` from any process.
async fn listen(inner: std::sync::Weak<Inner>, pool: sqlx::PgPool) {
    loop {
        let Some(poll) = inner.upgrade().map(|i| i.settings.poll_ms) else {
            return;
        };
        if pool.is_closed() {
            return;
        }
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "live hub: LISTEN failed; polling meanwhile");
                tokio::time::sleep(Duration::from_millis(poll)).await;
                continue;
            }
        };
        if listener.listen(feed::CHANNEL).await.is_err() {
            tokio::time::sleep(Duration::from_millis(poll)).await;
            continue;
        }
        loop {
            match listener.recv().await {
                Ok(_) => match inner.upgrade() {
                    Some(i) => i.wake.notify_one(),
                    None => return,
                },
                Err(e) => {
                    tracing::debug!(error = %e, "live hub: LISTEN connection lost");
                    break;
                }
            }
        }
    }
}
