//! Invariant 1 against inference, and invariant 4 against the caller's own
//! text: whether an answer to a non-member is withheld never depends on
//! text the caller chose, and nothing a caller chose — a token's `sub`, a
//! trace id, a role, a purpose — is kept in plaintext.
//!
//! The egress guard withholds any answer to the RIEC that holds a stored
//! value. If an answer echoed the caller's text, "withheld or not" would
//! tell the caller whether that text is stored: whether a person is in a
//! trafficking signal. These tests put stored and unstored names, BSNs and
//! record ids in every place a RIEC token and request can carry them, and
//! require identical answers.

use reqwest::Method;
use serde_json::Value;

use super::client::*;
use super::common::*;

const RIEC_ROLE: &str = "analist";

/// The release the server published at start: the last closed quarter.
fn last_quarter() -> String {
    let today = time::OffsetDateTime::now_utc().date();
    let (y, m) = (today.year(), today.month() as u8);
    match (m - 1) / 3 + 1 {
        1 => format!("{}-Q4", y - 1),
        q => format!("{y}-Q{}", q - 1),
    }
}

/// A RIEC token whose `sub` is `sub`.
fn riec_token(server: &Server, sub: &str) -> String {
    let mut claims = server.claims("riec", RIEC_ROLE);
    claims["sub"] = Value::String(sub.to_owned());
    server.sign(&claims)
}

/// The sorted keys of a JSON object, recursively for objects: the shape of
/// an answer without its values.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().take(1).map(shape).collect()),
        _ => Value::Null,
    }
}

/// What the RIEC sees with `token` and `traceparent`: its identity, a
/// release read (a log entry under its name) and that entry read back once
/// published. Each as (status, shape of the body).
async fn riec_view(server: &Server, token: &str, traceparent: &str) -> Vec<(u16, Value)> {
    let riec = Role::with_token(server, token);
    let mut out = Vec::new();
    let ask = |method: Method, path: String, purpose: Option<&'static str>| {
        let req = riec
            .request(method, &path, purpose)
            .header("traceparent", traceparent);
        async move { req.send().await.expect("request") }
    };
    let res = ask(Method::GET, "/v1/me".into(), None).await;
    let status = res.status().as_u16();
    out.push((status, shape(&res.json::<Value>().await.unwrap())));
    let res = ask(
        Method::GET,
        format!("/v1/phenomena/releases/{}", last_quarter()),
        Some(FEN),
    )
    .await;
    // The read is in the log (no receipt: a non-member learns the log's
    // size only at publication); find it by the request id once published.
    let request_id = request_id(&res);
    let status = res.status().as_u16();
    out.push((status, shape(&res.json::<Value>().await.unwrap())));
    let size = published_size(server, token).await;
    let res = ask(
        Method::GET,
        format!(
            "/v1/log/entries?start={}&end={size}",
            size.saturating_sub(100)
        ),
        Some(AUDIT),
    )
    .await;
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    // The RIEC sees its own aggregate entry in full.
    let own = body["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["entry"]["requestId"] == request_id.as_str())
        .map(|e| e["entry"].clone())
        .unwrap_or_default();
    if status == 200 {
        assert_eq!(own["actor"]["partner"], "riec", "{body}");
    }
    let body = own;
    out.push((status, shape(&body)));
    out
}

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-00f067aa0ba902b7-01")
}

#[tokio::test]
async fn what_the_riec_chooses_never_decides_whether_an_answer_is_withheld() {
    let server = Server::start(
        Opts::new()
            .env("KETENPOORT_LOG__PUBLISH_INTERVAL_SECS", 1)
            .env("KETENPOORT_HTTP__RATE_LIMIT_PER_SECOND", 100_000)
            .env("KETENPOORT_HTTP__RATE_LIMIT_BURST", 100_000),
    )
    .await;
    let (body, markers) = full_signal("emmen", &["arbeid"], false, false);
    let id = submit(&server, "emmen", "aandachtfunctionaris-sociaal", &body).await;
    let victim = body["victims"][0]["name"].as_str().unwrap().to_owned();
    let victim_bsn = body["victims"][0]["bsn"].as_str().unwrap().to_owned();
    assert!(markers.iter().any(|m| victim.contains(m.as_str())));
    let id_hex = id.replace('-', "");
    let unstored_bsn = bsn();
    let plain = "4bf92f3577b34da6a3ce929d0e0e4736";

    // The baseline: a harmless `sub` and trace id.
    let baseline = riec_view(
        &server,
        &riec_token(&server, "a.analist"),
        &traceparent(plain),
    )
    .await;
    assert!(
        baseline.iter().all(|(status, _)| *status == 200),
        "{baseline:?}"
    );
    // Channel 1: the token's `sub` is a stored name, BSN or record id, or
    // an unstored one.
    for sub in [
        victim.as_str(),
        &victim_bsn,
        &id,
        &id_hex,
        "Nimmer Opgeslagen",
        &unstored_bsn,
    ] {
        let view = riec_view(&server, &riec_token(&server, sub), &traceparent(plain)).await;
        assert_eq!(view, baseline, "sub {sub:?}");
    }
    // Channel 2: the trace id is a stored record id, or holds a stored
    // BSN, or an unstored one.
    let token = riec_token(&server, "a.analist");
    for trace in [
        id_hex.clone(),
        format!("{victim_bsn}{}", "0".repeat(23)),
        format!("{unstored_bsn}{}", "0".repeat(23)),
        format!("{}{}", "1".repeat(31), "a"),
    ] {
        let view = riec_view(&server, &token, &traceparent(&trace)).await;
        assert_eq!(view, baseline, "trace id {trace}");
    }
    // `/v1/me` shows a reference, not the `sub`; the same user is the same
    // reference, another user another one.
    let mut refs = Vec::new();
    for sub in [victim.as_str(), victim.as_str(), "iemand"] {
        let res = server.get_as("/v1/me", &riec_token(&server, sub)).await;
        refs.push(ok_json(res, 200).await["user"].as_str().unwrap().to_owned());
    }
    let (a, a2, b) = (&refs[0], &refs[1], &refs[2]);
    assert!(a.starts_with("usr1:") && !a.contains(&victim), "{a}");
    assert_eq!(a, a2);
    assert_ne!(a, b);
    // The operator finds the reference of a user id for the FG.
    let cli = server.cli_ok(&["log", "user-ref", "--partner", "riec", "--user", &victim]);
    assert_eq!(cli.trim(), a);
}

