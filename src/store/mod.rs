//! All SQL of ketenpoort, and nothing else: `Db` (reads, pooled) and
//! `WriteTx` (one write transaction, savepoints for the log's units) with
//! methods per table group — `signals`, `partners`, `ledger`, `log_scan`
//! (`log verify`'s bulk read), `phenomena`. One sqlx `Any` pool serves
//! SQLite (the embedded default, WAL) and PostgreSQL (several instances);
//! SQL that differs between the two stays inside this module. It reads and
//! writes the plain types of `crate::model` and never imports the modules
//! that use it.

pub mod clients;
pub mod console;
pub mod idempotency;
pub mod ledger;
pub mod log_counts;
pub mod log_scan;
pub mod partners;
pub mod phenomena;
pub mod signals;
pub mod statements;
pub mod witness;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How long the database may keep a writer waiting (PostgreSQL; see
/// `database.*_timeout_secs`). 0 turns a bound off.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub lock_timeout_secs: u64,
    pub statement_timeout_secs: u64,
    pub idle_in_transaction_timeout_secs: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        let d = crate::config::DatabaseConfig::default();
        Self::from(&d)
    }
}

impl From<&crate::config::DatabaseConfig> for Bounds {
    fn from(d: &crate::config::DatabaseConfig) -> Self {
        Self {
            lock_timeout_secs: d.lock_timeout_secs,
            statement_timeout_secs: d.statement_timeout_secs,
            idle_in_transaction_timeout_secs: d.idle_in_transaction_timeout_secs,
        }
    }
}

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// For connections outside the pool (`log verify` reads natively).
    url: Arc<str>,
    /// SQLite allows one writer; queueing here is cheaper than its busy loop.
    sqlite_writer: Arc<Mutex<()>>,
    bounds: Bounds,
}

/// A write transaction. Dropping it without `commit` rolls it back by
/// closing its connection: a connection whose transaction failed half-way
/// (a full disk, an I/O error, a lost session) never goes back to the pool,
/// so no broken transaction state is carried into the next one.
pub struct WriteTx {
    conn: PoolConnection<Any>,
    /// `BEGIN` ran and neither `COMMIT` nor `ROLLBACK` succeeded yet.
    open: bool,
    backend: Backend,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

impl WriteTx {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// Commits; if the commit fails the connection is closed, not reused.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.conn().execute("COMMIT").await?;
        self.open = false;
        Ok(())
    }

    /// Opens a savepoint inside the transaction (one unit of a batch).
    pub async fn savepoint(&mut self) -> Result<(), sqlx::Error> {
        self.conn().execute("SAVEPOINT unit").await.map(drop)
    }

    /// Keeps what happened since [`WriteTx::savepoint`].
    pub async fn release_savepoint(&mut self) -> Result<(), sqlx::Error> {
        self.conn()
            .execute("RELEASE SAVEPOINT unit")
            .await
            .map(drop)
    }

