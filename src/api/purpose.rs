//! Invariant 6, purpose binding, and the exchange every handler decides.
//!
//! Every exchange names its purpose in the `Ketenpoort-Purpose` header
//! ([`Purpose`]). [`check`] is the one test of that claim — present, a
//! purpose of the covenant, and equal to any purpose the body names — and
//! every route asks it: through [`Exchange::decide`] before the policy, or
//! [`Exchange::known_purpose`] on routes that decide record by record.
//! Whether the purpose fits the actor's role, the legal basis and the
//! recipient is then the policy's decision (`policies/`).
//!
//! [`Exchange`] is the extractor that brings a handler the request context,
//! the principal and the purpose claim; its decisions are logged when they
//! refuse, and its grants ([`Granted`]) are what a record is projected
//! under and what the disclosure's log entry records.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::AppState;
use crate::auth::Principal;
use crate::ledger::{Actor, Draft};
use crate::partners::Partner;
use crate::policy::model::Party;
use crate::policy::{Action, Decision, Granted, Input, Policies};
use crate::problem::{FieldError, Problem};
use crate::request::RequestContext;

pub const PURPOSE_HEADER: &str = "ketenpoort-purpose";

/// The header as the OpenAPI document names it.
pub const PURPOSE_PARAMETER: &str = "Ketenpoort-Purpose";

/// The `Ketenpoort-Purpose` header as a documented parameter: every
/// operation that decides an exchange ([`Exchange::decide`] or
/// [`Exchange::known_purpose`]) lists it in `params(..)`, so a generated
/// client sends it. `api::finish_document` gives it the purpose ids (and
/// their descriptions) of the policy data.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only; the header is read by [`Purpose`]
pub struct PurposeHeader {
    /// The purpose of this exchange: a purpose id of the covenant.
    #[param(rename = "Ketenpoort-Purpose")]
    purpose: String,
}

/// The `Ketenpoort-Purpose` header: a purpose id from the policy data.
/// Absent → None (the exchange is then refused, invariant 5).
pub struct Purpose(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Purpose {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(PURPOSE_HEADER) {
            None => Ok(Purpose(None)),
            Some(v) => match v.to_str() {
                Ok(s) if crate::partners::is_slug(s) => Ok(Purpose(Some(s.to_owned()))),
                _ => Err(Problem::bad_request(
                    "the Ketenpoort-Purpose header must be a purpose id",
                )),
            },
        }
    }
}

/// Why a purpose claim fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unfit {
    /// No purpose named (refusal code `purpose-missing`).
    Missing,
    /// A purpose the covenant does not know (`purpose-unknown`).
    Unknown,
    /// The body names another purpose than the header.
    Differs,
}

impl Unfit {
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "purpose-missing",
            Self::Unknown => "purpose-unknown",
            Self::Differs => "purpose-differs",
        }
    }
}

/// The one test of a purpose claim: `named` (the header) is present and a
/// purpose of the covenant, and `body`, when the request names a purpose
/// in its body too, is one of the covenant's and the same.
pub fn check<'a>(
    policies: &Policies,
    named: Option<&'a str>,
    body: Option<&str>,
) -> Result<&'a str, Unfit> {
    if let Some(b) = body {
        if !policies.is_known_purpose(b) {
            return Err(Unfit::Unknown);
        }
        if named.is_some_and(|h| h != b) {
            return Err(Unfit::Differs);
        }
    }
    match named {
        None => Err(Unfit::Missing),
        Some(p) if !policies.is_known_purpose(p) => Err(Unfit::Unknown),
        Some(p) => Ok(p),
    }
}

/// A purpose named in a request body, as bad input: the failing field for
/// a 422 (an unknown purpose, or one the header contradicts).
pub fn body_error(policies: &Policies, named: Option<&str>, body: &str) -> Option<FieldError> {
    // With a body purpose, `Unknown` is the body's: a header that differs
    // from a known body purpose is `Differs` first.
    let reason = match check(policies, named, Some(body)) {
        Err(Unfit::Unknown) => "unknown purpose",
        Err(Unfit::Differs) => "differs from the Ketenpoort-Purpose header",
        Ok(_) | Err(Unfit::Missing) => return None,
    };
    Some(FieldError {
        pointer: "/purpose".into(),
        reason: reason.into(),
    })
}

/// The policy's view of a partner.
pub fn party(p: &Partner, role: Option<&str>) -> Party {
    Party {
        partner: p.id.clone(),
        kind: p.kind.clone(),
        member: p.member,
        role: role.map(str::to_owned),
        status: p.status.as_str().to_owned(),
    }
}

/// One exchange being decided: who asks, in which request, for which
/// purpose. Extracted after authentication.
pub struct Exchange {
    state: AppState,
    pub ctx: RequestContext,
    pub principal: Principal,
    purpose: Option<String>,
}

impl FromRequestParts<AppState> for Exchange {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let ctx = RequestContext::from_request_parts(parts, state).await?;
        let principal = Principal::from_request_parts(parts, state).await?;
        let Purpose(purpose) = Purpose::from_request_parts(parts, state).await?;
        Ok(Self {
            state: state.clone(),
            ctx,
            principal,
            purpose,
        })
    }
}

impl Exchange {
    /// The exchange of a principal signed in otherwise than by a bearer
    /// token (the privacy officer's console session), for `purpose`.
    pub fn signed_in(
        state: AppState,
        ctx: RequestContext,
        principal: Principal,
        purpose: &str,
    ) -> Self {
        Self {
            state,
            ctx,
            principal,
            purpose: Some(purpose.to_owned()),
        }
    }

    /// The purpose as named in the header (unchecked).
    pub fn named_purpose(&self) -> Option<&str> {
        self.purpose.as_deref()
    }

