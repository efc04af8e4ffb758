//! The authentication attack suite: every forged, stale, misdirected or
//! misbound credential is refused with a 401/403 problem+json and a stable
//! reason code; the genuine ones work.

use serde_json::{Value, json};

use crate::common::*;

const ME: &str = "/v1/me";
const ROLE: &str = "aandachtfunctionaris-veiligheid";

/// A token assembled by hand: base64url(header).base64url(claims).signature.
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

async fn refused(server: &Server, token: &str, status: u16, code: &str) -> Value {
    let res = server.get_as(ME, token).await;
    if status == 401 {
        assert!(
            header(&res, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")),
            "401 without WWW-Authenticate: Bearer"
        );
    }
    problem(res, status, Some(code)).await
}

/// (partner, role, reason) of every `deny` entry in the log, as the ZVHD
/// privacy officer reads it through `client`.
async fn denials(server: &Server, client: &reqwest::Client) -> Vec<(String, String, String)> {
    let token = server.token("zvhd", "fg");
    let page = async |start: u64, end: u64| -> Value {
        let res = client
            .get(server.url(&format!("/v1/log/entries?start={start}&end={end}")))
            .bearer_auth(&token)
            .header("Ketenpoort-Purpose", "verantwoording")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    };
    let size = page(0, 1).await["treeSize"].as_u64().unwrap();
    let mut out = Vec::new();
    for start in (0..size).step_by(1000) {
        for e in page(start, (start + 1000).min(size)).await["entries"]
            .as_array()
            .unwrap()
        {
            let e = &e["entry"];
            if e["action"] != "deny" {
                continue;
            }
            assert_eq!(
                (&e["outcome"], &e["decision"]["mode"], &e["resources"]),
                (&json!("denied"), &json!("deny"), &json!(["route:/v1/me"])),
                "{e}"
            );
            let s = |v: &Value| v.as_str().unwrap().to_owned();
            out.push((
                s(&e["actor"]["partner"]),
                s(&e["actor"]["role"]),
                s(&e["decision"]["reasons"][0]),
            ));
        }
    }
    out
}

#[tokio::test]
async fn demo_token_works_and_shows_the_partner() {
    let server = Server::start(Opts::new()).await;
    let res = server.get_as(ME, &server.token("assen", ROLE)).await;
    assert_eq!(res.status(), 200);
    assert!(content_type(&res).starts_with("application/json"));
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["partner"], "assen");
    assert_eq!(me["role"], ROLE);
    assert_eq!(me["member"], true);
    assert_eq!(me["kind"], "gemeente");
    // The user is a keyed reference, never the token's `sub` ("demo").
    let user = me["user"].as_str().unwrap();
    assert!(
        user.starts_with("usr1:") && !user.contains("demo"),
        "{user}"
    );

    let riec: Value = server
        .get_as(ME, &server.token("riec", "analist"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (riec["partner"].as_str(), riec["member"].as_bool()),
        (Some("riec"), Some(false))
    );

    // Every demo token is accepted.
    for (partner, role, token) in server.demo_tokens() {
        let res = server.get_as(ME, &token).await;
        assert_eq!(res.status(), 200, "demo token {partner}.{role}");
        let me: Value = res.json().await.unwrap();
        assert_eq!(
            (me["partner"].as_str(), me["role"].as_str()),
            (Some(&*partner), Some(&*role))
        );
    }
}

#[tokio::test]
async fn missing_and_malformed_tokens() {
    let server = Server::start(Opts::new()).await;
    let res = server.get(ME).send().await.unwrap();
    problem(res, 401, Some("token-missing")).await;
    // Another scheme, or an empty bearer, is no token.
    let token = server.token("assen", ROLE);
    for value in [
        format!("Basic {token}"),
        "Bearer ".into(),
        "Bearer".into(),
        token.clone(),
    ] {
        let res = server
            .get(ME)
            .header("authorization", value.as_str())
            .send()
            .await
            .unwrap();
        problem(res, 401, Some("token-missing")).await;
    }
    for bad in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJFZERTQSJ9",
        "eyJhbGciOiJFZERTQSJ9.e30",
        "....",
    ] {
        refused(&server, bad, 401, "token-malformed").await;
    }
    // A genuine token, truncated.
    refused(
        &server,
        &token[..token.rfind('.').unwrap()],
        401,
        "token-malformed",
    )
    .await;
}

