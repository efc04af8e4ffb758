//! Sign-in through a partner's own OpenID Connect provider: the
//! authorization code flow with PKCE and a nonce (the `openidconnect`
//! crate), over reqwest on rustls. The ID token is verified by
//! `openidconnect` (signature against the provider's JWKS, issuer,
//! audience, expiry, nonce); its claims are then mapped to partner and role
//! by configuration, and an issuer signs in only users of its own partners.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::config::ProviderConfig;

/// A configured provider and the HTTP client that reaches it.
pub struct Provider {
    pub cfg: ProviderConfig,
    secret: Option<String>,
    redirect: String,
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

impl Provider {
    pub fn from_config(cfg: &ProviderConfig, public_url: &str) -> anyhow::Result<Self> {
        if !crate::partners::is_slug(&cfg.id) {
            bail!("auth.providers: id {:?} must be a lowercase slug", cfg.id);
        }
        if cfg.partners.is_empty() {
            bail!(
                "auth.providers {}: partners must name at least one partner",
                cfg.id
            );
        }
        if cfg.partner_claim.is_none() && cfg.partners.len() != 1 {
            bail!(
                "auth.providers {}: with several partners, partner_claim must say which claim names the partner",
                cfg.id
            );
        }
        let secret = match (&cfg.client_secret, &cfg.client_secret_file) {
            (Some(s), None) => Some(s.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("auth.providers {}: client_secret_file", cfg.id))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
            (Some(_), Some(_)) => {
                bail!(
                    "auth.providers {}: client_secret or client_secret_file, not both",
                    cfg.id
                )
            }
        };
        IssuerUrl::new(cfg.issuer.clone())
            .with_context(|| format!("auth.providers {}: issuer is no URL", cfg.id))?;
        Ok(Self {
            cfg: cfg.clone(),
            secret,
            redirect: format!("{public_url}/console/oidc/terug"),
            http: http_client(cfg)?,
        })
    }

    pub fn name(&self) -> &str {
        self.cfg.name.as_deref().unwrap_or(&self.cfg.id)
    }

    async fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        SignInError,
    > {
        let http = self.http.clone();
        let call = move |req| fetch(http.clone(), req);
        let issuer =
            IssuerUrl::new(self.cfg.issuer.clone()).map_err(|e| SignInError::Provider(e.into()))?;
        let meta = CoreProviderMetadata::discover_async(issuer, &call)
            .await
            .map_err(|e| SignInError::Provider(e.into()))?;
        let redirect =
            RedirectUrl::new(self.redirect.clone()).map_err(|e| SignInError::Provider(e.into()))?;
        Ok(CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.cfg.client_id.clone()),
            self.secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// The provider's authorization URL for a new sign-in, and what to keep
    /// until it redirects back.
    pub async fn start(&self) -> Result<(String, Pending), SignInError> {
        let client = self.client().await?;
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

    /// Exchanges the code, verifies the ID token and maps its claims.
    pub async fn finish(&self, code: &str, pending: &Pending) -> Result<Identity, SignInError> {
        let client = self.client().await?;
        let http = self.http.clone();
        let call = move |req| fetch(http.clone(), req);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SignInError::Provider(e.into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&call)
            .await
            .map_err(|e| SignInError::Provider(anyhow!("token request: {e}")))?;
        use openidconnect::OAuth2TokenResponse as _;
        let _ = tokens.access_token();
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

    /// Partner and role from the claims, as configured; a partner outside
    /// `partners` is refused.
    pub fn map_claims(&self, claims: &serde_json::Value) -> Result<Identity, SignInError> {
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let partner = match &self.cfg.partner_claim {
            Some(c) => text(c).ok_or(SignInError::Mapping)?,
            None => self.cfg.partners[0].clone(),
        };
        if !self.cfg.partners.contains(&partner) {
            return Err(SignInError::Mapping);
        }
        let raw_role = text(&self.cfg.role_claim).ok_or(SignInError::Mapping)?;
        let role = self.cfg.roles.get(&raw_role).cloned().unwrap_or(raw_role);
        let subject = text(&self.cfg.user_claim).ok_or(SignInError::Mapping)?;
        if !crate::partners::is_slug(&role) {
            return Err(SignInError::Mapping);
        }
        Ok(Identity {
            partner,
            role,
            subject,
        })
    }
}

/// reqwest on rustls (ring): the public web roots and the provider's own CA,
/// no redirects followed, short timeouts.
fn http_client(cfg: &ProviderConfig) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &cfg.ca_file {
        for c in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("auth.providers {}: ca_file", cfg.id))?
        {
            roots.add(c.with_context(|| format!("auth.providers {}: ca_file", cfg.id))?)?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()?)
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
            .map_claims(&serde_json::json!({"sub": "u", "org": "zvhd", "ketenpoort_role": "fg"}))
            .unwrap();
        assert_eq!(id.partner, "emmen");
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
