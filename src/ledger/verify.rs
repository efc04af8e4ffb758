//! `ketenpoort log verify`: recomputes everything from the stored leaf
//! bytes — leaf hashes, the derived columns, the subject index, the
//! projections the leaves name, every stored tree hash, the tree roots —
//! and checks every checkpoint's signature and root against the recomputed
//! tree. A projection row must hash to its name and be a canonical
//! projection; an entry naming one that is not stored, or one that fails,
//! fails at that entry with the projection's name. Reads the log in one snapshot, in
//! batches (memory stays flat), and checks on a thread of its own while the
//! store reads the next batch.
//!
//! Two things come from outside the database, since whoever can write it
//! could otherwise rewrite the log and make it whole again: the key the
//! checkpoints must verify with ([`TrustedKey`]), and checkpoints kept by
//! privacy officers ([`HeldCheckpoint`]), which are what reveals a log
//! rewritten or cut back together with its stored checkpoints.
//!
//! Incremental mode ([`Options::since`]) starts from a checkpoint verified
//! before: it proves the newest stored checkpoint consistent with it (an
//! RFC 6962 consistency proof from the stored hashes, checked against both
//! signed roots), rebuilds the tree's right edge at the old size from
//! stored hashes and checks it against the old root, then reads and checks
//! only the entries after it. Entries before it are not read: a change to
//! one shows only as a failed consistency proof (or edge), which is exactly
//! a rewrite that moved the signed roots; a change to an old entry's bytes
//! alone, with the tree left as it was, is not seen (a full run sees it).
//!
//! Witnesses ([`Options::witnesses`]): every stored cosignature line of a
//! checkpoint is checked against the given witness keys; the report names
//! who cosigned what, and with `min_witnesses` the newest checkpoint must
//! carry that many valid cosignatures.

use std::collections::HashMap;

use super::checkpoint;
use super::entry::{Outcome, Projection};
use super::leaf::LeafView;
use super::merkle::{CompactRange, Hash, Reader, leaf_hash};
use crate::store::Db;
use crate::store::log_counts::week_of;
use crate::store::log_scan::{LogBatch, LogHead, Scope, StoredRow};
use crate::witness::WitnessKey;

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
    /// Entries read and checked (all of them, or those since `since`).
    pub read: u64,
    /// Incremental: the size of the checkpoint verified before.
    pub since: Option<u64>,
    pub checkpoints: usize,
    /// Held checkpoints the log is consistent with.
    pub held: usize,
    pub root: Hash,
    /// Per checkpoint with a valid cosignature by a given witness key:
    /// (size, witness names), by size.
    pub witnessed: Vec<(u64, Vec<String>)>,
    /// The newest checkpoint's note with its valid cosignatures: what
    /// `--since` keeps for the next run.
    pub newest: Option<String>,
}

/// What a verification takes besides the trusted key.
#[derive(Default)]
pub struct Options<'a> {
    /// Checkpoints kept outside the database.
    pub held: &'a [HeldCheckpoint],
    /// Incremental: a checkpoint note verified before (a previous run's
    /// `Report::newest`); only what follows it is read.
    pub since: Option<&'a str>,
    /// Witness keys whose cosignatures count.
    pub witnesses: &'a [WitnessKey],
    /// Valid cosignatures the newest checkpoint must carry.
    pub min_witnesses: usize,
}

/// The key checkpoints must verify with. Never the one stored with the log:
/// a database writer could store a key of its own and re-sign everything.
pub enum TrustedKey {
    /// A note verifier key `<name>+<hex key id>+<base64 key>`, as `GET
    /// /v1/log/verifier-key` serves it.
    Note(String),
    /// The log signing public key of the data directory, named `origin`
    /// (`log.origin`) or, when none is configured, by the origin stored with
    /// the log: a name proves nothing, the signatures rest on the key.
    Ed25519 {
        public: [u8; 32],
        origin: Option<String>,
    },
}

