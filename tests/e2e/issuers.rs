//! Per-partner issuers (issue 17): each partner's own identity provider is
//! trusted for that partner's people only, its key rotation is followed
//! without a restart, and a provider that is down or answers garbage leaves
//! the last good keys in force. The JWT attack suite runs against every
//! configured issuer (ketenpoort's own and each external one). The console
//! authenticates to a provider with `private_key_jwt` and signs out there
//! too (RP-initiated logout).
//!
//! The providers are small HTTP servers inside the test, on loopback: one
//! request per connection (`Connection: close`), so a stopped server is
//! really unreachable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::*;
use crate::common::*;

const ME: &str = "/v1/me";

/// What a test server answers: (method, path without query, body) →
/// (status, body).
type Handler = Arc<dyn Fn(&str, &str, &[u8]) -> (u16, String) + Send + Sync>;

/// A tiny HTTP/1.1 server on loopback; every path it was asked for is
/// counted.
struct Http {
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Http {
    async fn start(handler: Handler) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), handler).await
    }

    async fn start_on(addr: SocketAddr, handler: Handler) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve_one(stream, handler.clone(), counted.clone()));
            }
        });
        Self {
            addr,
            task: Some(task),
            hits,
        }
    }

    /// Stops accepting: the port refuses connections.
    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// One request, one answer, then the connection is closed.
async fn serve_one(
    mut stream: tokio::net::TcpStream,
    handler: Handler,
    hits: Arc<Mutex<HashMap<String, usize>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        let head_end = loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 65536 {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
            .min(65536);
        while buf.len() < head_end + length {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some((head, buf[head_end..head_end + length].to_vec()))
    };
    let Ok(Some((head, body))) = tokio::time::timeout(Duration::from_secs(5), read).await else {
        return;
    };
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let (status, text) = handler(&method, &path, &body);
    let answer = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// An Ed25519 signing key of a test issuer (or of the attacker).
struct EdKey {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl EdKey {
    fn new(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Self {
            kid: kid.to_owned(),
            pkcs8: pkcs8.as_ref().to_vec(),
            public: pair.public_key().as_ref().to_vec(),
        }
    }

    fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&self.public), "kid": self.kid,
            "alg": "EdDSA", "use": "sig"})
    }

    fn header(&self) -> Header {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(self.kid.clone());
        h
    }

    fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &EncodingKey::from_ed_der(&self.pkcs8)).unwrap()
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.header(), claims)
    }
}

fn jwks(keys: &[&EdKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// A token assembled by hand.
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string()),
        b64(claims.to_string()),
        b64(signature)
    )
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!("{input}.{}", b64(ring::hmac::sign(&key, input.as_bytes())))
}

async fn works(server: &Server, token: &str) -> Value {
    ok_json(server.get_as(ME, token).await, 200).await
}

