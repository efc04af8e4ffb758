//! Record keys, phenomenon contributions and releases; the egress guard's
//! fingerprints.

use std::collections::HashSet;

use sqlx::Row;

use super::{Db, WriteTx};

/// A contribution as stored: the month received (`dateReceived`) and the
/// category codes. The month it counts in is stored beside it.
pub struct ContributionRow {
    pub year: i32,
    pub month: u8,
    pub forms: Vec<String>,
    pub sector: String,
    pub location_type: String,
    pub municipality: String,
    pub victim_groups: Vec<String>,
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).expect("json")
}

fn list(r: &sqlx::any::AnyRow, col: &str) -> Result<Vec<String>, sqlx::Error> {
    let text: String = r.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(e.into()))
}

impl WriteTx {
    /// The signal's secret record key, made with the signal.
    pub async fn insert_record_key(
        &mut self,
        signal_id: &str,
        key: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO record_keys (id, signal_id, record_key) VALUES ($1, $2, $3)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(signal_id)
            .bind(key)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Records a contribution (`origin`: `referral` or `demo`) once per
    /// record key, counted in the month `counted`. With a signal, its record
    /// key is used (`key` only for a signal stored before record keys
    /// existed); without one (demo data), `key` becomes a new record key.
    pub async fn insert_contribution(
        &mut self,
        signal_id: Option<&str>,
        key: i64,
        origin: &str,
        c: &ContributionRow,
        counted: (i32, u8),
    ) -> Result<(), sqlx::Error> {
        let key_id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO record_keys (id, signal_id, record_key) VALUES ($1, $2, $3) \
             ON CONFLICT (signal_id) DO NOTHING",
        )
        .bind(&key_id)
        .bind(signal_id)
        .bind(key)
        .execute(self.conn())
        .await?;
        let key_id: String = match signal_id {
            Some(s) => {
                sqlx::query_scalar("SELECT id FROM record_keys WHERE signal_id = $1")
                    .bind(s)
                    .fetch_one(self.conn())
                    .await?
            }
            None => key_id,
        };
        sqlx::query(
            "INSERT INTO phenomenon_contributions (record_key_id, origin, year, month, counted_year, \
             counted_month, forms, sector, location_type, municipality, victim_groups) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (record_key_id) DO NOTHING",
        )
        .bind(key_id)
        .bind(origin)
        .bind(i64::from(c.year))
        .bind(i64::from(c.month))
        .bind(i64::from(counted.0))
        .bind(i64::from(counted.1))
        .bind(json_list(&c.forms))
        .bind(&c.sector)
        .bind(&c.location_type)
        .bind(&c.municipality)
        .bind(json_list(&c.victim_groups))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Contributions counted from January of `first_year` through
    /// (year, month) `last`, each with its record key and the month it
    /// counts in.
    pub async fn contributions(
        &mut self,
        first_year: i32,
        last: (i32, u8),
    ) -> Result<Vec<(i64, (i32, u8), ContributionRow)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT k.record_key, c.year, c.month, c.counted_year, c.counted_month, c.forms, c.sector, \
             c.location_type, c.municipality, c.victim_groups FROM phenomenon_contributions c \
             JOIN record_keys k ON k.id = c.record_key_id WHERE c.counted_year >= $1 AND \
             (c.counted_year < $2 OR (c.counted_year = $2 AND c.counted_month <= $3))",
        )
        .bind(i64::from(first_year))
        .bind(i64::from(last.0))
        .bind(i64::from(last.1))
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| {
                let row = ContributionRow {
                    year: r.try_get::<i64, _>("year")? as i32,
                    month: r.try_get::<i64, _>("month")? as u8,
                    forms: list(r, "forms")?,
                    sector: r.try_get("sector")?,
                    location_type: r.try_get("location_type")?,
                    municipality: r.try_get("municipality")?,
                    victim_groups: list(r, "victim_groups")?,
                };
                let counted = (
                    r.try_get::<i64, _>("counted_year")? as i32,
                    r.try_get::<i64, _>("counted_month")? as u8,
                );
                Ok((r.try_get("record_key")?, counted, row))
            })
            .collect()
    }

    /// Stores a release (under the log head lock, after `release_ids`
    /// found none with this id).
    pub async fn insert_release(
        &mut self,
        id: &str,
        created_at: i64,
        body: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO phenomenon_releases (id, created_at, body) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(created_at)
            .bind(body)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// The ids of the stored releases, in this transaction.
    pub async fn release_ids(&mut self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM phenomenon_releases")
            .fetch_all(self.conn())
            .await
    }

    pub async fn contribution_count(&mut self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM phenomenon_contributions")
            .fetch_one(self.conn())
            .await
    }

    /// The egress guard's fingerprints of a signal's values and ids.
    pub async fn insert_fingerprints(
        &mut self,
        signal_id: &str,
        fingerprints: &[Vec<u8>],
    ) -> Result<(), sqlx::Error> {
        for chunk in fingerprints.chunks(200) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "INSERT INTO egress_fingerprints (fingerprint, signal_id) VALUES {} ON CONFLICT DO NOTHING",
                rows.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for f in chunk {
                q = q.bind(f.as_slice()).bind(signal_id);
            }
            q.execute(self.conn()).await?;
        }
        Ok(())
    }
}

impl Db {
    pub async fn release(&self, id: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT body FROM phenomenon_releases WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
    }

    /// (seq, body) of releases after `after`, in the order they were made.
    pub async fn releases(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, sqlx::Error> {
        let sql = format!(
            "SELECT seq, body FROM phenomenon_releases WHERE seq > $1 ORDER BY seq LIMIT {limit}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.min(i64::MAX as u64) as i64)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>("seq")? as u64, r.try_get("body")?)))
            .collect()
    }

    pub async fn release_ids(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM phenomenon_releases")
            .fetch_all(self.pool())
            .await
    }

    /// Which of `candidates` are fingerprints of stored values.
    pub async fn known_fingerprints(
        &self,
        candidates: &[Vec<u8>],
    ) -> Result<HashSet<Vec<u8>>, sqlx::Error> {
        let mut found = HashSet::new();
        for chunk in candidates.chunks(500) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT DISTINCT fingerprint FROM egress_fingerprints WHERE fingerprint IN ({})",
                params.join(",")
            );
            let mut q = sqlx::query_scalar::<_, Vec<u8>>(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                q = q.bind(c.as_slice());
            }
            found.extend(q.fetch_all(self.pool()).await?);
        }
        Ok(found)
    }
}
