//! Invariant 7 from the outside: no personal value is ever in the database
//! in plaintext, and retention destroys a signal's data key, so a copy of
//! the record tables taken before the purge cannot be decrypted afterwards,
//! not even with the key-encryption key.

use std::collections::BTreeMap;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde_json::{Value, json};
use sqlx::Row;

use super::client::*;
use super::common::*;

#[tokio::test]
async fn no_personal_value_is_stored_in_plaintext() {
    let server = Server::start(Opts::new()).await;
    let mut markers = Vec::new();
    let mut ids = Vec::new();
    for (municipality, forms, minor) in
        [("emmen", ["arbeid"], false), ("assen", ["seksueel"], true)]
    {
        let (body, m) = full_signal(municipality, &forms, minor, false);
        markers.extend(m);
        let id = submit(&server, municipality, "aandachtfunctionaris-sociaal", &body).await;
        // Inbox copies, and reads that write log entries about the signal.
        for (by, recipient, purpose) in [
            ("ketenregisseur", "politie", "drieluik"),
            ("zorgcoordinator", "fier", "zorgcoordinatie"),
            ("zorgcoordinator", "veilig-thuis", "zorgcoordinatie"),
        ] {
            let status = refer(&server, by, &id, recipient, purpose).await.status();
            assert!(
                status == 201 || (recipient == "veilig-thuis" && !minor),
                "{status}"
            );
        }
        ok_json(
            read(&server, "politie", "rechercheur", &id, "drieluik").await,
            200,
        )
        .await;
        ids.push(id);
    }
    // The privacy officer's subject lookup sends a BSN in a body; it must
    // not land anywhere either.
    let bsn = markers
        .iter()
        .find(|m| m.len() == 9 && m.bytes().all(|b| b.is_ascii_digit()))
        .unwrap()
        .clone();
    let res = Role::of(&server, "zvhd", "fg")
        .post("/v1/log/subjects", AUDIT, &json!({"bsn": bsn}))
        .await;
    assert!(
        !ok_json(res, 200).await["entries"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let raw = raw_database(server.data()).await;
    // The scan sees the real database: the plaintext columns are there.
    for id in &ids {
        assert!(
            contains(&raw, id.as_bytes()),
            "signal id {id} not in the dump"
        );
    }
    assert!(contains(&raw, b"aandachtfunctionaris-sociaal"));
    for m in &markers {
        assert!(
            !contains(&raw, m.as_bytes()),
            "{m} is in the database in plaintext"
        );
        assert!(
            !contains(&raw, hex::encode(m).as_bytes()),
            "{m} is in the database as hex"
        );
    }
}

/// AES-256-GCM `nonce || ciphertext || tag`, bound to `aad` (the format of
/// ketenpoort's envelope encryption, src/crypto/envelope.rs).
fn open(key: &[u8], aad: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let (nonce, ct) = sealed.split_at_checked(NONCE_LEN)?;
    let mut buf = ct.to_vec();
    let plain = key
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).ok()?,
            Aad::from(aad.as_bytes()),
            &mut buf,
        )
        .ok()?;
    Some(plain.to_vec())
}

/// The record tables, as a backup would hold them: (table, row id, signal
/// id, sealed body or nothing).
async fn copy_record_tables(db: &sqlx::AnyPool) -> Vec<(String, String, String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for (table, id_col, signal_col, body) in [
        ("signals", "id", "id", true),
        ("referrals", "id", "signal_id", false),
        ("inbox", "id", "signal_id", true),
    ] {
        let cols = if body { ", body" } else { "" };
        let sql = format!("SELECT {id_col} AS rid, {signal_col} AS sid{cols} FROM {table}");
        for r in sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(db)
            .await
            .unwrap()
        {
            let sealed: Option<Vec<u8>> = if body { Some(r.get("body")) } else { None };
            out.push((table.to_owned(), r.get("rid"), r.get("sid"), sealed));
        }
    }
    out
}

/// Every wrapped data key in the database, by signal id.
async fn wrapped_keys(db: &sqlx::AnyPool) -> BTreeMap<String, Vec<u8>> {
    sqlx::query("SELECT signal_id, wrapped FROM signal_keys")
        .fetch_all(db)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("signal_id"), r.get("wrapped")))
        .collect()
}

