//! External issuers: each partner's own identity provider
//! (`[[auth.providers]]`), trusted for the partners listed for it only.
//!
//! An issuer with an `audience` is trusted for API tokens. Its key set
//! (JWKS, from `jwks_uri` or from OIDC discovery at `<issuer>/.well-known/
//! openid-configuration`) is fetched at start, again every
//! `jwks_refresh_secs` by a background task, and when a token names an
//! unknown `kid` — at most once per `jwks_min_refresh_secs`, so a stream of
//! made-up `kid`s cannot turn the gateway into a client of the provider
//! (or of anyone). A fetch that fails, times out or answers something that
//! is not a usable JWKS changes nothing: the last good key set stays in
//! force, a metric counts the failure and a warning names the issuer and
//! the kind of failure (never a key, never the body). Requests never wait
//! for a scheduled fetch; only a token with an unknown `kid` waits for the
//! on-demand one (bounded by the client's timeout).
//!
//! A token's header chooses nothing but a key of the configured set by
//! `kid`: `jku`, `x5u`, `jwk` and `x5c` are ignored, symmetric algorithms
//! are never accepted, and a JWK's own `alg` must agree with the token's.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

use super::token::{TokenError, Verified, classify, parse_alg};
use crate::config::{AuthConfig, ProviderConfig};

/// Largest discovery document or JWKS read (bytes).
const MAX_BODY: usize = 256 * 1024;
/// Most keys taken from one JWKS.
const MAX_KEYS: usize = 32;
/// Most values of a role claim looked at.
const MAX_ROLE_VALUES: usize = 64;

/// Checks what every entry of `[[auth.providers]]` needs, whatever it is
/// used for: a unique slug id, a unique issuer that is not ketenpoort's
/// own, partners, and a use (API tokens or console sign-in).
pub fn check_providers(auth: &AuthConfig) -> anyhow::Result<()> {
    let mut ids = HashSet::new();
    let mut issuers = HashSet::new();
    for p in &auth.providers {
        if !crate::partners::is_slug(&p.id) {
            bail!("auth.providers: id {:?} must be a lowercase slug", p.id);
        }
        if !ids.insert(p.id.as_str()) {
            bail!("auth.providers: id {:?} appears twice", p.id);
        }
        if !issuers.insert(p.issuer.as_str()) {
            bail!(
                "auth.providers {}: issuer {:?} is configured twice",
                p.id,
                p.issuer
            );
        }
        if p.issuer == auth.issuer {
            bail!(
                "auth.providers {}: issuer is ketenpoort's own (auth.issuer)",
                p.id
            );
        }
        if p.partners.is_empty() {
            bail!(
                "auth.providers {}: partners must name at least one partner",
                p.id
            );
        }
        if p.partner_claim.is_none() && p.partners.len() != 1 {
            bail!(
                "auth.providers {}: with several partners, partner_claim must say which claim names the partner",
                p.id
            );
        }
        if p.audience.is_none() && p.client_id.is_none() {
            bail!(
                "auth.providers {}: set audience (API tokens), client_id (console sign-in), or both",
                p.id
            );
        }
        check_url(&p.issuer).with_context(|| format!("auth.providers {}: issuer", p.id))?;
        if let Some(u) = &p.jwks_uri {
            check_url(u).with_context(|| format!("auth.providers {}: jwks_uri", p.id))?;
        }
    }
    Ok(())
}

/// An https URL, or http on a loopback address (tests, a local proxy).
pub fn check_url(url: &str) -> anyhow::Result<()> {
    let u = reqwest::Url::parse(url).context("not a URL")?;
    let host = u.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => bail!("must be https (http only on a loopback address)"),
    }
}

/// reqwest on rustls (ring): the public web roots and the provider's own
/// CA, no redirects followed, short timeouts.
pub fn http_client(cfg: &ProviderConfig) -> anyhow::Result<reqwest::Client> {
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
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// The value at `path` in `claims`: the claim of that exact name, or else
/// a dotted path into nested objects (`realm_access.roles`).
pub fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut cur = claims;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Who a provider's token says the user is, after the mapping.
#[derive(Debug)]
pub struct Mapped {
    pub partner: String,
    pub role: String,
    pub user: String,
}

/// Why the claims did not map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No partner, or one this issuer may not speak for.
    Partner,
    /// No role, several, or one not in the table.
    Role,
    /// No user.
    User,
}

