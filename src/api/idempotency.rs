//! `Idempotency-Key` on the writes that create something (the IETF httpapi
//! draft "The Idempotency-Key HTTP Header Field"): a client that retries a
//! submit or a referral with the same key — after a timeout, a lost
//! connection, a 503 — gets the first answer again instead of a second
//! signal or referral.
//!
//! - The key is per partner and kept for `http.idempotency_keep_secs`
//!   (default 24 h); only its keyed hash is stored, and the kept answer's
//!   body is sealed (AES-256-GCM).
//! - The same key for a different request (method, route, path, purpose
//!   or body differ) is 422; a key whose first request is still running is
//!   409; a replay carries `Idempotent-Replayed: true`.
//! - Only a change that committed holds the key: a request that was
//!   refused, failed or timed out without a change gives it up, so a retry
//!   runs afresh. The disclosed entry's transaction marks the key
//!   (`holds_idempotency_key`), so a holder that died between that commit
//!   and keeping its answer is told apart from one that changed nothing:
//!   its retry gets 409 naming the log entry, never a duplicate.
//! - A replay is not logged again: the kept answers (a new signal's id and
//!   status, a referral's id, recipient, mode and field names) hold no
//!   personal data, and the first answer's receipt names its entry.

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::digest;

use super::AppState;
use crate::auth::Principal;
use crate::problem::{FieldError, Problem};
use crate::request::RequestContext;
use crate::store::Db;
use crate::store::idempotency::{Claim, ClaimTimes, KeptAnswer, KeyHold};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on an answer that is a kept first answer.
pub const REPLAYED: &str = "idempotent-replayed";

/// The operations that take a key: (method, route template).
pub const OPERATIONS: &[(&str, &str)] = &[
    ("POST", "/v1/signals"),
    ("POST", "/v1/signals/{id}/referrals"),
];

/// The headers of a kept answer that a replay repeats.
const KEPT_HEADERS: &[&str] = &["content-type", "location", "ketenpoort-receipt", "etag"];

/// What cursors seal kept answer bodies for.
const SEAL_SCOPE: &str = "idempotency answer";

/// The header as a documented parameter of the [`OPERATIONS`].
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only; the header is read by [`idempotent`]
pub struct IdempotencyKeyHeader {
    /// A key the client chooses for this request (an RFC 8941 string, for
    /// example a UUID in quotes; 1–255 printable characters). A retry with
    /// the same key gets the first answer instead of a duplicate. Kept for
    /// 24 hours per partner (configurable).
    #[param(rename = "Idempotency-Key")]
    key: Option<String>,
}

/// The key in the header: an RFC 8941 sf-string (`"…"`), or the same
/// characters unquoted, as many clients send it.
fn parse_key(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?.trim();
    let inner = match s.strip_prefix('"') {
        Some(rest) => {
            let rest = rest.strip_suffix('"')?;
            let mut out = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next()? {
                        c @ ('"' | '\\') => out.push(c),
                        _ => return None,
                    },
                    '"' => return None,
                    c => out.push(c),
                }
            }
            out
        }
        None => s.to_owned(),
    };
    let printable = inner.chars().all(|c| (' '..='~').contains(&c));
    (printable && (1..=255).contains(&inner.len())).then_some(inner)
}

fn invalid_key() -> Problem {
    Problem::invalid_input(
        "the Idempotency-Key header must be a string of 1 to 255 printable characters",
        vec![FieldError {
            pointer: "Idempotency-Key".into(),
            reason: "not a valid key".into(),
        }],
    )
}

/// What identifies the request a key was used for.
fn fingerprint(
    method: &Method,
    route: &str,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default()
    };
    for part in [
        method.as_str().as_bytes(),
        route.as_bytes(),
        parts.uri.path().as_bytes(),
        header(super::purpose::PURPOSE_HEADER),
        header("content-type"),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.update(body);
    hex::encode(ctx.finish())
}

/// Gives the key up if the request ends (a timeout drops it) before it
/// kept an answer or gave the key up itself.
struct Hold {
    db: Db,
    key: Option<KeyHold>,
}

impl Hold {
    fn done(&mut self) -> KeyHold {
        self.key.take().expect("a hold is done once")
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let db = self.db.clone();
            tokio::spawn(async move {
                // A few tries: the request may have ended because the
                // database was slow.
                for wait in [0, 500, 2000, 5000] {
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                    match db.release_idempotency_key(&key).await {
                        Ok(_) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, "an abandoned Idempotency-Key could not be given up yet")
                        }
                    }
                }
                tracing::warn!("an abandoned Idempotency-Key is taken over after its lease");
            });
        }
    }
}

