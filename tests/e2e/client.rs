//! How the tests talk to the server. A [`Role`] is a server and a bearer
//! token (a partner role's demo token, or one the test made); it sends
//! requests that name a purpose in `Ketenpoort-Purpose`:
//!
//! ```text
//! let fg = Role::of(&server, "zvhd", "fg");
//! let res = fg.get("/v1/log/search?partner=zvhd", AUDIT).await;
//! ```
//!
//! On top of it: the covenant's routes (submit, refer, read, also as free
//! functions taking the partner and role for tests that change roles at
//! every step), the log's (entries, checkpoints), bulk seeding for the
//! phenomenon tables, and the readers of answers (JSON bodies, receipts,
//! the log entries of a request, policy refusals). Tests of the HTTP layer
//! itself (missing or forged tokens, odd headers and bodies, client
//! certificates) still build their requests by hand with
//! [`Server::request`], or send a bare token with [`Server::get_as`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::common::*;

/// The header that names the purpose of a request.
const PURPOSE: &str = "ketenpoort-purpose";
/// The purpose of a privacy officer's queries of the log.
pub const AUDIT: &str = "verantwoording";
/// The purpose of the phenomenon tables.
pub const FEN: &str = "fenomeenanalyse";
/// The municipal role that reports signals in bulk.
const REPORTER_ROLE: &str = "aandachtfunctionaris-sociaal";

/// A leaf or tree hash of the log (SHA-256).
pub type Hash = [u8; 32];

// ---------------------------------------------------------------------------
// Requests.

/// A partner role talking to a server with a bearer token.
pub struct Role<'a> {
    server: &'a Server,
    token: String,
}

impl<'a> Role<'a> {
    /// `partner`.`role` with its demo token.
    pub fn of(server: &'a Server, partner: &str, role: &str) -> Self {
        Self::with_token(server, server.token(partner, role))
    }

    /// The server and bearer token this role talks with.
    pub fn server(&self) -> &'a Server {
        self.server
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whoever `token` names (a token the test signed or issued).
    pub fn with_token(server: &'a Server, token: impl Into<String>) -> Self {
        Self {
            server,
            token: token.into(),
        }
    }