impl TrustedKey {
    fn note_key(&self, stored_origin: &str) -> String {
        match self {
            Self::Note(k) => k.clone(),
            Self::Ed25519 { public, origin } => {
                checkpoint::verifier_key(origin.as_deref().unwrap_or(stored_origin), public)
            }
        }
    }
}

/// A checkpoint note kept outside the database (as `GET /v1/log/checkpoint`
/// served it); `name` says which one in a report.
pub struct HeldCheckpoint {
    pub name: String,
    pub note: String,
}

/// A held checkpoint, opened.
struct Held {
    name: String,
    size: u64,
    root: Hash,
}

fn fail<T>(index: impl Into<Option<u64>>, reason: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        index: index.into(),
        reason: reason.into(),
    })
}

fn db_err(e: impl std::fmt::Display) -> Failure {
    Failure {
        index: None,
        reason: format!("database: {e}"),
    }
}

pub async fn verify(db: &Db, trusted: &TrustedKey, opts: &Options<'_>) -> Result<Report, Failure> {
    // The old checkpoint can be opened only with the key, which needs the
    // stored origin when the key is the data directory's: peek at it first.
    let from = match opts.since {
        None => 0,
        Some(note) => {
            let origin = db.log_origin().await.map_err(db_err)?.unwrap_or_default();
            let key = trusted.note_key(&origin);
            checkpoint::open(note, &key)
                .map_err(|e| Failure {
                    index: None,
                    reason: format!("the checkpoint verified before: {e}"),
                })?
                .0
        }
    };
    let mut scan = db.scan_log(Scope { from }).await.map_err(db_err)?;
    let Some(head) = scan.head else {
        return match scan.batches.recv().await {
            Some(Err(e)) => Err(db_err(e)),
            _ => fail(None, "the database holds no disclosure log"),
        };
    };
    let key = trusted.note_key(&head.origin);
    let origin = checkpoint::key_name(&key).map_err(|e| Failure {
        index: None,
        reason: format!("the trusted key: {e}"),
    })?;
    if head.origin != origin {
        return fail(
            None,
            format!(
                "the log's origin {:?} is not {origin:?}, the trusted key's name",
                head.origin
            ),
        );
    }
    if head.verifier_key != key {
        return fail(
            None,
            "the log head holds another verifier key than the trusted one: the log was re-keyed \
             (and its checkpoints perhaps re-signed), or the trusted key is another log's",
        );
    }
    let mut held = open_held(opts.held, &key)?;
    let mut start = CompactRange::default();
    if let Some(note) = opts.since {
        let (size, root) = checkpoint::open(note, &key).map_err(|e| Failure {
            index: None,
            reason: format!("the checkpoint verified before: {e}"),
        })?;
        start = resume(db, &head, size, root).await?;
        // Held checkpoints below it would need the entries not read.
        held.retain(|h| h.size >= size);
    }
    let since = opts.since.map(|_| start.size());
    let cosignatures = db.cosignatures_from(from).await.map_err(db_err)?;
    let (witnesses, min) = (opts.witnesses.to_vec(), opts.min_witnesses);
    tokio::task::spawn_blocking(move || {
        let mut v = Verifier::new(&head, key, held);
        v.tree = start;
        if since.is_some() {
            // Counts cover the whole log; a run from a checkpoint reads part.
            v.counted = None;
        }
        v.check_checkpoints()?;
        while let Some(batch) = scan.batches.blocking_recv() {
            let batch = batch.map_err(db_err)?;
            if batch.entries.is_empty() {
                let mut report = v.finish(&batch)?;
                report.since = since;
                report.read = report.entries - from;
                witnessing(&head, &cosignatures, &witnesses, min, &mut report)?;
                return Ok(report);
            }
            v.batch(&batch)?;
        }
        fail(None, "the log ended before it was read to the end")
    })
    .await
    .map_err(db_err)?
}

