//! Dry run: what would a recipient get for a purpose, for a signal with
//! these facts? A pure policy question — no record is read, nothing is
//! disclosed, nothing is logged.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::extract;
use super::purpose::{self, party};
use crate::auth::Principal;
use crate::partners::Partner;
use crate::policy::model::{Party, ReferralFact, SignalFacts};
use crate::policy::{Action, Decision, Input};
use crate::problem::{FieldError, Problem};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DryRun {
    /// `refer` (the caller refers to the recipient) or `deliver` (the
    /// recipient, in `role`, receives a referral).
    action: DryRunAction,
    purpose: String,
    /// Partner id.
    recipient: String,
    /// The recipient's role (for `deliver`).
    role: Option<String>,
    /// Facts of a hypothetical signal.
    forms: Vec<String>,
    #[serde(default)]
    victim_minor: bool,
    #[serde(default)]
    domestic_setting: bool,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum DryRunAction {
    Refer,
    Deliver,
}

/// Evaluate the covenant policy without any exchange.
#[utoipa::path(post, path = "/v1/decisions", tag = "decisions", security(("bearer" = [])), request_body = DryRun,
    responses((status = 200, body = Decision), (status = 422, body = Problem)))]
pub async fn dry_run(
    State(state): State<AppState>,
    principal: Principal,
    extract::Json(q): extract::Json<DryRun>,
) -> Result<Json<Decision>, Problem> {
    let Some(recipient) = state
        .db
        .partner(&q.recipient)
        .await?
        .filter(|_| crate::partners::is_slug(&q.recipient))
    else {
        return Err(Problem::unprocessable(
            "unknown recipient",
            vec![FieldError {
                pointer: "/recipient".into(),
                reason: "unknown partner".into(),
            }],
        ));
    };
    if let Some(e) = purpose::body_error(&state.policy.current(), None, &q.purpose) {
        return Err(Problem::unprocessable("unknown purpose", vec![e]));
    }
    let input = q.input(&principal, &recipient);
    Ok(Json(state.policy.decide(&input)))
}

impl DryRun {
    /// The policy input of the dry run: a signal with these facts, referred
    /// by the caller's partner, or delivered to the recipient in `role`.
    fn input(self, principal: &Principal, recipient: &Partner) -> Input {
        let facts = SignalFacts {
            reporter: principal.partner.id.clone(),
            municipality: "buiten-drenthe".into(),
            forms: self.forms,
            victim_minor: self.victim_minor,
            domestic_setting: self.domestic_setting,
            referrals: vec![ReferralFact {
                partner: recipient.id.clone(),
                purpose: self.purpose.clone(),
            }],
            status: crate::signals::STATUS_REFERRED.into(),
        };
        let caller: Party = party(&principal.partner, Some(&principal.role));
        let (action, principal, recipient) = match self.action {
            DryRunAction::Refer => (Action::Refer, caller, Some(party(recipient, None))),
            DryRunAction::Deliver => (
                Action::Deliver,
                party(recipient, self.role.as_deref()),
                None,
            ),
        };
        Input {
            action,
            purpose: self.purpose,
            principal,
            recipient,
            signal: Some(facts),
            audit: None,
            transition: None,
            feedback: None,
        }
    }
}