/// A 401 problem+json with `WWW-Authenticate: Bearer`, and `code` if given.
async fn refused(server: &Server, token: &str, code: Option<&str>, what: &str) {
    let res = server.get_as(ME, token).await;
    assert_eq!(res.status(), 401, "{what}");
    assert!(
        header(&res, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")),
        "{what}: 401 without WWW-Authenticate: Bearer"
    );
    let p = problem(res, 401, None).await;
    if let Some(code) = code {
        assert_eq!(p["code"], code, "{what}: {p}");
    }
}

/// Issuer A, a municipality's provider found by discovery: its JWKS is
/// whatever `jwks` holds; `garbage` replaces the JWKS by a body that is not
/// a usable key set.
struct ProviderA {
    jwks: Mutex<String>,
    garbage: Mutex<Option<String>>,
}

fn provider_a_handler(state: Arc<ProviderA>, issuer: Arc<Mutex<String>>) -> Handler {
    Arc::new(move |_, path, _| match path {
        "/.well-known/openid-configuration" => {
            let iss = issuer.lock().unwrap().clone();
            (
                200,
                json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")}).to_string(),
            )
        }
        "/jwks" => match state.garbage.lock().unwrap().clone() {
            Some(g) => (200, g),
            None => (200, state.jwks.lock().unwrap().clone()),
        },
        _ => (404, "{}".into()),
    })
}

/// Issuer B, a Keycloak realm with its JWKS URL configured directly.
fn provider_b_handler(jwks_body: String) -> Handler {
    Arc::new(move |_, path, _| match path {
        "/realms/zvhd/protocol/openid-connect/certs" => (200, jwks_body.clone()),
        _ => (404, "{}".into()),
    })
}

const A_ID: &str = "gemeente-emmen";
const A_AUD: &str = "ketenpoort-api";
const B_ID: &str = "zvhd-keycloak";

fn config(a: &str, b: &str) -> String {
    format!(
        r#"
[[auth.providers]]
id = "{A_ID}"
issuer = "{a}"
audience = "{A_AUD}"
partners = ["emmen"]
partner_claim = "ketenpoort_partner"
role_claim = "ketenpoort_role"
jwks_refresh_secs = 1
jwks_min_refresh_secs = 0

[[auth.providers]]
id = "{B_ID}"
issuer = "{b}/realms/zvhd"
jwks_uri = "{b}/realms/zvhd/protocol/openid-connect/certs"
audience = "ketenpoort"
partners = ["zvhd"]
role_claim = "realm_access.roles"
roles = {{ "kp-ketenregisseur" = "ketenregisseur" }}
user_claim = "preferred_username"
"#
    )
}

fn a_claims(iss: &str, partner: &str) -> Value {
    let t = now();
    json!({"iss": iss, "aud": A_AUD, "sub": "medewerker-a", "iat": t, "nbf": t, "exp": t + 600,
        "jti": random_id(), "ketenpoort_partner": partner, "ketenpoort_role": "aandachtfunctionaris-sociaal"})
}

/// Keycloak's shape: `aud` an array, roles nested, no `nbf`.
fn b_claims(iss: &str) -> Value {
    let t = now();
    json!({"iss": iss, "aud": ["account", "ketenpoort"], "azp": "zaaksysteem", "iat": t, "exp": t + 600,
        "jti": random_id(), "preferred_username": "ketenregisseur-1",
        "realm_access": {"roles": ["offline_access", "default-roles-zvhd", "kp-ketenregisseur"]}})
}

/// The sum of metric `name`'s series whose labels include every one of
/// `labels` (`key="value"`).
async fn metric(server: &Server, admin: &str, name: &str, labels: &[&str]) -> f64 {
    let text = server
        .client()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Issuer A's token for A's partner works, for B's partner it is 401; B's
/// Keycloak-shaped token maps its nested role. A rotates its key: the new
/// `kid` works at once, the withdrawn one stops. A's JWKS URL goes down,
/// then answers garbage: tokens with known keys keep working, a metric
/// counts the failures and the warning names the issuer, not a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_own_issuers_are_trusted_for_their_own_partners_only() {
    let a1 = EdKey::new("a1");
    let a2 = EdKey::new("a2");
    let a3 = EdKey::new("a3");
    let b1 = EdKey::new("b1");
    let state_a = Arc::new(ProviderA {
        jwks: Mutex::new(jwks(&[&a1])),
        garbage: Mutex::new(None),
    });
    let issuer_a = Arc::new(Mutex::new(String::new()));
    let mut http_a = Http::start(provider_a_handler(state_a.clone(), issuer_a.clone())).await;
    let iss_a = http_a.url("");
    *issuer_a.lock().unwrap() = iss_a.clone();
    let http_b = Http::start(provider_b_handler(jwks(&[&b1]))).await;
    let iss_b = http_b.url("/realms/zvhd");
    let server = Server::start(
        Opts::new()
            .config(&config(&iss_a, &http_b.url("")))
            .env("KETENPOORT_ADMIN__LISTEN", "127.0.0.1:0"),
    )
    .await;
    let admin = server.admin_url().expect("admin listener");

    // A for its own partner; B with Keycloak's claims.
    let me = works(&server, &a1.sign(&a_claims(&iss_a, "emmen"))).await;
    assert_eq!(
        (me["partner"].as_str(), me["role"].as_str()),
        (Some("emmen"), Some("aandachtfunctionaris-sociaal")),
        "{me}"
    );
    assert!(
        !me.to_string().contains("medewerker-a"),
        "the user's own text is never shown: {me}"
    );
    let me = works(&server, &b1.sign(&b_claims(&iss_b))).await;
    assert_eq!(
        (me["partner"].as_str(), me["role"].as_str()),
        (Some("zvhd"), Some("ketenregisseur"))
    );

    // A speaking for B's partner, or for a partner it does not list: 401.
    for other in ["zvhd", "politie", "riec"] {
        refused(
            &server,
            &a1.sign(&a_claims(&iss_a, other)),
            Some("token-partner-not-allowed"),
            &format!("issuer A claiming {other}"),
        )
        .await;
    }
    // B's token with a role outside its table, or none: 401.
    let mut raw = b_claims(&iss_b);
    raw["realm_access"]["roles"] = json!(["ketenregisseur"]);
    refused(
        &server,
        &b1.sign(&raw),
        Some("token-claims"),
        "unmapped role",
    )
    .await;
    // A's key presented under B's name: B does not know it.
    let mut as_b = b_claims(&iss_b);
    as_b["jti"] = json!(random_id());
    refused(
        &server,
        &a1.sign(&as_b),
        Some("token-key-unknown"),
        "A's key for B",
    )
    .await;

    // Rotation: A publishes a2 beside a1; a token with a2 works at once
    // (the unknown kid fetches the set), no restart.
    *state_a.jwks.lock().unwrap() = jwks(&[&a1, &a2]);
    works(&server, &a2.sign(&a_claims(&iss_a, "emmen"))).await;
    // Then a1 is withdrawn: a fresh a1 token stops working.
    *state_a.jwks.lock().unwrap() = jwks(&[&a2]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    refused(
        &server,
        &a1.sign(&a_claims(&iss_a, "emmen")),
        Some("token-key-unknown"),
        "withdrawn key",
    )
    .await;

    // A's server stops: known keys keep working; the failures are counted.
    let failed = "ketenpoort_jwks_fetches_total";
    let labels = ["issuer=\"gemeente-emmen\"", "outcome=\"failed\""];
    let failed_before = metric(&server, &admin, failed, &labels).await;
    let port = http_a.addr;
    http_a.stop().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    works(&server, &a2.sign(&a_claims(&iss_a, "emmen"))).await;
    refused(
        &server,
        &a3.sign(&a_claims(&iss_a, "emmen")),
        Some("token-key-unknown"),
        "unknown key while the provider is down",
    )
    .await;
    let failed_down = metric(&server, &admin, failed, &labels).await;
    assert!(
        failed_down >= failed_before + 2.0,
        "failed fetches counted: {failed_before} -> {failed_down}"
    );

    // Back, but answering garbage, then a set without a usable key: the
    // last good keys stay.
    let mut http_a = Http::start_on(port, provider_a_handler(state_a.clone(), issuer_a)).await;
    for garbage in [
        "<html>Service Unavailable</html>".to_owned(),
        json!({"keys": "none"}).to_string(),
        json!({"keys": [{"kty": "oct", "k": b64(b"a shared secret of 32 bytes!!!!!"), "alg": "HS256"}]})
            .to_string(),
    ] {
        *state_a.garbage.lock().unwrap() = Some(garbage);
        let hits = http_a.hits("/jwks");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(http_a.hits("/jwks") > hits, "the JWKS was fetched again");
        works(&server, &a2.sign(&a_claims(&iss_a, "emmen"))).await;
    }
    assert!(metric(&server, &admin, failed, &labels).await >= failed_down + 3.0);

    // Good again, with a new key: it works.
    *state_a.garbage.lock().unwrap() = None;
    *state_a.jwks.lock().unwrap() = jwks(&[&a2, &a3]);
    works(&server, &a3.sign(&a_claims(&iss_a, "emmen"))).await;
    http_a.stop().await;

    // The warning names the issuer and the kind of failure, never a key
    // or the body.
    let logs = server.logs_flushed().await;
    assert!(
        logs.lines()
            .any(|l| l.contains("the last good key set stays in force") && l.contains(A_ID)),
        "a warning for the failed fetches"
    );
    for secret in [
        b64(&a1.public),
        b64(&a2.public),
        b64(&a3.public),
        b64(&b1.public),
    ] {
        assert!(!logs.contains(&secret), "key material in the log");
    }
    assert!(
        !logs.contains("Service Unavailable"),
        "a response body in the log"
    );
    assert!(!logs.contains("medewerker-a"), "a user's id in the log");
}

/// The attack suite against one issuer: none, HS256 with the public key,
/// `kid` injection, `jku`/`x5u`/`jwk` headers pointing at the attacker's
/// key, expired, wrong audience, wrong issuer. `good` is a valid token's
/// claims, `sign` signs with the issuer's real key under `header`.
#[allow(clippy::too_many_arguments)]
async fn attack_suite(
    server: &Server,
    name: &str,
    good: &Value,
    header: &Header,
    sign: &dyn Fn(&Header, &Value) -> String,
    public: &[Vec<u8>],
    attacker: &EdKey,
    attacker_http: &Http,
    injected_kid_code: &str,
) {
    let fresh = |mut c: Value| {
        c["jti"] = json!(random_id());
        c
    };
    works(server, &sign(header, &fresh(good.clone()))).await;
    let kid = header.kid.clone();

    // alg none, in its spellings, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let mut h = json!({"alg": alg, "typ": "JWT"});
        if let Some(k) = &kid {
            h["kid"] = json!(k);
        }
        for sig in [&b""[..], b"x"] {
            refused(
                server,
                &raw_token(&h, &fresh(good.clone()), sig),
                Some("token-algorithm"),
                &format!("{name}: alg {alg}"),
            )
            .await;
        }
    }
    // HS256 keyed with the issuer's public key, in every form it is
    // published in (HS/RS confusion).
    for (i, secret) in public.iter().enumerate() {
        for alg in ["HS256", "HS384", "HS512"] {
            let mut h = json!({"alg": alg, "typ": "JWT"});
            if let Some(k) = &kid {
                h["kid"] = json!(k);
            }
            refused(
                server,
                &hs256(secret, &h, &fresh(good.clone())),
                Some("token-algorithm"),
                &format!("{name}: {alg} with public key form {i}"),
            )
            .await;
        }
    }
    // kid injection: paths, SQL, a header break-out, a huge kid; signed by
    // the attacker.
    for injected in [
        "../../../../../../dev/null".to_owned(),
        "/proc/self/environ".to_owned(),
        "' OR '1'='1' --".to_owned(),
        "x\"}],\"keys\":[{".to_owned(),
        "k".repeat(4000),
    ] {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(injected.clone());
        refused(
            server,
            &attacker.sign_with(&h, &fresh(good.clone())),
            Some(injected_kid_code),
            &format!("{name}: injected kid"),
        )
        .await;
    }
    // jku / x5u / jwk pointing at (or carrying) the attacker's key, with the
    // issuer's real kid or the attacker's own: never fetched, never used.
    let before = attacker_http.total_hits();
    let attacker_jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(attacker.jwk()).unwrap();
    for with_kid in [kid.clone(), Some(attacker.kid.clone())] {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = with_kid;
        h.jku = Some(attacker_http.url("/jwks"));
        h.x5u = Some(attacker_http.url("/cert.pem"));
        h.jwk = Some(attacker_jwk.clone());
        refused(
            server,
            &attacker.sign_with(&h, &fresh(good.clone())),
            None,
            &format!("{name}: jku/x5u/jwk"),
        )
        .await;
        for only in ["jku", "jwk"] {
            let mut h2 = Header::new(Algorithm::EdDSA);
            h2.kid = h.kid.clone();
            if only == "jku" {
                h2.jku = h.jku.clone();
            } else {
                h2.jwk = h.jwk.clone();
            }
            refused(
                server,
                &attacker.sign_with(&h2, &fresh(good.clone())),
                None,
                &format!("{name}: {only} alone"),
            )
            .await;
        }
    }
    assert_eq!(
        attacker_http.total_hits(),
        before,
        "{name}: the attacker's URLs were fetched"
    );
    // Expired (beyond the leeway), wrong audience, wrong issuer: signed
    // with the real key.
    let mut expired = fresh(good.clone());
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    if expired.get("nbf").is_some() {
        expired["nbf"] = json!(now() - 7200);
    }
    refused(
        server,
        &sign(header, &expired),
        Some("token-expired"),
        &format!("{name}: expired"),
    )
    .await;
    for aud in [json!("somebody-else"), json!(["account"]), json!([])] {
        let mut c = fresh(good.clone());
        c["aud"] = aud;
        refused(
            server,
            &sign(header, &c),
            Some("token-audience"),
            &format!("{name}: wrong audience"),
        )
        .await;
    }
    let mut no_aud = fresh(good.clone());
    no_aud.as_object_mut().unwrap().remove("aud");
    refused(
        server,
        &sign(header, &no_aud),
        None,
        &format!("{name}: no audience"),
    )
    .await;
    for iss in ["https://issuer.invalid", "", "ketenpoort "] {
        let mut c = fresh(good.clone());
        c["iss"] = json!(iss);
        refused(
            server,
            &sign(header, &c),
            Some("token-issuer"),
            &format!("{name}: unconfigured issuer {iss:?}"),
        )
        .await;
    }
    let mut no_iss = fresh(good.clone());
    no_iss.as_object_mut().unwrap().remove("iss");
    refused(
        server,
        &sign(header, &no_iss),
        None,
        &format!("{name}: no issuer"),
    )
    .await;
}

/// Every configured issuer — ketenpoort's own, A (discovery), B (a JWKS
/// URL) — refuses the whole attack suite; tokens with an unknown `kid`
/// fetch B's key set at most once per `jwks_min_refresh_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwt_attack_suite_fails_against_every_issuer() {
    let a1 = EdKey::new("a1");
    let b1 = EdKey::new("b1");
    let attacker = EdKey::new("attacker");
    let state_a = Arc::new(ProviderA {
        jwks: Mutex::new(jwks(&[&a1])),
        garbage: Mutex::new(None),
    });
    let issuer_a = Arc::new(Mutex::new(String::new()));
    let http_a = Http::start(provider_a_handler(state_a.clone(), issuer_a.clone())).await;
    let iss_a = http_a.url("");
    *issuer_a.lock().unwrap() = iss_a.clone();
    let http_b = Http::start(provider_b_handler(jwks(&[&b1]))).await;
    let iss_b = http_b.url("/realms/zvhd");
    let attacker_jwks = jwks(&[&attacker]);
    let attacker_http = Http::start(Arc::new(move |_, _, _| (200, attacker_jwks.clone()))).await;
    let server = Server::start(Opts::new().config(&config(&iss_a, &http_b.url("")))).await;
    // Fetched once at start (the test's servers run on their own threads
    // while `Server::start` waits).
    let b_fetches = http_b.total_hits();
    assert_eq!(b_fetches, 1, "B's keys are fetched at start");

    // ketenpoort's own issuer: its key has no kid; its public key as PEM
    // and DER is what an attacker would use as an HMAC secret.
    let own_pem = std::fs::read(server.dir().join("keys/token-issuer.pub.pem")).unwrap();
    let own_der = pem::parse(&own_pem).unwrap().contents().to_vec();
    let own_raw = own_der[own_der.len() - 32..].to_vec();
    let issuer_pem = std::fs::read(server.dir().join("keys/token-issuer.pem")).unwrap();
    let own_key = EncodingKey::from_ed_pem(&issuer_pem).unwrap();
    let own_sign = |h: &Header, c: &Value| jsonwebtoken::encode(h, c, &own_key).unwrap();
    attack_suite(
        &server,
        "ketenpoort",
        &server.claims("emmen", "aandachtfunctionaris-sociaal"),
        &Header::new(Algorithm::EdDSA),
        &own_sign,
        &[own_pem.clone(), own_der, own_raw],
        &attacker,
        &attacker_http,
        "token-signature",
    )
    .await;

    for (name, key, good) in [
        (A_ID, &a1, a_claims(&iss_a, "emmen")),
        (B_ID, &b1, b_claims(&iss_b)),
    ] {
        let sign = |h: &Header, c: &Value| key.sign_with(h, c);
        let jwk_text = key.jwk().to_string();
        let jwks_text = jwks(&[key]);
        attack_suite(
            &server,
            name,
            &good,
            &key.header(),
            &sign,
            &[
                key.public.clone(),
                b64(&key.public).into_bytes(),
                jwk_text.into_bytes(),
                jwks_text.into_bytes(),
            ],
            &attacker,
            &attacker_http,
            "token-key-unknown",
        )
        .await;
    }
    // B was asked again at most once for all those unknown kids (its
    // jwks_min_refresh_secs is the default 30 s); A (0 s) as often as asked.
    assert!(
        http_b.total_hits() <= b_fetches + 1,
        "unknown kids fetched B's keys {} times",
        http_b.total_hits() - b_fetches
    );
    assert!(http_a.hits("/jwks") > 1);
    // A token for an issuer that is not configured at all, signed by the
    // attacker and announcing its JWKS: 401.
    let mut h = attacker.header();
    h.jku = Some(attacker_http.url("/jwks"));
    let mut c = a_claims(&attacker_http.url(""), "emmen");
    c["aud"] = json!("ketenpoort");
    refused(
        &server,
        &attacker.sign_with(&h, &c),
        Some("token-issuer"),
        "the attacker's own issuer",
    )
    .await;
    assert_eq!(attacker_http.total_hits(), 0);
}

