//! Side channels across the RIEC boundary (issue 13), from outside.
//!
//! - The log's growth: a partner outside the covenant cannot have a
//!   checkpoint signed, and sees the log's size change only at a publication
//!   (`log.publish_interval_secs`); no proof, range or receipt tells it the
//!   size in between. Members keep the log as it is now.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::*;

const PURPOSE: &str = "ketenpoort-purpose";
const FEN: &str = "fenomeenanalyse";
const AUDIT: &str = "verantwoording";

/// Milliseconds since the Unix epoch (the server's boundaries are multiples
/// of the interval since then; server and test share the clock).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// The size in a checkpoint note (its second line).
fn note_size(note: &str) -> u64 {
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("not a checkpoint note: {note}"))
}

/// `GET /v1/log/checkpoint` as `token` sees it: the size.
pub async fn checkpoint_size(server: &Server, token: &str) -> u64 {
    let res = server
        .get("/v1/log/checkpoint")
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200, "GET /v1/log/checkpoint");
    note_size(&res.text().await.unwrap())
}

/// A checkpoint signed now by a covenant member (the ZVHD privacy officer):
/// its size, the log's current size.
pub async fn sign_as_member(server: &Server) -> u64 {
    let res = server
        .post("/v1/log/checkpoint")
        .bearer_auth(server.token("zvhd", "fg"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200, "a member signs a checkpoint");
    note_size(&res.text().await.unwrap())
}

/// The log's size as a partner outside the covenant sees it, once that
/// covers every entry written so far: a member signs a checkpoint, then
/// this waits for its publication (the server needs a short
/// `log.publish_interval_secs`, as [`short_publication`] sets).
pub async fn published_size(server: &Server, non_member: &str) -> u64 {
    let signed = sign_as_member(server).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size = checkpoint_size(server, non_member).await;
        if size >= signed {
            return size;
        }
        assert!(
            Instant::now() < deadline,
            "the checkpoint of size {signed} was not published within 20 s (the non-member still sees \
             {size}): does the server run with a short log.publish_interval_secs?"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publication every `secs` seconds; no rate limit in the way; checkpoints
/// signed only on a member's request, so the test knows which exist.
pub fn short_publication(secs: u64) -> Opts {
    Opts::new()
        .env("KETENPOORT_LOG__PUBLISH_INTERVAL_SECS", secs)
        .env("KETENPOORT_LOG__CHECKPOINT_INTERVAL_SECS", 86_400)
        .env("KETENPOORT_HTTP__RATE_LIMIT_PER_SECOND", 100_000)
        .env("KETENPOORT_HTTP__RATE_LIMIT_BURST", 100_000)
}

/// One logged exchange of a member: a privacy officer's search (an entry).
async fn member_exchange(server: &Server) {
    let res = server
        .get("/v1/log/search?partner=zvhd&limit=1")
        .bearer_auth(server.token("zvhd", "fg"))
        .header(PURPOSE, AUDIT)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_non_member_cannot_sign_a_checkpoint_and_sees_the_size_change_only_at_publication() {
    const INTERVAL_MS: u64 = 2_000;
    let server = Server::start(short_publication(INTERVAL_MS / 1000)).await;
    let riec = server.token("riec", "analist");
    let fg = server.token("zvhd", "fg");

    // On demand: refused before any handler, as every record route is, and
    // logged as such.
    for role in ["analist", "fg"] {
        let res = server
            .post("/v1/log/checkpoint")
            .bearer_auth(server.token("riec", role))
            .send()
            .await
            .unwrap();
        assert!(header(&res, "ketenpoort-receipt").is_none());
        problem(res, 403, Some("non-member-record-route")).await;
    }
    let res = server
        .get("/v1/log/search?action=deny&partner=riec")
        .bearer_auth(&fg)
        .header(PURPOSE, AUDIT)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let found: Value = res.json().await.unwrap();
    let routes: Vec<&Value> = found["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"]["resources"])
        .collect();
    assert_eq!(routes.len(), 2, "both refusals are logged: {found}");
    for r in routes {
        assert_eq!(r, &serde_json::json!(["route:/v1/log/checkpoint"]));
    }

    // Watch: members exchange and sign checkpoints all the time; the RIEC
    // polls. Every change it sees spans a boundary (a multiple of the
    // interval since the epoch), and between two boundaries it sees one
    // size, however much the log grows.
    let mut seen: Vec<(u64, u64, u64)> = Vec::new(); // (sent, answered, size)
    let mut ahead = false;
    let until = now_ms() + 3 * INTERVAL_MS + 500;
    let mut tick = 0u64;
    while now_ms() < until {
        tick += 1;
        if tick.is_multiple_of(3) {
            member_exchange(&server).await;
            let current = sign_as_member(&server).await;
            ahead |= seen.last().is_some_and(|s| current > s.2);
        }
        let sent = now_ms();
        let size = checkpoint_size(&server, &riec).await;
        seen.push((sent, now_ms(), size));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut changes = 0;
    for w in seen.windows(2) {
        let ((before, _, old), (_, after, new)) = (w[0], w[1]);
        assert!(new >= old, "the published size never shrinks: {seen:?}");
        if new != old {
            changes += 1;
            assert!(
                before / INTERVAL_MS < after / INTERVAL_MS,
                "the RIEC saw the size move from {old} to {new} between {before} and {after} ms, \
                 with no publication in between: {seen:?}"
            );
        }
    }
    assert!(
        ahead,
        "the log grew past what the RIEC saw (the test proves nothing otherwise): {seen:?}"
    );
    assert!(
        changes >= 2,
        "the size the RIEC sees moves at the publications: {seen:?}"
    );
    // A member sees the current size, the RIEC the published one.
    member_exchange(&server).await;
    let current = sign_as_member(&server).await;
    assert_eq!(checkpoint_size(&server, &fg).await, current);
}

/// What a non-member may ask of the log is bounded by the published
/// checkpoint: proofs, ranges and the size in a range's answer; and no
/// answer to it carries a receipt (its index is the log's size).
#[tokio::test]
async fn proofs_ranges_and_receipts_tell_a_non_member_nothing_beyond_the_publication() {
    const INTERVAL_MS: u64 = 3_000;
    let server = Server::start(short_publication(INTERVAL_MS / 1000)).await;
    let riec = server.token("riec", "analist");
    let fg = server.token("zvhd", "fg");
    // Some entries, published.
    for _ in 0..3 {
        member_exchange(&server).await;
    }
    published_size(&server, &riec).await;
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(attempts <= 6, "never had a whole interval to check in");
        // Right after a boundary: the log grows past the publication and
        // stays ahead of it until the next one.
        let into = now_ms() % INTERVAL_MS;
        if into > 200 {
            tokio::time::sleep(Duration::from_millis(INTERVAL_MS - into + 50)).await;
        }
        let interval = now_ms() / INTERVAL_MS;
        let published = checkpoint_size(&server, &riec).await;
        member_exchange(&server).await;
        member_exchange(&server).await;
        let current = sign_as_member(&server).await;
        assert!(current > published + 1);

        let get = |path: String, token: &str, purpose: Option<&str>| {
            let mut rb = server.get(&path).bearer_auth(token);
            if let Some(p) = purpose {
                rb = rb.header(PURPOSE, p);
            }
            rb.send()
        };
        // Within the publication: answered; the range's size is the
        // published one.
        let res = get(
            format!("/v1/log/entries?start=0&end={published}"),
            &riec,
            Some(AUDIT),
        )
        .await
        .unwrap();
        assert!(
            header(&res, "ketenpoort-receipt").is_none(),
            "no receipt to the RIEC"
        );
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["treeSize"], published, "{page}");
        let ok = [
            format!(
                "/v1/log/proofs/inclusion?index={}&treeSize={published}",
                published - 1
            ),
            format!("/v1/log/proofs/consistency?from=1&to={published}"),
        ];
        for path in &ok {
            let res = get(path.clone(), &riec, None).await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
        }
        // Beyond it: refused exactly as beyond the end of the log, and the
        // refusal names no size but the published one.
        let beyond = [
            (
                format!("/v1/log/entries?start=0&end={}", published + 1),
                Some(AUDIT),
                400,
            ),
            (
                format!(
                    "/v1/log/proofs/inclusion?index=0&treeSize={}",
                    published + 1
                ),
                None,
                400,
            ),
            (
                format!(
                    "/v1/log/proofs/inclusion?index={published}&treeSize={}",
                    published + 1
                ),
                None,
                404,
            ),
            (
                format!("/v1/log/proofs/consistency?from=1&to={}", published + 1),
                None,
                400,
            ),
        ];
        for (path, purpose, status) in &beyond {
            let res = get(path.clone(), &riec, *purpose).await.unwrap();
            assert!(header(&res, "ketenpoort-receipt").is_none());
            let p = problem(res, *status, None).await;
            let text = p.to_string();
            for n in [current, current - 1] {
                assert!(
                    !text.contains(&format!("({n})")),
                    "{path}: the current size in {text}"
                );
            }
            // The same for a member is answered: the log is that long.
            let res = get(path.clone(), &fg, *purpose).await.unwrap();
            assert_eq!(res.status(), 200, "{path} for a member");
        }
        // A release read: logged, but the receipt goes to members only.
        let res = get("/v1/phenomena/releases".into(), &riec, Some(FEN))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        if let Some(id) = page["items"][0]["id"].as_str() {
            let path = format!("/v1/phenomena/releases/{id}");
            let res = get(path.clone(), &riec, Some(FEN)).await.unwrap();
            assert_eq!(res.status(), 200);
            assert!(header(&res, "ketenpoort-receipt").is_none(), "{path}");
            let res = get(path.clone(), &fg, Some(FEN)).await.unwrap();
            assert_eq!(res.status(), 200);
            assert!(header(&res, "ketenpoort-receipt").is_some(), "{path}");
        }
        if now_ms() / INTERVAL_MS == interval {
            break;
        }
        // A publication came in between: the checks above may have seen
        // it; try again in a fresh interval.
    }
}

