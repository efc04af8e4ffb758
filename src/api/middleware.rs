//! The layers every request passes: request id and W3C trace context,
//! access logging and metrics, problem+json for bare error statuses and
//! the security headers ([`conventions`], both listeners); the header,
//! body-size and time limits ([`guard`], the partner listener).
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
    let mut out = vec![0u8; 2 * N];
    hex::encode_to_slice(random_bytes::<N>(), &mut out).expect("twice the length");
    String::from_utf8(out).expect("hex is ASCII")
}

/// A version 7 UUID (time-ordered to the millisecond) for the request id.
fn request_id() -> Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    uuid::Builder::from_unix_timestamp_millis(millis, &random_bytes::<10>()).into_uuid()
}

/// What every answer on either listener gets, in one layer: the request id
/// and W3C trace context, the access log line and metrics, problem+json for
/// bare error statuses, `API-Version` and the security headers. (As a
/// layer each, they cost a boxed service clone and a boxed future apiece
/// per request.) Innermost first, as the separate layers ran.
pub async fn conventions(mut req: Request, next: Next) -> Response {
    let request = Started::begin(&mut req);
    let res = next.run(req).instrument(request.span.clone()).await;
    let mut res = problem_json(res);
    request.finish(&mut res);
    security_headers(res.headers_mut());
    res
}

/// A request on its way through [`conventions`].
struct Started {
    at: Instant,
    id: Uuid,
    trace_id: String,
    parent_span_id: Option<String>,
    span_id: String,
    method: &'static str,
    /// Only the route template is logged: a URI never carries personal
    /// data by design, and logging templates keeps it that way even if
    /// one did.
    route: String,
    /// Lines logged while the request runs carry its request and trace
    /// ids.
    span: tracing::Span,
}

impl Started {
    fn begin(req: &mut Request) -> Self {
        let id = request_id();
        let incoming = req.headers().get("traceparent").and_then(incoming_trace);
        let (trace_id, parent_span_id) = match incoming {
            Some((trace, parent)) => (trace, Some(parent)),
            None => (random_hex::<16>(), None),
        };
        let route = telemetry::route_label(
            req.extensions()
                .get::<MatchedPath>()
                .map(|m| m.as_str().to_owned()),
        );
        let method = telemetry::method_label(req.method());
        req.extensions_mut().insert(RequestContext {
            id,
            trace_id: trace_id.clone(),
            holds_idempotency_key: false,
        });
        // The ids only: the method and route are in the access line, which
        // the request id joins (each field recorded costs a formatting).
        let span = tracing::info_span!("request", request_id = %id, trace_id = %trace_id);
        Self {
            at: Instant::now(),
            id,
            trace_id,
            parent_span_id,
            span_id: random_hex::<8>(),
            method,
            route,
            span,
        }
    }

    /// The access line, the metrics, the span export and the id headers.
    fn finish(self, res: &mut Response) {
        let status = res.status().as_u16();
        let elapsed = self.at.elapsed();
        let mut id_buf = Uuid::encode_buffer();
        let id = self.id.hyphenated().encode_lower(&mut id_buf);
        telemetry::access::log(&telemetry::access::Access {
            request_id: id,
            trace_id: &self.trace_id,
            method: self.method,
            route: &self.route,
            status,
            latency_ms: elapsed.as_secs_f64() * 1e3,
        });
        observe(&self.route, self.method, status, elapsed);
        let h = res.headers_mut();
        h.insert(REQUEST_ID, HeaderValue::from_str(id).expect("uuid header"));
        h.insert(
            "traceparent",
            HeaderValue::from_str(&format!("00-{}-{}-01", self.trace_id, self.span_id))
                .expect("trace header"),
        );
        if telemetry::otlp::enabled() {
            let end = std::time::SystemTime::now();
            telemetry::otlp::record(telemetry::otlp::RequestSpan {
                trace_id: self.trace_id,
                span_id: self.span_id,
                parent_span_id: self.parent_span_id,
                method: self.method,
                route: self.route,
                status,
                start: end - elapsed,
                end,
            });
        }
    }
}

