//! Disclosure-log tables. Appends run inside the caller's write transaction;
//! the `log_head` row is the sequencer (locked `FOR UPDATE` on PostgreSQL,
//! so instances sharing a database take turns; SQLite has one writer).

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};
use tlog_tiles::Hash;

use super::log_counts::{CountKey, Counts};
use super::statements::{Arg, Statements};
use super::{Backend, Db, WriteTx};

/// An entry to store: its leaf bytes, the columns derived from them, its
/// subjects and the tree hashes it completes.
pub struct EntryRow {
    pub idx: u64,
    pub leaf: Vec<u8>,
    pub leaf_hash: Hash,
    pub ts: i64,
    pub action: &'static str,
    pub actor_partner: String,
    pub actor_role: String,
    /// The acting user's reference (`usr1:...`): the console's search by
    /// user (migration 0021).
    pub actor_user: Option<String>,
    pub recipient: Option<String>,
    pub purpose: Option<String>,
    pub outcome: &'static str,
    /// The weekly count the entry adds to (`ledger::counts::key_of`).
    pub count: CountKey,
    pub subjects: Vec<String>,
    /// The projection the leaf names (v2, v3), stored once with the first
    /// entry that names it.
    pub projection: Option<ProjectionRow>,
    /// Stored tree hashes, from stored-hash id `stored_hash_index(0, idx)` on.
    pub hashes: Vec<Hash>,
    /// The request id of a disclosed entry whose request holds an
    /// `Idempotency-Key`: the key is marked in the entry's transaction.
    pub idempotent_request: Option<String>,
}

/// An entry as read back, with the bytes of the projection its leaf names.
pub struct StoredEntry {
    pub idx: u64,
    pub leaf: Vec<u8>,
    pub leaf_hash: Vec<u8>,
    pub action: String,
    pub actor_partner: String,
    pub recipient: Option<String>,
    /// The stored projection the leaf names (v2, v3), if any is stored.
    pub projection: Option<Vec<u8>>,
}

/// A projection of the log (see `ledger::entry::Projection`): its name,
/// the SHA-256 of `body`, and its canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectionRow {
    pub hash: [u8; 32],
    pub body: Vec<u8>,
}

/// Disclosures about one person to one recipient for one purpose under
/// one projection ([`Db::subject_disclosures`]).
pub struct SubjectGroup {
    pub recipient: Option<String>,
    pub purpose: Option<String>,
    /// The projection's name (as the entries' column holds it) and its
    /// stored bytes (its field names, legal basis).
    pub name: Vec<u8>,
    pub projection: Vec<u8>,
    pub first_ms: i64,
    pub last_ms: i64,
    pub count: i64,
}

pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Vec<u8>,
    pub note: String,
}

/// Which entries a reader may see (from the audit policy's scope).
#[derive(Clone, Debug)]
pub enum Visibility {
    All,
    /// Entries where the partner is actor or recipient.
    Partner(String),
    /// The partner's own `release-aggregate` entries only.
    OwnAggregate(String),
}

