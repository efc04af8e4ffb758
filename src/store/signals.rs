//! Signal, key, referral and inbox tables.

use sqlx::Row;

use super::{Db, WriteTx};
use crate::model::signal::{Facts, ReferralFeedback, Transition};
use crate::policy::model::ReferralFact;

/// A signal row: plaintext facts, the sealed body and its wrapped key.
pub struct StoredSignal {
    pub facts: Facts,
    pub body: Vec<u8>,
    pub kek_id: String,
    pub wrapped: Vec<u8>,
}

/// A referral of a signal to a recipient for a purpose.
#[derive(Clone, Debug)]
pub struct Referral {
    pub id: String,
    pub signal_id: String,
    pub recipient: String,
    pub purpose: String,
    pub referred_by: String,
}

/// An inbox row with its signal's facts and key.
pub struct StoredInboxItem {
    pub id: String,
    pub purpose: String,
    pub created_at: i64,
    pub acked: bool,
    pub body: Vec<u8>,
    pub signal: StoredSignal,
}

#[derive(Clone, Debug, Default)]
pub struct SignalFilter {
    pub status: Option<String>,
    pub municipality: Option<String>,
    pub form: Option<String>,
    pub received_from: Option<String>,
    pub received_to: Option<String>,
    /// Restrict to one reporter (a reporting partner's own signals).
    pub reporter: Option<String>,
    pub after: Option<String>,
    pub limit: u32,
}

const SIGNAL_COLUMNS: &str = "s.id, s.reporter, s.municipality, s.forms, s.date_received, s.victim_minor, \
     s.domestic_setting, s.status, s.created_at, s.version, s.closing_reason, s.body, k.kek_id, k.wrapped";

fn signal_from_row(r: &sqlx::any::AnyRow) -> Result<StoredSignal, sqlx::Error> {
    Ok(StoredSignal {
        facts: facts_from_row(r)?,
        body: r.try_get("body")?,
        kek_id: r.try_get("kek_id")?,
        wrapped: r.try_get("wrapped")?,
    })
}

fn facts_from_row(r: &sqlx::any::AnyRow) -> Result<Facts, sqlx::Error> {
    let forms: String = r.try_get("forms")?;
    Ok(Facts {
        id: r.try_get("id")?,
        reporter: r.try_get("reporter")?,
        municipality: r.try_get("municipality")?,
        forms: serde_json::from_str(&forms).map_err(|e| sqlx::Error::Decode(e.into()))?,
        date_received: r.try_get("date_received")?,
        victim_minor: r.try_get::<i64, _>("victim_minor")? != 0,
        domestic_setting: r.try_get::<i64, _>("domestic_setting")? != 0,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        version: r.try_get("version")?,
        closing_reason: r.try_get("closing_reason")?,
    })
}

