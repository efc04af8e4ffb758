//! `Idempotency-Key` (issue 18): a retried submit or referral with the same
//! key gets the first answer, never a duplicate; the same key for another
//! request is 422; a key whose request failed or timed out without a change
//! can be used again; a holder that died after its change committed is
//! answered 409 naming the entry, never run twice.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Executor, Row};

use crate::client::*;
use crate::common::*;

const REPORTER: &str = "aandachtfunctionaris-sociaal";

/// POST `path` as `role` for `purpose` with `body` and, when given, `key`.
async fn post_with_key(
    role: &Role<'_>,
    path: &str,
    purpose: &str,
    body: &Value,
    key: Option<&str>,
) -> reqwest::Response {
    let rb = role.request(Method::POST, path, purpose).json(body);
    send(match key {
        Some(k) => rb.header("Idempotency-Key", k),
        None => rb,
    })
    .await
}

/// Disclosed entries of `action` in the whole log.
async fn disclosed(server: &Server, action: &str) -> usize {
    Role::of(server, "zvhd", "fg")
        .whole_log()
        .await
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["action"] == action && e["outcome"] == "disclosed")
        .count()
}

async fn signal_count(server: &Server) -> i64 {
    let mut conn = server.data().connect().await;
    conn.fetch_one("SELECT COUNT(*) AS n FROM signals")
        .await
        .expect("counting signals")
        .get::<i64, _>("n")
}