/// Counts the request and records its latency. The handles of each route,
/// method and status are registered once per worker thread: registering
/// them on every request (label strings, key hashing, a registry lookup)
/// was 2% of the server's CPU on `/healthz`. Routes are templates and
/// statuses the server's own, so the cache stays small.
fn observe(route: &str, method: &'static str, status: u16, elapsed: std::time::Duration) {
    use std::cell::RefCell;
    use std::collections::HashMap;
    type Handles = HashMap<(&'static str, u16), (metrics::Counter, metrics::Histogram)>;
    thread_local! {
        static HANDLES: RefCell<HashMap<String, Handles>> = RefCell::new(HashMap::new());
    }
    HANDLES.with(|h| {
        let mut h = h.borrow_mut();
        if !h.contains_key(route) {
            h.insert(route.to_owned(), HashMap::new());
        }
        let per_route = h.get_mut(route).expect("inserted above");
        let (count, latency) = per_route.entry((method, status)).or_insert_with(|| {
            let labels = [
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ];
            (
                metrics::counter!("ketenpoort_http_requests_total", &labels),
                metrics::histogram!("ketenpoort_http_request_duration_seconds", &labels[..2]),
            )
        });
        count.increment(1);
        latency.record(elapsed.as_secs_f64());
    });
}

/// `API-Version` and the security headers. The console's pages set their
/// own, stricter content security policy (it keeps `frame-ancestors
/// 'none'`); every other header overrides.
fn security_headers(h: &mut axum::http::HeaderMap) {
    h.insert(
        axum::http::HeaderName::from_static("api-version"),
        HeaderValue::from_static(super::API_VERSION),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// The partner listener's limits, checked by [`guard`].
#[derive(Clone, Copy)]
pub struct Guard {
    /// `http.body_limit`, in bytes.
    pub body_limit: usize,
    /// `http.request_timeout_secs`.
    pub timeout: std::time::Duration,
}

/// What the partner listener checks before any route, in one layer (one
/// boxed clone per request, not three): the fields that must not repeat
/// ([`super::headers::check`]), then, within the whole-request timeout, a
/// declared body over the limit ([`drain_oversized`]) or the route.
///
/// Past the timeout, a request whose log work no batch has taken yet is
/// answered 503 and that work is dropped unrun, so "nothing was disclosed"
/// is true; a request whose work a batch already took gets its real answer
/// when the batch ends (see `ledger::within_deadline`).
pub async fn guard(
    axum::extract::State(limits): axum::extract::State<Guard>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(p) = super::headers::check(req.headers()) {
        return p.into_response();
    }
    let answer = async move {
        if declared_length(&req).is_some_and(|n| n > limits.body_limit as u64) {
            drain_oversized(req).await
        } else {
            next.run(req).await
        }
    };
    match crate::ledger::within_deadline(limits.timeout, answer).await {
        Some(res) => res,
        None => Problem::for_status(axum::http::StatusCode::SERVICE_UNAVAILABLE).into_response(),
    }
}

/// Turns bare error statuses from below the handlers (405 from the router,
/// 413 from the body limit, 503 from the timeout) into problem+json. The
/// console's error pages (HTML) are answers, not bare statuses.
fn problem_json(res: Response) -> Response {
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

fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// A request whose declared `Content-Length` is over the body limit gets
/// its 413 once the client has sent the body (up to [`DRAIN_MAX`] bytes,
/// for at most [`DRAIN_TIME`]). Answered early, an HTTP/2 stream ends in a
/// reset (RFC 9113 allows `NO_ERROR` after a complete answer), which
/// clients such as curl report as a protocol error without showing the
/// problem; an HTTP/1.1 connection is closed with the body unread, and a
/// client still writing sees a broken pipe instead of the answer.
async fn drain_oversized(req: Request) -> Response {
    use http_body_util::BodyExt;
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
