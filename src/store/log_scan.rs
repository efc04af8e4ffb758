//! The whole disclosure log in index order, for `log verify`: read in one
//! snapshot (so a log that grows meanwhile is still checked as one state)
//! and handed over in batches that line the three tables up.
//!
//! This bypasses the `Any` pool: per row, sqlx's SQLite driver hands a
//! message from its worker thread to the reader (a futex wake-up each) and
//! `Any` copies every value, which made up most of the 44 s a 1.1M-entry
//! log took. SQLite is read with rusqlite on a thread of its own (the same
//! SQLite library), PostgreSQL through native sqlx connections.

use std::str::FromStr;

use anyhow::Context;
use futures::TryStreamExt;
use futures::executor::block_on;
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::ledger::StoredCheckpoint;
use super::{Backend, Db};

/// Entries per batch: large enough to amortise a hand-over, small enough
/// to keep memory flat (about 1.5 MB).
const BATCH: usize = 1024;

const ENTRIES: &str = "SELECT idx, ts, leaf, leaf_hash, action, actor_partner, actor_role, recipient, purpose, outcome \
     FROM log_entries ORDER BY idx";
const SUBJECTS: &str = "SELECT idx, pseudonym FROM log_subjects ORDER BY idx, pseudonym";
const HASHES: &str = "SELECT id, hash FROM log_hashes ORDER BY id";
const HEAD: &str = "SELECT origin, verifier_key, size FROM log_head WHERE id = 1";
const CHECKPOINTS: &str = "SELECT size, root, note FROM log_checkpoints ORDER BY size";

/// The log head as the scan sees it.
pub struct LogHead {
    pub origin: String,
    pub verifier_key: String,
    pub size: u64,
    pub checkpoints: Vec<StoredCheckpoint>,
}

/// An entry row as stored. The byte and text columns share one buffer.
pub struct StoredRow {
    pub idx: u64,
    pub ts: i64,
    buf: Vec<u8>,
    /// Where each of the `COLUMNS` lies in `buf`; `None` for NULL.
    spans: [Option<(u32, u32)>; COLUMNS],
}

