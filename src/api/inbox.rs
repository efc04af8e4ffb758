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
use super::exchange::{Exchange, PageLog, Purpose, with_receipt};
use super::extract::Query;
use super::middleware::RequestContext;
use super::problem::Problem;
use super::signals::parse_id;
use crate::auth::Principal;
use crate::ledger::LogAction;
use crate::policy::Action;
use crate::projection::project;
use crate::signals::{self, Vault};

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
    received_at: i64,
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
#[utoipa::path(get, path = "/v1/inbox", tag = "inbox", operation_id = "list_inbox", security(("bearer" = [])), params(InboxParams),
    responses((status = 200, body = InboxPage), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    Query(p): Query<InboxParams>,
) -> Result<Response, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    let purpose = x.known_purpose(LogAction::Deliver).await?;
    let after = p
        .after
        .as_deref()
        .map(parse_id)
        .transpose()
        .map_err(|_| Problem::bad_request("invalid cursor"))?;
    let limit = p.limit.unwrap_or(50).clamp(1, 100);
    let rows =
        s.db.inbox(&principal.partner.id, &purpose, after.as_deref(), limit)
            .await?;
    let next_after = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    let ids: Vec<&str> = rows.iter().map(|r| r.signal.meta.id.as_str()).collect();
    let referrals = s.db.referrals_of(&ids).await?;
    let mut items = Vec::new();
    let mut page = PageLog::default();
    for row in rows {
        let sid = row.signal.meta.id.clone();
        let mut input = x.input(Action::Deliver);
        input.signal = Some(
            row.signal
                .meta
                .facts(referrals.get(&sid).cloned().unwrap_or_default()),
        );
        let d = s.policy.decide(&input);
        if !d.allow {
            continue;
        }
        let key = s.vault.key(&row.signal)?;
        let copy = Vault::open(&key, &row.id, &row.body)?;
        let record = project(&copy, &d.fields);
        // Named from the signal itself: one pseudonym per person, whatever
        // identifiers the copy carries.
        let body = Vault::open(&key, &sid, &row.signal.body)?;
        let subjects = signals::subjects(&body, &record, &s.pseudonyms);
        page.disclosed(format!("inbox:{}", row.id), subjects, d);
        items.push(InboxItem {
            record,
            id: row.id,
            signal_id: sid,
            purpose: row.purpose,
            received_at: row.created_at,
            acknowledged: row.acked,
        });
    }
    let receipt = s.ledger.record(page.draft(&x, LogAction::Deliver)).await?;
    Ok(with_receipt(receipt, Json(InboxPage { items, next_after })))
}

/// Acknowledge receipt of an inbox item.
#[utoipa::path(post, path = "/v1/inbox/{id}/ack", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path, description = "inbox item id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn ack(
    State(s): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?;
    if s.db.ack_inbox_item(&id, &principal.partner.id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found())
    }
}