    /// A request naming `purpose` in `Ketenpoort-Purpose` (when given).
    pub fn request<'p>(
        &self,
        method: Method,
        path: &str,
        purpose: impl Into<Option<&'p str>>,
    ) -> RequestBuilder {
        let rb = self.server.request(method, path).bearer_auth(&self.token);
        match purpose.into() {
            Some(p) => rb.header(PURPOSE, p),
            None => rb,
        }
    }

    /// Sends a request for `purpose` (when given) with a JSON body (when
    /// given).
    pub async fn call<'p>(
        &self,
        method: Method,
        path: &str,
        purpose: impl Into<Option<&'p str>>,
        body: Option<&Value>,
    ) -> Response {
        let rb = self.request(method, path, purpose);
        match body {
            Some(b) => send(rb.json(b)).await,
            None => send(rb).await,
        }
    }

    pub async fn get<'p>(&self, path: &str, purpose: impl Into<Option<&'p str>>) -> Response {
        self.call(Method::GET, path, purpose, None).await
    }

    pub async fn post<'p>(
        &self,
        path: &str,
        purpose: impl Into<Option<&'p str>>,
        body: &Value,
    ) -> Response {
        self.call(Method::POST, path, purpose, Some(body)).await
    }

    // -- The covenant's routes.

    /// Submits `body`; returns (signal id, receipt).
    pub async fn submit(&self, body: &Value) -> (String, (u64, Hash)) {
        let res = self.post("/v1/signals", "signalering", body).await;
        let r = receipt(&res);
        let created = ok_json(res, 201).await;
        (created["id"].as_str().expect("id").to_owned(), r)
    }

    /// Refers signal `id` to `recipient` for `purpose`.
    pub async fn refer(&self, id: &str, recipient: &str, purpose: &str) -> Response {
        let body = json!({"recipient": recipient, "purpose": purpose});
        self.post(&format!("/v1/signals/{id}/referrals"), purpose, &body)
            .await
    }

    /// `GET /v1/signals/{id}` for `purpose`.
    pub async fn read(&self, id: &str, purpose: &str) -> Response {
        self.get(&format!("/v1/signals/{id}"), purpose).await
    }

    /// `PATCH /v1/signals/{id}` with a JSON Merge Patch for `purpose`
    /// (`drieluik`: an assessment; `signalering`: a correction), with
    /// `If-Match` when given.
    pub async fn change(
        &self,
        id: &str,
        purpose: &str,
        patch: &Value,
        if_match: Option<&str>,
    ) -> Response {
        let mut rb = self
            .request(Method::PATCH, &format!("/v1/signals/{id}"), purpose)
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string());
        if let Some(tag) = if_match {
            rb = rb.header("if-match", tag);
        }
        send(rb).await
    }

    /// `POST /v1/signals/{id}/transitions` (purpose `drieluik`).
    pub async fn transition(&self, id: &str, to: &str, reason: Option<&str>) -> Response {
        let mut body = json!({"to": to});
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        self.post(&format!("/v1/signals/{id}/transitions"), "drieluik", &body)
            .await
    }

    /// `GET /v1/signals/{id}/feedback` for `purpose`.
    pub async fn status_feedback(&self, id: &str, purpose: &str) -> Response {
        self.get(&format!("/v1/signals/{id}/feedback"), purpose)
            .await
    }

    /// `POST /v1/signals/{id}/feedback`: a recipient reports `status` on
    /// its referral for `purpose`.
    pub async fn report_back(&self, id: &str, purpose: &str, status: &str) -> Response {
        self.post(
            &format!("/v1/signals/{id}/feedback"),
            purpose,
            &json!({"status": status}),
        )
        .await
    }

    // -- The log.

    /// Appends exactly one entry (an audit query: a privacy officer's
    /// search); returns its index.
    pub async fn append_one(&self) -> u64 {
        let res = self.get("/v1/log/search?partner=zvhd&limit=1", AUDIT).await;
        assert_eq!(res.status(), 200);
        receipt(&res).0
    }

    /// Entries `[start, end)` as this role sees them; each page read
    /// appends an entry after `end`.
    pub async fn entries(&self, start: u64, end: u64) -> Vec<Value> {
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let to = (at + 1000).min(end);
            let res = self
                .get(&format!("/v1/log/entries?start={at}&end={to}"), AUDIT)
                .await;
            let page = ok_json(res, 200).await;
            out.extend(page["entries"].as_array().expect("entries").iter().cloned());
            at = to;
        }
        assert_eq!(out.len() as u64, end - start);
        out
    }

    /// The whole log up to now (reading it appends one more entry).
    pub async fn whole_log(&self) -> Vec<Value> {
        let size = self.append_one().await + 1;
        self.entries(0, size).await
    }

    /// `POST /v1/log/checkpoint`: a signed note of the log as it is now.
    pub async fn sign_checkpoint(&self) -> String {
        let res = send(self.request(Method::POST, "/v1/log/checkpoint", None)).await;
        assert_eq!(res.status(), 200);
        res.text().await.expect("note")
    }

    pub async fn verifier_key(&self) -> String {
        let res = self.get("/v1/log/verifier-key", None).await;
        assert_eq!(res.status(), 200);
        res.text().await.expect("key").trim().to_owned()
    }
}

/// Requests with a bare token and no purpose, for the tests of
/// authentication, which make a token for each request.
impl Server {
    /// GET with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> Response {
        Role::with_token(self, token).get(path, None).await
    }
}

/// Sends a request built by hand (a transport error fails the test).
pub async fn send(rb: RequestBuilder) -> Response {
    rb.send().await.expect("request")
}

// One request as a demo role, for tests that change roles at every step.

