//! HTTP conventions: headers on every response, trace context, routing
//! misses, body limits, content negotiation, the rate limit, the operational
//! routes, and the OpenAPI document as the single source of routes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::common::*;

const ROLE: &str = "aandachtfunctionaris-veiligheid";

/// The headers every response carries, errors included; returns the request id.
fn assert_conventions(res: &Response, what: &str) -> uuid::Uuid {
    let h = |name: &str| header(res, name).unwrap_or_else(|| panic!("{what}: no {name} header"));
    assert_eq!(h("api-version"), "1.0.0", "{what}");
    assert_eq!(h("cache-control"), "no-store", "{what}");
    assert_eq!(
        h("content-security-policy"),
        "frame-ancestors 'none'",
        "{what}"
    );
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    let hsts = h("strict-transport-security");
    let max_age: u64 = hsts
        .split(';')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: HSTS without max-age: {hsts}"));
    assert!(max_age >= 31_536_000, "{what}: HSTS max-age {max_age}");
    let id = h("x-request-id");
    let id =
        uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{what}: x-request-id {id}: {e}"));
    assert_eq!(
        id.get_version_num(),
        7,
        "{what}: x-request-id is not a UUIDv7"
    );
    id
}

#[tokio::test]
async fn headers_on_every_response() {
    let server = Server::start(Opts::new().env("KETENPOORT_HTTP__BODY_LIMIT", 1000)).await;
    let token = server.token("assen", ROLE);
    let c = server.client();
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("healthz", server.get("/healthz"), 200),
        ("readyz", server.get("/readyz"), 200),
        ("openapi", server.get("/v1/openapi.json"), 200),
        ("me", server.get("/v1/me").bearer_auth(&token), 200),
        ("me without token", server.get("/v1/me"), 401),
        (
            "me, forged token",
            server.get("/v1/me").bearer_auth("x.y.z"),
            401,
        ),
        ("unknown route", server.get("/v1/nothing-here"), 404),
        ("wrong method", server.post("/healthz"), 405),
        (
            "too large",
            server.post("/v1/me").body(vec![b'x'; 5000]),
            413,
        ),
        (
            "preflight",
            c.request(Method::OPTIONS, server.url("/v1/openapi.json"))
                .header("origin", "https://example.org")
                .header("access-control-request-method", "GET"),
            200,
        ),
    ];
    let mut ids = BTreeSet::new();
    for (what, req, status) in cases {
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{what}");
        ids.insert(assert_conventions(&res, what));
        if status >= 400 {
            problem(res, status, None).await;
        }
    }
    assert_eq!(ids.len(), 10, "request ids are unique");

    // HTTP/2 alike.
    let h2 = server.client_h2();
    for path in ["/healthz", "/v1/me", "/nope"] {
        let res = h2.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.version(), reqwest::Version::HTTP_2);
        assert_conventions(&res, path);
    }
}

