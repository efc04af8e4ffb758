//! Bearer tokens: what ketenpoort accepts (verification) and what its own
//! issuer signs (the token endpoint, the demo and `ketenpoort token issue`).
//!
//! The trusted issuers are ketenpoort's own (`auth.issuer`, its keys from
//! `auth.public_keys` / `jwks_file`) and each external issuer of
//! `[[auth.providers]]` with an `audience` (`super::issuers`). A token's
//! `iss` chooses the one issuer whose keys, audience and algorithms it must
//! satisfy; a token of an issuer not configured is refused.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::keys::{KeyStore, TOKEN_ISSUER};

/// The claims ketenpoort reads. Standard claims are checked by jsonwebtoken.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: Audience,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    /// The user within the partner organisation, for the disclosure log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Partner id in the registry.
    pub partner: String,
    pub role: String,
    /// RFC 8705 certificate binding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// `aud`: one audience as a string, or an array of them (RFC 7519, 4.1.3).
/// jsonwebtoken checks either form; the claims must accept both as well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Confirmation {
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: Option<String>,
}

/// Why a token was refused; the code goes into the problem and a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    Algorithm,
    Signature,
    Expired,
    NotYetValid,
    Audience,
    Issuer,
    Claims,
    /// An external issuer's token names a `kid` not in its key set (even
    /// after a fetch).
    UnknownKey,
    /// An external issuer's token names a partner it may not speak for.
    Partner,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "token-malformed",
            Self::Algorithm => "token-algorithm",
            Self::Signature => "token-signature",
            Self::Expired => "token-expired",
            Self::NotYetValid => "token-not-yet-valid",
            Self::Audience => "token-audience",
            Self::Issuer => "token-issuer",
            Self::Claims => "token-claims",
            Self::UnknownKey => "token-key-unknown",
            Self::Partner => "token-partner-not-allowed",
        }
    }
}

struct Key {
    alg: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}

/// What a verified token says, whichever issuer signed it.
#[derive(Clone, Debug)]
pub struct Verified {
    pub partner: String,
    pub role: String,
    /// The user within the partner (the caller's text: kept only as a
    /// keyed reference).
    pub sub: Option<String>,
    /// RFC 8705 certificate binding (`cnf.x5t#S256`).
    pub x5t_s256: Option<String>,
    pub exp: u64,
    pub nbf: u64,
}

pub struct Verifier {
    keys: Vec<Key>,
    allowed: HashSet<Algorithm>,
    issuer: String,
    audience: String,
    leeway: u64,
    /// The external issuers trusted for API tokens.
    external: Vec<Arc<super::issuers::External>>,
    /// Tokens whose signature and claims verified, by SHA-256 of the token:
    /// a partner system sends the same token for many requests, and the
    /// signature check dominates authentication. Time validity is checked
    /// again on every hit.
    verified: quick_cache::sync::Cache<[u8; 32], Verified>,
}

/// Distinct verified tokens remembered.
const TOKEN_CACHE: usize = 10_000;

pub(crate) fn parse_alg(s: &str) -> anyhow::Result<Algorithm> {
    Ok(match s {
        "EdDSA" => Algorithm::EdDSA,
        "ES256" => Algorithm::ES256,
        "RS256" => Algorithm::RS256,
        "PS256" => Algorithm::PS256,
        "HS256" => Algorithm::HS256,
        other => bail!(
            "auth.algorithms: unsupported algorithm {other:?} (EdDSA, ES256, RS256, PS256, HS256)"
        ),
    })
}

