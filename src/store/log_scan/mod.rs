//! The whole disclosure log in index order, for `log verify` (invariant 3:
//! the log is tamper-evident): read in one snapshot (so a log that grows
//! meanwhile is still checked as one state) and handed over in batches that
//! line the three tables up.
//!
//! This bypasses the `Any` pool: per row, sqlx's SQLite driver hands a
//! message from its worker thread to the reader (a futex wake-up each) and
//! `Any` copies every value, which made up most of the 44 s a 1.1M-entry
//! log took. SQLite is read with rusqlite on a thread of its own (the same
//! SQLite library, [`sqlite`]), PostgreSQL through native sqlx connections
//! ([`postgres`]). Both feed the batching here through the `Tables` trait.

mod postgres;
mod sqlite;

use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use tokio::sync::{mpsc, oneshot};

use super::ledger::StoredCheckpoint;
use super::{Backend, Db};

/// Entries per batch: large enough to amortise a hand-over, small enough
/// to keep memory flat (about 1.5 MB).
const BATCH: usize = 1024;

// Each from a starting point ($1): index, stored-hash id, checkpoint size
// (all 0 for a whole scan; see `Scope`).
const ENTRIES: &str = "SELECT idx, ts, leaf, leaf_hash, action, actor_partner, actor_role, recipient, purpose, outcome, projection, actor_user \
     FROM log_entries WHERE idx >= $1 ORDER BY idx";
const SUBJECTS: &str =
    "SELECT idx, pseudonym FROM log_subjects WHERE idx >= $1 ORDER BY idx, pseudonym";
const HASHES: &str = "SELECT id, hash FROM log_hashes WHERE id >= $1 ORDER BY id";
const HEAD: &str = "SELECT origin, verifier_key, size FROM log_head WHERE id = 1";
/// Every stored projection (a few hundred rows at most: one per distinct
/// grant), read with the head in the same snapshot.
const PROJECTIONS: &str = "SELECT hash, body FROM log_projections ORDER BY hash";
/// The weekly counts (migration 0020), read with the head in the same
/// snapshot: a few rows per week.
const COUNTS: &str =
    "SELECT week, action, actor_partner, recipient, purpose, outcome, reason, n FROM log_counts";
const CHECKPOINTS: &str =
    "SELECT size, root, note FROM log_checkpoints WHERE size >= $1 ORDER BY size";

/// Where a scan starts: entry `from` on (and its subject rows, the tree
/// hashes of its records and the checkpoints of at least `from` entries).
#[derive(Clone, Copy, Default)]
pub struct Scope {
    pub from: u64,
}

impl Scope {
    /// The bind values of (entries and subjects, hashes, checkpoints).
    fn binds(self) -> (i64, i64, i64) {
        let from = self.from as i64;
        (
            from,
            tlog_tiles::stored_hash_index(0, self.from) as i64,
            from,
        )
    }
}

/// The log head as the scan sees it.
pub struct LogHead {
    pub origin: String,
    pub verifier_key: String,
    pub size: u64,
    pub checkpoints: Vec<StoredCheckpoint>,
    /// Every stored projection: (name, bytes) as stored (unchecked).
    pub projections: Vec<(Vec<u8>, Vec<u8>)>,
    /// The stored weekly counts, as stored (unchecked).
    pub counts: super::log_counts::Counts,
}

/// An entry row as stored. The byte and text columns share one buffer.
pub struct StoredRow {
    pub idx: u64,
    pub ts: i64,
    buf: Vec<u8>,
    /// Where each of the `COLUMNS` lies in `buf`; `None` for NULL.
    spans: [Option<(u32, u32)>; COLUMNS],
}

/// leaf, leaf_hash, action, actor_partner, actor_role, recipient, purpose,
/// outcome, projection, actor_user
const COLUMNS: usize = 10;

impl StoredRow {
    fn new(idx: i64, ts: i64, values: [Option<&[u8]>; COLUMNS]) -> Self {
        let mut buf = Vec::with_capacity(values.iter().flatten().map(|v| v.len()).sum());
        let spans = values.map(|v| {
            v.map(|v| {
                let start = buf.len() as u32;
                buf.extend_from_slice(v);
                (start, buf.len() as u32)
            })
        });
        Self {
            idx: idx as u64,
            ts,
            buf,
            spans,
        }
    }

    fn get(&self, k: usize) -> Option<&[u8]> {
        self.spans[k].map(|(a, b)| &self.buf[a as usize..b as usize])
    }

    /// A NOT NULL column (NULL reads as empty).
    fn required(&self, k: usize) -> &[u8] {
        self.get(k).unwrap_or_default()
    }