/// The metrics are on the operator listener only: on the partner listener
/// their counters (referrals per mode, requests per route) would tell the
/// RIEC when and how many signals were referred to it.
#[tokio::test]
async fn metrics_only_on_the_operator_listener() {
    let server = Server::start(Opts::new().env("KETENPOORT_ADMIN__LISTEN", "127.0.0.1:0")).await;
    let riec = server.token("riec", "analist");
    for req in [
        server.get("/metrics"),
        server.get("/metrics").bearer_auth(&riec),
    ] {
        let res = req.send().await.unwrap();
        assert_conventions(&res, "partner /metrics");
        let p = problem(res, 404, None).await;
        assert_eq!(p["type"], "urn:ketenpoort:problem:not-found");
    }
    let admin = server.admin_url().expect("admin listener");
    let c = server.client();
    let res = c.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_conventions(&res, "admin /metrics");
    assert!(content_type(&res).starts_with("text/plain"));
    let text = res.text().await.unwrap();
    assert!(text.contains("ketenpoort_http_requests_total"), "{text}");
    // Request latency is a Prometheus histogram (buckets of several
    // instances add up), not a summary (their quantiles do not).
    let latency = "ketenpoort_http_request_duration_seconds";
    assert!(
        text.contains(&format!("# TYPE {latency} histogram")),
        "{text}"
    );
    for part in ["_bucket{", "_sum{", "_count{"] {
        assert!(text.contains(&format!("{latency}{part}")), "{part}: {text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{latency}_bucket{{")) && l.contains("le=\"+Inf\"")),
        "{text}"
    );
    assert!(
        !text.contains("quantile=") && !text.contains(" summary"),
        "{text}"
    );
    // The operator listener's answers follow the same conventions, errors included.
    for (what, req, status) in [
        ("admin policy", c.get(format!("{admin}/admin/policy")), 200),
        ("admin miss", c.get(format!("{admin}/nope")), 404),
        (
            "admin wrong method",
            c.post(format!("{admin}/metrics")),
            405,
        ),
    ] {
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{what}");
        assert_conventions(&res, what);
        if status >= 400 {
            problem(res, status, None).await;
        }
    }
}

#[tokio::test]
async fn trace_context() {
    let server = Server::start(Opts::new()).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming = format!("00-{trace}-00f067aa0ba902b7-01");
    for (path, status) in [("/healthz", 200), ("/v1/me", 401), ("/nope", 404)] {
        let res = server
            .get(path)
            .header("traceparent", &incoming)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status);
        let out = header(&res, "traceparent").expect("traceparent in the response");
        let parts: Vec<&str> = out.split('-').collect();
        assert_eq!(parts.len(), 4, "{out}");
        assert_eq!(
            (parts[0], parts[1]),
            ("00", trace),
            "the caller's trace id is kept: {out}"
        );
        assert_eq!(parts[2].len(), 16);
        assert_ne!(parts[2], "00f067aa0ba902b7", "a span of our own");
    }
    // Without (or with an invalid) traceparent: a fresh, valid one.
    let mut seen = BTreeSet::new();
    for incoming in [
        None,
        Some("garbage"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
    ] {
        let mut req = server.get("/healthz");
        if let Some(v) = incoming {
            req = req.header("traceparent", v);
        }
        let out = header(&req.send().await.unwrap(), "traceparent").unwrap();
        let parts: Vec<&str> = out.split('-').collect();
        assert_eq!(parts.len(), 4, "{out}");
        assert_eq!(parts[0], "00");
        assert!(
            parts[1].len() == 32
                && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
                && parts[1] != "0".repeat(32)
        );
        assert!(seen.insert(parts[1].to_owned()), "trace ids are fresh");
    }
    // The logs carry the trace id.
    assert!(
        server.logs_flushed().await.contains(trace),
        "trace id not in the logs"
    );
}

#[tokio::test]
async fn routing_misses_are_problems() {
    let server = Server::start(Opts::new()).await;
    let token = server.token("assen", ROLE);
    for path in [
        "/nope",
        "/v1",
        "/v1/",
        "/v1/me/",
        "/healthz/",
        "/v1/openapi.json/",
        "/V1/ME",
        "/v2/me",
        "/v1/me/x",
        "/metrics",
    ] {
        for with_token in [false, true] {
            let mut req = server.get(path);
            if with_token {
                req = req.bearer_auth(&token);
            }
            let res = req.send().await.unwrap();
            assert!(header(&res, "location").is_none(), "{path}: redirected");
            assert_conventions(&res, path);
            let p = problem(res, 404, None).await;
            assert_eq!(p["type"], "urn:ketenpoort:problem:not-found", "{path}");
        }
    }
    for (method, path) in [
        (Method::POST, "/healthz"),
        (Method::DELETE, "/v1/me"),
        (Method::PUT, "/v1/openapi.json"),
        (Method::PATCH, "/readyz"),
        (Method::POST, "/readyz"),
    ] {
        for with_token in [false, true] {
            let mut req = server.request(method.clone(), path);
            if with_token {
                req = req.bearer_auth(&token);
            }
            let res = req.send().await.unwrap();
            let allow = header(&res, "allow")
                .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"));
            assert!(
                allow.split(',').any(|m| m.trim() == "GET"),
                "{method} {path}: Allow: {allow}"
            );
            assert!(
                !allow.contains(method.as_str()),
                "{method} {path}: Allow: {allow}"
            );
            let p = problem(res, 405, None).await;
            assert_eq!(p["type"], "urn:ketenpoort:problem:method-not-allowed");
        }
    }
}