/// Partner, role and user from a verified token's claims, as `cfg`
/// configures; a partner outside `cfg.partners` is refused.
pub fn map_claims(cfg: &ProviderConfig, claims: &Value) -> Result<Mapped, MapError> {
    let text = |path: &str| {
        claim(claims, path)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let partner = match &cfg.partner_claim {
        Some(c) => text(c).ok_or(MapError::Partner)?,
        None => cfg.partners.first().cloned().ok_or(MapError::Partner)?,
    };
    if !cfg.partners.contains(&partner) {
        return Err(MapError::Partner);
    }
    let values: Vec<&str> = match claim(claims, &cfg.role_claim) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a
            .iter()
            .take(MAX_ROLE_VALUES)
            .filter_map(Value::as_str)
            .collect(),
        _ => Vec::new(),
    };
    let mut roles: Vec<String> = values
        .into_iter()
        .filter_map(|v| {
            if cfg.roles.is_empty() {
                Some(v.to_owned())
            } else {
                cfg.roles.get(v).cloned()
            }
        })
        .collect();
    roles.sort();
    roles.dedup();
    let role = match roles.as_slice() {
        [one] if crate::partners::is_slug(one) => one.clone(),
        _ => return Err(MapError::Role),
    };
    let user = text(&cfg.user_claim).ok_or(MapError::User)?;
    Ok(Mapped {
        partner,
        role,
        user,
    })
}

/// One key of a fetched set.
struct SetKey {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// Why a fetch failed: the kind only, for the warning.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("unreachable or timed out")]
    Unreachable,
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("the answer is too large")]
    TooLarge,
    #[error("the discovery document is invalid or names another issuer")]
    Discovery,
    #[error("the answer is not a JWKS")]
    NotJwks,
    #[error("the JWKS holds no usable key")]
    NoKey,
}

/// An external issuer trusted for API tokens, and its current key set.
pub struct External {
    pub cfg: ProviderConfig,
    audience: String,
    allowed: HashSet<Algorithm>,
    keys: RwLock<Arc<Vec<SetKey>>>,
    http: reqwest::Client,
    /// When the last fetch for an unknown `kid` began.
    on_demand: tokio::sync::Mutex<Option<Instant>>,
}

impl External {
    /// The issuer of `cfg` if it is trusted for API tokens (`audience`).
    pub fn from_config(cfg: &ProviderConfig) -> anyhow::Result<Option<Self>> {
        let Some(audience) = cfg.audience.clone() else {
            return Ok(None);
        };
        let mut allowed = HashSet::new();
        for a in &cfg.algorithms {
            let alg = parse_alg(a).with_context(|| format!("auth.providers {}", cfg.id))?;
            if alg == Algorithm::HS256 {
                bail!(
                    "auth.providers {}: HS256 is never accepted from an external issuer",
                    cfg.id
                );
            }
            allowed.insert(alg);
        }
        anyhow::ensure!(
            !allowed.is_empty(),
            "auth.providers {}: algorithms is empty",
            cfg.id
        );
        anyhow::ensure!(
            cfg.jwks_refresh_secs >= 1,
            "auth.providers {}: jwks_refresh_secs must be at least 1",
            cfg.id
        );
        Ok(Some(Self {
            cfg: cfg.clone(),
            audience,
            allowed,
            keys: RwLock::new(Arc::new(Vec::new())),
            http: http_client(cfg)?,
            on_demand: tokio::sync::Mutex::new(None),
        }))
    }

