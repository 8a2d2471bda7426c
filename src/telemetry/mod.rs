//! Metrics and logs.
//!
//! Metrics are Prometheus counters and histograms with unit suffixes and bounded labels: chain ids
//! and upstream names come from the configuration, methods from a fixed list ([`MethodLabel`]),
//! never from what a client sends. Logs go through `tracing`, filtered by `RUST_LOG`.

mod metrics;

pub use metrics::{
    serve_metrics, serve_side, ChainMetrics, DecisionMetrics, MethodLabel, Metrics, Outcome, Stage, UpstreamMetrics,
    UpstreamOutcome,
};

use crate::config::LogFormat;

/// Installs the global `tracing` subscriber. `RUST_LOG` filters (default `info`).
///
/// Calling it twice is harmless (the second call does nothing), which keeps tests simple.
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
