//! Running the roles of a process: the HTTP API, the queue workers and the scheduler.

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::app::App;
use crate::base::work::WorkRuntime;
use crate::queue::runtime::Workers;

/// Which pieces this process runs.
#[derive(Clone, Copy, Debug)]
pub struct Roles {
    /// Serve HTTP.
    pub api: bool,
    /// Consume the job queues and fire recurring schedules.
    pub workers: bool,
}

/// Runs `roles` until `shutdown` fires, then drains: the API stops accepting and finishes
/// in-flight requests, the workers stop claiming and finish or release their jobs.
pub async fn run(
    app: App,
    roles: Roles,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    // What holds transactions open runs on threads of its own (`base::work`); dropped last,
    // after everything spawned there has finished.
    let threads = app
        .settings()
        .work_threads
        .unwrap_or_else(|| crate::base::work::default_threads(app.db().is_postgres()));
    let work = WorkRuntime::start(threads).context("starting the work runtime")?;
    if !app.run_work_on(work.handle().clone()) {
        tracing::warn!(
            "the group commits already run on another runtime (started before the work runtime); they stay there"
        );
    }
    // Follow the operating mode other processes set (safe mode, degradation level).
    tasks.spawn({
        let (app, shutdown) = (app.clone(), shutdown.clone());
        async move {
            let every = std::time::Duration::from_secs(1);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
                if let Err(e) = app.mode().refresh(app.db()).await {
                    tracing::warn!(error = %e, "reading the operating mode failed");
                }
            }
        }
    });
    if roles.workers {
        let workers = Workers::new(app.clone(), crate::jobs::registry());
        tasks.spawn_on(workers.run(shutdown.clone()), work.handle());
        let schedules = crate::jobs::schedules(app.settings())?;
        tasks.spawn_on(
            {
                let (app, shutdown) = (app.clone(), shutdown.clone());
                async move {
                    crate::queue::schedule::run(app, schedules, shutdown).await;
                    Ok(())
                }
            },
            work.handle(),
        );
    }
    if roles.api {
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(app.settings().listen)
                .await
                .with_context(|| format!("binding {}", app.settings().listen))?,
        };
        info!(addr = %listener.local_addr()?, database = app.db().kind(), "API listening");
        let router = crate::http::router(app.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await?;
            Ok(())
        });
    }
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let outcome = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = outcome {
            // One role failing takes the process down cleanly rather than half-running.
            shutdown.cancel();
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    app.db().close().await;
    result
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        info!("shutdown signal received; draining");
        token.cancel();
    });
}
