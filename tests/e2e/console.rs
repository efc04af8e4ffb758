//! The privacy officer's console (`/console/`): HTTP-level checks of its
//! security (headers, sessions, CSRF, 403s, nothing personal in URLs or
//! logs), and the browser test: Chromium driven by Selenium
//! (`tests/browser/console.py`) against a real OpenID provider
//! (`oidc-provider-mock`), axe-core on every page, and a tampered log row
//! that the browser's own verification catches.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;

use crate::client::*;
use crate::common::{Opts, Server, random_id};

/// Tools the browser test needs; CI installs them (`.ci/run`). Missing is a
/// failure, never a skip.
fn tool(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: .ci/run installs it (Debian chromium, chromium-driver)"
    );
    p
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python_path() -> String {
    repo().join(".venv-py/lib").display().to_string()
}

/// `oidc-provider-mock` on a free loopback port; killed when dropped.
struct Op {
    child: Child,
    url: String,
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_op() -> Op {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "oidc_provider_mock",
            "--port",
            &port.to_string(),
            "--require-nonce",
        ])
        .env("PYTHONPATH", python_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting oidc-provider-mock (.ci/run installs it into .venv-py/lib)");
    // Killed (and waited for) when dropped, also if it never answers.
    let op = Op {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Plain HTTP on loopback; reqwest still wants a TLS configuration.
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .unwrap();
    for _ in 0..100 {
        if let Ok(r) = client
            .get(format!("{}/.well-known/openid-configuration", op.url))
            .send()
            .await
            && r.status().is_success()
        {
            return op;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("oidc-provider-mock did not start on {}", op.url);
}

fn console_config(op: &str) -> String {
    format!(
        r#"
[[auth.providers]]
id = "drenthe-idp"
name = "Identiteitsprovider Drenthe (test)"
issuer = "{op}"
client_id = "ketenpoort-console"
client_secret = "test-secret"
partners = ["emmen", "zvhd", "riec", "nla"]
partner_claim = "ketenpoort_partner"
role_claim = "ketenpoort_role"

[console.control]
repeated_refusals = 2
burst_reads = 3
burst_minutes = 60
"#
    )
}

/// A signal whose personal values are unique markers; returns it, its
/// markers and the victim's BSN.
fn canary_signal() -> (Value, Vec<String>, String) {
    let mut body: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/signal.json")).unwrap(),
    )
    .unwrap();
    let tag = random_id()[..10].to_owned();
    let bsn = valid_bsn(&tag);
    let markers = vec![
        format!("Kanarie{tag}"),
        format!("Verdacht{tag}"),
        format!("kanarie{tag}@example.invalid"),
        bsn.clone(),
    ];
    body["victims"][0]["name"] = markers[0].clone().into();
    body["suspects"][0]["name"] = markers[1].clone().into();
    body["victims"][0]["email"] = markers[2].clone().into();
    body["victims"][0]["bsn"] = bsn.clone().into();
    (body, markers, bsn)
}

/// A BSN passing the 11-proef, derived from `seed`.
fn valid_bsn(seed: &str) -> String {
    let mut n: u64 = seed
        .bytes()
        .fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
    loop {
        let digits: Vec<u64> = format!("{:09}", n % 1_000_000_000)
            .bytes()
            .map(|b| (b - b'0') as u64)
            .collect();
        let sum: i64 = digits[..8]
            .iter()
            .enumerate()
            .map(|(i, d)| (9 - i as i64) * *d as i64)
            .sum::<i64>()
            - digits[8] as i64;
        if digits[0] != 0 && sum % 11 == 0 {
            return digits.iter().map(|d| d.to_string()).collect();
        }
        n += 1;
    }
}

/// What [`seed`] left in the log.
struct Seeded {
    markers: Vec<String>,
    bsn: String,
    /// The user id (as the NLA knows it) of two of the NLA's reads, and the
    /// indices of those reads.
    user_id: String,
    user_reads: Vec<u64>,
    /// The police's read of the canary signal, never referred to the police
    /// (the opened policy of [`open_policies`] allows it).
    unreferred_read: u64,
}

/// The covenant policies with one grant opened up, as a mistaken policy
/// change might: the police's Drieluik grant covers every signal instead
/// of those referred to the police. The control rule on unreferred reads
/// exists for this.
fn open_policies() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else if name != "exchange_test.rego" && name != "lifecycle_test.rego" {
                // The exchange policy's own tests (which the server runs
                // at load) would refuse the change: it comes with its own.
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&repo().join("policies"), dir.path());
    let path = dir.path().join("data.json");
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let grants = data["covenant"]["grants"].as_array_mut().unwrap();
    let grant = grants
        .iter_mut()
        .find(|g| g["id"] == "politie-drieluik")
        .expect("the police's Drieluik grant");
    assert_eq!(grant["access"], "referred");
    grant["access"] = "all".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&data).unwrap()).unwrap();
    std::fs::write(
        dir.path().join("exchange/exchange_test.rego"),
        "package ketenpoort.exchange_test\n\n\
         test_the_police_drieluik_grant_covers_every_signal if {\n\
         \tsome g in data.covenant.grants\n\
         \tg.id == \"politie-drieluik\"\n\
         \tg.access == \"all\"\n}\n",
    )
    .unwrap();
    dir
}

