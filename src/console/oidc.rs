//! Sign-in through a partner's own OpenID Connect provider: the
//! authorization code flow with PKCE and a nonce (the `openidconnect`
//! crate), over reqwest on rustls. The ID token is verified by
//! `openidconnect` (signature against the provider's JWKS, issuer,
//! audience, expiry, nonce); its claims are then mapped to partner and role
//! by configuration, and an issuer signs in only users of its own partners.

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, LogoutRequest, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    RedirectUrl, Scope,
};
use serde::{Deserialize, Serialize};

use crate::auth::issuers::{self, MapError};
use crate::config::ProviderConfig;

/// How the console authenticates to the provider's token endpoint.
enum ClientAuth {
    /// A public client (PKCE only).
    None,
    /// `client_secret_basic`.
    Secret(String),
    /// `private_key_jwt` (RFC 7523): a short assertion signed with this key.
    Key {
        key: EncodingKey,
        alg: Algorithm,
        kid: Option<String>,
    },
}

/// A configured provider and the HTTP client that reaches it.
pub struct Provider {
    pub cfg: ProviderConfig,
    client_id: String,
    auth: ClientAuth,
    redirect: String,
    /// Where the provider sends the browser after RP-initiated logout.
    after_logout: String,
    http: reqwest::Client,
}

/// What a sign-in in progress keeps server-side until the provider
/// redirects back (`console_sessions.pending`).
#[derive(Serialize, Deserialize)]
pub struct Pending {
    pub provider: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Who the provider says signed in, before the console admits them.
pub struct Identity {
    pub partner: String,
    pub role: String,
    pub subject: String,
}

/// Why a sign-in through a provider failed (logged as its kind only).
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the provider could not be reached or answered wrongly")]
    Provider(#[source] anyhow::Error),
    #[error("the ID token did not verify")]
    Token(#[source] anyhow::Error),
    #[error("the ID token names no partner or role this provider may sign in")]
    Mapping,
}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// Lifetime of a client assertion, in seconds.
const ASSERTION_TTL: u64 = 60;

impl Provider {
    pub fn from_config(cfg: &ProviderConfig, public_url: &str) -> anyhow::Result<Self> {
        let id = &cfg.id;
        if !crate::partners::is_slug(id) {
            bail!("auth.providers: id {id:?} must be a lowercase slug");
        }
        if cfg.partners.is_empty() {
            bail!("auth.providers {id}: partners must name at least one partner");
        }
        if cfg.partner_claim.is_none() && cfg.partners.len() != 1 {
            bail!(
                "auth.providers {id}: with several partners, partner_claim must say which claim names the partner"
            );
        }
        let client_id = cfg
            .client_id
            .clone()
            .with_context(|| format!("auth.providers {id}: console sign-in needs client_id"))?;
        let auth = match (
            &cfg.client_secret,
            &cfg.client_secret_file,
            &cfg.client_key_file,
        ) {
            (None, None, None) => ClientAuth::None,
            (Some(s), None, None) => ClientAuth::Secret(s.clone()),
            (None, Some(f), None) => ClientAuth::Secret(
                std::fs::read_to_string(f)
                    .with_context(|| format!("auth.providers {id}: client_secret_file"))?
                    .trim()
                    .to_owned(),
            ),
            (None, None, Some(f)) => {
                let pem = std::fs::read(f)
                    .with_context(|| format!("auth.providers {id}: client_key_file"))?;
                let (alg, key) = match cfg.client_key_alg.as_str() {
                    "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
                    "PS256" => (Algorithm::PS256, EncodingKey::from_rsa_pem(&pem)),
                    "ES256" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
                    "EdDSA" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem)),
                    other => bail!(
                        "auth.providers {id}: client_key_alg {other:?} (RS256, PS256, ES256 or EdDSA)"
                    ),
                };
                let key = key.map_err(|_| {
                    anyhow!(
                        "auth.providers {id}: client_key_file holds no {} private key (PKCS#8 PEM)",
                        cfg.client_key_alg
                    )
                })?;
                ClientAuth::Key {
                    key,
                    alg,
                    kid: cfg.client_key_id.clone(),
                }
            }
            _ => bail!(
                "auth.providers {id}: one of client_secret, client_secret_file and client_key_file"
            ),
        };
        IssuerUrl::new(cfg.issuer.clone())
            .with_context(|| format!("auth.providers {id}: issuer is no URL"))?;
        issuers::check_url(&cfg.issuer).with_context(|| format!("auth.providers {id}: issuer"))?;
        Ok(Self {
            cfg: cfg.clone(),
            client_id,
            auth,
            redirect: format!("{public_url}/console/oidc/terug"),
            after_logout: format!("{public_url}/console/aanmelden"),
            http: issuers::http_client(cfg)?,
        })
    }