#[tokio::test]
async fn unsigned_and_algorithm_confusion() {
    let server = Server::start(Opts::new()).await;
    let claims = server.claims("assen", ROLE);
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT"});
        for sig in [&b""[..], b"x"] {
            refused(
                &server,
                &raw_token(&header, &claims, sig),
                401,
                "token-algorithm",
            )
            .await;
        }
    }
    // HS256 keyed with the issuer's public key: the PEM text, the DER, and
    // the raw 32-byte key, as a confused verifier would use them.
    let pem = std::fs::read(server.dir().join("keys/token-issuer.pub.pem")).unwrap();
    let der = pem::parse(&pem).unwrap().contents().to_vec();
    assert_eq!(der.len(), 44, "Ed25519 SubjectPublicKeyInfo");
    let raw = der[12..].to_vec();
    for (alg, secret) in [
        ("HS256", &pem),
        ("HS256", &der),
        ("HS256", &raw),
        ("HS384", &raw),
        ("HS512", &pem),
    ] {
        let header = json!({"alg": alg, "typ": "JWT"});
        let token = match alg {
            "HS256" => hs256(secret, &header, &claims),
            _ => raw_token(&header, &claims, b"forged"),
        };
        refused(&server, &token, 401, "token-algorithm").await;
    }
    // An EdDSA token with an RS256/ES256 label.
    let genuine = server.sign(&claims);
    let (_, rest) = genuine.split_once('.').unwrap();
    for alg in ["RS256", "ES256", "PS256"] {
        let token = format!(
            "{}.{rest}",
            b64(json!({"alg": alg, "typ": "JWT"}).to_string())
        );
        refused(&server, &token, 401, "token-algorithm").await;
    }
    // Signed by a key the gateway does not know.
    let other =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ed_der(other.as_ref());
    let foreign = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &key,
    )
    .unwrap();
    refused(&server, &foreign, 401, "token-signature").await;
    // The genuine one passes.
    assert_eq!(server.get_as(ME, &genuine).await.status(), 200);
}

#[tokio::test]
async fn time_audience_and_issuer() {
    let server = Server::start(Opts::new()).await;
    let t = now();
    let with = |patch: Value| {
        let mut c = server.claims("assen", ROLE);
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        server.sign(&c)
    };
    refused(
        &server,
        &with(json!({"exp": t - 120, "nbf": t - 600, "iat": t - 600})),
        401,
        "token-expired",
    )
    .await;
    refused(
        &server,
        &with(json!({"nbf": t + 120, "iat": t + 120})),
        401,
        "token-not-yet-valid",
    )
    .await;
    refused(
        &server,
        &with(json!({"aud": "other-gateway"})),
        401,
        "token-audience",
    )
    .await;
    refused(
        &server,
        &with(json!({"aud": ["other-gateway"]})),
        401,
        "token-audience",
    )
    .await;
    refused(
        &server,
        &with(json!({"iss": "https://evil.example"})),
        401,
        "token-issuer",
    )
    .await;
    refused(
        &server,
        &with(json!({"iss": "Ketenpoort"})),
        401,
        "token-issuer",
    )
    .await;
    // RFC 7519: `aud` may be an array; one of its values must be ours.
    assert_eq!(
        server
            .get_as(ME, &with(json!({"aud": ["ketenpoort"]})))
            .await
            .status(),
        200
    );
    assert_eq!(
        server
            .get_as(ME, &with(json!({"aud": ["other", "ketenpoort"]})))
            .await
            .status(),
        200
    );
    // Within the 30 s leeway: accepted.
    assert_eq!(
        server
            .get_as(ME, &with(json!({"exp": t - 5})))
            .await
            .status(),
        200
    );
    assert_eq!(
        server
            .get_as(ME, &with(json!({"nbf": t + 5})))
            .await
            .status(),
        200
    );
    // Required claims.
    for missing in ["exp", "nbf", "iss", "aud", "partner", "role"] {
        let mut c = server.claims("assen", ROLE);
        c.as_object_mut().unwrap().remove(missing);
        refused(&server, &server.sign(&c), 401, "token-claims").await;
    }
}

#[tokio::test]
async fn payload_altered_after_signing() {
    let server = Server::start(Opts::new()).await;
    let genuine = server.token("riec", "analist");
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
    for (field, value) in [("role", "fg"), ("partner", "politie"), ("exp", "")] {
        let mut altered = claims.clone();
        altered[field] = if field == "exp" {
            json!(now() + 10 * 365 * 86400)
        } else {
            json!(value)
        };
        let token = format!("{}.{}.{}", parts[0], b64(altered.to_string()), parts[2]);
        refused(&server, &token, 401, "token-signature").await;
    }
    // Even a change that keeps the JSON equivalent breaks the signature.
    claims["partner"] = json!("riec");
    let token = format!(
        "{}.{}.{}",
        parts[0],
        b64(serde_json::to_string_pretty(&claims).unwrap()),
        parts[2]
    );
    refused(&server, &token, 401, "token-signature").await;
    // A signature of another token.
    let other = server.token("riec", "fg");
    let token = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        other.rsplit('.').next().unwrap()
    );
    refused(&server, &token, 401, "token-signature").await;
}

