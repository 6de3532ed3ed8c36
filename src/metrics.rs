//! Prometheus metrics: sessions, live sandboxes, jobs, latency, bytes.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub sessions: Gauge,
    pub live_sandboxes: Gauge,
    pub jobs_running: Gauge,
    pub job_start_seconds: Histogram,
    pub job_duration_seconds: Histogram,
    pub bytes_streamed: Counter,
    pub sandboxes_expired: Counter,
    pub websocket_connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("replbox");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            sessions: Gauge::default(),
            live_sandboxes: Gauge::default(),
            jobs_running: Gauge::default(),
            job_start_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            job_duration_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            bytes_streamed: Counter::default(),
            sandboxes_expired: Counter::default(),
            websocket_connections: Gauge::default(),
        };
        registry.register(
            "sessions",
            "Sessions with a sandbox record",
            m.sessions.clone(),
        );
        registry.register(
            "live_sandboxes",
            "Sandbox containers running",
            m.live_sandboxes.clone(),
        );
        registry.register(
            "jobs_running",
            "Jobs running in all sandboxes",
            m.jobs_running.clone(),
        );
        registry.register(
            "job_start_seconds",
            "Time from a run request to its process starting",
            m.job_start_seconds.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Wall time of finished jobs",
            m.job_duration_seconds.clone(),
        );
        registry.register(
            "streamed_bytes",
            "Output bytes streamed from jobs",
            m.bytes_streamed.clone(),
        );
        registry.register(
            "sandboxes_expired",
            "Sandboxes expired by TTL",
            m.sandboxes_expired.clone(),
        );
        registry.register(
            "websocket_connections",
            "Open WebSocket connections",
            m.websocket_connections.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
