//! The log's hashes over HTTP: the newest checkpoint, signing one, the
//! verifier key, and inclusion and consistency proofs (RFC 6962). They hold
//! hashes only, so any partner may fetch them; with them anyone can check
//! that the log is tamper-evident (invariant 3).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::b64;
use crate::api::AppState;
use crate::api::extract::Query;
use crate::api::publication;
use crate::auth::Principal;
use crate::problem::Problem;

/// The newest signed checkpoint (C2SP tlog-checkpoint in a signed note); to
/// a partner outside the covenant, the newest published one (signed by the
/// last multiple of `log.publish_interval_secs`). After the log's signature
/// come the cosignatures (C2SP cosignature/v1) of the witnesses that have
/// cosigned it so far.
#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "log", security(("bearer" = [])),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 401, body = Problem)))]
pub async fn checkpoint(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, Problem> {
    let cp = publication::checkpoint(&state, &principal).await?;
    let cp = state.ledger.witnessed(cp).await?;
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
pub async fn sign_checkpoint(State(state): State<AppState>) -> Result<Response, Problem> {
    let cp = state.ledger.checkpoint().await?;
    let cp = state.ledger.witnessed(cp).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        cp.note,
    )
        .into_response())
}

/// The signed-note verifier key of the log: `<name>+<key id>+<base64 key>`.
#[utoipa::path(get, path = "/v1/log/verifier-key", tag = "log", security(("bearer" = [])),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 401, body = Problem)))]
pub async fn verifier_key(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", state.ledger.verifier_key()),
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
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<InclusionParams>,
) -> Result<Json<InclusionProof>, Problem> {
    let size = publication::size(&state, &principal).await?;
    if p.index >= size {
        return Err(Problem::not_found().detail("no entry with this index"));
    }
    if p.tree_size > size || p.index >= p.tree_size {
        return Err(Problem::bad_request(
            "need index < treeSize <= the log size (outside the covenant: the published checkpoint's)",
        ));
    }
    let entry = state
        .db
        .log_entries(p.index, p.index + 1)
        .await?
        .pop()
        .ok_or_else(Problem::not_found)?;
    let proof = state.ledger.inclusion_proof(p.index, p.tree_size).await?;
    let root = state.ledger.root(p.tree_size).await?;
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
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, Problem> {
    let size = publication::size(&state, &principal).await?;
    if p.from == 0 || p.from > p.to || p.to > size {
        return Err(Problem::bad_request(
            "need 0 < from <= to <= the log size (outside the covenant: the published checkpoint's)",
        ));
    }
    let proof = state.ledger.consistency_proof(p.from, p.to).await?;
    Ok(Json(ConsistencyProof {
        from: p.from,
        to: p.to,
        from_root: b64(&state.ledger.root(p.from).await?.0),
        to_root: b64(&state.ledger.root(p.to).await?.0),
        proof: proof.iter().map(|h| b64(&h.0)).collect(),
    }))
}
