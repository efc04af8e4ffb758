//! The RIEC boundary (invariant 1) from outside.
//!
//! - Layer 2: a non-member principal gets an answer on the phenomenon
//!   routes, the log's hash routes, its own entries and `/v1/me` only;
//!   every other documented route is refused before any handler runs, and
//!   logged.
//! - Layer 3: a stored value or a personal-data pattern that reaches a
//!   response to a non-member by any way at all is blocked, alerted and
//!   logged.
//! - The canary suite: a thousand signals whose every personal field holds
//!   a unique marker; the RIEC calls every route with and without plausible
//!   parameters and bodies; no marker (in any normalised form), no signal,
//!   inbox or referral id and no pseudonym appears in any status line,
//!   header or body, nor in the server's own log output.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use aho_corasick::AhoCorasick;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::*;
use crate::common::*;

/// What a non-member may reach: (method, path template). The public routes
/// answer anyone. Not `/metrics`: it is on the operator listener only. Not
/// `POST /v1/log/checkpoint`: a non-member sees published checkpoints only
/// (`side_channels`).
const NON_MEMBER_ROUTES: [(&str, &str); 15] = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/me"),
    ("GET", "/v1/log/checkpoint"),
    ("GET", "/v1/log/verifier-key"),
    ("GET", "/v1/log/proofs/inclusion"),
    ("GET", "/v1/log/proofs/consistency"),
    ("GET", "/v1/log/entries"),
    ("GET", "/v1/phenomena/tables"),
    ("GET", "/v1/phenomena/releases"),
    ("GET", "/v1/phenomena/releases/{id}"),
    ("GET", "/v1/phenomena/releases/{id}/tables/{table}"),
    ("OPTIONS", "/v1/openapi.json"),
];

/// Real things to put in paths and bodies.
struct World {
    signals: Vec<String>,
    inbox: Vec<String>,
    releases: Vec<String>,
    tables: Vec<String>,
    log_size: u64,
    signal_body: Value,
    bsn: String,
}

/// One request as the test sends it.
#[derive(Clone, Debug)]
struct Req {
    method: Method,
    path: String,
    purpose: Option<&'static str>,
    body: Option<Value>,
}

