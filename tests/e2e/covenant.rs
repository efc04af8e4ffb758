//! The covenant over HTTPS with the demo partners: the meldroute step by
//! step, with exactly the fields each recipient receives (the grant's
//! classes in `policies/data.json`, checked key by key and value by value);
//! every refusal with its reason code and its `denied` log entry; the RIEC
//! on every record route; bad input that leaves nothing behind; and a
//! property test over random signals and principals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use reqwest::{Method, Response};
use serde_json::{Value, json};

use super::client::*;
use super::common::*;

/// Keys ketenpoort puts on every record it returns (not personal).
const ENVELOPE: [&str; 4] = ["id", "schemaVersion", "reporter", "createdAt"];

/// `policies/data.json`, the covenant as data.
fn covenant() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/data.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("policies/data.json"))
        .expect("data.json is JSON")
}

/// The fields grant `id` gives: its classes' fields less `excludeFields`.
fn grant_fields(id: &str) -> BTreeSet<String> {
    let c = covenant();
    let grant = c["covenant"]["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .find(|g| g["id"] == id)
        .unwrap_or_else(|| panic!("no grant {id} in data.json"))
        .clone();
    let mut fields: BTreeSet<String> = strings(&grant["classes"])
        .flat_map(|class| strings(&c["covenant"]["classes"][&class]).collect::<Vec<_>>())
        .collect();
    for f in strings(&grant["excludeFields"]) {
        fields.remove(&f);
    }
    fields
}

/// Every classified field (all classes).
fn all_fields() -> BTreeSet<String> {
    let c = covenant();
    c["covenant"]["classes"]
        .as_object()
        .expect("classes")
        .values()
        .flat_map(|v| strings(v).collect::<Vec<_>>())
        .collect()
}

/// The envelope plus `fields`: the exact key set of a projection of a
/// signal that has every field.
fn with_envelope(fields: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = fields.clone();
    out.extend(ENVELOPE.map(String::from));
    out
}

/// Every field path of a record: top-level keys, and `victims.x`/`suspects.x`
/// for the keys of each person.
fn paths(record: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (k, v) in record.as_object().expect("a record is an object") {
        match (k.as_str(), v.as_array()) {
            ("victims" | "suspects", Some(people)) => {
                assert!(!people.is_empty(), "{k}: an empty list disclosed");
                for p in people {
                    out.extend(
                        p.as_object()
                            .expect("a person is an object")
                            .keys()
                            .map(|f| format!("{k}.{f}")),
                    );
                }
            }
            _ => {
                out.insert(k.clone());
            }
        }
    }
    out
}

/// The value at a field path (for persons: the list of their values).
fn value_at(record: &Value, path: &str) -> Value {
    match path.split_once('.') {
        Some((list, key)) => Value::Array(
            record[list]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p[key].clone())
                .collect(),
        ),
        None => record[path].clone(),
    }
}

/// A record as a recipient got it: exactly `fields` (and the envelope), each
/// with the value the full record has. `status` is skipped for inbox copies
/// (frozen at referral time).
fn assert_projection(
    record: &Value,
    full: &Value,
    fields: &BTreeSet<String>,
    skip_status: bool,
    who: &str,
) {
    assert_eq!(
        paths(record),
        with_envelope(fields),
        "{who}: the fields received differ from the grant"
    );
    for p in paths(record) {
        if skip_status && p == "status" {
            continue;
        }
        assert_eq!(
            value_at(record, &p),
            value_at(full, &p),
            "{who}: the value of {p}"
        );
    }
}

/// The recipient's inbox copy of signal `id` for `purpose`.
async fn inbox_copy(server: &Server, partner: &str, role: &str, id: &str, purpose: &str) -> Value {
    let res = Role::of(server, partner, role)
        .get("/v1/inbox", purpose)
        .await;
    let page = ok_json(res, 200).await;
    let items: Vec<&Value> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["signalId"] == id)
        .collect();
    assert_eq!(items.len(), 1, "{partner}: inbox items for {id}: {page}");
    assert_eq!(items[0]["purpose"], purpose);
    let received = items[0]["receivedAt"].as_str().unwrap_or_default();
    assert!(
        time::OffsetDateTime::parse(received, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "receivedAt is RFC 3339 like every time of the API: {page}"
    );
    items[0]["record"].clone()
}

/// A referral that went through: 201, mode masked, the recipient grant's
/// fields, an inbox item; logged as a disclosure to the recipient.
async fn referred(server: &Server, res: Response, recipient: &str, grant: &str) {
    let rid = request_id(&res);
    let created = ok_json(res, 201).await;
    assert_eq!(created["recipient"], recipient);
    assert_eq!(created["mode"], "masked", "{created}");
    assert!(created["inboxItem"].is_string(), "{created}");
    let fields: BTreeSet<String> = strings(&created["fields"]).collect();
    assert_eq!(fields, grant_fields(grant), "referral to {recipient}");
    let e = entry_of(server, &rid).await;
    assert_eq!(
        (
            e["action"].as_str(),
            e["outcome"].as_str(),
            e["recipient"].as_str()
        ),
        (Some("refer"), Some("disclosed"), Some(recipient)),
        "{e}"
    );
    assert_eq!(e["decision"]["reasons"], json!([format!("grant:{grant}")]));
    assert_eq!(
        strings(&e["fields"]).collect::<BTreeSet<_>>(),
        grant_fields(grant)
    );
    assert!(!e["subjects"].as_array().unwrap().is_empty(), "{e}");
}

