//! What every exchange handler does between authentication and response:
//! read the purpose, ask the policy, log a refusal, attach the receipt.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::middleware::RequestContext;
use super::problem::Problem;
use crate::auth::Principal;
use crate::ledger::{DecisionRecord, Draft, LogAction, Outcome, RECEIPT_HEADER, Receipt};
use crate::policy::{Decision, Input, Mode, Policies, model::Party};

pub const PURPOSE_HEADER: &str = "ketenpoort-purpose";

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

/// The policy's view of a partner.
pub fn party(p: &crate::partners::Partner, role: Option<&str>) -> Party {
    Party {
        partner: p.id.clone(),
        kind: p.kind.clone(),
        member: p.member,
        role: role.map(str::to_owned),
        status: p.status.as_str().to_owned(),
    }
}

/// One exchange being decided: who asks, for which purpose.
pub struct Exchange<'a> {
    pub state: &'a AppState,
    pub ctx: &'a RequestContext,
    pub principal: &'a Principal,
    pub purpose: Option<String>,
}

impl Exchange<'_> {
    /// The policy input for `action`, the principal as caller.
    pub fn input(&self, action: crate::policy::Action) -> Input {
        Input {
            action,
            purpose: self.purpose.clone().unwrap_or_default(),
            principal: party(&self.principal.partner, Some(&self.principal.role)),
            recipient: None,
            signal: None,
            audit: None,
        }
    }

    /// The purpose as it may be written to the log: only ids the policy
    /// data knows (a header value is the caller's text, not ours to log).
    fn logged_purpose(&self) -> Option<&str> {
        self.purpose
            .as_deref()
            .filter(|p| self.state.policy.current().is_known_purpose(p))
    }

    /// A log draft for this exchange with the decision recorded.
    pub fn draft(&self, action: LogAction, decision: &Decision) -> Draft {
        Draft::new(self.ctx, self.principal, action).decided(self.logged_purpose(), decision)
    }

    /// The purpose header, if the policy may be asked with it: present, and
    /// a purpose of the covenant. Otherwise the refusal code.
    fn checked_purpose(&self, policies: &Policies) -> Result<&str, &'static str> {
        match self.purpose.as_deref() {
            None => Err("purpose-missing"),
            Some(p) if !policies.is_known_purpose(p) => Err("purpose-unknown"),
            Some(p) => Ok(p),
        }
    }

    /// The purpose of a route that decides record by record (a list, the
    /// inbox): present and one of the covenant's, checked before any record
    /// is looked at, so a bad header is a logged refusal rather than an
    /// empty page.
    pub async fn known_purpose(&self, log_as: LogAction) -> Result<String, Problem> {
        let policies = self.state.policy.current();
        let code = match self.checked_purpose(&policies) {
            Ok(p) => return Ok(p.to_owned()),
            Err(code) => code,
        };
        let decision = Decision::deny(code, policies.revision());
        self.state
            .ledger
            .record(self.draft(log_as, &decision))
            .await?;
        Err(refusal(
            code,
            "name a purpose of the covenant in the Ketenpoort-Purpose header",
        ))
    }

    /// Decides `input`; a refusal is logged (with `resources`) and becomes a
    /// 403 carrying the policy's reason code (a 422 for an unknown purpose).
    pub async fn decide(
        &self,
        input: &Input,
        log_as: LogAction,
        resources: Vec<String>,
    ) -> Result<Decision, Problem> {
        let policies = self.state.policy.current();
        let decision = match self.checked_purpose(&policies) {
            Ok(_) => policies.decide(input),
            Err(code) => Decision::deny(code, policies.revision()),
        };
        if decision.allow {
            return Ok(decision);
        }
        self.state
            .ledger
            .record(self.draft(log_as, &decision).resources(resources))
            .await?;
        let code = decision
            .reasons
            .first()
            .cloned()
            .unwrap_or_else(|| "denied".into());
        Err(refusal(
            &code,
            "the covenant policy does not allow this exchange",
        ))
    }
}

/// The answer to a logged refusal: 403 with the reason code, except for a
/// purpose id the covenant does not know, which is bad input like an
/// unknown recipient (422, still with the code).
fn refusal(code: &str, detail: &str) -> Problem {
    if code == "purpose-unknown" {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-purpose",
            "Unknown purpose",
        )
        .code(code)
        .detail("the Ketenpoort-Purpose header names no purpose of the covenant");
    }
    Problem::forbidden(code, detail)
}

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

/// Logs a refusal made before any handler ran (authentication, the route
/// gate, the egress guard): action `deny`, the route template as resource,
/// the reasons. Without a request context there is nothing to log it
/// under, so the request fails (fail closed).
pub async fn log_refusal(
    s: &AppState,
    site: &RefusalSite,
    principal: &Principal,
    reasons: Vec<String>,
    outcome: Outcome,
) -> Result<(), Problem> {
    let Some(ctx) = &site.ctx else {
        tracing::error!("a refusal without a request context: not logged, request failed");
        return Err(Problem::internal());
    };
    let mut draft = Draft::new(ctx, principal, LogAction::Deny)
        .resources([format!("route:{}", site.route)])
        .outcome(outcome);
    draft.decision = DecisionRecord {
        mode: "deny".into(),
        reasons,
    };
    s.ledger.record(draft).await?;
    Ok(())
}

/// Adds the `Ketenpoort-Receipt` header to a disclosing response.
pub fn with_receipt(receipt: Receipt, body: impl IntoResponse) -> Response {
    let mut res = body.into_response();
    res.headers_mut().insert(
        RECEIPT_HEADER,
        HeaderValue::from_str(&receipt.header_value()).expect("receipt header is ASCII"),
    );
    res
}

/// The one log entry of a page of records (a list, an inbox pull): every
/// record, subject and field disclosed on the page, and every decision's
/// reasons.
#[derive(Default)]
pub struct PageLog {
    resources: Vec<String>,
    subjects: Vec<String>,
    fields: Vec<String>,
    reasons: Vec<String>,
    masked: bool,
    first: Option<Decision>,
}

impl PageLog {
    /// One record disclosed under decision `d`.
    pub fn disclosed(&mut self, resource: String, subjects: Vec<String>, d: Decision) {
        self.resources.push(resource);
        self.subjects.extend(subjects);
        self.fields.extend(d.fields.iter().cloned());
        self.reasons.extend(d.reasons.iter().cloned());
        self.masked |= d.mode != Mode::Full;
        self.first.get_or_insert(d);
    }

    /// The page's entry. A page on which nothing could be disclosed is
    /// logged as a refusal (`no-record-allowed`).
    pub fn draft(mut self, x: &Exchange<'_>, action: LogAction) -> Draft {
        self.reasons.sort();
        self.reasons.dedup();
        let decision = match self.first {
            Some(d) => Decision {
                fields: self.fields,
                reasons: self.reasons,
                mode: if self.masked {
                    Mode::Masked
                } else {
                    Mode::Full
                },
                ..d
            },
            None => Decision::deny("no-record-allowed", x.state.policy.current().revision()),
        };
        x.draft(action, &decision)
            .resources(self.resources)
            .subjects(self.subjects)
    }
}