/// Incremental mode: the tree at `size` entries (root `root`, from a
/// checkpoint verified before), resumed from the stored right edge, once
/// the newest stored checkpoint is proved consistent with it.
async fn resume(db: &Db, head: &LogHead, size: u64, root: Hash) -> Result<CompactRange, Failure> {
    if head.size < size {
        return fail(
            head.size,
            format!(
                "the log holds {} entries, fewer than the {size} of the checkpoint verified before: entries were removed",
                head.size
            ),
        );
    }
    let at = size.checked_sub(1);
    if let Some(newest) = head.checkpoints.last().filter(|c| c.size > size) {
        let (n, new_root) = (
            newest.size,
            Hash(newest.root.clone().try_into().unwrap_or_default()),
        );
        let rec = Reader::recording();
        let _ = tlog_tiles::prove_tree(n, size, &rec);
        let hashes = db.log_hashes(&rec.recorded()).await.map_err(db_err)?;
        let proof = tlog_tiles::prove_tree(n, size, &Reader::Fetched(hashes));
        if !proof.is_ok_and(|p| tlog_tiles::check_tree(&p, n, new_root, size, root).is_ok()) {
            return fail(
                at,
                format!(
                    "the log is not consistent with the checkpoint verified before: no consistency proof from size {size} to the checkpoint of size {n} (entries before {size} were changed, or the log was rewritten)"
                ),
            );
        }
    }
    let ids = CompactRange::edge_ids(size);
    let stored = db.log_hashes(&ids).await.map_err(db_err)?;
    let edge: Option<Vec<Hash>> = ids.iter().map(|i| stored.get(i).copied()).collect();
    let tree = edge.map(|e| CompactRange::resume(size, &e));
    match tree {
        Some(t) if t.root() == root => Ok(t),
        _ => fail(
            at,
            format!("the stored tree at size {size} does not match the checkpoint verified before"),
        ),
    }
}

/// Checks every stored cosignature by a given witness key and fills in who
/// witnessed what; with `min`, the newest checkpoint needs that many.
fn witnessing(
    head: &LogHead,
    cosignatures: &[(u64, String)],
    witnesses: &[WitnessKey],
    min: usize,
    report: &mut Report,
) -> Result<(), Failure> {
    let mut lines = cosignatures.iter().peekable();
    for cp in &head.checkpoints {
        while lines.next_if(|(s, _)| *s < cp.size).is_some() {}
        let text = signed_note::Note::from_bytes(cp.note.as_bytes())
            .map(|n| n.text().to_vec())
            .unwrap_or_default();
        let mut names = Vec::new();
        let mut note = cp.note.clone();
        while let Some((_, line)) = lines.next_if(|(s, _)| *s == cp.size) {
            let Ok(sig) = signed_note::Signature::from_bytes(line.trim_end().as_bytes()) else {
                return fail(
                    None,
                    format!(
                        "a stored cosignature of the checkpoint of size {} is malformed",
                        cp.size
                    ),
                );
            };
            // Lines by other keys (witnesses not given) are ignored.
            for w in witnesses
                .iter()
                .filter(|w| w.name == sig.name() && w.id == sig.id())
            {
                if w.check(&text, line).is_none() {
                    return fail(
                        None,
                        format!(
                            "the cosignature by {} of the checkpoint of size {} does not verify",
                            w.name, cp.size
                        ),
                    );
                }
                names.push(w.name.clone());
                note.push_str(line);
            }
        }
        if !names.is_empty() {
            report.witnessed.push((cp.size, names));
        }
        report.newest = Some(note);
    }
    if min > 0 {
        let Some(newest) = head.checkpoints.last() else {
            return fail(None, "no checkpoint to be witnessed");
        };
        let n = report
            .witnessed
            .last()
            .filter(|(s, _)| *s == newest.size)
            .map_or(0, |(_, w)| w.len());
        if n < min {
            return fail(
                None,
                format!(
                    "the newest checkpoint (size {}) carries {n} valid cosignatures of the {min} required: \
                     it was not witnessed (a fork the witnesses refused, or witnesses that are down)",
                    newest.size
                ),
            );
        }
    }
    Ok(())
}

