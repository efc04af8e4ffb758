//! The privacy officer's reads of the log: entries by index range, the
//! paged search and the lookup of one data subject's entries. Which entries
//! a caller sees is the audit policy's scope, and every read is itself
//! logged before its body is released (invariant 2, NEN 7513). A subject is
//! looked up by its pseudonym, never named in a URI or the log (invariants
//! 4 and 8).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::{MAX_PAGE, b64};
use crate::api::AppState;
use crate::api::extract::{self, Query};
use crate::api::publication;
use crate::api::purpose::{self, Exchange, PurposeHeader};
use crate::crypto::SubjectId;
use crate::ledger::{Disclosed, Entry, LogAction, Receipt};
use crate::policy::model::{AuditInput, AuditQuery, Scope};
use crate::policy::{Action, Granted};
use crate::problem::{FieldError, Problem};
use crate::store::ledger::{Search, StoredEntry, Visibility};

const MAX_RANGE: u64 = 1000;

/// Asks the audit policy what `query` may see; refusals are logged with
/// `resources`, what was asked.
pub(crate) async fn audit_scope(
    exchange: &Exchange,
    query: AuditQuery,
    resources: &[String],
) -> Result<(Visibility, Granted), Problem> {
    let mut input = exchange.input(Action::AuditQuery);
    input.audit = Some(AuditInput { query });
    let granted = exchange.decide(&input, resources.to_vec()).await?;
    let me = exchange.principal.partner.id.clone();
    let vis = match granted.scope {
        Some(Scope::All) => Visibility::All,
        Some(Scope::Own) => Visibility::Partner(me),
        Some(Scope::OwnAggregate) => Visibility::OwnAggregate(me),
        None => {
            let refused = crate::policy::Decision::deny("policy-incoherent", &granted.revision);
            exchange
                .log_refusal(Action::AuditQuery, &refused, resources.to_vec())
                .await?;
            return Err(Problem::forbidden(
                "policy-incoherent",
                "the audit policy gave no scope",
            ));
        }
    };
    Ok((vis, granted))
}

pub(crate) fn visible(vis: &Visibility, e: &StoredEntry) -> bool {
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
        entry: if full { e.entry() } else { None },
        leaf: full.then(|| b64(&e.leaf)),
    }
}

/// Log entries by index range. Entries outside the caller's scope appear as
/// their leaf hash only. Needs `Ketenpoort-Purpose: verantwoording`.
#[utoipa::path(get, path = "/v1/log/entries", tag = "log", security(("bearer" = [])), params(RangeParams, PurposeHeader),
    responses((status = 200, body = LogEntries), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn entries(
    State(state): State<AppState>,
    exchange: Exchange,
    Query(p): Query<RangeParams>,
) -> Result<Disclosed<Json<LogEntries>>, Problem> {
    let size = publication::size(&state, &exchange.principal).await?;
    if p.start >= p.end || p.end - p.start > MAX_RANGE || p.end > size {
        return Err(Problem::bad_request(format!(
            "need start < end <= the log size ({size}), at most {MAX_RANGE} entries"
        )));
    }
    let resources = vec![format!("log:{}-{}", p.start, p.end)];
    let (vis, granted) = audit_scope(&exchange, AuditQuery::Entries, &resources).await?;
    let rows = state.db.log_entries(p.start, p.end).await?;
    let entries: Vec<LogEntry> = rows
        .into_iter()
        .map(|e| {
            let full = visible(&vis, &e);
            shown(e, full)
        })
        .collect();
    let draft = exchange.draft(&granted).resources(resources);
    let receipt = state.ledger.log(draft).await?;
    Ok(receipt.disclose(Json(LogEntries {
        tree_size: size,
        entries,
        next_after: None,
    })))
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SearchParams {
    /// Period start (RFC 3339 or YYYY-MM-DD), inclusive.
    pub(crate) from: Option<String>,
    /// Period end (RFC 3339 or YYYY-MM-DD), exclusive.
    pub(crate) to: Option<String>,
    /// The acting partner.
    pub(crate) partner: Option<String>,
    pub(crate) recipient: Option<String>,
    pub(crate) purpose: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) outcome: Option<String>,
    /// Paging: entries after this index.
    pub(crate) after: Option<u64>,
    /// Page size, at most 500 (search only: an export answers everything).
    pub(crate) limit: Option<u32>,
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
    pub(crate) fn to_search(&self, state: &AppState) -> Result<Search, Problem> {
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
            user: None,
            after: self.after,
            limit: self.limit.unwrap_or(100).clamp(1, MAX_PAGE),
        };
        check_unfiltered_period(state, &search)?;
        Ok(search)
    }
}

/// A search without a partner, recipient, purpose, action or outcome filter
/// must name a period of at most `log.max_unfiltered_days`.
fn check_unfiltered_period(state: &AppState, search: &Search) -> Result<(), Problem> {
    let narrowed = search.actor.is_some()
        || search.recipient.is_some()
        || search.purpose.is_some()
        || search.action.is_some()
        || search.outcome.is_some();
    let max_ms = i64::from(state.config.log.max_unfiltered_days) * 86_400_000;
    let span = match (search.from_ms, search.to_ms) {
        (Some(f), Some(t)) => Some(t - f),
        _ => None,
    };
    if !narrowed && span.is_none_or(|d| d > max_ms) {
        return Err(Problem::bad_request(format!(
            "a search without a partner, recipient, purpose, action or outcome filter needs a period \
             (from and to) of at most {} days",
            state.config.log.max_unfiltered_days
        )));
    }
    Ok(())
}