/// An ES256 key pair: PKCS#8 PEM (private) and the public JWK.
fn es256_key(kid: &str) -> (String, Value, Vec<u8>) {
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        "kid": kid, "alg": "ES256", "use": "sig"});
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    (pem, jwk, pkcs8.as_ref().to_vec())
}

fn form_value(body: &[u8], name: &str) -> Option<String> {
    url_decode_pairs(&String::from_utf8_lossy(body))
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn url_decode_pairs(s: &str) -> Vec<(String, String)> {
    let dec = |v: &str| {
        let v = v.replace('+', " ");
        let bytes = v.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    s.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

/// Whether the console's token request authenticates with a valid
/// `private_key_jwt` assertion (and the right code and PKCE verifier).
fn assertion_ok(
    body: &[u8],
    iss: &str,
    console_key: &jsonwebtoken::DecodingKey,
    seen: &Seen,
) -> bool {
    if form_value(body, "client_assertion_type").as_deref()
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return false;
    }
    let Some(a) = form_value(body, "client_assertion") else {
        return false;
    };
    let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
    v.set_audience(&[format!("{iss}/token")]);
    v.set_issuer(&["ketenpoort-console"]);
    v.sub = Some("ketenpoort-console".into());
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud", "jti"]);
    let Ok(data) = jsonwebtoken::decode::<Value>(&a, console_key, &v) else {
        return false;
    };
    let exp = data.claims["exp"].as_u64().unwrap_or(0);
    // PKCE: the verifier hashes to the challenge.
    let verifier = form_value(body, "code_verifier").unwrap_or_default();
    let hashed = b64(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    data.header.kid.as_deref() == Some("console-1")
        && exp <= now() + 120
        && form_value(body, "client_secret").is_none()
        && seen.challenge.as_deref() == Some(hashed.as_str())
        && form_value(body, "code").as_deref() == Some("code-1")
}

/// HTML attribute text back to plain text.
fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// What the test provider saw of the console's token request.
#[derive(Default)]
struct Seen {
    nonce: Option<String>,
    challenge: Option<String>,
    assertion_ok: usize,
    refused: usize,
}

/// The console signs in through a provider that requires `private_key_jwt`
/// (its token endpoint verifies the assertion with the console's public
/// key and the PKCE verifier) and, at sign-out, sends the browser on to
/// the provider's `end_session_endpoint`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_uses_private_key_jwt_and_signs_out_at_the_provider() {
    let (console_pem, console_jwk, _) = es256_key("console-1");
    let (_, op_jwk, op_pkcs8) = es256_key("op-1");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let issuer = Arc::new(Mutex::new(String::new()));
    let handler: Handler = {
        let (seen, issuer) = (seen.clone(), issuer.clone());
        let console_key = jsonwebtoken::DecodingKey::from_jwk(
            &serde_json::from_value(console_jwk.clone()).unwrap(),
        )
        .unwrap();
        Arc::new(move |method, path, body| {
            let iss = issuer.lock().unwrap().clone();
            match (method, path) {
                (_, "/.well-known/openid-configuration") => (
                    200,
                    json!({
                        "issuer": iss,
                        "authorization_endpoint": format!("{iss}/authorize"),
                        "token_endpoint": format!("{iss}/token"),
                        "jwks_uri": format!("{iss}/jwks"),
                        "end_session_endpoint": format!("{iss}/logout"),
                        "response_types_supported": ["code"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["ES256"],
                        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                    })
                    .to_string(),
                ),
                (_, "/jwks") => (200, json!({"keys": [op_jwk]}).to_string()),
                ("POST", "/token") => {
                    let mut s = seen.lock().unwrap();
                    let assertion_ok = assertion_ok(body, &iss, &console_key, &s);
                    if !assertion_ok {
                        s.refused += 1;
                        return (401, json!({"error": "invalid_client"}).to_string());
                    }
                    s.assertion_ok += 1;
                    let t = now();
                    let mut h = Header::new(Algorithm::ES256);
                    h.kid = Some("op-1".into());
                    let id_token = jsonwebtoken::encode(
                        &h,
                        &json!({"iss": iss, "aud": "ketenpoort-console", "sub": "fg-zvhd-1",
                            "iat": t, "exp": t + 300, "nonce": s.nonce,
                            "org": "zvhd", "groups": ["kp-fg", "iets-anders"]}),
                        &EncodingKey::from_ec_der(&op_pkcs8),
                    )
                    .unwrap();
                    (
                        200,
                        json!({"access_token": "at", "token_type": "Bearer", "expires_in": 300,
                            "id_token": id_token})
                        .to_string(),
                    )
                }
                _ => (404, "{}".into()),
            }
        })
    };
    let op = Http::start(handler).await;
    let iss = op.url("");
    *issuer.lock().unwrap() = iss.clone();
    let data = DataDir::new().await;
    let key_file = data.file("console-client.pem");
    std::fs::write(&key_file, &console_pem).unwrap();
    let server = Server::start_on(
        data,
        Opts::new().config(&format!(
            r#"
[[auth.providers]]
id = "zvhd-idp"
name = "ZVHD"
issuer = "{iss}"
client_id = "ketenpoort-console"
client_key_file = "{}"
client_key_alg = "ES256"
client_key_id = "console-1"
partners = ["zvhd", "emmen"]
partner_claim = "org"
role_claim = "groups"
roles = {{ "kp-fg" = "fg" }}
"#,
            key_file.display()
        )),
    );
    let cookie_of = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with(&format!("{name}=")) && !v.contains("Max-Age=0"))
            .map(|v| v.split(';').next().unwrap().to_owned())
    };

    // Start: off to the provider, with state, nonce and a PKCE challenge.
    let res = server
        .get("/console/aanmelden/zvhd-idp")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let login = cookie_of(&res, "__Host-kp-login").expect("the sign-in cookie");
    let location = header(&res, "location").unwrap();
    assert!(
        location.starts_with(&format!("{iss}/authorize?")),
        "{location}"
    );
    let query: HashMap<String, String> = url_decode_pairs(location.split_once('?').unwrap().1)
        .into_iter()
        .collect();
    assert_eq!(query["client_id"], "ketenpoort-console");
    assert_eq!(query["code_challenge_method"], "S256");
    {
        let mut s = seen.lock().unwrap();
        s.nonce = Some(query["nonce"].clone());
        s.challenge = Some(query["code_challenge"].clone());
    }
    // The provider redirects back; the console authenticates with its key.
    let res = server
        .get(&format!(
            "/console/oidc/terug?code=code-1&state={}",
            query["state"]
        ))
        .header("cookie", &login)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "signed in (the continue page)");
    let session = cookie_of(&res, "__Host-kp-console").expect("a session cookie");
    assert_eq!(seen.lock().unwrap().assertion_ok, 1);
    assert_eq!(seen.lock().unwrap().refused, 0);
    let page = server
        .get("/console/")
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a CSRF token")
        .to_owned();

    // Sign-out: the session ends here, and the page sends the browser on
    // to the provider's end_session_endpoint with the client id and the
    // way back.
    let res = server
        .post("/console/afmelden")
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("__Host-kp-console=;")),
        "the session cookie is cleared"
    );
    let html = res.text().await.unwrap();
    let logout = html
        .split("content=\"0;url=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(unescape)
        .expect("a refresh to the provider's logout");
    assert!(logout.starts_with(&format!("{iss}/logout?")), "{logout}");
    let params: HashMap<String, String> = url_decode_pairs(logout.split_once('?').unwrap().1)
        .into_iter()
        .collect();
    assert_eq!(params["client_id"], "ketenpoort-console");
    assert_eq!(
        params["post_logout_redirect_uri"],
        server.url("/console/aanmelden"),
        "the way back is the bound address, not the configured :0"
    );
    let after = server
        .get("/console/")
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert!(after.status().is_redirection(), "the session is gone");

    // A second sign-in whose code the provider does not know: refused at
    // the token endpoint, no session.
    let res = server
        .get("/console/aanmelden/zvhd-idp")
        .send()
        .await
        .unwrap();
    let login = cookie_of(&res, "__Host-kp-login").unwrap();
    let location = header(&res, "location").unwrap();
    let query: HashMap<String, String> = url_decode_pairs(location.split_once('?').unwrap().1)
        .into_iter()
        .collect();
    let res = server
        .get(&format!(
            "/console/oidc/terug?code=other-code&state={}",
            query["state"]
        ))
        .header("cookie", &login)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection());
    assert!(header(&res, "location").unwrap().contains("mislukt"));
    assert!(cookie_of(&res, "__Host-kp-console").is_none());
    assert_eq!(seen.lock().unwrap().refused, 1);
}