    pub fn name(&self) -> &str {
        self.cfg.name.as_deref().unwrap_or(&self.cfg.id)
    }

    async fn discover(&self) -> Result<ProviderMetadataWithLogout, SignInError> {
        let http = self.http.clone();
        let call = move |req| fetch(http.clone(), req);
        let issuer =
            IssuerUrl::new(self.cfg.issuer.clone()).map_err(|e| SignInError::Provider(e.into()))?;
        ProviderMetadataWithLogout::discover_async(issuer, &call)
            .await
            .map_err(|e| SignInError::Provider(e.into()))
    }

    async fn client(&self) -> Result<(Client, Option<String>), SignInError> {
        let meta = self.discover().await?;
        let token_endpoint = meta.token_endpoint().map(|u| u.url().to_string());
        let redirect =
            RedirectUrl::new(self.redirect.clone()).map_err(|e| SignInError::Provider(e.into()))?;
        let secret = match &self.auth {
            ClientAuth::Secret(s) => Some(ClientSecret::new(s.clone())),
            _ => None,
        };
        let client =
            CoreClient::from_provider_metadata(meta, ClientId::new(self.client_id.clone()), secret)
                .set_redirect_uri(redirect);
        Ok((client, token_endpoint))
    }

    /// The provider's authorization URL for a new sign-in, and what to keep
    /// until it redirects back.
    pub async fn start(&self) -> Result<(String, Pending), SignInError> {
        let (client, _) = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &self.cfg.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.url();
        Ok((
            url.to_string(),
            Pending {
                provider: self.cfg.id.clone(),
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    /// A `private_key_jwt` client assertion for `token_endpoint` (RFC 7523
    /// §3: `iss` and `sub` the client id, `aud` the token endpoint, a fresh
    /// `jti`, one minute).
    fn assertion(&self, token_endpoint: &str) -> Result<Option<String>, SignInError> {
        let ClientAuth::Key { key, alg, kid } = &self.auth else {
            return Ok(None);
        };
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_endpoint,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_TTL,
        });
        let mut header = jsonwebtoken::Header::new(*alg);
        header.kid = kid.clone();
        jsonwebtoken::encode(&header, &claims, key)
            .map(Some)
            .map_err(|e| SignInError::Provider(anyhow!("signing the client assertion: {e}")))
    }

    /// Exchanges the code, verifies the ID token and maps its claims.
    pub async fn finish(&self, code: &str, pending: &Pending) -> Result<Identity, SignInError> {
        let (client, token_endpoint) = self.client().await?;
        let http = self.http.clone();
        let call = move |req| fetch(http.clone(), req);
        let mut exchange = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SignInError::Provider(e.into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()));
        if let Some(endpoint) = &token_endpoint
            && let Some(assertion) = self.assertion(endpoint)?
        {
            exchange = exchange
                .add_extra_param(
                    "client_assertion_type",
                    crate::auth::client_credentials::JWT_BEARER,
                )
                .add_extra_param("client_assertion", assertion);
        }
        let tokens = exchange
            .request_async(&call)
            .await
            .map_err(|e| SignInError::Provider(anyhow!("token request: {e}")))?;
        let id_token = openidconnect::TokenResponse::id_token(&tokens)
            .ok_or_else(|| SignInError::Token(anyhow!("no ID token")))?;
        let verifier = client.id_token_verifier();
        id_token
            .claims(&verifier, &Nonce::new(pending.nonce.clone()))
            .map_err(|e| SignInError::Token(e.into()))?;
        // Verified above: read the claims the mapping names from its payload.
        let payload = id_token
            .to_string()
            .split('.')
            .nth(1)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .ok_or_else(|| SignInError::Token(anyhow!("ID token payload")))?;
        self.map_claims(&payload)
    }

    /// Where to send the browser to end its session at the provider too
    /// (OpenID Connect RP-Initiated Logout: the discovered
    /// `end_session_endpoint`, with the client id and the console's sign-in
    /// page to come back to). `None`: the provider has none, or could not
    /// be reached; the console's own session ends all the same.
    pub async fn end_session_url(&self) -> Option<String> {
        let meta = match self.discover().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(provider = %self.cfg.id, error = %e, "the provider's logout endpoint could not be discovered; signed out locally only");
                return None;
            }
        };
        let endpoint = meta.additional_metadata().end_session_endpoint.clone()?;
        issuers::check_url(endpoint.url().as_str()).ok()?;
        let back = PostLogoutRedirectUrl::new(self.after_logout.clone()).ok()?;
        Some(
            LogoutRequest::from(endpoint)
                .set_client_id(ClientId::new(self.client_id.clone()))
                .set_post_logout_redirect_uri(back)
                .http_get_url()
                .to_string(),
        )
    }

    /// Partner and role from the claims, as configured; a partner outside
    /// `partners` is refused.
    pub fn map_claims(&self, claims: &serde_json::Value) -> Result<Identity, SignInError> {
        match issuers::map_claims(&self.cfg, claims) {
            Ok(m) => Ok(Identity {
                partner: m.partner,
                role: m.role,
                subject: m.user,
            }),
            Err(MapError::Partner | MapError::Role | MapError::User) => Err(SignInError::Mapping),
        }
    }
}

