//! Refusals made before any handler ran — authentication, the RIEC route
//! gate, the egress guard — become `deny` entries here (invariant 2: a
//! refusal is logged like a disclosure). The handlers' own refusals go
//! through `api::exchange`, which logs them with the decision.

use axum::extract::MatchedPath;

use super::{Actor, DecisionRecord, Draft, Ledger, LogAction, Outcome};
use crate::problem::Problem;
use crate::request::RequestContext;

/// Where a request was refused before any handler ran, read from its
/// extensions (before the request moves on): the route template, never the
/// path (it may hold an id), and the request's context.
pub struct RefusalSite {
    route: String,
    ctx: Option<RequestContext>,
}

impl RefusalSite {
    pub fn of(extensions: &axum::http::Extensions) -> Self {
        Self {
            route: extensions
                .get::<MatchedPath>()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default(),
            ctx: extensions.get::<RequestContext>().cloned(),
        }
    }

    pub fn template(&self) -> &str {
        &self.route
    }
}

/// Logs a refusal made before any handler ran: action `deny`, the route
/// template as resource, the reasons. Without a request context there is
/// nothing to log it under, so the request fails (fail closed).
pub async fn log_refusal(
    ledger: &Ledger,
    site: &RefusalSite,
    actor: Actor,
    reasons: Vec<String>,
    outcome: Outcome,
) -> Result<(), Problem> {
    let Some(ctx) = &site.ctx else {
        tracing::error!("a refusal without a request context: not logged, request failed");
        return Err(Problem::internal());
    };
    let mut draft = Draft::new(ctx, actor, LogAction::Deny)
        .resources([format!("route:{}", site.route)])
        .outcome(outcome);
    draft.decision = DecisionRecord {
        mode: "deny".into(),
        reasons,
    };
    ledger.log(draft).await?;
    Ok(())
}