/// What `POST /v1/decisions` says a recipient gets on delivery.
async fn dry_run_fields(
    server: &Server,
    recipient: &str,
    role: &str,
    purpose: &str,
    facts: &Value,
) -> Value {
    let mut q =
        json!({"action": "deliver", "purpose": purpose, "recipient": recipient, "role": role});
    for k in ["forms", "victimMinor", "domesticSetting"] {
        if let Some(v) = facts.get(k) {
            q[k] = v.clone();
        }
    }
    let res = Role::of(server, "zvhd", "ketenregisseur")
        .post("/v1/decisions", None, &q)
        .await;
    ok_json(res, 200).await
}

/// The Drieluik's assessment of `id`: the two fields only the assessment
/// sets, so that the signal has every classified field.
async fn assessed(server: &Server, id: &str) {
    let patch = json!({
        "underminingComponent": true,
        "assessmentNotes": "Drieluik: fictieve notitie bij de beoordeling."
    });
    let res = Role::of(server, "zvhd", "ketenregisseur")
        .change(id, "drieluik", &patch, None)
        .await;
    ok_json(res, 200).await;
}

#[tokio::test]
async fn meldroute_gives_each_recipient_exactly_its_fields() {
    let server = Server::start(Opts::new()).await;
    let all = all_fields();

    // 1. A municipality reports a labour-exploitation signal to the ZVHD.
    let (labour, _) = full_signal("emmen", &["arbeid"], false, false);
    let res = Role::of(&server, "emmen", "aandachtfunctionaris-sociaal")
        .post("/v1/signals", "signalering", &labour)
        .await;
    let rid = request_id(&res);
    assert!(header(&res, "ketenpoort-receipt").is_some());
    let created = ok_json(res, 201).await;
    assert_eq!(
        (created["status"].as_str(), created["recipient"].as_str()),
        (Some("nieuw"), Some("zvhd"))
    );
    let s1 = created["id"].as_str().unwrap().to_owned();
    let e = entry_of(&server, &rid).await;
    assessed(&server, &s1).await;
    assert_eq!(
        (
            e["action"].as_str(),
            e["outcome"].as_str(),
            e["recipient"].as_str()
        ),
        (Some("submit"), Some("disclosed"), Some("zvhd"))
    );
    assert_eq!(e["resources"], json!([format!("signal:{s1}")]));
    assert_eq!(
        e["subjects"].as_array().unwrap().len(),
        2,
        "victim and suspect: {e}"
    );

    // The reporting municipality reads back all it reported.
    let own = ok_json(
        read(
            &server,
            "emmen",
            "aandachtfunctionaris-veiligheid",
            &s1,
            "signalering",
        )
        .await,
        200,
    )
    .await;
    assert_eq!(paths(&own), with_envelope(&all));
    for (k, v) in labour.as_object().unwrap() {
        if k != "victims" {
            assert_eq!(&own[k], v, "{k} as submitted");
        }
    }
    assert_eq!(
        own["victims"][0]["minor"], false,
        "derived from the date of birth"
    );

    // 2. The ketenregisseur and the zorgcoördinator read it in full.
    for (role, purposes) in [
        ("ketenregisseur", ["signalering", "drieluik"]),
        ("zorgcoordinator", ["drieluik", "zorgcoordinatie"]),
    ] {
        for purpose in purposes {
            let rec = ok_json(read(&server, "zvhd", role, &s1, purpose).await, 200).await;
            assert_projection(&rec, &own, &all, false, &format!("zvhd {role} {purpose}"));
        }
    }
    // The police see nothing before the Drieluik.
    refused(
        &server,
        read(&server, "politie", "rechercheur", &s1, "drieluik").await,
        "not-referred",
        "read",
    )
    .await;

    // 3. Drieluik: placing it on the agenda is a referral to the police.
    referred(
        &server,
        refer(&server, "ketenregisseur", &s1, "politie", "drieluik").await,
        "politie",
        "politie-drieluik",
    )
    .await;
    let full = ok_json(
        read(&server, "zvhd", "ketenregisseur", &s1, "drieluik").await,
        200,
    )
    .await;
    assert_eq!(full["status"], "doorverwezen");
    let police = grant_fields("politie-drieluik");
    assert!(
        police
            .iter()
            .all(|f| !f.ends_with("careNeeds") && !f.ends_with("mildIntellectualDisability"))
    );
    let rec = ok_json(
        read(&server, "politie", "rechercheur", &s1, "drieluik").await,
        200,
    )
    .await;
    assert_projection(&rec, &full, &police, false, "politie drieluik");
    let copy = inbox_copy(&server, "politie", "rechercheur", &s1, "drieluik").await;
    assert_projection(&copy, &full, &police, true, "politie drieluik inbox");

    // 4. Labour exploitation goes to the Labour Authority, and the OM.
    for (partner, role, grant) in [
        ("nla", "inspecteur", "nla-opsporing"),
        ("om", "officier", "om-opsporing"),
    ] {
        referred(
            &server,
            refer(&server, "ketenregisseur", &s1, partner, "opsporing").await,
            partner,
            grant,
        )
        .await;
        let fields = grant_fields(grant);
        let rec = ok_json(read(&server, partner, role, &s1, "opsporing").await, 200).await;
        assert_projection(&rec, &full, &fields, false, partner);
        let copy = inbox_copy(&server, partner, role, &s1, "opsporing").await;
        assert_projection(&copy, &full, &fields, true, partner);
        let d = dry_run_fields(
            &server,
            partner,
            role,
            "opsporing",
            &json!({"forms": ["arbeid"]}),
        )
        .await;
        assert_eq!(
            strings(&d["fields"]).collect::<BTreeSet<_>>(),
            fields,
            "POST /v1/decisions for {partner}"
        );
    }

    // 5. Care: Fier gets the victim, nothing about suspects, no narrative.
    referred(
        &server,
        refer(&server, "zorgcoordinator", &s1, "fier", "zorgcoordinatie").await,
        "fier",
        "zorgpartner-zorgcoordinatie",
    )
    .await;
    let care = grant_fields("zorgpartner-zorgcoordinatie");
    assert!(care.iter().all(|f| !f.starts_with("suspects.")) && !care.contains("narrative"));
    for rec in [
        ok_json(
            read(&server, "fier", "hulpverlener", &s1, "zorgcoordinatie").await,
            200,
        )
        .await,
        inbox_copy(&server, "fier", "hulpverlener", &s1, "zorgcoordinatie").await,
    ] {
        assert_projection(&rec, &full, &care, true, "fier");
        assert!(
            rec.get("suspects").is_none(),
            "no suspect list at all: {rec}"
        );
        assert!(rec.get("narrative").is_none() && rec.get("indicators").is_none());
    }
    // An adult outside the home: not for Veilig Thuis.
    refused(
        &server,
        refer(
            &server,
            "zorgcoordinator",
            &s1,
            "veilig-thuis",
            "zorgcoordinatie",
        )
        .await,
        "condition-not-met",
        "refer",
    )
    .await;

    // 6. The RIEC: a referral records a contribution to phenomenon tables only.
    let res = refer(&server, "ketenregisseur", &s1, "riec", "fenomeenanalyse").await;
    let rid = request_id(&res);
    let created = ok_json(res, 201).await;
    assert_eq!(created["mode"], "aggregate");
    assert_eq!(created["fields"], json!([]));
    assert!(created.get("inboxItem").is_none(), "{created}");
    let e = entry_of(&server, &rid).await;
    assert_eq!(
        (e["recipient"].as_str(), e["decision"]["mode"].as_str()),
        (Some("riec"), Some("aggregate"))
    );
    assert_eq!(e["fields"], json!([]));
    assert!(
        strings(&e["resources"]).all(|r| !r.starts_with("inbox:")),
        "no inbox copy for the RIEC: {e}"
    );

    // Sexual exploitation of a minor: to the police and Veilig Thuis.
    let (sexual, _) = full_signal("assen", &["seksueel"], true, false);
    let s2 = submit(&server, "assen", "aandachtfunctionaris-veiligheid", &sexual).await;
    assessed(&server, &s2).await;
    let full = ok_json(
        read(&server, "zvhd", "ketenregisseur", &s2, "drieluik").await,
        200,
    )
    .await;
    assert_eq!(full["victims"][0]["minor"], true);
    referred(
        &server,
        refer(&server, "ketenregisseur", &s2, "politie", "opsporing").await,
        "politie",
        "politie-opsporing",
    )
    .await;
    let full = ok_json(
        read(&server, "zvhd", "ketenregisseur", &s2, "drieluik").await,
        200,
    )
    .await;
    let rec = ok_json(
        read(&server, "politie", "rechercheur", &s2, "opsporing").await,
        200,
    )
    .await;
    assert_projection(
        &rec,
        &full,
        &grant_fields("politie-opsporing"),
        false,
        "politie opsporing",
    );
    referred(
        &server,
        refer(
            &server,
            "zorgcoordinator",
            &s2,
            "veilig-thuis",
            "zorgcoordinatie",
        )
        .await,
        "veilig-thuis",
        "veilig-thuis-zorgcoordinatie",
    )
    .await;
    let vt = grant_fields("veilig-thuis-zorgcoordinatie");
    let rec = ok_json(
        read(
            &server,
            "veilig-thuis",
            "aandachtfunctionaris",
            &s2,
            "zorgcoordinatie",
        )
        .await,
        200,
    )
    .await;
    assert_projection(&rec, &full, &vt, false, "veilig thuis");
    assert!(rec.get("suspects").is_none() && rec.get("narrative").is_none());

    // Criminal exploitation at home: the police, and Veilig Thuis (domestic).
    let (criminal, _) = full_signal("hoogeveen", &["crimineel"], false, true);
    let s3 = submit(
        &server,
        "hoogeveen",
        "aandachtfunctionaris-sociaal",
        &criminal,
    )
    .await;
    assessed(&server, &s3).await;
    referred(
        &server,
        refer(&server, "ketenregisseur", &s3, "politie", "opsporing").await,
        "politie",
        "politie-opsporing",
    )
    .await;
    referred(
        &server,
        refer(
            &server,
            "zorgcoordinator",
            &s3,
            "veilig-thuis",
            "zorgcoordinatie",
        )
        .await,
        "veilig-thuis",
        "veilig-thuis-zorgcoordinatie",
    )
    .await;
    let full = ok_json(
        read(&server, "zvhd", "zorgcoordinator", &s3, "zorgcoordinatie").await,
        200,
    )
    .await;
    let copy = inbox_copy(
        &server,
        "veilig-thuis",
        "aandachtfunctionaris",
        &s3,
        "zorgcoordinatie",
    )
    .await;
    assert_projection(&copy, &full, &vt, true, "veilig thuis inbox");

    // The ketenregisseur's list shows all three in full; the police list
    // shows only what was referred to them, cut to their grant.
    let page = ok_json(
        Role::of(&server, "zvhd", "ketenregisseur")
            .get("/v1/signals", "drieluik")
            .await,
        200,
    )
    .await;
    let listed: BTreeSet<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([s1.as_str(), s2.as_str(), s3.as_str()])
    );
    for item in page["items"].as_array().unwrap() {
        assert_eq!(paths(item), with_envelope(&all));
    }
    let page = ok_json(
        Role::of(&server, "politie", "rechercheur")
            .get("/v1/signals", "opsporing")
            .await,
        200,
    )
    .await;
    let listed: BTreeSet<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(listed, BTreeSet::from([s2.as_str(), s3.as_str()]));
    for item in page["items"].as_array().unwrap() {
        assert_eq!(
            paths(item),
            with_envelope(&grant_fields("politie-opsporing"))
        );
    }
}

