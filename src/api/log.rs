//! The disclosure log over HTTP. Checkpoints, the verifier key and proofs
//! are hashes: any partner may fetch them. Entries are personal data (they
//! hold pseudonyms): which ones a caller sees is the audit policy's scope, and
//! every read of entries is itself logged.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::exchange::{Exchange, Purpose, with_receipt};
use super::extract::{self, Query};
use super::middleware::RequestContext;
use super::problem::{FieldError, Problem};
use super::publication;
use crate::auth::Principal;
use crate::crypto::SubjectId;
use crate::ledger::{Entry, LogAction};
use crate::policy::Action;
use crate::policy::model::{AuditInput, AuditQuery, Scope};
use crate::store::ledger::{Search, StoredEntry, Visibility};

const MAX_RANGE: u64 = 1000;
const MAX_PAGE: u32 = 500;

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The newest signed checkpoint (C2SP tlog-checkpoint in a signed note); to
/// a partner outside the covenant, the newest published one (signed by the
/// last multiple of `log.publish_interval_secs`).
#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "log", security(("bearer" = [])),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 401, body = Problem)))]
pub async fn checkpoint(
    State(s): State<AppState>,
    principal: Principal,
) -> Result<Response, Problem> {
    let cp = publication::checkpoint(&s, &principal).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        cp.note,
    )
        .into_response())
}

/// Signs a checkpoint for the current tree now (if it grew) and returns it.
/// Covenant members only: partners outside it see published checkpoints.
#[utoipa::path(post, path = "/v1/log/checkpoint", tag = "log", security(("bearer" = [])),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn sign_checkpoint(State(s): State<AppState>) -> Result<Response, Problem> {
    let cp = s.ledger.checkpoint().await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        cp.note,
    )
        .into_response())
}

/// The signed-note verifier key of the log: `<name>+<key id>+<base64 key>`.
#[utoipa::path(get, path = "/v1/log/verifier-key", tag = "log", security(("bearer" = [])),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 401, body = Problem)))]
pub async fn verifier_key(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", s.ledger.verifier_key()),
    )
        .into_response()
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InclusionParams {
    index: u64,
    tree_size: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    index: u64,
    tree_size: u64,
    /// base64 RFC 6962 leaf hash of the entry.
    leaf_hash: String,
    /// base64 root of the tree of `treeSize` entries.
    root_hash: String,
    /// base64 audit path, bottom-up (RFC 6962 §2.1.1).
    proof: Vec<String>,
}

