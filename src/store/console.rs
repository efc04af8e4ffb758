//! The privacy officer's console: server-side sessions and the reviews of
//! control flags.

use sqlx::Row;

use super::{Db, WriteTx};

/// A console session as stored (the cookie holds the id; only its hash is
/// stored).
#[derive(Clone, Debug)]
pub struct SessionRow {
    pub partner: Option<String>,
    pub role: Option<String>,
    pub user_ref: Option<String>,
    pub provider: Option<String>,
    pub csrf: String,
    /// A sign-in in progress (JSON), for the OpenID Connect callback.
    pub pending: Option<String>,
    pub created_ms: i64,
    pub seen_ms: i64,
}

/// A reviewed control flag.
#[derive(Clone, Debug)]
pub struct ReviewRow {
    pub flag_id: String,
    pub reviewer: String,
    pub note: String,
    pub reviewed_ms: i64,
}

impl Db {
    pub async fn insert_console_session(
        &self,
        id_hash: &str,
        s: &SessionRow,
    ) -> Result<(), sqlx::Error> {
        let q = sqlx::query(
            "INSERT INTO console_sessions (id_hash, partner, role, user_ref, provider, csrf, pending, \
             created_ms, seen_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id_hash)
        .bind(s.partner.clone())
        .bind(s.role.clone())
        .bind(s.user_ref.clone())
        .bind(s.provider.clone())
        .bind(s.csrf.clone())
        .bind(s.pending.clone())
        .bind(s.created_ms)
        .bind(s.seen_ms);
        self.execute_write(q).await.map(drop)
    }

    pub async fn console_session(&self, id_hash: &str) -> Result<Option<SessionRow>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT partner, role, user_ref, provider, csrf, pending, created_ms, seen_ms \
             FROM console_sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                partner: r.try_get("partner")?,
                role: r.try_get("role")?,
                user_ref: r.try_get("user_ref")?,
                provider: r.try_get("provider")?,
                csrf: r.try_get("csrf")?,
                pending: r.try_get("pending")?,
                created_ms: r.try_get("created_ms")?,
                seen_ms: r.try_get("seen_ms")?,
            })
        })
        .transpose()
    }

    /// Records activity on a session (the idle timeout counts from here).
    /// The caller touches a session only when its `seen_ms` is older than a
    /// minute; the condition keeps two concurrent requests from both
    /// writing.
    pub async fn touch_console_session(
        &self,
        id_hash: &str,
        now_ms: i64,
        seen_before_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let q = sqlx::query(
            "UPDATE console_sessions SET seen_ms = $1 WHERE id_hash = $2 AND seen_ms < $3",
        )
        .bind(now_ms)
        .bind(id_hash)
        .bind(seen_before_ms);
        self.execute_write(q).await.map(drop)
    }

    pub async fn delete_console_session(&self, id_hash: &str) -> Result<(), sqlx::Error> {
        let q = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1").bind(id_hash);
        self.execute_write(q).await.map(drop)
    }

    /// Removes sessions not used since `before_ms` and those created before
    /// `created_before_ms` (expired either way).
    pub async fn purge_console_sessions(
        &self,
        before_ms: i64,
        created_before_ms: i64,
    ) -> Result<u64, sqlx::Error> {
        let q = sqlx::query("DELETE FROM console_sessions WHERE seen_ms < $1 OR created_ms < $2")
            .bind(before_ms)
            .bind(created_before_ms);
        Ok(self.execute_write(q).await?.rows_affected())
    }

    /// The reviews `partner`'s privacy officers recorded.
    pub async fn console_reviews(&self, partner: &str) -> Result<Vec<ReviewRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT flag_id, reviewer, note, reviewed_ms FROM console_reviews WHERE partner = $1",
        )
        .bind(partner)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReviewRow {
                    flag_id: r.try_get("flag_id")?,
                    reviewer: r.try_get("reviewer")?,
                    note: r.try_get("note")?,
                    reviewed_ms: r.try_get("reviewed_ms")?,
                })
            })
            .collect()
    }
}

impl WriteTx {
    /// Records (or replaces) a review, inside the transaction of its log entry.
    pub async fn upsert_console_review(
        &mut self,
        partner: &str,
        r: &ReviewRow,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO console_reviews (flag_id, partner, reviewer, note, reviewed_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (flag_id, partner) DO UPDATE SET \
             reviewer = excluded.reviewer, note = excluded.note, reviewed_ms = excluded.reviewed_ms",
        )
        .bind(r.flag_id.clone())
        .bind(partner.to_owned())
        .bind(r.reviewer.clone())
        .bind(r.note.clone())
        .bind(r.reviewed_ms)
        .execute(self.conn())
        .await
        .map(drop)
    }
}

/// A week in milliseconds, and the offset that makes weeks start on Monday
/// (the Unix epoch was a Thursday).
pub const WEEK_MS: i64 = 7 * 86_400_000;
pub const MONDAY_OFFSET_MS: i64 = 3 * 86_400_000;
