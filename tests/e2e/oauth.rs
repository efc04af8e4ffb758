//! The token endpoint (issue 17): a partner system gets a short-lived,
//! certificate-bound token with nothing but its client certificate (or a
//! signed assertion), uses it, and loses it with another certificate, after
//! expiry, or when suspended; refusals are RFC 6749 errors; certificates
//! carry the OIN of their partner.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::client::*;
use crate::common::*;

const TOKEN: &str = "/v1/oauth/token";

async fn token_request(
    client: &reqwest::Client,
    server: &Server,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client
        .post(server.url(TOKEN))
        .form(form)
        .send()
        .await
        .expect("token request")
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&unb64(token.split('.').nth(1).expect("a JWT"))).expect("claims")
}

/// An RFC 6749 §5.2 error (inside a problem): status and code.
async fn oauth_refused(res: reqwest::Response, status: u16, code: &str) -> Value {
    let p = problem(res, status, None).await;
    assert_eq!(p["error"], code, "{p}");
    assert!(p["error_description"].is_string(), "{p}");
    p
}

fn fingerprint_of(server: &Server, partner: &str) -> String {
    b64url(&cert_digest(server, partner))
}

/// SHA-256 of the demo client certificate of `partner`.
fn cert_digest(server: &Server, partner: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der =
        CertificateDer::from_pem_file(server.dir().join(format!("demo/clients/{partner}.pem")))
            .expect("demo client certificate");
    ring::digest::digest(&ring::digest::SHA256, &der)
        .as_ref()
        .to_vec()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A partner system with its demo client certificate: a 10-minute token
/// bound to that certificate, for the role it asked, that reads a signal;
/// the same token on a connection with another certificate or none is
/// 401; the issuance is logged without the token.
#[tokio::test]
async fn a_partner_system_gets_a_bound_token_with_its_certificate() {
    let server = Server::start(Opts::new()).await;
    let mut rng = Rng::new(17);
    let (id, _) = Role::of(&server, "emmen", "aandachtfunctionaris-sociaal")
        .submit(&plain_signal(&mut rng, 2026, 5))
        .await;

    // Metadata (RFC 8414).
    let meta = ok_json(
        server
            .get("/.well-known/oauth-authorization-server")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(
        meta["token_endpoint"].as_str().unwrap().ends_with(TOKEN),
        "{meta}"
    );
    assert_eq!(meta["tls_client_certificate_bound_access_tokens"], true);
    assert!(
        meta["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("ketenregisseur"))
    );

    let zvhd = server.client_with_cert("zvhd");
    let res = token_request(
        &zvhd,
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "zvhd-systeem"),
            ("scope", "ketenregisseur"),
        ],
    )
    .await;
    assert!(header(&res, "ketenpoort-receipt").is_some());
    let issued = ok_json(res, 200).await;
    assert_eq!(issued["token_type"], "Bearer");
    assert_eq!(issued["expires_in"], 600);
    assert_eq!(issued["scope"], "ketenregisseur");
    let token = issued["access_token"].as_str().unwrap().to_owned();
    let claims = claims_of(&token);
    assert_eq!(claims["partner"], "zvhd");
    assert_eq!(claims["role"], "ketenregisseur");
    assert_eq!(claims["cnf"]["x5t#S256"], fingerprint_of(&server, "zvhd"));
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 600);

    let read = |client: reqwest::Client| {
        let (url, token) = (server.url(&format!("/v1/signals/{id}")), token.clone());
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .header("Ketenpoort-Purpose", "drieluik")
                .send()
                .await
                .unwrap()
        }
    };
    let res = read(zvhd.clone()).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    problem(
        read(server.client_with_cert("emmen")).await,
        401,
        Some("token-certificate-mismatch"),
    )
    .await;
    problem(
        read(server.client().clone()).await,
        401,
        Some("token-certificate-mismatch"),
    )
    .await;

    // The log names the issuance (its client as a user reference), never the token.
    let log = Role::of(&server, "zvhd", "fg").whole_log().await;
    let issued_entries: Vec<&Value> = log
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["action"] == "issue-token")
        .collect();
    assert_eq!(issued_entries.len(), 1, "{issued_entries:?}");
    let e = issued_entries[0];
    assert_eq!(e["outcome"], "disclosed");
    assert_eq!(e["actor"]["partner"], "zvhd");
    assert!(
        e["actor"]["user"].as_str().unwrap().starts_with("usr1:"),
        "{e}"
    );
    let all = serde_json::to_string(&log).unwrap();
    assert!(!all.contains(&token), "the token is in the log");
    assert!(
        !all.contains(token.split('.').nth(2).unwrap()),
        "the token's signature is in the log"
    );
}