#[tokio::test]
async fn body_limit_on_every_route() {
    let server = Server::start(Opts::new().env("KETENPOORT_HTTP__BODY_LIMIT", 1000)).await;
    let token = server.token("assen", ROLE);
    let doc = openapi(&server).await;
    let mut targets: Vec<(Method, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p)| (Method::from_bytes(m.as_bytes()).unwrap(), concrete(&p)))
        .collect();
    targets.extend([
        (Method::POST, "/healthz".into()),
        (Method::POST, "/v1/me".into()),
        (Method::PUT, "/v1/nothing".into()),
        (Method::POST, "/".into()),
    ]);
    for (method, path) in &targets {
        for with_token in [false, true] {
            let mut req = server
                .request(method.clone(), path)
                .header("content-type", "application/json");
            if with_token {
                req = req.bearer_auth(&token);
            }
            let res = req.body(vec![b' '; 4096]).send().await.unwrap();
            assert_conventions(&res, path);
            let p = problem(res, 413, None).await;
            assert_eq!(
                p["type"], "urn:ketenpoort:problem:payload-too-large",
                "{method} {path}"
            );
        }
    }
    // Under the limit nothing is refused for its size, and the server serves on.
    let res = server
        .get("/v1/me")
        .bearer_auth(&token)
        .body(vec![b' '; 900])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
}