#[tokio::test]
async fn nothing_a_caller_chooses_is_stored_in_plaintext() {
    let server = Server::start(Opts::new()).await;
    let (body, markers) = full_signal("assen", &["seksueel"], false, false);
    let id = submit(&server, "assen", "aandachtfunctionaris-sociaal", &body).await;
    let victim = body["victims"][0]["name"].as_str().unwrap().to_owned();
    let victim_bsn = body["victims"][0]["bsn"].as_str().unwrap().to_owned();
    let id_hex = id.replace('-', "");
    let probe_bsn = bsn();
    let probe_slug = format!("jan-{}", markers[1].to_lowercase());
    let bsn_trace = traceparent(&format!("{probe_bsn}{}", "0".repeat(23)));
    let id_trace = traceparent(&id_hex);

    // Every caller-controlled input of a request, with a probe in it:
    // the token's sub and role, the trace id, the purpose header.
    let as_sub = |partner: &str, role: &str, sub: &str| {
        let mut claims = server.claims(partner, role);
        claims["sub"] = Value::String(sub.to_owned());
        server.sign(&claims)
    };
    let zvhd = Role::with_token(&server, as_sub("zvhd", "ketenregisseur", &victim));
    for trace in [&bsn_trace, &id_trace] {
        let res = zvhd
            .request(Method::GET, &format!("/v1/signals/{id}"), Some("drieluik"))
            .header("traceparent", trace.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // A refused read under an unknown purpose and a probe trace id.
    let res = zvhd
        .request(Method::GET, &format!("/v1/signals/{id}"), None)
        .header("ketenpoort-purpose", probe_slug.as_str())
        .header("traceparent", bsn_trace.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    // Refusals at authentication: a role that is the probe, a sub that is
    // the victim's BSN.
    for (role, sub) in [(probe_slug.as_str(), "x"), ("fg", victim_bsn.as_str())] {
        let res = Role::with_token(&server, as_sub("emmen", role, sub))
            .request(Method::GET, "/v1/me", None)
            .header("traceparent", id_trace.as_str())
            .send()
            .await
            .unwrap();
        assert!(res.status() == 200 || res.status() == 403, "{role}");
    }
    // The RIEC, with the victim's name as its user.
    let riec = Role::with_token(&server, as_sub("riec", RIEC_ROLE, &victim));
    let res = riec
        .request(
            Method::GET,
            &format!("/v1/phenomena/releases/{}", last_quarter()),
            Some(FEN),
        )
        .header("traceparent", bsn_trace.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Members-only route: a logged refusal under the RIEC's name.
    let res = riec
        .request(Method::GET, "/v1/signals", Some("signalering"))
        .header("traceparent", id_trace.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Query parameters, path segments and body fields of the routes that
    // log what was asked: a privacy officer's search filters, a signal id
    // that is a BSN, a referral to a partner id that is a name.
    let fg = Role::of(&server, "zvhd", "fg");
    let search = format!("/v1/log/search?partner={probe_slug}&purpose={probe_slug}&limit=10");
    assert_eq!(fg.get(&search, AUDIT).await.status(), 200);
    let res = zvhd
        .get(&format!("/v1/signals/{probe_bsn}"), "drieluik")
        .await;
    assert_eq!(res.status(), 404);
    let referral = serde_json::json!({"recipient": probe_slug, "purpose": "drieluik"});
    let res = zvhd
        .post(
            &format!("/v1/signals/{id}/referrals"),
            "drieluik",
            &referral,
        )
        .await;
    assert_eq!(res.status(), 422);

    let raw = raw_database(server.data()).await;
    // The dump is the real database: the signal's id is there (plaintext
    // column), and the log grew.
    assert!(contains(&raw, id.as_bytes()));
    for (what, probe) in [
        ("the victim's name (as sub)", markers[0].as_str()),
        ("the victim's BSN (as sub)", victim_bsn.as_str()),
        ("a BSN (in a trace id)", probe_bsn.as_str()),
        ("a record id (as a trace id)", id_hex.as_str()),
        ("a name (as role and purpose)", probe_slug.as_str()),
    ] {
        assert!(
            !contains(&raw, probe.as_bytes()),
            "{what} is stored in plaintext"
        );
    }
}