/// Wrong grant, unknown client, another partner's certificate, no
/// certificate, a scope the client lacks, a body that is no form, a
/// suspended client: the RFC 6749 error and nothing issued; refusals to a
/// registered client are logged under its partner.
#[tokio::test]
async fn the_token_endpoint_refuses_with_rfc_6749_errors() {
    let server = Server::start(Opts::new()).await;
    let zvhd = server.client_with_cert("zvhd");
    let ask = |client: &reqwest::Client, id: &str, scope: &str| {
        let (client, id, scope) = (client.clone(), id.to_owned(), scope.to_owned());
        let url = server.url(TOKEN);
        async move {
            client
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &id),
                    ("scope", &scope),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let res = token_request(
        &zvhd,
        &server,
        &[("grant_type", "password"), ("client_id", "zvhd-systeem")],
    )
    .await;
    oauth_refused(res, 400, "unsupported_grant_type").await;
    let res = ask(&zvhd, "no-such-systeem", "ketenregisseur").await;
    assert!(header(&res, "www-authenticate").is_some());
    oauth_refused(res, 401, "invalid_client").await;
    oauth_refused(
        ask(
            &server.client_with_cert("emmen"),
            "zvhd-systeem",
            "ketenregisseur",
        )
        .await,
        401,
        "invalid_client",
    )
    .await;
    oauth_refused(
        ask(server.client(), "zvhd-systeem", "ketenregisseur").await,
        401,
        "invalid_client",
    )
    .await;
    oauth_refused(ask(&zvhd, "zvhd-systeem", "fg").await, 400, "invalid_scope").await;
    oauth_refused(
        ask(&zvhd, "zvhd-systeem", "rechercheur").await,
        400,
        "invalid_scope",
    )
    .await;
    oauth_refused(
        ask(&zvhd, "zvhd-systeem", "ketenregisseur zorgcoordinator").await,
        400,
        "invalid_scope",
    )
    .await;
    let res = zvhd
        .post(server.url(TOKEN))
        .json(&json!({"grant_type": "client_credentials", "client_id": "zvhd-systeem"}))
        .send()
        .await
        .unwrap();
    oauth_refused(res, 400, "invalid_request").await;
    server.cli_ok(&["client", "suspend", "--id", "zvhd-systeem"]);
    oauth_refused(
        ask(&zvhd, "zvhd-systeem", "ketenregisseur").await,
        401,
        "invalid_client",
    )
    .await;
    server.cli_ok(&["client", "activate", "--id", "zvhd-systeem"]);
    ok_json(ask(&zvhd, "zvhd-systeem", "ketenregisseur").await, 200).await;

    let log = Role::of(&server, "zvhd", "fg").whole_log().await;
    let reasons: Vec<String> = log
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["action"] == "issue-token" && e["outcome"] == "denied")
        .map(|e| e["decision"]["reasons"][0].as_str().unwrap().to_owned())
        .collect();
    // The registered client's refusals: wrong certificate, none, three
    // scopes, suspended. The unknown client and the malformed requests
    // name no one to log under.
    assert_eq!(
        reasons,
        [
            "invalid_client",
            "invalid_client",
            "invalid_scope",
            "invalid_scope",
            "invalid_scope",
            "invalid_client"
        ],
        "{reasons:?}"
    );
}

/// With a 5-second lifetime and no leeway, a token from the endpoint stops
/// working once it expires.
#[tokio::test]
async fn a_token_from_the_endpoint_expires() {
    let server = Server::start(
        Opts::new()
            .env("KETENPOORT_AUTH__CLIENT_TOKEN_TTL_SECS", 5)
            .env("KETENPOORT_AUTH__LEEWAY_SECS", 0),
    )
    .await;
    let emmen = server.client_with_cert("emmen");
    let res = token_request(
        &emmen,
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "emmen-systeem"),
            ("scope", "aandachtfunctionaris-sociaal"),
        ],
    )
    .await;
    let token = ok_json(res, 200).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = || emmen.get(server.url("/v1/me")).bearer_auth(&token).send();
    assert_eq!(me().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_secs(7)).await;
    problem(me().await.unwrap(), 401, Some("token-expired")).await;
}