/// Purpose ids the gateway may expect in `Ketenpoort-Purpose`: from the
/// operation's documented header parameter and the policy data, if present.
fn purpose_candidates(doc: &Value, path: &str) -> Vec<Option<String>> {
    let mut out = vec![None];
    let params = operation(doc, "post", path)["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for p in &params {
        let p = resolve(doc, p);
        if p["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case("ketenpoort-purpose"))
        {
            for v in p["schema"]["enum"]
                .as_array()
                .into_iter()
                .flatten()
                .chain([&p["example"], &p["schema"]["example"]])
            {
                if let Some(s) = v.as_str() {
                    out.push(Some(s.to_owned()));
                }
            }
        }
    }
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/data.json");
    if let Ok(text) = std::fs::read_to_string(data)
        && let Ok(v) = serde_json::from_str::<Value>(&text)
    {
        for purposes in [&v["covenant"]["purposes"], &v["purposes"]] {
            if let Some(m) = purposes.as_object() {
                out.extend(m.keys().map(|k| Some(k.clone())));
            }
        }
    }
    out.dedup();
    out
}

#[tokio::test]
async fn post_routes_reject_bad_bodies() {
    let server = Server::start(Opts::new().env("KETENPOORT_HTTP__BODY_LIMIT", 4096)).await;
    let doc = openapi(&server).await;
    // POST routes that take a JSON body (a bodyless POST only meets the size
    // limit, which `body_limit_on_every_route` covers).
    let posts: Vec<String> = operations(&doc)
        .into_iter()
        .filter(|(m, p)| {
            m == "POST"
                && operation(&doc, "post", p)["requestBody"]["content"]["application/json"]
                    .is_object()
        })
        .map(|(_, p)| p)
        .collect();
    assert!(
        !posts.is_empty(),
        "the OpenAPI document lists no POST route with a JSON body yet; this test waits for the exchange routes \
         (signals, referrals)"
    );
    let tokens = server.demo_tokens();
    for template in &posts {
        let path = concrete(template);
        let send = |token: &str, purpose: &Option<String>, ct: &str, body: Vec<u8>| {
            let mut req = server
                .post(&path)
                .bearer_auth(token)
                .header("content-type", ct)
                .body(body);
            if let Some(p) = purpose {
                req = req.header("ketenpoort-purpose", p.as_str());
            }
            req.send()
        };
        // A caller the route lets through to its body: whoever gets the 415.
        let mut caller = None;
        let mut seen = Vec::new();
        'search: for purpose in purpose_candidates(&doc, template) {
            for (partner, role, token) in &tokens {
                let res = send(token, &purpose, "text/plain", b"{}".to_vec())
                    .await
                    .unwrap();
                if res.status() == 415 {
                    problem(res, 415, None).await;
                    caller = Some((token.clone(), purpose.clone()));
                    break 'search;
                }
                seen.push(format!(
                    "{partner}.{role} purpose={purpose:?}: {}",
                    res.status()
                ));
            }
        }
        let (token, purpose) = caller.unwrap_or_else(|| {
            panic!(
                "POST {template}: no demo caller got 415 for a text/plain body:\n{}",
                seen.join("\n")
            )
        });
        // From here on every request is refused for its body: none may
        // store anything or leave a log entry. (Checkpoints are left out: the
        // checkpointer may sign one for the refusals of the search above.)
        let counts = || async {
            let mut c = server.data().row_counts().await;
            c.remove("log_checkpoints");
            c
        };
        let before = counts().await;
        for ct in [
            "application/x-www-form-urlencoded",
            "application/xml",
            "multipart/form-data; boundary=x",
        ] {
            let res = send(&token, &purpose, ct, b"{}".to_vec()).await.unwrap();
            problem(res, 415, None).await;
        }
        let res = server
            .post(&path)
            .bearer_auth(&token)
            .body("{}")
            .send()
            .await
            .unwrap();
        problem(res, 415, None).await;
        for malformed in [
            &b"{"[..],
            b"{\"a\":",
            b"not json",
            b"{'a': 1}",
            b"\xff\xfe",
            b"[1,]",
        ] {
            let res = send(&token, &purpose, "application/json", malformed.to_vec())
                .await
                .unwrap();
            let p = problem(res, 400, None).await;
            assert_eq!(
                p["type"], "urn:ketenpoort:problem:bad-request",
                "POST {template}: {p}"
            );
        }
        let big = format!("{{\"x\": \"{}\"}}", "a".repeat(8192)).into_bytes();
        let res = send(&token, &purpose, "application/json", big)
            .await
            .unwrap();
        problem(res, 413, None).await;
        assert_eq!(
            counts().await,
            before,
            "POST {template}: a refused body changed the database"
        );
        // Still serving, and the caller is still welcome.
        assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
        assert_eq!(server.get_as("/v1/me", &token).await.status(), 200);
    }
}

#[tokio::test]
async fn rate_limit_per_partner() {
    let opts = Opts::new()
        .env("KETENPOORT_HTTP__RATE_LIMIT_PER_SECOND", 1)
        .env("KETENPOORT_HTTP__RATE_LIMIT_BURST", 2);
    let server = Server::start(opts).await;
    let assen = server.token("assen", ROLE);
    let mut limited = None;
    for i in 0..10 {
        let res = server.get_as("/v1/me", &assen).await;
        if i == 0 {
            assert_eq!(res.status(), 200, "the first request is within the budget");
        }
        if res.status() == 429 {
            limited = Some(res);
            break;
        }
        assert_eq!(res.status(), 200);
    }
    let res = limited.expect("ten requests at once never hit a limit of 1/s with a burst of 2");
    assert_conventions(&res, "429");
    let retry: u64 = header(&res, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let p = problem(res, 429, None).await;
    assert_eq!(p["type"], "urn:ketenpoort:problem:rate-limited");
    // The same partner in another role shares the budget; other partners do not.
    problem(
        server.get_as("/v1/me", &server.token("assen", "fg")).await,
        429,
        None,
    )
    .await;
    assert_eq!(
        server
            .get_as("/v1/me", &server.token("emmen", ROLE))
            .await
            .status(),
        200
    );
    assert_eq!(
        server
            .get_as("/v1/me", &server.token("riec", "analist"))
            .await
            .status(),
        200
    );
    // Unauthenticated operational routes are not limited per partner.
    for _ in 0..5 {
        assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
    }
    // After waiting as told, the partner is served again.
    tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(100)).await;
    assert_eq!(server.get_as("/v1/me", &assen).await.status(), 200);
}