#[tokio::test]
async fn refusals_carry_their_reason_and_are_logged() {
    let server = Server::start(Opts::new()).await;
    let (sexual, _) = full_signal("emmen", &["seksueel"], false, false);
    let s = submit(&server, "emmen", "aandachtfunctionaris-sociaal", &sexual).await;
    let (unknown, _) = full_signal("meppel", &["onbekend"], false, false);
    let u = submit(&server, "meppel", "aandachtfunctionaris-sociaal", &unknown).await;

    // Sexual exploitation is not the Labour Authority's.
    refused(
        &server,
        refer(&server, "ketenregisseur", &s, "nla", "opsporing").await,
        "form-not-in-mandate",
        "refer",
    )
    .await;
    // No signal goes to a care organisation for investigation.
    for id in [&s, &u] {
        refused(
            &server,
            refer(&server, "zorgcoordinator", id, "fier", "opsporing").await,
            "recipient-not-for-purpose",
            "refer",
        )
        .await;
    }
    // Another municipality does not read a municipality's report.
    refused(
        &server,
        read(
            &server,
            "assen",
            "aandachtfunctionaris-sociaal",
            &s,
            "signalering",
        )
        .await,
        "not-own-report",
        "read",
    )
    .await;
    // A municipality does not refer (it reports to the ZVHD by submitting).
    let res = Role::of(&server, "emmen", "aandachtfunctionaris-sociaal")
        .refer(&s, "politie", "opsporing")
        .await;
    refused(&server, res, "not-a-referrer", "refer").await;
    // Form `onbekend` reaches no investigator until the Drieluik sets a form.
    for recipient in ["politie", "nla", "om"] {
        refused(
            &server,
            refer(&server, "ketenregisseur", &u, recipient, "opsporing").await,
            "form-unknown",
            "refer",
        )
        .await;
    }
    // ...but it may go on the Drieluik agenda.
    assert_eq!(
        refer(&server, "ketenregisseur", &u, "politie", "drieluik")
            .await
            .status(),
        201
    );
    // Veilig Thuis: an adult, not at home.
    refused(
        &server,
        refer(
            &server,
            "zorgcoordinator",
            &s,
            "veilig-thuis",
            "zorgcoordinatie",
        )
        .await,
        "condition-not-met",
        "refer",
    )
    .await;
    // A recipient reads only what was referred to it, for that purpose.
    refused(
        &server,
        read(&server, "om", "officier", &s, "opsporing").await,
        "not-referred",
        "read",
    )
    .await;
    // An FG is no reader of records.
    refused(
        &server,
        read(&server, "zvhd", "fg", &s, "verantwoording").await,
        "purpose-not-for-role",
        "read",
    )
    .await;

    // No purpose (403), or one the covenant does not know (422, bad input):
    // refused and logged, without the caller's text as purpose.
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    let fg = Role::of(&server, "zvhd", "fg");
    let reporter = Role::of(&server, "assen", "aandachtfunctionaris-sociaal");
    let referral = json!({"recipient": "politie", "purpose": "drieluik"});
    for (method, path, role, body, action, header) in [
        (
            Method::GET,
            format!("/v1/signals/{s}"),
            &regisseur,
            None,
            "read",
            true,
        ),
        (
            Method::GET,
            "/v1/signals".to_owned(),
            &regisseur,
            None,
            "list",
            true,
        ),
        (
            Method::GET,
            "/v1/inbox".to_owned(),
            &regisseur,
            None,
            "deliver",
            true,
        ),
        (
            Method::POST,
            "/v1/signals".to_owned(),
            &reporter,
            Some(&sexual),
            "submit",
            true,
        ),
        // A referral names its purpose in the body too; the header must match it.
        (
            Method::POST,
            format!("/v1/signals/{s}/referrals"),
            &regisseur,
            Some(&referral),
            "refer",
            false,
        ),
        (
            Method::GET,
            "/v1/log/entries?start=0&end=1".to_owned(),
            &fg,
            None,
            "audit-query",
            true,
        ),
        (
            Method::GET,
            "/v1/phenomena/tables".to_owned(),
            &regisseur,
            None,
            "release-aggregate",
            true,
        ),
    ] {
        let res = role.call(method.clone(), &path, None, body).await;
        let e = refused(&server, res, "purpose-missing", action).await;
        assert!(e["purpose"].is_null(), "{e}");
        if header {
            let res = role.call(method, &path, "nieuwsgierigheid", body).await;
            let e = refused_with(&server, res, 422, "purpose-unknown", action).await;
            assert!(
                e["purpose"].is_null(),
                "an unknown purpose is not written to the log: {e}"
            );
        }
    }
}

