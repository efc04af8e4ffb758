//! `ketenpoort log verify`: recomputes everything from the stored leaf
//! bytes — leaf hashes, the derived columns, the subject index, every stored
//! tree hash, the tree roots — and checks every checkpoint's signature and
//! root against the recomputed tree. Streams the log; memory stays flat.

use futures::StreamExt;
use futures::stream::Peekable;
use time::format_description::well_known::Rfc3339;

use super::checkpoint;
use super::entry::Entry;
use super::merkle::{CompactRange, Hash, leaf_hash};
use crate::store::Db;

#[derive(Debug)]
pub struct Failure {
    /// The first entry index found to be wrong (None: the log as a whole).
    pub index: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "first bad index {i}: {}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

pub struct Report {
    pub entries: u64,
    pub checkpoints: usize,
    pub root: Hash,
}

fn fail<T>(index: impl Into<Option<u64>>, reason: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        index: index.into(),
        reason: reason.into(),
    })
}

fn db_err(e: sqlx::Error) -> Failure {
    Failure {
        index: None,
        reason: format!("database: {e}"),
    }
}

/// Takes the next items of a sorted stream while `belongs` holds.
async fn take_while<S, T>(
    s: &mut Peekable<S>,
    belongs: impl Fn(&T) -> bool,
) -> Result<Vec<T>, Failure>
where
    S: futures::Stream<Item = Result<T, sqlx::Error>> + Unpin,
{
    let mut out = Vec::new();
    loop {
        match std::pin::Pin::new(&mut *s).peek().await {
            Some(Ok(item)) if belongs(item) => {}
            Some(Err(_)) => {
                return Err(db_err(
                    s.next().await.expect("peeked").err().expect("error"),
                ));
            }
            _ => return Ok(out),
        }
        out.push(s.next().await.expect("peeked").map_err(db_err)?);
    }
}

pub async fn verify(db: &Db) -> Result<Report, Failure> {
    let Some((_origin, verifier_key)) = db.log_identity().await.map_err(db_err)? else {
        return fail(None, "the database holds no disclosure log");
    };
    let head_size = db.log_size().await.map_err(db_err)?;
    let checkpoints = db.checkpoints().await.map_err(db_err)?;
    let mut pending = checkpoints.iter().peekable();
    let mut tree = CompactRange::default();
    let check_checkpoints =
        |tree: &CompactRange, pending: &mut std::iter::Peekable<std::slice::Iter<'_, _>>| {
            while let Some(cp) =
                pending.next_if(|c: &&crate::store::ledger::StoredCheckpoint| c.size == tree.size())
            {
                let at = tree.size().checked_sub(1);
                let (size, root) =
                    checkpoint::open(&cp.note, &verifier_key).map_err(|e| Failure {
                        index: at,
                        reason: format!("checkpoint of size {}: {e}", cp.size),
                    })?;
                if size != cp.size || root != tree.root() || cp.root != tree.root().0 {
                    return fail(
                        at,
                        format!("checkpoint of size {} does not match the log", cp.size),
                    );
                }
            }
            Ok(())
        };
    check_checkpoints(&tree, &mut pending)?;

    let mut entries = db.stream_log_entries();
    let mut subjects = db.stream_log_subjects().peekable();
    let mut hashes = db.stream_log_hashes().peekable();
    while let Some(row) = entries.next().await {
        let row = row.map_err(db_err)?;
        let i = tree.size();
        if row.idx != i {
            return fail(
                i,
                format!("entry {i} is missing (next stored index is {})", row.idx),
            );
        }
        let lh = leaf_hash(&row.leaf);
        if row.leaf_hash != lh.0 {
            return fail(i, "stored leaf hash does not match the leaf bytes");
        }
        let Some(entry) = Entry::decode(&row.leaf) else {
            return fail(i, "leaf bytes are not a canonical entry");
        };
        if entry.index != i {
            return fail(i, format!("entry {} is stored at index {i}", entry.index));
        }
        let ts = time::OffsetDateTime::parse(&entry.time, &Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .ok();
        let columns_match = ts == Some(row.ts)
            && row.action == entry.action.as_str()
            && row.actor_partner == entry.actor.partner
            && row.actor_role == entry.actor.role
            && row.recipient == entry.recipient
            && row.purpose == entry.purpose
            && row.outcome == entry.outcome.as_str();
        if !columns_match {
            return fail(i, "a stored column differs from the leaf bytes");
        }
        let subj: Vec<String> = take_while(&mut subjects, |(idx, _)| *idx <= i)
            .await?
            .into_iter()
            .map(|(idx, p)| if idx == i { p } else { String::new() })
            .collect();
        if subj != entry.subjects {
            return fail(i, "the subject index differs from the leaf bytes");
        }
        let expected = tree.push(lh);
        let first = tlog_tiles::stored_hash_index(0, i);
        let stored = take_while(&mut hashes, |(id, _)| *id < first + expected.len() as u64).await?;
        let ok = stored.len() == expected.len()
            && stored
                .iter()
                .zip(&expected)
                .enumerate()
                .all(|(k, ((id, h), e))| *id == first + k as u64 && h[..] == e.0);
        if !ok {
            return fail(i, "stored tree hashes differ from the recomputed tree");
        }
        check_checkpoints(&tree, &mut pending)?;
    }
    let n = tree.size();
    if head_size != n {
        return fail(
            n.min(head_size),
            format!("the log head counts {head_size} entries, the log holds {n}"),
        );
    }
    if let Some(cp) = pending.next() {
        return fail(
            n,
            format!(
                "a checkpoint covers {} entries but the log holds {n}: entries were removed",
                cp.size
            ),
        );
    }
    if !take_while(&mut subjects, |_| true).await?.is_empty() {
        return fail(n, "the subject index refers to entries that do not exist");
    }
    if !take_while(&mut hashes, |_| true).await?.is_empty() {
        return fail(n, "tree hashes stored beyond the last entry");
    }
    Ok(Report {
        entries: n,
        checkpoints: checkpoints.len(),
        root: tree.root(),
    })
}
