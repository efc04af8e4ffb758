//! Witnessed checkpoints (C2SP tlog-witness, tlog-cosignature).
//!
//! A witness is a small service another organisation runs (`ketenpoort
//! witness serve`): it remembers, per log origin, the latest checkpoint it
//! cosigned, and cosigns a new one only when a consistency proof shows it
//! extends that one. Whoever holds the log's signing key can then no longer
//! show two privacy officers different histories, or rewrite history, unless
//! the witnesses go along: a checkpoint counts only with enough
//! cosignatures.
//!
//! - [`Witness`]: the protocol (`POST /add-checkpoint`), over a [`WitnessDb`];
//! - `server`: its HTTPS listener and configuration;
//! - `submit`: the gateway's side, handing each new checkpoint to the
//!   configured witnesses in the background and keeping their cosignatures;
//! - `cosignature`: the `cosignature/v1` lines.

pub mod cosignature;
pub mod server;
pub mod submit;

use std::collections::HashMap;

use base64::Engine;
use signed_note::Note;
use tlog_tiles::{Checkpoint, Hash};
use tokio::sync::Mutex;

pub use cosignature::{Cosigner, WitnessKey};

use crate::store::witness::WitnessDb;

/// The most proof lines a request may carry (the spec's bound).
const MAX_PROOF: usize = 63;
/// The largest request body a witness reads.
pub const MAX_BODY: usize = 16 * 1024;
/// Content type of a 409's body: the witness's size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// A witness's answer: status, content type, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// 409 with the size of the latest cosigned checkpoint.
    fn conflict(size: u64) -> Self {
        Self {
            status: 409,
            content_type: SIZE_CONTENT_TYPE,
            body: format!("{size}\n"),
        }
    }
}

pub struct Witness {
    cosigner: Cosigner,
    /// Log verifier keys (signed-note vkeys) by origin.
    logs: HashMap<String, String>,
    db: WitnessDb,
    /// Held from reading the latest checkpoint to persisting the next, so
    /// two requests can never roll the state back (the spec's race).
    lock: Mutex<()>,
}

/// An `add-checkpoint` request body, parsed.
struct Request<'a> {
    old: u64,
    proof: Vec<Hash>,
    note: &'a [u8],
}

fn parse(body: &[u8]) -> Option<Request<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    let (head, note) = text.split_once("\n\n")?;
    let mut lines = head.split('\n');
    let old = lines.next()?.strip_prefix("old ")?;
    if old.is_empty() || (old.len() > 1 && old.starts_with('0')) {
        return None;
    }
    let old: u64 = old.parse().ok()?;
    let proof = lines
        .map(|l| {
            let raw = base64::engine::general_purpose::STANDARD.decode(l).ok()?;
            Some(Hash(raw.try_into().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    if proof.len() > MAX_PROOF {
        return None;
    }
    Some(Request {
        old,
        proof,
        note: note.as_bytes(),
    })
}

impl Witness {
    /// A witness for the logs whose verifier keys are `log_keys`
    /// (`<origin>+<key id>+<key>`: ketenpoort names its key by the origin).
    pub fn new(cosigner: Cosigner, log_keys: &[String], db: WitnessDb) -> anyhow::Result<Self> {
        let mut logs = HashMap::new();
        for k in log_keys {
            let origin = crate::ledger::key_name(k)?.to_owned();
            logs.insert(origin, k.trim().to_owned());
        }
        Ok(Self {
            cosigner,
            logs,
            db,
            lock: Mutex::new(()),
        })
    }

    pub fn key(&self) -> &WitnessKey {
        self.cosigner.key()
    }

    /// `POST /add-checkpoint`.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Answer {
        let Some(req) = parse(body) else {
            return Answer::text(400, "malformed add-checkpoint request\n");
        };
        let Ok(note) = Note::from_bytes(req.note) else {
            return Answer::text(400, "malformed checkpoint note\n");
        };
        let Ok(cp) = Checkpoint::from_bytes(note.text()) else {
            return Answer::text(400, "malformed checkpoint\n");
        };
        let Some(vkey) = self.logs.get(cp.origin()) else {
            return Answer::text(404, "unknown log origin\n");
        };
        let note_text = String::from_utf8_lossy(req.note);
        if crate::ledger::open_checkpoint(&note_text, vkey).is_err() {
            return Answer::text(403, "no valid signature by the log's key\n");
        }
        let (size, root) = (cp.size(), *cp.hash());
        if req.old > size {
            return Answer::text(400, "the old size exceeds the checkpoint's size\n");
        }
        if req.old == 0 && !req.proof.is_empty() {
            return Answer::text(400, "a proof from size 0 must be empty\n");
        }
        let _held = self.lock.lock().await;
        let latest = match self.db.latest(cp.origin()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "witness database");
                return Answer::text(503, "the witness cannot read its state\n");
            }
        };
        let current = latest.as_ref().map_or(0, |l| l.size);
        if req.old != current {
            return Answer::conflict(current);
        }
        if let Some(l) = &latest {
            let consistent = if req.old == size {
                req.proof.is_empty() && l.root == root.0
            } else if req.old == 0 {
                // The empty tree is a prefix of every tree.
                true
            } else {
                tlog_tiles::check_tree(&req.proof, size, root, req.old, Hash(l.root)).is_ok()
            };
            if !consistent {
                tracing::warn!(
                    origin = cp.origin(),
                    held = current,
                    offered = size,
                    "refused a checkpoint inconsistent with the one held: a fork or a rewrite"
                );
                return if req.old == size {
                    Answer::conflict(current)
                } else {
                    Answer::text(422, "the consistency proof does not verify\n")
                };
            }
        }
        if let Err(e) = self.db.record(cp.origin(), size, &root.0, &note_text).await {
            tracing::error!(error = %e, "witness database");
            return Answer::text(503, "the witness cannot persist its state\n");
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        tracing::info!(origin = cp.origin(), size, old = req.old, "cosigned");
        Answer {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: self.cosigner.cosign(note.text(), now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_parse_as_the_spec_writes_them() {
        let body = "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let r = parse(body.as_bytes()).unwrap();
        assert_eq!(r.old, 20852014);
        assert_eq!(r.proof.len(), 2);
        assert!(
            r.note
                .starts_with(b"example.com/behind-the-sofa\n20852163\n")
        );
        let r = parse(b"old 0\n\nx\n".as_slice()).unwrap();
        assert_eq!((r.old, r.proof.len()), (0, 0));
        for bad in [
            "old 01\n\nx",
            "old -1\n\nx",
            "old 1\nnot base64\n\nx",
            "old 1\nAAAA\n\nx",
            "new 1\n\nx",
            "old 1\n",
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }
}