/// Inclusion proof of entry `index` in the tree of `treeSize` entries.
#[utoipa::path(get, path = "/v1/log/proofs/inclusion", tag = "log", security(("bearer" = [])), params(InclusionParams),
    responses((status = 200, body = InclusionProof), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn inclusion(
    State(s): State<AppState>,
    principal: Principal,
    Query(p): Query<InclusionParams>,
) -> Result<Json<InclusionProof>, Problem> {
    let size = publication::size(&s, &principal).await?;
    if p.index >= size {
        return Err(Problem::not_found().detail("no entry with this index"));
    }
    if p.tree_size > size || p.index >= p.tree_size {
        return Err(Problem::bad_request(
            "need index < treeSize <= the log size (outside the covenant: the published checkpoint's)",
        ));
    }
    let entry =
        s.db.log_entries(p.index, p.index + 1)
            .await?
            .pop()
            .ok_or_else(Problem::not_found)?;
    let proof = s.ledger.inclusion_proof(p.index, p.tree_size).await?;
    let root = s.ledger.root(p.tree_size).await?;
    Ok(Json(InclusionProof {
        index: p.index,
        tree_size: p.tree_size,
        leaf_hash: b64(&entry.leaf_hash),
        root_hash: b64(&root.0),
        proof: proof.iter().map(|h| b64(&h.0)).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    from: u64,
    to: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyProof {
    from: u64,
    to: u64,
    from_root: String,
    to_root: String,
    /// base64 consistency proof (RFC 6962 §2.1.2).
    proof: Vec<String>,
}

/// Proof that the tree of `from` entries is a prefix of the tree of `to`.
#[utoipa::path(get, path = "/v1/log/proofs/consistency", tag = "log", security(("bearer" = [])), params(ConsistencyParams),
    responses((status = 200, body = ConsistencyProof), (status = 400, body = Problem)))]
pub async fn consistency(
    State(s): State<AppState>,
    principal: Principal,
    Query(p): Query<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, Problem> {
    let size = publication::size(&s, &principal).await?;
    if p.from == 0 || p.from > p.to || p.to > size {
        return Err(Problem::bad_request(
            "need 0 < from <= to <= the log size (outside the covenant: the published checkpoint's)",
        ));
    }
    let proof = s.ledger.consistency_proof(p.from, p.to).await?;
    Ok(Json(ConsistencyProof {
        from: p.from,
        to: p.to,
        from_root: b64(&s.ledger.root(p.from).await?.0),
        to_root: b64(&s.ledger.root(p.to).await?.0),
        proof: proof.iter().map(|h| b64(&h.0)).collect(),
    }))
}

/// Asks the audit policy what `query` may see; refusals are logged with
/// `resources`, what was asked.
async fn audit_scope(
    x: &Exchange<'_>,
    query: AuditQuery,
    resources: &[String],
) -> Result<(Visibility, crate::policy::Decision), Problem> {
    let mut input = x.input(Action::AuditQuery);
    input.audit = Some(AuditInput { query });
    let d = x
        .decide(&input, LogAction::AuditQuery, resources.to_vec())
        .await?;
    let me = x.principal.partner.id.clone();
    let vis = match d.scope {
        Some(Scope::All) => Visibility::All,
        Some(Scope::Own) => Visibility::Partner(me),
        Some(Scope::OwnAggregate) => Visibility::OwnAggregate(me),
        None => {
            let refused = crate::policy::Decision::deny("policy-incoherent", &d.revision);
            let draft = x
                .draft(LogAction::AuditQuery, &refused)
                .resources(resources.to_vec());
            x.state.ledger.record(draft).await?;
            return Err(Problem::forbidden(
                "policy-incoherent",
                "the audit policy gave no scope",
            ));
        }
    };
    Ok((vis, d))
}

fn visible(vis: &Visibility, e: &StoredEntry) -> bool {
    match vis {
        Visibility::All => true,
        Visibility::Partner(p) => e.actor_partner == *p || e.recipient.as_deref() == Some(p),
        Visibility::OwnAggregate(p) => {
            e.actor_partner == *p && e.action == LogAction::ReleaseAggregate.as_str()
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    /// First index (inclusive).
    start: u64,
    /// Last index (exclusive); at most 1000 entries per request.
    end: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    index: u64,
    /// base64 RFC 6962 leaf hash: always present, so a range can be hashed.
    leaf_hash: String,
    /// base64 leaf bytes; only for entries the caller may see.
    #[serde(skip_serializing_if = "Option::is_none")]
    leaf: Option<String>,
    /// The decoded leaf bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<Entry>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntries {
    tree_size: u64,
    entries: Vec<LogEntry>,
    /// Paging cursor for the next search page, if there may be more.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<u64>,
}

fn shown(e: StoredEntry, full: bool) -> LogEntry {
    LogEntry {
        index: e.idx,
        leaf_hash: b64(&e.leaf_hash),
        entry: if full { Entry::decode(&e.leaf) } else { None },
        leaf: full.then(|| b64(&e.leaf)),
    }
}

/// Log entries by index range. Entries outside the caller's scope appear as
/// their leaf hash only. Needs `Ketenpoort-Purpose: verantwoording`.
#[utoipa::path(get, path = "/v1/log/entries", tag = "log", security(("bearer" = [])), params(RangeParams),
    responses((status = 200, body = LogEntries), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn entries(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    Query(p): Query<RangeParams>,
) -> Result<Response, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    let size = publication::size(&s, &principal).await?;
    if p.start >= p.end || p.end - p.start > MAX_RANGE || p.end > size {
        return Err(Problem::bad_request(format!(
            "need start < end <= the log size ({size}), at most {MAX_RANGE} entries"
        )));
    }
    let resources = vec![format!("log:{}-{}", p.start, p.end)];
    let (vis, decision) = audit_scope(&x, AuditQuery::Entries, &resources).await?;
    let rows = s.db.log_entries(p.start, p.end).await?;
    let entries: Vec<LogEntry> = rows
        .into_iter()
        .map(|e| {
            let full = visible(&vis, &e);
            shown(e, full)
        })
        .collect();
    let draft = x
        .draft(LogAction::AuditQuery, &decision)
        .resources(resources);
    let receipt = s.ledger.record(draft).await?;
    Ok(with_receipt(
        receipt,
        Json(LogEntries {
            tree_size: size,
            entries,
            next_after: None,
        }),
    ))
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SearchParams {
    /// Period start (RFC 3339 or YYYY-MM-DD), inclusive.
    from: Option<String>,
    /// Period end (RFC 3339 or YYYY-MM-DD), exclusive.
    to: Option<String>,
    /// The acting partner.
    partner: Option<String>,
    recipient: Option<String>,
    purpose: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    /// Paging: entries after this index.
    after: Option<u64>,
    /// Page size, at most 500 (search only: an export answers everything).
    limit: Option<u32>,
}

fn parse_time(field: &str, v: &str) -> Result<i64, Problem> {
    let t = time::OffsetDateTime::parse(v, &Rfc3339).or_else(|_| {
        time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]"))
            .map(|d| d.midnight().assume_utc())
    });
    t.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            Problem::bad_request("invalid period").errors(vec![FieldError {
                pointer: format!("/{field}"),
                reason: "not an RFC 3339 time or YYYY-MM-DD date".into(),
            }])
        })
}

impl SearchParams {
    fn to_search(&self, s: &AppState) -> Result<Search, Problem> {
        let slug = |name: &str, v: &Option<String>| -> Result<Option<String>, Problem> {
            match v {
                Some(v) if !crate::partners::is_slug(v) => {
                    Err(Problem::bad_request(format!("{name} must be an id")))
                }
                v => Ok(v.clone()),
            }
        };
        if let Some(a) = &self.action
            && LogAction::parse(a).is_none()
        {
            return Err(Problem::bad_request("unknown action"));
        }
        if let Some(o) = &self.outcome
            && crate::ledger::Outcome::parse(o).is_none()
        {
            return Err(Problem::bad_request("unknown outcome"));
        }
        let search = Search {
            from_ms: self
                .from
                .as_deref()
                .map(|v| parse_time("from", v))
                .transpose()?,
            to_ms: self
                .to
                .as_deref()
                .map(|v| parse_time("to", v))
                .transpose()?,
            actor: slug("partner", &self.partner)?,
            recipient: slug("recipient", &self.recipient)?,
            purpose: slug("purpose", &self.purpose)?,
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            subject: None,
            after: self.after,
            limit: self.limit.unwrap_or(100).clamp(1, MAX_PAGE),
        };
        let narrowed = search.actor.is_some()
            || search.recipient.is_some()
            || search.purpose.is_some()
            || search.action.is_some()
            || search.outcome.is_some();
        let max_ms = i64::from(s.config.log.max_unfiltered_days) * 86_400_000;
        let span = match (search.from_ms, search.to_ms) {
            (Some(f), Some(t)) => Some(t - f),
            _ => None,
        };
        if !narrowed && span.is_none_or(|d| d > max_ms) {
            return Err(Problem::bad_request(format!(
                "a search without a partner, recipient, purpose, action or outcome filter needs a period \
                 (from and to) of at most {} days",
                s.config.log.max_unfiltered_days
            )));
        }
        Ok(search)
    }
}

/// What an FG asked the log for, as the resources of the query's own entry
/// (NEN 7513: access to the log is itself logged): `log`, then
/// `log-query:<filter>=<value>` for each filter. A partner or purpose that
/// the registry or the policy does not know is `?`: the caller's text is
/// not ours to log.
async fn query_resources(s: &AppState, q: &Search) -> Result<Vec<String>, Problem> {
    let mut out = vec!["log".to_string()];
    let mut add = |name: &str, value: String| out.push(format!("log-query:{name}={value}"));
    let at = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| "?".into())
    };
    if let Some(f) = q.from_ms {
        add("from", at(f));
    }
    if let Some(t) = q.to_ms {
        add("to", at(t));
    }
    for (name, id) in [("partner", &q.actor), ("recipient", &q.recipient)] {
        if let Some(id) = id {
            let known = s.db.partner(id).await?.is_some();
            add(name, if known { id.clone() } else { "?".into() });
        }
    }
    if let Some(p) = &q.purpose {
        let known = s.policy.current().is_known_purpose(p);
        add("purpose", if known { p.clone() } else { "?".into() });
    }
    // Parsed against the closed lists: ours to log.
    for (name, v) in [("action", &q.action), ("outcome", &q.outcome)] {
        if let Some(v) = v {
            add(name, v.clone());
        }
    }
    if let Some(a) = q.after {
        add("after", a.to_string());
    }
    Ok(out)
}

async fn run_search(
    s: &AppState,
    x: &Exchange<'_>,
    query: AuditQuery,
    mut search: Search,
    subjects: Vec<String>,
) -> Result<(LogEntries, crate::ledger::Receipt), Problem> {
    let resources = query_resources(s, &search).await?;
    let (vis, decision) = audit_scope(x, query, &resources).await?;
    search.subject = subjects.first().cloned();
    let rows = s.db.search_log(&vis, &search).await?;
    let next_after = (rows.len() as u32 == search.limit)
        .then(|| rows.last().map(|e| e.idx))
        .flatten();
    let draft = x
        .draft(LogAction::AuditQuery, &decision)
        .resources(resources)
        .subjects(subjects);
    let receipt = s.ledger.record(draft).await?;
    let tree_size = s.ledger.size().await?;
    Ok((
        LogEntries {
            tree_size,
            entries: rows.into_iter().map(|e| shown(e, true)).collect(),
            next_after,
        },
        receipt,
    ))
}

/// The privacy officer's search (paged). Needs `Ketenpoort-Purpose: verantwoording`.
#[utoipa::path(get, path = "/v1/log/search", tag = "log", security(("bearer" = [])), params(SearchParams),
    responses((status = 200, body = LogEntries), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn search(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    Query(p): Query<SearchParams>,
) -> Result<Response, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    let search = p.to_search(&s)?;
    let (page, receipt) = run_search(&s, &x, AuditQuery::Search, search, Vec::new()).await?;
    Ok(with_receipt(receipt, Json(page)))
}

const CSV_HEADER: [&str; 17] = [
    "index",
    "time",
    "actorPartner",
    "actorRole",
    "actorUser",
    "recipient",
    "action",
    "purpose",
    "legalBasis",
    "resources",
    "subjects",
    "fields",
    "mode",
    "reasons",
    "policyRevision",
    "outcome",
    "leafHash",
];

/// Entries an export reads per query: a search page.
const EXPORT_PAGE: u32 = MAX_PAGE;

/// The same search as CSV, for the privacy officer's own records: every
/// entry the search finds (no paging), up to `log.max_export_rows`; a search
/// that finds more is refused, never cut short.
#[utoipa::path(get, path = "/v1/log/export", tag = "log", security(("bearer" = [])), params(SearchParams),
    responses((status = 200, body = String, content_type = "text/csv"), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn export(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    Query(p): Query<SearchParams>,
) -> Result<Response, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    if p.limit.is_some() {
        return Err(Problem::bad_request(
            "an export answers the whole search; limit is for /v1/log/search",
        ));
    }
    let mut search = p.to_search(&s)?;
    let resources = query_resources(&s, &search).await?;
    let (vis, decision) = audit_scope(&x, AuditQuery::Export, &resources).await?;
    let max = s.config.log.max_export_rows;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER).map_err(anyhow::Error::from)?;
    search.limit = EXPORT_PAGE;
    let mut rows = 0u64;
    loop {
        let page = s.db.search_log(&vis, &search).await?;
        rows += page.len() as u64;
        if rows > max {
            return Err(Problem::bad_request(format!(
                "the search finds more than {max} entries, the most an export holds: \
                 narrow it by period, partner, recipient, purpose, action or outcome"
            )));
        }
        let last_page = page.len() < EXPORT_PAGE as usize;
        search.after = page.last().map(|e| e.idx).or(search.after);
        for e in page {
            write_csv_row(&mut w, e)?;
        }
        if last_page {
            break;
        }
    }
    let body = w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?;
    let draft = x
        .draft(LogAction::AuditQuery, &decision)
        .resources(resources);
    let receipt = s.ledger.record(draft).await?;
    Ok(with_receipt(
        receipt,
        ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body),
    ))
}