impl Verifier {
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        let a = &cfg.auth;
        let allowed: HashSet<Algorithm> = a
            .algorithms
            .iter()
            .map(|s| parse_alg(s))
            .collect::<Result<_, _>>()?;
        anyhow::ensure!(!allowed.is_empty(), "auth.algorithms is empty");
        if allowed.contains(&Algorithm::HS256) != a.hmac_secret_file.is_some() {
            bail!(
                "HS256 needs both auth.hmac_secret_file and HS256 in auth.algorithms; it is never on by default"
            );
        }
        let mut keys = Vec::new();
        let default_key = KeyStore::new(&cfg.data_dir).public_pem_path(TOKEN_ISSUER);
        let pem_files =
            if a.public_keys.is_empty() && a.jwks_file.is_none() && a.hmac_secret_file.is_none() {
                vec![default_key]
            } else {
                a.public_keys.clone()
            };
        for file in &pem_files {
            let pem = std::fs::read(file)
                .with_context(|| format!("reading token key {}", file.display()))?;
            let before = keys.len();
            for alg in &allowed {
                let key = match alg {
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                    Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                    Algorithm::RS256 | Algorithm::PS256 => DecodingKey::from_rsa_pem(&pem),
                    _ => continue,
                };
                if let Ok(key) = key {
                    keys.push(Key {
                        alg: *alg,
                        kid: None,
                        key,
                    });
                }
            }
            anyhow::ensure!(
                keys.len() > before,
                "{} holds no key for the configured algorithms",
                file.display()
            );
        }
        if let Some(file) = &a.jwks_file {
            keys.extend(load_jwks(file, &allowed)?);
        }
        if let Some(file) = &a.hmac_secret_file {
            let secret =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            anyhow::ensure!(
                secret.len() >= 32,
                "auth.hmac_secret_file must hold at least 32 bytes"
            );
            keys.push(Key {
                alg: Algorithm::HS256,
                kid: None,
                key: DecodingKey::from_secret(&secret)?,
            });
        }
        super::issuers::check_providers(a)?;
        let mut external = Vec::new();
        for p in &a.providers {
            if let Some(e) = super::issuers::External::from_config(p)? {
                external.push(Arc::new(e));
            }
        }
        Ok(Self {
            keys,
            allowed,
            issuer: a.issuer.clone(),
            audience: a.audience.clone(),
            leeway: a.leeway_secs,
            external,
            verified: quick_cache::sync::Cache::new(TOKEN_CACHE),
        })
    }

    /// Fetches every external issuer's key set once (concurrently, each
    /// bounded by its client's timeout), then starts their scheduled
    /// refreshes. An issuer whose first fetch fails has no keys (its tokens
    /// are refused) until a later fetch succeeds.
    pub async fn start(&self) {
        futures::future::join_all(self.external.iter().map(|e| e.refresh())).await;
        for e in &self.external {
            e.clone().spawn_refresher();
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let id: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("sha256");
        if let Some(claims) = self.verified.get(&id) {
            let now = jsonwebtoken::get_current_timestamp();
            if now <= claims.exp + self.leeway && now + self.leeway >= claims.nbf {
                return Ok(claims);
            }
        }
        let claims = match self.verify_uncached(token) {
            // A key the issuer may have published since the last fetch:
            // fetch (at a bounded rate) and try once more.
            Err((TokenError::UnknownKey, Some(issuer))) => {
                issuer.refresh_on_demand().await;
                self.verify_uncached(token).map_err(|(e, _)| e)?
            }
            other => other.map_err(|(e, _)| e)?,
        };
        self.verified.insert(id, claims.clone());
        Ok(claims)
    }

    /// Verifies against the issuer the token's `iss` names; with an error,
    /// that issuer when it is an external one.
    #[allow(clippy::type_complexity)]
    fn verify_uncached(
        &self,
        token: &str,
    ) -> Result<Verified, (TokenError, Option<&Arc<super::issuers::External>>)> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| (unreadable_header(token), None))?;
        let iss = unverified_issuer(token).map_err(|e| (e, None))?;
        if iss == self.issuer {
            return self.verify_own(token, &header).map_err(|e| (e, None));
        }
        let issuer = self
            .external
            .iter()
            .find(|e| e.cfg.issuer == iss)
            .ok_or((TokenError::Issuer, None))?;
        issuer
            .verify(token, &header, self.leeway)
            .map_err(|e| (e, Some(issuer)))
    }

    /// A token of ketenpoort's own issuer.
    fn verify_own(&self, token: &str, header: &Header) -> Result<Verified, TokenError> {
        if !self.allowed.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud"]);
        v.validate_nbf = true;
        v.leeway = self.leeway;
        let candidates = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg && (k.kid.is_none() || k.kid == header.kid));
        let mut last = TokenError::Signature;
        for k in candidates {
            match jsonwebtoken::decode::<Claims>(token, &k.key, &v) {
                Ok(data) => {
                    let c = data.claims;
                    return Ok(Verified {
                        partner: c.partner,
                        role: c.role,
                        sub: c.sub,
                        x5t_s256: c.cnf.and_then(|c| c.x5t_s256),
                        exp: c.exp,
                        nbf: c.nbf,
                    });
                }
                Err(e) => last = classify(&e)?,
            }
        }
        Err(last)
    }
}

/// A verification error of one key: `Ok(why)` when another key may still
/// verify the token (a signature or key mismatch), `Err(why)` when no key
/// can (the token's claims are wrong whoever signed it).
pub(crate) fn classify(e: &jsonwebtoken::errors::Error) -> Result<TokenError, TokenError> {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => {
            Ok(TokenError::Signature)
        }
        K::ExpiredSignature => Err(TokenError::Expired),
        K::ImmatureSignature => Err(TokenError::NotYetValid),
        K::InvalidAudience => Err(TokenError::Audience),
        K::InvalidIssuer => Err(TokenError::Issuer),
        K::MissingRequiredClaim(_) | K::Json(_) => Err(TokenError::Claims),
        K::InvalidAlgorithm => Ok(TokenError::Algorithm),
        _ => Ok(TokenError::Malformed),
    }
}

