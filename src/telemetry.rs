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

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

pub fn init_logging(level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new().install_recorder()?)
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
