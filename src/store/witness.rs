//! The witness's own SQLite file (`ketenpoort witness serve`): the latest
//! checkpoint it cosigned per log origin. Not the gateway's database: a
//! witness runs at another organisation, with nothing of the log but this.

use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

/// The latest checkpoint a witness cosigned for one origin.
#[derive(Clone, Debug)]
pub struct Witnessed {
    pub size: u64,
    pub root: [u8; 32],
}

#[derive(Clone)]
pub struct WitnessDb {
    pool: SqlitePool,
}

impl WitnessDb {
    /// Opens (creating) the file; every write is durable before it returns
    /// (`synchronous = FULL`): the witness answers only after persisting.
    pub async fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = sqlx::pool::PoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS witnessed (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, \
             root BLOB NOT NULL, note TEXT NOT NULL, updated_at INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await?;
        Ok(Self { pool })
    }

    pub async fn latest(&self, origin: &str) -> Result<Option<Witnessed>, sqlx::Error> {
        let row = sqlx::query("SELECT size, root FROM witnessed WHERE origin = $1")
            .bind(origin)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let root: Vec<u8> = r.try_get("root")?;
            Ok(Witnessed {
                size: r.try_get::<i64, _>("size")? as u64,
                root: root.try_into().unwrap_or_default(),
            })
        })
        .transpose()
    }

    /// Records `note` (size, root) as the latest for `origin`. The caller
    /// holds the witness's lock from reading `latest` to this.
    pub async fn record(
        &self,
        origin: &str,
        size: u64,
        root: &[u8; 32],
        note: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO witnessed (origin, size, root, note, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, \
             note = excluded.note, updated_at = excluded.updated_at",
        )
        .bind(origin)
        .bind(size as i64)
        .bind(&root[..])
        .bind(note)
        .bind(super::now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