/// One HTTP exchange for `openidconnect`.
async fn fetch(
    client: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let res = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut out = http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        out = out.header(k, v);
    }
    let body = res.bytes().await?.to_vec();
    Ok(out.body(body).expect("a response from a response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(partners: &[&str], partner_claim: Option<&str>) -> Provider {
        let cfg: ProviderConfig = serde_json::from_value(serde_json::json!({
            "id": "idp",
            "issuer": "https://login.example",
            "client_id": "console",
            "partners": partners,
            "partner_claim": partner_claim,
            "roles": {"privacy-officer": "fg"},
        }))
        .unwrap();
        Provider::from_config(&cfg, "https://ketenpoort.example").unwrap()
    }

    #[test]
    fn an_issuer_signs_in_only_users_of_its_own_partners() {
        let p = provider(&["emmen", "zvhd"], Some("org"));
        let ok = p
            .map_claims(&serde_json::json!({"sub": "u1", "org": "emmen", "ketenpoort_role": "privacy-officer"}))
            .unwrap();
        assert_eq!((ok.partner.as_str(), ok.role.as_str()), ("emmen", "fg"));
        for claims in [
            serde_json::json!({"sub": "u1", "org": "assen", "ketenpoort_role": "fg"}),
            serde_json::json!({"sub": "u1", "ketenpoort_role": "fg"}),
            serde_json::json!({"sub": "u1", "org": "emmen"}),
            serde_json::json!({"org": "emmen", "ketenpoort_role": "fg"}),
        ] {
            assert!(
                matches!(p.map_claims(&claims), Err(SignInError::Mapping)),
                "{claims}"
            );
        }
        // One partner, no partner claim: that partner, whatever else is said.
        let single = provider(&["emmen"], None);
        let id = single
            .map_claims(
                &serde_json::json!({"sub": "u", "org": "zvhd", "ketenpoort_role": "privacy-officer"}),
            )
            .unwrap();
        assert_eq!(id.partner, "emmen");
        // With a role table, only its values count: `fg` itself is not one.
        assert!(matches!(
            single.map_claims(&serde_json::json!({"sub": "u", "ketenpoort_role": "fg"})),
            Err(SignInError::Mapping)
        ));
    }

    #[test]
    fn several_partners_need_a_partner_claim() {
        let cfg: ProviderConfig = serde_json::from_value(serde_json::json!({
            "id": "idp", "issuer": "https://login.example", "client_id": "c",
            "partners": ["emmen", "zvhd"],
        }))
        .unwrap();
        assert!(Provider::from_config(&cfg, "https://k.example").is_err());
    }
}
