//! Logs (JSON by default) and Prometheus metrics.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::app::App;
use crate::config::{LogFormat, Settings};

/// Installs the global log subscriber (once; later calls are ignored).
pub fn init_logging(settings: &Settings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match settings.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; the handle then renders nothing.
        if metrics::set_global_recorder(recorder).is_ok() {
            // HELP lines for the agents' and breakers' metrics.
            khaacho_agents::describe_metrics();
        }
        handle
    })
}

/// Updates gauges that are read from the database: queue depth and age, dead jobs, orders
/// by state (kept by the `order.changed` consumer, so they may lag by its queue). Called on
/// each scrape, so their freshness follows the scrape interval.
pub async fn refresh_gauges(app: &App) {
    if let Ok(stats) = crate::queue::admin::stats(app.db()).await {
        for q in app_queues() {
            let (depth, age) = stats
                .ready
                .iter()
                .find(|r| r.0 == q)
                .map_or((0, 0), |r| (r.1, r.2));
            metrics::gauge!("khaacho_queue_depth", "queue" => q).set(depth as f64);
            metrics::gauge!("khaacho_queue_oldest_ready_age_seconds", "queue" => q)
                .set(age as f64 / 1000.0);
        }
        for (kind, n) in stats.dead {
            metrics::gauge!("khaacho_jobs_dead", "kind" => kind).set(n as f64);
        }
        for (kind, n) in stats.running {
            metrics::gauge!("khaacho_jobs_running", "kind" => kind).set(n as f64);
        }
    }
    metrics::counter!("khaacho_rate_limit_fallbacks_total")
        .absolute(app.auth().limiter.fallbacks());
    if let Ok(counts) = crate::orders::counts::all(app.db()).await {
        for (status, n) in counts {
            metrics::gauge!("khaacho_orders", "state" => status.as_str()).set(n as f64);
        }
    }
}

fn app_queues() -> Vec<&'static str> {
    crate::jobs::registry().queues()
}
