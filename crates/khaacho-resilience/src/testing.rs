//! A tiny in-memory metrics recorder for tests (feature `testing`).
//!
//! Install it for the current thread with `metrics::set_default_local_recorder(&recorder)`
//! inside a current-thread tokio test: every task of that runtime is polled on the test thread,
//! so the recorder sees them, while tests on other threads keep their own. Hand-written so tests
//! need no extra crate (metrics-util's debugging recorder pulls in several).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// Cells by rendered key (`name{label=value,…}`).
type Cells<T> = Arc<Mutex<BTreeMap<String, Arc<T>>>>;

/// Records counters, gauges and histograms by name and sorted labels.
#[derive(Debug, Default, Clone)]
pub struct CaptureRecorder {
    counters: Cells<AtomicU64>,
    gauges: Cells<AtomicU64>,
    histograms: Cells<Mutex<Vec<f64>>>,
}

/// `name{k=v,k=v}` with labels sorted, the lookup key of every accessor.
fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

/// Same rendering for a name and `(label, value)` pairs given by a test.
fn render_parts(name: &str, labels: &[(&str, &str)]) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.sort();
    format!("{name}{{{}}}", parts.join(","))
}

impl CaptureRecorder {
    /// An empty recorder.
    pub fn new() -> CaptureRecorder {
        CaptureRecorder::default()
    }

    /// Counter value, 0 when never touched.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&render_parts(name, labels))
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    /// Gauge value, `None` when never set.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&render_parts(name, labels))
            .map(|g| f64::from_bits(g.load(Ordering::SeqCst)))
    }

    /// Every value recorded into a histogram.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let map = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&render_parts(name, labels))
            .map(|h| h.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }
}

struct CounterCell(Arc<AtomicU64>);
impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::SeqCst);
    }
}

struct GaugeCell(Arc<AtomicU64>);
impl GaugeCell {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |bits| {
                Some(f(f64::from_bits(bits)).to_bits())
            });
    }
}
impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::SeqCst);
    }
}

struct HistogramCell(Arc<Mutex<Vec<f64>>>);
impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(value);
    }
}

impl Recorder for CaptureRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let cell = map.entry(render(key)).or_default().clone();
        Counter::from_arc(Arc::new(CounterCell(cell)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        let cell = map.entry(render(key)).or_default().clone();
        Gauge::from_arc(Arc::new(GaugeCell(cell)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut map = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        let cell = map.entry(render(key)).or_default().clone();
        Histogram::from_arc(Arc::new(HistogramCell(cell)))
    }
}