    /// The revision of the policies in force.
    pub fn policy_revision(&self) -> String {
        self.state.policy.current().revision().to_owned()
    }

    /// The policy input for `action`, the principal as caller.
    pub fn input(&self, action: Action) -> Input {
        Input {
            action,
            purpose: self.purpose.clone().unwrap_or_default(),
            principal: party(&self.principal.partner, Some(&self.principal.role)),
            recipient: None,
            signal: None,
            audit: None,
            transition: None,
            feedback: None,
        }
    }

    /// The purpose as it may be written to the log: only ids the policy
    /// data knows (a header value is the caller's text, not ours to log).
    fn logged_purpose(&self, policies: &Policies) -> Option<String> {
        check(policies, self.purpose.as_deref(), None)
            .ok()
            .map(str::to_owned)
    }

    /// A log draft for `action` under `decision` (a grant, a page's merged
    /// decision, or a refusal).
    pub(super) fn draft_for(&self, action: Action, decision: &Decision) -> Draft {
        let policies = self.state.policy.current();
        Draft::new(&self.ctx, Actor::from(&self.principal), action.into())
            .decided(self.logged_purpose(&policies).as_deref(), decision)
    }

    /// The log draft of a granted exchange.
    pub fn draft(&self, granted: &Granted) -> Draft {
        self.draft_for(granted.action(), granted.decision())
    }

    /// Logs `decision`, a refusal of `action` on `resources`.
    pub async fn log_refusal(
        &self,
        action: Action,
        decision: &Decision,
        resources: Vec<String>,
    ) -> Result<(), Problem> {
        let draft = self.draft_for(action, decision).resources(resources);
        self.state.ledger.log(draft).await?;
        Ok(())
    }

    /// The purpose of a route that decides record by record (a list, the
    /// inbox): present and one of the covenant's, checked before any record
    /// is looked at, so a bad header is a logged refusal rather than an
    /// empty page.
    pub async fn known_purpose(&self, action: Action) -> Result<String, Problem> {
        let policies = self.state.policy.current();
        let unfit = match check(&policies, self.purpose.as_deref(), None) {
            Ok(p) => return Ok(p.to_owned()),
            Err(unfit) => unfit,
        };
        let decision = Decision::deny(unfit.code(), policies.revision());
        self.log_refusal(action, &decision, Vec::new()).await?;
        Err(refusal(
            unfit.code(),
            "name a purpose of the covenant in the Ketenpoort-Purpose header",
        ))
    }

    /// Decides `input`; a refusal is logged (with `resources`) and becomes a
    /// 403 carrying the policy's reason code (a 422 for an unknown purpose).
    pub async fn decide(&self, input: &Input, resources: Vec<String>) -> Result<Granted, Problem> {
        let policies = self.state.policy.current();
        let decision = match check(&policies, self.purpose.as_deref(), None) {
            Ok(_) => policies.decide(input),
            Err(unfit) => Decision::deny(unfit.code(), policies.revision()),
        };
        let refused = match Granted::of(decision, input.action) {
            Ok(granted) => return Ok(granted),
            Err(refused) => refused,
        };
        self.log_refusal(input.action, &refused, resources).await?;
        let code = refused
            .reasons
            .first()
            .cloned()
            .unwrap_or_else(|| "denied".into());
        Err(refusal(
            &code,
            "the covenant policy does not allow this exchange",
        ))
    }

    /// Decides one record of a page whose purpose [`Exchange::known_purpose`]
    /// checked: a grant, or nothing (the page's one entry records what was
    /// disclosed, see `api::page`).
    pub fn decide_record(&self, input: &Input) -> Option<Granted> {
        Granted::of(self.state.policy.decide(input), input.action).ok()
    }
}

/// Refusals of a signal's change that are no refusal of the caller: a
/// status, closing reason or feedback code the covenant does not know is bad
/// input (422), a move the state machine does not allow from the signal's
/// status a conflict with its state (409). Each is logged all the same.
const CHANGE_REFUSALS: [(&str, StatusCode, &str); 6] = [
    (
        "status-unknown",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the status is none of the covenant's statuses",
    ),
    (
        "reason-unknown",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the closing reason is none of the covenant's",
    ),
    (
        "reason-missing",
        StatusCode::UNPROCESSABLE_ENTITY,
        "closing a signal needs a closing reason",
    ),
    (
        "reason-not-expected",
        StatusCode::UNPROCESSABLE_ENTITY,
        "only closing a signal takes a closing reason",
    ),
    (
        "feedback-unknown",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the feedback code is none of the covenant's",
    ),
    (
        "transition-not-allowed",
        StatusCode::CONFLICT,
        "the state machine does not allow this move from the signal's status",
    ),
];

/// The answer to a logged refusal: 403 with the reason code, except for a
/// purpose id the covenant does not know, which is bad input like an
/// unknown recipient (422, still with the code), and the refusals of a
/// change ([`CHANGE_REFUSALS`]).
fn refusal(code: &str, detail: &str) -> Problem {
    if let Some((_, status, detail)) = CHANGE_REFUSALS.iter().find(|(c, ..)| *c == code) {
        let (kind, title) = if *status == StatusCode::CONFLICT {
            ("illegal-transition", "Illegal transition")
        } else {
            ("unknown-code", "Unknown code")
        };
        return Problem::new(*status, kind, title, *detail).code(code);
    }
    if code == Unfit::Unknown.code() {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-purpose",
            "Unknown purpose",
            "the Ketenpoort-Purpose header names no purpose of the covenant",
        )
        .code(code);
    }
    Problem::forbidden(code, detail)
}