/// Opens every held checkpoint with the trusted key; sorted by size.
fn open_held(held: &[HeldCheckpoint], key: &str) -> Result<Vec<Held>, Failure> {
    let mut opened = held
        .iter()
        .map(|h| match checkpoint::open(&h.note, key) {
            Ok((size, root)) => Ok(Held {
                name: h.name.clone(),
                size,
                root,
            }),
            Err(e) => fail(None, format!("held checkpoint {}: {e}", h.name)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    opened.sort_by_key(|h| h.size);
    Ok(opened)
}

/// The state of a verification: the tree recomputed so far and the
/// checkpoints not yet reached.
struct Verifier<'h> {
    head: &'h LogHead,
    /// The trusted verifier key.
    key: String,
    held: Vec<Held>,
    tree: CompactRange,
    /// Stored checkpoints before this one are checked.
    next_checkpoint: usize,
    /// Held checkpoints before this one are checked.
    next_held: usize,
    /// Every stored projection by its stored name: `None` if it hashes to
    /// that name and is canonical, else what is wrong with it.
    projections: HashMap<Vec<u8>, Option<&'static str>>,
    /// The first reason code of every stored projection, by its name.
    reasons: HashMap<Vec<u8>, String>,
    /// The weekly counts recomputed from the entries (a whole run only),
    /// by their key as bytes ([`count_key`]).
    counted: Option<HashMap<Vec<u8>, i64>>,
    /// The key of the entry being counted (reused).
    scratch: Vec<u8>,
}

/// The Monday (UTC) that starts week `week` of the weekly counts.
fn week_date(week: i64) -> String {
    let ms = crate::store::log_counts::week_start_ms(week);
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| format!("week {week}"))
}

/// A weekly count's key as bytes: the week and the six texts, each ended
/// by a 0 byte (which no text of the log holds).
fn count_key(out: &mut Vec<u8>, week: i64, texts: [&[u8]; 6]) {
    out.clear();
    out.extend_from_slice(&week.to_be_bytes());
    for t in texts {
        out.extend_from_slice(t);
        out.push(0);
    }
}

/// What is wrong with a stored projection row, if anything.
fn projection_fault(name: &[u8], body: &[u8]) -> Option<&'static str> {
    if Projection::hash(body)[..] != *name {
        Some("its bytes do not hash to its name: the row was altered")
    } else if Projection::decode(body).is_none() {
        Some("it is not a canonical projection")
    } else {
        None
    }
}

impl<'h> Verifier<'h> {
    fn new(head: &'h LogHead, key: String, held: Vec<Held>) -> Self {
        Self {
            head,
            key,
            held,
            tree: CompactRange::default(),
            next_checkpoint: 0,
            next_held: 0,
            projections: head
                .projections
                .iter()
                .map(|(name, body)| (name.clone(), projection_fault(name, body)))
                .collect(),
            reasons: head
                .projections
                .iter()
                .filter_map(|(name, body)| {
                    let first = Projection::decode(body)?.decision.reasons.first()?.clone();
                    Some((name.clone(), first))
                })
                .collect(),
            counted: Some(HashMap::new()),
            scratch: Vec::new(),
        }
    }

