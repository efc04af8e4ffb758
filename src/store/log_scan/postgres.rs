//! The PostgreSQL half of the log scan: three native sqlx connections that
//! share one exported snapshot, so the server streams the three tables side
//! by side.

use futures::TryStreamExt;
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Row};
use tokio::sync::oneshot;

use super::{
    Batches, CHECKPOINTS, COUNTS, ENTRIES, HASHES, HEAD, HashRow, LogHead, PROJECTIONS, SUBJECTS,
    Scope, StoredRow, SubjectRow, Tables, checkpoint,
};

/// A connection per query, all three in one snapshot (exported by the
/// first, adopted by the others), so the server streams the three tables
/// side by side while this process checks.
pub(super) async fn scan(
    url: &str,
    scope: Scope,
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
    let binds = scope.binds();
    let checkpoints = sqlx::query(CHECKPOINTS)
        .bind(binds.2)
        .fetch_all(&mut e)
        .await?
        .iter()
        .map(|c| Ok(checkpoint(c.try_get(0)?, c.try_get(1)?, c.try_get(2)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let projections = sqlx::query_as::<_, (Vec<u8>, Vec<u8>)>(PROJECTIONS)
        .fetch_all(&mut e)
        .await?;
    let mut counts = crate::store::log_counts::Counts::default();
    for c in sqlx::query(COUNTS).fetch_all(&mut e).await? {
        let key = crate::store::log_counts::CountKey {
            week: c.try_get(0)?,
            action: c.try_get(1)?,
            actor_partner: c.try_get(2)?,
            recipient: c.try_get(3)?,
            purpose: c.try_get(4)?,
            outcome: c.try_get(5)?,
            reason: c.try_get(6)?,
        };
        counts.0.insert(key, c.try_get(7)?);
    }
    let head = LogHead {
        origin: r.try_get(0)?,
        verifier_key: r.try_get(1)?,
        size: r.try_get::<i64, _>(2)? as u64,
        checkpoints,
        projections,
        counts,
    };
    if head_tx.send(Some(head)).is_err() {
        return Ok(());
    }
    let mut scan = PgScan {
        entries: sqlx::query(ENTRIES).bind(binds.0).fetch(&mut e),
        subjects: sqlx::query(SUBJECTS).bind(binds.0).fetch(&mut s),
        hashes: sqlx::query(HASHES).bind(binds.1).fetch(&mut h),
    };
    scan.send_batches(scope.from, tx).await
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
            r.try_get::<Option<&[u8]>, _>(10)?,
            t(11)?,
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
