//! Entries counted per week (migration 0020): what the privacy officer's
//! overview reads instead of the entries themselves. Counts are added in
//! the transaction that appends the entries they count, so the rows always
//! add up to the log's size; `ledger::counts` derives the keys from the
//! entries, counts a log that predates the table, and `log verify`
//! recomputes every row.

use std::collections::BTreeMap;

use sqlx::Row;

use super::console::{MONDAY_OFFSET_MS, WEEK_MS};
use super::ledger::Visibility;
use super::statements::{Arg, Statements};
use super::{Db, WriteTx};

/// What one row counts. Text columns hold '' for none (a key column cannot
/// be NULL on PostgreSQL).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountKey {
    /// Weeks since Monday 1969-12-29, UTC (ISO weeks start on Monday).
    pub week: i64,
    pub action: String,
    pub actor_partner: String,
    pub recipient: String,
    pub purpose: String,
    pub outcome: String,
    /// A refusal's first reason code ('' for any other outcome).
    pub reason: String,
}

/// The week (as [`CountKey::week`]) of a time in ms since the epoch.
pub fn week_of(ts_ms: i64) -> i64 {
    (ts_ms + MONDAY_OFFSET_MS).div_euclid(WEEK_MS)
}

/// The first millisecond (Monday 00:00 UTC) of a week of [`week_of`].
pub fn week_start_ms(week: i64) -> i64 {
    week * WEEK_MS - MONDAY_OFFSET_MS
}

/// Counts per key, as added or as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<CountKey, i64>);

impl Counts {
    pub fn add(&mut self, key: CountKey) {
        *self.0.entry(key).or_default() += 1;
    }
}

/// Rows per upsert: 8 parameters a row, well below both backends' limits.
const ROWS_PER_STATEMENT: usize = 100;

const COLUMNS: &str = "week, action, actor_partner, recipient, purpose, outcome, reason";

impl Counts {
    /// The upserts that add these counts to the stored ones.
    pub(crate) fn upserts<'q>(&'q self, st: &mut Statements<'q>) {
        st.values(
            &format!("INSERT INTO log_counts ({COLUMNS}, n)"),
            8,
            ROWS_PER_STATEMENT,
            self.0
                .iter()
                .map(|(k, n)| {
                    vec![
                        Arg::Int(k.week),
                        Arg::Text(&k.action),
                        Arg::Text(&k.actor_partner),
                        Arg::Text(&k.recipient),
                        Arg::Text(&k.purpose),
                        Arg::Text(&k.outcome),
                        Arg::Text(&k.reason),
                        Arg::Int(*n),
                    ]
                })
                .collect(),
            &format!(" ON CONFLICT ({COLUMNS}) DO UPDATE SET n = log_counts.n + excluded.n"),
        );
    }
}

impl WriteTx {
    /// Adds `counts` to the stored ones (in the entries' transaction).
    pub async fn add_log_counts(&mut self, counts: &Counts) -> Result<(), sqlx::Error> {
        let mut st = Statements::new(self.backend);
        counts.upserts(&mut st);
        st.execute(self.conn()).await
    }
}

impl Db {
    /// Entries counted so far (the log's size once counting caught up).
    pub async fn log_counts_total(&self) -> Result<u64, sqlx::Error> {
        let n: Option<i64> = sqlx::query_scalar("SELECT CAST(SUM(n) AS BIGINT) FROM log_counts")
            .fetch_one(self.pool())
            .await?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// The counts of weeks `from_week..to_week` that `vis` may see
    /// (`None`: every week, for `log verify`).
    pub async fn log_counts(
        &self,
        vis: &Visibility,
        weeks: Option<(i64, i64)>,
    ) -> Result<Counts, sqlx::Error> {
        let mut sql = format!("SELECT {COLUMNS}, n FROM log_counts e WHERE 1 = 1");
        if let Some((from, to)) = weeks {
            // Numbers are inlined: they are integers, not text.
            sql.push_str(&format!(" AND e.week >= {from} AND e.week < {to}"));
        }
        let mut args = Vec::new();
        vis.restrict(&mut sql, &mut args);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q.fetch_all(self.pool()).await?;
        let mut out = Counts::default();
        for r in &rows {
            let key = CountKey {
                week: r.try_get("week")?,
                action: r.try_get("action")?,
                actor_partner: r.try_get("actor_partner")?,
                recipient: r.try_get("recipient")?,
                purpose: r.try_get("purpose")?,
                outcome: r.try_get("outcome")?,
                reason: r.try_get("reason")?,
            };
            out.0.insert(key, r.try_get("n")?);
        }
        Ok(out)
    }
}