impl WriteTx {
    pub async fn insert_signal(
        &mut self,
        m: &Facts,
        body: &[u8],
        kek_id: &str,
        wrapped: &[u8],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO signals (id, reporter, municipality, forms, date_received, victim_minor, domestic_setting, \
             status, created_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&m.id)
        .bind(&m.reporter)
        .bind(&m.municipality)
        .bind(serde_json::to_string(&m.forms).expect("json"))
        .bind(&m.date_received)
        .bind(i64::from(m.victim_minor))
        .bind(i64::from(m.domestic_setting))
        .bind(&m.status)
        .bind(m.created_at)
        .bind(body)
        .execute(self.conn())
        .await?;
        sqlx::query("INSERT INTO signal_keys (signal_id, kek_id, wrapped) VALUES ($1, $2, $3)")
            .bind(&m.id)
            .bind(kek_id)
            .bind(wrapped)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Stores a referral and moves a new signal to "doorverwezen".
    pub async fn insert_referral(&mut self, r: &Referral) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO referrals (id, signal_id, recipient, purpose, referred_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.id)
        .bind(&r.signal_id)
        .bind(&r.recipient)
        .bind(&r.purpose)
        .bind(&r.referred_by)
        .bind(super::now_millis())
        .execute(self.conn())
        .await?;
        let moved = sqlx::query("UPDATE signals SET status = $1 WHERE id = $2 AND status = $3")
            .bind(crate::model::signal::STATUS_REFERRED)
            .bind(&r.signal_id)
            .bind(crate::model::signal::STATUS_NEW)
            .execute(self.conn())
            .await?;
        if moved.rows_affected() == 1 {
            // The move is in the status history like every other; the
            // batch holds the log head, so the next seq is this one's.
            let seq: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM signal_transitions WHERE signal_id = $1",
            )
            .bind(&r.signal_id)
            .fetch_one(self.conn())
            .await?;
            self.insert_transition(
                &r.signal_id,
                &Transition {
                    seq,
                    from: crate::model::signal::STATUS_NEW.into(),
                    to: crate::model::signal::STATUS_REFERRED.into(),
                    reason: None,
                    actor: r.referred_by.clone(),
                    at: super::now_millis(),
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Records a move of the signal's status and makes it the signal's
    /// status (and closing reason). A move with a `seq` taken already (a
    /// concurrent move from the same state) is a unique violation.
    pub async fn insert_transition(
        &mut self,
        signal_id: &str,
        t: &Transition,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO signal_transitions (signal_id, seq, from_status, to_status, reason, actor, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(signal_id)
        .bind(t.seq)
        .bind(&t.from)
        .bind(&t.to)
        .bind(&t.reason)
        .bind(&t.actor)
        .bind(t.at)
        .execute(self.conn())
        .await?;
        sqlx::query("UPDATE signals SET status = $1, closing_reason = $2 WHERE id = $3")
            .bind(&t.to)
            .bind(&t.reason)
            .bind(signal_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Stores a reporter's correction request (sealed; a message, not a
    /// change of the signal).
    pub async fn insert_correction_request(
        &mut self,
        r: &crate::model::signal::CorrectionRequest,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO signal_correction_requests (id, signal_id, against_version, partner, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.id)
        .bind(&r.signal_id)
        .bind(r.against_version)
        .bind(&r.partner)
        .bind(&r.body)
        .bind(r.at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Stores a new version of a signal: the body of version `f.version - 1`
    /// (`previous`, sealed as it was) is kept in `signal_versions`, the
    /// signal gets `body` and the facts read from it. A concurrent change of
    /// the same version is a unique violation (the kept version's key).
    pub async fn revise_signal(
        &mut self,
        f: &Facts,
        previous: &[u8],
        body: &[u8],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO signal_versions (signal_id, version, body, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&f.id)
        .bind(f.version - 1)
        .bind(previous)
        .bind(super::now_millis())
        .execute(self.conn())
        .await?;
        sqlx::query(
            "UPDATE signals SET body = $1, version = $2, municipality = $3, forms = $4, date_received = $5, \
             victim_minor = $6, domestic_setting = $7 WHERE id = $8 AND version = $9",
        )
        .bind(body)
        .bind(f.version)
        .bind(&f.municipality)
        .bind(serde_json::to_string(&f.forms).expect("json"))
        .bind(&f.date_received)
        .bind(i64::from(f.victim_minor))
        .bind(i64::from(f.domestic_setting))
        .bind(&f.id)
        .bind(f.version - 1)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// A recipient's feedback on its referral (signal, recipient, purpose):
    /// false if there is no such referral.
    pub async fn set_feedback(
        &mut self,
        signal_id: &str,
        recipient: &str,
        purpose: &str,
        code: &str,
    ) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "UPDATE referrals SET feedback = $1, feedback_at = $2 WHERE signal_id = $3 AND recipient = $4 AND purpose = $5",
        )
        .bind(code)
        .bind(super::now_millis())
        .bind(signal_id)
        .bind(recipient)
        .bind(purpose)
        .execute(self.conn())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The recipient's copy of a referred signal (`body` sealed under the
    /// signal's data key).
    pub async fn insert_inbox_item(
        &mut self,
        id: &str,
        r: &Referral,
        body: &[u8],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO inbox (id, signal_id, referral_id, recipient, purpose, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(&r.signal_id)
        .bind(&r.id)
        .bind(&r.recipient)
        .bind(&r.purpose)
        .bind(body)
        .bind(super::now_millis())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn set_signal_key(
        &mut self,
        id: &str,
        kek_id: &str,
        wrapped: &[u8],
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE signal_keys SET kek_id = $1, wrapped = $2 WHERE signal_id = $3")
            .bind(kek_id)
            .bind(wrapped)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Destroys a signal: its data key first, then every row that holds
    /// its personal data (referrals and inbox copies go with it) and the
    /// egress fingerprints of its values. Its record key stays, unlinked,
    /// while it counts in the phenomenon tables, so they stay stable.
    pub async fn purge_signal(&mut self, id: &str) -> Result<(), sqlx::Error> {
        for sql in [
            "DELETE FROM signal_keys WHERE signal_id = $1",
            "DELETE FROM egress_fingerprints WHERE signal_id = $1",
            "DELETE FROM record_keys WHERE signal_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM phenomenon_contributions c WHERE c.record_key_id = record_keys.id)",
            "UPDATE record_keys SET signal_id = NULL WHERE signal_id = $1",
            "DELETE FROM inbox WHERE signal_id = $1",
            "DELETE FROM signal_versions WHERE signal_id = $1",
            "DELETE FROM signal_correction_requests WHERE signal_id = $1",
            "DELETE FROM signal_transitions WHERE signal_id = $1",
            "DELETE FROM referrals WHERE signal_id = $1",
            "DELETE FROM signals WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(self.conn()).await?;
        }
        Ok(())
    }
}

impl Db {
    /// A signal with the facts of its referrals (what a decision about it
    /// needs), read over one pooled connection: every acquire and release is
    /// a round trip to SQLite's worker thread.
    pub async fn signal(
        &self,
        id: &str,
    ) -> Result<Option<(StoredSignal, Vec<ReferralFact>)>, sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        let sql = format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals s JOIN signal_keys k ON k.signal_id = s.id WHERE s.id = $1"
        );
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let signal = signal_from_row(&row)?;
        let rows = sqlx::query(
            "SELECT recipient, purpose FROM referrals WHERE signal_id = $1 ORDER BY created_at, id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let referrals = rows
            .iter()
            .map(|r| {
                Ok(ReferralFact {
                    partner: r.try_get("recipient")?,
                    purpose: r.try_get("purpose")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(Some((signal, referrals)))
    }

    pub async fn signals(&self, f: &SignalFilter) -> Result<Vec<StoredSignal>, sqlx::Error> {
        let sql = format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals s JOIN signal_keys k ON k.signal_id = s.id WHERE 1 = 1"
        );
        let (sql, args) = filtered(sql, f);
        let sql = format!("{sql} ORDER BY s.id LIMIT {}", f.limit);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        q.fetch_all(self.pool())
            .await?
            .iter()
            .map(signal_from_row)
            .collect()
    }

    /// The plaintext facts of every signal `f` selects (its `after` and
    /// `limit` aside): no body, no key — what counting needs.
    pub async fn signal_facts(&self, f: &SignalFilter) -> Result<Vec<Facts>, sqlx::Error> {
        let sql = "SELECT s.id, s.reporter, s.municipality, s.forms, s.date_received, s.victim_minor, \
             s.domestic_setting, s.status, s.created_at, s.version, s.closing_reason FROM signals s WHERE 1 = 1";
        let (sql, args) = filtered(
            sql.to_owned(),
            &SignalFilter {
                after: None,
                ..f.clone()
            },
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        q.fetch_all(self.pool())
            .await?
            .iter()
            .map(facts_from_row)
            .collect()
    }
}

/// `sql` with the conditions of `f` (not its limit) and their arguments.
fn filtered(mut sql: String, f: &SignalFilter) -> (String, Vec<String>) {
    let mut args = Vec::new();
    for (clause, v) in [
        (" AND s.status = ?", f.status.clone()),
        (" AND s.municipality = ?", f.municipality.clone()),
        (
            " AND s.forms LIKE ?",
            f.form.as_ref().map(|x| format!("%\"{x}\"%")),
        ),
        (" AND s.date_received >= ?", f.received_from.clone()),
        (" AND s.date_received <= ?", f.received_to.clone()),
        (" AND s.reporter = ?", f.reporter.clone()),
        (" AND s.id > ?", f.after.clone()),
    ] {
        if let Some(v) = v {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        }
    }
    (sql, args)
}

impl Db {
    pub async fn inbox(
        &self,
        recipient: &str,
        purpose: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredInboxItem>, sqlx::Error> {
        let sql = format!(
            "SELECT i.id AS item_id, i.purpose AS item_purpose, i.created_at AS item_created, i.acked_at, \
             i.body AS item_body, {SIGNAL_COLUMNS} FROM inbox i JOIN signals s ON s.id = i.signal_id \
             JOIN signal_keys k ON k.signal_id = s.id \
             WHERE i.recipient = $1 AND i.purpose = $2 AND i.id > $3 ORDER BY i.id LIMIT {limit}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(recipient)
            .bind(purpose)
            .bind(after.unwrap_or(""))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredInboxItem {
                    id: r.try_get("item_id")?,
                    purpose: r.try_get("item_purpose")?,
                    created_at: r.try_get("item_created")?,
                    acked: r.try_get::<Option<i64>, _>("acked_at")?.is_some(),
                    body: r.try_get("item_body")?,
                    signal: signal_from_row(r)?,
                })
            })
            .collect()
    }

    /// Marks an item of `recipient` as received; false if there is none.
    pub async fn ack_inbox_item(&self, id: &str, recipient: &str) -> Result<bool, sqlx::Error> {
        let q = sqlx::query(
            "UPDATE inbox SET acked_at = $1 WHERE id = $2 AND recipient = $3 AND acked_at IS NULL",
        )
        .bind(super::now_millis())
        .bind(id)
        .bind(recipient);
        let res = self.execute_write(q).await?;
        if res.rows_affected() == 1 {
            return Ok(true);
        }
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM inbox WHERE id = $1 AND recipient = $2")
                .bind(id)
                .bind(recipient)
                .fetch_optional(self.pool())
                .await?;
        Ok(exists.is_some())
    }

    /// Whether the signal was referred to `recipient` for `purpose` before.
    pub async fn referred(
        &self,
        signal_id: &str,
        recipient: &str,
        purpose: &str,
    ) -> Result<bool, sqlx::Error> {
        let hit: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM referrals WHERE signal_id = $1 AND recipient = $2 AND purpose = $3",
        )
        .bind(signal_id)
        .bind(recipient)
        .bind(purpose)
        .fetch_optional(self.pool())
        .await?;
        Ok(hit.is_some())
    }

    /// Every wrapped data key: (signal id, KEK id, wrapped key).
    pub async fn signal_keys(&self) -> Result<Vec<(String, String, Vec<u8>)>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT signal_id, kek_id, wrapped FROM signal_keys ORDER BY signal_id")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("signal_id")?,
                    r.try_get("kek_id")?,
                    r.try_get("wrapped")?,
                ))
            })
            .collect()
    }

    /// Ids of signals created before `before_ms` (retention).
    pub async fn signals_created_before(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<String>, sqlx::Error> {
        let sql = format!(
            "SELECT id FROM signals WHERE created_at < $1 ORDER BY created_at LIMIT {limit}"
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(before_ms)
            .fetch_all(self.pool())
            .await
    }
}

impl Db {
    /// A signal's status history, oldest first.
    pub async fn transitions(&self, signal_id: &str) -> Result<Vec<Transition>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT seq, from_status, to_status, reason, actor, created_at FROM signal_transitions \
             WHERE signal_id = $1 ORDER BY seq",
        )
        .bind(signal_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Transition {
                    seq: r.try_get("seq")?,
                    from: r.try_get("from_status")?,
                    to: r.try_get("to_status")?,
                    reason: r.try_get("reason")?,
                    actor: r.try_get("actor")?,
                    at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// A signal's correction requests, oldest first (sealed).
    pub async fn correction_requests(
        &self,
        signal_id: &str,
    ) -> Result<Vec<crate::model::signal::CorrectionRequest>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, against_version, partner, body, created_at FROM signal_correction_requests \
             WHERE signal_id = $1 ORDER BY created_at, id",
        )
        .bind(signal_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::model::signal::CorrectionRequest {
                    id: r.try_get("id")?,
                    signal_id: signal_id.to_owned(),
                    against_version: r.try_get("against_version")?,
                    partner: r.try_get("partner")?,
                    body: r.try_get("body")?,
                    at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// A signal's referrals with their recipients' feedback.
    pub async fn referral_feedback(
        &self,
        signal_id: &str,
    ) -> Result<Vec<ReferralFeedback>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT recipient, purpose, feedback, feedback_at FROM referrals WHERE signal_id = $1 ORDER BY created_at, id",
        )
        .bind(signal_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReferralFeedback {
                    recipient: r.try_get("recipient")?,
                    purpose: r.try_get("purpose")?,
                    feedback: r.try_get("feedback")?,
                    feedback_at: r.try_get("feedback_at")?,
                })
            })
            .collect()
    }

    /// The sealed body of an earlier version of a signal.
    pub async fn signal_version(
        &self,
        signal_id: &str,
        version: i64,
    ) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar("SELECT body FROM signal_versions WHERE signal_id = $1 AND version = $2")
            .bind(signal_id)
            .bind(version)
            .fetch_optional(self.pool())
            .await
    }

    /// Referrals of several signals at once (for lists), by signal id.
    pub async fn referrals_of(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<ReferralFact>>, sqlx::Error> {
        let mut out: std::collections::HashMap<String, Vec<ReferralFact>> = Default::default();
        if ids.is_empty() {
            return Ok(out);
        }
        let params: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT signal_id, recipient, purpose FROM referrals WHERE signal_id IN ({}) ORDER BY created_at, id",
            params.join(",")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        for r in q.fetch_all(self.pool()).await? {
            out.entry(r.try_get("signal_id")?)
                .or_default()
                .push(ReferralFact {
                    partner: r.try_get("recipient")?,
                    purpose: r.try_get("purpose")?,
                });
        }
        Ok(out)
    }
}
