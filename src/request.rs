//! One request's identity as every layer below the HTTP API sees it: the
//! request id and the W3C trace id, set by the first tower layer
//! (`api::middleware::conventions`) and read by handlers and by the
//! disclosure log. Nothing personal: both are ids ketenpoort checked.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::problem::Problem;

/// Identifies one request in logs, the disclosure log and the response.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub id: Uuid,
    /// W3C trace id (32 lowercase hex): the caller's, or a new one.
    pub trace_id: String,
    /// The request holds an `Idempotency-Key` (`api::idempotency`): its
    /// disclosed entry marks the key in the same transaction.
    pub holds_idempotency_key: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .ok_or_else(Problem::internal)
    }
}
