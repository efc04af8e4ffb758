//! A signal's life after intake (issue 14): the meldroute past the
//! Drieluik — an assessment sets the form, the referral that was refused
//! goes through, the recipient reports back, the ZVHD closes — with the
//! reporter seeing the status and nothing else; versions (merge patches,
//! ETag/If-Match, earlier versions for the ZVHD only, retention); the state
//! machine's refusals; the reporter's correction while the signal is new;
//! the overview lists.

use std::collections::BTreeSet;

use reqwest::Response;
use serde_json::{Value, json};

use crate::client::*;
use crate::common::*;

const REPORTER: (&str, &str) = ("emmen", "aandachtfunctionaris-sociaal");

fn reporter(server: &Server) -> Role<'_> {
    Role::of(server, REPORTER.0, REPORTER.1)
}

fn regisseur(server: &Server) -> Role<'_> {
    Role::of(server, "zvhd", "ketenregisseur")
}

/// A body of `examples/` (the README's walk-through uses them).
fn example(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn etag(res: &Response) -> String {
    header(res, "etag").unwrap_or_else(|| panic!("a {} without ETag", res.status()))
}

/// The status feedback the reporter gets for signal `id`: exactly the
/// status, closing reason and moves (codes and times), nothing of who got
/// it or what they report back.
async fn reporter_sees(server: &Server, id: &str, recipient: &str) -> Value {
    let res = reporter(server).status_feedback(id, "signalering").await;
    let rid = request_id(&res);
    let seen = ok_json(res, 200).await;
    let keys: BTreeSet<&str> = seen
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert!(
        keys.is_subset(&BTreeSet::from([
            "signalId",
            "status",
            "closingReason",
            "transitions"
        ])),
        "{seen}"
    );
    let text = seen.to_string();
    for other in [recipient, "in-onderzoek", "opsporing", "zvhd"] {
        let quoted = format!("\"{other}\"");
        assert!(!text.contains(&quoted), "the reporter sees {other}: {seen}");
    }
    for t in seen["transitions"].as_array().unwrap() {
        let at = t["at"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
            "{t}"
        );
    }
    let e = entry_of(server, &rid).await;
    assert_eq!(
        (e["action"].as_str(), e["outcome"].as_str()),
        (Some("track"), Some("disclosed")),
        "every feedback read is logged: {e}"
    );
    seen
}

fn moves(seen: &Value) -> Vec<(String, String, Option<String>)> {
    seen["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap().to_owned(),
                t["to"].as_str().unwrap().to_owned(),
                t["reason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn mv(from: &str, to: &str, reason: Option<&str>) -> (String, String, Option<String>) {
    (from.into(), to.into(), reason.map(str::to_owned))
}

/// The meldroute for every known form: intake with `onbekend`, referral
/// refused (`form-unknown`), assessment sets the form (version 2), the
/// referral to the investigating partner goes through, the partner reads
/// version 2 and reports `in-onderzoek`, which the ZVHD sees, the ZVHD
/// closes with `doorgezet`; the reporter sees each status and nothing else.
#[tokio::test]
async fn the_meldroute_runs_from_an_unknown_form_to_closed() {
    let server = Server::start(Opts::new()).await;
    for (form, recipient, role) in [
        ("arbeid", "nla", "inspecteur"),
        ("seksueel", "politie", "rechercheur"),
        ("crimineel", "politie", "rechercheur"),
        ("orgaan", "om", "officier"),
    ] {
        let (body, _) = full_signal("emmen", &["onbekend"], false, false);
        let id = submit(&server, REPORTER.0, REPORTER.1, &body).await;
        let seen = reporter_sees(&server, &id, recipient).await;
        assert_eq!(
            (seen["status"].as_str(), moves(&seen)),
            (Some("nieuw"), vec![])
        );

        // Before the Drieluik set a form, the covenant sends it nowhere.
        let res = regisseur(&server).refer(&id, recipient, "opsporing").await;
        refused(&server, res, "form-unknown", "refer").await;

        // The assessment: version 1 → 2, conditional on the version read.
        let res = regisseur(&server).read(&id, "drieluik").await;
        assert_eq!(etag(&res), "\"v1\"");
        let patch = match form {
            "arbeid" => example("assessment.json"),
            _ => json!({"forms": [form], "sector": "overig"}),
        };
        let res = regisseur(&server)
            .change(&id, "drieluik", &patch, Some("\"v1\""))
            .await;
        assert_eq!(etag(&res), "\"v2\"");
        let rid = request_id(&res);
        let v2 = ok_json(res, 200).await;
        assert_eq!(
            (&v2["forms"], &v2["sector"]),
            (&json!([form]), &patch["sector"])
        );
        assert_eq!(v2["victims"][0]["name"], body["victims"][0]["name"]);
        let e = entry_of(&server, &rid).await;
        assert_eq!(
            (e["action"].as_str(), e["outcome"].as_str()),
            (Some("assess"), Some("disclosed"))
        );
        assert!(
            strings(&e["resources"]).any(|r| r == format!("version:{id}/2")),
            "the entry names the version: {e}"
        );

        // Now the referral follows the covenant.
        let res = regisseur(&server).refer(&id, recipient, "opsporing").await;
        ok_json(res, 201).await;
        let seen = reporter_sees(&server, &id, recipient).await;
        assert_eq!(seen["status"], "doorverwezen");
        assert_eq!(moves(&seen), vec![mv("nieuw", "doorverwezen", None)]);

        // The recipient reads the current version, 2; the entry says so.
        let partner = Role::of(&server, recipient, role);
        let res = partner.read(&id, "opsporing").await;
        assert_eq!(etag(&res), "\"v2\"");
        let rid = request_id(&res);
        let got = ok_json(res, 200).await;
        assert_eq!(got["forms"], json!([form]));
        // The assessment's flag and notes reach the investigating partner
        // (classes C and T of its grant).
        for field in ["underminingComponent", "assessmentNotes"] {
            assert_eq!(got[field], patch[field], "{field}");
        }
        let e = entry_of(&server, &rid).await;
        assert!(
            strings(&e["resources"]).any(|r| r == format!("version:{id}/2")),
            "{e}"
        );

        // The recipient reports back; the ZVHD sees it, logged both ways.
        assert_eq!(example("feedback.json")["status"], "in-onderzoek");
        let res = partner
            .post(
                &format!("/v1/signals/{id}/feedback"),
                "opsporing",
                &example("feedback.json"),
            )
            .await;
        let rid = request_id(&res);
        ok_json(res, 201).await;
        let e = entry_of(&server, &rid).await;
        assert_eq!(
            (
                e["action"].as_str(),
                e["actor"]["partner"].as_str(),
                e["recipient"].as_str()
            ),
            (Some("feedback"), Some(recipient), Some("zvhd")),
            "{e}"
        );
        assert_eq!(
            e["subjects"],
            json!([]),
            "a status code is about nobody: {e}"
        );
        let res = regisseur(&server).status_feedback(&id, "drieluik").await;
        let zvhd = ok_json(res, 200).await;
        let referrals = zvhd["referrals"].as_array().unwrap();
        assert_eq!(referrals.len(), 1, "{zvhd}");
        assert_eq!(
            (
                referrals[0]["recipient"].as_str(),
                referrals[0]["feedback"].as_str()
            ),
            (Some(recipient), Some("in-onderzoek"))
        );

        // The ZVHD closes it; the entry names the move, never content.
        assert_eq!(
            example("transition.json"),
            json!({"to": "afgesloten", "reason": "doorgezet"})
        );
        let res = regisseur(&server)
            .post(
                &format!("/v1/signals/{id}/transitions"),
                "drieluik",
                &example("transition.json"),
            )
            .await;
        let rid = request_id(&res);
        let moved = ok_json(res, 201).await;
        assert_eq!(
            (moved["from"].as_str(), moved["to"].as_str()),
            (Some("doorverwezen"), Some("afgesloten"))
        );
        let e = entry_of(&server, &rid).await;
        assert_eq!(e["action"], "transition");
        assert_eq!(
            e["resources"],
            json!([
                format!("signal:{id}"),
                "transition:doorverwezen/afgesloten",
                "reason:doorgezet"
            ])
        );
        assert_eq!(e["fields"], json!(["status"]));
        assert_eq!(e["subjects"], json!([]));

        let seen = reporter_sees(&server, &id, recipient).await;
        assert_eq!(
            (seen["status"].as_str(), seen["closingReason"].as_str()),
            (Some("afgesloten"), Some("doorgezet"))
        );
        assert_eq!(
            moves(&seen),
            vec![
                mv("nieuw", "doorverwezen", None),
                mv("doorverwezen", "afgesloten", Some("doorgezet"))
            ]
        );
    }
}

/// The state machine: an illegal move is 409, an unknown status or reason
/// 422, a caller without the grant 403; each is a logged refusal and
/// changes nothing.
#[tokio::test]
async fn transitions_follow_the_state_machine_and_refusals_change_nothing() {
    let server = Server::start(Opts::new()).await;
    let (body, _) = full_signal("emmen", &["arbeid"], false, false);
    let id = submit(&server, REPORTER.0, REPORTER.1, &body).await;
    let zvhd = regisseur(&server);
    let zc = Role::of(&server, "zvhd", "zorgcoordinator");

    for (res, status, code) in [
        (
            zvhd.transition(&id, "doorverwezen", None).await,
            409,
            "transition-not-allowed",
        ),
        (
            zvhd.transition(&id, "gesloten", None).await,
            422,
            "status-unknown",
        ),
        (
            zvhd.transition(&id, "afgesloten", None).await,
            422,
            "reason-missing",
        ),
        (
            zvhd.transition(&id, "afgesloten", Some("opgelost")).await,
            422,
            "reason-unknown",
        ),
        (
            zvhd.transition(&id, "drieluik", Some("doorgezet")).await,
            422,
            "reason-not-expected",
        ),
    ] {
        refused_with(&server, res, status, code, "transition").await;
    }
    let res = reporter(&server)
        .post(
            &format!("/v1/signals/{id}/transitions"),
            "signalering",
            &json!({"to": "in-behandeling"}),
        )
        .await;
    refused(&server, res, "action-not-granted", "transition").await;
    // Malformed: a 400 before any decision.
    let res = zvhd
        .post(
            &format!("/v1/signals/{id}/transitions"),
            "drieluik",
            &json!({"naar": "x"}),
        )
        .await;
    problem(res, 400, None).await;
    let seen = reporter_sees(&server, &id, "nla").await;
    assert_eq!(
        (seen["status"].as_str(), moves(&seen)),
        (Some("nieuw"), vec![])
    );

    // The legal path, by both ZVHD roles.
    for (who, to) in [
        (&zvhd, "in-behandeling"),
        (&zc, "drieluik"),
        (&zvhd, "zorgtraject"),
    ] {
        ok_json(who.transition(&id, to, None).await, 201).await;
    }
    let res = zc.transition(&id, "drieluik", None).await;
    refused_with(&server, res, 409, "transition-not-allowed", "transition").await;
    ok_json(
        zc.transition(&id, "afgesloten", Some("zorg-geregeld"))
            .await,
        201,
    )
    .await;
    // Closed is final.
    for to in ["nieuw", "in-behandeling", "afgesloten"] {
        let reason = (to == "afgesloten").then_some("doorgezet");
        let res = zvhd.transition(&id, to, reason).await;
        refused_with(&server, res, 409, "transition-not-allowed", "transition").await;
    }
    let seen = reporter_sees(&server, &id, "nla").await;
    assert_eq!(
        moves(&seen),
        vec![
            mv("nieuw", "in-behandeling", None),
            mv("in-behandeling", "drieluik", None),
            mv("drieluik", "zorgtraject", None),
            mv("zorgtraject", "afgesloten", Some("zorg-geregeld")),
        ]
    );
    // The overview: the ZVHD filters by status; the reporter lists its own
    // reports with their status.
    let page = ok_json(
        zvhd.get("/v1/signals?status=afgesloten", "drieluik").await,
        200,
    )
    .await;
    let ids: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![id.clone()]);
    let own = ok_json(
        reporter(&server).get("/v1/signals", "signalering").await,
        200,
    )
    .await;
    let item = &own["items"][0];
    assert_eq!(
        (item["id"].as_str(), item["status"].as_str()),
        (Some(id.as_str()), Some("afgesloten"))
    );
    let other = ok_json(
        Role::of(&server, "assen", "aandachtfunctionaris-sociaal")
            .get("/v1/signals", "signalering")
            .await,
        200,
    )
    .await;
    assert_eq!(other["items"], json!([]), "another municipality's list");

    // The counts per status: every status, zeros included; the ZVHD counts
    // all (filtered), a municipality its own; each count is logged.
    let (assen, _) = full_signal("assen", &["arbeid"], false, false);
    let second = submit(&server, "assen", "aandachtfunctionaris-sociaal", &assen).await;
    let count_of = |v: &Value, status: &str| {
        v["counts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["status"] == status)
            .map(|c| c["count"].as_u64().unwrap())
    };
    let res = zvhd.get("/v1/signals/counts", "drieluik").await;
    let rid = request_id(&res);
    let all = ok_json(res, 200).await;
    assert_eq!(all["total"], 2, "{all}");
    assert_eq!(
        (
            count_of(&all, "afgesloten"),
            count_of(&all, "nieuw"),
            count_of(&all, "drieluik")
        ),
        (Some(1), Some(1), Some(0))
    );
    let e = entry_of(&server, &rid).await;
    assert_eq!(
        (e["action"].as_str(), e["fields"].clone()),
        (Some("track"), json!(["status"]))
    );
    assert_eq!(
        strings(&e["resources"]).collect::<BTreeSet<_>>(),
        BTreeSet::from([format!("signal:{id}"), format!("signal:{second}")])
    );
    let emmen = ok_json(
        zvhd.get("/v1/signals/counts?municipality=emmen", "drieluik")
            .await,
        200,
    )
    .await;
    assert_eq!(
        (emmen["total"].as_u64(), count_of(&emmen, "afgesloten")),
        (Some(1), Some(1))
    );
    let own = ok_json(
        Role::of(&server, "assen", "aandachtfunctionaris-veiligheid")
            .get("/v1/signals/counts", "signalering")
            .await,
        200,
    )
    .await;
    assert_eq!(
        (own["total"].as_u64(), count_of(&own, "nieuw")),
        (Some(1), Some(1))
    );
    let res = zvhd
        .get("/v1/signals/counts?receivedFrom=gisteren", "drieluik")
        .await;
    problem(res, 400, None).await;
}

/// The reporter corrects its own signal while it is new (a new version);
/// another partner, or a correction after `nieuw`, is a logged 403; a patch
/// that breaks the schema is 422 with pointers, never values, and nothing
/// is stored.
#[tokio::test]
async fn the_reporter_corrects_its_own_signal_while_it_is_new() {
    let server = Server::start(Opts::new()).await;
    let (body, _) = full_signal("emmen", &["arbeid"], false, false);
    let id = submit(&server, REPORTER.0, REPORTER.1, &body).await;
    let me = reporter(&server);

    // Not a merge patch: 415.
    let res = me
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/signals/{id}"),
            "signalering",
            Some(&json!({"urgency": "normaal"})),
        )
        .await;
    problem(res, 415, None).await;

    let res = me
        .change(&id, "signalering", &example("correction.json"), None)
        .await;
    assert_eq!(etag(&res), "\"v2\"");
    let rid = request_id(&res);
    let v2 = ok_json(res, 200).await;
    assert_eq!(v2["urgency"], "spoed");
    assert_eq!(entry_of(&server, &rid).await["action"], "correct");

    // A schema break: pointers, no values, nothing stored.
    let secret = "Geheime Waarde 1234";
    let patch = json!({"forms": [], "victims": [{"name": secret, "bsn": "123"}], "extra": secret});
    let res = me.change(&id, "signalering", &patch, Some("\"v2\"")).await;
    let text = res.text().await.unwrap();
    assert!(
        !text.contains(secret) && !text.contains("\"123\""),
        "{text}"
    );
    let p: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(p["status"], 422, "{p}");
    let pointers: BTreeSet<String> = p["invalidParams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        pointers.contains("/forms") && pointers.contains("/victims/0/bsn"),
        "{p}"
    );
    assert_eq!(etag(&me.read(&id, "signalering").await), "\"v2\"");

    // Another municipality: not its report.
    let res = Role::of(&server, "assen", "aandachtfunctionaris-sociaal")
        .change(&id, "signalering", &json!({"urgency": "hoog"}), None)
        .await;
    refused(&server, res, "not-own-report", "correct").await;
    // After nieuw: the reporter asks the ZVHD instead.
    ok_json(
        regisseur(&server)
            .transition(&id, "in-behandeling", None)
            .await,
        201,
    )
    .await;
    let res = me
        .change(&id, "signalering", &json!({"urgency": "hoog"}), None)
        .await;
    refused(&server, res, "status-not-allowed", "correct").await;
    assert_eq!(etag(&me.read(&id, "signalering").await), "\"v2\"");
    // A municipality does not assess.
    let res = me
        .change(&id, "drieluik", &json!({"forms": ["seksueel"]}), None)
        .await;
    refused(&server, res, "purpose-not-for-role", "assess").await;
}

/// Past `nieuw` the reporter asks the ZVHD for a correction: a logged
/// message to the ZVHD with the proposed merge patch, not a change; only
/// the reporter asks, only the ZVHD roles read it (a logged read naming the
/// request), and the ZVHD applies it with an assessment. Fields only the
/// assessment sets are refused at intake, in a correction and in a request;
/// a request that would break the schema is 422 with pointers into the
/// patch, never values, and nothing is stored.
#[tokio::test]
async fn past_nieuw_the_reporter_asks_the_zvhd_for_a_correction() {
    let server = Server::start(Opts::new()).await;
    let (body, _) = full_signal("emmen", &["arbeid"], false, false);
    let me = reporter(&server);
    let zvhd = regisseur(&server);

    // The assessment's fields are the ZVHD's: not at intake...
    let mut with_notes = body.clone();
    with_notes["assessmentNotes"] = json!("door de melder ingevuld");
    let res = me.post("/v1/signals", "signalering", &with_notes).await;
    let p = problem(res, 400, None).await;
    assert_eq!(p["type"], "urn:ketenpoort:problem:invalid-input", "{p}");
    assert_eq!(p["invalidParams"][0]["name"], "/assessmentNotes", "{p}");
    let id = submit(&server, REPORTER.0, REPORTER.1, &body).await;
    // ...nor in a correction while the signal is new.
    let res = me
        .change(
            &id,
            "signalering",
            &json!({"underminingComponent": false}),
            None,
        )
        .await;
    let p = problem(res, 422, None).await;
    assert_eq!(
        p["invalidParams"][0]["name"], "/underminingComponent",
        "{p}"
    );
    assert_eq!(etag(&me.read(&id, "signalering").await), "\"v1\"");

    ok_json(zvhd.transition(&id, "in-behandeling", None).await, 201).await;
    let path = format!("/v1/signals/{id}/correction-requests");
    let asked = example("correction-request.json");
    let res = me.post(&path, "signalering", &asked).await;
    let rid = request_id(&res);
    let got = ok_json(res, 202).await;
    assert_eq!(
        (
            got["signalId"].as_str(),
            got["againstVersion"].as_i64(),
            got["recipient"].as_str()
        ),
        (Some(id.as_str()), Some(1), Some("zvhd")),
        "{got}"
    );
    let request = got["id"].as_str().unwrap().to_owned();
    let e = entry_of(&server, &rid).await;
    assert_eq!(
        (
            e["action"].as_str(),
            e["outcome"].as_str(),
            e["recipient"].as_str()
        ),
        (Some("request-correction"), Some("disclosed"), Some("zvhd")),
        "{e}"
    );
    assert!(
        strings(&e["resources"]).any(|r| r == format!("correction-request:{request}")),
        "{e}"
    );
    // At rest the request is sealed: its note is nowhere in the database.
    let raw = raw_database(server.data()).await;
    let note = asked["note"].as_str().unwrap();
    assert!(
        !contains(&raw, note.as_bytes()),
        "the correction request's note is stored in plaintext"
    );
    // A message, not a change: the signal is as it was.
    let res = me.read(&id, "signalering").await;
    assert_eq!(etag(&res), "\"v1\"");
    assert_eq!(ok_json(res, 200).await["urgency"], body["urgency"]);

    // Bad requests: pointers into the patch, never values; nothing stored.
    let secret = "Geheime Waarde 5678";
    for (bad, pointer) in [
        (
            json!({"patch": {"victims": [{"name": secret, "bsn": "123"}]}}),
            "/patch/victims/0/bsn",
        ),
        (
            json!({"patch": {"underminingComponent": true}}),
            "/patch/underminingComponent",
        ),
        (json!({"patch": {}}), "/patch"),
        (json!({"patch": [secret]}), "/patch"),
        (
            json!({"patch": {"urgency": "spoed"}, "note": "x".repeat(4001)}),
            "/note",
        ),
    ] {
        let res = me.post(&path, "signalering", &bad).await;
        let text = res.text().await.unwrap();
        assert!(
            !text.contains(secret) && !text.contains("\"123\""),
            "{text}"
        );
        let p: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(p["status"], 422, "{p}");
        let names: Vec<&str> = p["invalidParams"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert!(names.contains(&pointer), "{pointer} not in {p}");
    }
    // Another municipality does not ask about this signal; the ZVHD does
    // not ask at all.
    let res = Role::of(&server, "assen", "aandachtfunctionaris-sociaal")
        .post(&path, "signalering", &asked)
        .await;
    refused(&server, res, "not-own-report", "request-correction").await;
    let res = zvhd.post(&path, "drieluik", &asked).await;
    refused(&server, res, "action-not-granted", "request-correction").await;

    // Only the ZVHD roles read the requests; the read names each one.
    let res = me.get(&path, "signalering").await;
    refused(&server, res, "action-not-granted", "review-corrections").await;
    let res = zvhd.get(&path, "drieluik").await;
    let rid = request_id(&res);
    let list = ok_json(res, 200).await;
    assert_eq!(list["currentVersion"], 1);
    let requests = list["requests"].as_array().unwrap();
    assert_eq!(
        requests.len(),
        1,
        "the refused requests stored nothing: {list}"
    );
    assert_eq!(
        (
            requests[0]["id"].as_str(),
            requests[0]["partner"].as_str(),
            &requests[0]["patch"],
            &requests[0]["note"]
        ),
        (
            Some(request.as_str()),
            Some(REPORTER.0),
            &asked["patch"],
            &asked["note"]
        )
    );
    let e = entry_of(&server, &rid).await;
    assert_eq!(
        (e["action"].as_str(), e["outcome"].as_str()),
        (Some("review-corrections"), Some("disclosed"))
    );
    assert!(
        strings(&e["resources"]).any(|r| r == format!("correction-request:{request}")),
        "{e}"
    );

    // The ZVHD applies it with an assessment: version 2.
    let res = zvhd
        .change(&id, "drieluik", &asked["patch"], Some("\"v1\""))
        .await;
    assert_eq!(etag(&res), "\"v2\"");
    let list = ok_json(zvhd.get(&path, "drieluik").await, 200).await;
    assert_eq!(list["currentVersion"], 2);
    assert_eq!(list["requests"][0]["againstVersion"], 1);
    assert_eq!(
        ok_json(me.read(&id, "signalering").await, 200).await["urgency"],
        "spoed"
    );
}

/// Versions: earlier versions are kept (sealed), readable by the ZVHD roles
/// only, each read naming its version; the FG's subject lookup finds the
/// person across versions; retention destroys every version.
#[tokio::test]
async fn versions_are_kept_for_the_zvhd_and_destroyed_by_retention() {
    let server = Server::start(Opts::new()).await;
    let (body, markers) = full_signal("emmen", &["onbekend"], false, false);
    let victim_bsn = body["victims"][0]["bsn"].as_str().unwrap().to_owned();
    let id = submit(&server, REPORTER.0, REPORTER.1, &body).await;
    let zvhd = regisseur(&server);
    ok_json(
        zvhd.change(
            &id,
            "drieluik",
            &json!({"forms": ["arbeid"]}),
            Some("\"v1\""),
        )
        .await,
        200,
    )
    .await;
    // The victim's name corrected in version 3: the pseudonym is the BSN's.
    let mut victims = body["victims"].clone();
    victims[0]["name"] = json!("Andere Naam");
    ok_json(
        zvhd.change(
            &id,
            "drieluik",
            &json!({"victims": victims}),
            Some("\"v2\""),
        )
        .await,
        200,
    )
    .await;
    ok_json(zvhd.refer(&id, "nla", "opsporing").await, 201).await;
    // Past nieuw, the reporter asks for a correction of the victim's phone.
    let mut asked = victims.clone();
    asked[0]["phone"] = json!("+31 6 11111111");
    ok_json(
        reporter(&server)
            .post(
                &format!("/v1/signals/{id}/correction-requests"),
                "signalering",
                &json!({"patch": {"victims": asked}}),
            )
            .await,
        202,
    )
    .await;

    for (v, forms, name) in [
        (1, json!(["onbekend"]), body["victims"][0]["name"].clone()),
        (2, json!(["arbeid"]), body["victims"][0]["name"].clone()),
        (3, json!(["arbeid"]), json!("Andere Naam")),
    ] {
        let res = zvhd
            .get(&format!("/v1/signals/{id}/versions/{v}"), "drieluik")
            .await;
        assert_eq!(etag(&res), format!("\"v{v}\""));
        let rid = request_id(&res);
        let got = ok_json(res, 200).await;
        assert_eq!(
            (&got["forms"], &got["victims"][0]["name"]),
            (&forms, &name),
            "version {v}"
        );
        let e = entry_of(&server, &rid).await;
        assert_eq!(e["action"], "history");
        assert!(
            strings(&e["resources"]).any(|r| r == format!("version:{id}/{v}")),
            "{e}"
        );
    }
    // A list page's entry names the version of each signal on it.
    let res = zvhd.get("/v1/signals?municipality=emmen", "drieluik").await;
    let rid = request_id(&res);
    ok_json(res, 200).await;
    let e = entry_of(&server, &rid).await;
    assert_eq!(e["action"], "list");
    assert!(
        strings(&e["resources"]).any(|r| r == format!("version:{id}/3")),
        "{e}"
    );
    for v in ["4", "0", "x"] {
        let res = zvhd
            .get(&format!("/v1/signals/{id}/versions/{v}"), "drieluik")
            .await;
        problem(res, 404, None).await;
    }
    // Only the ZVHD roles see earlier versions.
    for (partner, role, purpose, code) in [
        ("nla", "inspecteur", "opsporing", "action-not-granted"),
        (REPORTER.0, REPORTER.1, "signalering", "action-not-granted"),
    ] {
        let res = Role::of(&server, partner, role)
            .get(&format!("/v1/signals/{id}/versions/1"), purpose)
            .await;
        refused(&server, res, code, "history").await;
    }

    // The subject lookup finds the person in every version's entries.
    let fg = Role::of(&server, "zvhd", "fg");
    let found = ok_json(
        fg.post("/v1/log/subjects", AUDIT, &json!({"bsn": victim_bsn}))
            .await,
        200,
    )
    .await;
    let actions: BTreeSet<String> = found["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"]["action"].as_str().unwrap().to_owned())
        .collect();
    for a in ["submit", "assess", "history", "refer", "request-correction"] {
        assert!(actions.contains(a), "{a} not found: {actions:?}");
    }

    // Retention: every version goes with the signal.
    let db = pool(server.data()).await;
    let count = |sql: &'static str| {
        let db = db.clone();
        let id = id.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM signal_versions WHERE signal_id = $1").await,
        2
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM signal_correction_requests WHERE signal_id = $1").await,
        1
    );
    let wrapped: Vec<u8> =
        sqlx::query_scalar("SELECT wrapped FROM signal_keys WHERE signal_id = $1")
            .bind(&id)
            .fetch_one(&db)
            .await
            .unwrap();
    db.close().await;
    let out = server.data().cli_with_env(
        &["retention", "run"],
        &[("KETENPOORT_RETENTION__SIGNAL_DAYS", "0")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = pool(server.data()).await;
    for table in [
        "signal_versions",
        "signal_transitions",
        "signal_correction_requests",
        "signal_keys",
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE signal_id = $1");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&id)
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    db.close().await;
    let raw = raw_database(server.data()).await;
    let wrapped = if server.data().is_postgres() {
        hex::encode(&wrapped).into_bytes()
    } else {
        wrapped
    };
    assert!(!contains(&raw, &wrapped), "the data key is gone");
    for m in &markers {
        assert!(
            !contains(&raw, m.as_bytes()),
            "no plaintext, before or after"
        );
    }
    let res = zvhd
        .get(&format!("/v1/signals/{id}/versions/1"), "drieluik")
        .await;
    problem(res, 404, None).await;
}

/// Two assessments racing with the same If-Match: one 200, one 412, and
/// only one new version; a stale If-Match stores nothing.
#[tokio::test]
async fn racing_assessments_with_the_same_if_match_store_one_version() {
    let server = Server::start(Opts::new()).await;
    let (body, _) = full_signal("emmen", &["onbekend"], false, false);
    for round in 0..4 {
        let id = submit(&server, REPORTER.0, REPORTER.1, &body).await;
        let (a, b) = (
            regisseur(&server),
            Role::of(&server, "zvhd", "zorgcoordinator"),
        );
        let (pa, pb) = (json!({"forms": ["arbeid"]}), json!({"forms": ["seksueel"]}));
        let (ra, rb) = tokio::join!(
            a.change(&id, "drieluik", &pa, Some("\"v1\"")),
            b.change(&id, "drieluik", &pb, Some("\"v1\"")),
        );
        let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}");
        let (won, lost) = if ra.status() == 200 {
            (ra, rb)
        } else {
            (rb, ra)
        };
        let lost_rid = request_id(&lost);
        problem(lost, 412, None).await;
        let winner = ok_json(won, 200).await;
        let now = a.read(&id, "drieluik").await;
        assert_eq!(etag(&now), "\"v2\"");
        assert_eq!(ok_json(now, 200).await["forms"], winner["forms"]);
        // The loser disclosed nothing.
        let entries = log_by_request(&server).await;
        assert!(
            entries
                .get(&lost_rid)
                .into_iter()
                .flatten()
                .all(|e| e["outcome"] != "disclosed"),
            "{entries:?}"
        );
        // Stale: 412, nothing stored.
        let res = a
            .change(
                &id,
                "drieluik",
                &json!({"forms": ["crimineel"]}),
                Some("\"v1\""),
            )
            .await;
        problem(res, 412, None).await;
        assert_eq!(etag(&a.read(&id, "drieluik").await), "\"v2\"");
    }
}

/// Feedback is the recipient's on its own referral: another partner is
/// refused, an unknown code is 422, and both are logged.
#[tokio::test]
async fn feedback_is_the_recipients_own_and_uses_known_codes() {
    let server = Server::start(Opts::new()).await;
    let (body, _) = full_signal("emmen", &["arbeid"], false, false);
    let id = submit(&server, REPORTER.0, REPORTER.1, &body).await;
    let nla = Role::of(&server, "nla", "inspecteur");
    let res = nla.report_back(&id, "opsporing", "ontvangen").await;
    refused(&server, res, "not-referred", "feedback").await;
    ok_json(regisseur(&server).refer(&id, "nla", "opsporing").await, 201).await;
    let res = nla.report_back(&id, "opsporing", "bezig").await;
    refused_with(&server, res, 422, "feedback-unknown", "feedback").await;
    let res = Role::of(&server, "om", "officier")
        .report_back(&id, "opsporing", "ontvangen")
        .await;
    refused(&server, res, "not-referred", "feedback").await;
    let res = reporter(&server)
        .report_back(&id, "signalering", "afgerond")
        .await;
    refused(&server, res, "action-not-granted", "feedback").await;
    for code in ["ontvangen", "afgerond"] {
        ok_json(nla.report_back(&id, "opsporing", code).await, 201).await;
    }
    let zvhd = ok_json(
        regisseur(&server).status_feedback(&id, "drieluik").await,
        200,
    )
    .await;
    assert_eq!(zvhd["referrals"][0]["feedback"], "afgerond");
    // The reporter's view has no referrals at all.
    let seen = reporter_sees(&server, &id, "nla").await;
    assert!(seen.get("referrals").is_none());
    // Another municipality does not follow this signal.
    let res = Role::of(&server, "assen", "aandachtfunctionaris-veiligheid")
        .status_feedback(&id, "signalering")
        .await;
    refused(&server, res, "not-own-report", "track").await;
}

/// An assessment after the signal counted for the phenomenon tables leaves
/// its contribution as it was recorded at the referral to the RIEC: a
/// published cell never changes.
#[tokio::test]
async fn an_assessment_leaves_a_recorded_contribution_as_it_was() {
    let server = Server::start(Opts::new()).await;
    let (body, _) = full_signal("emmen", &["onbekend"], false, false);
    let id = submit(&server, REPORTER.0, REPORTER.1, &body).await;
    let zvhd = regisseur(&server);
    ok_json(zvhd.refer(&id, "riec", FEN).await, 201).await;
    let contribution = || async {
        let db = pool(server.data()).await;
        let forms: String = sqlx::query_scalar(
            "SELECT c.forms FROM phenomenon_contributions c \
             JOIN record_keys k ON k.id = c.record_key_id WHERE k.signal_id = $1",
        )
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
        db.close().await;
        forms
    };
    assert_eq!(contribution().await, r#"["onbekend"]"#);
    ok_json(
        zvhd.change(&id, "drieluik", &example("assessment.json"), Some("\"v1\""))
            .await,
        200,
    )
    .await;
    assert_eq!(contribution().await, r#"["onbekend"]"#);
    // A second referral to the RIEC is the same referral: 409, no recount.
    problem(zvhd.refer(&id, "riec", FEN).await, 409, None).await;
    assert_eq!(contribution().await, r#"["onbekend"]"#);
}
