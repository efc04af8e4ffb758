//! The served OpenAPI document against the Dutch API Design Rules, as the
//! Logius `nlgov` Spectral ruleset checks them (repository
//! Logius-standaarden/API-Design-Rules, `media/linter.yaml`), written out
//! here so that CI needs no network and no Node: every rule of that
//! ruleset at error or warning level has its check below, by name. A route
//! added without what the rules ask fails here.
//!
//! Beyond the document: the `Ketenpoort-Purpose` header is a declared
//! parameter of every operation that refuses without it, every problem has
//! a `detail`, and the bodies the protocol layer refuses (over the size
//! limit, a malformed id) are problem+json over HTTP/1.1 and HTTP/2 alike.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regex::Regex;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every failed rule, as `rule: where: what`.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, ok: bool, rule: &str, at: impl AsRef<str>, what: impl AsRef<str>) {
        if !ok {
            self.0
                .push(format!("{rule}: {}: {}", at.as_ref(), what.as_ref()));
        }
    }
}

/// `value`, with `$ref`s to `#/...` followed until it is no reference.
fn deref<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..8 {
        match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
            Some(p) => value = doc.pointer(p).unwrap_or(&Value::Null),
            None => break,
        }
    }
    value
}

/// Every (method, path key, operation) of the document.
fn each_operation(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((m.to_owned(), path.clone(), op));
            }
        }
    }
    out
}

/// Every `properties` member of every schema anywhere in `v`, as (name, schema).
fn properties<'a>(v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Object(props)) = o.get("properties") {
                for (name, schema) in props {
                    out.push((name.clone(), schema));
                }
            }
            for child in o.values() {
                properties(child, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| properties(c, out)),
        _ => {}
    }
}

/// Spectral's `casing: pascal` (digits allowed, no separator).
fn pascal() -> Regex {
    Regex::new(r"^[A-Z][a-z0-9]*(?:[A-Z0-9](?:[a-z0-9]+|$))*$").unwrap()
}

