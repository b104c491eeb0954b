//! Logs (JSON by default), Prometheus metrics and, when a collector is named, traces over
//! OTLP.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::app::App;
use crate::config::{LogFormat, Settings, TraceSettings};

/// What [`init_logging`] installed that must be flushed before the process exits: the trace
/// exporter, if any. Dropping it flushes and stops the exporter (blocking, briefly).
#[must_use = "dropping it stops the trace exporter"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.traces.is_some()
    }

    /// Sends every finished span now (off the async threads: the exporter's client blocks).
    pub async fn flush(&self) {
        if let Some(provider) = self.traces.clone() {
            let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("trace exporter did not shut down cleanly: {e}");
        }
    }
}

/// Installs the global log subscriber and, when `traces` names a collector, the trace
/// exporter (once; later calls install nothing and export nothing).
pub fn init_logging(settings: &Settings) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_filter(filter).boxed(),
    };
    let provider = match settings.traces.traces_url() {
        Some(url) => Some(tracer_provider(&settings.traces, &url)?),
        None => None,
    };
    // Spans at info and above are exported whatever the log level.
    let spans = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("khaacho"))
            .with_filter(LevelFilter::INFO)
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .is_ok();
    if installed && provider.is_some() {
        crate::base::trace::enable();
        tracing::info!(
            url = settings.traces.traces_url().unwrap_or_default(),
            sample_ratio = settings.traces.sample_ratio,
            "exporting traces over OTLP"
        );
    }
    Ok(Telemetry {
        traces: provider.filter(|_| installed),
    })
}

fn tracer_provider(settings: &TraceSettings, url: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_timeout(Duration::from_millis(settings.export_timeout_ms))
        .build()
        .with_context(|| format!("building the OTLP trace exporter for {url}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
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
/// by state (kept by the `order.changed` consumer, so they may lag by its queue); and this
/// process's connection pools (open, idle and the most each may open: a pool whose open
/// connections stay at the most with none idle is what requests and jobs wait for). Called on
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
    for (pool, open, idle, max) in app.db().pool_use() {
        metrics::gauge!("khaacho_db_connections", "pool" => pool, "state" => "open")
            .set(f64::from(open));
        metrics::gauge!("khaacho_db_connections", "pool" => pool, "state" => "idle")
            .set(idle as f64);
        metrics::gauge!("khaacho_db_connections_max", "pool" => pool).set(f64::from(max));
    }
    if let Ok(counts) = crate::orders::counts::all(app.db()).await {
        for (status, n) in counts {
            metrics::gauge!("khaacho_orders", "state" => status.as_str()).set(n as f64);
        }
    }
}

fn app_queues() -> Vec<&'static str> {
    crate::jobs::registry().queues()
}
