//! The access log: one JSON line per request, on the same writer thread and
//! queue as every other log line (so a line is never dropped and lines stay
//! in order), in the shape `tracing-subscriber`'s JSON formatter gives an
//! event inside the request's span.
//!
//! Written by hand, not through `tracing`, for speed alone: that formatter
//! parses the span's recorded fields back from JSON text for every line it
//! writes, and collects the event's fields into a map first, which made the
//! access log 9% of the server's CPU on `/healthz` under load (perf,
//! 2026-12-05). The line's shape is fixed, so it is serialised straight
//! from a struct. Lines from inside a request (warnings, errors) still go
//! through `tracing` and carry the request's span.

use std::io::Write;
use std::sync::OnceLock;

use serde::Serialize;
use tracing_appender::non_blocking::NonBlocking;

/// The target the access line is logged under (as `tracing` named it): a
/// filter directive such as `ketenpoort::api::middleware=warn` silences it.
pub const TARGET: &str = "ketenpoort::api::middleware";

static WRITER: OnceLock<NonBlocking> = OnceLock::new();

/// The log writer the access lines go to (`init_logging`).
pub(super) fn install(writer: NonBlocking) {
    let _ = WRITER.set(writer);
}

/// What an access line says about one request: ids, the route template and
/// a standard method name, the status and the latency (invariant 8: no
/// path, no client text).
pub struct Access<'a> {
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub method: &'static str,
    pub route: &'a str,
    pub status: u16,
    pub latency_ms: f64,
}

#[derive(Serialize)]
struct Line<'a> {
    timestamp: &'a str,
    level: &'static str,
    fields: Fields,
    target: &'static str,
    span: Span<'a>,
}

#[derive(Serialize)]
struct Fields {
    message: &'static str,
    status: u16,
    latency_ms: f64,
}

/// The span's fields in the order the formatter writes them (sorted by
/// name, then the span's name).
#[derive(Serialize)]
struct Span<'a> {
    method: &'static str,
    request_id: &'a str,
    route: &'a str,
    trace_id: &'a str,
    name: &'static str,
}

const TIMESTAMP: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

/// The line, newline-terminated.
fn line(a: &Access<'_>, now: time::OffsetDateTime) -> Vec<u8> {
    let timestamp = now.format(TIMESTAMP).unwrap_or_default();
    let mut out = Vec::with_capacity(320);
    serde_json::to_writer(
        &mut out,
        &Line {
            timestamp: &timestamp,
            level: "INFO",
            fields: Fields {
                message: "request completed",
                status: a.status,
                latency_ms: a.latency_ms,
            },
            target: TARGET,
            span: Span {
                method: a.method,
                request_id: a.request_id,
                route: a.route,
                trace_id: a.trace_id,
                name: "request",
            },
        },
    )
    .expect("an access line serialises");
    out.push(b'\n');
    out
}

/// Logs one request, unless the log filter leaves INFO of [`TARGET`] out.
/// A process that did not call `init_logging` has no log to write to.
pub fn log(a: &Access<'_>) {
    let Some(w) = WRITER.get() else {
        return;
    };
    if tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        // One write, one queued line: `NonBlocking` queues each write whole.
        let _ = w
            .clone()
            .write_all(&line(a, time::OffsetDateTime::now_utc()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The hand-written line is the line `tracing-subscriber`'s JSON
    /// formatter wrote for the same request (the event inside the request
    /// span, as the middleware logged it before), key for key and value for
    /// value, the timestamp's format included.
    #[test]
    fn the_line_is_the_one_the_tracing_formatter_wrote() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(move || sink.clone())
            .finish();
        let (request_id, trace_id) = ("01a2481e-2863-722b-8ec3-87c9fb98b079", "f4651882");
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = %request_id,
                trace_id = %trace_id, method = %"GET", route = %"/v1/signals/{id}");
            span.in_scope(|| {
                tracing::info!(
                    target: TARGET,
                    status = 404u16,
                    latency_ms = 1.25,
                    "request completed"
                )
            });
        });
        let theirs: serde_json::Value =
            serde_json::from_slice(&captured.0.lock().unwrap()).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let ours_bytes = line(
            &Access {
                request_id,
                trace_id,
                method: "GET",
                route: "/v1/signals/{id}",
                status: 404,
                latency_ms: 1.25,
            },
            now,
        );
        assert_eq!(ours_bytes.last(), Some(&b'\n'));
        let ours: serde_json::Value = serde_json::from_slice(&ours_bytes).unwrap();
        let without_time = |v: &serde_json::Value| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("timestamp");
            v
        };
        assert_eq!(without_time(&ours), without_time(&theirs));
        // The same timestamp shape: RFC 3339, UTC, microseconds.
        let shape = |v: &serde_json::Value| {
            v["timestamp"]
                .as_str()
                .unwrap()
                .chars()
                .map(|c| if c.is_ascii_digit() { '0' } else { c })
                .collect::<String>()
        };
        assert_eq!(shape(&ours), shape(&theirs));
        assert_eq!(shape(&ours), "0000-00-00T00:00:00.000000Z");
    }
}
