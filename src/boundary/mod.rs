//! Invariant 1, the RIEC boundary: no personal data reaches a partner outside
//! the covenant. Three independent layers: the policy gives non-members mode
//! `aggregate` at most (layer 1, `policies/`); this module's route gate keeps
//! non-member principals off every record route before any handler runs
//! (layer 2).

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::AppState;
use crate::api::middleware::RequestContext;
use crate::api::problem::Problem;
use crate::auth::Principal;
use crate::ledger::{DecisionRecord, Draft, LogAction, Outcome};

/// Route layer on every record route: covenant members only. A refusal is
/// logged (action `deny`, the route template as resource, no ids).
pub async fn members_only(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return Problem::unauthorized("token-missing").into_response();
    };
    if principal.partner.member {
        return next.run(req).await;
    }
    metrics::counter!("ketenpoort_boundary_refusals_total").increment(1);
    tracing::warn!("non-member principal refused on a record route");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    if let Some(ctx) = req.extensions().get::<RequestContext>() {
        let mut draft = Draft::new(ctx, &principal, LogAction::Deny)
            .resources([format!("route:{route}")])
            .outcome(Outcome::Denied);
        draft.decision = DecisionRecord {
            mode: "deny".into(),
            reasons: vec!["non-member-record-route".into()],
        };
        if let Err(e) = s.ledger.record(draft).await {
            return Problem::from(e).into_response();
        }
    }
    Problem::forbidden(
        "non-member-record-route",
        "partners outside the covenant receive phenomenon tables only",
    )
    .into_response()
}
