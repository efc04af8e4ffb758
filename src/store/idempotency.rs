//! The `idempotency_keys` table: the first answer to a write, kept for a
//! retry with the same `Idempotency-Key` from the same partner. A row is
//! held by one request (`request_id`) until it is complete (the answer is
//! stored) or released (the request changed nothing). The transaction of
//! the request's disclosed log entry sets `log_index`, so a row whose holder
//! died after its change committed is told apart from one that changed
//! nothing.

use sqlx::Row;

use super::Db;

/// A request's hold on a key: who, which key (its keyed hash), what
/// request (fingerprint) and which request id holds it.
#[derive(Clone, Debug)]
pub struct KeyHold {
    pub partner: String,
    pub key_ref: String,
    pub fingerprint: String,
    pub request_id: String,
}

/// A kept answer: status, the replayed headers (a JSON object) and the
/// sealed body.
#[derive(Clone, Debug)]
pub struct KeptAnswer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// What claiming a key found.
#[derive(Debug)]
pub enum Claim {
    /// The key is this request's now (new, expired, or abandoned by a
    /// holder that changed nothing).
    Held,
    /// The first request with this key completed: its answer.
    Replay(KeptAnswer),
    /// The key was used for a different request.
    OtherRequest,
    /// Another request holds the key and may still be running.
    InProgress,
    /// The first request's change committed (log entry `log_index`) but its
    /// holder ended before the answer was kept.
    AnswerLost { log_index: u64 },
}

/// Times a claim is judged by (ms since the epoch, and durations in ms).
#[derive(Clone, Copy, Debug)]
pub struct ClaimTimes {
    pub now: i64,
    /// How long a complete answer is kept.
    pub keep: i64,
    /// How long a holder may run before its hold counts as abandoned.
    pub lease: i64,
}

impl Db {
    /// Claims `hold`'s key for its request.
    pub async fn claim_idempotency_key(
        &self,
        hold: &KeyHold,
        t: ClaimTimes,
    ) -> Result<Claim, sqlx::Error> {
        let insert = sqlx::query(
            "INSERT INTO idempotency_keys (partner, key_ref, fingerprint, request_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (partner, key_ref) DO NOTHING",
        )
        .bind(&hold.partner)
        .bind(&hold.key_ref)
        .bind(&hold.fingerprint)
        .bind(&hold.request_id)
        .bind(t.now)
        .bind(t.now + t.keep);
        if self.execute_write(insert).await?.rows_affected() == 1 {
            return Ok(Claim::Held);
        }
        let Some(row) = sqlx::query(
            "SELECT fingerprint, request_id, created_at, expires_at, log_index, status, headers, body \
             FROM idempotency_keys WHERE partner = $1 AND key_ref = $2",
        )
        .bind(&hold.partner)
        .bind(&hold.key_ref)
        .fetch_optional(self.pool())
        .await?
        else {
            // Released between the insert and the read: try once more.
            return Box::pin(self.claim_idempotency_key(hold, t)).await;
        };
        let holder: String = row.try_get("request_id")?;
        let created_at: i64 = row.try_get("created_at")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let log_index: Option<i64> = row.try_get("log_index")?;
        let status: Option<i32> = row.try_get("status")?;
        if expires_at <= t.now {
            // Expired: the key starts afresh for this request.
            let q = sqlx::query(
                "UPDATE idempotency_keys SET fingerprint = $1, request_id = $2, created_at = $3, expires_at = $4, \
                 log_index = NULL, status = NULL, headers = NULL, body = NULL \
                 WHERE partner = $5 AND key_ref = $6 AND request_id = $7",
            )
            .bind(&hold.fingerprint)
            .bind(&hold.request_id)
            .bind(t.now)
            .bind(t.now + t.keep)
            .bind(&hold.partner)
            .bind(&hold.key_ref)
            .bind(&holder);
            return Ok(match self.execute_write(q).await?.rows_affected() {
                1 => Claim::Held,
                _ => Claim::InProgress,
            });
        }
        if row.try_get::<String, _>("fingerprint")? != hold.fingerprint {
            return Ok(Claim::OtherRequest);
        }
        if let Some(status) = status {
            return Ok(Claim::Replay(KeptAnswer {
                status: status as u16,
                headers: row
                    .try_get::<Option<String>, _>("headers")?
                    .unwrap_or_default(),
                body: row
                    .try_get::<Option<String>, _>("body")?
                    .unwrap_or_default(),
            }));
        }
        let abandoned = created_at + t.lease <= t.now;
        match (log_index, abandoned) {
            (_, false) => Ok(Claim::InProgress),
            (Some(i), true) => Ok(Claim::AnswerLost {
                log_index: i as u64,
            }),
            (None, true) => {
                // The holder ended without a change: take the key over.
                let q = sqlx::query(
                    "UPDATE idempotency_keys SET request_id = $1, created_at = $2 \
                     WHERE partner = $3 AND key_ref = $4 AND request_id = $5 \
                     AND log_index IS NULL AND status IS NULL",
                )
                .bind(&hold.request_id)
                .bind(t.now)
                .bind(&hold.partner)
                .bind(&hold.key_ref)
                .bind(&holder);
                Ok(match self.execute_write(q).await?.rows_affected() {
                    1 => Claim::Held,
                    _ => Claim::InProgress,
                })
            }
        }
    }

    /// Keeps the answer of the request holding `hold`'s key.
    pub async fn complete_idempotency_key(
        &self,
        hold: &KeyHold,
        answer: &KeptAnswer,
    ) -> Result<(), sqlx::Error> {
        let q = sqlx::query(
            "UPDATE idempotency_keys SET status = $1, headers = $2, body = $3 \
             WHERE partner = $4 AND key_ref = $5 AND request_id = $6",
        )
        .bind(i32::from(answer.status))
        .bind(&answer.headers)
        .bind(&answer.body)
        .bind(&hold.partner)
        .bind(&hold.key_ref)
        .bind(&hold.request_id);
        self.execute_write(q).await?;
        Ok(())
    }

    /// Gives the key up again, if its request changed nothing (no logged
    /// disclosure): a retry then runs afresh. True if it was given up.
    pub async fn release_idempotency_key(&self, hold: &KeyHold) -> Result<bool, sqlx::Error> {
        let q = sqlx::query(
            "DELETE FROM idempotency_keys WHERE partner = $1 AND key_ref = $2 AND request_id = $3 \
             AND log_index IS NULL AND status IS NULL",
        )
        .bind(&hold.partner)
        .bind(&hold.key_ref)
        .bind(&hold.request_id);
        Ok(self.execute_write(q).await?.rows_affected() == 1)
    }

    /// Deletes every key past its keeping time; returns how many.
    pub async fn purge_idempotency_keys(&self, now: i64) -> Result<u64, sqlx::Error> {
        let q = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1").bind(now);
        Ok(self.execute_write(q).await?.rows_affected())
    }
}

/// In the transaction of a disclosed entry (at `index`): the key held by
/// request `request_id`, if any, now stands for a change that committed.
pub(crate) fn mark_logged<'q>(
    st: &mut super::statements::Statements<'q>,
    request_id: &'q str,
    index: u64,
) {
    use super::statements::Arg;
    st.push(
        "UPDATE idempotency_keys SET log_index = {} WHERE request_id = {}",
        vec![Arg::Int(index as i64), Arg::Text(request_id)],
    );
}