#[tokio::test]
async fn riec_is_refused_on_every_record_route() {
    let server = Server::start(Opts::new()).await;
    let (body, _) = full_signal("emmen", &["arbeid"], false, false);
    let s = submit(&server, "emmen", "aandachtfunctionaris-sociaal", &body).await;
    let doc = openapi(&server).await;
    let record_routes: Vec<(String, String)> = operations(&doc)
        .into_iter()
        .filter(|(m, p)| {
            let tags = &operation(&doc, m, p)["tags"];
            strings(tags).any(|t| ["signals", "inbox", "decisions"].contains(&t.as_str()))
        })
        .collect();
    assert!(record_routes.len() >= 7, "{record_routes:?}");
    for role in ["analist", "fg"] {
        let riec = Role::of(&server, "riec", role);
        for (method, template) in &record_routes {
            // A real signal id where the route takes one: the refusal comes
            // before any handler could look it up.
            let path = template.replace("{id}", &s);
            for purpose in [Some("fenomeenanalyse"), Some("drieluik"), None] {
                let method: Method = method.parse().unwrap();
                let body = (method == Method::POST)
                    .then(|| json!({"recipient": "riec", "purpose": "fenomeenanalyse"}));
                let res = riec
                    .call(method.clone(), &path, purpose, body.as_ref())
                    .await;
                let rid = request_id(&res);
                problem(res, 403, Some("non-member-record-route")).await;
                let e = entry_of(&server, &rid).await;
                assert_eq!(
                    (e["action"].as_str(), e["outcome"].as_str()),
                    (Some("deny"), Some("denied")),
                    "{method} {template}: {e}"
                );
                assert_eq!(
                    e["resources"],
                    json!([format!("route:{template}")]),
                    "no ids in the entry"
                );
                assert_eq!(e["actor"]["partner"], "riec");
            }
        }
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_leaves_nothing_behind() {
    let server = Server::start(Opts::new()).await;
    let reporter = Role::of(&server, "emmen", "aandachtfunctionaris-sociaal");
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    let (good, _) = full_signal("emmen", &["arbeid"], false, false);
    let s = submit(&server, "emmen", "aandachtfunctionaris-sociaal", &good).await;
    let before = log_by_request(&server).await;
    let count_signals = || async {
        let page = ok_json(regisseur.get("/v1/signals", "drieluik").await, 200).await;
        page["items"].as_array().unwrap().len()
    };
    assert_eq!(count_signals().await, 1);

    // Schema violations: every failing pointer is listed, no value echoed.
    let m: Vec<String> = (0..6).map(|_| marker()).collect();
    let mut bad = good.clone();
    bad["municipality"] = json!(m[0]);
    bad["forms"] = json!([m[1]]);
    bad["victims"][0]["email"] = json!(m[2]);
    bad["victims"][0]["shoeSize"] = json!(m[3]);
    bad["suspects"][0]["kvkNumber"] = json!(m[4]);
    bad["sector"] = json!(m[5]);
    bad.as_object_mut().unwrap().remove("urgency");
    let res = reporter.post("/v1/signals", "signalering", &bad).await;
    let rid = request_id(&res);
    let text = res.text().await.unwrap();
    for marker in &m {
        assert!(
            !text.contains(marker.as_str()),
            "the response echoes a value: {text}"
        );
    }
    let p: Value = serde_json::from_str(&text).unwrap();
    // Schema violations are invalid input (API Design Rules): 400 with
    // `invalidParams`.
    assert_eq!(p["status"], 400, "{p}");
    assert_eq!(p["type"], "urn:ketenpoort:problem:invalid-input", "{p}");
    let pointers: BTreeSet<&str> = p["invalidParams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for want in [
        "/municipality",
        "/forms/0",
        "/victims/0/email",
        "/victims/0",
        "/suspects/0/kvkNumber",
        "/sector",
        "/urgency",
    ] {
        assert!(pointers.contains(want), "{want} missing from {pointers:?}");
    }
    assert!(
        !log_by_request(&server).await.contains_key(&rid),
        "a refused body is not logged"
    );

    // An invalid BSN (fails the 11-proef).
    let mut bad = good.clone();
    let valid = good["victims"][0]["bsn"].as_str().unwrap();
    let wrong = format!("{}{}", &valid[..8], (valid.as_bytes()[8] - b'0' + 1) % 10);
    bad["victims"][0]["bsn"] = json!(wrong);
    let res = reporter.post("/v1/signals", "signalering", &bad).await;
    let rid = request_id(&res);
    let text = res.text().await.unwrap();
    assert!(!text.contains(&wrong), "{text}");
    let p: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(p["status"], 400);
    assert_eq!(
        p["invalidParams"],
        json!([{"name": "/victims/0/bsn", "reason": "fails the 11-proef"}])
    );
    assert!(!log_by_request(&server).await.contains_key(&rid));

    // Referrals to an unknown recipient or for an unknown purpose.
    for (recipient, purpose, pointer) in [
        ("nergens", "opsporing", "/recipient"),
        ("politie", "nieuwsgierigheid", "/purpose"),
        ("../zvhd", "opsporing", "/recipient"),
    ] {
        let res = regisseur
            .post(
                &format!("/v1/signals/{s}/referrals"),
                "opsporing",
                &json!({"recipient": recipient, "purpose": purpose}),
            )
            .await;
        let rid = request_id(&res);
        // Fits the schema, names what the covenant does not know: 422.
        let p = problem(res, 422, None).await;
        assert!(
            p["invalidParams"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == pointer),
            "{p}"
        );
        assert!(!p.to_string().contains("nergens") && !p.to_string().contains("nieuwsgierigheid"));
        assert!(!log_by_request(&server).await.contains_key(&rid));
    }

    // Nothing stored: still one signal, not referred; nothing disclosed
    // since, besides the FG's own queries.
    assert_eq!(count_signals().await, 1);
    let rec = ok_json(
        read(&server, "zvhd", "ketenregisseur", &s, "drieluik").await,
        200,
    )
    .await;
    assert_eq!(rec["status"], "nieuw");
    let after = log_by_request(&server).await;
    for (rid, entries) in &after {
        if before.contains_key(rid) {
            continue;
        }
        for e in entries {
            let harmless = e["action"] == "audit-query"
                || (e["action"] == "list" || e["action"] == "read")
                    && e["actor"]["partner"] == "zvhd";
            assert!(harmless, "unexpected new log entry: {e}");
        }
    }
}

/// All partner/role pairs of the demo region (from the demo tokens).
fn principals(server: &Server) -> Vec<(String, String)> {
    server
        .demo_tokens()
        .into_iter()
        .map(|(p, r, _)| (p, r))
        .collect()
}

/// The kind of each demo partner.
fn kinds(server: &Server) -> BTreeMap<String, String> {
    server
        .data()
        .partners()
        .into_iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The most any grant of `kind`/`role` gives for `purpose` and `action`:
/// what the policy data allows this principal at all.
fn policy_bound(kind: &str, role: &str, purpose: &str, action: &str) -> BTreeSet<String> {
    let c = covenant();
    c["covenant"]["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| {
            g["kind"] == kind
                && strings(&g["roles"]).any(|r| r == role)
                && strings(&g["purposes"]).any(|p| p == purpose)
                && strings(&g["actions"]).any(|a| a == action)
        })
        .flat_map(|g| grant_fields(g["id"].as_str().unwrap()))
        .collect()
}

/// A random signal: random forms, optional fields left out at random, one
/// to three victims, up to three suspects.
fn random_signal() -> impl Strategy<Value = (Value, Vec<bool>)> {
    use proptest::prelude::*;
    let forms = proptest::sample::subsequence(
        vec!["seksueel", "arbeid", "crimineel", "orgaan", "onbekend"],
        1..=3,
    );
    (
        forms,
        any::<bool>(),
        any::<bool>(),
        1usize..=3,
        0usize..=3,
        proptest::collection::vec(any::<bool>(), 24),
    )
        .prop_map(|(forms, minor, domestic, victims, suspects, keep)| {
            let (mut body, _) = full_signal("tynaarlo", &forms, minor, domestic);
            let optional_top = [
                "sector",
                "locationType",
                "domesticSetting",
                "indicators",
                "narrative",
            ];
            let optional_person = [
                "bsn",
                "dateOfBirth",
                "nationality",
                "gender",
                "address",
                "phone",
                "email",
                "careNeeds",
                "companyName",
                "allegedConduct",
            ];
            for (i, k) in optional_top.iter().enumerate() {
                if !keep[i] {
                    body.as_object_mut().unwrap().remove(*k);
                }
            }
            for list in ["victims", "suspects"] {
                let n = if list == "victims" { victims } else { suspects };
                let template = body[list][0].clone();
                let people: Vec<Value> = (0..n)
                    .map(|j| {
                        let mut p = template.clone();
                        for (i, k) in optional_person.iter().enumerate() {
                            if !keep[(5 + i + j) % keep.len()] {
                                p.as_object_mut().unwrap().remove(*k);
                            }
                        }
                        p
                    })
                    .collect();
                body[list] = json!(people);
            }
            if suspects == 0 {
                body.as_object_mut().unwrap().remove("suspects");
            }
            (body, keep)
        })
}

/// For random signals, referrals and readers (every demo partner and role,
/// every purpose), no 200 response holds a field beyond what the policy
/// allows: the data's grants for that principal, the decision the log
/// recorded for the request, and for deliveries `POST /v1/decisions`.
#[tokio::test]
async fn no_response_holds_more_than_the_policy_allows() {
    let server = Server::start(Opts::new()).await;
    let kinds = kinds(&server);
    let principals = principals(&server);
    let purposes: Vec<String> = covenant()["covenant"]["purposes"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let submitters = [
        ("emmen", "aandachtfunctionaris-sociaal"),
        ("assen", "aandachtfunctionaris-veiligheid"),
        ("zvhd", "ketenregisseur"),
        ("politie", "rechercheur"),
        ("veilig-thuis", "aandachtfunctionaris"),
    ];
    let referrals = [
        ("politie", "drieluik"),
        ("politie", "opsporing"),
        ("nla", "opsporing"),
        ("om", "opsporing"),
        ("fier", "zorgcoordinatie"),
        ("veilig-thuis", "zorgcoordinatie"),
        ("riec", "fenomeenanalyse"),
        ("fier", "opsporing"),
    ];
    let mut runner = TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let case = (
        random_signal(),
        0..submitters.len(),
        proptest::sample::subsequence((0..referrals.len()).collect::<Vec<_>>(), 0..=4),
        proptest::collection::vec((0..principals.len(), 0..purposes.len()), 8),
    );
    // (request id, partner, role, purpose, action, record)
    let mut seen = Vec::new();
    let mut facts_of = BTreeMap::new();
    let mut denied = 0;
    for _ in 0..24 {
        let ((body, _), who, refs, random_readers) = case.new_tree(&mut runner).unwrap().current();
        let (partner, role) = submitters[who];
        let id = submit(&server, partner, role, &body).await;
        let facts = json!({
            "forms": body["forms"],
            "victimMinor": body["victims"].as_array().unwrap().iter().any(|v| v["dateOfBirth"] == "2012-05-01"),
            "domesticSetting": body["domesticSetting"] == true,
        });
        facts_of.insert(id.clone(), facts);
        // Random readers, and every recipient a referral went to.
        let mut readers: Vec<((String, String), String)> = random_readers
            .into_iter()
            .map(|(p, u)| (principals[p].clone(), purposes[u].clone()))
            .collect();
        for r in refs {
            let (recipient, purpose) = referrals[r];
            let by = if purpose == "zorgcoordinatie" {
                "zorgcoordinator"
            } else {
                "ketenregisseur"
            };
            let status = refer(&server, by, &id, recipient, purpose)
                .await
                .status()
                .as_u16();
            assert!(status == 201 || status == 403, "referral: {status}");
            for (p, r) in principals
                .iter()
                .filter(|(p, r)| p == recipient && r != "fg")
            {
                readers.push(((p.clone(), r.clone()), purpose.to_owned()));
            }
        }
        for ((partner, role), purpose) in readers {
            let reader = Role::of(&server, &partner, &role);
            for (path, action) in [
                (format!("/v1/signals/{id}"), "read"),
                ("/v1/signals".to_owned(), "list"),
                ("/v1/inbox".to_owned(), "deliver"),
            ] {
                let res = reader.get(&path, purpose.as_str()).await;
                let rid = request_id(&res);
                match res.status().as_u16() {
                    200 => {
                        let v: Value = res.json().await.unwrap();
                        let records: Vec<Value> = match action {
                            "read" => vec![v],
                            "list" => v["items"].as_array().unwrap().clone(),
                            _ => v["items"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|i| i["record"].clone())
                                .collect(),
                        };
                        for record in records {
                            seen.push((
                                rid.clone(),
                                partner.clone(),
                                role.clone(),
                                purpose.clone(),
                                action,
                                record,
                            ));
                        }
                    }
                    403 => denied += 1,
                    other => panic!("{partner}.{role} {purpose} {path}: {other}"),
                }
            }
        }
    }
    assert!(
        seen.len() > 50 && denied > 50,
        "the cases exercise both: {} records, {denied} refusals",
        seen.len()
    );
    let log = log_by_request(&server).await;
    let mut dry_runs: BTreeMap<(String, String, String, String), BTreeSet<String>> =
        BTreeMap::new();
    for (rid, partner, role, purpose, action, record) in &seen {
        let who = format!("{partner}.{role} {purpose} {action}");
        let got = paths(record);
        let kind = &kinds[partner];
        assert_ne!(kind, "riec", "{who}: a non-member received a record");
        let bound = with_envelope(&policy_bound(kind, role, purpose, action));
        assert!(
            got.is_subset(&bound),
            "{who}: {:?} beyond the policy data",
            got.difference(&bound).collect::<Vec<_>>()
        );
        let entry = &log[rid][0];
        let logged = with_envelope(&strings(&entry["fields"]).collect());
        assert!(
            got.is_subset(&logged),
            "{who}: {:?} beyond the logged decision",
            got.difference(&logged).collect::<Vec<_>>()
        );
        if *action == "deliver" {
            let id = record["id"].as_str().unwrap().to_owned();
            let key = (partner.clone(), role.clone(), purpose.clone(), id.clone());
            if !dry_runs.contains_key(&key) {
                let d = dry_run_fields(&server, partner, role, purpose, &facts_of[&id]).await;
                dry_runs.insert(key.clone(), with_envelope(&strings(&d["fields"]).collect()));
            }
            let decided = &dry_runs[&key];
            assert!(
                got.is_subset(decided),
                "{who}: {:?} beyond POST /v1/decisions",
                got.difference(decided).collect::<Vec<_>>()
            );
        }
    }
}

/// A signal goes to a recipient for a purpose once: a repeated referral is a
/// 409 that stores and logs nothing, so referral facts stay one per pair.
#[tokio::test]
async fn a_repeated_referral_is_a_conflict() {
    let server = Server::start(Opts::new()).await;
    let signal: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/signal.json"),
        )
        .expect("examples/signal.json"),
    )
    .expect("example is JSON");
    let id = submit(&server, "emmen", "aandachtfunctionaris-sociaal", &signal).await;
    ok_json(
        refer(&server, "ketenregisseur", &id, "nla", "opsporing").await,
        201,
    )
    .await;
    let refers = |log: BTreeMap<String, Vec<Value>>| {
        log.values()
            .flatten()
            .filter(|e| e["action"] == "refer")
            .count()
    };
    let before = refers(log_by_request(&server).await);
    let again = refer(&server, "ketenregisseur", &id, "nla", "opsporing").await;
    assert_eq!(again.status().as_u16(), 409);
    let problem: Value = again.json().await.expect("problem body");
    assert_eq!(problem["type"], "urn:ketenpoort:problem:already-referred");
    assert_eq!(
        refers(log_by_request(&server).await),
        before,
        "nothing was logged"
    );
    let inbox = ok_json(
        Role::of(&server, "nla", "inspecteur")
            .get("/v1/inbox", "opsporing")
            .await,
        200,
    )
    .await;
    assert_eq!(
        inbox["items"].as_array().map(Vec::len),
        Some(1),
        "one inbox copy: {inbox}"
    );
}

/// Paging never hands out the id of a signal the caller may not see: a page
/// ends at its last candidate, so the cursor is sealed; following cursors
/// yields every visible signal exactly once, and a forged cursor is a 400.
#[tokio::test]
async fn list_cursors_reveal_no_ids() {
    let server = Server::start(Opts::new()).await;
    let body: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/signal.json"),
        )
        .expect("examples/signal.json"),
    )
    .expect("example is JSON");
    let (mut assen, mut emmen) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        emmen.push(submit(&server, "emmen", "aandachtfunctionaris-sociaal", &body).await);
        assen.push(submit(&server, "assen", "aandachtfunctionaris-sociaal", &body).await);
    }
    let reporter = Role::of(&server, "assen", "aandachtfunctionaris-sociaal");
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/signals?limit=1&after={c}"),
            None => "/v1/signals?limit=1".to_owned(),
        };
        let page = ok_json(reporter.get(&path, "signalering").await, 200).await;
        let text = page.to_string();
        assert!(
            emmen.iter().all(|id| !text.contains(id.as_str())),
            "another municipality's id leaked: {text}"
        );
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page["nextAfter"].as_str() {
            Some(c) => {
                assert!(
                    uuid::Uuid::parse_str(c).is_err(),
                    "the cursor is not a bare id: {c}"
                );
                cursor = Some(c.to_owned());
            }
            None => break,
        }
        pages += 1;
        assert!(pages <= 12, "paging does not end");
    }
    seen.sort();
    assen.sort();
    assert_eq!(seen, assen, "every visible signal once");
    let forged = reporter
        .get(&format!("/v1/signals?after={}", emmen[0]), "signalering")
        .await;
    assert_eq!(forged.status().as_u16(), 400);
}