/// One entry as a CSV row. An entry that does not decode fails the export
/// (`log verify` names it) rather than go missing from it.
fn write_csv_row(w: &mut csv::Writer<Vec<u8>>, stored: StoredEntry) -> Result<(), Problem> {
    let e = Entry::decode(&stored.leaf)
        .ok_or_else(|| anyhow::anyhow!("log entry {} does not decode", stored.idx))?;
    w.write_record([
        e.index.to_string(),
        e.time,
        e.actor.partner,
        e.actor.role,
        e.actor.user.unwrap_or_default(),
        e.recipient.unwrap_or_default(),
        e.action.as_str().into(),
        e.purpose.unwrap_or_default(),
        e.legal_basis.unwrap_or_default(),
        e.resources.join(" "),
        e.subjects.join(" "),
        e.fields.join(" "),
        e.decision.mode,
        e.decision.reasons.join(" "),
        e.policy_revision.unwrap_or_default(),
        e.outcome.as_str().into(),
        b64(&stored.leaf_hash),
    ])
    .map_err(anyhow::Error::from)?;
    Ok(())
}

/// A data subject, identified in the body (never in a URI).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubjectQuery {
    /// BSN (passes the 11-proef). Takes precedence over name and date of birth.
    bsn: Option<String>,
    name: Option<String>,
    /// YYYY-MM-DD
    date_of_birth: Option<String>,
}