/// What an FG asked the log for, as the resources of the query's own entry
/// (NEN 7513: access to the log is itself logged): `log`, then
/// `log-query:<filter>=<value>` for each filter. A partner or purpose that
/// the registry or the policy does not know is `?`: the caller's text is
/// not ours to log.
pub(crate) async fn query_resources(state: &AppState, q: &Search) -> Result<Vec<String>, Problem> {
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
            let known = state.db.partner(id).await?.is_some();
            add(name, if known { id.clone() } else { "?".into() });
        }
    }
    if let Some(p) = &q.purpose {
        let known = purpose::check(&state.policy.current(), Some(p), None).is_ok();
        add("purpose", if known { p.clone() } else { "?".into() });
    }
    // A keyed reference (`usr1:`), never the user's own id.
    if let Some(u) = &q.user {
        add("user", u.clone());
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

/// An FG query of the log (a search page or a subject lookup): its scope
/// decided, its rows read, and its own entry logged before anything is
/// released. The API answers it as JSON, the console as a page.
pub(crate) async fn search_entries(
    state: &AppState,
    exchange: &Exchange,
    query: AuditQuery,
    mut search: Search,
    subjects: Vec<String>,
) -> Result<(Receipt, Vec<StoredEntry>, Option<u64>), Problem> {
    let resources = query_resources(state, &search).await?;
    let (vis, granted) = audit_scope(exchange, query, &resources).await?;
    search.subject = subjects.first().cloned();
    let rows = state.db.search_log(&vis, &search).await?;
    let next_after = (rows.len() as u32 == search.limit)
        .then(|| rows.last().map(|e| e.idx))
        .flatten();
    let draft = exchange
        .draft(&granted)
        .resources(resources)
        .subjects(subjects);
    let receipt = state.ledger.log(draft).await?;
    Ok((receipt, rows, next_after))
}

async fn run_search(
    state: &AppState,
    exchange: &Exchange,
    query: AuditQuery,
    search: Search,
    subjects: Vec<String>,
) -> Result<Disclosed<Json<LogEntries>>, Problem> {
    let (receipt, rows, next_after) =
        search_entries(state, exchange, query, search, subjects).await?;
    let tree_size = state.ledger.size().await?;
    Ok(receipt.disclose(Json(LogEntries {
        tree_size,
        entries: rows.into_iter().map(|e| shown(e, true)).collect(),
        next_after,
    })))
}

/// The privacy officer's search (paged). Needs `Ketenpoort-Purpose: verantwoording`.
#[utoipa::path(get, path = "/v1/log/search", tag = "log", security(("bearer" = [])), params(SearchParams, PurposeHeader),
    responses((status = 200, body = LogEntries), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn search(
    State(state): State<AppState>,
    exchange: Exchange,
    Query(p): Query<SearchParams>,
) -> Result<Disclosed<Json<LogEntries>>, Problem> {
    let search = p.to_search(&state)?;
    run_search(&state, &exchange, AuditQuery::Search, search, Vec::new()).await
}

/// A data subject, identified in the body (never in a URI).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubjectQuery {
    /// BSN (passes the 11-proef). Takes precedence over name and date of birth.
    pub(crate) bsn: Option<String>,
    pub(crate) name: Option<String>,
    /// YYYY-MM-DD
    pub(crate) date_of_birth: Option<String>,
}

/// Which partners received data about this person, when, why: the entries
/// that carry the person's pseudonym, within the caller's scope.
#[utoipa::path(post, path = "/v1/log/subjects", tag = "log", security(("bearer" = [])), params(PurposeHeader), request_body = SubjectQuery,
    responses((status = 200, body = LogEntries), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn subject(
    State(state): State<AppState>,
    exchange: Exchange,
    extract::Json(q): extract::Json<SubjectQuery>,
) -> Result<Disclosed<Json<LogEntries>>, Problem> {
    let pseudonym = subject_pseudonym(&state, &q)?;
    let search = Search {
        limit: MAX_PAGE,
        ..Default::default()
    };
    run_search(
        &state,
        &exchange,
        AuditQuery::Subject,
        search,
        vec![pseudonym],
    )
    .await
}

/// The pseudonym of the subject `q` names, after checking what it gives.
pub(crate) fn subject_pseudonym(state: &AppState, q: &SubjectQuery) -> Result<String, Problem> {
    if let Some(bsn) = &q.bsn
        && !crate::identifiers::is_valid_bsn(bsn)
    {
        return Err(Problem::invalid_input(
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
        return Err(Problem::invalid_input(
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
    let Some(pseudonym) = state.pseudonyms.pseudonym(&id) else {
        return Err(Problem::invalid_input(
            "give a BSN, or a name (and date of birth)",
            vec![FieldError {
                pointer: "/".into(),
                reason: "no identifier".into(),
            }],
        ));
    };
    Ok(pseudonym)
}
