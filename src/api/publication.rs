//! The log as a partner outside the covenant sees it (issue 13, the
//! real-time channel): the published checkpoint (`ledger::publish`) and
//! nothing newer. Its size bounds every proof and range a non-member asks
//! for, and its answers carry no receipt: a receipt's index is the log's
//! size at that moment, and its leaf hash gives the index away to anyone
//! who can guess the rest of the entry (the caller knows nearly all of its
//! own). Members keep the log as it is now.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::auth::Principal;
use crate::boundary::is_member;
use crate::ledger::RECEIPT_HEADER;
use crate::problem::Problem;
use crate::store::ledger::StoredCheckpoint;

fn publish_interval(state: &AppState) -> std::time::Duration {
    std::time::Duration::from_secs(state.config.log.publish_interval_secs)
}

/// The checkpoint `principal` is served: for a member the newest (one is
/// signed at start, so this only writes on a database without any), for a
/// non-member the published one.
pub async fn checkpoint(
    state: &AppState,
    principal: &Principal,
) -> Result<StoredCheckpoint, Problem> {
    if !is_member(&state.policy, principal) {
        return state
            .ledger
            .published_checkpoint(publish_interval(state), crate::store::now_millis())
            .await?
            .ok_or_else(|| Problem::not_found().detail("no checkpoint has been published yet"));
    }
    match state.db.latest_checkpoint().await? {
        Some(cp) => Ok(cp),
        None => Ok(state.ledger.checkpoint().await?),
    }
}

/// The log size `principal` may learn: a member the current size, a
/// non-member the published checkpoint's.
pub async fn size(state: &AppState, principal: &Principal) -> Result<u64, Problem> {
    if is_member(&state.policy, principal) {
        return Ok(state.ledger.size().await?);
    }
    Ok(checkpoint(state, principal).await?.size)
}

/// Route layer on every authenticated route: a response to a non-member
/// leaves without `Ketenpoort-Receipt`. Its entry is in the log all the
/// same; the non-member finds it there once a published checkpoint covers
/// it (`GET /v1/log/entries`).
pub async fn no_receipt_for_non_members(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let member = req
        .extensions()
        .get::<Principal>()
        .is_some_and(|p| is_member(&state.policy, p));
    let mut res = next.run(req).await;
    if !member {
        res.headers_mut().remove(RECEIPT_HEADER);
    }
    res
}