fn example(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Plausible requests for an operation: real ids in the path, the query
/// parameters and bodies a partner would send; `thorough` adds variants.
fn requests(method: &str, template: &str, w: &World, thorough: bool) -> Vec<Req> {
    let m = Method::from_bytes(method.as_bytes()).unwrap();
    let req = |path: String, purpose: Option<&'static str>, body: Option<Value>| Req {
        method: m.clone(),
        path,
        purpose,
        body,
    };
    let size = w.log_size;
    let n = if thorough { 3 } else { 1 };
    let signal_paths = |suffix: &str| -> Vec<String> {
        let mut p: Vec<String> = w
            .signals
            .iter()
            .take(n)
            .map(|id| format!("/v1/signals/{id}{suffix}"))
            .collect();
        if thorough {
            p.push(format!("/v1/signals/{}{suffix}", uuid::Uuid::new_v4()));
        }
        p
    };
    let mut out = Vec::new();
    match (method, template) {
        ("GET", "/v1/log/proofs/inclusion") => {
            out.push(req(
                format!("{template}?index=0&treeSize={size}"),
                None,
                None,
            ));
            out.push(req(
                format!("{template}?index={}&treeSize={size}", size - 1),
                None,
                None,
            ));
        }
        ("GET", "/v1/log/proofs/consistency") => {
            out.push(req(format!("{template}?from=1&to={size}"), None, None));
        }
        ("GET", "/v1/log/entries") => {
            let mut start = 0;
            while start < size {
                let end = (start + 1000).min(size);
                out.push(req(
                    format!("{template}?start={start}&end={end}"),
                    Some("verantwoording"),
                    None,
                ));
                start = end;
                if !thorough {
                    break;
                }
            }
        }
        ("GET", "/v1/log/search") => {
            out.push(req(
                format!("{template}?action=submit&limit=500"),
                Some("verantwoording"),
                None,
            ));
            out.push(req(
                format!("{template}?partner=assen"),
                Some("verantwoording"),
                None,
            ));
        }
        ("GET", "/v1/log/export") => {
            out.push(req(
                format!("{template}?action=submit"),
                Some("verantwoording"),
                None,
            ));
        }
        ("POST", "/v1/log/subjects") => {
            out.push(req(
                template.into(),
                Some("verantwoording"),
                Some(json!({"bsn": w.bsn})),
            ));
            out.push(req(
                template.into(),
                Some("verantwoording"),
                Some(example("subject.json")),
            ));
        }
        ("POST", "/v1/signals") => {
            out.push(req(
                template.into(),
                Some("signalering"),
                Some(w.signal_body.clone()),
            ));
            out.push(req(
                template.into(),
                Some("signalering"),
                Some(example("signal.json")),
            ));
        }
        ("GET", "/v1/signals") => {
            out.push(req(format!("{template}?limit=100"), Some("drieluik"), None));
            out.push(req(
                format!("{template}?municipality=emmen&form=arbeid&receivedFrom=2023-01-01"),
                Some("signalering"),
                None,
            ));
        }
        ("GET", "/v1/signals/{id}") => {
            for p in signal_paths("") {
                out.push(req(p.clone(), Some("drieluik"), None));
                out.push(req(p, Some(FEN), None));
            }
        }
        ("POST", "/v1/signals/{id}/referrals") => {
            for p in signal_paths("/referrals") {
                out.push(req(
                    p.clone(),
                    Some(FEN),
                    Some(json!({"recipient": "riec", "purpose": FEN})),
                ));
                out.push(req(p, Some("opsporing"), Some(example("referral.json"))));
            }
        }
        ("PATCH", "/v1/signals/{id}") => {
            for p in signal_paths("") {
                out.push(req(
                    p.clone(),
                    Some("drieluik"),
                    Some(example("assessment.json")),
                ));
                out.push(req(
                    p,
                    Some("signalering"),
                    Some(example("correction.json")),
                ));
            }
        }
        ("GET", "/v1/signals/{id}/versions/{version}") => {
            for p in signal_paths("/versions/1") {
                out.push(req(p, Some("drieluik"), None));
            }
        }
        ("POST", "/v1/signals/{id}/transitions") => {
            for p in signal_paths("/transitions") {
                out.push(req(p, Some("drieluik"), Some(example("transition.json"))));
            }
        }
        ("POST", "/v1/signals/{id}/correction-requests") => {
            for p in signal_paths("/correction-requests") {
                out.push(req(
                    p,
                    Some("signalering"),
                    Some(example("correction-request.json")),
                ));
            }
        }
        ("GET", "/v1/signals/{id}/correction-requests") => {
            for p in signal_paths("/correction-requests") {
                out.push(req(p, Some("drieluik"), None));
            }
        }
        ("GET", "/v1/signals/{id}/feedback") => {
            for p in signal_paths("/feedback") {
                out.push(req(p.clone(), Some("drieluik"), None));
                out.push(req(p, Some("signalering"), None));
            }
        }
        ("POST", "/v1/signals/{id}/feedback") => {
            for p in signal_paths("/feedback") {
                out.push(req(p, Some("drieluik"), Some(example("feedback.json"))));
            }
        }
        ("GET", "/v1/signals/counts") => {
            out.push(req(template.into(), Some("drieluik"), None));
            out.push(req(
                format!("{template}?municipality=emmen&form=arbeid"),
                Some("signalering"),
                None,
            ));
        }
        ("GET", "/v1/inbox") => {
            out.push(req(format!("{template}?limit=100"), Some("drieluik"), None));
            out.push(req(template.into(), Some(FEN), None));
        }
        ("POST", "/v1/inbox/{id}/ack") => {
            for id in w.inbox.iter().take(n) {
                out.push(req(format!("/v1/inbox/{id}/ack"), None, None));
            }
        }
        ("POST", "/v1/decisions") => {
            out.push(req(
                template.into(),
                Some("drieluik"),
                Some(example("decision.json")),
            ));
        }
        ("GET", "/v1/phenomena/tables") => out.push(req(template.into(), Some(FEN), None)),
        ("GET", "/v1/phenomena/releases") => {
            out.push(req(format!("{template}?limit=100"), Some(FEN), None))
        }
        ("GET", "/v1/phenomena/releases/{id}") => {
            for id in &w.releases {
                out.push(req(format!("/v1/phenomena/releases/{id}"), Some(FEN), None));
            }
        }
        ("GET", "/v1/phenomena/releases/{id}/tables/{table}") => {
            for id in w
                .releases
                .iter()
                .take(if thorough { w.releases.len() } else { 1 })
            {
                for t in &w.tables {
                    out.push(req(
                        format!("/v1/phenomena/releases/{id}/tables/{t}"),
                        Some(FEN),
                        None,
                    ));
                }
            }
        }
        _ => {
            // A route this test does not know yet: its template with ids.
            let path = concrete(template);
            out.push(req(path, None, None));
        }
    }
    if thorough {
        // Without purpose and parameters, and with ones that do not belong.
        let bare = concrete(template);
        out.push(req(bare.clone(), None, None));
        out.push(req(
            format!("{bare}?form=arbeid&municipality=emmen"),
            Some(FEN),
            None,
        ));
        out.push(req(
            format!("{bare}?bsn={}", w.bsn),
            Some("verantwoording"),
            None,
        ));
        if method == "POST" {
            out.push(req(bare, Some(FEN), Some(w.signal_body.clone())));
        }
    }
    out
}

