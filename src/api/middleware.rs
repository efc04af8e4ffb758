//! The tower layers every request passes: request id and W3C trace context,
//! access logging and metrics, and problem+json for bare error statuses.
//! Invariant 8 at the edge: logs and metric labels carry route templates
//! and standard method names, never a path or a client's text.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::rand::{SecureRandom, SystemRandom};
use tracing::Instrument;
use uuid::Uuid;

use crate::problem::{CONTENT_TYPE, Problem};
pub use crate::request::RequestContext;
use crate::telemetry;

pub const REQUEST_ID: &str = "x-request-id";

/// Parses a W3C `traceparent` (version 00) into its trace id and the
/// caller's span id.
fn incoming_trace(v: &HeaderValue) -> Option<(String, String)> {
    let s = v.to_str().ok()?;
    let mut it = s.split('-');
    let (ver, trace, parent, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let hex = |x: &str, n: usize| {
        x.len() == n && x.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = ver == "00"
        && it.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace != "0".repeat(32)
        && parent != "0".repeat(16);
    valid.then(|| (trace.to_owned(), parent.to_owned()))
}

/// Random bytes from the operating system, drawn 4 KiB at a time per
/// thread: the request id, trace id and span id of every request took
/// three to four `getrandom` system calls each (measured with strace under
/// wrk); now one call serves about a hundred requests.
fn random_bytes<const N: usize>() -> [u8; N] {
    use std::cell::RefCell;
    const POOL: usize = 4096;
    thread_local! {
        static BUF: RefCell<(Box<[u8; POOL]>, usize)> = RefCell::new((Box::new([0; POOL]), POOL));
    }
    BUF.with(|b| {
        let (pool, used) = &mut *b.borrow_mut();
        if *used + N > POOL {
            SystemRandom::new()
                .fill(&mut pool[..])
                .expect("system random");
            *used = 0;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&pool[*used..*used + N]);
        // Never hand out the same bytes twice.
        pool[*used..*used + N].fill(0);
        *used += N;
        out
    })
}

fn random_hex<const N: usize>() -> String {
    hex::encode(random_bytes::<N>())
}

/// A version 7 UUID (time-ordered to the millisecond) for the request id.
fn request_id() -> Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    uuid::Builder::from_unix_timestamp_millis(millis, &random_bytes::<10>()).into_uuid()
}

pub async fn request_context(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let id = request_id();
    let incoming = req.headers().get("traceparent").and_then(incoming_trace);
    let parent_span_id = incoming.as_ref().map(|(_, parent)| parent.clone());
    let trace_id = incoming
        .map(|(trace, _)| trace)
        .unwrap_or_else(random_hex::<16>);
    let span_id = random_hex::<8>();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = telemetry::method_label(req.method());
    req.extensions_mut().insert(RequestContext {
        id,
        trace_id: trace_id.clone(),
        holds_idempotency_key: false,
    });
    // Only the route template is logged: a URI never carries personal data by
    // design, and logging templates keeps it that way even if one did.
    let route_label = telemetry::route_label(route);
    let span = tracing::info_span!("request", request_id = %id, trace_id = %trace_id, method = %method, route = %route_label);
    let mut res = next.run(req).instrument(span.clone()).await;
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1e3,
            "request completed"
        )
    });
    let labels = [
        ("route", route_label),
        ("method", method.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!("ketenpoort_http_requests_total", &labels).increment(1);
    metrics::histogram!("ketenpoort_http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
    let [(_, route), ..] = labels;
    telemetry::otlp::record(telemetry::otlp::RequestSpan {
        trace_id: trace_id.clone(),
        span_id: span_id.clone(),
        parent_span_id,
        method,
        route,
        status,
        start: started_at,
        end: started_at + elapsed,
    });
    let h = res.headers_mut();
    h.insert(
        REQUEST_ID,
        HeaderValue::from_str(&id.to_string()).expect("uuid header"),
    );
    h.insert(
        "traceparent",
        HeaderValue::from_str(&format!("00-{trace_id}-{span_id}-01")).expect("trace header"),
    );
    res
}

/// The whole-request timeout (`http.request_timeout_secs`). Past it, a
/// request whose log work no batch has taken yet is answered 503 and that
/// work is dropped unrun, so "nothing was disclosed" is true; a request
/// whose work a batch already took gets its real answer when the batch
/// ends (see `ledger::within_deadline`).
pub async fn deadline(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    req: Request,
    next: Next,
) -> Response {
    match crate::ledger::within_deadline(limit, next.run(req)).await {
        Some(res) => res,
        None => Problem::for_status(axum::http::StatusCode::SERVICE_UNAVAILABLE).into_response(),
    }
}

/// Turns bare error statuses from below the handlers (405 from the router,
/// 413 from the body limit, 503 from the timeout) into problem+json. The
/// console's error pages (HTML) are answers, not bare statuses.
pub async fn problem_json(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let content_type = res.headers().get(header::CONTENT_TYPE);
    let is_problem = content_type.is_some_and(|v| v.as_bytes() == CONTENT_TYPE.as_bytes());
    let is_page = content_type.is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem || is_page {
        return res;
    }
    let (parts, _) = res.into_parts();
    let mut fresh = Problem::for_status(status).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            fresh.headers_mut().insert(name, v.clone());
        }
    }
    fresh
}

/// The most of an over-limit body [`drain_oversized`] reads before it
/// answers, and how long it reads.
const DRAIN_MAX: usize = 16 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// A request whose declared `Content-Length` is over the body limit gets
/// its 413 once the client has sent the body (up to [`DRAIN_MAX`] bytes,
/// for at most [`DRAIN_TIME`]). Answered early, an HTTP/2 stream ends in a
/// reset (RFC 9113 allows `NO_ERROR` after a complete answer), which
/// clients such as curl report as a protocol error without showing the
/// problem; an HTTP/1.1 connection is closed with the body unread, and a
/// client still writing sees a broken pipe instead of the answer.
pub async fn drain_oversized(
    axum::extract::State(limit): axum::extract::State<usize>,
    req: Request,
    next: Next,
) -> Response {
    use http_body_util::BodyExt;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_none_or(|n| n <= limit as u64) {
        return next.run(req).await;
    }
    let mut body = req.into_body();
    let mut seen = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > DRAIN_MAX {
                break;
            }
        }
    })
    .await;
    Problem::for_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fresh_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        // More than one pool's worth, so the refill is crossed.
        for _ in 0..2000 {
            let id = request_id();
            assert_eq!(id.get_version_num(), 7);
            let trace = random_hex::<16>();
            let span = random_hex::<8>();
            assert_eq!((trace.len(), span.len()), (32, 16));
            assert!(seen.insert(id.to_string()) && seen.insert(trace) && seen.insert(span));
        }
    }

    #[test]
    fn traceparent_parsing() {
        let ok =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            incoming_trace(&ok),
            Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
                "00f067aa0ba902b7".to_owned()
            ))
        );
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert_eq!(
                incoming_trace(&HeaderValue::from_static(bad)),
                None,
                "{bad}"
            );
        }
    }
}