    pub fn leaf(&self) -> &[u8] {
        self.required(0)
    }
    pub fn leaf_hash(&self) -> &[u8] {
        self.required(1)
    }
    pub fn action(&self) -> &[u8] {
        self.required(2)
    }
    pub fn actor_partner(&self) -> &[u8] {
        self.required(3)
    }
    pub fn actor_role(&self) -> &[u8] {
        self.required(4)
    }
    pub fn recipient(&self) -> Option<&[u8]> {
        self.get(5)
    }
    pub fn purpose(&self) -> Option<&[u8]> {
        self.get(6)
    }
    pub fn outcome(&self) -> &[u8] {
        self.required(7)
    }
    pub fn projection(&self) -> Option<&[u8]> {
        self.get(8)
    }
    pub fn actor_user(&self) -> Option<&[u8]> {
        self.get(9)
    }
}

/// A row of the subject index: (idx, pseudonym).
pub type SubjectRow = (u64, Box<[u8]>);

/// A row of `log_hashes`; `hash` is `None` when the stored value is not 32
/// bytes (so it matches no hash).
pub struct HashRow {
    pub id: u64,
    pub hash: Option<[u8; 32]>,
}

impl HashRow {
    fn new(id: i64, hash: &[u8]) -> Self {
        Self {
            id: id as u64,
            hash: hash.try_into().ok(),
        }
    }
}

/// Consecutive entries with the subject rows and tree hashes that belong to
/// them. If the entries so far end at position `end` of the scan, the
/// subject rows continue, in order, up to the first with an idx of `end` or
/// more, and the tree hashes up to the first with an id of
/// `stored_hash_index(0, end)` or more. The last batch has no entries: it
/// holds the first row, if any, of what is left of each other table.
pub struct LogBatch {
    pub entries: Vec<StoredRow>,
    pub subjects: Vec<SubjectRow>,
    pub hashes: Vec<HashRow>,
}

/// A running scan: the head, then batches until one without entries (or
/// an error). Dropping it stops the reader.
pub struct LogScan {
    /// `None`: the database holds no log.
    pub head: Option<LogHead>,
    pub batches: mpsc::Receiver<anyhow::Result<LogBatch>>,
}

impl Db {
    /// The whole log (`scope` from 0) or what follows entry `scope.from`.
    pub async fn scan_log(&self, scope: Scope) -> anyhow::Result<LogScan> {
        let (head_tx, head_rx) = oneshot::channel();
        let (tx, batches) = mpsc::channel(4);
        match self.backend {
            Backend::Sqlite => {
                let path = SqliteConnectOptions::from_str(&self.url)?
                    .get_filename()
                    .to_owned();
                std::thread::Builder::new()
                    .name("log-scan".into())
                    .spawn(move || {
                        if let Err(e) = sqlite::scan(&path, scope, head_tx, &tx) {
                            let _ = tx.blocking_send(Err(e));
                        }
                    })?;
            }
            Backend::Postgres => {
                let url = self.url.clone();
                tokio::spawn(async move {
                    if let Err(e) = postgres::scan(&url, scope, head_tx, &tx).await {
                        let _ = tx.send(Err(e)).await;
                    }
                });
            }
        }
        match head_rx.await {
            Ok(head) => Ok(LogScan { head, batches }),
            // The reader failed before the head: its error is in `batches`.
            Err(_) => Ok(LogScan {
                head: None,
                batches,
            }),
        }
    }
}

type Batches = mpsc::Sender<anyhow::Result<LogBatch>>;

/// The three ordered queries of a scan, read a row at a time.
trait Tables {
    async fn entry(&mut self) -> anyhow::Result<Option<StoredRow>>;
    async fn subject(&mut self) -> anyhow::Result<Option<SubjectRow>>;
    async fn hash(&mut self) -> anyhow::Result<Option<HashRow>>;

    /// Sends the batches. Stops early when the receiver is gone
    /// (verification failed).
    async fn send_batches(&mut self, from: u64, tx: &Batches) -> anyhow::Result<()> {
        let mut subject = self.subject().await?;
        let mut hash = self.hash().await?;
        let mut end = from;
        loop {
            let mut entries = Vec::with_capacity(BATCH);
            while entries.len() < BATCH {
                match self.entry().await? {
                    Some(e) => entries.push(e),
                    None => break,
                }
            }
            let mut batch = LogBatch {
                subjects: Vec::new(),
                hashes: Vec::new(),
                entries,
            };
            let last = batch.entries.is_empty();
            end += batch.entries.len() as u64;
            let hash_end = tlog_tiles::stored_hash_index(0, end);
            while let Some(s) = subject.take() {
                if !last && s.0 >= end {
                    subject = Some(s);
                    break;
                }
                batch.subjects.push(s);
                if last {
                    break;
                }
                subject = self.subject().await?;
            }
            while let Some(h) = hash.take() {
                if !last && h.id >= hash_end {
                    hash = Some(h);
                    break;
                }
                batch.hashes.push(h);
                if last {
                    break;
                }
                hash = self.hash().await?;
            }
            if tx.send(Ok(batch)).await.is_err() || last {
                return Ok(());
            }
        }
    }
}

fn checkpoint(size: i64, root: Vec<u8>, note: String) -> StoredCheckpoint {
    StoredCheckpoint {
        size: size as u64,
        root,
        note,
    }
}