/// The response as text: status line, headers, body.
struct Answer {
    status: u16,
    code: Option<String>,
    text: String,
}

async fn answer(role: &Role<'_>, r: &Req) -> Answer {
    let res = role
        .call(r.method.clone(), &r.path, r.purpose, r.body.as_ref())
        .await;
    let status = res.status();
    let mut text = format!("{:?} {status}\n", res.version());
    for (k, v) in res.headers() {
        text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    let body = res.text().await.unwrap_or_default();
    let code = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned));
    text.push('\n');
    text.push_str(&body);
    Answer {
        status: status.as_u16(),
        code,
        text,
    }
}

/// The log's size as the non-member `role` sees it, once its last
/// publication covers everything written so far.
async fn log_size(role: &Role<'_>) -> u64 {
    published_size(role.server(), role.token()).await
}

async fn world(
    server: &Server,
    signals: Vec<String>,
    inbox: Vec<String>,
    signal_body: Value,
    bsn: String,
) -> World {
    let riec = Role::of(server, "riec", "analist");
    let page: Value = riec
        .get("/v1/phenomena/releases?limit=100", FEN)
        .await
        .json()
        .await
        .unwrap();
    let releases: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let tables: Vec<String> = page["items"][0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    World {
        signals,
        inbox,
        releases,
        tables,
        log_size: log_size(&riec).await,
        signal_body,
        bsn,
    }
}

#[tokio::test]
async fn a_non_member_reaches_only_the_phenomenon_and_log_hash_routes() {
    let server = Server::start(phenomena_opts()).await;
    let mut rng = Rng::new(3);
    let bodies: Vec<Value> = (0..6)
        .map(|i| plain_signal(&mut rng, 2024, 1 + i))
        .collect();
    let ids = submit_all(&server, &bodies).await;
    refer_all(&server, &ids[..3], "riec", FEN).await;
    let inbox: Vec<String> = refer_all(&server, &ids[3..], "politie", "drieluik")
        .await
        .iter()
        .map(|r| r["inboxItem"].as_str().unwrap().to_owned())
        .collect();
    publish(&server, "2024-Q2");
    let w = world(
        &server,
        ids.clone(),
        inbox,
        example("signal.json"),
        "123456782".into(),
    )
    .await;
    let doc = openapi(&server).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 20, "{ops:?}");
    for (m, t) in NON_MEMBER_ROUTES.iter().filter(|(m, _)| *m != "OPTIONS") {
        assert!(
            ops.iter().any(|(om, ot)| om == m && ot == t),
            "{m} {t} is not documented"
        );
    }
    let allowed: BTreeSet<(String, String)> = NON_MEMBER_ROUTES
        .iter()
        .map(|(m, t)| (m.to_string(), t.to_string()))
        .collect();
    let mut refused_templates = BTreeSet::new();
    for role in ["analist", "fg"] {
        let riec = Role::of(&server, "riec", role);
        for (method, template) in &ops {
            let reqs = requests(method, template, &w, false);
            assert!(!reqs.is_empty());
            for r in reqs {
                let a = answer(&riec, &r).await;
                let what = format!(
                    "riec {role}: {} {} (purpose {:?})",
                    r.method, r.path, r.purpose
                );
                if template == "/v1/oauth/token" {
                    // Before any token: a client authenticates itself here;
                    // a bearer token is no credential, so nothing is issued.
                    assert!(matches!(a.status, 400 | 401), "{what}: {}", a.text);
                    assert!(!a.text.contains("access_token"), "{what}: {}", a.text);
                } else if allowed.contains(&(method.clone(), template.clone())) {
                    assert!(
                        (200..300).contains(&a.status),
                        "{what}: {}\n{}",
                        a.status,
                        a.text
                    );
                } else {
                    assert_eq!(a.status, 403, "{what}: {}", a.text);
                    assert_eq!(
                        a.code.as_deref(),
                        Some("non-member-record-route"),
                        "{what}: refused by the router layer"
                    );
                    refused_templates.insert(template.clone());
                }
            }
        }
    }
    assert!(refused_templates.len() >= 9, "{refused_templates:?}");
    // The metrics would tell when and how many signals were referred to the
    // RIEC: not on this listener at all.
    for token in [None, Some(server.token("riec", "analist"))] {
        let mut req = server.get("/metrics");
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        problem(req.send().await.unwrap(), 404, None).await;
    }
    // Refused before the handler: the RIEC's submission was not stored,
    // its referral was not made.
    let zvhd = Role::of(&server, "zvhd", "ketenregisseur");
    let page: Value = zvhd
        .get("/v1/signals?limit=100", "drieluik")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), ids.len());
    // Every refusal is in the log: action deny, the route template, no id.
    let fg = Role::of(&server, "zvhd", "fg");
    let res = fg
        .get("/v1/log/search?action=deny&partner=riec&limit=500", AUDIT)
        .await;
    assert_eq!(res.status(), 200);
    let found: Value = res.json().await.unwrap();
    let mut logged = BTreeSet::new();
    for e in found["entries"].as_array().unwrap() {
        let e = &e["entry"];
        assert_eq!(e["outcome"], "denied");
        assert_eq!(e["decision"]["reasons"], json!(["non-member-record-route"]));
        assert_eq!(e["subjects"], json!([]));
        for r in e["resources"].as_array().unwrap() {
            let r = r.as_str().unwrap();
            let t = r.strip_prefix("route:").unwrap_or_else(|| panic!("{r}"));
            assert!(
                !ids.iter().any(|id| r.contains(id.as_str())),
                "an id in {r}"
            );
            logged.insert(t.to_owned());
        }
    }
    assert_eq!(logged, refused_templates);
}