/// The `iss` of a token before its signature is checked: only to choose
/// the issuer whose keys check it. Not three parts, or a payload that is
/// not base64url JSON: malformed; no `iss` string: the claims are wrong.
fn unverified_issuer(token: &str) -> Result<String, TokenError> {
    let parts: Vec<&str> = token.splitn(4, '.').collect();
    let [_, payload, _] = parts.as_slice() else {
        return Err(TokenError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    claims
        .get("iss")
        .and_then(|i| i.as_str())
        .map(str::to_owned)
        .ok_or(TokenError::Claims)
}

/// Why jsonwebtoken could not read a token's header. An algorithm it does not
/// know (`"alg": "none"` in any spelling, ...) is an algorithm refusal, so the
/// classic unsigned-token attack shows under `token-algorithm`; anything else
/// is malformed.
fn unreadable_header(token: &str) -> TokenError {
    let unknown_alg = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .and_then(|h| {
            h.get("alg")
                .and_then(|a| a.as_str())
                .map(|a| a.parse::<Algorithm>().is_err())
        })
        .unwrap_or(false);
    if unknown_alg {
        TokenError::Algorithm
    } else {
        TokenError::Malformed
    }
}

fn load_jwks(file: &Path, allowed: &HashSet<Algorithm>) -> anyhow::Result<Vec<Key>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let set: JwkSet =
        serde_json::from_str(&text).with_context(|| format!("{} is not a JWKS", file.display()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let alg = match &jwk.common.key_algorithm {
            Some(a) => parse_alg(&a.to_string())?,
            None => continue,
        };
        if alg == Algorithm::HS256 || !allowed.contains(&alg) {
            continue;
        }
        keys.push(Key {
            alg,
            kid: jwk.common.key_id.clone(),
            key: DecodingKey::from_jwk(jwk)?,
        });
    }
    anyhow::ensure!(!keys.is_empty(), "{} holds no usable key", file.display());
    Ok(keys)
}

/// What `token issue` and the demo put into a token.
pub struct TokenRequest<'a> {
    pub partner: &'a str,
    pub role: &'a str,
    pub user: Option<&'a str>,
    pub ttl: std::time::Duration,
    /// SHA-256 of the client certificate to bind the token to (RFC 8705).
    pub cert_fingerprint: Option<[u8; 32]>,
}

/// Signs a token with the data directory's issuer key (read for this one
/// token: the CLI and the demo; the server keeps a [`Signer`]).
pub fn issue(cfg: &Config, req: &TokenRequest<'_>) -> anyhow::Result<String> {
    Signer::load(cfg)?.issue(req)
}

/// ketenpoort's own issuer: its signing key, read once.
pub struct Signer {
    key: EncodingKey,
    issuer: String,
    audience: String,
    max_ttl: u64,
}

impl Signer {
    pub fn load(cfg: &Config) -> anyhow::Result<Self> {
        let key = KeyStore::new(&cfg.data_dir).ed25519(TOKEN_ISSUER)?;
        Ok(Self {
            key: EncodingKey::from_ed_der(key.pkcs8_der()),
            issuer: cfg.auth.issuer.clone(),
            audience: cfg.auth.audience.clone(),
            max_ttl: cfg.auth.max_token_ttl_secs,
        })
    }

    pub fn issue(&self, req: &TokenRequest<'_>) -> anyhow::Result<String> {
        anyhow::ensure!(
            req.ttl.as_secs() <= self.max_ttl,
            "ttl above auth.max_token_ttl_secs ({}s)",
            self.max_ttl
        );
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: Audience::One(self.audience.clone()),
            iat: now,
            nbf: now,
            exp: now + req.ttl.as_secs(),
            jti: uuid::Uuid::now_v7().to_string(),
            sub: req.user.map(str::to_owned),
            partner: req.partner.to_owned(),
            role: req.role.to_owned(),
            cnf: req.cert_fingerprint.map(|fp| Confirmation {
                x5t_s256: Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fp)),
            }),
        };
        let header = Header::new(Algorithm::EdDSA);
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