#[tokio::test]
async fn health_and_readiness() {
    let server = Server::start(Opts::new()).await;
    let res = server.get("/healthz").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    let res = server.get("/readyz").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");
}

/// (name, labels) of every sample in a Prometheus text exposition.
fn samples(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (name, labels) = match line.find('{') {
            Some(i) => (
                &line[..i],
                &line[i + 1..line.rfind('}').expect("closing brace")],
            ),
            None => (line.split_whitespace().next().unwrap(), ""),
        };
        let mut pairs = Vec::new();
        let mut rest = labels;
        while let Some(eq) = rest.find("=\"") {
            let key = rest[..eq].trim_start_matches(',').trim().to_owned();
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let mut end = rest.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = eq + 2 + i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            pairs.push((key, value));
            rest = &rest[end..];
        }
        out.push((name.to_owned(), pairs));
    }
    out
}

#[tokio::test]
async fn metrics_hold_no_personal_values() {
    let server = Server::start(Opts::new().env("KETENPOORT_ADMIN__LISTEN", "127.0.0.1:0")).await;
    let admin = server.admin_url().expect("admin listener");
    let mut claims = server.claims("assen", ROLE);
    claims["sub"] = json!("j.de.vries@example.org");
    let token = server.sign(&claims);
    let id = uuid::Uuid::new_v4().to_string();
    let bsn = "111222333";
    assert_eq!(server.get_as("/v1/me", &token).await.status(), 200);
    assert_eq!(
        server
            .get_as(&format!("/v1/me?bsn={bsn}"), &token)
            .await
            .status(),
        200
    );
    server
        .get_as(&format!("/v1/signals/{id}?bsn={bsn}"), &token)
        .await;
    server.get_as(&format!("/v1/me/{id}"), &token).await;
    server.get_as("/v1/me", &format!("{token}x")).await;
    server.get(&format!("/{bsn}")).send().await.unwrap();
    // An invented method is the client's own text (here digits like a BSN's).
    let invented = "999888777";
    let method = Method::from_bytes(invented.as_bytes()).unwrap();
    for path in ["/v1/me", "/healthz", "/nope"] {
        let res = server
            .request(method.clone(), path)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{path}: {}", res.status());
    }
    let doc = openapi(&server).await;
    let mut templates: BTreeSet<String> = operations(&doc).into_iter().map(|(_, p)| p).collect();
    // The operator listener's own routes.
    templates.extend(["/metrics", "/admin/policy", "/admin/policy/reload"].map(String::from));

    let res = server
        .client()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        content_type(&res).starts_with("text/plain"),
        "{}",
        content_type(&res)
    );
    let text = res.text().await.unwrap();
    assert!(text.contains("ketenpoort_http_requests_total"), "{text}");
    let samples = samples(&text);
    assert!(
        samples
            .iter()
            .any(|(n, l)| n == "ketenpoort_http_requests_total"
                && l.iter().any(|(k, v)| k == "route" && v == "/v1/me"))
    );
    for (name, labels) in &samples {
        for (key, value) in labels {
            for secret in [
                &token[..20],
                "eyJ",
                &id,
                bsn,
                "j.de.vries",
                "example.org",
                "Bearer",
            ] {
                assert!(
                    !value.contains(secret),
                    "{name}{{{key}=\"{value}\"}} holds {secret:?}"
                );
            }
            assert!(
                uuid::Uuid::parse_str(value).is_err(),
                "{name}: an id in label {key}"
            );
            assert!(
                !value.contains('?'),
                "{name}: a query string in label {key}"
            );
            if key == "route" {
                assert!(
                    value == "unmatched" || templates.contains(value),
                    "{name}: route label {value:?} is not a template"
                );
            }
        }
    }
    for secret in ["j.de.vries", bsn, &id, invented] {
        assert!(!text.contains(secret), "{secret} in /metrics");
    }
    let methods: BTreeSet<&str> = samples
        .iter()
        .flat_map(|(_, l)| l.iter())
        .filter(|(k, _)| k == "method")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(methods.contains("other"), "{methods:?}");
    for m in &methods {
        assert!(
            [
                "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other"
            ]
            .contains(m),
            "method label {m:?}"
        );
    }
    let logs = server.logs_flushed().await;
    assert!(
        logs.contains("\"method\":\"other\""),
        "the request span names the method"
    );
    assert!(!logs.contains(invented), "an invented method in the logs");
}

