//! What the browser verifies the log with: the latest checkpoint (the
//! signed note with its cosignatures, and the log's verifier key), and
//! Merkle proofs. Hashes only;
//! the checking is the browser's (`assets/verify.js`).

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::json;

use super::Console;
use super::session::Fg;
use crate::problem::Problem;

fn b64(b: &[u8]) -> String {
    B64.encode(b)
}

/// The log's latest checkpoint, with the witnesses' cosignatures, and the
/// key the server says it is signed with (the browser trusts only the key
/// it pinned). A page view signs nothing: checkpoints are the ledger's
/// (`log.checkpoint_every`, `log.checkpoint_interval_secs`, a member's
/// `POST /v1/log/checkpoint`); only a log that never had one gets its
/// first here.
pub async fn checkpoint(State(c): State<Console>, _fg: Fg) -> Response {
    let run = async {
        let ledger = &c.app.ledger;
        let cp = match ledger.latest_checkpoint().await? {
            Some(cp) => cp,
            None => ledger.checkpoint().await?,
        };
        let cp = ledger.witnessed(cp).await?;
        Ok::<_, Problem>(json!({
            "note": cp.note,
            "size": cp.size,
            "verifierKey": ledger.verifier_key(),
        }))
    };
    match run.await {
        Ok(v) => Json(v).into_response(),
        Err(p) => p.into_response(),
    }
}

#[derive(Deserialize)]
pub struct Consistency {
    from: u64,
    to: u64,
}

pub async fn consistency(
    State(c): State<Console>,
    _fg: Fg,
    Query(q): Query<Consistency>,
) -> Response {
    let run = async {
        let size = c.app.ledger.size().await?;
        if q.from == 0 || q.from > q.to || q.to > size {
            return Err(Problem::bad_request("need 0 < from <= to <= the log size"));
        }
        let proof = c.app.ledger.consistency_proof(q.from, q.to).await?;
        Ok(
            json!({"from": q.from, "to": q.to, "proof": proof.iter().map(|h| b64(&h.0)).collect::<Vec<_>>()}),
        )
    };
    match run.await {
        Ok(v) => Json(v).into_response(),
        Err(p) => p.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inclusion {
    index: u64,
    tree_size: u64,
}

pub async fn inclusion(State(c): State<Console>, _fg: Fg, Query(q): Query<Inclusion>) -> Response {
    let run = async {
        let size = c.app.ledger.size().await?;
        if q.index >= q.tree_size || q.tree_size > size {
            return Err(Problem::bad_request(
                "need index < treeSize <= the log size",
            ));
        }
        let proof = c.app.ledger.inclusion_proof(q.index, q.tree_size).await?;
        Ok(
            json!({"index": q.index, "treeSize": q.tree_size, "proof": proof.iter().map(|h| b64(&h.0)).collect::<Vec<_>>()}),
        )
    };
    match run.await {
        Ok(v) => Json(v).into_response(),
        Err(p) => p.into_response(),
    }
}