impl Visibility {
    /// Appends the scope to `sql` (a query over `log_entries e` with a
    /// `WHERE`), its values bound as `$n` after those already in `args`:
    /// the one place the audit scope is SQL.
    pub(crate) fn restrict(&self, sql: &mut String, args: &mut Vec<String>) {
        let mut bind = |clause: &str, v: &str| {
            args.push(v.to_owned());
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        match self {
            Visibility::All => {}
            Visibility::Partner(p) => {
                bind(" AND (e.actor_partner = ?", p);
                bind(" OR e.recipient = ?)", p);
            }
            Visibility::OwnAggregate(p) => {
                bind(
                    " AND e.actor_partner = ? AND e.action = 'release-aggregate'",
                    p,
                );
            }
        }
    }
}

/// Filters of the privacy officer's search. All optional; ANDed.
#[derive(Clone, Debug, Default)]
pub struct Search {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub actor: Option<String>,
    pub recipient: Option<String>,
    pub purpose: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub subject: Option<String>,
    /// The acting user's reference (`usr1:...`).
    pub user: Option<String>,
    /// Entries with an index above this one (the paging cursor).
    pub after: Option<u64>,
    pub limit: u32,
}

/// From `log_entries e`, with the projection joined in (`ENTRY_JOIN`).
const ENTRY_COLUMNS: &str =
    "e.idx, e.leaf, e.leaf_hash, e.action, e.actor_partner, e.recipient, p.body AS projection";
const ENTRY_JOIN: &str = "LEFT JOIN log_projections p ON p.hash = e.projection";

fn entry_from_row(r: &sqlx::any::AnyRow) -> Result<StoredEntry, sqlx::Error> {
    Ok(StoredEntry {
        idx: r.try_get::<i64, _>("idx")? as u64,
        leaf: r.try_get("leaf")?,
        leaf_hash: r.try_get("leaf_hash")?,
        action: r.try_get("action")?,
        actor_partner: r.try_get("actor_partner")?,
        recipient: r.try_get("recipient")?,
        projection: r.try_get("projection")?,
    })
}

fn hash_of(bytes: Vec<u8>) -> Result<Hash, sqlx::Error> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| sqlx::Error::Decode("stored hash is not 32 bytes".into()))?;
    Ok(Hash(arr))
}

/// `IN (...)` list of integers; safe to inline (numbers only).
fn int_list(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

impl WriteTx {
    /// Locks the sequencer and returns the current log size.
    /// Writes the log head row without changing it: a write probe that
    /// fails when the log cannot be written (a full disk).
    pub async fn touch_log_head(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE log_head SET size = size WHERE id = 1")
            .execute(self.conn())
            .await
            .map(drop)
    }

    pub async fn lock_log_head(&mut self) -> Result<u64, sqlx::Error> {
        let sql = match self.backend {
            Backend::Postgres => "SELECT size FROM log_head WHERE id = 1 FOR UPDATE",
            Backend::Sqlite => "SELECT size FROM log_head WHERE id = 1",
        };
        let size: i64 = sqlx::query_scalar(sql).fetch_one(self.conn()).await?;
        Ok(size as u64)
    }

    pub async fn log_hashes(&mut self, ids: &[u64]) -> Result<HashMap<u64, Hash>, sqlx::Error> {
        fetch_hashes(self.conn(), ids).await
    }

    /// Writes a batch of consecutive entries with multi-row inserts and
    /// moves the log head past them: on SQLite in one call (see
    /// [`Statements`]).
    pub async fn insert_log_entries(&mut self, rows: &[EntryRow]) -> Result<(), sqlx::Error> {
        let Some(last) = rows.last() else {
            return Ok(());
        };
        let mut st = Statements::new(self.backend);
        // Each projection once, if absent: a concurrent batch (another
        // instance) storing the same one leaves one row, the same bytes.
        let mut projections: Vec<&ProjectionRow> =
            rows.iter().filter_map(|e| e.projection.as_ref()).collect();
        projections.sort_by_key(|p| p.hash);
        projections.dedup_by_key(|p| p.hash);
        st.values(
            "INSERT INTO log_projections (hash, body)",
            2,
            ROWS_PER_STATEMENT,
            projections
                .iter()
                .map(|p| vec![Arg::Bytes(&p.hash), Arg::Bytes(&p.body)])
                .collect(),
            " ON CONFLICT (hash) DO NOTHING",
        );
        st.values(
            "INSERT INTO log_entries (idx, leaf, leaf_hash, ts, action, actor_partner, actor_role, recipient, purpose, outcome, projection, actor_user)",
            12,
            ROWS_PER_STATEMENT,
            rows.iter()
                .map(|e| {
                    vec![
                        Arg::Int(e.idx as i64),
                        Arg::Bytes(&e.leaf),
                        Arg::Bytes(&e.leaf_hash.0),
                        Arg::Int(e.ts),
                        Arg::Text(e.action),
                        Arg::Text(&e.actor_partner),
                        Arg::Text(&e.actor_role),
                        Arg::OptText(e.recipient.as_deref()),
                        Arg::OptText(e.purpose.as_deref()),
                        Arg::Text(e.outcome),
                        Arg::OptBytes(e.projection.as_ref().map(|p| &p.hash[..])),
                        Arg::OptText(e.actor_user.as_deref()),
                    ]
                })
                .collect(),
            "",
        );
        st.values(
            "INSERT INTO log_subjects (pseudonym, idx)",
            2,
            ROWS_PER_STATEMENT,
            rows.iter()
                .flat_map(|e| {
                    e.subjects
                        .iter()
                        .map(move |s| vec![Arg::Text(s), Arg::Int(e.idx as i64)])
                })
                .collect(),
            "",
        );
        st.values(
            "INSERT INTO log_hashes (id, hash)",
            2,
            ROWS_PER_STATEMENT,
            rows.iter()
                .flat_map(|e| {
                    let first = tlog_tiles::stored_hash_index(0, e.idx);
                    e.hashes.iter().enumerate().map(move |(i, h)| {
                        vec![Arg::Int((first + i as u64) as i64), Arg::Bytes(&h.0)]
                    })
                })
                .collect(),
            "",
        );
        for e in rows {
            if let Some(request) = &e.idempotent_request {
                super::idempotency::mark_logged(&mut st, request, e.idx);
            }
        }
        let mut counts = Counts::default();
        for e in rows {
            counts.add(e.count.clone());
        }
        counts.upserts(&mut st);
        st.push(
            "UPDATE log_head SET size = {} WHERE id = 1",
            vec![Arg::Int((last.idx + 1) as i64)],
        );
        st.execute(self.conn()).await
    }
}

/// Rows per multi-row insert: well below both backends' parameter limits.
const ROWS_PER_STATEMENT: usize = 200;

async fn fetch_hashes(
    conn: &mut AnyConnection,
    ids: &[u64],
) -> Result<HashMap<u64, Hash>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT id, hash FROM log_hashes WHERE id IN ({})",
        int_list(ids)
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<i64, _>("id")? as u64,
                hash_of(r.try_get("hash")?)?,
            ))
        })
        .collect()
}