/// `private_key_jwt` (RFC 7523): a client registered with its public key
/// gets a token with an assertion it signed; the same assertion again, one
/// for another audience, or one signed by another key is refused.
#[tokio::test]
async fn a_client_authenticates_with_a_signed_assertion_once() {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let server = Server::start(Opts::new()).await;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "use": "sig", "alg": "EdDSA",
        "x": b64url(pair.public_key().as_ref())}]});
    let file = server.dir().join("fier-jwks.json");
    std::fs::write(&file, jwks.to_string()).unwrap();
    server.cli_ok(&[
        "client",
        "add",
        "--id",
        "fier-dossier",
        "--partner",
        "fier",
        "--roles",
        "hulpverlener",
        "--jwks",
        file.to_str().unwrap(),
    ]);
    let meta = ok_json(
        server
            .get("/.well-known/oauth-authorization-server")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let endpoint = meta["token_endpoint"].as_str().unwrap().to_owned();
    let sign = |aud: &str, jti: &str, key: &[u8]| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("k1".into());
        let now = now();
        let claims = json!({"iss": "fier-dossier", "sub": "fier-dossier", "aud": aud, "jti": jti,
            "iat": now, "exp": now + 60});
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(key),
        )
        .unwrap()
    };
    let send = |assertion: String| {
        let client = server.client().clone();
        let url = server.url(TOKEN);
        async move {
            client
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let good = sign(&endpoint, "a-1", pkcs8.as_ref());
    let issued = ok_json(send(good.clone()).await, 200).await;
    let token = issued["access_token"].as_str().unwrap();
    let claims = claims_of(token);
    assert_eq!(claims["partner"], "fier");
    assert_eq!(claims["role"], "hulpverlener");
    assert!(
        claims.get("cnf").is_none(),
        "no certificate, no binding: {claims}"
    );
    let res = server
        .get("/v1/me")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    oauth_refused(send(good).await, 401, "invalid_client").await;
    oauth_refused(
        send(sign(
            "https://elsewhere.example/token",
            "a-2",
            pkcs8.as_ref(),
        ))
        .await,
        401,
        "invalid_client",
    )
    .await;
    let other = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    oauth_refused(
        send(sign(&endpoint, "a-3", other.as_ref())).await,
        401,
        "invalid_client",
    )
    .await;
    // A fresh jti with the right key works again.
    ok_json(send(sign(&endpoint, "a-4", pkcs8.as_ref())).await, 200).await;
}

/// Under `tls.client_ca`: a client registered by OIN gets a token with a
/// certificate whose subject carries that OIN; a partner registered with an
/// OIN accepts only certificates that carry it.
#[tokio::test]
async fn certificates_carry_the_oin_of_their_partner() {
    let server = Server::start(Opts::new().client_ca()).await;
    let partners = server.data().partners();
    let oin_of = |id: &str| {
        partners
            .iter()
            .find(|p| p["id"] == id)
            .and_then(|p| p["oin"].as_str())
            .unwrap_or_else(|| panic!("{id} has no OIN"))
            .to_owned()
    };
    let (emmen_oin, assen_oin) = (oin_of("emmen"), oin_of("assen"));
    assert_eq!(emmen_oin.len(), 20);
    assert_ne!(emmen_oin, assen_oin);
    server.cli_ok(&[
        "client",
        "add",
        "--id",
        "emmen-zaaksysteem",
        "--partner",
        "emmen",
        "--roles",
        "aandachtfunctionaris-sociaal",
        "--oin",
        &emmen_oin,
    ]);
    let ask = |client: reqwest::Client| {
        let url = server.url(TOKEN);
        async move {
            client
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", "emmen-zaaksysteem"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let emmen = server.client_with_cert("emmen");
    let token = ok_json(ask(emmen.clone()).await, 200).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = emmen
        .get(server.url("/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    oauth_refused(
        ask(server.client_with_cert("assen")).await,
        401,
        "invalid_client",
    )
    .await;

    // A partner whose registered OIN is not the one its certificate carries.
    let emmen_fp = hex_fingerprint(&server, "emmen");
    server.cli_ok(&[
        "partner",
        "add",
        "--id",
        "proefgemeente",
        "--name",
        "Proefgemeente",
        "--kind",
        "gemeente",
        "--roles",
        "aandachtfunctionaris-sociaal",
        "--oin",
        &assen_oin,
        "--cert-fingerprint",
        &emmen_fp,
    ]);
    let token = server.issue(&[
        "--partner",
        "proefgemeente",
        "--role",
        "aandachtfunctionaris-sociaal",
    ]);
    let res = emmen
        .get(server.url("/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    problem(res, 403, Some("client-certificate-oin-mismatch")).await;
}

fn hex_fingerprint(server: &Server, partner: &str) -> String {
    cert_digest(server, partner)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The rate limit charges a registered client's partner, never a caller's
/// own text: unknown client ids are refused without a bucket of their own,
/// a partner's system over its rate gets 429 with `Retry-After`.
#[tokio::test]
async fn the_token_endpoint_limits_per_partner() {
    let server = Server::start(
        Opts::new()
            .env("KETENPOORT_HTTP__RATE_LIMIT_PER_SECOND", 1)
            .env("KETENPOORT_HTTP__RATE_LIMIT_BURST", 2),
    )
    .await;
    let zvhd = server.client_with_cert("zvhd");
    for i in 0..6 {
        let id = format!("unknown-systeem-{i}");
        let res = token_request(
            &zvhd,
            &server,
            &[("grant_type", "client_credentials"), ("client_id", &id)],
        )
        .await;
        oauth_refused(res, 401, "invalid_client").await;
    }
    let mut throttled = 0;
    for _ in 0..6 {
        let res = token_request(
            &zvhd,
            &server,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "zvhd-systeem"),
                ("scope", "ketenregisseur"),
            ],
        )
        .await;
        if res.status() == 429 {
            assert_eq!(header(&res, "retry-after").as_deref(), Some("1"));
            oauth_refused(res, 429, "temporarily_unavailable").await;
            throttled += 1;
        } else {
            ok_json(res, 200).await;
        }
    }
    assert!(
        throttled > 0,
        "six requests at once within a burst of two: none throttled"
    );
}
