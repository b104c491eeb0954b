//! Trace context across the queue: a request's trace continues into the jobs it enqueued.
//!
//! When traces are exported (`traces.otlp_endpoint`, see `telemetry`), every job row carries
//! the W3C `traceparent` of the span that enqueued it (`jobs.trace_parent`); the worker that
//! runs the job opens its span as a child of it, so one trace shows the HTTP request, the
//! job it enqueued, the jobs that job enqueued, and so on. Incoming `traceparent` headers are
//! honoured, so a caller's own trace continues into ours.
//!
//! Work that runs in another task than the one that caused it (the intake's group commit,
//! a batch of jobs from many requests) names its parents per request id with
//! [`with_parents`]; an enqueue looks its request id up there before it falls back to the
//! current span. When export is off every function here returns at once and jobs carry no
//! trace context.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

tokio::task_local! {
    /// Request id → `traceparent` of the span carrying that request's work in this task.
    static PARENTS: HashMap<String, String>;
}

/// Marks trace export as on (called once by `telemetry` after installing the exporter).
pub fn enable() {
    ENABLED.store(true, Ordering::Release);
}

/// Whether spans are exported (and trace context worth carrying).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// The `traceparent` of `span`, if it belongs to a sampled or recorded trace.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The `traceparent` of the current span.
pub fn current() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The parent a job enqueued now for request `correlation` should carry: the span that
/// carries that request's work in this task ([`with_parents`]), else the current span.
pub fn parent_for(correlation: Option<&str>) -> Option<String> {
    if !enabled() {
        return None;
    }
    correlation
        .and_then(|c| {
            PARENTS
                .try_with(|parents| parents.get(c).cloned())
                .ok()
                .flatten()
        })
        .or_else(current)
}

/// Runs `work` with the trace parents of the requests it carries (request id →
/// `traceparent`), for [`parent_for`].
pub async fn with_parents<F: Future>(parents: HashMap<String, String>, work: F) -> F::Output {
    if parents.is_empty() {
        return work.await;
    }
    PARENTS.scope(parents, work).await
}

/// Makes `span` a child of the remote span named by `traceparent` (from a job row or a
/// caller's header). A malformed value is ignored: the span starts a trace of its own.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if let Some(cx) = remote(traceparent, tracestate) {
        let _ = span.set_parent(cx);
    }
}

/// Links `span` to the remote span named by `traceparent` (a batch to each of its jobs).
pub fn link(span: &tracing::Span, traceparent: &str) {
    if let Some(cx) = remote(Some(traceparent), None) {
        span.add_link(cx.span().span_context().clone());
    }
}

fn remote(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<opentelemetry::Context> {
    if !enabled() {
        return None;
    }
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert("traceparent".to_string(), traceparent?.to_string());
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_string(), state.to_string());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// The trace id (32 hex digits) of a `traceparent`, for showing to operators.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let id = traceparent.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_reads_the_second_field() {
        assert_eq!(
            trace_id("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-xyz-b7ad6b7169203331-01"), None);
    }
}
