//! The operator interface (`admin.listen`): which policies are in force, and
//! reloading them. Not a partner API: no tokens, not in the OpenAPI
//! document, reachable only on loopback or with an operator certificate.
//! A reload swaps the whole bundle at once, or is refused with the reason
//! while the running policies keep serving.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use super::AppState;
use crate::policy::Policies;
use crate::problem::Problem;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// SHA-256 of the policy files: the revision in every decision and log entry.
    revision: String,
    /// The revision the bundle's `.manifest` names, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle_revision: Option<String>,
    /// When this revision was loaded (RFC 3339).
    loaded_at: String,
    /// What decides: `checking` (the interpreter, while a thread checks the
    /// bytecode after load; about a second), `bytecode` (the policies
    /// compiled to regorus' VM, after agreeing with the interpreter on the
    /// conformance corpus) or `interpreter` (they did not: see the server
    /// log).
    engine: &'static str,
}

impl PolicyStatus {
    fn of(p: &Policies) -> Self {
        Self {
            revision: p.revision().to_owned(),
            bundle_revision: p.manifest_revision().map(str::to_owned),
            loaded_at: p.loaded_at().format(&Rfc3339).unwrap_or_default(),
            engine: p.engine(),
        }
    }
}

/// The policies in force.
#[utoipa::path(get, path = "/admin/policy", tag = "admin", responses((status = 200, body = PolicyStatus)))]
pub async fn policy(State(state): State<AppState>) -> Json<PolicyStatus> {
    Json(PolicyStatus::of(&state.policy.current()))
}

/// Reload the policies from `policy.path`: verified, compiled and tested
/// first, then swapped in whole; a refused bundle changes nothing.
#[utoipa::path(post, path = "/admin/policy/reload", tag = "admin",
    responses((status = 200, body = PolicyStatus), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn reload(State(state): State<AppState>) -> Result<Json<PolicyStatus>, Problem> {
    let engine = state.policy.clone();
    // Compiling and running the Rego tests takes a while: off the async threads.
    let reloaded = tokio::task::spawn_blocking(move || engine.reload())
        .await
        .map_err(|_| Problem::internal())?;
    match reloaded {
        Ok(p) => Ok(Json(PolicyStatus::of(&p))),
        Err(refusal) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy-refused",
            "Policies refused",
            format!("{refusal}; the running policies stay in force"),
        )
        .code(refusal.code())),
    }
}
