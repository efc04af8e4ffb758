//! The token endpoint's grant: OAuth 2.0 client credentials (RFC 6749
//! §4.4) for partner systems registered as clients. A client proves who it
//! is with its TLS client certificate (RFC 8705: `tls_client_auth` by the
//! subject's OIN under `tls.client_ca`, or `self_signed_tls_client_auth` by
//! the certificate's fingerprint) or with a signed JWT assertion (RFC 7523
//! `private_key_jwt`), and gets a short-lived token signed by ketenpoort,
//! bound to the certificate it presented (`cnf.x5t#S256`), for one of its
//! roles (`scope`).

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::token::{Signer, TokenRequest};
use crate::config::Config;
use crate::model::client::{Client, Credential};
use crate::model::partner::{Partner, PartnerStatus};
use crate::store::Db;
use crate::tls::ClientCertificate;

/// The form of a token request (`application/x-www-form-urlencoded`).
#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

/// RFC 7523's client assertion type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An RFC 6749 §5.2 error: its code and a description with nothing of the
/// request in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OAuthError {
    pub code: &'static str,
    pub description: &'static str,
}

impl OAuthError {
    const fn new(code: &'static str, description: &'static str) -> Self {
        Self { code, description }
    }

    /// 401 for a client that failed to authenticate, 429 for one over its
    /// partner's rate, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self.code {
            "invalid_client" => 401,
            "temporarily_unavailable" => 429,
            _ => 400,
        }
    }
}

const UNSUPPORTED_GRANT: OAuthError = OAuthError::new(
    "unsupported_grant_type",
    "only grant_type=client_credentials is supported",
);
const NO_CLIENT: OAuthError = OAuthError::new(
    "invalid_client",
    "client authentication failed: unknown client, or no credentials",
);
const CERT_MISMATCH: OAuthError = OAuthError::new(
    "invalid_client",
    "client authentication failed: the TLS client certificate is not the client's",
);
const BAD_ASSERTION: OAuthError = OAuthError::new(
    "invalid_client",
    "client authentication failed: the client assertion is invalid",
);
const REPLAYED: OAuthError = OAuthError::new(
    "invalid_client",
    "client authentication failed: the client assertion was used before",
);
const SUSPENDED: OAuthError =
    OAuthError::new("invalid_client", "the client or its partner is suspended");
const METHOD: OAuthError = OAuthError::new(
    "invalid_client",
    "client authentication failed: the client is registered for another authentication method",
);
const NO_CA: OAuthError = OAuthError::new(
    "invalid_client",
    "tls_client_auth needs a client CA (tls.client_ca) on this gateway",
);
const BAD_SCOPE: OAuthError = OAuthError::new(
    "invalid_scope",
    "scope must be one role the client is registered for",
);
const THROTTLED: OAuthError = OAuthError::new(
    "temporarily_unavailable",
    "too many token requests for this partner; retry shortly",
);
const AMBIGUOUS: OAuthError = OAuthError::new(
    "invalid_request",
    "the request names the client inconsistently, or more than one way",
);

/// An issued token.
pub struct Issued {
    pub client: Client,
    pub partner: Partner,
    pub role: String,
    pub access_token: String,
    pub expires_in: u64,
    /// The token is bound to the TLS client certificate.
    pub bound: bool,
}

/// A refusal, with the registered client it concerns when there is one
/// (its refusal is logged under its partner).
pub struct Refused {
    pub error: OAuthError,
    pub client: Option<(Client, Partner)>,
}

impl From<OAuthError> for Refused {
    fn from(error: OAuthError) -> Self {
        Self {
            error,
            client: None,
        }
    }
}

/// The token endpoint's audience for client assertions (RFC 7523 §3: the
/// token endpoint's URL; the issuer is accepted as well).
pub fn token_endpoint(cfg: &Config) -> String {
    format!("{}/v1/oauth/token", cfg.public_url())
}

/// Grants (or refuses) a token for `form` on a connection that presented
/// `cert`.
/// `limit` is the per-partner rate, charged once the request names a
/// registered client (so its keys are the registry's partners, never the
/// caller's text).
pub async fn grant(
    db: &Db,
    cfg: &Config,
    signer: &Signer,
    limit: &crate::auth::RateLimit,
    form: &TokenForm,
    cert: ClientCertificate,
) -> Result<Issued, Refused> {
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(UNSUPPORTED_GRANT.into());
    }
    let (client, assertion) = identify(db, form).await?;
    if limit.check(&format!("oauth:{}", client.partner)).is_err() {
        return Err(THROTTLED.into());
    }
    let partner = db
        .partner(&client.partner)
        .await
        .ok()
        .flatten()
        .ok_or(NO_CLIENT)?;
    let refuse = |error: OAuthError| Refused {
        error,
        client: Some((client.clone(), partner.clone())),
    };
    authenticate(db, cfg, &client, assertion.as_deref(), cert)
        .await
        .map_err(refuse)?;
    if client.status != PartnerStatus::Active || !partner.is_active() {
        return Err(refuse(SUSPENDED));
    }
    let role = scope(&client, &partner, form.scope.as_deref()).map_err(refuse)?;
    let ttl = cfg.auth.client_token_ttl_secs.clamp(5, 3600);
    let req = TokenRequest {
        partner: &partner.id,
        role: &role,
        user: Some(&client.id),
        ttl: std::time::Duration::from_secs(ttl),
        cert_fingerprint: cert.fingerprint,
    };
    let access_token = signer.issue(&req).map_err(|e| {
        tracing::error!(error = %e, "the token endpoint could not sign a token");
        refuse(OAuthError::new(
            "server_error",
            "the token could not be signed",
        ))
    })?;
    Ok(Issued {
        client,
        partner,
        role,
        access_token,
        expires_in: ttl,
        bound: cert.fingerprint.is_some(),
    })
}

