//! Policy bundles and reloads: a signed OPA bundle starts the server and an
//! unsigned, altered or wrongly signed one does not; reloads on the admin
//! listener and on SIGHUP swap the policies whole or refuse them while the
//! running ones keep serving.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::*;
use super::common::*;

fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// `ketenpoort <args>` without a data directory.
fn ketenpoort(args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    hermetic(&mut cmd);
    cmd.output().expect("running ketenpoort")
}

/// A fresh Ed25519 key pair in `dir`: (private PKCS#8 PEM, public PEM).
fn ed25519(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let (private, public) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.pub.pem")),
    );
    std::fs::write(&private, key.serialize_pem()).unwrap();
    std::fs::write(&public, key.public_key_pem()).unwrap();
    (private, public)
}

/// `policy bundle`; returns the revision it reports.
fn build(policies: &Path, out: &Path, key: Option<&Path>) -> String {
    let mut args = vec![
        "policy",
        "bundle",
        "--policies",
        policies.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(k) = key {
        args.extend(["--signing-key", k.to_str().unwrap()]);
    }
    let res = ketenpoort(&args);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&res.stderr)
    );
    stdout
        .split(['(', ','])
        .find(|s| s.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no revision in {stdout}"))
        .to_owned()
}

/// A bundle's files by name.
type Files = BTreeMap<String, Vec<u8>>;

/// The files of a bundle tarball by name.
fn unpack(bundle: &Path) -> Files {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(bundle).unwrap());
    let mut archive = tar::Archive::new(gz);
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        files.insert(name, content);
    }
    files
}

fn pack(files: &Files, out: &Path) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(out).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, content) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, name, content.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// The policies' data with the police also receiving organ-trade cases.
fn police_gets_organ_trade(data_json: &[u8]) -> Vec<u8> {
    let mut d: Value = serde_json::from_slice(data_json).unwrap();
    let grant = d["covenant"]["grants"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|g| g["id"] == "politie-opsporing")
        .unwrap();
    grant["forms"].as_array_mut().unwrap().push(json!("orgaan"));
    serde_json::to_vec_pretty(&d).unwrap()
}

