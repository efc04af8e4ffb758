//! Operational routes: liveness, readiness, the API description and "who am
//! I" for partner developers checking their token; and the metrics, served
//! on the operator listener only (`admin_app`).

use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::auth::Principal;
use crate::crypto::UserRef;
use crate::problem::Problem;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    status: &'static str,
    /// The revision of the policies in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_revision: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Status)))]
pub async fn healthz() -> axum::Json<Status> {
    axum::Json(Status {
        status: "ok",
        policy_revision: None,
    })
}

/// The database answers, the disclosure log can be written (after a failed
/// write, a write probe says so) and the policies are loaded (their revision
/// is shown). 503 says which of these fails, never an error's text.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Status), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Status>, Problem> {
    if !state.db.ping().await {
        return Err(Problem::unavailable("the database does not answer"));
    }
    if let Err(cause) = state.ledger.writable(Duration::from_secs(3)).await {
        return Err(Problem::unavailable(format!(
            "the disclosure log cannot be written: {cause}"
        )));
    }
    Ok(axum::Json(Status {
        status: "ready",
        policy_revision: Some(state.policy.current().revision().to_owned()),
    }))
}

/// Prometheus text exposition, on the operator listener (`admin.listen`)
/// only. Labels hold route templates, methods, status codes and reason codes
/// only.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// This OpenAPI 3 document. Served without authentication, with open CORS.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", responses((status = 200, content_type = "application/json")))]
pub async fn openapi(Extension(doc): Extension<OpenApiJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
        .into_response()
}

#[derive(Clone)]
pub struct OpenApiJson(pub std::sync::Arc<String>);

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    partner: String,
    display_name: String,
    kind: String,
    member: bool,
    role: String,
    /// The user's reference (`usr1:...`, a keyed hash of the token's `sub`):
    /// ketenpoort never echoes a token's own text.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    user: Option<UserRef>,
}

/// The caller as the gateway sees it: partner, kind, membership and role.
#[utoipa::path(get, path = "/v1/me", tag = "operations", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn me(principal: Principal) -> axum::Json<Me> {
    axum::Json(Me {
        partner: principal.partner.id.clone(),
        display_name: principal.partner.display_name.clone(),
        kind: principal.partner.kind.clone(),
        member: principal.partner.member,
        role: principal.role,
        user: principal.user,
    })
}