/// Route middleware (after authentication): runs a write that carries an
/// `Idempotency-Key` once per key.
pub async fn idempotent(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let takes_key = OPERATIONS
        .iter()
        .any(|(m, r)| *m == req.method().as_str() && *r == route);
    let Some(value) = req.headers().get(HEADER).filter(|_| takes_key) else {
        return next.run(req).await;
    };
    if req.headers().get_all(HEADER).iter().count() > 1 {
        return invalid_key().into_response();
    }
    let Some(key) = parse_key(value) else {
        return invalid_key().into_response();
    };
    let (Some(principal), Some(ctx)) = (
        req.extensions().get::<Principal>().cloned(),
        req.extensions().get::<RequestContext>().cloned(),
    ) else {
        return Problem::internal().into_response();
    };
    let (mut parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, state.config.http.body_limit).await {
        Ok(b) => b,
        Err(_) => return Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE).into_response(),
    };
    let hold = KeyHold {
        partner: principal.partner.id.clone(),
        key_ref: state
            .pseudonyms
            .idempotency_ref(&principal.partner.id, &key),
        fingerprint: fingerprint(&parts.method, &route, &parts, &body),
        request_id: ctx.id.to_string(),
    };
    let http = &state.config.http;
    let times = ClaimTimes {
        now: crate::store::now_millis(),
        keep: http.idempotency_keep_secs as i64 * 1000,
        lease: lease_secs(http.request_timeout_secs) as i64 * 1000,
    };
    match state.db.claim_idempotency_key(&hold, times).await {
        Err(e) => Problem::from(e).into_response(),
        Ok(Claim::Held) => {
            if let Some(ctx) = parts.extensions.get_mut::<RequestContext>() {
                ctx.holds_idempotency_key = true;
            }
            let mut guard = Hold {
                db: state.db.clone(),
                key: Some(hold),
            };
            let res = next.run(Request::from_parts(parts, Body::from(body))).await;
            finish(&state, guard.done(), res).await
        }
        Ok(Claim::Replay(answer)) => replay(&state, answer),
        Ok(Claim::OtherRequest) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency-Key used for another request",
            "this Idempotency-Key was used for a different request; use a new key for a new request",
        )
        .into_response(),
        Ok(Claim::InProgress) => Problem::new(
            StatusCode::CONFLICT,
            "idempotency-key-in-use",
            "Request with this Idempotency-Key in progress",
            "the first request with this Idempotency-Key has not finished; retry later",
        )
        .into_response(),
        Ok(Claim::AnswerLost { log_index }) => Problem::new(
            StatusCode::CONFLICT,
            "idempotency-answer-lost",
            "Request with this Idempotency-Key carried out",
            format!(
                "the first request with this Idempotency-Key was carried out (disclosure log entry {log_index}), \
                 but its answer was not kept; it is not repeated"
            ),
        )
        .into_response(),
    }
}

/// How long a holder may run before its hold counts as abandoned: past
/// twice the request timeout a request has ended (its queued work dropped
/// unrun, or its batch bounded by the database deadlines), with a minute
/// to spare.
pub fn lease_secs(request_timeout_secs: u64) -> u64 {
    2 * request_timeout_secs.max(1) + 60
}

/// Keeps a successful answer, or gives the key up.
async fn finish(state: &AppState, hold: KeyHold, res: Response) -> Response {
    if !res.status().is_success() {
        if let Err(e) = state.db.release_idempotency_key(&hold).await {
            tracing::warn!(error = %e, "an Idempotency-Key could not be given up; it is taken over after its lease");
        }
        return res;
    }
    let (parts, body) = res.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => return Problem::internal().into_response(),
    };
    let headers: serde_json::Map<String, serde_json::Value> = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let v = parts.headers.get(*name)?.to_str().ok()?;
            Some((name.to_string(), v.into()))
        })
        .collect();
    let kept = match std::str::from_utf8(&body) {
        Ok(text) => Some(KeptAnswer {
            status: parts.status.as_u16(),
            headers: serde_json::Value::Object(headers).to_string(),
            body: state.cursors.seal(SEAL_SCOPE, text),
        }),
        Err(_) => None,
    };
    match kept {
        Some(kept) => {
            if let Err(e) = state.db.complete_idempotency_key(&hold, &kept).await {
                tracing::warn!(error = %e, "the answer for an Idempotency-Key could not be kept; a retry gets 409");
            }
        }
        None => tracing::warn!("an answer that is not UTF-8 is not kept for its Idempotency-Key"),
    }
    Response::from_parts(parts, Body::from(body))
}

/// The kept first answer, marked as a replay.
fn replay(state: &AppState, answer: KeptAnswer) -> Response {
    let Some(body) = state.cursors.open(SEAL_SCOPE, &answer.body) else {
        return Problem::internal().into_response();
    };
    let mut headers = HeaderMap::new();
    if let Ok(serde_json::Value::Object(kept)) = serde_json::from_str(&answer.headers) {
        for (name, value) in kept {
            if let (Ok(n), Some(Ok(v))) = (
                HeaderName::try_from(name),
                value.as_str().map(HeaderValue::from_str),
            ) {
                headers.insert(n, v);
            }
        }
    }
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    (status, headers, Bytes::from(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sf_strings_or_their_bare_characters() {
        let p = |s: &str| parse_key(&HeaderValue::from_str(s).unwrap());
        assert_eq!(p("\"abc-123\"").as_deref(), Some("abc-123"));
        assert_eq!(p("abc-123").as_deref(), Some("abc-123"));
        assert_eq!(p(r#""a\"b""#).as_deref(), Some("a\"b"));
        assert_eq!(p("\"\""), None);
        assert_eq!(p("\"open"), None);
        assert_eq!(p(r#""a\nb""#), None);
        assert_eq!(p(&"x".repeat(256)), None);
        assert!(p(&"x".repeat(255)).is_some());
    }

    #[test]
    fn the_lease_outlasts_any_request() {
        assert!(lease_secs(30) > 2 * 30);
        assert!(lease_secs(0) >= 60);
    }
}