/// leaf, leaf_hash, action, actor_partner, actor_role, recipient, purpose, outcome
const COLUMNS: usize = 8;

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
    pub async fn scan_log(&self) -> anyhow::Result<LogScan> {
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
                        if let Err(e) = scan_sqlite(&path, head_tx, &tx) {
                            let _ = tx.blocking_send(Err(e));
                        }
                    })?;
            }
            Backend::Postgres => {
                let url = self.url.clone();
                tokio::spawn(async move {
                    if let Err(e) = scan_postgres(&url, head_tx, &tx).await {
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

/// One connection, one read transaction; the three queries step side by side.
fn scan_sqlite(
    path: &std::path::Path,
    head_tx: oneshot::Sender<Option<LogHead>>,
    tx: &Batches,
) -> anyhow::Result<()> {
    use rusqlite::OptionalExtension;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", path.display()))?;
    // Not memory-mapped: measured no faster (page faults cost what the
    // copies save) and the mapped file would count as resident memory.
    conn.execute_batch("BEGIN")?;
    let head = conn
        .query_row(HEAD, [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })
        .optional()?;
    let Some((origin, verifier_key, size)) = head else {
        let _ = head_tx.send(None);
        return Ok(());
    };
    let checkpoints = conn
        .prepare(CHECKPOINTS)?
        .query_map([], |r| Ok(checkpoint(r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let head = LogHead {
        origin,
        verifier_key,
        size,
        checkpoints,
    };
    if head_tx.send(Some(head)).is_err() {
        return Ok(());
    }
    let (mut e, mut s, mut h) = (
        conn.prepare(ENTRIES)?,
        conn.prepare(SUBJECTS)?,
        conn.prepare(HASHES)?,
    );
    let mut scan = SqliteScan {
        entries: e.query([])?,
        subjects: s.query([])?,
        hashes: h.query([])?,
    };
    block_on(scan.send_batches(tx))
}

/// A connection per query, all three in one snapshot (exported by the
/// first, adopted by the others), so the server streams the three tables
/// side by side while this process checks.
async fn scan_postgres(
    url: &str,
    head_tx: oneshot::Sender<Option<LogHead>>,
    tx: &Batches,
) -> anyhow::Result<()> {
    // JIT compilation only delays queries that read every row once.
    const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL jit = off";
    let mut e = PgConnection::connect(url).await?;
    let (mut s, mut h) = (
        PgConnection::connect(url).await?,
        PgConnection::connect(url).await?,
    );
    sqlx::raw_sql(BEGIN).execute(&mut e).await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut e)
        .await?;
    anyhow::ensure!(
        snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
        "unexpected snapshot id {snapshot:?}"
    );
    for conn in [&mut s, &mut h] {
        let sql = format!("{BEGIN}; SET TRANSACTION SNAPSHOT '{snapshot}'");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(conn)
            .await?;
    }
    let Some(r) = sqlx::query(HEAD).fetch_optional(&mut e).await? else {
        let _ = head_tx.send(None);
        return Ok(());
    };
    let checkpoints = sqlx::query(CHECKPOINTS)
        .fetch_all(&mut e)
        .await?
        .iter()
        .map(|c| Ok(checkpoint(c.try_get(0)?, c.try_get(1)?, c.try_get(2)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let head = LogHead {
        origin: r.try_get(0)?,
        verifier_key: r.try_get(1)?,
        size: r.try_get::<i64, _>(2)? as u64,
        checkpoints,
    };
    if head_tx.send(Some(head)).is_err() {
        return Ok(());
    }
    let mut scan = PgScan {
        entries: sqlx::query(ENTRIES).fetch(&mut e),
        subjects: sqlx::query(SUBJECTS).fetch(&mut s),
        hashes: sqlx::query(HASHES).fetch(&mut h),
    };
    scan.send_batches(tx).await
}

/// The three ordered queries of a scan, read a row at a time.
trait Tables {
    async fn entry(&mut self) -> anyhow::Result<Option<StoredRow>>;
    async fn subject(&mut self) -> anyhow::Result<Option<SubjectRow>>;
    async fn hash(&mut self) -> anyhow::Result<Option<HashRow>>;

    /// Sends the batches. Stops early when the receiver is gone
    /// (verification failed).
    async fn send_batches(&mut self, tx: &Batches) -> anyhow::Result<()> {
        let mut subject = self.subject().await?;
        let mut hash = self.hash().await?;
        let mut end = 0u64;
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

/// The three queries of one connection, stepped side by side.
struct SqliteScan<'c> {
    entries: rusqlite::Rows<'c>,
    subjects: rusqlite::Rows<'c>,
    hashes: rusqlite::Rows<'c>,
}

fn bytes<'r>(r: &'r rusqlite::Row<'_>, k: usize) -> anyhow::Result<Option<&'r [u8]>> {
    Ok(r.get_ref(k)?.as_bytes_or_null()?)
}

impl Tables for SqliteScan<'_> {
    async fn entry(&mut self) -> anyhow::Result<Option<StoredRow>> {
        let Some(r) = self.entries.next()? else {
            return Ok(None);
        };
        let b = |k| bytes(r, k);
        let values = [b(2)?, b(3)?, b(4)?, b(5)?, b(6)?, b(7)?, b(8)?, b(9)?];
        Ok(Some(StoredRow::new(r.get(0)?, r.get(1)?, values)))
    }

    async fn subject(&mut self) -> anyhow::Result<Option<SubjectRow>> {
        let Some(r) = self.subjects.next()? else {
            return Ok(None);
        };
        let p = bytes(r, 1)?.unwrap_or_default();
        Ok(Some((r.get::<_, i64>(0)? as u64, p.into())))
    }

    async fn hash(&mut self) -> anyhow::Result<Option<HashRow>> {
        let Some(r) = self.hashes.next()? else {
            return Ok(None);
        };
        Ok(Some(HashRow::new(
            r.get(0)?,
            bytes(r, 1)?.unwrap_or_default(),
        )))
    }
}

/// Binary rows, borrowed while copied out.
struct PgScan<'c> {
    entries: BoxStream<'c, Result<PgRow, sqlx::Error>>,
    subjects: BoxStream<'c, Result<PgRow, sqlx::Error>>,
    hashes: BoxStream<'c, Result<PgRow, sqlx::Error>>,
}

impl Tables for PgScan<'_> {
    async fn entry(&mut self) -> anyhow::Result<Option<StoredRow>> {
        let Some(r) = self.entries.try_next().await? else {
            return Ok(None);
        };
        let t = |k| {
            r.try_get::<Option<&str>, _>(k)
                .map(|v| v.map(str::as_bytes))
        };
        let values = [
            r.try_get::<Option<&[u8]>, _>(2)?,
            r.try_get::<Option<&[u8]>, _>(3)?,
            t(4)?,
            t(5)?,
            t(6)?,
            t(7)?,
            t(8)?,
            t(9)?,
        ];
        Ok(Some(StoredRow::new(r.try_get(0)?, r.try_get(1)?, values)))
    }

    async fn subject(&mut self) -> anyhow::Result<Option<SubjectRow>> {
        let Some(r) = self.subjects.try_next().await? else {
            return Ok(None);
        };
        let p: &str = r.try_get(1)?;
        Ok(Some((r.try_get::<i64, _>(0)? as u64, p.as_bytes().into())))
    }

    async fn hash(&mut self) -> anyhow::Result<Option<HashRow>> {
        let Some(r) = self.hashes.try_next().await? else {
            return Ok(None);
        };
        Ok(Some(HashRow::new(r.try_get(0)?, r.try_get(1)?)))
    }
}