/// Parses `30s`, `15m`, `1h`, `7d`.
pub fn parse_ttl(s: &str) -> anyhow::Result<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("invalid ttl {s:?}"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => bail!("invalid ttl unit in {s:?} (use s, m, h or d)"),
    };
    anyhow::ensure!(secs > 0, "ttl must be positive");
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: &Verifier, token: &str) -> Result<Verified, TokenError> {
        futures::executor::block_on(v.verify(token))
    }

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_ttl("90").unwrap().as_secs(), 90);
        assert_eq!(parse_ttl("7d").unwrap().as_secs(), 7 * 86400);
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("h").is_err());
    }

    /// A token verified once is remembered, but its lifetime still counts:
    /// once expired it is refused, cache or not.
    #[test]
    fn remembered_tokens_still_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        cfg.auth.leeway_secs = 0;
        KeyStore::new(dir.path())
            .ensure_ed25519(TOKEN_ISSUER)
            .unwrap();
        let req = TokenRequest {
            partner: "assen",
            role: "fg",
            user: None,
            ttl: std::time::Duration::from_secs(1),
            cert_fingerprint: None,
        };
        let v = Verifier::from_config(&cfg).unwrap();
        let token = issue(&cfg, &req).unwrap();
        assert!(check(&v, &token).is_ok());
        assert!(check(&v, &token).is_ok(), "second use, from the cache");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(check(&v, &token).unwrap_err(), TokenError::Expired);
        // A token altered after signing is refused even though its
        // original was remembered.
        let fresh = issue(
            &cfg,
            &TokenRequest {
                ttl: std::time::Duration::from_secs(60),
                ..req
            },
        )
        .unwrap();
        assert!(check(&v, &fresh).is_ok());
        let mut parts: Vec<String> = fresh.split('.').map(str::to_owned).collect();
        parts[2] = parts[2].chars().rev().collect();
        assert!(check(&v, &parts.join(".")).is_err());
    }

    #[test]
    fn issued_tokens_verify_and_hmac_is_off_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        KeyStore::new(dir.path())
            .ensure_ed25519(TOKEN_ISSUER)
            .unwrap();
        let req = TokenRequest {
            partner: "assen",
            role: "fg",
            user: None,
            ttl: std::time::Duration::from_secs(60),
            cert_fingerprint: None,
        };
        let v = Verifier::from_config(&cfg).unwrap();
        let claims = check(&v, &issue(&cfg, &req).unwrap()).unwrap();
        assert_eq!(
            (claims.partner.as_str(), claims.role.as_str()),
            ("assen", "fg")
        );
        let hs = Config {
            auth: crate::config::AuthConfig {
                algorithms: vec!["HS256".into()],
                ..Default::default()
            },
            ..cfg.clone()
        };
        assert!(
            Verifier::from_config(&hs).is_err(),
            "HS256 without an explicit secret must be refused"
        );
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn unsigned_tokens_are_an_algorithm_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        KeyStore::new(dir.path())
            .ensure_ed25519(TOKEN_ISSUER)
            .unwrap();
        let v = Verifier::from_config(&cfg).unwrap();
        let body = b64(
            r#"{"iss":"ketenpoort","aud":"ketenpoort","exp":4000000000,"nbf":0,"iat":0,"jti":"j","partner":"assen","role":"fg"}"#,
        );
        for alg in ["none", "None", "HS1"] {
            let t = format!("{}.{body}.", b64(&format!(r#"{{"alg":"{alg}"}}"#)));
            assert_eq!(check(&v, &t).unwrap_err(), TokenError::Algorithm, "{alg}");
        }
        let t = format!("{}.{body}.", b64(r#"{"typ":"JWT"}"#));
        assert_eq!(check(&v, &t).unwrap_err(), TokenError::Malformed);
        assert_eq!(check(&v, "x.y.z").unwrap_err(), TokenError::Malformed);
    }

    #[test]
    fn audience_may_be_an_array() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let ks = KeyStore::new(dir.path());
        ks.ensure_ed25519(TOKEN_ISSUER).unwrap();
        let key = EncodingKey::from_ed_der(ks.ed25519(TOKEN_ISSUER).unwrap().pkcs8_der());
        let v = Verifier::from_config(&cfg).unwrap();
        let sign = |aud: serde_json::Value| {
            let claims = serde_json::json!({"iss": "ketenpoort", "aud": aud, "exp": 4_000_000_000u64, "nbf": 0,
                "iat": 0, "jti": "j", "partner": "assen", "role": "fg"});
            jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap()
        };
        assert!(check(&v, &sign(serde_json::json!(["other", "ketenpoort"]))).is_ok());
        assert_eq!(
            check(&v, &sign(serde_json::json!(["other"]))).unwrap_err(),
            TokenError::Audience
        );
        assert_eq!(
            check(&v, &sign(serde_json::json!("other"))).unwrap_err(),
            TokenError::Audience
        );
    }
}
