//! Whether the worker process holding a job is still alive, so the reaper can take back a
//! crashed worker's jobs at once instead of waiting out their lease.
//!
//! Every worker process holds a token that the operating system or the database releases
//! the moment the process dies, however it dies (`kill -9` included):
//!
//! - **PostgreSQL**: a session-level advisory lock keyed by the worker id, taken on a
//!   connection of its own that the worker keeps open. When the process dies its socket
//!   closes, the server ends the session and the lock is free; the reaper, in any other
//!   worker process, tests it with `pg_try_advisory_xact_lock` (released at once).
//! - **SQLite**: an exclusive `flock` on `<database>.workers/<worker id>.lock`. SQLite runs on
//!   one machine, so every worker can see every other's lock file.
//!
//! A worker counts as gone only when its token is free **and** its jobs' heartbeats have
//! stopped (see `runtime::reap_expired`): a live worker whose liveness connection dropped
//! for a moment keeps heart-beating through the pool, so its jobs are never taken from it
//! while it runs them. A job held by a worker without a token (an older version, the
//! `drain` helper) is recovered by its lease as before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::base::db::{Backend, Db};

/// First key of the two-key advisory locks (`'khac'`), so Khaacho's locks cannot meet another
/// application's on the same database; the second key is `hashtext(worker id)`.
pub(crate) const LOCK_CLASS: i32 = 0x6b68_6163;

/// How often the held PostgreSQL session is checked (and re-established when lost).
const SESSION_CHECK: Duration = Duration::from_secs(2);

