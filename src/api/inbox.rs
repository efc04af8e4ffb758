//! A recipient's inbox: the copies made for it at referral, delivered again
//! only as far as the policy still allows (a copy is cut down to today's
//! decision, never widened).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::Query;
use super::page::PageLog;
use super::purpose::{Exchange, PurposeHeader};
use super::signals::parse_id;
use crate::auth::Principal;
use crate::ledger::Disclosed;
use crate::policy::Action;
use crate::problem::Problem;
use crate::projection::{Projection, project};
use crate::signals::Vault;
use crate::store::signals::StoredInboxItem;

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct InboxParams {
    /// Paging cursor: `nextAfter` of the previous page.
    after: Option<String>,
    /// At most 100.
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboxItem {
    id: String,
    signal_id: String,
    purpose: String,
    /// When the referral reached the inbox (RFC 3339, UTC).
    #[schema(format = DateTime)]
    received_at: String,
    acknowledged: bool,
    /// The signal as far as the recipient may receive it.
    record: Value,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboxPage {
    items: Vec<InboxItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

/// The caller's inbox for the purpose in `Ketenpoort-Purpose` (paged).
#[utoipa::path(get, path = "/v1/inbox", tag = "inbox", operation_id = "list_inbox", security(("bearer" = [])), params(InboxParams, PurposeHeader),
    responses((status = 200, body = InboxPage), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    exchange: Exchange,
    Query(params): Query<InboxParams>,
) -> Result<Disclosed<Json<InboxPage>>, Problem> {
    let purpose = exchange.known_purpose(Action::Deliver).await?;
    let (after, limit) = params.page()?;
    let partner = &exchange.principal.partner.id;
    let rows = state
        .db
        .inbox(partner, &purpose, after.as_deref(), limit)
        .await?;
    let next_after = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    let ids: Vec<&str> = rows.iter().map(|r| r.signal.facts.id.as_str()).collect();
    let referrals = state.db.referrals_of(&ids).await?;
    let mut items = Vec::new();
    let mut page = PageLog::default();
    for row in rows {
        let facts = &row.signal.facts;
        let mut input = exchange.input(Action::Deliver);
        input.signal =
            Some(facts.for_policy(referrals.get(&facts.id).cloned().unwrap_or_default()));
        let Some(granted) = exchange.decide_record(&input) else {
            continue;
        };
        let key = state.vault.key(&row.signal)?;
        let record = project(&Vault::open(&key, &row.id, &row.body)?, &granted);
        let body = Vault::open(&key, &facts.id, &row.signal.body)?;
        let subjects = record.subjects(&body, &state.pseudonyms);
        page.disclosed([format!("inbox:{}", row.id)], subjects, granted);
        items.push((row, record));
    }
    let draft = page.draft(&exchange, Action::Deliver);
    let receipt = state.ledger.log(draft).await?;
    let items = items
        .into_iter()
        .map(|(row, record)| InboxItem::of(row, record, &receipt))
        .collect();
    Ok(receipt.disclose(Json(InboxPage { items, next_after })))
}

impl InboxParams {
    /// The cursor (an item id) and the page size (at most 100).
    fn page(&self) -> Result<(Option<String>, u32), Problem> {
        let after = self
            .after
            .as_deref()
            .map(parse_id)
            .transpose()
            .map_err(|_| Problem::bad_request("invalid cursor"))?;
        Ok((after, self.limit.unwrap_or(50).clamp(1, 100)))
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC, millisecond precision),
/// like every other time of the API.
pub(super) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl InboxItem {
    fn of(row: StoredInboxItem, record: Projection, logged: &crate::ledger::Receipt) -> Self {
        Self {
            record: record.released(logged),
            signal_id: row.signal.facts.id,
            id: row.id,
            purpose: row.purpose,
            received_at: rfc3339(row.created_at),
            acknowledged: row.acked,
        }
    }
}

/// Acknowledge receipt of an inbox item.
#[utoipa::path(post, path = "/v1/inbox/{id}/ack", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path, description = "inbox item id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn ack(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?;
    if state.db.ack_inbox_item(&id, &principal.partner.id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found())
    }
}