/// The client the request names (`client_id`, or the assertion's `sub`),
/// and the assertion, if one was sent.
async fn identify(db: &Db, form: &TokenForm) -> Result<(Client, Option<String>), OAuthError> {
    let assertion = match (&form.client_assertion_type, &form.client_assertion) {
        (None, None) => None,
        (Some(t), Some(a)) if t == JWT_BEARER => Some(a.clone()),
        _ => return Err(BAD_ASSERTION),
    };
    let from_assertion = match &assertion {
        Some(a) => Some(unverified_subject(a).ok_or(BAD_ASSERTION)?),
        None => None,
    };
    let id = match (&form.client_id, from_assertion) {
        (Some(a), Some(b)) if *a != b => return Err(AMBIGUOUS),
        (Some(a), _) => a.clone(),
        (None, Some(b)) => b,
        (None, None) => return Err(NO_CLIENT),
    };
    if !crate::model::partner::is_slug(&id) {
        return Err(NO_CLIENT);
    }
    let client = db.client(&id).await.ok().flatten().ok_or(NO_CLIENT)?;
    Ok((client, assertion))
}

/// The `sub` of an assertion, before its signature is checked: only to
/// find the client whose keys check it.
fn unverified_subject(assertion: &str) -> Option<String> {
    use base64::Engine;
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["sub"].as_str().map(str::to_owned)
}

/// Checks the client's credentials by its registered method.
async fn authenticate(
    db: &Db,
    cfg: &Config,
    client: &Client,
    assertion: Option<&str>,
    cert: ClientCertificate,
) -> Result<(), OAuthError> {
    match (&client.auth, assertion) {
        (Credential::SelfSignedTlsClientAuth { cert_fingerprint }, None) => {
            match cert.fingerprint {
                Some(fp) if hex::encode(fp) == *cert_fingerprint => Ok(()),
                _ => Err(CERT_MISMATCH),
            }
        }
        (Credential::TlsClientAuth { oin }, None) => {
            if cfg.tls.client_ca.is_none() {
                return Err(NO_CA);
            }
            match cert.oin {
                Some(presented) if presented.as_str() == oin => Ok(()),
                _ => Err(CERT_MISMATCH),
            }
        }
        (Credential::PrivateKeyJwt { jwks }, Some(assertion)) => {
            let jti = verify_assertion(cfg, client, jwks, assertion)?;
            match db
                .remember_assertion(&client.id, &jti.0, jti.1 as i64 * 1000)
                .await
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(REPLAYED),
                Err(e) => {
                    tracing::error!(error = %e, "a client assertion's jti could not be stored");
                    Err(OAuthError::new(
                        "server_error",
                        "the assertion could not be checked",
                    ))
                }
            }
        }
        _ => Err(METHOD),
    }
}

#[derive(Deserialize)]
struct AssertionClaims {
    jti: String,
    exp: u64,
}

/// Longest lifetime of a client assertion, in seconds.
const ASSERTION_MAX_LIFETIME: u64 = 300;

/// Verifies a `private_key_jwt` assertion against the client's keys; its
/// (jti, exp) for the replay check.
fn verify_assertion(
    cfg: &Config,
    client: &Client,
    jwks: &str,
    assertion: &str,
) -> Result<(String, u64), OAuthError> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| BAD_ASSERTION)?;
    if !matches!(
        header.alg,
        Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256 | Algorithm::PS256
    ) {
        return Err(BAD_ASSERTION);
    }
    let set: JwkSet = serde_json::from_str(jwks).map_err(|_| BAD_ASSERTION)?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[token_endpoint(cfg), cfg.auth.issuer.clone()]);
    validation.set_issuer(&[&client.id]);
    validation.sub = Some(client.id.clone());
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = cfg.auth.leeway_secs;
    for jwk in &set.keys {
        if header.kid.is_some() && jwk.common.key_id != header.kid {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if let Ok(data) = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation) {
            let now = jsonwebtoken::get_current_timestamp();
            if data.claims.exp > now + ASSERTION_MAX_LIFETIME || data.claims.jti.is_empty() {
                return Err(BAD_ASSERTION);
            }
            return Ok((data.claims.jti, data.claims.exp));
        }
    }
    Err(BAD_ASSERTION)
}

/// The role asked for: `scope` (one role), or the client's only role.
fn scope(client: &Client, partner: &Partner, asked: Option<&str>) -> Result<String, OAuthError> {
    let role = match asked.map(str::trim) {
        Some(s) if !s.is_empty() => {
            if s.contains(' ') {
                return Err(BAD_SCOPE);
            }
            s.to_owned()
        }
        _ => match client.roles.as_slice() {
            [only] => only.clone(),
            _ => return Err(BAD_SCOPE),
        },
    };
    if client.roles.contains(&role) && partner.roles.contains(&role) {
        Ok(role)
    } else {
        Err(BAD_SCOPE)
    }
}
