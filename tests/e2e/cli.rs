//! The command line: `serve --demo` is repeatable without loss, `partner`
//! validates before it writes, `token issue` signs only what the registry
//! allows, `migrate` works on both backends.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::common::*;

const ROLE: &str = "aandachtfunctionaris-veiligheid";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// SHA-256 of every file under `rel` (recursively), by relative path.
fn snapshot(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir.join(rel)) else {
        return;
    };
    for e in entries {
        let name = format!("{rel}/{}", e.unwrap().file_name().to_string_lossy());
        let path = dir.join(&name);
        if path.is_dir() {
            snapshot(dir, &name, out);
        } else {
            out.insert(name, sha256_hex(&std::fs::read(&path).unwrap()));
        }
    }
}

/// Keys, the PKI and the client certificates: everything `--demo` must keep.
fn durable_files(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for rel in ["keys", "tls", "demo/clients"] {
        snapshot(dir, rel, &mut out);
    }
    out
}

/// Fingerprint of the leaf certificate in a PEM chain.
fn leaf_fingerprint(pem: &Path) -> String {
    let leaf = CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    sha256_hex(&leaf)
}

fn failed(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.trim().is_empty(), "a failure without a message");
    stderr
}

#[tokio::test]
async fn serve_demo_twice_keeps_keys_pki_partners_and_data() {
    let data = DataDir::new().await;
    let first = Server::start_on(data.clone(), Opts::new());
    data.cli_ok(&[
        "partner",
        "add",
        "--id",
        "e2e-zorg",
        "--name",
        "E2E Zorg",
        "--kind",
        "zorgpartner",
        "--roles",
        "hulpverlener",
    ]);
    data.cli_ok(&["partner", "suspend", "--id", "meppel"]);
    let issued = first.issue(&["--partner", "assen", "--role", "fg", "--ttl", "1h"]);
    assert_eq!(first.get_as("/v1/me", &issued).await.status(), 200);
    let files = durable_files(data.path());
    for must in [
        "keys/token-issuer.pem",
        "keys/token-issuer.pub.pem",
        "tls/ca.pem",
        "tls/server.pem",
        "demo/clients/riec.pem",
    ] {
        assert!(
            files.contains_key(must),
            "{must} missing after --demo: {:?}",
            files.keys()
        );
    }
    let partners = data.partners();
    let tables = data.tables().await;
    drop(first);

    let second = Server::start_on(data.clone(), Opts::new());
    assert_eq!(
        durable_files(data.path()),
        files,
        "keys, CA or certificates changed on the second --demo"
    );
    assert_eq!(
        data.partners(),
        partners,
        "the partner registry changed on the second --demo"
    );
    assert_eq!(data.tables().await, tables);
    let meppel = partners.iter().find(|p| p["id"] == "meppel").unwrap();
    assert_eq!(
        meppel["status"], "suspended",
        "a suspension survives --demo"
    );
    assert!(partners.iter().any(|p| p["id"] == "e2e-zorg"));
    // A token signed before the restart is still good; so are the new demo tokens.
    assert_eq!(second.get_as("/v1/me", &issued).await.status(), 200);
    assert_eq!(
        second
            .get_as("/v1/me", &second.token("emmen", ROLE))
            .await
            .status(),
        200
    );
    problem(
        second.get_as("/v1/me", &second.token("meppel", ROLE)).await,
        403,
        Some("partner-suspended"),
    )
    .await;
    // Client certificates still match their registered fingerprints.
    for p in &partners {
        let id = p["id"].as_str().unwrap();
        if id == "e2e-zorg" {
            continue;
        }
        let fp = leaf_fingerprint(&data.file(&format!("demo/clients/{id}.pem")));
        assert_eq!(p["certFingerprints"], json!([fp]), "{id}");
    }
    let second_client = second.client_with_cert("assen");
    assert_eq!(
        second_client
            .get(second.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn partner_list_shows_the_demo_region() {
    let server = Server::start(Opts::new()).await;
    let partners = server.data().partners();
    let ids: BTreeSet<&str> = partners.iter().map(|p| p["id"].as_str().unwrap()).collect();
    let mut expected: BTreeSet<&str> = MUNICIPALITIES.into_iter().collect();
    expected.extend([
        "zvhd",
        "politie",
        "nla",
        "om",
        "veilig-thuis",
        "fier",
        "riec",
    ]);
    assert_eq!(ids, expected);
    for p in &partners {
        let id = p["id"].as_str().unwrap();
        assert_eq!(p["member"], json!(id != "riec"), "membership of {id}");
        assert_eq!(p["status"], "active", "{id}");
        assert!(
            p["displayName"].as_str().is_some_and(|n| !n.is_empty()),
            "{id}"
        );
        let roles: Vec<&str> = p["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(
            roles.contains(&"fg"),
            "{id} has a privacy officer role: {roles:?}"
        );
        if MUNICIPALITIES.contains(&id) {
            assert_eq!(p["kind"], "gemeente");
            assert!(
                roles.contains(&ROLE) && roles.contains(&"aandachtfunctionaris-sociaal"),
                "{id}: {roles:?}"
            );
        }
        let fps = p["certFingerprints"].as_array().unwrap();
        assert_eq!(fps.len(), 1, "{id}");
        let fp = fps[0].as_str().unwrap();
        assert!(
            fp.len() == 64 && fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{id}: {fp}"
        );
    }
    let riec = partners.iter().find(|p| p["id"] == "riec").unwrap();
    assert_eq!(
        (riec["kind"].as_str(), riec["member"].as_bool()),
        (Some("riec"), Some(false))
    );
    assert_eq!(
        partners.iter().find(|p| p["id"] == "fier").unwrap()["kind"],
        "zorgpartner"
    );
    // The table form says the same.
    let table = server.cli_ok(&["partner", "list"]);
    let riec_line = table
        .lines()
        .find(|l| l.starts_with("riec "))
        .expect("riec in the table");
    assert!(
        riec_line.split_whitespace().any(|w| w == "no"),
        "{riec_line}"
    );
    assert_eq!(table.lines().count(), 1 + 19, "{table}");
}

#[tokio::test]
async fn partner_add_validates_and_changes_nothing_on_error() {
    let server = Server::start(Opts::new()).await;
    let before = server.data().partners();
    let valid = |id: &str| -> Vec<String> {
        [
            "partner",
            "add",
            "--id",
            id,
            "--name",
            "Zorg Test",
            "--kind",
            "zorgpartner",
            "--roles",
            "hulpverlener",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let with = |id: &str, flag: &str, value: &str| {
        let mut a = valid(id);
        match a.iter().position(|x| x == flag) {
            Some(i) => a[i + 1] = value.to_owned(),
            None => a.extend([flag.to_owned(), value.to_owned()]),
        }
        a
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("uppercase id", valid("Zorg-Test")),
        ("one-character id", valid("z")),
        ("id with a leading dash", valid("-zorg")),
        ("id with a space", valid("zorg test")),
        ("id too long", valid(&"z".repeat(64))),
        (
            "kind not a slug",
            with("zorg-test", "--kind", "Zorg Partner"),
        ),
        ("blank name", with("zorg-test", "--name", "   ")),
        (
            "name too long",
            with("zorg-test", "--name", &"n".repeat(201)),
        ),
        (
            "role not a slug",
            with("zorg-test", "--roles", "Hulp Verlener"),
        ),
        ("empty role", with("zorg-test", "--roles", "hulpverlener,")),
        ("short OIN", with("zorg-test", "--oin", "123")),
        (
            "OIN with letters",
            with("zorg-test", "--oin", "0000000123456789012x"),
        ),
        (
            "fingerprint not hex",
            with("zorg-test", "--cert-fingerprint", &"zz".repeat(32)),
        ),
        (
            "fingerprint too short",
            with("zorg-test", "--cert-fingerprint", "abcd"),
        ),
        ("existing id", valid("assen")),
        (
            "existing id, other kind",
            with("riec", "--kind", "gemeente"),
        ),
        ("no roles", valid("zorg-test")[..8].to_vec()),
        ("unknown flag", with("zorg-test", "--member", "yes")),
    ];
    for (what, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = server.cli(&args);
        let stderr = failed(&out);
        assert!(
            out.stdout.is_empty(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert_eq!(
            server.data().partners(),
            before,
            "{what} changed the registry"
        );
    }

    // Valid additions; fingerprints are normalised.
    let fp = "AB:".repeat(31) + "AB";
    let mut a = with("zorg-test", "--roles", "hulpverlener,fg");
    a.extend([
        "--oin".into(),
        "00000001234567890123".into(),
        "--cert-fingerprint".into(),
        fp,
    ]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    assert!(server.cli_ok(&a).contains("zorg-test"));
    let mut b = valid("extern-bureau");
    b.push("--non-member".into());
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    server.cli_ok(&b);
    let after = server.data().partners();
    assert_eq!(after.len(), before.len() + 2);
    let z = after.iter().find(|p| p["id"] == "zorg-test").unwrap();
    assert_eq!(z["member"], true);
    assert_eq!(z["oin"], "00000001234567890123");
    assert_eq!(z["certFingerprints"], json!(["ab".repeat(32)]));
    assert_eq!(z["status"], "active");
    assert_eq!(z["roles"], json!(["hulpverlener", "fg"]));
    assert_eq!(
        after.iter().find(|p| p["id"] == "extern-bureau").unwrap()["member"],
        false
    );
    // The running server accepts the new partner's tokens.
    let token = server.issue(&["--partner", "zorg-test", "--role", "fg"]);
    let me: Value = server.get_as("/v1/me", &token).await.json().await.unwrap();
    assert_eq!(
        (me["partner"].as_str(), me["member"].as_bool()),
        (Some("zorg-test"), Some(true))
    );

    // Suspending or activating an unknown partner fails.
    for action in ["suspend", "activate"] {
        failed(&server.cli(&["partner", action, "--id", "nergens"]));
    }
    assert_eq!(server.data().partners(), after);
}

#[tokio::test]
async fn token_issue_signs_only_registered_roles() {
    let server = Server::start(Opts::new()).await;
    for (what, args) in [
        (
            "role of another partner",
            vec!["--partner", "riec", "--role", "rechercheur"],
        ),
        (
            "municipal role for the RIEC",
            vec!["--partner", "riec", "--role", ROLE],
        ),
        (
            "unknown role",
            vec!["--partner", "assen", "--role", "burgemeester"],
        ),
        (
            "unknown partner",
            vec!["--partner", "nergens", "--role", "fg"],
        ),
        (
            "lifetime above the maximum",
            vec!["--partner", "assen", "--role", "fg", "--ttl", "31d"],
        ),
        (
            "lifetime unit",
            vec!["--partner", "assen", "--role", "fg", "--ttl", "1y"],
        ),
        (
            "zero lifetime",
            vec!["--partner", "assen", "--role", "fg", "--ttl", "0s"],
        ),
        (
            "missing certificate",
            vec![
                "--partner",
                "assen",
                "--role",
                "fg",
                "--bind-cert",
                "/nonexistent.pem",
            ],
        ),
    ] {
        let mut a = vec!["token", "issue"];
        a.extend(args);
        let out = server.cli(&a);
        failed(&out);
        assert!(
            out.stdout.is_empty(),
            "{what}: printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let out = server.cli(&[
        "token",
        "issue",
        "--partner",
        "riec",
        "--role",
        "rechercheur",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rechercheur") && stderr.contains("riec"),
        "{stderr}"
    );

    let token = server.issue(&[
        "--partner",
        "riec",
        "--role",
        "analist",
        "--user",
        "a.analist",
        "--ttl",
        "15m",
    ]);
    let claims: Value = serde_json::from_slice(&unb64(token.split('.').nth(1).unwrap())).unwrap();
    assert_eq!(claims["iss"], "ketenpoort");
    assert_eq!(claims["aud"], "ketenpoort");
    assert_eq!(claims["partner"], "riec");
    assert_eq!(claims["role"], "analist");
    assert_eq!(claims["sub"], "a.analist");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );
    assert!(claims.get("cnf").is_none());
    let header: Value = serde_json::from_slice(&unb64(token.split('.').next().unwrap())).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let me: Value = server.get_as("/v1/me", &token).await.json().await.unwrap();
    // The user shows as its keyed reference, not as the `sub` given.
    assert_eq!(me["partner"], "riec");
    let user = me["user"].as_str().unwrap();
    assert!(
        user.starts_with("usr1:") && !user.contains("analist"),
        "{user}"
    );
}

#[tokio::test]
async fn migrate_on_a_fresh_database() {
    let data = DataDir::new().await;
    for _ in 0..2 {
        let out = data.cli_ok(&["migrate"]);
        assert!(out.contains("migrations applied"), "{out}");
    }
    let tables = data.tables().await;
    assert!(
        tables.contains(&"partners".to_owned()) && tables.contains(&"_sqlx_migrations".to_owned()),
        "{tables:?}"
    );
    assert_eq!(data.partners(), Vec::<Value>::new());
    // A server starts on the migrated database and fills in the demo region.
    let server = Server::start_on(data.clone(), Opts::new());
    assert_eq!(server.data().partners().len(), 19);
    assert_eq!(
        data.tables().await,
        tables,
        "serve applied no migration `migrate` had not"
    );
    assert_eq!(
        server
            .get_as("/v1/me", &server.token("assen", ROLE))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn cli_reports_an_unusable_database() {
    let data = DataDir::new().await;
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(args).arg("--data-dir").arg(data.path());
        hermetic(&mut cmd);
        cmd.output().unwrap()
    };
    let out = run(&["partner", "list", "--database-url", "mysql://nowhere/db"]);
    let stderr = failed(&out);
    assert!(stderr.contains("database"), "{stderr}");
    failed(&run(&[
        "migrate",
        "--config",
        "/nonexistent/ketenpoort.toml",
    ]));
}

#[tokio::test]
async fn configuration_file_then_environment() {
    // The file sets the body limit, the environment overrides the leeway.
    let opts = Opts::new()
        .config("[http]\nbody_limit = 600\n")
        .env("KETENPOORT_AUTH__LEEWAY_SECS", 0);
    let server = Server::start(opts).await;
    let token = server.token("assen", ROLE);
    let res = server
        .get("/v1/me")
        .bearer_auth(&token)
        .body(vec![b' '; 500])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = server
        .get("/v1/me")
        .bearer_auth(&token)
        .body(vec![b' '; 700])
        .send()
        .await
        .unwrap();
    problem(res, 413, None).await;
    let mut c = server.claims("assen", ROLE);
    c["exp"] = json!(now() - 5);
    problem(
        server.get_as("/v1/me", &server.sign(&c)).await,
        401,
        Some("token-expired"),
    )
    .await;

    // The environment wins over the file.
    let opts = Opts::new()
        .config("[http]\nbody_limit = 600\n")
        .env("KETENPOORT_HTTP__BODY_LIMIT", 2000);
    let server = Server::start(opts).await;
    let res = server
        .get("/healthz")
        .body(vec![b' '; 1500])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    problem(
        server
            .get("/healthz")
            .body(vec![b' '; 2500])
            .send()
            .await
            .unwrap(),
        413,
        None,
    )
    .await;

    // Unknown keys are refused, in the file and in the environment.
    let bad = server.data().file("bad.toml");
    std::fs::write(&bad, "[http]\nbody_limt = 2048\n").unwrap();
    let stderr = failed(&server.cli(&["migrate", "--config", bad.to_str().unwrap()]));
    assert!(stderr.contains("configuration"), "{stderr}");
    let out = server
        .data()
        .cli_with_env(&["migrate"], &[("KETENPOORT_HTTP__BODY_LIMT", "2048")]);
    failed(&out);
}