    fn key_set(&self) -> Arc<Vec<SetKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Verifies `token` (whose header is `header`) against this issuer's
    /// keys, audience and algorithms, then maps its claims.
    pub fn verify(
        &self,
        token: &str,
        header: &Header,
        leeway: u64,
    ) -> Result<Verified, TokenError> {
        if !self.allowed.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let set = self.key_set();
        let candidates: Vec<&SetKey> = set
            .iter()
            .filter(|k| match &header.kid {
                Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
                None => true,
            })
            .filter(|k| k.alg.is_none_or(|a| a == header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(if header.kid.is_some() {
                TokenError::UnknownKey
            } else {
                TokenError::Signature
            });
        }
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.validate_nbf = true;
        v.leeway = leeway;
        let mut last = TokenError::Signature;
        for k in candidates {
            match jsonwebtoken::decode::<Value>(token, &k.key, &v) {
                Ok(data) => return self.verified(&data.claims),
                Err(e) => last = classify(&e)?,
            }
        }
        Err(last)
    }

    fn verified(&self, claims: &Value) -> Result<Verified, TokenError> {
        let m = map_claims(&self.cfg, claims).map_err(|e| match e {
            MapError::Partner => TokenError::Partner,
            MapError::Role | MapError::User => TokenError::Claims,
        })?;
        Ok(Verified {
            partner: m.partner,
            role: m.role,
            sub: Some(m.user),
            x5t_s256: claims
                .pointer("/cnf/x5t#S256")
                .and_then(Value::as_str)
                .map(str::to_owned),
            exp: claims["exp"].as_u64().unwrap_or(0),
            nbf: claims["nbf"].as_u64().unwrap_or(0),
        })
    }

    /// Fetches the key set and puts it in force; on failure the last good
    /// one stays. Whether a new set is in force.
    pub async fn refresh(&self) -> bool {
        let id = self.cfg.id.clone();
        match self.fetch().await {
            Ok(set) => {
                let n = set.len();
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                metrics::counter!("ketenpoort_jwks_fetches_total", "issuer" => id.clone(), "outcome" => "ok")
                    .increment(1);
                metrics::gauge!("ketenpoort_jwks_keys", "issuer" => id).set(n as f64);
                true
            }
            Err(e) => {
                metrics::counter!("ketenpoort_jwks_fetches_total", "issuer" => id.clone(), "outcome" => "failed")
                    .increment(1);
                tracing::warn!(
                    issuer = %id,
                    error = %e,
                    keys_in_force = self.key_set().len(),
                    "fetching an issuer's key set failed; the last good key set stays in force"
                );
                false
            }
        }
    }

    /// A fetch for a token with an unknown `kid`: at most one per
    /// `jwks_min_refresh_secs`; concurrent callers wait for the one in
    /// flight rather than start their own.
    pub async fn refresh_on_demand(&self) {
        let mut last = self.on_demand.lock().await;
        let min = Duration::from_secs(self.cfg.jwks_min_refresh_secs);
        if last.is_some_and(|t| t.elapsed() < min) {
            return;
        }
        *last = Some(Instant::now());
        self.refresh().await;
    }

    /// The scheduled fetches, for as long as the server runs.
    pub fn spawn_refresher(self: Arc<Self>) {
        tokio::spawn(async move {
            let period = Duration::from_secs(self.cfg.jwks_refresh_secs.max(1));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.refresh().await;
            }
        });
    }

    async fn fetch(&self) -> Result<Vec<SetKey>, FetchError> {
        let url = match &self.cfg.jwks_uri {
            Some(u) => u.clone(),
            None => self.discover().await?,
        };
        parse_jwks(&self.get(&url).await?, &self.allowed)
    }

    /// The `jwks_uri` of the issuer's discovery document, which must name
    /// this issuer.
    async fn discover(&self) -> Result<String, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let doc: Value =
            serde_json::from_slice(&self.get(&url).await?).map_err(|_| FetchError::Discovery)?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.cfg.issuer.as_str()) {
            return Err(FetchError::Discovery);
        }
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or(FetchError::Discovery)?;
        check_url(jwks).map_err(|_| FetchError::Discovery)?;
        Ok(jwks.to_owned())
    }

    /// GET `url`: a 2xx answer of at most `MAX_BODY` bytes.
    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let mut res = self
            .http
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|_| FetchError::Unreachable)?;
        if !res.status().is_success() {
            return Err(FetchError::Status(res.status().as_u16()));
        }
        if res.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|_| FetchError::Unreachable)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err(FetchError::TooLarge);
            }
        }
        Ok(body)
    }
}