/// This process's liveness token; released when dropped or when the process dies.
pub(crate) enum Token {
    /// The task holding the PostgreSQL session; cancelled on drop.
    Pg(CancellationToken),
    /// The locked file (the lock lives as long as this open file), removed on a clean drop.
    File(#[allow(dead_code)] std::fs::File, PathBuf),
    /// Nothing to hold (in-memory SQLite): leases only.
    None,
}

impl Drop for Token {
    fn drop(&mut self) {
        match self {
            Token::Pg(stop) => stop.cancel(),
            Token::File(_, path) => {
                let _ = std::fs::remove_file(path);
            }
            Token::None => {}
        }
    }
}

/// Takes this worker's token. Returns once it is held (or, if it cannot be, with a warning
/// and [`Token::None`]: the worker then relies on leases alone, as before).
pub(crate) async fn register(db: &Db, worker_id: &str) -> Token {
    match db.backend() {
        Backend::Pg(pool) => {
            let stop = CancellationToken::new();
            let (held_tx, held_rx) = tokio::sync::oneshot::channel();
            tokio::spawn(hold_session(
                pool.clone(),
                worker_id.to_string(),
                stop.clone(),
                held_tx,
            ));
            // Claiming before the lock is held would still be safe (fresh heartbeats protect
            // the jobs), but waiting keeps the rule simple; give up after a while.
            match tokio::time::timeout(Duration::from_secs(10), held_rx).await {
                Ok(Ok(())) => {}
                _ => warn!(
                    "could not take the worker's liveness lock yet; leases apply until it is held"
                ),
            }
            Token::Pg(stop)
        }
        Backend::Sqlite { write, .. } => match lock_dir(write.connect_options().get_filename()) {
            Some(dir) => match lock_file(&dir, worker_id) {
                Ok((file, path)) => {
                    // The files of gone workers that still hold jobs are the reaper's evidence.
                    let holding: Vec<String> = sqlx::query_scalar(
                        "SELECT DISTINCT locked_by FROM jobs WHERE status = 'running' AND locked_by IS NOT NULL",
                    )
                    .fetch_all(write)
                    .await
                    .unwrap_or_default();
                    sweep(&dir, &holding);
                    Token::File(file, path)
                }
                Err(e) => {
                    warn!(error = %e, dir = %dir.display(), "cannot create the worker's lock file; leases only");
                    Token::None
                }
            },
            None => Token::None,
        },
    }
}

/// Of `workers`, those whose process is gone (their token is free).
pub(crate) async fn gone(db: &Db, workers: Vec<String>) -> Result<Vec<String>, sqlx::Error> {
    if workers.is_empty() {
        return Ok(workers);
    }
    match db.backend() {
        Backend::Pg(pool) => {
            // One statement is one transaction: each transaction-level lock taken here is
            // released when it ends, so testing never blocks the worker's own session.
            sqlx::query_scalar(
                "SELECT w FROM unnest($1::text[]) AS w WHERE pg_try_advisory_xact_lock($2, hashtext(w))",
            )
            .bind(&workers)
            .bind(LOCK_CLASS)
            .fetch_all(pool)
            .await
        }
        Backend::Sqlite { write, .. } => {
            let Some(dir) = lock_dir(write.connect_options().get_filename()) else {
                return Ok(Vec::new());
            };
            Ok(workers
                .into_iter()
                .filter(|w| file_lock_is_free(&dir.join(file_name(w))))
                .collect())
        }
    }
}

/// Forgets a gone worker (removes its lock file; nothing to do on PostgreSQL).
pub(crate) fn forget(db: &Db, worker_id: &str) {
    if let Backend::Sqlite { write, .. } = db.backend()
        && let Some(dir) = lock_dir(write.connect_options().get_filename())
    {
        let _ = std::fs::remove_file(dir.join(file_name(worker_id)));
    }
}

/// Keeps a dedicated session holding the worker's advisory lock until `stop`, re-taking it
/// if the connection is lost.
async fn hold_session(
    pool: sqlx::PgPool,
    worker_id: String,
    stop: CancellationToken,
    held: tokio::sync::oneshot::Sender<()>,
) {
    let mut held = Some(held);
    while !stop.is_cancelled() {
        let conn = match pool.acquire().await {
            // Detached, so the pool neither reuses nor counts this long-lived session.
            Ok(c) => Some(c.detach()),
            Err(e) => {
                warn!(error = %e, "liveness session: cannot connect; retrying");
                None
            }
        };
        if let Some(mut conn) = conn {
            let locked = sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
                .bind(LOCK_CLASS)
                .bind(&worker_id)
                .execute(&mut conn)
                .await;
            match locked {
                Ok(_) => {
                    if let Some(tx) = held.take() {
                        let _ = tx.send(());
                    } else {
                        info!("liveness session re-established");
                    }
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(SESSION_CHECK) => {}
                            _ = stop.cancelled() => {
                                let _ = conn.close().await;
                                return;
                            }
                        }
                        if let Err(e) = conn.ping().await {
                            warn!(error = %e, "liveness session lost; re-taking it");
                            break;
                        }
                    }
                }
                Err(e) => warn!(error = %e, "liveness session: cannot take the lock; retrying"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// `<database>.workers` next to a file database; `None` for an in-memory one.
fn lock_dir(db_file: &Path) -> Option<PathBuf> {
    let name = db_file.file_name()?.to_str()?;
    if name.is_empty() || name.starts_with(':') {
        return None;
    }
    Some(db_file.with_file_name(format!("{name}.workers")))
}

/// A file name for a worker id (ids are `host-uuid`; anything unusual in the host is replaced).
fn file_name(worker_id: &str) -> String {
    let safe: String = worker_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.lock")
}

fn lock_file(dir: &Path, worker_id: &str) -> std::io::Result<(std::fs::File, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file_name(worker_id));
    let file = std::fs::File::create(&path)?;
    file.try_lock()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok((file, path))
}

/// Whether nobody holds the lock on `path`. A missing file means "unknown", not "gone": the
/// job is then left to its lease.
fn file_lock_is_free(path: &Path) -> bool {
    match std::fs::File::open(path) {
        // Dropping the file releases the lock just taken.
        Ok(f) => f.try_lock().is_ok(),
        Err(_) => false,
    }
}

/// Removes the lock files of workers that died holding no job (nobody else would); the files
/// of `holding` (workers with running jobs) stay for the reaper.
fn sweep(dir: &Path, holding: &[String]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let keep: std::collections::HashSet<String> = holding.iter().map(|w| file_name(w)).collect();
    for entry in entries.flatten() {
        let path = entry.path();
        let kept = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| keep.contains(n));
        if !kept && path.extension().is_some_and(|e| e == "lock") && file_lock_is_free(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_file_lock_is_not_free_and_a_released_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = lock_file(dir.path(), "host-1").unwrap();
        assert!(!file_lock_is_free(&path), "held by this open file");
        drop(file);
        assert!(file_lock_is_free(&path));
        assert!(
            !file_lock_is_free(&dir.path().join("nobody.lock")),
            "missing: unknown"
        );
    }

    #[test]
    fn lock_paths() {
        assert_eq!(
            lock_dir(Path::new("/data/khaacho.db")),
            Some(PathBuf::from("/data/khaacho.db.workers"))
        );
        assert_eq!(lock_dir(Path::new(":memory:")), None);
        assert_eq!(file_name("web/1-0190abc"), "web_1-0190abc.lock");
    }
}
