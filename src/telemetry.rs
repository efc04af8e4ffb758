//! Operational output — JSON logs on stderr and the Prometheus metrics —
//! and invariant 8, no personal data in it. What may appear there:
//!
//! - request ids and trace ids (ketenpoort's own, or a caller's trace id
//!   that passed the W3C format check, `api::middleware`);
//! - route templates, never paths ([`route_label`]), and standard method
//!   names, never a client's own method ([`method_label`]);
//! - ketenpoort's reason codes and statuses (`problem`: an error's detail
//!   names fields and rules, never values; a `FieldError` is a JSON pointer
//!   and a reason).
//!
//! The metrics are served on the operator listener only (`api::admin_app`).
//! With `telemetry.otlp_endpoint`, each request is also a span exported over
//! OTLP ([`otlp`]), holding the same vocabulary.

pub mod access;
pub mod otlp;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Lines the log writer's queue holds before a logging thread waits for it.
const LOG_QUEUE_LINES: usize = 64 * 1024;

/// Keeps the log writer's thread. Dropping it (when `serve` returns)
/// writes out every queued line before the process ends.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

/// JSON lines on stderr, written by a thread of their own: a request
/// formats its access-log line and queues it, and never waits for the
/// write(2) itself. The queue is not lossy: when it is full, the logging
/// thread waits, so no line is ever dropped (the access log keeps every
/// request). The writer thread batches the queued lines into one write
/// whenever the queue runs empty.
pub fn init_logging(level: &str) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("ketenpoort-log")
        .finish(std::io::BufWriter::with_capacity(
            64 << 10,
            std::io::stderr(),
        ));
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    access::install(writer.clone());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
        .try_init();
    LogGuard(guard)
}

/// Request latency buckets (seconds): from a cached read to the request
/// timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Log batch size buckets (entries per commit).
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The Prometheus recorder. Every histogram is exported as a Prometheus
/// histogram (`_bucket`, `_sum`, `_count`), never as a summary: buckets
/// of several instances add up, quantiles of each do not.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    Ok(prometheus_builder()?.install_recorder()?)
}

fn prometheus_builder() -> anyhow::Result<PrometheusBuilder> {
    use metrics_exporter_prometheus::Matcher;
    Ok(PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("ketenpoort_log_batch_size".into()),
            &BATCH_BUCKETS,
        )?)
}

/// The route as logs and metric labels carry it: its template (an id in
/// the path stays out), or `unmatched`.
pub fn route_label(template: Option<String>) -> String {
    template.unwrap_or_else(|| "unmatched".into())
}

/// The method as logs and metric labels carry it: a standard method by
/// name, anything else `other`. An extension method is the client's own
/// text (it could be a BSN), and one label value per invented method would
/// let any client grow the metrics without bound (invariant 8).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_a_histogram_not_a_summary() {
        let recorder = prometheus_builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("ketenpoort_http_request_duration_seconds", "route" => "/x")
                .record(0.02);
            metrics::histogram!("ketenpoort_log_batch_size").record(3.0);
        });
        let text = handle.render();
        assert!(
            text.contains("# TYPE ketenpoort_http_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(
                "ketenpoort_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.025\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("ketenpoort_http_request_duration_seconds_count{route=\"/x\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ketenpoort_log_batch_size_bucket{le=\"4\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("summary") && !text.contains("quantile"),
            "{text}"
        );
    }

    #[test]
    fn invented_methods_are_other() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for invented in ["111222333", "get", "PROPFIND", "J.DE.VRIES"] {
            let m = Method::from_bytes(invented.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "other", "{invented}");
        }
    }
}
