//! Request spans exported over OTLP/HTTP with the JSON encoding
//! (`POST <telemetry.otlp_endpoint>/v1/traces`), when an endpoint is
//! configured: one server span per request, in the caller's trace.
//!
//! What a span holds is invariant 8's vocabulary only: the route template
//! (never the URI), the standard method name, the status code, the trace id
//! (the caller's `traceparent`, which passed the W3C format check, or
//! ketenpoort's own), the caller's parent span id and ketenpoort's span id,
//! and times. No header, query, body, token, partner or user.
//!
//! Written by hand rather than with `opentelemetry-otlp`: its HTTP
//! exporters bring the OpenTelemetry SDK, the prost-generated protocol
//! types and an HTTP client crate, a large share of CI's build time for one
//! span per request; this is the protocol's JSON mapping over hyper, which
//! ketenpoort already has. Spans are sent in batches by a background task;
//! when the receiver is slow or down they are dropped (counted in
//! `ketenpoort_otlp_spans_dropped_total`), never queued without bound and
//! never in the way of a request.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One finished request, as exported.
#[derive(Debug, Clone)]
pub struct RequestSpan {
    pub trace_id: String,
    pub span_id: String,
    /// The caller's span (`traceparent`), if it sent one.
    pub parent_span_id: Option<String>,
    pub method: &'static str,
    /// The route template (`/v1/signals/{id}`) or `unmatched`.
    pub route: String,
    pub status: u16,
    pub start: SystemTime,
    pub end: SystemTime,
}

/// Spans waiting for the exporter; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Spans per export request at most.
const BATCH: usize = 512;
/// How long a span may wait for its batch.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How long one export may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

static SPANS: OnceLock<mpsc::Sender<RequestSpan>> = OnceLock::new();

/// Whether spans are exported (`telemetry.otlp_endpoint`): without, a
/// request builds no span to record.
pub fn enabled() -> bool {
    SPANS.get().is_some()
}

/// Hands a finished request to the exporter, if one runs.
pub fn record(span: RequestSpan) {
    if let Some(tx) = SPANS.get()
        && tx.try_send(span).is_err()
    {
        metrics::counter!("ketenpoort_otlp_spans_dropped_total").increment(1);
    }
}

/// Where the spans go: host, port and path of the receiver.
#[derive(Debug, Clone)]
struct Endpoint {
    authority: String,
    path: String,
}

impl Endpoint {
    fn parse(base: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = base
            .parse()
            .with_context(|| "telemetry.otlp_endpoint is not a URL".to_owned())?;
        if uri.scheme_str() != Some("http") {
            bail!(
                "telemetry.otlp_endpoint must be an http:// URL (run an OpenTelemetry Collector \
                 beside ketenpoort for TLS to a remote backend)"
            );
        }
        let host = uri.host().context("telemetry.otlp_endpoint has no host")?;
        let port = uri.port_u16().unwrap_or(80);
        let base_path = uri.path().trim_end_matches('/');
        Ok(Self {
            authority: format!("{host}:{port}"),
            path: format!("{base_path}/v1/traces"),
        })
    }
}

/// Starts the exporter for `endpoint` (once per process): from then on
/// every request's span is exported.
pub fn start(endpoint: &str, service_name: &str) -> anyhow::Result<()> {
    let endpoint = Endpoint::parse(endpoint)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    if SPANS.set(tx).is_err() {
        bail!("the OTLP exporter is already running");
    }
    tokio::spawn(export(endpoint, service_name.to_owned(), rx));
    Ok(())
}

async fn export(endpoint: Endpoint, service: String, mut rx: mpsc::Receiver<RequestSpan>) {
    let mut failing = false;
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let body = document(&service, &batch).to_string();
        match tokio::time::timeout(SEND_TIMEOUT, send(&endpoint, body)).await {
            Ok(Ok(())) => failing = false,
            outcome => {
                metrics::counter!("ketenpoort_otlp_spans_dropped_total")
                    .increment(batch.len() as u64);
                // One warning per run of failures, not one per batch.
                if !failing {
                    let error = match outcome {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => "timed out".to_owned(),
                    };
                    tracing::warn!(error, "exporting spans over OTLP failed; spans are dropped");
                }
                failing = true;
            }
        }
    }
}

async fn send(endpoint: &Endpoint, body: String) -> anyhow::Result<()> {
    let stream = tokio::net::TcpStream::connect(&endpoint.authority).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::post(&endpoint.path)
        .header(http::header::HOST, &endpoint.authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let res = sender.send_request(req).await?;
    if !res.status().is_success() {
        bail!("the receiver answered {}", res.status());
    }
    Ok(())
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .to_string()
}

fn string(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// An `ExportTraceServiceRequest` in OTLP's JSON mapping (ids as hex,
/// 64-bit integers as decimal strings).
fn document(service: &str, spans: &[RequestSpan]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": s.trace_id,
                "spanId": s.span_id,
                "name": format!("{} {}", s.method, s.route),
                // SPAN_KIND_SERVER
                "kind": 2,
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "attributes": [
                    string("http.request.method", s.method),
                    string("http.route", &s.route),
                    {"key": "http.response.status_code", "value": {"intValue": s.status.to_string()}},
                ],
                // STATUS_CODE_ERROR for a server error, else unset.
                "status": {"code": if s.status >= 500 { 2 } else { 0 }},
            });
            if let Some(parent) = &s.parent_span_id {
                span["parentSpanId"] = json!(parent);
            }
            span
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            string("service.name", service),
            string("service.version", env!("CARGO_PKG_VERSION")),
        ]},
        "scopeSpans": [{
            "scope": {"name": "ketenpoort", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans,
        }],
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:4318").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("127.0.0.1:4318", "/v1/traces")
        );
        let e = Endpoint::parse("http://collector/otlp/").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("collector:80", "/otlp/v1/traces")
        );
        for bad in ["https://collector:4318", "collector:4318", "not a url"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_span_in_the_json_mapping() {
        let t = UNIX_EPOCH + Duration::from_secs(1);
        let doc = document(
            "ketenpoort",
            &[RequestSpan {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                span_id: "00f067aa0ba902b7".into(),
                parent_span_id: None,
                method: "GET",
                route: "/v1/signals/{id}".into(),
                status: 503,
                start: t,
                end: t + Duration::from_millis(2),
            }],
        );
        let span = &doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["name"], "GET /v1/signals/{id}");
        assert_eq!(span["startTimeUnixNano"], "1000000000");
        assert_eq!(span["endTimeUnixNano"], "1002000000");
        assert_eq!(span["status"]["code"], 2);
        assert!(span.get("parentSpanId").is_none());
    }
}
