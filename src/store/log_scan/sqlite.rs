//! The SQLite half of the log scan: one rusqlite connection on a thread of
//! its own, one read transaction, the three queries stepped side by side.

use anyhow::Context;
use futures::executor::block_on;
use tokio::sync::oneshot;

use super::{
    Batches, CHECKPOINTS, COUNTS, ENTRIES, HASHES, HEAD, HashRow, LogHead, PROJECTIONS, SUBJECTS,
    Scope, StoredRow, SubjectRow, Tables, checkpoint,
};

/// One connection, one read transaction; the three queries step side by side.
pub(super) fn scan(
    path: &std::path::Path,
    scope: Scope,
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
    let binds = scope.binds();
    let checkpoints = conn
        .prepare(CHECKPOINTS)?
        .query_map([binds.2], |r| {
            Ok(checkpoint(r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let projections = conn
        .prepare(PROJECTIONS)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut counts = crate::store::log_counts::Counts::default();
    let mut stmt = conn.prepare(COUNTS)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let key = crate::store::log_counts::CountKey {
            week: r.get(0)?,
            action: r.get(1)?,
            actor_partner: r.get(2)?,
            recipient: r.get(3)?,
            purpose: r.get(4)?,
            outcome: r.get(5)?,
            reason: r.get(6)?,
        };
        counts.0.insert(key, r.get(7)?);
    }
    drop(rows);
    drop(stmt);
    let head = LogHead {
        origin,
        verifier_key,
        size,
        checkpoints,
        projections,
        counts,
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
        entries: e.query([binds.0])?,
        subjects: s.query([binds.0])?,
        hashes: h.query([binds.1])?,
    };
    block_on(scan.send_batches(scope.from, tx))
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
        let values = [
            b(2)?,
            b(3)?,
            b(4)?,
            b(5)?,
            b(6)?,
            b(7)?,
            b(8)?,
            b(9)?,
            b(10)?,
            b(11)?,
        ];
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