#[tokio::test]
async fn openapi_document() {
    let server = Server::start(Opts::new()).await;
    let res = server
        .get("/v1/openapi.json")
        .header("origin", "https://partner.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(content_type(&res).starts_with("application/json"));
    let version = header(&res, "api-version").unwrap();
    let doc: Value = res.json().await.unwrap();
    let openapi = doc["openapi"].as_str().expect("openapi field");
    assert!(openapi.starts_with("3."), "OpenAPI {openapi}");
    assert_eq!(doc["info"]["title"], "ketenpoort");
    assert_eq!(
        doc["info"]["version"],
        json!(version),
        "API-Version matches the document"
    );
    assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (_, path) in operations(&doc) {
        assert!(
            path.starts_with('/') && !path.ends_with('/') || path == "/",
            "path {path}"
        );
    }
    // A preflight, as a browser sends it for a non-simple request.
    let res = server
        .request(Method::OPTIONS, "/v1/openapi.json")
        .header("origin", "https://partner.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "traceparent")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "preflight: {}", res.status());
    assert_eq!(
        header(&res, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    let methods = header(&res, "access-control-allow-methods").unwrap_or_default();
    assert!(
        methods == "*" || methods.contains("GET"),
        "allow-methods {methods:?}"
    );
    // Without Origin: no CORS headers needed, still no auth.
    assert_eq!(
        server
            .get("/v1/openapi.json")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // CORS is open on the document only.
    let res = server
        .get("/v1/me")
        .bearer_auth(server.token("assen", ROLE))
        .header("origin", "https://partner.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        header(&res, "access-control-allow-origin").is_none(),
        "CORS open beyond the API description"
    );
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let server = Server::start(Opts::new()).await;
    let doc = openapi(&server).await;
    let ops = operations(&doc);
    for required in ["/healthz", "/readyz", "/v1/openapi.json", "/v1/me"] {
        assert!(
            ops.iter().any(|(m, p)| m == "GET" && p == required),
            "GET {required} is not documented"
        );
    }
    assert!(
        !ops.iter()
            .any(|(_, p)| p == "/metrics" || p.starts_with("/admin")),
        "the operator routes are no partner routes: {ops:?}"
    );
    let token = server.token("assen", ROLE);
    for (method, template) in &ops {
        let path = concrete(template);
        let what = format!("{method} {template} (as {path})");
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let req = |auth: Option<&str>| {
            let mut r = server.request(m.clone(), &path);
            if matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
                r = r.json(&json!({}));
            }
            if let Some(t) = auth {
                r = r.bearer_auth(t);
            }
            r.send()
        };
        let res = req(None).await.unwrap();
        // The token endpoint authenticates clients itself (RFC 6749 errors).
        let protected = template.starts_with("/v1/")
            && template != "/v1/openapi.json"
            && template != "/v1/oauth/token";
        if protected {
            // The router's own 404/405 need no token: a 401 proves the route exists.
            let op = operation(&doc, method, template);
            assert!(
                op["security"].as_array().is_some_and(|s| !s.is_empty()),
                "{what}: authenticated, but the document declares no security"
            );
            problem(res, 401, Some("token-missing")).await;
        } else {
            assert!(res.status() != 405, "{what}: 405 from the router");
            if res.status() == 404 {
                let p: Value = res.json().await.unwrap();
                panic!("{what}: 404 without authentication on a public route: {p}");
            }
        }
        let res = req(Some(&token)).await.unwrap();
        assert!(res.status() != 405, "{what}: 405 with a token");
        assert!(
            res.status().as_u16() < 500,
            "{what}: {} with a token",
            res.status()
        );
        assert_conventions(&res, &what);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Ways of registering a route other than `routes!` in `src/api/mod.rs`,
/// found in `source` (a file at `rel`): (line, what). Comments and the
/// `#[cfg(test)]` part at the end of a file are not looked at.
fn route_registrations(rel: &str, source: &str) -> Vec<(usize, String)> {
    // The privacy officer's console is HTML, not API: its pages are not
    // OpenAPI operations. Its own router is this one file, and `api::app`
    // mounts it with one `.nest_service("/console", ..)`.
    if rel == "src/console/routes.rs" {
        return Vec::new();
    }
    let in_api_mod = rel == "src/api/mod.rs";
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut hit = |what: &str| found.push((n + 1, format!("{what}: {}", line.trim())));
        for call in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".fallback_service(",
        ] {
            let console_mount = in_api_mod
                && call == ".nest_service("
                && code.contains(".nest_service(\"/console\", console)");
            if code.contains(call) && !console_mount {
                hit(call);
            }
        }
        if !in_api_mod {
            for only_there in ["routes!(", ".fallback(", ".method_not_allowed_fallback("] {
                if code.contains(only_there) {
                    hit(only_there);
                }
            }
        }
        // A plain axum router or method router (not utoipa's OpenApiRouter).
        for ident in ["Router", "MethodRouter", "routing"] {
            let mut from = 0;
            while let Some(i) = code[from..].find(ident).map(|i| i + from) {
                let (before, after) = (code[..i].chars().last(), &code[i + ident.len()..]);
                if !ident_char(before) && !ident_char(after.chars().next()) {
                    let what = match ident {
                        "Router" if after.starts_with("::") => Some("axum Router constructor"),
                        "MethodRouter" => Some("MethodRouter"),
                        "routing" if after.starts_with("::") => Some("axum::routing"),
                        _ => None,
                    };
                    if let Some(w) = what {
                        hit(w);
                    }
                }
                from = i + ident.len();
            }
        }
    }
    found
}

#[test]
fn the_scanner_sees_stray_routes() {
    let bad = "let r = Router::new().route(\"/x\", get(h));\nuse axum::routing::post;\nlet m: MethodRouter = x;\n\
               let s = OpenApiRouter::new().nest(\"/a\", b);\nlet t = x.routes(routes!(h));";
    let found = route_registrations("src/api/other.rs", bad);
    let lines: BTreeSet<usize> = found.iter().map(|f| f.0).collect();
    assert_eq!(lines, BTreeSet::from([1, 2, 3, 4, 5]), "{found:?}");
    let good = "use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};\n\
                let r = OpenApiRouter::new().routes(routes!(a, b)).route_layer(l);\n\
                // .route( in a comment\nlet (router, doc) = r.split_for_parts();\n#[cfg(test)]\nRouter::new().route(\"/\", x)";
    assert_eq!(route_registrations("src/api/mod.rs", good), vec![]);
}

#[test]
fn routes_are_registered_only_through_the_openapi_router() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("src/api/mod.rs")));
    let mut offences = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(f).unwrap();
        for (line, what) in route_registrations(&rel, &source) {
            offences.push(format!("{rel}:{line}: {what}"));
        }
    }
    assert!(
        offences.is_empty(),
        "routes must be registered with utoipa_axum::routes! in src/api/mod.rs only, so the router and the \
         OpenAPI document cannot drift:\n{}",
        offences.join("\n")
    );
    let api = std::fs::read_to_string(root.join("src/api/mod.rs")).unwrap();
    assert!(
        api.contains("routes!("),
        "src/api/mod.rs registers no routes"
    );
}