/// The same submit twice with one key: one signal, the same 201 body,
/// `Location` and receipt twice, the second marked as a replay; the key
/// stored only as a keyed hash, its mark set by the entry's transaction.
#[tokio::test]
async fn the_same_submit_twice_with_one_key_is_one_signal() {
    let server = Server::start(Opts::new()).await;
    let reporter = Role::of(&server, "emmen", REPORTER);
    let mut rng = Rng::new(41);
    let body = plain_signal(&mut rng, 2026, 5);
    let key = "\"3f1c0d6e-kp-idem-canary-7731\"";
    let before = signal_count(&server).await;
    let first = post_with_key(&reporter, "/v1/signals", "signalering", &body, Some(key)).await;
    let (loc1, rec1) = (
        header(&first, "location"),
        header(&first, "ketenpoort-receipt"),
    );
    let (index, _) = receipt(&first);
    assert_eq!(header(&first, "idempotent-replayed"), None);
    let first = ok_json(first, 201).await;
    let second = post_with_key(&reporter, "/v1/signals", "signalering", &body, Some(key)).await;
    assert_eq!(
        header(&second, "idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(header(&second, "location"), loc1);
    assert_eq!(header(&second, "ketenpoort-receipt"), rec1);
    let second = ok_json(second, 201).await;
    assert_eq!(first, second, "the replay is the first answer");
    assert_eq!(signal_count(&server).await, before + 1, "one signal");
    assert_eq!(disclosed(&server, "submit").await, 1, "one logged intake");

    // The key is never stored; its row names the entry of the first answer.
    let mut conn = server.data().connect().await;
    let rows = conn
        .fetch_all("SELECT key_ref, log_index, status, body FROM idempotency_keys")
        .await
        .expect("reading idempotency_keys");
    assert_eq!(rows.len(), 1);
    let key_ref: String = rows[0].get("key_ref");
    assert!(!key_ref.contains("canary"), "{key_ref}");
    assert_eq!(rows[0].get::<i64, _>("log_index"), index as i64);
    assert_eq!(rows[0].get::<i32, _>("status"), 201);
    let kept: String = rows[0].get("body");
    assert!(
        !kept.contains(first["id"].as_str().unwrap()),
        "the kept body is sealed"
    );

    // The same key for another body: 422, nothing stored.
    let other = plain_signal(&mut rng, 2026, 6);
    let res = post_with_key(&reporter, "/v1/signals", "signalering", &other, Some(key)).await;
    problem(res, 422, None).await;
    assert_eq!(signal_count(&server).await, before + 1);

    // Keys are per partner: another municipality's same key is its own.
    let assen = Role::of(&server, "assen", REPORTER);
    let res = post_with_key(&assen, "/v1/signals", "signalering", &body, Some(key)).await;
    assert_eq!(header(&res, "idempotent-replayed"), None);
    let theirs = ok_json(res, 201).await;
    assert_ne!(theirs["id"], first["id"]);
    assert_eq!(signal_count(&server).await, before + 2);

    // A malformed key: 400 problem+json, nothing stored.
    for bad in ["\"\"", "\"open", &format!("\"{}\"", "k".repeat(300))] {
        let res = post_with_key(&reporter, "/v1/signals", "signalering", &other, Some(bad)).await;
        let p = problem(res, 400, None).await;
        assert_eq!(p["invalidParams"][0]["name"], "Idempotency-Key", "{p}");
    }
    assert_eq!(signal_count(&server).await, before + 2);
}

/// A referral retried with its key: the first answer again, one referral,
/// one inbox copy; without a key the retry is the usual 409.
#[tokio::test]
async fn a_retried_referral_with_its_key_is_one_referral() {
    let server = Server::start(Opts::new()).await;
    let mut rng = Rng::new(42);
    let (id, _) = Role::of(&server, "emmen", REPORTER)
        .submit(&plain_signal(&mut rng, 2026, 5))
        .await;
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    let path = format!("/v1/signals/{id}/referrals");
    let body = json!({"recipient": "politie", "purpose": "drieluik"});
    let key = Some("referral-retry-1");
    let first = ok_json(
        post_with_key(&regisseur, &path, "drieluik", &body, key).await,
        201,
    )
    .await;
    let again = post_with_key(&regisseur, &path, "drieluik", &body, key).await;
    assert_eq!(
        header(&again, "idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(ok_json(again, 201).await, first);
    assert_eq!(disclosed(&server, "refer").await, 1);
    let res = post_with_key(&regisseur, &path, "drieluik", &body, None).await;
    problem(res, 409, None).await;
}

/// Eight identical submits with one key at once: one signal; every answer
/// is the first 201 (some replayed) or a 409 "in progress", never a 5xx.
#[tokio::test]
async fn concurrent_submits_with_one_key_make_one_signal() {
    let server = Server::start(Opts::new()).await;
    let reporter = Role::of(&server, "emmen", REPORTER);
    let reporter = &reporter;
    let mut rng = Rng::new(43);
    let before = signal_count(&server).await;
    for round in 0..5 {
        let body = plain_signal(&mut rng, 2026, 5);
        let body = &body;
        let key = format!("concurrent-{round}");
        let key = key.as_str();
        let answers: Vec<(u16, Value)> = futures::future::join_all((0..8).map(|_| async move {
            let res = post_with_key(reporter, "/v1/signals", "signalering", body, Some(key)).await;
            let status = res.status().as_u16();
            (status, res.json().await.expect("JSON"))
        }))
        .await;
        let created: Vec<&Value> = answers
            .iter()
            .filter(|a| a.0 == 201)
            .map(|a| &a.1)
            .collect();
        assert!(!created.is_empty(), "{answers:?}");
        assert!(
            created.iter().all(|c| c["id"] == created[0]["id"]),
            "{answers:?}"
        );
        for (status, body) in answers.iter().filter(|a| a.0 != 201) {
            assert_eq!(*status, 409, "{body}");
            assert_eq!(
                body["type"],
                "urn:ketenpoort:problem:idempotency-key-in-use"
            );
        }
    }
    assert_eq!(signal_count(&server).await, before + 5);
    assert_eq!(disclosed(&server, "submit").await, 5);
}

/// A submit that times out while the log is slow gives its key up (or, if
/// its work was taken, answers for real): the retry with the same key then
/// succeeds, and the key stands for exactly one signal either way.
#[tokio::test]
async fn a_retry_after_a_timeout_runs_once() {
    let server = Server::start(
        Opts::new()
            .env("KETENPOORT_HTTP__REQUEST_TIMEOUT_SECS", 1)
            .env("KETENPOORT_HTTP__RATE_LIMIT_PER_SECOND", 100_000)
            .env("KETENPOORT_HTTP__RATE_LIMIT_BURST", 100_000),
    )
    .await;
    let reporter = Role::of(&server, "emmen", REPORTER);
    let mut rng = Rng::new(44);
    let before = signal_count(&server).await;
    let (mut timed_out, mut n) = (0, 0);
    for round in 0..6 {
        let body = plain_signal(&mut rng, 2026, 5);
        let key = format!("after-timeout-{round}");
        let mut holder = server.data().hold_log_lock().await;
        let first = post_with_key(&reporter, "/v1/signals", "signalering", &body, Some(&key)).await;
        let first_status = first.status().as_u16();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        holder
            .execute("ROLLBACK")
            .await
            .expect("releasing the lock");
        if first_status == 503 {
            timed_out += 1;
        } else {
            assert_eq!(first_status, 201);
        }
        // The retry: a real 201 (fresh or replayed), however the first ended.
        let mut retry =
            post_with_key(&reporter, "/v1/signals", "signalering", &body, Some(&key)).await;
        for _ in 0..60 {
            if retry.status() != 409 {
                break;
            }
            // Given up asynchronously after a timeout: a moment later (on
            // a loaded machine, seconds).
            tokio::time::sleep(Duration::from_millis(250)).await;
            retry = post_with_key(&reporter, "/v1/signals", "signalering", &body, Some(&key)).await;
        }
        ok_json(retry, 201).await;
        n += 1;
    }
    println!("{timed_out} of {n} first attempts timed out; every retry answered 201");
    assert!(
        timed_out > 0,
        "no first attempt timed out: the test did not test"
    );
    assert_eq!(signal_count(&server).await, before + n);
    assert_eq!(disclosed(&server, "submit").await, n as usize);
}

/// A holder that died after its change committed, before its answer was
/// kept (made here by clearing the kept answer and ageing the hold): the
/// retry is told the request was carried out, naming its entry, and runs
/// nothing.
#[tokio::test]
async fn a_lost_answer_is_a_409_naming_the_entry_never_a_second_run() {
    let server = Server::start(Opts::new()).await;
    let reporter = Role::of(&server, "emmen", REPORTER);
    let mut rng = Rng::new(45);
    let body = plain_signal(&mut rng, 2026, 5);
    let res = post_with_key(
        &reporter,
        "/v1/signals",
        "signalering",
        &body,
        Some("lost-1"),
    )
    .await;
    let (index, _) = receipt(&res);
    ok_json(res, 201).await;
    let mut conn = server.data().connect().await;
    conn.execute(
        "UPDATE idempotency_keys SET status = NULL, headers = NULL, body = NULL, created_at = created_at - 86000000",
    )
    .await
    .expect("ageing the hold");
    let before = signal_count(&server).await;
    let res = post_with_key(
        &reporter,
        "/v1/signals",
        "signalering",
        &body,
        Some("lost-1"),
    )
    .await;
    let p = problem(res, 409, None).await;
    assert_eq!(p["type"], "urn:ketenpoort:problem:idempotency-answer-lost");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("entry {index}")),
        "{p}"
    );
    assert_eq!(signal_count(&server).await, before);
}