/// Submits a signal as `partner`.`role` and checks that it went to the ZVHD;
/// returns its id. ([`Role::submit`] returns the receipt instead.)
pub async fn submit(server: &Server, partner: &str, role: &str, body: &Value) -> String {
    let res = Role::of(server, partner, role)
        .post("/v1/signals", "signalering", body)
        .await;
    let created = ok_json(res, 201).await;
    assert_eq!(created["recipient"], "zvhd");
    created["id"].as_str().expect("signal id").to_owned()
}

/// Refers signal `id` as `by` (a ZVHD role) to `recipient` for `purpose`.
pub async fn refer(
    server: &Server,
    by: &str,
    id: &str,
    recipient: &str,
    purpose: &str,
) -> Response {
    Role::of(server, "zvhd", by)
        .refer(id, recipient, purpose)
        .await
}

/// `GET /v1/signals/{id}` as `partner`.`role` for `purpose`.
pub async fn read(server: &Server, partner: &str, role: &str, id: &str, purpose: &str) -> Response {
    Role::of(server, partner, role).read(id, purpose).await
}

// ---------------------------------------------------------------------------
// Answers.

/// Asserts `status`; returns the body as JSON (panics with the body
/// otherwise).
pub async fn ok_json(res: Response, status: u16) -> Value {
    let got = res.status();
    let text = res.text().await.expect("body");
    assert_eq!(got.as_u16(), status, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `Ketenpoort-Receipt: index=<n>, leaf-hash=:<base64>:`, parsed strictly.
pub fn receipt(res: &Response) -> (u64, Hash) {
    let v = header(res, "ketenpoort-receipt")
        .unwrap_or_else(|| panic!("a {} response without Ketenpoort-Receipt", res.status()));
    let parsed = v.split_once(", ").and_then(|(index, hash)| {
        let index = index.strip_prefix("index=")?.parse().ok()?;
        let hash = hash.strip_prefix("leaf-hash=:")?.strip_suffix(':')?;
        Some((index, STANDARD.decode(hash).ok()?.try_into().ok()?))
    });
    parsed.unwrap_or_else(|| panic!("malformed receipt {v}"))
}

pub fn request_id(res: &Response) -> String {
    header(res, "x-request-id").expect("x-request-id")
}

/// The strings of a JSON array (none if it is not one).
pub fn strings(v: &Value) -> impl Iterator<Item = String> + '_ {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
}

/// Every log entry so far, by request id (through the ZVHD FG's search).
pub async fn log_by_request(server: &Server) -> BTreeMap<String, Vec<Value>> {
    let fg = Role::of(server, "zvhd", "fg");
    let today = time::OffsetDateTime::now_utc().date();
    let (from, to) = (
        today.previous_day().unwrap(),
        today.next_day().unwrap().next_day().unwrap(),
    );
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut after: Option<u64> = None;
    loop {
        let mut path = format!("/v1/log/search?from={from}&to={to}&limit=500");
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let page = ok_json(fg.get(&path, AUDIT).await, 200).await;
        for e in page["entries"].as_array().expect("entries") {
            let entry = e["entry"].clone();
            let rid = entry["requestId"].as_str().expect("requestId").to_owned();
            out.entry(rid).or_default().push(entry);
        }
        match page["nextAfter"].as_u64() {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

/// The one log entry of the request that got `res`.
pub async fn entry_of(server: &Server, request_id: &str) -> Value {
    let mut all = log_by_request(server).await;
    let entries = all.remove(request_id).unwrap_or_default();
    assert_eq!(
        entries.len(),
        1,
        "log entries of request {request_id}: {entries:?}"
    );
    entries.into_iter().next().unwrap()
}

/// A policy refusal: 403 with `code`, and exactly one `denied` log entry
/// for this request, with action `action`, the code among its reasons and
/// no fields.
pub async fn refused(server: &Server, res: Response, code: &str, action: &str) -> Value {
    refused_with(server, res, 403, code, action).await
}

/// [`refused`] answered with `status`.
pub async fn refused_with(
    server: &Server,
    res: Response,
    status: u16,
    code: &str,
    action: &str,
) -> Value {
    let rid = request_id(&res);
    problem(res, status, Some(code)).await;
    let e = entry_of(server, &rid).await;
    assert_eq!(e["outcome"], "denied", "{e}");
    assert_eq!(e["action"], action, "{e}");
    assert!(
        strings(&e["decision"]["reasons"]).any(|r| r == code),
        "{code} not among the logged reasons: {e}"
    );
    assert_eq!(e["fields"], json!([]), "{e}");
    e
}

// ---------------------------------------------------------------------------
// Phenomenon tables.

/// Submits every body (sixteen at a time, reported by the municipalities in
/// turn); returns the signal ids in order.
pub async fn submit_all(server: &Server, bodies: &[Value]) -> Vec<String> {
    let reporters: Vec<Role> = MUNICIPALITIES
        .iter()
        .map(|m| Role::of(server, m, REPORTER_ROLE))
        .collect();
    futures::stream::iter(bodies.iter().enumerate())
        .map(|(i, body)| {
            let reporter = &reporters[i % reporters.len()];
            async move {
                let res = reporter.post("/v1/signals", "signalering", body).await;
                let status = res.status();
                let v: Value = res.json().await.expect("submit answer");
                assert_eq!(status, 201, "submit: {v}");
                v["id"].as_str().expect("signal id").to_owned()
            }
        })
        .buffered(16)
        .collect()
        .await
}

/// Refers every signal to `recipient` for `purpose` as the ketenregisseur;
/// returns the referral answers in order.
pub async fn refer_all(
    server: &Server,
    ids: &[String],
    recipient: &str,
    purpose: &str,
) -> Vec<Value> {
    let regisseur = Role::of(server, "zvhd", "ketenregisseur");
    let regisseur = &regisseur;
    futures::stream::iter(ids.iter())
        .map(|id| async move {
            let res = regisseur.refer(id, recipient, purpose).await;
            let status = res.status();
            let v: Value = res.json().await.expect("referral answer");
            assert_eq!(status, 201, "referral: {v}");
            v
        })
        .buffered(16)
        .collect()
        .await
}

/// Release `id` as `role` reads it: a logged read holding only closed
/// periods.
pub async fn fetch_release(role: &Role<'_>, id: &str) -> Value {
    let res = role.get(&format!("/v1/phenomena/releases/{id}"), FEN).await;
    assert_eq!(res.status(), 200, "release {id}");
    // A release read is logged; the receipt goes to members only (its
    // index would tell a non-member the log's size).
    assert_eq!(
        header(&res, "ketenpoort-receipt").is_some(),
        token_partner(role.token()) != "riec",
        "a release read is logged, with a receipt for a member"
    );
    let release: Value = res.json().await.unwrap();
    assert_only_closed_periods(&release);
    release
}

/// No cell, no trend point of a release is of a period still open at its
/// moment: every one ended by the end of the release period, which ended
/// before the release was made.
fn assert_only_closed_periods(release: &Value) {
    let id = release["id"].as_str().unwrap();
    let made = release["createdAt"].as_str().unwrap();
    let made = (made[..4].parse().unwrap(), made[5..7].parse().unwrap());
    assert!(end_of(id) < made, "release {id} made at {made:?}");
    let cells = release["tables"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["cells"].as_array().unwrap());
    let points = release["trends"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["points"].as_array().unwrap());
    for c in cells.chain(points) {
        let period = c["period"].as_str().unwrap();
        assert!(
            end_of(period) <= end_of(id),
            "release {id} holds {period}, still open at its end"
        );
    }
}

// ---------------------------------------------------------------------------
// The log as a partner outside the covenant sees it: published checkpoints.

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
/// `log.publish_interval_secs`, as `side_channels::short_publication` sets).
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

/// The partner a token was issued to (its `partner` claim).
fn token_partner(token: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(&unb64(payload)).expect("JWT claims");
    claims["partner"]
        .as_str()
        .expect("a partner claim")
        .to_owned()
}