/// A request that outlasts `http.request_timeout_secs` (here: a submit whose
/// body stops arriving half-way) is answered 503 with a problem, under the
/// conventions, and stores nothing.
#[tokio::test]
async fn a_request_past_the_timeout_is_503_and_changes_nothing() {
    let server = Server::start(Opts::new().env("KETENPOORT_HTTP__REQUEST_TIMEOUT_SECS", 1)).await;
    let token = server.token("emmen", "aandachtfunctionaris-sociaal");
    let before = server.data().row_counts().await;
    let body = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/signal.json"))
        .expect("examples/signal.json");
    let (head, tail) = body.split_at(body.len() / 2);
    let (head, tail) = (head.to_vec(), tail.to_vec());
    let stalled = futures::stream::iter([Ok::<_, std::io::Error>(head)]).chain(
        futures::stream::once(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok(tail)
        }),
    );
    // Had the server waited for the whole body, this would be a 201.
    let res = server
        .post("/v1/signals")
        .bearer_auth(&token)
        .header("ketenpoort-purpose", "signalering")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stalled))
        .send()
        .await
        .unwrap();
    assert_conventions(&res, "timed out");
    let p = problem(res, 503, None).await;
    assert_eq!(p["type"], "urn:ketenpoort:problem:unavailable", "{p}");
    assert_eq!(server.data().row_counts().await, before);
    // The same submit, sent whole, still goes through.
    let res = server
        .post("/v1/signals")
        .bearer_auth(&token)
        .header("ketenpoort-purpose", "signalering")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