#[tokio::test]
async fn registry_checks() {
    let server = Server::start(Opts::new().no_partner_cache()).await;
    refused(
        &server,
        &server.sign(&server.claims("gemeente-nergens", ROLE)),
        401,
        "partner-unknown",
    )
    .await;
    // A role of another partner kind.
    for (partner, role) in [
        ("assen", "rechercheur"),
        ("riec", ROLE),
        ("politie", "analist"),
        ("assen", "FG"),
    ] {
        refused(
            &server,
            &server.sign(&server.claims(partner, role)),
            403,
            "role-not-allowed",
        )
        .await;
    }

    let token = server.token("emmen", ROLE);
    assert_eq!(server.get_as(ME, &token).await.status(), 200);
    server.cli_ok(&["partner", "suspend", "--id", "emmen"]);
    refused(&server, &token, 403, "partner-suspended").await;
    // New tokens cannot be used either, and other partners are unaffected.
    let fresh = server.issue(&["--partner", "emmen", "--role", "fg"]);
    refused(&server, &fresh, 403, "partner-suspended").await;
    assert_eq!(
        server
            .get_as(ME, &server.token("assen", ROLE))
            .await
            .status(),
        200
    );
    let listed = server.data().partners();
    let emmen = listed.iter().find(|p| p["id"] == "emmen").unwrap();
    assert_eq!(emmen["status"], "suspended");
    server.cli_ok(&["partner", "activate", "--id", "emmen"]);
    assert_eq!(server.get_as(ME, &token).await.status(), 200);
    assert_eq!(server.get_as(ME, &fresh).await.status(), 200);

    // Each refusal after the token verified is in the log under the
    // token's partner and role; the unknown partner's is not (no one to
    // log it under).
    let logged = denials(&server, server.client()).await;
    let expected: Vec<(String, String, String)> = [
        ("assen", "rechercheur", "role-not-allowed"),
        ("riec", ROLE, "role-not-allowed"),
        ("politie", "analist", "role-not-allowed"),
        // Not a role of the covenant: the token's own text is not logged.
        ("assen", "?", "role-not-allowed"),
        ("emmen", ROLE, "partner-suspended"),
        ("emmen", "fg", "partner-suspended"),
    ]
    .iter()
    .map(|(p, r, c)| (p.to_string(), r.to_string(), c.to_string()))
    .collect();
    assert_eq!(logged, expected);
}