    /// Checks the checkpoints of the current tree size.
    fn check_checkpoints(&mut self) -> Result<(), Failure> {
        let tree = &self.tree;
        while let Some(cp) = self
            .head
            .checkpoints
            .get(self.next_checkpoint)
            .filter(|c| c.size == tree.size())
        {
            self.next_checkpoint += 1;
            let at = tree.size().checked_sub(1);
            let (size, root) = checkpoint::open(&cp.note, &self.key).map_err(|e| Failure {
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
        while let Some(h) = self
            .held
            .get(self.next_held)
            .filter(|h| h.size == tree.size())
        {
            self.next_held += 1;
            if h.root != tree.root() {
                return fail(
                    tree.size().checked_sub(1),
                    format!(
                        "held checkpoint {} (size {}) does not match the log: entries were changed",
                        h.name, h.size
                    ),
                );
            }
        }
        Ok(())
    }

    fn batch(&mut self, batch: &LogBatch) -> Result<(), Failure> {
        let (mut subjects, mut hashes) = (&batch.subjects[..], &batch.hashes[..]);
        for row in &batch.entries {
            let i = self.tree.size();
            if row.idx != i {
                return fail(
                    i,
                    format!("entry {i} is missing (next stored index is {})", row.idx),
                );
            }
            let lh = leaf_hash(row.leaf());
            if row.leaf_hash() != lh.0 {
                return fail(i, "stored leaf hash does not match the leaf bytes");
            }
            let Some(entry) = LeafView::parse(row.leaf()) else {
                return fail(i, "leaf bytes are not a canonical entry");
            };
            if entry.index != i {
                return fail(i, format!("entry {} is stored at index {i}", entry.index));
            }
            if !columns_match(row, &entry) {
                return fail(i, "a stored column differs from the leaf bytes");
            }
            if let Some(name) = &entry.projection {
                match self.projections.get(&name[..]) {
                    None => {
                        return fail(
                            i,
                            format!(
                                "entry {i} names projection {}, which is not stored",
                                hex::encode(name)
                            ),
                        );
                    }
                    Some(Some(fault)) => {
                        return fail(
                            i,
                            format!(
                                "projection {} (named by entry {i}): {fault}",
                                hex::encode(name)
                            ),
                        );
                    }
                    Some(None) => {}
                }
            }
            // The rows up to this entry: a row of an earlier, missing index
            // counts as an empty pseudonym, which no entry has.
            let n = subjects.iter().take_while(|(idx, _)| *idx <= i).count();
            let stored = subjects[..n]
                .iter()
                .map(|(idx, p)| if *idx == i { &p[..] } else { b"" });
            if !stored.eq(entry.subjects.iter().map(|s| s.as_bytes())) {
                return fail(i, "the subject index differs from the leaf bytes");
            }
            subjects = &subjects[n..];
            self.count(row, &entry);
            let expected = self.tree.push(lh);
            let first = tlog_tiles::stored_hash_index(0, i);
            let end = first + expected.len() as u64;
            let n = hashes.iter().take_while(|h| h.id < end).count();
            let ok = n == expected.len()
                && hashes[..n]
                    .iter()
                    .zip(&expected)
                    .enumerate()
                    .all(|(k, (h, e))| h.id == first + k as u64 && h.hash == Some(e.0));
            if !ok {
                return fail(i, "stored tree hashes differ from the recomputed tree");
            }
            hashes = &hashes[n..];
            self.check_checkpoints()?;
        }
        Ok(())
    }

    /// Counts an entry (its columns match its leaf) in its weekly count.
    fn count(&mut self, row: &StoredRow, entry: &LeafView<'_>) {
        let Some(counted) = self.counted.as_mut() else {
            return;
        };
        let reason: &[u8] = match entry.outcome {
            Outcome::Denied => match (&entry.projection, &entry.reason) {
                (Some(name), _) => self.reasons.get(&name[..]).map_or(b"", |r| r.as_bytes()),
                (None, Some(r)) => r.as_bytes(),
                (None, None) => b"",
            },
            _ => b"",
        };
        let texts = [
            entry.action.as_str().as_bytes(),
            entry.actor_partner.as_bytes(),
            entry.recipient.as_deref().unwrap_or_default().as_bytes(),
            entry.purpose.as_deref().unwrap_or_default().as_bytes(),
            entry.outcome.as_str().as_bytes(),
            reason,
        ];
        count_key(&mut self.scratch, week_of(row.ts), texts);
        match counted.get_mut(&self.scratch[..]) {
            Some(n) => *n += 1,
            None => {
                counted.insert(self.scratch.clone(), 1);
            }
        }
    }

    /// A whole run: the stored weekly counts are the recomputed ones.
    fn check_counts(&mut self) -> Result<(), Failure> {
        let Some(counted) = self.counted.take() else {
            return Ok(());
        };
        let mut stored = HashMap::with_capacity(self.head.counts.0.len());
        for (k, n) in &self.head.counts.0 {
            let texts = [
                &k.action,
                &k.actor_partner,
                &k.recipient,
                &k.purpose,
                &k.outcome,
                &k.reason,
            ]
            .map(|t| t.as_bytes());
            count_key(&mut self.scratch, k.week, texts);
            stored.insert(self.scratch.clone(), *n);
        }
        if stored == counted {
            return Ok(());
        }
        // The first week whose counts differ (by key, either way).
        let week = |k: &Vec<u8>| {
            k.get(..8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes)
        };
        let differ = stored
            .iter()
            .filter(|(k, n)| counted.get(*k) != Some(n))
            .chain(counted.iter().filter(|(k, n)| stored.get(*k) != Some(n)))
            .filter_map(|(k, _)| week(k))
            .min();
        fail(
            None,
            format!(
                "the weekly counts (table log_counts) differ from the entries{}: the privacy officers' overview would show altered numbers",
                differ
                    .map(|w| format!(", first in the week of {}", week_date(w)))
                    .unwrap_or_default()
            ),
        )
    }

    /// After the last entry: the head, the checkpoints and the leftovers.
    fn finish(mut self, rest: &LogBatch) -> Result<Report, Failure> {
        let n = self.tree.size();
        let head_size = self.head.size;
        if head_size != n {
            return fail(
                n.min(head_size),
                format!("the log head counts {head_size} entries, the log holds {n}"),
            );
        }
        if let Some(cp) = self.head.checkpoints.get(self.next_checkpoint) {
            return fail(
                n,
                format!(
                    "a checkpoint covers {} entries but the log holds {n}: entries were removed",
                    cp.size
                ),
            );
        }
        if let Some(h) = self.held.get(self.next_held) {
            return fail(
                n,
                format!(
                    "held checkpoint {} covers {} entries but the log holds {n}: entries were removed",
                    h.name, h.size
                ),
            );
        }
        if !rest.subjects.is_empty() {
            return fail(n, "the subject index refers to entries that do not exist");
        }
        if !rest.hashes.is_empty() {
            return fail(n, "tree hashes stored beyond the last entry");
        }
        self.check_counts()?;
        // Rows no entry read here names (entries before `since`, or none).
        let mut faults: Vec<_> = self
            .projections
            .iter()
            .filter_map(|(name, fault)| fault.map(|f| (name, f)))
            .collect();
        faults.sort();
        if let Some((name, fault)) = faults.first() {
            return fail(
                None,
                format!("stored projection {}: {fault}", hex::encode(name)),
            );
        }
        Ok(Report {
            entries: n,
            read: n,
            since: None,
            checkpoints: self.head.checkpoints.len(),
            held: self.held.len(),
            root: self.tree.root(),
            witnessed: Vec::new(),
            newest: None,
        })
    }
}

/// Every column derived from the leaf equals it.
fn columns_match(row: &StoredRow, entry: &LeafView<'_>) -> bool {
    super::counts::time_ms(&entry.time) == Some(row.ts)
        && row.action() == entry.action.as_str().as_bytes()
        && row.actor_partner() == entry.actor_partner.as_bytes()
        && row.actor_role() == entry.actor_role.as_bytes()
        && row.recipient() == entry.recipient.as_deref().map(str::as_bytes)
        && row.purpose() == entry.purpose.as_deref().map(str::as_bytes)
        && row.outcome() == entry.outcome.as_str().as_bytes()
        && row.projection() == entry.projection.as_ref().map(|p| &p[..])
        && row.actor_user() == entry.user.as_deref().map(str::as_bytes)
}
