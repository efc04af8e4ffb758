//! Authentication: a bearer JWT (optionally bound to a TLS client
//! certificate) becomes a [`Principal`], or the request ends here with 401/403.
//! A refusal after the token verified and named a registered partner is a
//! `deny` entry in the disclosure log, under the token's partner and role.

pub mod client_credentials;
pub mod issuers;
pub mod rate_limit;
pub mod token;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;

use crate::crypto::{Pseudonymizer, UserRef};
use crate::ledger::{Actor, Ledger, Outcome, RefusalSite, log_refusal};
use crate::partners::{Partner, Registry};
use crate::policy::PolicyEngine;
use crate::problem::Problem;
use crate::tls::ClientCertificate;
pub use rate_limit::RateLimit;
pub use token::{Signer, Verifier};

/// The authenticated caller: a partner organisation acting in one role.
#[derive(Clone, Debug, Serialize)]
pub struct Principal {
    pub partner: Arc<Partner>,
    pub role: String,
    /// The user within the partner, when the token names one: as its
    /// keyed reference, never the token's `sub` (the caller's own text).
    pub user: Option<UserRef>,
}

/// The principal as the disclosure log names it.
impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Self {
        Actor {
            partner: p.partner.id.clone(),
            role: p.role.clone(),
            user: p.user.clone(),
        }
    }
}

/// What the authentication layer needs: the authenticator, the rate limit
/// its logged refusals draw on, and the log they are written to.
#[derive(Clone)]
pub struct Gate(Arc<GateParts>);

struct GateParts {
    authenticator: Authenticator,
    rate_limit: RateLimit,
    ledger: Ledger,
    policy: PolicyEngine,
    /// ketenpoort's own issuer, for the token endpoint (its key read once).
    signer: Signer,
}

impl Gate {
    pub fn new(
        authenticator: Authenticator,
        rate_limit: RateLimit,
        ledger: Ledger,
        policy: PolicyEngine,
        signer: Signer,
    ) -> Self {
        Self(Arc::new(GateParts {
            authenticator,
            rate_limit,
            ledger,
            policy,
            signer,
        }))
    }

    pub fn rate_limit(&self) -> &RateLimit {
        &self.0.rate_limit
    }

    pub fn signer(&self) -> &Signer {
        &self.0.signer
    }
}

#[derive(Clone)]
pub struct Authenticator {
    verifier: Arc<Verifier>,
    registry: Registry,
    /// Makes the user's reference from a token's `sub`.
    refs: Pseudonymizer,
    /// Whether `tls.client_ca` is configured: then a registered client
    /// certificate is required on every authenticated request.
    require_client_cert: bool,
}

impl Authenticator {
    pub fn new(
        verifier: Verifier,
        registry: Registry,
        refs: Pseudonymizer,
        require_client_cert: bool,
    ) -> Self {
        Self {
            verifier: Arc::new(verifier),
            registry,
            refs,
            require_client_cert,
        }
    }

    async fn authenticate(&self, parts: &Parts) -> Result<Principal, Refusal> {
        let token = bearer(parts).ok_or_else(|| Problem::unauthorized("token-missing"))?;
        let claims = self
            .verifier
            .verify(token)
            .await
            .map_err(|e| Problem::unauthorized(e.code()))?;
        let partner = self
            .registry
            .get(&claims.partner)
            .await
            .map_err(Problem::from)?
            .ok_or_else(|| Problem::unauthorized("partner-unknown"))?;
        let user = claims.sub.map(|sub| self.refs.user_ref(&partner.id, &sub));
        let principal = Principal {
            partner,
            role: claims.role,
            user,
        };
        let bound = claims.x5t_s256.as_deref();
        match self.admit(&principal, bound, parts) {
            Ok(()) => Ok(principal),
            Err(problem) => Err(Refusal {
                problem,
                of: Some(principal),
            }),
        }
    }

    /// The checks after the token verified: the partner is active, the role
    /// is registered for it, and the certificate is the one required.
    fn admit(&self, p: &Principal, bound: Option<&str>, parts: &Parts) -> Result<(), Problem> {
        if !p.partner.is_active() {
            return Err(Problem::forbidden(
                "partner-suspended",
                "this partner is suspended in the registry",
            ));
        }
        if !p.partner.roles.contains(&p.role) {
            return Err(Problem::forbidden(
                "role-not-allowed",
                "the token's role is not registered for this partner",
            ));
        }
        let cert = parts
            .extensions
            .get::<ClientCertificate>()
            .and_then(|c| c.fingerprint);
        if let Some(x5t) = bound {
            // RFC 8705: a bound token is only valid with the certificate it names.
            let presented =
                cert.map(|fp| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fp));
            if presented.as_deref() != Some(x5t) {
                return Err(Problem::unauthorized("token-certificate-mismatch"));
            }
        }
        if self.require_client_cert {
            let fp = cert.ok_or_else(|| Problem::unauthorized("client-certificate-missing"))?;
            if !p
                .partner
                .cert_fingerprints
                .iter()
                .any(|f| *f == hex::encode(fp))
            {
                return Err(Problem::forbidden(
                    "client-certificate-not-registered",
                    "the client certificate is not registered for the token's partner",
                ));
            }
            // A partner registered with an OIN: the certificate (verified
            // against tls.client_ca) must name that OIN in its subject.
            if let Some(oin) = &p.partner.oin {
                let presented = parts
                    .extensions
                    .get::<ClientCertificate>()
                    .and_then(|c| c.oin);
                if presented.as_ref().map(|o| o.as_str()) != Some(oin.as_str()) {
                    return Err(Problem::forbidden(
                        "client-certificate-oin-mismatch",
                        "the client certificate does not carry the OIN registered for the token's partner",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Why a request was refused, and under whose name it is logged: the
/// token's principal once the token verified and named a registered partner
/// (before that, there is no one to log it under).
struct Refusal {
    problem: Problem,
    of: Option<Principal>,
}

impl From<Problem> for Refusal {
    fn from(problem: Problem) -> Self {
        Self { problem, of: None }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Middleware: authenticates and stores the [`Principal`] for the layers and
/// handlers after it. A refusal under a principal is logged first; if that
/// fails, the answer is the failure (503).
pub async fn require_principal(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let gate = &gate.0;
    match gate.authenticator.authenticate(&parts).await {
        Ok(p) => {
            parts.extensions.insert(p);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(Refusal { problem, of }) => {
            metrics::counter!("ketenpoort_auth_failures_total", "code" => problem.code_str().to_owned()).increment(1);
            tracing::info!(status = problem.status().as_u16(), "authentication refused");
            if let Some(principal) = of {
                // A refusal is a durable log entry: it draws on the partner's
                // rate limit, so a stolen token cannot grow the log unbounded.
                if let Err(limited) = gate.rate_limit.check(&principal.partner.id) {
                    return limited.into_response();
                }
                let site = RefusalSite::of(&parts.extensions);
                let reasons = vec![problem.code_str().to_owned()];
                let mut actor = Actor::from(&principal);
                // An unregistered role is the token's text: logged only if
                // it is a role of the covenant, otherwise as `?`.
                let data = gate.policy.current();
                if !principal.partner.roles.contains(&principal.role)
                    && !crate::policy::model::is_covenant_role(data.data(), &principal.role)
                {
                    actor.role = "?".into();
                }
                if let Err(p) =
                    log_refusal(&gate.ledger, &site, actor, reasons, Outcome::Denied).await
                {
                    return p.into_response();
                }
            }
            problem.into_response()
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Problem::unauthorized("token-missing"))
    }
}