#[tokio::test]
async fn the_egress_guard_blocks_stored_values_that_reach_a_non_member() {
    let server =
        Server::start(phenomena_opts().env("KETENPOORT_ADMIN__LISTEN", "127.0.0.1:0")).await;
    let mut body = example("signal.json");
    body["victims"][0]["name"] = json!("Quirinus Zandvoortbeek");
    body["suspects"][0]["phone"] = json!("+31 6 2417 3309");
    let ids = submit_all(&server, &[body]).await;
    let fg = Role::of(&server, "zvhd", "fg");
    // A value reaches the RIEC by a channel the layers do not police and no
    // caller can steer: the registry, where an operator registered a RIEC
    // partner under a name that is also a stored value. `/v1/me` shows it.
    // The guard does not know how it got there.
    let cases: [(&str, &str); 6] = [
        ("QUIRINUS  zandvoortbeek", "known-value"),
        ("quirinuszandvoortbeek", "known-value"),
        ("0624173309", "phone"),
        (&ids[0], "known-value"),
        ("123456782", "bsn"),
        ("analist@riec.example", "email"),
    ];
    for (i, (user, finding)) in cases.into_iter().enumerate() {
        let partner = format!("riec-naam-{i}");
        server.cli_ok(&[
            "partner", "add", "--id", &partner, "--name", user, "--kind", "riec", "--roles",
            "analist",
        ]);
        let claims = server.claims(&partner, "analist");
        let res = server.get_as("/v1/me", &server.sign(&claims)).await;
        let text = res
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {v:?}"))
            .collect::<Vec<_>>()
            .join("\n");
        let p = problem(res, 403, Some("egress-blocked")).await;
        let shown = format!("{text}\n{p}").to_lowercase();
        assert!(
            !shown.contains(&user.to_lowercase()),
            "the blocked value is not echoed"
        );
        let found = fg
            .get(
                &format!("/v1/log/search?action=deny&outcome=blocked&partner={partner}&limit=500"),
                AUDIT,
            )
            .await
            .json::<Value>()
            .await
            .unwrap();
        let last = found["entries"]
            .as_array()
            .unwrap()
            .last()
            .expect("a blocked entry")["entry"]
            .clone();
        assert_eq!(
            last["decision"]["reasons"],
            json!(["egress-blocked", format!("egress:{finding}")]),
            "{user}"
        );
        assert_eq!(last["resources"], json!(["route:/v1/me"]));
        assert_eq!(last["action"], "deny");
    }
    // A RIEC partner registered under an id that spells a stored name reads
    // a release: the tables hold no name, they pass, and the read is logged
    // under its partner id. From then on its own log entries hold a stored
    // name: reading them is decided and logged as disclosed by the handler,
    // then withheld by the guard — two entries, one request.
    server.cli_ok(&[
        "partner",
        "add",
        "--id",
        "quirinus-zandvoortbeek",
        "--name",
        "RIEC",
        "--kind",
        "riec",
        "--roles",
        "analist",
    ]);
    let named = Role::with_token(
        &server,
        server.issue(&["--partner", "quirinus-zandvoortbeek", "--role", "analist"]),
    );
    let riec = Role::with_token(
        &server,
        server.issue(&["--partner", "quirinus-zandvoortbeek", "--role", "analist"]),
    );
    publish(&server, "2024-Q2");
    let release = riec
        .get("/v1/phenomena/releases", FEN)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = named
        .get(&format!("/v1/phenomena/releases/{release}"), FEN)
        .await;
    assert_eq!(res.status(), 200);
    let size = log_size(&riec).await;
    let res = riec
        .get(
            &format!(
                "/v1/log/entries?start={}&end={size}",
                size.saturating_sub(1000)
            ),
            AUDIT,
        )
        .await;
    let request_id = header(&res, "x-request-id").unwrap();
    assert!(
        header(&res, "ketenpoort-receipt").is_none(),
        "the blocked answer carries nothing of the original"
    );
    problem(res, 403, Some("egress-blocked")).await;
    let found: Value = fg
        .get(
            "/v1/log/search?partner=quirinus-zandvoortbeek&limit=500",
            AUDIT,
        )
        .await
        .json()
        .await
        .unwrap();
    let of_request: Vec<(String, String)> = found["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["requestId"] == request_id.as_str())
        .map(|e| {
            (
                e["entry"]["action"].as_str().unwrap().into(),
                e["entry"]["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        of_request,
        [
            ("audit-query".to_owned(), "disclosed".to_owned()),
            ("deny".to_owned(), "blocked".to_owned())
        ]
    );
    // Members are not filtered: the same user id passes for them.
    let mut claims = server.claims("zvhd", "ketenregisseur");
    claims["sub"] = json!("Quirinus Zandvoortbeek");
    assert_eq!(
        server
            .get_as("/v1/me", &server.sign(&claims))
            .await
            .status(),
        200
    );
    // The alert, on the operator listener.
    let admin = server.admin_url().expect("admin listener");
    let metrics = server
        .client()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for f in ["known-value", "bsn", "phone", "email"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("ketenpoort_egress_blocked_total")
                    && l.contains(&format!("finding=\"{f}\""))),
            "no alert metric for {f}"
        );
    }
    // An ordinary user id passes.
    let mut claims = server.claims("riec", "analist");
    claims["sub"] = json!("analist-7");
    assert_eq!(
        server
            .get_as("/v1/me", &server.sign(&claims))
            .await
            .status(),
        200
    );
}

/// Unique random letters.
fn word(rng: &mut Rng) -> String {
    (0..10)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect()
}

fn cap(w: &str) -> String {
    let mut c = w.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn digits(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| (b'0' + rng.below(10) as u8) as char)
        .collect()
}

/// A fresh BSN passing the 11-proef.
fn bsn(rng: &mut Rng, used: &mut HashSet<String>) -> String {
    loop {
        let head = format!("{}{}", 1 + rng.below(9), digits(rng, 7));
        let sum: u32 = head
            .bytes()
            .enumerate()
            .map(|(i, b)| u32::from(b - b'0') * (9 - i as u32))
            .sum();
        let check = sum % 11;
        if check < 10 {
            let b = format!("{head}{check}");
            if used.insert(b.clone()) {
                return b;
            }
        }
    }
}

/// A canary signal: every personal field a unique marker. Returns the body
/// and its marker values.
fn canary(rng: &mut Rng, used: &mut HashSet<String>, i: usize) -> (Value, Vec<String>) {
    let mut markers = Vec::new();
    let mut person = |rng: &mut Rng, markers: &mut Vec<String>, victim: bool| {
        let (first, last) = (word(rng), word(rng));
        let name = format!("{} {}", cap(&first), cap(&last));
        let b = bsn(rng, used);
        let dob = if victim && i.is_multiple_of(10) {
            format!("2010-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28))
        } else {
            format!(
                "{}-{:02}-{:02}",
                1950 + rng.below(50),
                1 + rng.below(12),
                1 + rng.below(28)
            )
        };
        let (street, city) = (word(rng), word(rng));
        let postcode = format!(
            "{} {}",
            1000 + rng.below(9000),
            ["AB", "KL", "XZ", "PQ", "TU"][rng.below(5)]
        );
        let phone = format!("+31 6 {} {}", digits(rng, 4), digits(rng, 4));
        let email = format!("{}.{}@{}.example", word(rng), word(rng), word(rng));
        let mut p = json!({
            "name": name,
            "bsn": b,
            "dateOfBirth": dob,
            "nationality": "XX",
            "gender": "onbekend",
            "address": {"street": format!("{}straat", cap(&street)), "houseNumber": format!("{}", 1 + rng.below(300)),
                        "postcode": postcode, "city": cap(&city), "country": "NL"},
            "phone": phone,
            "email": email,
        });
        markers.extend([
            name, first, last, b, dob, street, city, postcode, phone, email,
        ]);
        if victim {
            let care = word(rng);
            p["careNeeds"] = json!(format!("Zorgbehoefte {care} en opvang."));
            p["labourMigrant"] = json!(i.is_multiple_of(3));
            markers.push(care);
        } else {
            let (company, conduct) = (word(rng), word(rng));
            let kvk = digits(rng, 8);
            p["companyName"] = json!(format!("{} B.V.", cap(&company)));
            p["kvkNumber"] = json!(kvk);
            p["allegedConduct"] = json!(format!("Verdacht van {conduct} bij de uitbuiting."));
            markers.extend([company, kvk, conduct]);
        }
        p
    };
    let victim = person(rng, &mut markers, true);
    let suspect = person(rng, &mut markers, false);
    let tale = word(rng);
    markers.push(tale.clone());
    let body = json!({
        "municipality": MUNICIPALITIES[i % 12],
        "dateReceived": format!("{}-{:02}-{:02}", 2023 + (i % 2), 1 + rng.below(12), 1 + rng.below(28)),
        "forms": [FORMS[i % 5]],
        "sector": SECTORS[i % 12],
        "locationType": LOCATIONS[i % 10],
        "domesticSetting": i.is_multiple_of(7),
        "indicators": ["A-3"],
        "urgency": "hoog",
        "victims": [victim],
        "suspects": [suspect],
        "narrative": format!("Fictief canary-verhaal: {tale} meldt zich bij het wijkteam."),
    });
    (body, markers)
}

/// Every form of a marker the search looks for: as written, without
/// spaces, and its digits. Short forms and digit strings must stand alone
/// (not inside a longer token), so hashes and ids cannot match by chance.
fn forms(marker: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut add = |f: String| {
        if f.len() >= 6 && !out.iter().any(|(x, _)| *x == f) {
            let alone = f.len() < 12 || f.bytes().all(|b| b.is_ascii_digit());
            out.push((f, alone));
        }
    };
    add(marker.to_owned());
    add(marker.split_whitespace().collect());
    let d: String = marker.chars().filter(char::is_ascii_digit).collect();
    if d.len() >= 8 {
        add(d);
    }
    out
}

struct Markers {
    ac: AhoCorasick,
    patterns: Vec<(String, bool)>,
}

impl Markers {
    fn new(values: &[String]) -> Self {
        let mut seen = HashSet::new();
        let patterns: Vec<(String, bool)> = values
            .iter()
            .flat_map(|v| forms(v))
            .filter(|(f, _)| seen.insert(f.to_lowercase()))
            .collect();
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(patterns.iter().map(|(p, _)| p))
            .unwrap();
        Self { ac, patterns }
    }

    /// The markers found in `text`.
    fn find(&self, text: &str) -> Vec<String> {
        let bytes = text.as_bytes();
        let alnum = |i: Option<usize>| {
            i.and_then(|i| bytes.get(i))
                .is_some_and(|b| b.is_ascii_alphanumeric())
        };
        self.ac
            .find_overlapping_iter(text)
            .filter(|m| {
                let (_, alone) = &self.patterns[m.pattern().as_usize()];
                !alone || !(alnum(m.start().checked_sub(1)) || alnum(Some(m.end())))
            })
            .map(|m| self.patterns[m.pattern().as_usize()].0.clone())
            .collect()
    }
}

#[tokio::test]
async fn canary_no_marker_id_or_pseudonym_crosses_to_the_riec() {
    const SIGNALS: usize = 1000;
    let server = Server::start(phenomena_opts()).await;
    let mut rng = Rng::new(0xca_4a41);
    let mut used = HashSet::new();
    let (bodies, values): (Vec<Value>, Vec<Vec<String>>) =
        (0..SIGNALS).map(|i| canary(&mut rng, &mut used, i)).unzip();
    let mut values: Vec<String> = values.into_iter().flatten().collect();
    let ids = submit_all(&server, &bodies).await;
    // A third to the RIEC (as contributions), a tenth to the police.
    let to_riec: Vec<String> = ids.iter().step_by(3).cloned().collect();
    let referrals = refer_all(&server, &to_riec, "riec", FEN).await;
    let to_police: Vec<String> = ids.iter().skip(1).step_by(10).cloned().collect();
    let police = refer_all(&server, &to_police, "politie", "drieluik").await;
    let inbox: Vec<String> = police
        .iter()
        .map(|r| r["inboxItem"].as_str().unwrap().to_owned())
        .collect();
    // The signal's life after intake, on some of them: assessed (a second
    // version), closed, and reported back on by the police.
    let zvhd = Role::of(&server, "zvhd", "ketenregisseur");
    for id in ids.iter().skip(2).step_by(50) {
        // The assessment's notes (class T) carry a marker of their own.
        let note = word(&mut rng);
        values.push(note.clone());
        let mut assessment = example("assessment.json");
        assessment["assessmentNotes"] = json!(format!("Drieluik-notitie over {note}."));
        let res = zvhd.change(id, "drieluik", &assessment, None).await;
        assert_eq!(res.status(), 200);
        let res = zvhd
            .transition(id, "afgesloten", Some("geen-mensenhandel"))
            .await;
        assert_eq!(res.status(), 201);
    }
    let tmm = Role::of(&server, "politie", "rechercheur");
    for id in to_police.iter().take(10) {
        let res = tmm.report_back(id, "drieluik", "in-onderzoek").await;
        assert_eq!(res.status(), 201);
    }
    let mut secret_ids: Vec<String> = ids.clone();
    secret_ids.extend(inbox.iter().cloned());
    secret_ids.extend(
        referrals
            .iter()
            .chain(&police)
            .map(|r| r["id"].as_str().unwrap().to_owned()),
    );
    for p in ["2023-Q4", "2024-Q2", "2024-Q4"] {
        publish(&server, p);
    }
    // The pseudonyms of the canary subjects, as the ZVHD privacy officer sees them.
    let fg = Role::of(&server, "zvhd", "fg");
    let mut pseudonyms = BTreeSet::new();
    let mut after = None;
    loop {
        let path = match after {
            Some(a) => format!("/v1/log/search?action=submit&limit=500&after={a}"),
            None => "/v1/log/search?action=submit&limit=500".to_owned(),
        };
        let page: Value = fg.get(&path, AUDIT).await.json().await.unwrap();
        for e in page["entries"].as_array().unwrap() {
            for s in e["entry"]["subjects"].as_array().unwrap() {
                pseudonyms.insert(s.as_str().unwrap().to_owned());
            }
        }
        match page["nextAfter"].as_u64() {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(
        pseudonyms.len(),
        2 * SIGNALS,
        "every victim and suspect has a pseudonym"
    );
    for p in &pseudonyms {
        values.push(p.clone());
        values.push(p.trim_start_matches("ps1:").to_owned());
    }
    for id in &secret_ids {
        values.push(id.clone());
        values.push(id.replace('-', ""));
    }
    let markers = Markers::new(&values);
    // The search finds what it must find (a member's view of a record).
    let own = Role::of(&server, "zvhd", "ketenregisseur")
        .read(&ids[0], "drieluik")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        markers.find(&own).len() >= 15,
        "the marker search works: {:?}",
        markers.find(&own)
    );

    // Everything the RIEC can ask, in both its roles.
    let w = world(
        &server,
        ids.clone(),
        inbox,
        bodies[0].clone(),
        bodies[1]["victims"][0]["bsn"].as_str().unwrap().to_owned(),
    )
    .await;
    assert_eq!(w.releases, ["2023-Q4", "2024-Q2", "2024-Q4"]);
    let doc = openapi(&server).await;
    let mut asked = 0;
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut extra: Vec<(String, String)> = operations(&doc);
    for path in [
        "/v1/nothing",
        "/v1/signals/",
        "/v1/phenomena/releases/2024-Q2/tables",
        "/v1/phenomena",
    ] {
        extra.push(("GET".into(), path.into()));
    }
    for role in ["analist", "fg"] {
        let riec = Role::of(&server, "riec", role);
        for (method, template) in &extra {
            for r in requests(method, template, &w, true) {
                let a = answer(&riec, &r).await;
                asked += 1;
                *statuses.entry(a.status).or_default() += 1;
                assert!(a.status < 500, "{} {}: {}", r.method, r.path, a.text);
                assert_ne!(
                    a.code.as_deref(),
                    Some("egress-blocked"),
                    "a legitimate answer was blocked: {} {}",
                    r.method,
                    r.path
                );
                let found = markers.find(&a.text);
                assert!(
                    found.is_empty(),
                    "{} {} (purpose {:?}) carries {found:?}:\n{}",
                    r.method,
                    r.path,
                    r.purpose,
                    a.text
                );
            }
        }
    }
    assert!(asked >= 150, "asked {asked}");
    assert!(
        statuses.get(&200).copied().unwrap_or(0) >= 30,
        "{statuses:?}"
    );
    // The release the RIEC receives counts the canary signals.
    let release = fetch_release(&Role::of(&server, "riec", "analist"), "2024-Q4").await;
    let total: i64 = release["tables"][0]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["categories"] == json!(["totaal"]))
        .map(|c| c["value"].as_i64().unwrap())
        .sum();
    assert!(
        (total - to_riec.len() as i64).abs() <= 6,
        "{total} published for {} contributions",
        to_riec.len()
    );

    // And nothing of it in the server's own log output.
    let logs = server.logs_flushed().await;
    assert!(logs.len() > 10_000, "the server logged the run");
    let found = markers.find(&logs);
    assert!(
        found.is_empty(),
        "the server's log output carries {:?}",
        &found[..found.len().min(10)]
    );
}

#[tokio::test]
async fn a_registry_entry_does_not_make_a_riec_a_member() {
    let server = Server::start(phenomena_opts()).await;
    // Registered without --non-member: the registry says member, the
    // covenant says the kind is not. Both layers go by the covenant.
    server.cli_ok(&[
        "partner",
        "add",
        "--id",
        "riec-twee",
        "--name",
        "RIEC test",
        "--kind",
        "riec",
        "--roles",
        "analist",
    ]);
    let listed = server.data().partners();
    let entry = listed.iter().find(|p| p["id"] == "riec-twee").unwrap();
    assert_eq!(entry["member"], json!(true));
    let riec_twee = Role::with_token(
        &server,
        server.issue(&["--partner", "riec-twee", "--role", "analist"]),
    );
    let res = riec_twee.get("/v1/signals", "drieluik").await;
    problem(res, 403, Some("non-member-record-route")).await;
    // Its answers pass the egress guard like every non-member's: a BSN in
    // its registered name is withheld.
    server.cli_ok(&[
        "partner",
        "add",
        "--id",
        "riec-drie",
        "--name",
        "123456782",
        "--kind",
        "riec",
        "--roles",
        "analist",
    ]);
    let token = server.issue(&["--partner", "riec-drie", "--role", "analist"]);
    let res = server.get_as("/v1/me", &token).await;
    problem(res, 403, Some("egress-blocked")).await;
    let res = riec_twee.get("/v1/phenomena/releases", FEN).await;
    assert_eq!(res.status(), 200);
}