    /// On PostgreSQL, no statement of this transaction may run longer
    /// than `statement_timeout_secs` (the disclosure log's batches, which
    /// hold the log head).
    pub async fn bound_statements(&mut self, secs: u64) -> Result<(), sqlx::Error> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        let sql = format!("SET LOCAL statement_timeout = '{secs}s'");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(self.conn())
            .await
            .map(drop)
    }

    /// Undoes what happened since [`WriteTx::savepoint`].
    pub async fn rollback_to_savepoint(&mut self) -> Result<(), sqlx::Error> {
        self.conn()
            .execute("ROLLBACK TO SAVEPOINT unit")
            .await
            .map(drop)?;
        self.release_savepoint().await
    }
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        Self::connect_bounded(url, max_connections, Bounds::default()).await
    }

    /// [`Db::connect`] with the configured bounds on PostgreSQL sessions.
    pub async fn connect_bounded(
        url: &str,
        max_connections: u32,
        bounds: Bounds,
    ) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            bail!("database.url must start with sqlite: or postgres://");
        };
        if backend == Backend::Sqlite {
            ensure_sqlite_dir(url)?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            // On SQLite a ping is a round trip to the connection's worker
            // thread (a connection to a local file does not go stale), so no
            // ping before every acquire; PostgreSQL connections can die with
            // a restart or failover, so they are still tested.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // Durable commits (FULL); a lock not granted within
                    // `lock_timeout` (SQLite: 10 s) is an error, so a stuck
                    // peer fails requests (503) instead of hanging them. On
                    // PostgreSQL a session idle inside a transaction is ended
                    // by the server, and the server probes the session's
                    // socket (TCP keepalive): a lost instance releases the log
                    // head within seconds, not never.
                    let setup = match backend {
                        Backend::Sqlite => "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                             PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000; \
                             PRAGMA secure_delete=ON;"
                            .to_owned(),
                        Backend::Postgres => format!(
                            "SET lock_timeout = '{}s'; SET idle_in_transaction_session_timeout = '{}s'; \
                             SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; \
                             SET tcp_keepalives_count = 3; SET synchronous_commit = on;",
                            bounds.lock_timeout_secs, bounds.idle_in_transaction_timeout_secs
                        ),
                    };
                    // Numbers from the configuration only: no caller's text.
                    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .context("cannot connect to the database")?;
        Ok(Self {
            pool,
            backend,
            url: url.into(),
            sqlite_writer: Arc::new(Mutex::new(())),
            bounds,
        })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        };
        migrator
            .run(&self.pool)
            .await
            .context("database migration failed")
    }

    /// The longest a disclosure-log batch may take before its COMMIT, on
    /// PostgreSQL: the wait for the log head plus one statement's bound
    /// (`lock_timeout_secs + statement_timeout_secs`); none when that is 0,
    /// and none on SQLite (a local file, its lock waits bounded by its busy
    /// timeout).
    pub fn batch_deadline(&self) -> Option<Duration> {
        let b = self.bounds;
        let secs = b.lock_timeout_secs.saturating_add(b.statement_timeout_secs);
        (self.backend == Backend::Postgres && secs > 0).then(|| Duration::from_secs(secs))
    }

    /// Runs a background writer's transaction (retention, a release) under
    /// a client-side deadline, as the log's batches run: on PostgreSQL the
    /// wait for locks plus `statements` times the statement bound plus 5 s
    /// for COMMIT; past it the transaction is dropped (its connection
    /// closed, never reused) and the writer gets a timeout error. A
    /// database that stops answering then ends the run instead of holding
    /// the task, and its locks, forever. Unbounded on SQLite (a local file,
    /// its waits bounded by its busy timeout) and when the bounds are 0.
    pub async fn bounded<T, E: From<sqlx::Error>>(
        &self,
        statements: u32,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let b = self.bounds;
        if self.backend != Backend::Postgres || b.statement_timeout_secs == 0 {
            return work.await;
        }
        let secs = b.lock_timeout_secs + u64::from(statements) * b.statement_timeout_secs + 5;
        tokio::time::timeout(Duration::from_secs(secs), work)
            .await
            .unwrap_or_else(|_| {
                Err(E::from(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the database did not answer within the writer's deadline",
                ))))
            })
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// On SQLite, the in-process writer's turn, which every write takes
    /// first: a write that meets SQLite's lock instead sleeps in SQLite's
    /// busy handler (up to 100 ms at a time), and every request waiting on
    /// the log waits with it. PostgreSQL needs none.
    async fn writer_turn(&self) -> Option<OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Sqlite => Some(self.sqlite_writer.clone().lock_owned().await),
            Backend::Postgres => None,
        }
    }

    /// Runs one writing statement outside a write transaction, in the
    /// writer's turn.
    pub(crate) async fn execute_write(
        &self,
        q: sqlx::query::Query<'_, Any, sqlx::any::AnyArguments>,
    ) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        let _turn = self.writer_turn().await;
        q.execute(&self.pool).await
    }

    /// Begins a write transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`) so a transaction never fails half-way on a busy file.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let writer = self.writer_turn().await;
        let mut conn = self.pool.acquire().await?;
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        if let Err(e) = (&mut *conn).execute(begin).await {
            conn.close_on_drop();
            return Err(e);
        }
        Ok(WriteTx {
            conn,
            open: true,
            backend: self.backend,
            _writer: writer,
        })
    }

    /// After a purge: SQLite's WAL still holds the pages as they were before
    /// the delete (the wrapped data keys among them) until it is checkpointed
    /// and truncated; `secure_delete` then leaves zeros in the database file.
    /// A reader holding an older snapshot (a running `log verify`) keeps it
    /// from truncating: that is reported, and the next retention run tries
    /// again. PostgreSQL keeps dead rows in its pages until they are reused
    /// (see the README); there is nothing to run here for it.
    pub async fn erase_deleted(&self) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Sqlite {
            let _turn = self.writer_turn().await;
            let busy: i64 = sqlx::query_scalar("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.pool)
                .await?;
            if busy != 0 {
                tracing::warn!(
                    "the WAL could not be truncated (a reader is busy); retried next run"
                );
            }
        }
        Ok(())
    }

    /// On SQLite, the bytes free for the database on its file system (a
    /// full disk stops every write); `None` on PostgreSQL or if unknown.
    pub fn sqlite_free_bytes(&self) -> Option<u64> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let file = sqlite_path(&self.url)?;
        let dir = file.parent().filter(|p| !p.as_os_str().is_empty())?;
        let st = rustix::fs::statvfs(dir).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    pub async fn ping(&self) -> bool {
        match self.pool.acquire().await {
            Ok(mut c) => c.ping().await.is_ok(),
            Err(_) => false,
        }
    }
}

/// The database file of a SQLite URL (none for an in-memory database).
fn sqlite_path(url: &str) -> Option<&std::path::Path> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| std::path::Path::new(path))
}

fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let Some(path) = sqlite_path(url) else {
        return Ok(());
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch: the one timestamp representation both
/// backends store alike.
pub fn now_millis() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
