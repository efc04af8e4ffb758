//! The token endpoint for partner systems (`POST /v1/oauth/token`, OAuth
//! 2.0 client credentials) and its metadata (RFC 8414). The grant itself
//! lives in `auth::client_credentials`; here: the request path — rate
//! limit, grant, log, respond. Every issuance, and every refusal to a
//! registered client, is a disclosure-log entry (`issue-token`; the token
//! itself never). A refusal before a client is known is not logged, as an
//! unauthenticated request is not: there is no one to log it under.
//!
//! Errors carry RFC 6749 §5.2's members (`error`, `error_description`)
//! inside an RFC 9457 problem (`application/problem+json`), as every error
//! of this API: OAuth clients read the members from the JSON body, and the
//! API Design Rules' problem format holds for this route as for the others.

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::auth::client_credentials::{self, Issued, OAuthError, TokenForm};
use crate::ledger::{Actor, Disclosed, Draft, LogAction, Outcome};
use crate::request::RequestContext;
use crate::tls::ClientCertificate;

/// The token form as the document describes it.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only; the form is read as `TokenForm`
pub struct TokenRequestForm {
    /// `client_credentials`.
    grant_type: String,
    /// One role the client is registered for; may be left out when it has
    /// only one.
    scope: Option<String>,
    /// The client (required with certificate authentication).
    client_id: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` for
    /// `private_key_jwt`.
    client_assertion_type: Option<String>,
    /// The signed assertion (RFC 7523): `iss` and `sub` the client id, `aud`
    /// the token endpoint's URL, `exp` within 5 minutes, a unique `jti`.
    client_assertion: Option<String>,
}

/// An issued access token (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
pub struct TokenIssued {
    access_token: String,
    /// `Bearer`; bound to the TLS client certificate when one was presented
    /// (RFC 8705: the token then works only on a connection with it).
    token_type: &'static str,
    /// Seconds.
    expires_in: u64,
    /// The role the token carries.
    scope: String,
}

/// An error of the token endpoint: a problem with RFC 6749's members.
#[derive(Serialize, ToSchema)]
pub struct OAuthProblem {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'static str,
    /// RFC 6749 §5.2 error code.
    error: &'static str,
    error_description: &'static str,
}

fn oauth_error(e: OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = OAuthProblem {
        kind: format!("urn:ketenpoort:problem:oauth-{}", e.code.replace('_', "-")),
        title: "Token request refused",
        status: status.as_u16(),
        detail: e.description,
        error: e.code,
        error_description: e.description,
    };
    let mut res = (status, Json(body)).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::problem::CONTENT_TYPE),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if status == StatusCode::TOO_MANY_REQUESTS {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if status == StatusCode::UNAUTHORIZED {
        // RFC 6749 §5.2: a 401 names the authentication schemes.
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ketenpoort\""),
        );
    }
    res
}

/// Get an access token for a registered partner system (OAuth 2.0 client
/// credentials): client authentication by TLS client certificate (RFC 8705)
/// or `private_key_jwt` (RFC 7523). The token lives minutes and is bound to
/// the certificate presented.
#[utoipa::path(post, path = "/v1/oauth/token", tag = "oauth", security(("mutualTLS" = [])),
    request_body(content = TokenRequestForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenIssued),
        (status = 400, body = OAuthProblem, content_type = "application/problem+json"),
        (status = 401, body = OAuthProblem, content_type = "application/problem+json")))]
pub async fn token(
    State(state): State<AppState>,
    ctx: RequestContext,
    cert: Option<Extension<ClientCertificate>>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Disclosed<Response>, Response> {
    let Ok(Form(form)) = form else {
        return Err(oauth_error(OAuthError {
            code: "invalid_request",
            description: "the body must be an application/x-www-form-urlencoded token request",
        }));
    };
    let cert = cert.map(|Extension(c)| c).unwrap_or_default();
    let limit = state.gate.rate_limit();
    match client_credentials::grant(
        &state.db,
        &state.config,
        state.gate.signer(),
        limit,
        &form,
        cert,
    )
    .await
    {
        Ok(issued) => {
            let receipt = state
                .ledger
                .log(entry(&state, &ctx, &issued))
                .await
                .map_err(|p| crate::problem::Problem::from(p).into_response())?;
            let body = TokenIssued {
                access_token: issued.access_token,
                token_type: "Bearer",
                expires_in: issued.expires_in,
                scope: issued.role,
            };
            let mut res = Json(body).into_response();
            res.headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            Ok(receipt.disclose(res))
        }
        Err(refused) => {
            if let Some((client, partner)) = &refused.client {
                let mut draft = Draft::new(
                    &ctx,
                    actor(&state, &partner.id, "?", &client.id),
                    LogAction::IssueToken,
                )
                .resources([format!("client:{}", client.id)]);
                draft.outcome = Outcome::Denied;
                draft.decision.reasons = vec![refused.error.code.to_owned()];
                if let Err(p) = state.ledger.log(draft).await {
                    return Err(crate::problem::Problem::from(p).into_response());
                }
            }
            metrics::counter!("ketenpoort_token_endpoint_refusals_total", "error" => refused.error.code)
                .increment(1);
            Err(oauth_error(refused.error))
        }
    }
}

fn actor(state: &AppState, partner: &str, role: &str, client: &str) -> Actor {
    Actor {
        partner: partner.to_owned(),
        role: role.to_owned(),
        user: Some(state.pseudonyms.user_ref(partner, client)),
    }
}

/// The entry of an issuance: the client's partner and role, the client as
/// the user (its reference), no token.
fn entry(state: &AppState, ctx: &RequestContext, issued: &Issued) -> Draft {
    let mut draft = Draft::new(
        ctx,
        actor(state, &issued.partner.id, &issued.role, &issued.client.id),
        LogAction::IssueToken,
    )
    .resources([format!("client:{}", issued.client.id)]);
    draft.decision.reasons = vec![if issued.bound {
        "certificate-bound".to_owned()
    } else {
        "unbound".to_owned()
    }];
    draft
}

/// RFC 8414 authorization server metadata.
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    issuer: String,
    token_endpoint: String,
    grant_types_supported: Vec<&'static str>,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    tls_client_certificate_bound_access_tokens: bool,
    /// The covenant's roles: what `scope` may name.
    scopes_supported: Vec<String>,
}

/// How partner systems get tokens: the token endpoint, the grant and the
/// client authentication methods (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    responses((status = 200, body = ServerMetadata)))]
pub async fn metadata(State(state): State<AppState>) -> Json<ServerMetadata> {
    let cfg = &state.config;
    let policies = state.policy.current();
    let mut roles: Vec<String> = policies
        .data()
        .pointer("/covenant/kinds")
        .and_then(|k| k.as_object())
        .into_iter()
        .flat_map(|kinds| kinds.values())
        .filter_map(|kind| kind["roles"].as_array())
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    roles.sort();
    roles.dedup();
    Json(ServerMetadata {
        issuer: cfg.auth.issuer.clone(),
        token_endpoint: client_credentials::token_endpoint(cfg),
        grant_types_supported: vec!["client_credentials"],
        token_endpoint_auth_methods_supported: vec![
            "tls_client_auth",
            "self_signed_tls_client_auth",
            "private_key_jwt",
        ],
        token_endpoint_auth_signing_alg_values_supported: vec!["EdDSA", "ES256", "RS256", "PS256"],
        tls_client_certificate_bound_access_tokens: true,
        scopes_supported: roles,
    })
}