/// The usable signing keys of a JWKS: asymmetric, `use` absent or `sig`,
/// `alg` absent or one of `allowed`; others are skipped, and a set with none
/// is a failure.
fn parse_jwks(body: &[u8], allowed: &HashSet<Algorithm>) -> Result<Vec<SetKey>, FetchError> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| FetchError::NotJwks)?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(FetchError::NotJwks)?;
    let mut keys = Vec::new();
    for k in list.iter().take(MAX_KEYS) {
        if k.get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
            continue;
        };
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            continue;
        }
        let alg = match &jwk.common.key_algorithm {
            Some(a) => match parse_alg(&a.to_string()) {
                Ok(a) if allowed.contains(&a) => Some(a),
                _ => continue,
            },
            None => None,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(SetKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err(FetchError::NoKey);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(v: Value) -> ProviderConfig {
        let mut base = serde_json::json!({
            "id": "idp", "issuer": "https://login.example", "audience": "api", "partners": ["emmen"],
        });
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn nested_role_claims_and_the_role_table() {
        let keycloak = provider(serde_json::json!({
            "role_claim": "realm_access.roles",
            "roles": {"ketenpoort-fg": "fg", "ketenpoort-ar": "aandachtfunctionaris-sociaal"},
        }));
        let claims = serde_json::json!({"sub": "u", "realm_access": {"roles": ["offline_access", "ketenpoort-fg"]}});
        let m = map_claims(&keycloak, &claims).unwrap();
        assert_eq!(
            (m.partner.as_str(), m.role.as_str(), m.user.as_str()),
            ("emmen", "fg", "u")
        );
        // Two mapped roles: ambiguous, refused.
        let two = serde_json::json!({"sub": "u", "realm_access": {"roles": ["ketenpoort-fg", "ketenpoort-ar"]}});
        assert_eq!(map_claims(&keycloak, &two).unwrap_err(), MapError::Role);
        // An unlisted value does not pass through a table.
        let raw = serde_json::json!({"sub": "u", "realm_access": {"roles": ["fg"]}});
        assert_eq!(map_claims(&keycloak, &raw).unwrap_err(), MapError::Role);
        // A claim whose name holds dots is found by its name first.
        let entra = provider(serde_json::json!({"role_claim": "http://schemas.example/role"}));
        let m = map_claims(
            &entra,
            &serde_json::json!({"sub": "u", "http://schemas.example/role": "fg"}),
        )
        .unwrap();
        assert_eq!(m.role, "fg");
        assert_eq!(
            map_claims(
                &entra,
                &serde_json::json!({"http://schemas.example/role": "fg"})
            )
            .unwrap_err(),
            MapError::User
        );
    }

    #[test]
    fn jwks_parsing_skips_what_it_cannot_use() {
        let all: HashSet<Algorithm> = [Algorithm::RS256, Algorithm::EdDSA].into();
        assert!(matches!(
            parse_jwks(b"<html>", &all),
            Err(FetchError::NotJwks)
        ));
        assert!(matches!(
            parse_jwks(b"{\"keys\": 3}", &all),
            Err(FetchError::NotJwks)
        ));
        let only_secret =
            br#"{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","alg":"HS256"}]}"#;
        assert!(matches!(
            parse_jwks(only_secret, &all),
            Err(FetchError::NoKey)
        ));
        let mixed = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"enc","use":"enc"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a","alg":"EdDSA"},
            {"kty":"whatever"}
        ]}"#;
        let keys = parse_jwks(mixed, &all).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
    }

    #[test]
    fn urls_must_be_https_unless_loopback() {
        assert!(check_url("https://login.example").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://login.example/jwks").is_err());
        assert!(check_url("file:///etc/passwd").is_err());
        assert!(check_url("not a url").is_err());
    }
}