/// The access log keeps every request: its line is written on the log
/// writer's thread (`telemetry::access`), queued whole and never dropped.
/// Each of 200 concurrent requests — an answer, a 404 under a route, a
/// routing miss, a refusal without a token — has exactly one access line,
/// with its own status and route template, and no line carries a path.
#[tokio::test]
async fn every_request_has_exactly_one_access_line() {
    let server = Server::start(Opts::new()).await;
    let number = "123456782";
    let cases = [
        ("/healthz", "/healthz"),
        ("/v1/openapi.json", "/v1/openapi.json"),
        ("/v1/signals/123456782", "/v1/signals/{id}"),
        ("/nowhere/123456782", "unmatched"),
    ];
    let server = &server;
    let answers = futures::future::join_all((0..200).map(|i| {
        let (path, route) = cases[i % cases.len()];
        async move {
            let res = server.get(path).send().await.expect("request");
            let id = header(&res, "x-request-id").expect("x-request-id");
            (route, res.status().as_u16(), id)
        }
    }))
    .await;
    let logs = server.logs_flushed().await;
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request completed")
        .collect();
    for (route, status, id) in &answers {
        let mine: Vec<&Value> = lines
            .iter()
            .filter(|v| v["span"]["request_id"] == id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "access lines of request {id}: {mine:?}");
        assert_eq!(mine[0]["fields"]["status"], json!(status), "{}", mine[0]);
        assert_eq!(mine[0]["span"]["route"], json!(route), "{}", mine[0]);
        assert_eq!(mine[0]["span"]["method"], "GET", "{}", mine[0]);
    }
    let statuses: BTreeSet<u16> = answers.iter().map(|(_, s, _)| *s).collect();
    assert!(
        statuses.len() >= 3,
        "answers, misses and refusals: {statuses:?}"
    );
    assert!(!logs.contains(number), "a path's number in the log");
}