/// The Rego test that states the old cell, updated to the new one.
fn police_organ_test_updated(test: &str) -> String {
    let old = r#"denied(decide(refer(ketenregisseur, politie, "opsporing", with_forms(["orgaan"]))), ["form-not-in-mandate"])"#;
    assert!(
        test.contains(old),
        "exchange_test.rego no longer states the police/orgaan cell as expected"
    );
    test.replace(
        old,
        r#"masked(decide(refer(ketenregisseur, politie, "opsporing", with_forms(["orgaan"]))), "opsporing", no_health_fields, "politie-opsporing")"#,
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

async fn revision_in_force(server: &Server) -> String {
    let ready = ok_json(server.get("/readyz").send().await.unwrap(), 200).await;
    ready["policyRevision"].as_str().unwrap().to_owned()
}

/// May the ketenregisseur refer an organ-trade signal to the police?
async fn police_may_have_organ_trade(server: &Server) -> bool {
    let d = ok_json(
        Role::of(server, "zvhd", "ketenregisseur")
            .post(
                "/v1/decisions",
                None,
                &json!({"action": "refer", "purpose": "opsporing", "recipient": "politie", "forms": ["orgaan"]}),
            )
            .await,
        200,
    )
    .await;
    d["allow"].as_bool().unwrap()
}

#[tokio::test]
async fn a_signed_bundle_starts_the_server_and_bad_bundles_do_not() {
    let data = DataDir::new().await;
    let dir = data.path();
    let (key, public) = ed25519(dir, "signer");
    let (other_key, other_public) = ed25519(dir, "other");
    let signed = dir.join("signed.tar.gz");
    let revision = build(&repo_policies(), &signed, Some(&key));
    let files = unpack(&signed);
    assert!(files.contains_key(".signatures.json") && files.contains_key(".manifest"));

    let variant = |name: &str, edit: &dyn Fn(&mut Files)| {
        let mut f = files.clone();
        edit(&mut f);
        let out = dir.join(name);
        pack(&f, &out);
        out
    };
    let unsigned = dir.join("unsigned.tar.gz");
    assert_eq!(build(&repo_policies(), &unsigned, None), revision);
    let altered = variant("altered.tar.gz", &|f| {
        let d = police_gets_organ_trade(&f["data.json"]);
        f.insert("data.json".into(), d);
    });
    let added = variant("added.tar.gz", &|f| {
        f.insert(
            "extra/extra.rego".into(),
            b"package extra\n\nx := 1\n".to_vec(),
        );
    });
    let removed = variant("removed.tar.gz", &|f| {
        f.remove("phenomena/phenomena_test.rego");
    });
    let other = dir.join("other.tar.gz");
    build(&repo_policies(), &other, Some(&other_key));

    let opts = |bundle: &Path, key: Option<&Path>| {
        let mut o = Opts::new().env("KETENPOORT_POLICY__PATH", bundle.display());
        if let Some(k) = key {
            o = o.env(
                "KETENPOORT_POLICY__BUNDLE_VERIFICATION_KEYS",
                format!("[\"{}\"]", k.display()),
            );
        }
        o
    };
    for (bundle, key, why) in [
        (&unsigned, Some(&public), "the bundle is not signed"),
        (
            &altered,
            Some(&public),
            "data.json: the content does not match the signature",
        ),
        (
            &added,
            Some(&public),
            "extra/extra.rego is in the bundle but not in its signature",
        ),
        (
            &removed,
            Some(&public),
            "(a file was removed): phenomena/phenomena_test.rego",
        ),
        (&other, Some(&public), "does not verify with any key"),
        (&signed, Some(&other_public), "does not verify with any key"),
        (
            &signed,
            None,
            "the bundle is signed, but policy.bundle_verification_keys is not set",
        ),
        (
            &repo_policies(),
            Some(&public),
            "must be a signed bundle (.tar.gz), not the directory",
        ),
    ] {
        let (status, stderr) = Server::refused(&data, opts(bundle, key.map(|k| k.as_path())));
        assert!(!status.success(), "{}: {status}", bundle.display());
        assert!(
            stderr.contains("the policies at") && stderr.contains(why),
            "{}: expected {why:?} in:\n{stderr}",
            bundle.display()
        );
    }

    // The signed bundle: the server serves its policies, revision and all.
    let live = dir.join("live.tar.gz");
    std::fs::copy(&signed, &live).unwrap();
    let server = Server::start_on(
        data.clone(),
        opts(&live, Some(&public)).env("KETENPOORT_ADMIN__LISTEN", "127.0.0.1:0"),
    );
    assert_eq!(revision_in_force(&server).await, revision);
    let admin = server.admin_url().expect("admin listener");
    let status = ok_json(
        server
            .client()
            .get(format!("{admin}/admin/policy"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(status["revision"], revision.as_str());
    assert_eq!(
        status["bundleRevision"],
        revision.as_str(),
        "the manifest names the same revision"
    );
    assert!(!police_may_have_organ_trade(&server).await);

    // An altered bundle in its place is refused on reload; the signed one serves on.
    std::fs::copy(&altered, &live).unwrap();
    let res = server
        .client()
        .post(format!("{admin}/admin/policy/reload"))
        .send()
        .await
        .unwrap();
    let p = problem(res, 422, Some("bundle-signature")).await;
    assert!(p["detail"].as_str().unwrap().contains("data.json"), "{p}");
    assert_eq!(revision_in_force(&server).await, revision);
    assert!(!police_may_have_organ_trade(&server).await);

    // The same change, tested and signed, is taken.
    let changed = dir.join("changed");
    copy_dir(&repo_policies(), &changed);
    let d = police_gets_organ_trade(&std::fs::read(changed.join("data.json")).unwrap());
    std::fs::write(changed.join("data.json"), d).unwrap();
    let test = std::fs::read_to_string(changed.join("exchange/exchange_test.rego")).unwrap();
    std::fs::write(
        changed.join("exchange/exchange_test.rego"),
        police_organ_test_updated(&test),
    )
    .unwrap();
    let new_revision = build(&changed, &live, Some(&key));
    assert_ne!(new_revision, revision);
    let res = server
        .client()
        .post(format!("{admin}/admin/policy/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(res, 200).await["revision"], new_revision.as_str());
    assert_eq!(revision_in_force(&server).await, new_revision);
    assert!(police_may_have_organ_trade(&server).await);
}

#[tokio::test]
async fn admin_reload_swaps_the_policies_whole_or_refuses_them() {
    let data = DataDir::new().await;
    let policies = data.file("policies");
    copy_dir(&repo_policies(), &policies);
    let server = Server::start_on(
        data.clone(),
        Opts::new()
            .env("KETENPOORT_POLICY__PATH", "{data_dir}/policies")
            .env("KETENPOORT_ADMIN__LISTEN", "127.0.0.1:0"),
    );
    let admin = server.admin_url().expect("admin listener");
    assert!(admin.starts_with("http://127.0.0.1:"), "{admin}");
    let client = server.client();
    let policy_status = || async {
        ok_json(
            client
                .get(format!("{admin}/admin/policy"))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await
    };
    let status = policy_status().await;
    let first = revision_in_force(&server).await;
    assert_eq!(status["revision"], first.as_str());
    assert!(
        status.get("bundleRevision").is_none(),
        "a directory has no manifest"
    );
    let loaded_at = status["loadedAt"].as_str().unwrap().to_owned();
    time::OffsetDateTime::parse(&loaded_at, &time::format_description::well_known::Rfc3339)
        .unwrap();
    // The repository's policies agree with the interpreter on the corpus,
    // so their bytecode decides once that check (a thread of its own after
    // load; the interpreter decides meanwhile) is done.
    eventually("the bytecode check", || async {
        policy_status().await["engine"] != "checking"
    })
    .await;
    assert_eq!(policy_status().await["engine"], "bytecode");

    let (body, _) = full_signal("coevorden", &["orgaan"], false, false);
    let id = submit(&server, "coevorden", "aandachtfunctionaris-sociaal", &body).await;
    refused(
        &server,
        refer(&server, "ketenregisseur", &id, "politie", "opsporing").await,
        "form-not-in-mandate",
        "refer",
    )
    .await;

    // A data cell changed, but the Rego test still states the old cell.
    let data_json = policies.join("data.json");
    let original = std::fs::read(&data_json).unwrap();
    std::fs::write(&data_json, police_gets_organ_trade(&original)).unwrap();
    let reload = || async {
        client
            .post(format!("{admin}/admin/policy/reload"))
            .send()
            .await
            .unwrap()
    };
    let p = problem(reload().await, 422, Some("policy-tests-failed")).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("test_politie_not_for_labour_or_organ_trade"),
        "{p}"
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("the running policies stay in force"),
        "{p}"
    );
    assert_eq!(revision_in_force(&server).await, first);
    assert!(!police_may_have_organ_trade(&server).await);

    // A syntax error.
    let exchange = policies.join("exchange/exchange.rego");
    let rego = std::fs::read_to_string(&exchange).unwrap();
    std::fs::write(&exchange, format!("{rego}\n!!\n")).unwrap();
    let p = problem(reload().await, 422, Some("policy-invalid")).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("exchange/exchange.rego"),
        "{p}"
    );
    assert_eq!(revision_in_force(&server).await, first);
    refused(
        &server,
        refer(&server, "ketenregisseur", &id, "politie", "opsporing").await,
        "form-not-in-mandate",
        "refer",
    )
    .await;
    let status = policy_status().await;
    assert_eq!(
        (status["revision"].as_str(), status["loadedAt"].as_str()),
        (Some(first.as_str()), Some(loaded_at.as_str()))
    );

    // Fixed, with the test updated to the new cell: swapped in.
    std::fs::write(&exchange, &rego).unwrap();
    let test = policies.join("exchange/exchange_test.rego");
    std::fs::write(
        &test,
        police_organ_test_updated(&std::fs::read_to_string(&test).unwrap()),
    )
    .unwrap();
    let status = ok_json(reload().await, 200).await;
    let second = status["revision"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_ne!(status["loadedAt"].as_str(), Some(loaded_at.as_str()));
    assert_eq!(revision_in_force(&server).await, second);
    let res = refer(&server, "ketenregisseur", &id, "politie", "opsporing").await;
    let created = ok_json(res, 201).await;
    assert_eq!(created["mode"], "masked");
    ok_json(
        read(&server, "politie", "rechercheur", &id, "opsporing").await,
        200,
    )
    .await;
    // Decisions and log entries name the revision in force.
    let log = log_by_request(&server).await;
    let revisions: std::collections::BTreeSet<&str> = log
        .values()
        .flatten()
        .filter_map(|e| e["policyRevision"].as_str())
        .collect();
    assert!(
        revisions.contains(first.as_str()) && revisions.contains(second.as_str()),
        "{revisions:?}"
    );

    // The admin interface is its own listener: not on the partner port, and
    // the partner API is not on it.
    problem(server.get("/admin/policy").send().await.unwrap(), 404, None).await;
    problem(
        server.post("/admin/policy/reload").send().await.unwrap(),
        404,
        None,
    )
    .await;
    problem(
        client.get(format!("{admin}/v1/me")).send().await.unwrap(),
        404,
        None,
    )
    .await;
    problem(
        client
            .get(format!("{admin}/admin/policy/reload"))
            .send()
            .await
            .unwrap(),
        405,
        None,
    )
    .await;
    let doc = openapi(&server).await;
    assert!(
        operations(&doc)
            .iter()
            .all(|(_, p)| !p.starts_with("/admin"))
    );
}

/// Polls until `done` or a minute passes.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sighup(server: &Server) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
}

#[tokio::test]
async fn sighup_reloads_like_the_admin_endpoint() {
    let data = DataDir::new().await;
    let policies = data.file("policies");
    copy_dir(&repo_policies(), &policies);
    let server = Server::start_on(
        data.clone(),
        Opts::new().env("KETENPOORT_POLICY__PATH", "{data_dir}/policies"),
    );
    let first = revision_in_force(&server).await;
    let refusals = |s: &Server| s.logs().matches("policy reload refused").count();

    // A failing Rego test: refused, logged, the old revision serves.
    std::fs::write(
        policies.join("data.json"),
        police_gets_organ_trade(&std::fs::read(policies.join("data.json")).unwrap()),
    )
    .unwrap();
    sighup(&server);
    eventually("the refusal in the log", || async {
        refusals(&server) == 1
    })
    .await;
    assert!(server.logs_flushed().await.contains("policy-tests-failed"));
    assert_eq!(revision_in_force(&server).await, first);
    assert!(!police_may_have_organ_trade(&server).await);

    // A syntax error: the same.
    let exchange = policies.join("exchange/exchange.rego");
    let rego = std::fs::read_to_string(&exchange).unwrap();
    std::fs::write(&exchange, format!("{rego}\n!!\n")).unwrap();
    sighup(&server);
    eventually("the second refusal in the log", || async {
        refusals(&server) == 2
    })
    .await;
    assert_eq!(revision_in_force(&server).await, first);

    // Fixed and the test updated: the new revision serves.
    std::fs::write(&exchange, &rego).unwrap();
    let test = policies.join("exchange/exchange_test.rego");
    std::fs::write(
        &test,
        police_organ_test_updated(&std::fs::read_to_string(&test).unwrap()),
    )
    .unwrap();
    sighup(&server);
    eventually("the new revision", || async {
        revision_in_force(&server).await != first
    })
    .await;
    assert!(police_may_have_organ_trade(&server).await);
    assert!(server.logs_flushed().await.contains("policies reloaded"));
}

#[tokio::test]
async fn the_admin_listener_is_loopback_or_mutual_tls() {
    let data = DataDir::new().await;
    let (status, stderr) = Server::refused(
        &data,
        Opts::new().env("KETENPOORT_ADMIN__LISTEN", "0.0.0.0:0"),
    );
    assert!(!status.success());
    assert!(stderr.contains("not a loopback address"), "{stderr}");

    // With operator client certificates (here: the demo CA) it may listen
    // anywhere, over TLS only.
    let server = Server::start_on(
        data.clone(),
        Opts::new()
            .env("KETENPOORT_ADMIN__LISTEN", "0.0.0.0:0")
            .env("KETENPOORT_ADMIN__CLIENT_CA", "{data_dir}/tls/ca.pem"),
    );
    let admin = server.admin_url().expect("admin listener");
    let port = admin.rsplit(':').next().unwrap();
    assert!(admin.starts_with("https://"), "{admin}");
    let url = format!("https://127.0.0.1:{port}/admin/policy");
    let operator = server.client_with_cert("zvhd");
    let status = ok_json(operator.get(&url).send().await.unwrap(), 200).await;
    assert_eq!(
        status["revision"],
        revision_in_force(&server).await.as_str()
    );
    assert!(
        server.client().get(&url).send().await.is_err(),
        "no client certificate, no admin"
    );
    assert!(
        server
            .client()
            .get(format!("http://127.0.0.1:{port}/admin/policy"))
            .send()
            .await
            .is_err(),
        "no plain HTTP"
    );
}