#[tokio::test]
async fn client_certificates() {
    let server = Server::start(Opts::new().client_ca()).await;
    let assen = server.token("assen", ROLE);
    let emmen = server.token("emmen", ROLE);
    let assen_cert = server.client_with_cert("assen");

    // Health probes need no certificate.
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
    // No client certificate.
    problem(
        server.get_as(ME, &assen).await,
        401,
        Some("client-certificate-missing"),
    )
    .await;
    // The certificate of partner A with the token of partner B.
    let res = assen_cert
        .get(server.url(ME))
        .bearer_auth(&emmen)
        .send()
        .await
        .unwrap();
    problem(res, 403, Some("client-certificate-not-registered")).await;
    // The right certificate.
    let res = assen_cert
        .get(server.url(ME))
        .bearer_auth(&assen)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["partner"], "assen");

    // Bound tokens (RFC 8705).
    let pem = |p: &str| {
        server
            .dir()
            .join(format!("demo/clients/{p}.pem"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let bound = server.issue(&[
        "--partner",
        "assen",
        "--role",
        ROLE,
        "--bind-cert",
        &pem("assen"),
    ]);
    let claims: Value = serde_json::from_slice(&unb64(bound.split('.').nth(1).unwrap())).unwrap();
    assert!(claims["cnf"]["x5t#S256"].is_string(), "{claims}");
    let res = assen_cert
        .get(server.url(ME))
        .bearer_auth(&bound)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Bound to another certificate than the one presented.
    let misbound = server.issue(&[
        "--partner",
        "assen",
        "--role",
        ROLE,
        "--bind-cert",
        &pem("emmen"),
    ]);
    let res = assen_cert
        .get(server.url(ME))
        .bearer_auth(&misbound)
        .send()
        .await
        .unwrap();
    problem(res, 401, Some("token-certificate-mismatch")).await;
    // A hand-made binding that names no real certificate.
    let mut c = server.claims("assen", ROLE);
    c["cnf"] = json!({"x5t#S256": b64([7u8; 32])});
    let res = assen_cert
        .get(server.url(ME))
        .bearer_auth(server.sign(&c))
        .send()
        .await
        .unwrap();
    problem(res, 401, Some("token-certificate-mismatch")).await;
    // A bound token without any certificate.
    problem(server.get_as(ME, &bound).await, 401, None).await;

    // A certificate from outside the demo CA does not get through TLS.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "assen");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (
        server.dir().join("rogue.pem"),
        server.dir().join("rogue.key"),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let rogue = server.client_with_cert_files(&cert_file, &key_file);
    let outcome = rogue.get(server.url(ME)).bearer_auth(&assen).send().await;
    assert!(
        outcome.is_err(),
        "a certificate of an unknown CA was accepted: {:?}",
        outcome.map(|r| r.status())
    );
    // The server keeps serving.
    let res = assen_cert
        .get(server.url(ME))
        .bearer_auth(&assen)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Every refusal of a verified token is logged under its partner.
    let logged = denials(&server, &server.client_with_cert("zvhd")).await;
    let reasons: Vec<(&str, &str)> = logged
        .iter()
        .map(|(p, _, c)| (p.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("assen", "client-certificate-missing"),
            ("emmen", "client-certificate-not-registered"),
            ("assen", "token-certificate-mismatch"),
            ("assen", "token-certificate-mismatch"),
            ("assen", "token-certificate-mismatch"),
        ]
    );
}

#[tokio::test]
async fn bound_token_without_client_ca() {
    // Without `tls.client_ca` the server takes any certificate a client
    // offers (RFC 8705 self-signed client authentication): a token bound to
    // one works with that certificate only, and without one fails closed.
    let server = Server::start(Opts::new()).await;
    let pem = server.dir().join("demo/clients/assen.pem");
    let bound = server.issue(&[
        "--partner",
        "assen",
        "--role",
        ROLE,
        "--bind-cert",
        pem.to_str().unwrap(),
    ]);
    refused(&server, &bound, 401, "token-certificate-mismatch").await;
    let with = |partner: &str| {
        server
            .client_with_cert(partner)
            .get(server.url(ME))
            .bearer_auth(&bound)
            .send()
    };
    assert_eq!(with("assen").await.unwrap().status(), 200);
    problem(
        with("emmen").await.unwrap(),
        401,
        Some("token-certificate-mismatch"),
    )
    .await;
}

#[tokio::test]
async fn no_tokens_or_user_ids_in_logs() {
    let server = Server::start(Opts::new()).await;
    let mut c = server.claims("assen", ROLE);
    c["sub"] = json!("j.de.vries@example.org");
    let token = server.sign(&c);
    assert_eq!(server.get_as(ME, &token).await.status(), 200);
    // One character of the signature changed.
    let mut forged = token.clone().into_bytes();
    let i = token.rfind('.').unwrap() + 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    refused(
        &server,
        &String::from_utf8(forged).unwrap(),
        401,
        "token-signature",
    )
    .await;
    let logs = server.logs_flushed().await;
    assert!(!logs.contains(&token[..40]), "a token appears in the logs");
    assert!(
        !logs.contains("j.de.vries"),
        "a user identifier appears in the logs"
    );
}

/// A refusal after the token verified is a durable log entry, so it draws on
/// the partner's rate limit: a stolen token of a suspended partner cannot
/// grow the log without bound.
#[tokio::test]
async fn logged_refusals_draw_on_the_rate_limit() {
    let opts = Opts::new()
        .env("KETENPOORT_HTTP__RATE_LIMIT_PER_SECOND", 2)
        .env("KETENPOORT_HTTP__RATE_LIMIT_BURST", 3);
    let server = Server::start(opts).await;
    let token = server.token("emmen", ROLE);
    server.cli_ok(&["partner", "suspend", "--id", "emmen"]);
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(server.get_as(ME, &token).await.status().as_u16());
    }
    assert!(statuses.contains(&403), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let logged = denials(&server, server.client()).await;
    let refused = statuses.iter().filter(|s| **s == 403).count();
    assert_eq!(logged.len(), refused, "one entry per 403, none per 429");
    assert!(refused < 10, "{refused} refusals logged out of 20 requests");
}