/// Seeds the log: a canary signal from Emmen, referred to the NLA and read
/// there (twice by a user with a known id); refusals of an Emmen user;
/// entries Emmen is no party to; with [`open_policies`], a read by the
/// police that nobody referred the signal for.
async fn seed(server: &Server, open: bool) -> Seeded {
    let (body, markers, bsn) = canary_signal();
    let id = submit(server, "emmen", "aandachtfunctionaris-sociaal", &body).await;
    assert!(
        refer(server, "ketenregisseur", &id, "nla", "opsporing")
            .await
            .status()
            .is_success()
    );
    for _ in 0..3 {
        assert_eq!(
            read(server, "nla", "inspecteur", &id, "opsporing")
                .await
                .status(),
            200
        );
    }
    // Refused: the municipality reads with a purpose that does not fit.
    for _ in 0..2 {
        assert_eq!(
            read(
                server,
                "emmen",
                "aandachtfunctionaris-sociaal",
                &id,
                "opsporing"
            )
            .await
            .status(),
            403
        );
    }
    // Signals of another municipality: Emmen's FG does not see them.
    let (mut other, _, _) = canary_signal();
    other["municipality"] = "assen".into();
    let other_id = submit(server, "assen", "aandachtfunctionaris-sociaal", &other).await;
    let _ = read(server, "zvhd", "ketenregisseur", &other_id, "drieluik").await;
    // Two reads by an NLA user the FG will look for by id.
    let user_id = format!("inspecteur-{}", &random_id()[..8]);
    let token = server.issue(&[
        "--partner",
        "nla",
        "--role",
        "inspecteur",
        "--user",
        &user_id,
    ]);
    let mut user_reads = Vec::new();
    for _ in 0..2 {
        let res = Role::with_token(server, token.clone())
            .read(&id, "opsporing")
            .await;
        assert_eq!(res.status(), 200);
        user_reads.push(receipt(&res).0);
    }
    let res = read(server, "politie", "rechercheur", &id, "drieluik").await;
    let unreferred_read = if open {
        assert_eq!(res.status(), 200, "the opened policy lets the police read");
        receipt(&res).0
    } else {
        assert_eq!(res.status(), 403, "the covenant's policy does not");
        u64::MAX
    };
    Seeded {
        markers,
        bsn,
        user_id,
        user_reads,
        unreferred_read,
    }
}

/// An `application/x-www-form-urlencoded` body.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |v: &str| {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn get(server: &Server, path: &str) -> reqwest::RequestBuilder {
    server.client().get(server.url(path))
}

/// Signs in through the demo sign-in; returns the session cookie.
async fn demo_sign_in(server: &Server, partner: &str) -> reqwest::Response {
    let res = get(server, "/console/aanmelden").send().await.unwrap();
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-kp-console="))
        .expect("a pre-session cookie");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let page = res.text().await.unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a CSRF token on the sign-in page")
        .to_owned();
    server
        .client()
        .post(server.url("/console/aanmelden/demo"))
        .header("cookie", pair)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("partner", partner), ("csrf", &csrf)]))
        .send()
        .await
        .unwrap()
}

fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-kp-console=") && !v.contains("Max-Age=0"))
}

/// Headers, sessions, CSRF and the demo sign-in, over plain HTTP requests.
#[tokio::test]
async fn the_console_is_locked_down_and_every_page_is_logged() {
    let server = Server::start(Opts::new()).await;
    seed(&server, false).await;

    // Without a session: back to sign-in.
    let res = get(&server, "/console/zoeken").send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/console/aanmelden");
    // A tampered session cookie: the same.
    let res = get(&server, "/console/")
        .header("cookie", format!("__Host-kp-console={}", "A".repeat(43)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);

    // The sign-in page: strict CSP, no caching, the demo marked.
    let res = get(&server, "/console/aanmelden").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(
        res.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    let cookie = session_cookie(&res).unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let page = res.text().await.unwrap();
    assert!(
        page.contains("Ontwikkelmodus"),
        "the demo sign-in says it is one"
    );

    // A RIEC user gets a 403 page, and the refusal is logged.
    let before = server.data().row_counts().await["log_entries"];
    let res = demo_sign_in(&server, "riec").await;
    assert_eq!(res.status(), 403);
    assert!(session_cookie(&res).is_none());
    assert!(res.text().await.unwrap().contains("Geen toegang"));
    assert_eq!(server.data().row_counts().await["log_entries"], before + 1);

    // The municipality's FG signs in.
    let res = demo_sign_in(&server, "emmen").await;
    assert_eq!(res.status(), 303);
    let session = session_cookie(&res).expect("a session");
    let pair = session.split(';').next().unwrap().to_owned();
    let page = |path: &str| get(&server, path).header("cookie", pair.clone()).send();
    let before = server.data().row_counts().await["log_entries"];
    let res = page("/console/").await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().contains_key("ketenpoort-receipt"),
        "a page with entries carries its receipt"
    );
    let overview = res.text().await.unwrap();
    assert!(overview.contains("<svg"), "the overview has charts");
    assert_eq!(
        server.data().row_counts().await["log_entries"],
        before + 1,
        "the overview is logged"
    );

    // A search too wide: the API's message, nothing logged.
    let before = server.data().row_counts().await["log_entries"];
    let res = page("/console/zoeken?from=2020-01-01&to=2026-01-01")
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("at most 31 days"));
    assert_eq!(server.data().row_counts().await["log_entries"], before);

    // A form without the CSRF token: 403, nothing changed.
    let before = server.data().row_counts().await;
    let res = server
        .client()
        .post(server.url("/console/controle/beoordeeld"))
        .header("cookie", pair.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("flag", "refusals:x:1"),
            ("note", "n"),
            ("csrf", "wrong"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(server.data().row_counts().await, before);

    // Sign-out ends the session.
    let overview_csrf = overview
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let res = server
        .client()
        .post(server.url("/console/afmelden"))
        .header("cookie", pair.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", overview_csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(page("/console/").await.unwrap().status(), 303);
}

/// The whole console in Chromium, signed in through a real OpenID provider.
#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let chromium = tool("/usr/bin/chromium");
    let chromedriver = tool("/usr/bin/chromedriver");
    let axe = repo().join("tests/browser/node_modules/axe-core/axe.min.js");
    assert!(
        axe.exists(),
        "axe-core is missing: .ci/run installs it (npm)"
    );
    let op = start_op().await;
    let policies = open_policies();
    let server = Server::start(
        Opts::new()
            .config(&console_config(&op.url))
            .env("KETENPOORT_POLICY__PATH", policies.path().display()),
    )
    .await;
    let seeded = seed(&server, true).await;
    // The console verifies against the ledger's latest checkpoint (it signs
    // none itself): a member asks for one over the seeded log, as the
    // checkpointer would after `log.checkpoint_interval_secs`.
    sign_as_member(&server).await;
    let (markers, bsn) = (seeded.markers.clone(), seeded.bsn.clone());
    let names: std::collections::HashMap<String, String> = server
        .data()
        .partners()
        .into_iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["displayName"]
                    .as_str()
                    .or(p["display_name"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    // The municipality's FG sees what its own organisation disclosed (to
    // the ZVHD); the ZVHD's FG also sees the NLA's reads.
    let expect_own = names["zvhd"].clone();
    let expect_all = format!("{},{}", names["zvhd"], names["nla"]);
    let profile = tempfile::tempdir().unwrap();
    let docs = repo().join("docs");
    let mut child = Command::new("python3")
        .arg(repo().join("tests/browser/console.py"))
        .args(["--url", &format!("https://{}", server.addr())])
        .args(["--op", &op.url])
        .arg("--docs")
        .arg(&docs)
        .arg("--axe")
        .arg(&axe)
        .arg("--profile")
        .arg(profile.path())
        .arg("--chromium")
        .arg(&chromium)
        .arg("--chromedriver")
        .arg(&chromedriver)
        .args([
            "--bsn",
            &bsn,
            "--expect-own",
            &expect_own,
            "--expect-all",
            &expect_all,
        ])
        .args(["--municipality", "emmen"])
        .args(["--user-id", &seeded.user_id, "--user-partner", "nla"])
        .args([
            "--user-reads",
            &seeded
                .user_reads
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ])
        .args(["--unreferred-read", &seeded.unreferred_read.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 tests/browser/console.py");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut result = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(index) = line.strip_prefix("TAMPER ") {
            tamper(&server, index.trim().parse().unwrap()).await;
            writeln!(stdin, "go").unwrap();
            stdin.flush().unwrap();
        } else if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str::<Value>(json).unwrap());
        }
    }
    let status = child.wait().unwrap();
    let result = result.expect("the browser test reported its result");
    assert!(
        status.success(),
        "browser test failures: {}",
        result["failures"]
    );
    // No marker in any URL, page title or the server's log.
    let logs = server.logs_flushed().await;
    for m in &markers {
        for key in ["urls", "titles"] {
            for v in result[key].as_array().unwrap() {
                assert!(
                    !v.as_str().unwrap().contains(m.as_str()),
                    "a marker in a console {key}: {v}"
                );
            }
        }
        assert!(!logs.contains(m.as_str()), "a marker in the server log");
    }
    // Nor the user id the FG searched for.
    for v in result["urls"].as_array().unwrap() {
        assert!(
            !v.as_str().unwrap().contains(&seeded.user_id),
            "the user id in a console URL: {v}"
        );
    }
    assert!(
        !logs.contains(&seeded.user_id),
        "the user id in the server log"
    );
    // The review of a control flag is in the log, and so is every console
    // query (audit-query entries under the FG with purpose verantwoording).
    let mut conn = server.data().connect().await;
    let text: Vec<String> = sqlx::query("SELECT leaf FROM log_entries ORDER BY idx")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| crate::leaves::leaf_json(&r.get::<Vec<u8>, _>(0)).to_string())
        .collect();
    assert!(
        text.iter()
            .any(|l| l.contains("\"control-flag:") && l.contains("\"purpose\":\"verantwoording\"")),
        "the review of a control flag is logged"
    );
    assert!(
        text.iter().any(|l| l.contains("\"action\":\"audit-query\"")
            && l.contains("\"partner\":\"emmen\",\"role\":\"fg\"")),
        "the municipality FG's console queries are logged"
    );
    for png in [
        "console-overview.png",
        "console-access-request.png",
        "console-verification-failure.png",
    ] {
        let bytes = std::fs::read(docs.join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{png} is a PNG");
    }
}

/// Changes a byte of entry `index`'s request id in its leaf bytes (the
/// entry still decodes; only its hash no longer fits the tree).
async fn tamper(server: &Server, index: u64) {
    let mut conn = server.data().connect().await;
    let row = sqlx::query("SELECT leaf FROM log_entries WHERE idx = $1")
        .bind(index as i64)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let mut leaf: Vec<u8> = row.get(0);
    let at = crate::leaves::request_id_at(&leaf).start;
    leaf[at] = if leaf[at] == b'a' { b'b' } else { b'a' };
    sqlx::query("UPDATE log_entries SET leaf = $1 WHERE idx = $2")
        .bind(leaf)
        .bind(index as i64)
        .execute(&mut conn)
        .await
        .unwrap();
}

/// A session past its absolute lifetime is over: back to sign-in, nothing
/// shown (here the lifetime is zero, so every session is expired at once).
#[tokio::test]
async fn an_expired_session_goes_back_to_sign_in() {
    let server =
        Server::start(Opts::new().env("KETENPOORT_CONSOLE__SESSION_ABSOLUTE_SECS", 0)).await;
    let res = demo_sign_in(&server, "zvhd").await;
    assert_eq!(res.status(), 303, "the sign-in itself succeeds");
    let pair = session_cookie(&res)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let before = server.data().row_counts().await;
    let res = get(&server, "/console/")
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/console/aanmelden");
    assert!(
        res.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().contains("Max-Age=0")),
        "the session cookie is cleared"
    );
    assert!(res.text().await.unwrap().is_empty(), "nothing is shown");
    assert_eq!(
        server.data().row_counts().await,
        before,
        "nothing is logged"
    );
}

/// The newest entry of the log, as JSON.
async fn last_entry(server: &Server) -> Value {
    let mut conn = server.data().connect().await;
    let row = sqlx::query("SELECT leaf FROM log_entries ORDER BY idx DESC LIMIT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    crate::leaves::leaf_json(&row.get::<Vec<u8>, _>(0))
}

async fn log_size(server: &Server) -> i64 {
    server.data().row_counts().await["log_entries"]
}

/// The `<title>` of a page.
fn title(page: &str) -> String {
    page.split("<title>")
        .nth(1)
        .and_then(|s| s.split("</title>").next())
        .unwrap_or_default()
        .to_owned()
}

fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a CSRF token on the page")
        .to_owned()
}

/// Every console page that shows entries, visited over HTTP by the ZVHD's
/// FG: each adds exactly one entry to the log — its own, an `audit-query`
/// of that FG with purpose `verantwoording`, whose receipt the page
/// carries — and a page without entries adds none. The user filter turns a
/// user id into the log's reference without the id reaching a URL, a page
/// or the log; the unreferred-reads rule names the police's read; the
/// checkpoint the browser verifies is the ledger's, not one signed per
/// view; a session is not written on every request. No canary marker
/// appears in a URL, a title or the server's log.
#[tokio::test]
async fn every_console_page_that_shows_entries_is_one_entry_of_its_own() {
    let policies = open_policies();
    let server = Server::start(
        Opts::new()
            .env("KETENPOORT_POLICY__PATH", policies.path().display())
            // No checkpoint by the clock or the count while the test runs.
            .env("KETENPOORT_LOG__CHECKPOINT_INTERVAL_SECS", 3600)
            .env("KETENPOORT_LOG__CHECKPOINT_EVERY", 1_000_000),
    )
    .await;
    let seeded = seed(&server, true).await;
    let res = demo_sign_in(&server, "zvhd").await;
    assert_eq!(res.status(), 303);
    let pair = session_cookie(&res)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let get_page = |path: String| get(&server, &path).header("cookie", pair.clone()).send();
    let post_page = |path: &str, body: String| {
        server
            .client()
            .post(server.url(path))
            .header("cookie", pair.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let mut seen_urls: Vec<String> = Vec::new();
    let mut titles: Vec<String> = Vec::new();
    let seen_ms = || async {
        let mut conn = server.data().connect().await;
        sqlx::query("SELECT seen_ms FROM console_sessions WHERE partner = 'zvhd'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get::<i64, _>(0)
    };
    let seen_at_sign_in = seen_ms().await;
    let signed_in = std::time::Instant::now();

    /// Checks the page's one entry: the newest, with the page's receipt.
    async fn one_entry(server: &Server, before: i64, res: &reqwest::Response, what: &str) -> Value {
        assert_eq!(res.status(), 200, "{what}");
        assert_eq!(log_size(server).await, before + 1, "{what}: one entry");
        let entry = last_entry(server).await;
        assert_eq!(
            receipt(res).0,
            entry["index"].as_u64().unwrap(),
            "{what}: the page carries its entry's receipt"
        );
        assert_eq!(entry["action"], "audit-query", "{what}");
        assert_eq!(entry["purpose"], "verantwoording", "{what}");
        assert_eq!(entry["outcome"], "disclosed", "{what}");
        assert_eq!(entry["actor"]["partner"], "zvhd", "{what}");
        assert_eq!(entry["actor"]["role"], "fg", "{what}");
        entry
    }

    // GET pages that show entries.
    let first_read = seeded.user_reads[0];
    for path in [
        "/console/".to_owned(),
        "/console/zoeken?outcome=disclosed".to_owned(),
        format!("/console/regels/{first_read}"),
        "/console/controle".to_owned(),
        "/console/export?outcome=disclosed".to_owned(),
    ] {
        let before = log_size(&server).await;
        let res = get_page(path.clone()).await.unwrap();
        seen_urls.push(res.url().to_string());
        let entry = one_entry(&server, before, &res, &path).await;
        let body = res.text().await.unwrap();
        if path.starts_with("/console/export") {
            assert!(body.contains("index;time;actorPartner"), "{path} is CSV");
        } else {
            titles.push(title(&body));
        }
        if path == "/console/controle" {
            // The police's unreferred read is flagged and linked.
            assert!(
                body.contains("Raadplegingen van signalen zonder doorverwijzing"),
                "the unreferred-reads rule flags the police's read"
            );
            assert!(body.contains(&format!(
                "href=\"/console/regels/{}\"",
                seeded.unreferred_read
            )));
            // The rules read a year back for referrals, and say so.
            assert!(
                strings(&entry["resources"]).any(|r| r.starts_with("log-query:from=")),
                "{entry}"
            );
        }
    }

    // The access request: a POST, one entry, naming the person by pseudonym.
    let form_page = get_page("/console/inzage".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let before = log_size(&server).await;
    let res = post_page(
        "/console/inzage",
        form(&[("csrf", &csrf_of(&form_page)), ("bsn", &seeded.bsn)]),
    )
    .await
    .unwrap();
    let entry = one_entry(&server, before, &res, "the access request").await;
    assert!(strings(&entry["subjects"]).all(|s| s.starts_with("ps1:")));
    assert!(!entry.to_string().contains(&seeded.bsn));
    let report = res.text().await.unwrap();
    titles.push(title(&report));
    // The report is complete: its lines (per recipient, purpose and set
    // of fields) count every disclosure of a field about the person that
    // the API's subject lookup finds for the same FG.
    let times: Vec<u64> = report
        .split("<td class=\"times\">")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().parse().unwrap())
        .collect();
    let found = Role::of(&server, "zvhd", "fg")
        .post(
            "/v1/log/subjects",
            AUDIT,
            &serde_json::json!({"bsn": seeded.bsn}),
        )
        .await;
    assert_eq!(found.status(), 200);
    let found: Value = found.json().await.unwrap();
    let disclosed = found["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["entry"]["outcome"] == "disclosed"
                && e["entry"]["fields"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
        })
        .count() as u64;
    assert!(
        disclosed >= 6,
        "the submission, the referral, 5 NLA reads: {disclosed}"
    );
    assert_eq!(
        times.iter().sum::<u64>(),
        disclosed,
        "report lines {times:?}"
    );
    assert!(
        times.len() < disclosed as usize,
        "the NLA's five reads are one line: {times:?}"
    );

    // Pages without entries: nothing logged.
    for path in ["/console/zoeken", "/console/inzage"] {
        let before = log_size(&server).await;
        let res = get_page(path.into()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(!res.headers().contains_key("ketenpoort-receipt"));
        assert_eq!(log_size(&server).await, before, "{path} shows no entries");
    }

    // The user filter: the id goes in a POST body and comes back as the
    // log's reference, of the acting partner's user.
    let search_page = get_page("/console/zoeken".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&search_page);
    let before = log_size(&server).await;
    let res = post_page(
        "/console/zoeken",
        form(&[
            ("csrf", &csrf),
            ("partner", "nla"),
            ("user_id", &seeded.user_id),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let user_ref = server
        .cli_ok(&[
            "log",
            "user-ref",
            "--partner",
            "nla",
            "--user",
            &seeded.user_id,
        ])
        .trim()
        .to_owned();
    assert!(!location.contains(&seeded.user_id), "{location}");
    assert!(
        location.contains(&format!("user={}", user_ref.replace(':', "%3A"))),
        "{location} names the reference {user_ref}"
    );
    assert_eq!(log_size(&server).await, before, "the POST only redirects");
    let res = get_page(location.clone()).await.unwrap();
    seen_urls.push(res.url().to_string());
    let entry = one_entry(&server, before, &res, "the search by user").await;
    assert!(
        strings(&entry["resources"]).any(|r| r == format!("log-query:user={user_ref}")),
        "the query's entry names the reference: {entry}"
    );
    let page = res.text().await.unwrap();
    titles.push(title(&page));
    assert!(
        !page.contains(&seeded.user_id),
        "the page never shows the id"
    );
    let found: Vec<u64> = page
        .split("<tr><td><a href=\"/console/regels/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(found, seeded.user_reads, "exactly the user's entries");
    // The export of that search holds the same entries.
    let before = log_size(&server).await;
    let export = location.replace("/console/zoeken?", "/console/export?");
    let res = get_page(export.clone()).await.unwrap();
    one_entry(&server, before, &res, "the export by user").await;
    let csv = res.text().await.unwrap();
    assert_eq!(csv.lines().count(), 1 + seeded.user_reads.len(), "{csv}");
    // Bad input: a wrong token, an id with control characters, a made-up
    // reference. Nothing is logged, nothing echoed.
    let before = log_size(&server).await;
    let res = post_page(
        "/console/zoeken",
        form(&[("csrf", "wrong"), ("user_id", &seeded.user_id)]),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403);
    let bad_id = format!("{}\u{7}", seeded.user_id);
    let res = post_page(
        "/console/zoeken",
        form(&[("csrf", &csrf), ("user_id", &bad_id)]),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    assert!(!res.text().await.unwrap().contains(&seeded.user_id));
    let res = get_page("/console/zoeken?partner=nla&user=usr1%3Anot-a-reference".into())
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(log_size(&server).await, before);

    // The checkpoint the browser verifies: the ledger's latest, with the
    // witnesses' cosignatures, as the API serves it; views sign nothing.
    let checkpoints = || async { server.data().row_counts().await["log_checkpoints"] };
    let cp = |path: &str| get(&server, path).header("cookie", pair.clone()).send();
    let first: Value = cp("/console/verificatie/checkpoint")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let signed = checkpoints().await;
    let mut matched = false;
    for _ in 0..20 {
        let again: Value = cp("/console/verificatie/checkpoint")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let api = Role::of(&server, "zvhd", "fg")
            .get("/v1/log/checkpoint", None)
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(again["size"], first["size"], "no new checkpoint per view");
        if again["note"] == api.as_str() {
            matched = true;
            break;
        }
        // A witness's cosignature arrived in between: ask again.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(matched, "the console serves the API's witnessed checkpoint");
    assert_eq!(checkpoints().await, signed, "page views sign no checkpoint");
    assert!((first["size"].as_u64().unwrap() as i64) < log_size(&server).await);

    // The session was read on every request above and written at most once
    // a minute: on none, when they all came within a minute of the sign-in.
    if signed_in.elapsed() < Duration::from_secs(55) {
        assert_eq!(seen_ms().await, seen_at_sign_in);
    } else {
        assert!(seen_ms().await >= seen_at_sign_in + 60_000);
    }

    // No marker in a URL, a title or the server's log.
    let logs = server.logs_flushed().await;
    for m in seeded.markers.iter().chain([&seeded.user_id]) {
        for v in seen_urls.iter().chain(&titles) {
            assert!(!v.contains(m.as_str()), "{m} in {v}");
        }
        assert!(!logs.contains(m.as_str()), "{m} in the server log");
    }
}