/// The rules of the ruleset, each by its name there.
fn api_design_rules(doc: &Value) -> Findings {
    let mut f = Findings::default();

    // /core/doc-openapi
    let openapi = doc["openapi"].as_str().unwrap_or_default();
    f.check(
        Regex::new(r"^3(.\d+){1,2}$").unwrap().is_match(openapi),
        "nlgov:openapi3",
        "$.openapi",
        openapi,
    );
    f.check(
        !openapi.is_empty(),
        "nlgov:openapi-root-exists",
        "$",
        "no openapi",
    );
    let version = doc["info"]["version"].as_str().unwrap_or_default();
    f.check(
        Regex::new(
            r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$",
        )
        .unwrap()
        .is_match(version),
        "nlgov:semver",
        "$.info.version",
        version,
    );

    // /core/doc-openapi-contact
    let contact = &doc["info"]["contact"];
    f.check(contact.is_object(), "info-contact", "$.info", "no contact");
    for field in ["email", "name", "url"] {
        f.check(
            contact[field].as_str().is_some_and(|s| !s.is_empty()),
            "nlgov:info-contact-fields-exist",
            "$.info.contact",
            format!("no {field}"),
        );
    }

    // /core/uri-version, servers (oas3-api-servers, nlgov:servers-use-https)
    let servers = doc["servers"].as_array().cloned().unwrap_or_default();
    f.check(
        !servers.is_empty() && servers.iter().all(Value::is_object),
        "oas3-api-servers",
        "$.servers",
        "absent or empty",
    );
    let major = Regex::new(r"/v[\d+]").unwrap();
    for s in &servers {
        let url = s["url"].as_str().unwrap_or_default();
        f.check(
            major.is_match(url),
            "nlgov:include-major-version-in-uri",
            "$.servers",
            url,
        );
        f.check(
            !url.starts_with("http://"),
            "nlgov:servers-use-https",
            "$.servers",
            url,
        );
    }
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for s in item["servers"].as_array().into_iter().flatten() {
            let url = s["url"].as_str().unwrap_or_default();
            f.check(
                !url.starts_with("http://"),
                "nlgov:servers-use-https",
                path,
                url,
            );
        }
    }

    // /core/no-trailing-slash, /core/path-segments-kebab-case
    let kebab = Regex::new(
        r"^(/|(/_[a-z0-9]+|/(([a-z0-9\-]+|\{[^}]+\})(/([a-z0-9\-\.]+|\{[^}]+\}))*)(/_[a-z]+)?)/?)$",
    )
    .unwrap();
    let openapi_file = Regex::new(r"/openapi\.(json)|(yaml)").unwrap();
    let described = Regex::new(r"(?i)description|summary").unwrap();
    let standard = Regex::new("post|put|get|delete|patch|parameters").unwrap();
    for path in doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(p, _)| p)
    {
        f.check(
            path == "/" || !path.ends_with('/'),
            "path-keys-no-trailing-slash",
            path,
            "trailing slash",
        );
        f.check(
            openapi_file.is_match(path) || kebab.is_match(path),
            "nlgov:paths-kebab-case",
            path,
            "not kebab-case",
        );
        // Only for path keys that read as a description or summary.
        f.check(
            !described.is_match(path) || standard.is_match(path),
            "nlgov:http-methods",
            path,
            "only standard methods",
        );
    }

    // Operations: ids, path parameters, query keys, 400 for input, the
    // version header, problem responses.
    let camel = Regex::new(r"^\$?[a-z][a-z\d]*([A-Z][a-z\d]*)*$").unwrap();
    let template_params = Regex::new(r"\{([^}]+)\}").unwrap();
    let mut ids = BTreeMap::new();
    for (method, path, op) in each_operation(doc) {
        let at = format!("{} {path}", method.to_uppercase());
        if let Some(id) = op["operationId"].as_str() {
            let first = ids.insert(id.to_owned(), at.clone());
            f.check(
                first.is_none(),
                "operation-operationId-unique",
                &at,
                format!("{id} also on {first:?}"),
            );
        }
        let params: Vec<&Value> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| deref(doc, p))
            .collect();
        let in_template: BTreeSet<&str> = template_params
            .captures_iter(&path)
            .map(|c| c.get(1).unwrap().as_str())
            .collect();
        let declared: BTreeSet<&str> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        f.check(
            in_template == declared,
            "path-params",
            &at,
            format!("template {in_template:?}, declared {declared:?}"),
        );
        for p in params.iter().filter(|p| p["in"] == "query") {
            let name = p["name"].as_str().unwrap_or_default();
            f.check(
                camel.is_match(name),
                "nlgov:query-keys-camel-case",
                &at,
                name,
            );
        }
        let responses = op["responses"].as_object().cloned().unwrap_or_default();
        let has_input = matches!(method.as_str(), "put" | "post" | "patch")
            || (matches!(method.as_str(), "get" | "delete") && !params.is_empty());
        f.check(
            !has_input || responses.contains_key("400"),
            "nlgov:problem-invalid-input",
            &at,
            "input, but no 400",
        );
        for (status, response) in &responses {
            let response = deref(doc, response);
            let at = format!("{at} {status}");
            // The ruleset asks it of 2xx and 3xx; the server sends it on
            // every answer, so the document says so on every answer.
            let headers = response["headers"].as_object();
            f.check(
                headers.is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("api-version"))),
                "nlgov:missing-version-header",
                &at,
                "no API-Version header",
            );
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let content = response["content"].as_object();
            f.check(
                content.is_some_and(|c| c.contains_key("application/problem+json") && c.len() == 1),
                "nlgov:use-problem-schema",
                &at,
                format!(
                    "content {:?}",
                    content.map(|c| c.keys().collect::<Vec<_>>())
                ),
            );
            let schema = deref(
                doc,
                &response["content"]["application/problem+json"]["schema"],
            );
            for member in ["status", "title", "detail"] {
                f.check(
                    schema["properties"].get(member).is_some(),
                    "nlgov:problem-schema-members",
                    &at,
                    format!("no {member} in the problem schema"),
                );
                f.check(
                    schema["required"]
                        .as_array()
                        .is_some_and(|r| r.contains(&json!(member))),
                    "problem members always present",
                    &at,
                    format!("{member} not required"),
                );
            }
        }
    }

    // Schemas: UpperCamelCase names (nlgov:schema-camel-case), `_links`
    // (nlgov:property-casing), dates and times.
    let pascal = pascal();
    for name in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(n, _)| n)
    {
        f.check(
            pascal.is_match(name),
            "nlgov:schema-camel-case",
            "$.components.schemas",
            name,
        );
    }
    let mut props = Vec::new();
    properties(doc, &mut props);
    let date_name = Regex::new(r"((\w+D)|(_[dD]))((ate)|(atum))").unwrap();
    for (name, schema) in props {
        let format = schema["format"].as_str().unwrap_or_default();
        f.check(
            format != "date-time-local",
            "nlgov:date-time-ensure-timezone",
            &name,
            format,
        );
        f.check(
            format != "time",
            "nlgov:time-without-timezone",
            &name,
            format,
        );
        if name.eq_ignore_ascii_case("date") || name == "datum" || date_name.is_match(&name) {
            let formats = schema.get("format").is_some()
                || schema["allOf"]
                    .as_array()
                    .is_some_and(|a| a.iter().all(|s| s.get("format").is_some()));
            f.check(
                formats,
                "nlgov:specify-format-for-date-and-time",
                &name,
                "a date without format",
            );
            f.check(
                format != "date-time",
                "nlgov:use-date-instead-of-datetime",
                &name,
                format,
            );
        }
        if name == "_links" {
            f.check(false, "nlgov:property-casing", &name, "not lowerCamelCase");
        }
    }
    // openapi-tags-uniqueness
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let unique: BTreeSet<&str> = tags.iter().copied().collect();
    f.check(
        unique.len() == tags.len(),
        "openapi-tags-uniqueness",
        "$.tags",
        format!("{tags:?}"),
    );
    f
}