impl Db {
    /// Creates the log head on first use; returns the stored (origin, verifier key).
    pub async fn init_log_head(
        &self,
        origin: &str,
        verifier_key: &str,
    ) -> Result<(String, String), sqlx::Error> {
        let q = sqlx::query(
            "INSERT INTO log_head (id, size, origin, verifier_key) VALUES (1, 0, $1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(origin)
        .bind(verifier_key);
        self.execute_write(q).await?;
        let row = sqlx::query("SELECT origin, verifier_key FROM log_head WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        Ok((row.try_get("origin")?, row.try_get("verifier_key")?))
    }

    pub async fn log_size(&self) -> Result<u64, sqlx::Error> {
        let size: i64 = sqlx::query_scalar("SELECT size FROM log_head WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        Ok(size as u64)
    }

    pub async fn log_hashes(&self, ids: &[u64]) -> Result<HashMap<u64, Hash>, sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        fetch_hashes(&mut conn, ids).await
    }

    /// Entries with `start <= idx < end`, in order.
    pub async fn log_entries(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, sqlx::Error> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM log_entries e {ENTRY_JOIN} WHERE e.idx >= $1 AND e.idx < $2 ORDER BY e.idx"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(start as i64)
            .bind(end as i64)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The privacy officer's search, restricted to what `vis` may see.
    pub async fn search_log(
        &self,
        vis: &Visibility,
        s: &Search,
    ) -> Result<Vec<StoredEntry>, sqlx::Error> {
        let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM log_entries e {ENTRY_JOIN} WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        vis.restrict(&mut sql, &mut args);
        let mut bind = |sql: &mut String, clause: &str, v: String| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        for (clause, v) in [
            (" AND e.actor_partner = ?", &s.actor),
            (" AND e.recipient = ?", &s.recipient),
            (" AND e.purpose = ?", &s.purpose),
            (" AND e.action = ?", &s.action),
            (" AND e.outcome = ?", &s.outcome),
            (
                " AND e.idx IN (SELECT idx FROM log_subjects WHERE pseudonym = ?)",
                &s.subject,
            ),
            (" AND e.actor_user = ?", &s.user),
        ] {
            if let Some(v) = v {
                bind(&mut sql, clause, v.clone());
            }
        }
        // Numbers are inlined: they are parsed integers, not text.
        if let Some(f) = s.from_ms {
            sql.push_str(&format!(" AND e.ts >= {f}"));
        }
        if let Some(t) = s.to_ms {
            sql.push_str(&format!(" AND e.ts < {t}"));
        }
        if let Some(a) = s.after {
            sql.push_str(&format!(" AND e.idx > {a}"));
        }
        sql.push_str(&format!(" ORDER BY e.idx LIMIT {}", s.limit));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q.fetch_all(self.pool()).await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// What was disclosed about one person (`pseudonym`), within what
    /// `vis` may see: the entries that name a projection grouped by
    /// recipient, purpose and projection (with its bytes), first and last
    /// time and count; and, one by one, the disclosed entries that name
    /// none (v1 leaves hold their fields inline). One pass over the
    /// person's rows of the subject index: the report of an access request
    /// does not grow with the rest of the log.
    pub async fn subject_disclosures(
        &self,
        vis: &Visibility,
        pseudonym: &str,
    ) -> Result<(Vec<SubjectGroup>, Vec<StoredEntry>), sqlx::Error> {
        let from = "FROM log_subjects s JOIN log_entries e ON e.idx = s.idx";
        // The projections' bodies are read apart (a few hundred rows), so
        // that the plan stays the subject index and then the entry by idx.
        let mut sql = format!(
            "SELECT e.recipient, e.purpose, e.projection, MIN(e.ts) AS first_ms, MAX(e.ts) AS last_ms, \
             COUNT(*) AS n {from} WHERE s.pseudonym = $1 AND e.outcome = 'disclosed' \
             AND e.projection IS NOT NULL"
        );
        let mut args = vec![pseudonym.to_owned()];
        vis.restrict(&mut sql, &mut args);
        sql.push_str(" GROUP BY e.recipient, e.purpose, e.projection");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q.fetch_all(self.pool()).await?;
        // Every stored projection: one per distinct grant, a few hundred
        // rows at most (as `log verify` reads them).
        let bodies: HashMap<Vec<u8>, Vec<u8>> = if rows.is_empty() {
            HashMap::new()
        } else {
            sqlx::query("SELECT hash, body FROM log_projections")
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|r| Ok((r.try_get("hash")?, r.try_get("body")?)))
                .collect::<Result<_, sqlx::Error>>()?
        };
        let groups = rows
            .iter()
            .map(|r| {
                let name: Vec<u8> = r.try_get("projection")?;
                let projection = bodies.get(&name).cloned().ok_or_else(|| {
                    sqlx::Error::Decode("an entry names a projection that is not stored".into())
                })?;
                Ok(SubjectGroup {
                    recipient: r.try_get("recipient")?,
                    purpose: r.try_get("purpose")?,
                    name,
                    projection,
                    first_ms: r.try_get("first_ms")?,
                    last_ms: r.try_get("last_ms")?,
                    count: r.try_get("n")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let mut sql = format!(
            "SELECT {ENTRY_COLUMNS} {from} {ENTRY_JOIN} WHERE s.pseudonym = $1 \
             AND e.outcome = 'disclosed' AND e.projection IS NULL"
        );
        let mut args = vec![pseudonym.to_owned()];
        vis.restrict(&mut sql, &mut args);
        sql.push_str(" ORDER BY e.idx");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        let single = q.fetch_all(self.pool()).await?;
        let single = single
            .iter()
            .map(entry_from_row)
            .collect::<Result<_, _>>()?;
        Ok((groups, single))
    }

    pub async fn insert_checkpoint(
        &self,
        size: u64,
        root: &Hash,
        note: &str,
    ) -> Result<(), sqlx::Error> {
        let q = sqlx::query(
            "INSERT INTO log_checkpoints (size, root, note, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING",
        )
        .bind(size as i64)
        .bind(&root.0[..])
        .bind(note)
        .bind(super::now_millis());
        self.execute_write(q).await?;
        Ok(())
    }

    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, sqlx::Error> {
        let row =
            sqlx::query("SELECT size, root, note FROM log_checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(self.pool())
                .await?;
        row.map(|r| checkpoint_from_row(&r)).transpose()
    }
}

impl Db {
    /// The newest checkpoint signed at or before `at_ms` (ms since the
    /// epoch): what a non-member sees (`ledger::publish`).
    pub async fn checkpoint_signed_by(
        &self,
        at_ms: i64,
    ) -> Result<Option<StoredCheckpoint>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT size, root, note FROM log_checkpoints WHERE created_at <= $1 ORDER BY size DESC LIMIT 1",
        )
        .bind(at_ms)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| checkpoint_from_row(&r)).transpose()
    }

    /// The log's first checkpoint (the smallest).
    pub async fn first_checkpoint(&self) -> Result<Option<StoredCheckpoint>, sqlx::Error> {
        let row = sqlx::query("SELECT size, root, note FROM log_checkpoints ORDER BY size LIMIT 1")
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| checkpoint_from_row(&r)).transpose()
    }
}

impl Db {
    /// The origin stored with the log, if there is a log.
    pub async fn log_origin(&self) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT origin FROM log_head WHERE id = 1")
            .fetch_optional(self.pool())
            .await
    }

    /// Keeps a witness's cosignature line of the checkpoint of `size`
    /// (the first one per witness and size).
    pub async fn insert_cosignature(
        &self,
        size: u64,
        witness: &str,
        line: &str,
    ) -> Result<(), sqlx::Error> {
        let q = sqlx::query(
            "INSERT INTO log_cosignatures (size, witness, line, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (size, witness) DO NOTHING",
        )
        .bind(size as i64)
        .bind(witness)
        .bind(line)
        .bind(super::now_millis());
        self.execute_write(q).await?;
        Ok(())
    }

    /// The cosignature lines of the checkpoint of `size`, by witness name.
    pub async fn cosignatures(&self, size: u64) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT line FROM log_cosignatures WHERE size = $1 ORDER BY witness")
            .bind(size as i64)
            .fetch_all(self.pool())
            .await
    }

    /// Every stored cosignature line of checkpoints of at least `from`
    /// entries: (size, line), by size.
    pub async fn cosignatures_from(&self, from: u64) -> Result<Vec<(u64, String)>, sqlx::Error> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT size, line FROM log_cosignatures WHERE size >= $1 ORDER BY size, witness",
        )
        .bind(from as i64)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(s, l)| (s as u64, l)).collect())
    }

    /// The largest size `witness` cosigned.
    pub async fn cosigned_size(&self, witness: &str) -> Result<Option<u64>, sqlx::Error> {
        let size: Option<i64> =
            sqlx::query_scalar("SELECT MAX(size) FROM log_cosignatures WHERE witness = $1")
                .bind(witness)
                .fetch_one(self.pool())
                .await?;
        Ok(size.map(|s| s as u64))
    }
}

fn checkpoint_from_row(r: &sqlx::any::AnyRow) -> Result<StoredCheckpoint, sqlx::Error> {
    Ok(StoredCheckpoint {
        size: r.try_get::<i64, _>("size")? as u64,
        root: r.try_get("root")?,
        note: r.try_get("note")?,
    })
}
