//! The log search as CSV (`GET /v1/log/export`), for the privacy officer's
//! own records: every entry the search finds, in the audit policy's scope,
//! and the export itself logged before its body is released (invariant 2).
//! As Dutch spreadsheets open it ([`crate::spreadsheet`]: BOM, `;`); a list
//! in a field (resources, subjects, fields, reasons) is space-separated.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::audit::{SearchParams, audit_scope, query_resources};
use super::{MAX_PAGE, b64};
use crate::api::AppState;
use crate::api::extract::Query;
use crate::api::purpose::{Exchange, PurposeHeader};
use crate::ledger::Entry;
use crate::ledger::{Disclosed, Receipt};
use crate::policy::model::AuditQuery;
use crate::problem::Problem;
use crate::store::ledger::{Search, StoredEntry, Visibility};

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
#[utoipa::path(get, path = "/v1/log/export", tag = "log", security(("bearer" = [])), params(SearchParams, PurposeHeader),
    responses((status = 200, body = String, content_type = "text/csv"), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn export(
    State(state): State<AppState>,
    exchange: Exchange,
    Query(p): Query<SearchParams>,
) -> Result<Disclosed<impl IntoResponse>, Problem> {
    if p.limit.is_some() {
        return Err(Problem::bad_request(
            "an export answers the whole search; limit is for /v1/log/search",
        ));
    }
    let search = p.to_search(&state)?;
    let (receipt, body) = export_entries(&state, &exchange, search).await?;
    Ok(receipt.disclose(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body)))
}

/// The CSV of every entry `search` finds in the caller's scope, and the
/// receipt of the export's own entry (the API and the console answer it).
pub(crate) async fn export_entries(
    state: &AppState,
    exchange: &Exchange,
    search: Search,
) -> Result<(Receipt, Vec<u8>), Problem> {
    let resources = query_resources(state, &search).await?;
    let (vis, granted) = audit_scope(exchange, AuditQuery::Export, &resources).await?;
    let body = csv_body(state, &vis, search).await?;
    let draft = exchange.draft(&granted).resources(resources);
    let receipt = state.ledger.log(draft).await?;
    Ok((receipt, body))
}

/// Every entry `search` finds in `vis`, as CSV, a search page at a time; a
/// search that finds more than `log.max_export_rows` is refused.
async fn csv_body(state: &AppState, vis: &Visibility, search: Search) -> Result<Vec<u8>, Problem> {
    let max = state.config.log.max_export_rows;
    let mut w = crate::spreadsheet::writer();
    w.write_record(CSV_HEADER).map_err(anyhow::Error::from)?;
    let mut rows = 0u64;
    // One page more than the most an export holds: the page that finds
    // the row over the limit ends it.
    let pages = usize::try_from(max / u64::from(EXPORT_PAGE) + 2).unwrap_or(usize::MAX);
    each_entry(state, vis, search, EXPORT_PAGE, pages, |stored, e| {
        rows += 1;
        if rows > max {
            return Err(Problem::bad_request(format!(
                "the search finds more than {max} entries, the most an export holds: \
                 narrow it by period, partner, recipient, purpose, action or outcome"
            )));
        }
        write_csv_row(&mut w, stored, e)
    })
    .await?;
    let body = w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?;
    Ok(body)
}

/// Every entry `search` finds in `vis` (from `search.after` on, in index
/// order), read `page` at a time, decoded and handed to `f`, for at most
/// `max_pages` pages: the one page-and-decode loop of the export and the
/// console's overview and control rules. An entry that does not decode
/// fails the whole read (`log verify` names it) rather than go missing.
/// Returns whether the search found more than `max_pages` pages hold.
pub(crate) async fn each_entry(
    state: &AppState,
    vis: &Visibility,
    mut search: Search,
    page: u32,
    max_pages: usize,
    mut f: impl FnMut(&StoredEntry, Entry) -> Result<(), Problem>,
) -> Result<bool, Problem> {
    search.limit = page.max(1);
    for _ in 0..max_pages {
        let rows = state.db.search_log(vis, &search).await?;
        for stored in &rows {
            let e = stored
                .entry()
                .ok_or_else(|| anyhow::anyhow!("log entry {} does not decode", stored.idx))?;
            f(stored, e)?;
        }
        if rows.len() < search.limit as usize {
            return Ok(false);
        }
        search.after = rows.last().map(|e| e.idx).or(search.after);
    }
    Ok(true)
}

/// One entry as a CSV row.
fn write_csv_row(
    w: &mut csv::Writer<Vec<u8>>,
    stored: &StoredEntry,
    e: Entry,
) -> Result<(), Problem> {
    w.write_record([
        e.index.to_string(),
        e.time,
        e.actor.partner,
        e.actor.role,
        e.actor
            .user
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default(),
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