/// Which partners received data about this person, when, why: the entries
/// that carry the person's pseudonym, within the caller's scope.
#[utoipa::path(post, path = "/v1/log/subjects", tag = "log", security(("bearer" = [])), request_body = SubjectQuery,
    responses((status = 200, body = LogEntries), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn subject(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    extract::Json(q): extract::Json<SubjectQuery>,
) -> Result<Response, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    if let Some(bsn) = &q.bsn
        && !crate::identifiers::is_valid_bsn(bsn)
    {
        return Err(Problem::unprocessable(
            "invalid BSN",
            vec![FieldError {
                pointer: "/bsn".into(),
                reason: "not 9 digits passing the 11-proef".into(),
            }],
        ));
    }
    if let Some(d) = &q.date_of_birth
        && time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).is_err()
    {
        return Err(Problem::unprocessable(
            "invalid date of birth",
            vec![FieldError {
                pointer: "/dateOfBirth".into(),
                reason: "not a YYYY-MM-DD date".into(),
            }],
        ));
    }
    let id = SubjectId {
        bsn: q.bsn.as_deref(),
        name: q.name.as_deref(),
        date_of_birth: q.date_of_birth.as_deref(),
    };
    let Some(pseudonym) = s.pseudonyms.pseudonym(&id) else {
        return Err(Problem::unprocessable(
            "give a BSN, or a name (and date of birth)",
            vec![FieldError {
                pointer: "/".into(),
                reason: "no identifier".into(),
            }],
        ));
    };
    let search = Search {
        limit: MAX_PAGE,
        ..Default::default()
    };
    let (page, receipt) = run_search(&s, &x, AuditQuery::Subject, search, vec![pseudonym]).await?;
    Ok(with_receipt(receipt, Json(page)))
}