/// The served document meets every rule of the Logius ruleset.
#[tokio::test]
async fn the_document_meets_the_api_design_rules() {
    let server = Server::start(Opts::new()).await;
    let doc = openapi(&server).await;
    let found = api_design_rules(&doc);
    assert!(
        found.0.is_empty(),
        "{} API Design Rules failed:\n{}",
        found.0.len(),
        found.0.join("\n")
    );
    // The checks themselves find what they are for.
    let mut bad = doc.clone();
    bad["components"]["schemas"]["Problem"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("detail");
    bad["servers"] = json!([{"url": "http://example.org/"}]);
    bad["components"]["schemas"]["signal_v1"] = json!({});
    let op = bad["paths"]["/signals"]["post"].as_object_mut().unwrap();
    op["responses"].as_object_mut().unwrap().remove("400");
    op["responses"]["201"]
        .as_object_mut()
        .unwrap()
        .remove("headers");
    op["responses"]["403"]["content"] = json!({"application/json": {}});
    let rules: BTreeSet<String> = api_design_rules(&bad)
        .0
        .iter()
        .map(|f| f.split(':').take(2).collect::<Vec<_>>().join(":"))
        .collect();
    for rule in [
        "nlgov:problem-schema-members",
        "nlgov:include-major-version-in-uri",
        "nlgov:servers-use-https",
        "nlgov:schema-camel-case",
        "nlgov:problem-invalid-input",
        "nlgov:missing-version-header",
        "nlgov:use-problem-schema",
    ] {
        assert!(rules.contains(rule), "{rule} not found in {rules:?}");
    }
    for name in ["SignalV1", "SignalV1Address", "InboxPage", "Problem"] {
        assert!(pascal().is_match(name), "{name}");
    }
    for name in ["SignalV1_address", "signalV1", "APIKey"] {
        assert!(!pascal().is_match(name), "{name}");
    }
}

/// The purposes of the policy data: id → name.
fn policy_purposes() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/data.json"))
            .expect("policies/data.json");
    let data: Value = serde_json::from_str(&text).expect("policy data is JSON");
    data["covenant"]["purposes"]
        .as_object()
        .expect("covenant.purposes")
        .iter()
        .map(|(id, p)| {
            (
                id.clone(),
                p["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The `Ketenpoort-Purpose` header of an operation, resolved, if declared.
fn purpose_parameter<'a>(doc: &'a Value, op: &'a Value) -> Option<&'a Value> {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| deref(doc, p))
        .find(|p| {
            p["in"] == "header"
                && p["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("ketenpoort-purpose"))
        })
}

/// The purpose header is a required header parameter with the policy's
/// purposes (and their names) wherever the gateway refuses without it, so
/// a client generated from the document sends it.
#[tokio::test]
async fn the_purpose_header_is_a_declared_parameter() {
    let server = Server::start(Opts::new()).await;
    let doc = openapi(&server).await;
    let purposes = policy_purposes();
    let mut declaring = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let op = operation(&doc, &method, &path);
        let Some(p) = purpose_parameter(&doc, op) else {
            continue;
        };
        declaring.insert((method.clone(), path.clone()));
        assert_eq!(p["required"], true, "{method} {path}: {p}");
        let listed: BTreeSet<String> = p["schema"]["enum"]
            .as_array()
            .expect("an enum of purposes")
            .iter()
            .map(|v| v.as_str().expect("purpose ids are strings").to_owned())
            .collect();
        assert_eq!(
            listed,
            purposes.keys().cloned().collect(),
            "{method} {path}: the purposes of the policy data"
        );
        let description = p["description"].as_str().unwrap_or_default();
        for (id, name) in &purposes {
            assert!(
                description.contains(&format!("`{id}`: {name}")),
                "{method} {path}: {id} is not described: {description}"
            );
        }
    }
    for required in [
        ("POST", "/v1/signals"),
        ("GET", "/v1/signals"),
        ("GET", "/v1/signals/{id}"),
        ("POST", "/v1/signals/{id}/referrals"),
        ("GET", "/v1/inbox"),
        ("GET", "/v1/log/search"),
        ("GET", "/v1/log/export"),
        ("POST", "/v1/log/subjects"),
        ("GET", "/v1/phenomena/tables"),
        ("GET", "/v1/phenomena/releases"),
    ] {
        assert!(
            declaring.contains(&(required.0.to_owned(), required.1.to_owned())),
            "{required:?} does not declare Ketenpoort-Purpose"
        );
    }
    // Walking every operation as a client generated from the document
    // would, without the header: an operation that refuses for a missing
    // purpose declares the header; one that declares it never answers 2xx
    // without it.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let example = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(examples.join(name)).unwrap()).unwrap()
    };
    for (partner, role) in [
        ("assen", "aandachtfunctionaris-veiligheid"),
        ("assen", "fg"),
        ("riec", "analist"),
    ] {
        let token = server.token(partner, role);
        for (method, template) in operations(&doc) {
            let path = concrete(&template);
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let mut req = server.request(m, &path).bearer_auth(&token);
            if method == "POST" {
                let body = match template.as_str() {
                    "/v1/signals" => example("signal.json"),
                    "/v1/signals/{id}/referrals" => example("referral.json"),
                    "/v1/decisions" => example("decision.json"),
                    "/v1/log/subjects" => example("subject.json"),
                    _ => json!({}),
                };
                req = req.json(&body);
            }
            let res = req.send().await.unwrap();
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let declared = declaring.contains(&(method.clone(), template.clone()));
            if body["code"] == "purpose-missing" {
                assert!(
                    declared,
                    "{method} {template} refuses {partner}.{role} for a missing purpose \
                     but does not declare the Ketenpoort-Purpose header"
                );
            }
            if declared {
                assert!(
                    !status.is_success(),
                    "{method} {template} declares the purpose header required but \
                     answered {status} without it"
                );
            }
        }
    }
}

/// Every problem has a `detail`: the router's own 404 and 405 included,
/// on either protocol.
#[tokio::test]
async fn every_problem_has_a_detail() {
    let server = Server::start(Opts::new()).await;
    let token = server.token("assen", "aandachtfunctionaris-veiligheid");
    for client in [server.client().clone(), server.client_h2()] {
        for (method, path, status) in [
            (Method::GET, "/v1/nothing-here", 404),
            (Method::GET, "/v1/me/", 404),
            (Method::DELETE, "/v1/me", 405),
            (Method::PUT, "/v1/openapi.json", 405),
            (Method::GET, "/v1/signals/not-a-uuid", 404),
            (Method::GET, "/v1/signals/%3Cid%3E", 404),
        ] {
            let res = client
                .request(method.clone(), server.url(path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let p = problem(res, status, None).await;
            assert!(
                p["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{method} {path}: no detail: {p}"
            );
        }
    }
}

/// Invalid input (a body that does not fit its schema) is 400 with
/// `invalidParams`: each failing field by name and reason, never its value.
#[tokio::test]
async fn invalid_input_is_400_with_invalid_params() {
    let server = Server::start(Opts::new()).await;
    let token = server.token("assen", "aandachtfunctionaris-sociaal");
    let mut body: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/signal.json"),
        )
        .unwrap(),
    )
    .unwrap();
    body["municipality"] = json!("canary-gemeente-4711");
    let res = server
        .post("/v1/signals")
        .bearer_auth(&token)
        .header("ketenpoort-purpose", "signalering")
        .json(&body)
        .send()
        .await
        .unwrap();
    let p = problem(res, 400, None).await;
    assert_eq!(p["type"], "urn:ketenpoort:problem:invalid-input", "{p}");
    assert!(!p.to_string().contains("canary"), "{p}");
    let params = p["invalidParams"].as_array().expect("invalidParams");
    assert!(
        params
            .iter()
            .any(|e| e["name"] == "/municipality"
                && e["reason"].as_str().is_some_and(|r| !r.is_empty())),
        "{p}"
    );
    // A body that is no object of the route's shape: 400 too.
    let res = server
        .post("/v1/decisions")
        .bearer_auth(&token)
        .json(&json!({"recipient": 7}))
        .send()
        .await
        .unwrap();
    let p = problem(res, 400, None).await;
    assert!(
        p["invalidParams"].as_array().is_some_and(|a| !a.is_empty()),
        "{p}"
    );
}

/// A body over the limit answers 413 problem+json over HTTP/1.1 and over
/// HTTP/2, to reqwest and to curl: the answer follows the body (an early
/// one reset the HTTP/2 stream, and on HTTP/1.1 raced the client's writes).
#[tokio::test]
async fn a_body_over_the_limit_is_a_problem_on_both_protocols() {
    let server = Server::start(Opts::new().env("KETENPOORT_HTTP__BODY_LIMIT", 1000)).await;
    let token = server.token("assen", "aandachtfunctionaris-veiligheid");
    for (client, protocol) in [
        (server.client().clone(), reqwest::Version::HTTP_11),
        (server.client_h2(), reqwest::Version::HTTP_2),
    ] {
        for size in [4096, 256 * 1024] {
            let res = client
                .post(server.url("/v1/signals"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(vec![b' '; size])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{protocol:?}, {size} bytes: no answer: {e:?}"));
            assert_eq!(res.version(), protocol);
            let p = problem(res, 413, None).await;
            assert_eq!(p["type"], "urn:ketenpoort:problem:payload-too-large");
        }
        // The connection serves on.
        let res = client
            .get(server.url("/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{protocol:?}");
    }
    // reqwest takes an early answer followed by a reset; curl (nghttp2)
    // reports the reset as an error and shows no answer. It must get one.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 2 << 20]).unwrap();
    for protocol in ["--http1.1", "--http2"] {
        let out = std::process::Command::new("curl")
            .args(["-sS", protocol, "--cacert"])
            .arg(server.data().file("tls/ca.pem"))
            .args(["-H", &format!("authorization: Bearer {token}")])
            .args(["-H", "content-type: application/json", "--data-binary"])
            .arg(format!("@{}", big.display()))
            .args(["-w", "\n%{http_code} %{content_type}"])
            .arg(server.url("/v1/signals"))
            .output()
            .expect("curl (CI has it: scripts/check-openapi uses it)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.ends_with("413 application/problem+json"),
            "curl {protocol}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("payload-too-large"),
            "curl {protocol}: {text}"
        );
    }
}

/// `info.contact` is the operator's, from configuration (`api.contact_*`);
/// without it, the demo region's, marked as such — never a placeholder.
#[tokio::test]
async fn the_contact_comes_from_the_configuration() {
    let server = Server::start(Opts::new()).await;
    let contact = openapi(&server).await["info"]["contact"].clone();
    let text = contact.to_string();
    assert!(text.contains("demo") && text.contains("Drenthe"), "{text}");
    assert!(!text.contains("example"), "a placeholder: {text}");
    let server = Server::start(
        Opts::new()
            .env(
                "KETENPOORT_API__CONTACT_NAME",
                "Functioneel beheer ketenpoort, ZVHD",
            )
            .env("KETENPOORT_API__CONTACT_URL", "https://zvhd.nl/ketenpoort")
            .env("KETENPOORT_API__CONTACT_EMAIL", "ketenpoort@zvhd.nl"),
    )
    .await;
    assert_eq!(
        openapi(&server).await["info"]["contact"],
        json!({
            "name": "Functioneel beheer ketenpoort, ZVHD",
            "url": "https://zvhd.nl/ketenpoort",
            "email": "ketenpoort@zvhd.nl",
        })
    );
}

/// An id pasted literally from the docs (`/v1/signals/<id>`). Sent as a
/// URI allows it (`%3Cid%3E`, as reqwest, browsers and generated clients
/// encode it), it is an id that is none: 404 problem+json on both
/// protocols. Sent raw (`curl --path-as-is -g`), the `<` is no URI
/// character and the HTTP layer refuses the request before any code of
/// ours runs (README, API: hyper answers HTTP/1.1 with a bare 400 and
/// closes the connection; h2 resets the HTTP/2 stream, PROTOCOL_ERROR):
/// this test pins that documented answer, and that the server serves on.
#[tokio::test]
async fn a_literal_angle_bracket_in_a_path() {
    let server = Server::start(Opts::new()).await;
    let token = server.token("zvhd", "ketenregisseur");
    for (client, protocol) in [
        (server.client().clone(), reqwest::Version::HTTP_11),
        (server.client_h2(), reqwest::Version::HTTP_2),
    ] {
        let res = client
            .get(server.url("/v1/signals/<id>"))
            .bearer_auth(&token)
            .header("ketenpoort-purpose", "drieluik")
            .send()
            .await
            .unwrap();
        assert_eq!(res.version(), protocol);
        assert_eq!(res.url().path(), "/v1/signals/%3Cid%3E");
        problem(res, 404, None).await;
    }
    let curl = |protocol: &str| {
        std::process::Command::new("curl")
            .args(["-sS", protocol, "--path-as-is", "-g", "--cacert"])
            .arg(server.data().file("tls/ca.pem"))
            .args(["-H", &format!("authorization: Bearer {token}")])
            .args(["-H", "ketenpoort-purpose: drieluik"])
            .args(["-w", "%{http_code}"])
            .arg(server.url("/v1/signals/<id>"))
            .output()
            .expect("curl")
    };
    let out = curl("--http1.1");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400", "HTTP/1.1");
    let out = curl("--http2");
    assert_eq!(out.status.code(), Some(92), "HTTP/2: a stream reset");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PROTOCOL_ERROR"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = server.get("/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the server serves on");
}