/// What an attacker with the copy, the KEK and the live database can read:
/// every copied body that some wrapped key in the database opens.
fn decrypt_copy(
    copy: &[(String, String, String, Option<Vec<u8>>)],
    kek: &[u8],
    keys: &BTreeMap<String, Vec<u8>>,
) -> Vec<(String, Value)> {
    let mut opened = Vec::new();
    for (table, row, signal, sealed) in copy {
        let Some(sealed) = sealed else { continue };
        // The KEK itself is no data key...
        assert!(open(kek, row, sealed).is_none());
        // ...and a data key opens only when unwrapped for its own signal.
        for (key_signal, wrapped) in keys {
            let Some(data_key) = open(kek, key_signal, wrapped) else {
                continue;
            };
            if let Some(plain) = open(&data_key, row, sealed) {
                assert_eq!(
                    key_signal, signal,
                    "{table} {row} opened with another signal's key"
                );
                opened.push((table.clone(), serde_json::from_slice(&plain).expect("JSON")));
            }
        }
    }
    opened
}

#[tokio::test]
async fn after_retention_a_copy_of_the_records_cannot_be_decrypted() {
    let server = Server::start(Opts::new()).await;
    let data = server.data().clone();
    let (body, markers) = full_signal("emmen", &["arbeid"], false, false);
    let id = submit(&server, "emmen", "aandachtfunctionaris-sociaal", &body).await;
    for (by, recipient, purpose) in [
        ("ketenregisseur", "nla", "opsporing"),
        ("zorgcoordinator", "fier", "zorgcoordinatie"),
    ] {
        assert_eq!(
            refer(&server, by, &id, recipient, purpose).await.status(),
            201
        );
    }
    ok_json(
        read(&server, "nla", "inspecteur", &id, "opsporing").await,
        200,
    )
    .await;
    let db = pool(&data).await;
    let kek = hex::decode(
        std::fs::read_to_string(data.file("keys/kek-1.key"))
            .expect("the KEK file")
            .trim(),
    )
    .expect("hex KEK");
    assert_eq!(kek.len(), 32);

    // A backup of the record tables, taken before the purge.
    let copy = copy_record_tables(&db).await;
    assert_eq!(
        copy.iter()
            .filter(|c| c.2 == id)
            .map(|c| c.0.as_str())
            .collect::<Vec<_>>(),
        ["signals", "referrals", "referrals", "inbox", "inbox"]
    );
    // Before the purge the procedure works: the KEK unwraps the signal's
    // data key, which opens the record and both inbox copies.
    let opened = decrypt_copy(&copy, &kek, &wrapped_keys(&db).await);
    assert_eq!(opened.len(), 3, "record and two inbox copies");
    let record = &opened.iter().find(|(t, _)| t == "signals").unwrap().1;
    assert_eq!(record["victims"][0]["name"], body["victims"][0]["name"]);
    let text = serde_json::to_string(&opened).unwrap();
    assert!(markers.iter().any(|m| text.contains(m.as_str())));
    let before = log_by_request(&server).await;
    let about = |log: &BTreeMap<String, Vec<Value>>| -> usize {
        log.values()
            .flatten()
            .filter(|e| {
                e["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == &json!(format!("signal:{id}")))
            })
            .count()
    };
    let entries_about = about(&before);
    assert!(
        entries_about >= 4,
        "submit, two referrals, a read: {entries_about}"
    );

    // The wrapped key as the raw database shows it (PostgreSQL: bytea as hex).
    let wrapped = wrapped_keys(&db).await[&id].clone();
    let wrapped = if data.is_postgres() {
        hex::encode(&wrapped).into_bytes()
    } else {
        wrapped
    };
    assert!(contains(&raw_database(&data).await, &wrapped));
    // This test's own connection would hold a read snapshot, which keeps
    // SQLite from truncating its WAL: close it during the purge.
    db.close().await;

    // Retention: everything older than 0 days goes.
    let out = data.cli_with_env(
        &["retention", "run"],
        &[("KETENPOORT_RETENTION__SIGNAL_DAYS", "0")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("purged 1 signals"));

    // The rows and the wrapped key are gone, also from the files (SQLite:
    // the database and its WAL)...
    assert!(!contains(&raw_database(&data).await, &wrapped));
    let db = pool(&data).await;
    assert!(copy_record_tables(&db).await.is_empty());
    assert!(wrapped_keys(&db).await.is_empty());
    assert_eq!(
        read(&server, "zvhd", "ketenregisseur", &id, "drieluik")
            .await
            .status(),
        404
    );
    // ...so the same procedure on the copy opens nothing, even with the KEK
    // and with every data key the database holds now.
    let (other, _) = full_signal("assen", &["arbeid"], false, false);
    submit(&server, "assen", "aandachtfunctionaris-sociaal", &other).await;
    let keys_now = wrapped_keys(&db).await;
    assert_eq!(keys_now.len(), 1);
    assert!(decrypt_copy(&copy, &kek, &keys_now).is_empty());

    // The log keeps its entries about the purged signal, and verifies.
    assert_eq!(about(&log_by_request(&server).await), entries_about);
    let verify = data.cli(&["log", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Every data key's KEK id, by signal.
async fn kek_ids(db: &sqlx::AnyPool) -> BTreeMap<String, String> {
    sqlx::query("SELECT signal_id, kek_id FROM signal_keys")
        .fetch_all(db)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("signal_id"), r.get("kek_id")))
        .collect()
}

/// The key-encryption key from the environment (`KETENPOORT_KEK_<n>`, the
/// alternative to `keys/kek-<n>.key`), and its rotation there: nothing of
/// it is written to `keys/`, the records open with it, and a new variable
/// plus `keys rewrap` move every data key to the new KEK, after which the
/// old variable is no longer needed.
#[tokio::test]
async fn the_kek_can_come_from_the_environment_and_rotate_there() {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let kek = || {
        let mut k = [0u8; 32];
        ring::rand::SystemRandom::new().fill(&mut k).unwrap();
        (k, base64::engine::general_purpose::STANDARD.encode(k))
    };
    let ((_, kek1), (kek2, kek2_b64)) = (kek(), kek());
    let data = DataDir::new().await;
    let server = Server::start_on(data.clone(), Opts::new().env("KETENPOORT_KEK_1", &kek1));
    let (body, _) = full_signal("emmen", &["arbeid"], false, false);
    let id = submit(&server, "emmen", "aandachtfunctionaris-sociaal", &body).await;
    let record = ok_json(
        read(&server, "zvhd", "ketenregisseur", &id, "drieluik").await,
        200,
    )
    .await;
    assert_eq!(record["victims"][0]["name"], body["victims"][0]["name"]);
    let kek_files = || -> Vec<String> {
        std::fs::read_dir(data.file("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("kek-"))
            .collect()
    };
    assert_eq!(
        kek_files(),
        Vec::<String>::new(),
        "a KEK file next to the variable"
    );
    let db = pool(&data).await;
    assert_eq!(kek_ids(&db).await[&id], "kek-1");
    drop(server);

    // Rotation: `rotate-kek` would write a file; with KEKs in the
    // environment it refuses and says what to do instead.
    let out = data.cli_with_env(&["keys", "rotate-kek"], &[("KETENPOORT_KEK_1", &kek1)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("KETENPOORT_KEK_2") && stderr.contains("keys rewrap"),
        "{stderr}"
    );
    assert!(!stderr.contains(&kek1), "the key in an error");
    let out = data.cli_with_env(
        &["keys", "rewrap"],
        &[("KETENPOORT_KEK_1", &kek1), ("KETENPOORT_KEK_2", &kek2_b64)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("kek-2 is the key-encryption key; 1 data keys re-wrapped"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(kek_ids(&db).await[&id], "kek-2");
    // The new KEK itself unwraps the data key, which opens the record.
    let wrapped = &wrapped_keys(&db).await[&id];
    assert!(open(&kek2, &id, wrapped).is_some());
    assert_eq!(kek_files(), Vec::<String>::new());

    // Without the old variable, the record still opens.
    let server = Server::start_on(data.clone(), Opts::new().env("KETENPOORT_KEK_2", &kek2_b64));
    let again = ok_json(
        read(&server, "zvhd", "ketenregisseur", &id, "drieluik").await,
        200,
    )
    .await;
    assert_eq!(again["victims"], record["victims"]);
}
